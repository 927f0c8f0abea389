// Issue 4 test 1: the `safe` and `finalized` block tags as ethers v6 reads them.
import { JsonRpcProvider } from 'ethers'
import { RPC_URL } from './lib.mjs'

const provider = new JsonRpcProvider(RPC_URL, undefined, { staticNetwork: true })
const [latest, safe, finalized] = await Promise.all(
  ['latest', 'safe', 'finalized'].map((tag) => provider.getBlock(tag)),
)
console.log(JSON.stringify({
  ok: true,
  latest: latest.number,
  safe: safe.number,
  finalized: finalized.number,
  finalizedHash: finalized.hash,
}))
