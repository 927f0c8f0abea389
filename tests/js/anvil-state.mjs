// anvil's direct state changes on the hemi devnet, differentially against anvil: the same
// anvil_/hardhat_ calls must answer the same and leave the same balance, nonce, code and
// storage, which then behave as any other state (a call runs the code, a transaction takes the
// nonce, a funded fresh account pays).
import { Wallet } from 'ethers'
import { differentialAgainstAnvil, waitReceipt } from './lib.mjs'

// Runtime code that returns 42 (PUSH1 2a PUSH1 0 MSTORE PUSH1 20 PUSH1 0 RETURN).
const RETURNS_42 = '0x602a60005260206000f3'
const CODE_AT = '0x00000000000000000000000000000000000c0de1'
const VALUE = '0x' + 'ab'.repeat(32)

async function exercise(p) {
  const out = {}
  const fresh = new Wallet('0x' + '42'.repeat(32), p)
  out.setBalance = await p.send('anvil_setBalance', [fresh.address, '0xde0b6b3a7640000'])
  out.balance = (await p.getBalance(fresh.address)).toString()
  out.hardhatSetBalance = await p.send('hardhat_setBalance', [CODE_AT, '0x1234'])
  out.codeAtBalance = (await p.getBalance(CODE_AT)).toString()
  out.setNonce = await p.send('anvil_setNonce', [fresh.address, '0x20'])
  out.nonce = await p.getTransactionCount(fresh.address)
  out.setCode = await p.send('anvil_setCode', [CODE_AT, RETURNS_42])
  out.code = await p.getCode(CODE_AT)
  out.call = await p.call({ to: CODE_AT, data: '0x' })
  // A contract's slot (what tests do to a token's balance mapping), twice: both stay.
  out.setStorage = await p.send('anvil_setStorageAt', [CODE_AT, '0x5', VALUE])
  out.hardhatSetStorage = await p.send('hardhat_setStorageAt', [CODE_AT, '0x6', VALUE])
  out.storage = await p.getStorage(CODE_AT, 5)
  out.storage6 = await p.getStorage(CODE_AT, 6)
  out.otherSlot = await p.getStorage(CODE_AT, 7)
  out.codeKept = (await p.getCode(CODE_AT)) === RETURNS_42
  // The funded fresh account pays for a transfer with the nonce it was given.
  const tx = await fresh.sendTransaction({ to: CODE_AT, value: 1n, nonce: 32, gasLimit: 30000n })
  const r = await waitReceipt(tx, 'a transfer from the funded account')
  out.paid = r.status
  out.nonceAfter = await p.getTransactionCount(fresh.address)
  out.badNonce = await p.send('anvil_setNonce', [fresh.address, 'zz']).then(() => 'accepted', (e) => /-32602/.test(e.message) ? 'invalid params' : e.message)
  return out
}

await differentialAgainstAnvil('anvil-state.mjs', exercise)
