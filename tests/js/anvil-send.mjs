// eth_sendTransaction from the devnet's unlocked accounts, differentially against anvil:
// ethers' JsonRpcSigner (which sends eth_sendTransaction) pays, deploys and calls with the node
// filling nonce, gas and fees; a legacy gasPrice is honoured; an account the node holds no key
// of is refused by both.
import { JsonRpcSigner } from 'ethers'
import { differentialAgainstAnvil, waitReceipt } from './lib.mjs'

const TO = '0x00000000000000000000000000000000000000e5'
// Init code that deploys runtime code returning 42.
const INIT = '0x600a600c600039600a6000f3602a60005260206000f3'

async function exercise(p) {
  const out = {}
  const accounts = await p.send('eth_accounts', [])
  out.accounts = accounts.length
  const signer = new JsonRpcSigner(p, accounts[4])
  const before = await p.getBalance(TO)
  const tx = await signer.sendTransaction({ to: TO, value: 3n })
  const r = await waitReceipt(tx, 'a transfer by eth_sendTransaction')
  out.paid = ((await p.getBalance(TO)) - before).toString()
  out.from = r.from.toLowerCase() === accounts[4].toLowerCase()
  out.type = (await p.getTransaction(tx.hash)).type
  const legacy = await signer.sendTransaction({ to: TO, value: 1n, gasPrice: 5_000_000_000n })
  const lr = await waitReceipt(legacy, 'a legacy eth_sendTransaction')
  out.legacyType = (await p.getTransaction(legacy.hash)).type
  out.legacyPrice = lr.gasPrice.toString()
  const deploy = await signer.sendTransaction({ data: INIT })
  const dr = await waitReceipt(deploy, 'a deployment by eth_sendTransaction')
  out.deployedCode = await p.getCode(dr.contractAddress)
  out.call = await p.call({ to: dr.contractAddress })
  out.unknown = await p.send('eth_sendTransaction', [{ from: '0x000000000000000000000000000000000000dead', to: TO, value: '0x1' }]).then(() => 'accepted', () => 'refused')
  return out
}

await differentialAgainstAnvil('anvil-send.mjs', exercise)
