// ERC-20 transfer throughput benchmark.
//   node bench-erc20.mjs --rpc URL [--count 20000] [--batch 100] [--senders 20] [--client NAME]
//   node bench-erc20.mjs --anvil  [...]   (starts and stops its own anvil)
// Transfers are signed before timing starts. Timing covers sending them as JSON-RPC batches of
// eth_sendRawTransaction and waiting until all are in blocks.
import { ContractFactory, Interface, Wallet, keccak256, parseEther } from 'ethers'
import { parseArgs } from 'node:util'
import { compile } from './compile.mjs'
import { devKey, devWallet, httpProvider, startAnvil, waitReceipt } from './lib.mjs'

const { values: opts } = parseArgs({
  options: {
    rpc: { type: 'string', default: process.env.RPC_URL || 'http://127.0.0.1:8545' },
    anvil: { type: 'boolean', default: false },
    count: { type: 'string', default: '20000' },
    batch: { type: 'string', default: '100' },
    senders: { type: 'string', default: '20' },
    client: { type: 'string' },
    'first-sender-index': { type: 'string', default: '10' },
    'gas-limit': { type: 'string', default: '30000000' },
    'block-time': { type: 'string', default: '1' },
  },
})
const COUNT = Number(opts.count)
const BATCH = Number(opts.batch)
const SENDERS = Number(opts.senders)
const FIRST_SENDER = Number(opts['first-sender-index'])
const TIP = 1_000_000_000n
const TOKENS_PER_SENDER = 10n ** 24n

let nextId = 1
async function rpcBatch(url, calls) {
  const body = calls.map(([method, params]) => ({ jsonrpc: '2.0', id: nextId++, method, params }))
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
  if (!res.ok) throw new Error(`HTTP ${res.status} from ${url}: ${(await res.text()).slice(0, 300)}`)
  const out = await res.json()
  if (!Array.isArray(out)) throw new Error(`batch answered with a non-array: ${JSON.stringify(out).slice(0, 300)}`)
  const byId = new Map(out.map((r) => [r.id, r]))
  return body.map((b) => byId.get(b.id) ?? { error: { message: `no response for id ${b.id}` } })
}

async function rpc(url, method, params = []) {
  const [r] = await rpcBatch(url, [[method, params]])
  if (r.error) throw new Error(`${method}: ${r.error.message}`)
  return r.result
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

async function sendAll(url, rawTxs) {
  const errors = []
  for (let i = 0; i < rawTxs.length; i += BATCH) {
    const responses = await rpcBatch(url, rawTxs.slice(i, i + BATCH).map((raw) => ['eth_sendRawTransaction', [raw]]))
    responses.forEach((r, j) => r.error && errors.push(`tx #${i + j}: ${r.error.message}`))
  }
  if (errors.length) throw new Error(`${errors.length} of ${rawTxs.length} eth_sendRawTransaction calls failed, first: ${errors.slice(0, 3).join('; ')}`)
}

/** Follows new blocks until every hash is included; returns the block numbers that held them. */
async function waitIncluded(url, hashes, fromBlock, timeoutMs) {
  const pending = new Set(hashes)
  const blocks = []
  let next = fromBlock
  const deadline = Date.now() + timeoutMs
  while (pending.size) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs / 1000}s with ${pending.size} of ${hashes.length} transactions not in a block`)
    const head = Number(await rpc(url, 'eth_blockNumber'))
    if (head < next) {
      await sleep(100)
      continue
    }
    const numbers = []
    for (let n = next; n <= head; n++) numbers.push(n)
    const responses = await rpcBatch(url, numbers.map((n) => ['eth_getBlockByNumber', ['0x' + n.toString(16), false]]))
    for (const [i, r] of responses.entries()) {
      if (r.error || !r.result) throw new Error(`eth_getBlockByNumber(${numbers[i]}): ${r.error?.message ?? 'null'}`)
      let mine = 0
      for (const h of r.result.transactions) if (pending.delete(h)) mine++
      if (mine) blocks.push({ number: numbers[i], txs: mine, gasUsed: Number(r.result.gasUsed) })
    }
    next = head + 1
  }
  return blocks
}

async function checkReceipts(url, hashes) {
  let failed = 0
  for (let i = 0; i < hashes.length; i += BATCH) {
    const responses = await rpcBatch(url, hashes.slice(i, i + BATCH).map((h) => ['eth_getTransactionReceipt', [h]]))
    for (const [j, r] of responses.entries()) {
      if (r.error || !r.result) throw new Error(`no receipt for ${hashes[i + j]}: ${r.error?.message ?? 'null'}`)
      if (r.result.status !== '0x1') failed++
    }
  }
  if (failed) throw new Error(`${failed} of ${hashes.length} transfers reverted`)
}

async function main() {
  let anvil
  let url = opts.rpc
  if (opts.anvil) {
    anvil = await startAnvil(['--block-time', opts['block-time'], '--gas-limit', opts['gas-limit'], '--silent'])
    url = anvil.url
  }
  try {
    return await bench(url, opts.client ?? (anvil ? 'anvil' : await rpc(url, 'web3_clientVersion').catch(() => url)))
  } finally {
    anvil?.stop()
  }
}

async function bench(url, client) {
  const provider = httpProvider(url)
  const funder = devWallet(0, provider)
  const { chainId } = await provider.getNetwork()
  const { TestToken } = await compile()

  const factory = new ContractFactory(TestToken.abi, TestToken.bytecode, funder)
  const token = await factory.deploy('Bench Token', 'BNCH', TOKENS_PER_SENDER * BigInt(SENDERS + 1))
  await waitReceipt(token.deploymentTransaction(), 'TestToken deployment')
  const tokenAddress = await token.getAddress()
  const erc20 = new Interface(TestToken.abi)
  const senders = Array.from({ length: SENDERS }, (_, i) => new Wallet(devKey(FIRST_SENDER + i)))

  const perSender = Math.ceil(COUNT / SENDERS)
  const sample = await provider.estimateGas({
    from: funder.address,
    to: tokenAddress,
    data: erc20.encodeFunctionData('transfer', [senders[0].address, 1n]),
  })
  const gasLimit = (sample * 13n) / 10n
  const latest = await provider.getBlock('latest')
  const perBlock = Number(latest.gasLimit / sample) || 1
  // Base fee can rise 12.5% per full block while the run lasts; the fee cap must outlast that.
  const fullBlocks = Math.ceil(COUNT / perBlock) + 10
  let maxFeePerGas = latest.baseFeePerGas ?? 1_000_000_000n
  for (let i = 0; i < fullBlocks; i++) maxFeePerGas = (maxFeePerGas * 9n) / 8n + 1n
  maxFeePerGas += TIP
  const ethPerSender = BigInt(perSender) * gasLimit * maxFeePerGas + parseEther('1')

  const funderBalance = await provider.getBalance(funder.address)
  if (funderBalance < ethPerSender * BigInt(SENDERS)) {
    throw new Error(`funder ${funder.address} has ${funderBalance} wei, needs ${ethPerSender * BigInt(SENDERS)} (fee cap ${maxFeePerGas} wei/gas); use fewer --count or more --senders`)
  }

  let funderNonce = await provider.getTransactionCount(funder.address, 'pending')
  const funding = []
  for (const s of senders) {
    const common = { chainId, gasLimit: 100_000n, maxFeePerGas, maxPriorityFeePerGas: TIP, type: 2 }
    funding.push(await funder.signTransaction({ ...common, nonce: funderNonce++, to: s.address, value: ethPerSender }))
    funding.push(
      await funder.signTransaction({
        ...common,
        nonce: funderNonce++,
        to: tokenAddress,
        data: erc20.encodeFunctionData('transfer', [s.address, TOKENS_PER_SENDER]),
      }),
    )
  }
  const fundingStart = Number(await rpc(url, 'eth_blockNumber'))
  await sendAll(url, funding)
  await waitIncluded(url, funding.map(keccak256), fundingStart, 120_000)
  await checkReceipts(url, funding.map(keccak256))

  const signStart = Date.now()
  const nonces = await Promise.all(senders.map((s) => provider.getTransactionCount(s.address, 'pending')))
  const rawTxs = []
  for (let round = 0; rawTxs.length < COUNT; round++) {
    for (let i = 0; i < SENDERS && rawTxs.length < COUNT; i++) {
      const to = senders[(i + 1) % SENDERS].address
      rawTxs.push(
        await senders[i].signTransaction({
          type: 2,
          chainId,
          nonce: nonces[i] + round,
          to: tokenAddress,
          data: erc20.encodeFunctionData('transfer', [to, 1n]),
          gasLimit,
          maxFeePerGas,
          maxPriorityFeePerGas: TIP,
        }),
      )
    }
  }
  const hashes = rawTxs.map(keccak256)
  const signSeconds = (Date.now() - signStart) / 1000

  const startBlock = Number(await rpc(url, 'eth_blockNumber')) + 1
  const t0 = performance.now()
  await sendAll(url, rawTxs)
  const sendSeconds = (performance.now() - t0) / 1000
  const blocks = await waitIncluded(url, hashes, startBlock, Math.max(120_000, COUNT * 20))
  const seconds = (performance.now() - t0) / 1000

  await checkReceipts(url, hashes)

  return {
    client,
    count: COUNT,
    seconds: Number(seconds.toFixed(3)),
    tps: Number((COUNT / seconds).toFixed(1)),
    blocks: blocks.length,
    batch: BATCH,
    senders: SENDERS,
    sendSeconds: Number(sendSeconds.toFixed(3)),
    signSeconds: Number(signSeconds.toFixed(3)),
    maxTxsPerBlock: Math.max(...blocks.map((b) => b.txs)),
    gasPerTransfer: Number(sample),
    firstBlock: blocks[0]?.number,
    lastBlock: blocks.at(-1)?.number,
  }
}

try {
  console.log(JSON.stringify(await main()))
  process.exit(0)
} catch (e) {
  console.error(`bench-erc20.mjs: FAIL: ${e?.stack || e}`)
  process.exit(1)
}
