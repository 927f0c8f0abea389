// Issue 15: hemiBTC as a wallet reads it through ethers v6 (ERC-20 metadata and a balance),
// and the tunnel manager's view of a deposit. Env: TOKEN, OWNER, TUNNEL, TXID, VOUT.
import { Contract, JsonRpcProvider } from 'ethers'
import { RPC_URL } from './lib.mjs'

const provider = new JsonRpcProvider(RPC_URL, undefined, { staticNetwork: true })
const erc20 = new Contract(process.env.TOKEN, [
  'function name() view returns (string)',
  'function symbol() view returns (string)',
  'function decimals() view returns (uint8)',
  'function totalSupply() view returns (uint256)',
  'function balanceOf(address) view returns (uint256)',
], provider)
const tunnel = new Contract(process.env.TUNNEL, [
  'function isMinted(bytes32 txid, uint32 vout) view returns (bool)',
  'event DepositConfirmed(address indexed recipient, bytes32 indexed txid, uint32 vout, uint64 gross, uint64 net)',
], provider)
const [name, symbol, decimals, totalSupply, balance, minted] = await Promise.all([
  erc20.name(),
  erc20.symbol(),
  erc20.decimals(),
  erc20.totalSupply(),
  erc20.balanceOf(process.env.OWNER),
  tunnel.isMinted('0x' + process.env.TXID, Number(process.env.VOUT)),
])
const events = await tunnel.queryFilter(tunnel.filters.DepositConfirmed(process.env.OWNER), 0, 'latest')
console.log(JSON.stringify({
  ok: true,
  name,
  symbol,
  decimals: Number(decimals),
  totalSupply: totalSupply.toString(),
  balance: balance.toString(),
  minted,
  events: events.map((e) => ({
    block: e.blockNumber,
    tx: e.transactionHash,
    txid: e.args.txid,
    vout: Number(e.args.vout),
    gross: e.args.gross.toString(),
    net: e.args.net.toString(),
  })),
}))
