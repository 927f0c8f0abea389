// anvil's impersonation on the hemi devnet, differentially against anvil: the same calls
// (anvil_impersonateAccount, eth_sendTransaction from an account nobody holds a key of, a
// contract deployed from it, hardhat_stopImpersonatingAccount, anvil_autoImpersonateAccount)
// must give the same balances, nonces, receipts and refusals on both chains.
import { differentialAgainstAnvil } from './lib.mjs'

const WHALE = '0x00000000000000000000000000000000000a11ce'
const OTHER = '0x0000000000000000000000000000000000000b0b'
const TO = '0x000000000000000000000000000000000000d00d'
// A contract whose runtime code is `0x00` (STOP): its creation code returns one zero byte.
const INIT = '0x600160008160008239f3'

async function exercise(p) {
  const out = {}
  const send = (tx) => p.send('eth_sendTransaction', [tx])
  const refused = (tx) => send(tx).then(() => false, () => true)
  const receipt = async (hash) => {
    for (let i = 0; i < 100; i++) {
      const r = await p.send('eth_getTransactionReceipt', [hash])
      if (r) return r
      await new Promise((r) => setTimeout(r, 100))
    }
    throw new Error(`no receipt for ${hash}`)
  }
  await p.send('anvil_setBalance', [WHALE, '0x56bc75e2d63100000']) // 100 ETH
  await p.send('anvil_setBalance', [OTHER, '0x56bc75e2d63100000'])
  out.refusedBefore = await refused({ from: WHALE, to: TO, value: '0x1' })

  out.impersonate = await p.send('anvil_impersonateAccount', [WHALE])
  const toBefore = BigInt(await p.send('eth_getBalance', [TO, 'latest']))
  const hash = await send({ from: WHALE, to: TO, value: '0xde0b6b3a7640000' }) // 1 ETH
  const r = await receipt(hash)
  out.status = r.status
  out.receiptFrom = r.from.toLowerCase()
  out.receiptType = r.type
  out.gasUsed = r.gasUsed
  out.received = (BigInt(await p.send('eth_getBalance', [TO, 'latest'])) - toBefore).toString()
  const tx = await p.send('eth_getTransactionByHash', [hash])
  out.txFrom = tx.from.toLowerCase()
  out.txHashMatches = tx.hash === hash
  out.txType = tx.type
  out.nonceAfter = await p.send('eth_getTransactionCount', [WHALE, 'latest'])

  const deploy = await receipt(await send({ from: WHALE, data: INIT, gas: '0x186a0' }))
  out.deployStatus = deploy.status
  out.contract = deploy.contractAddress?.toLowerCase()
  out.code = await p.send('eth_getCode', [deploy.contractAddress, 'latest'])
  // Too much value: refused with nothing sent.
  out.refusedOverBalance = await refused({ from: WHALE, to: TO, value: '0x56bc75e2d63100000' })

  out.stop = await p.send('hardhat_stopImpersonatingAccount', [WHALE])
  out.refusedAfterStop = await refused({ from: WHALE, to: TO, value: '0x1' })
  out.hardhatAlias = await p.send('hardhat_impersonateAccount', [OTHER])
  await p.send('anvil_stopImpersonatingAccount', [OTHER])
  out.refusedOther = await refused({ from: OTHER, to: TO, value: '0x1' })

  out.auto = await p.send('anvil_autoImpersonateAccount', [true])
  out.autoStatus = (await receipt(await send({ from: OTHER, to: TO, value: '0x2' }))).status
  await p.send('anvil_autoImpersonateAccount', [false])
  out.refusedAfterAuto = await refused({ from: OTHER, to: TO, value: '0x1' })
  out.badParams = await p.send('anvil_impersonateAccount', ['not an address']).then(() => false, () => true)
  return out
}

await differentialAgainstAnvil('anvil-impersonate.mjs', exercise)
