// geth's tracing API on the hemi devnet, differentially against anvil: the same contracts and
// transactions from the same account on both chains, then debug_traceTransaction with the
// callTracer, the prestateTracer (plain and diff mode) and the default struct logger, and
// debug_traceCall and eth_createAccessList, must give the same answers (anvil and hemi both trace with revm-inspectors;
// what differs by chain — the sender's and the fee recipient's balances — is left out of the
// prestate comparison). Also debug_traceBlockByNumber's shape, and Parity's trace_transaction,
// trace_get, trace_block and trace_filter against anvil's.
import assert from 'node:assert/strict'
import { ContractFactory } from 'ethers'
import { compile } from './compile.mjs'
import { RPC_URL, devWallet, httpProvider, runScript, startAnvil, waitReceipt } from './lib.mjs'

const SENDER = 9 // an account no other script uses first

async function scenario(provider) {
  const { TraceCallee, TraceCaller } = await compile()
  const w = devWallet(SENDER, provider)
  const nonce = await provider.getTransactionCount(w.address)
  assert.equal(nonce, 0, `account ${SENDER} must be fresh on ${provider._getConnection().url}`)
  const overrides = { gasLimit: 1_000_000, maxFeePerGas: 10_000_000_000n, maxPriorityFeePerGas: 1n }
  const callee = await new ContractFactory(TraceCallee.abi, TraceCallee.bytecode, w).deploy(overrides)
  await callee.waitForDeployment()
  const caller = await new ContractFactory(TraceCaller.abi, TraceCaller.bytecode, w).deploy(await callee.getAddress(), overrides)
  await caller.waitForDeployment()
  const tx = await caller.run(7, { ...overrides, gasLimit: 300_000 })
  const receipt = await waitReceipt(tx, 'run(7)')
  return { callee: await callee.getAddress(), caller: await caller.getAddress(), hash: tx.hash, block: receipt.blockNumber, data: tx.data }
}

const lower = (o) => JSON.parse(JSON.stringify(o).toLowerCase())

await runScript('trace.mjs', async (step) => {
  const anvil = await startAnvil(['--silent', '--hardfork', 'prague', '--steps-tracing'])
  try {
    const hemi = httpProvider(RPC_URL)
    const peer = httpProvider(anvil.url)
    const a = await step('scenario on hemi', () => scenario(hemi))
    const b = await step('scenario on anvil', () => scenario(peer))
    assert.equal(a.callee, b.callee)
    assert.equal(a.caller, b.caller)

    const both = (method, params) => Promise.all([hemi.send(method, params(a)), peer.send(method, params(b))])

    const [callH, callA] = await step('callTracer', () => both('debug_traceTransaction', (s) => [s.hash, { tracer: 'callTracer', tracerConfig: { withLog: true } }]))
    // The one place the two differ: the root frame's `gas`. geth's callTracer reports the
    // transaction's gas limit there (OnTxStart keeps tx.Gas()), and so does revm-inspectors'
    // DebugInspector (reth, hemi); anvil 1.7.1 reports the gas left after the intrinsic cost.
    assert.equal(BigInt(callH.gas), 300_000n, 'the root frame carries the gas limit, as geth')
    const rootless = (t) => ({ ...lower(t), gas: undefined })
    assert.deepStrictEqual(rootless(callH), rootless(callA))
    assert.equal(callH.calls.length, 2, JSON.stringify(callH))
    assert.equal(callH.calls[1].error, 'execution reverted')

    const [preH, preA] = await step('prestateTracer', () => both('debug_traceTransaction', (s) => [s.hash, { tracer: 'prestateTracer' }]))
    for (const addr of [a.callee, a.caller].map((x) => x.toLowerCase())) {
      assert.deepStrictEqual(lower(preH)[addr], lower(preA)[addr], `prestate of ${addr}`)
    }
    const [diffH, diffA] = await step('prestateTracer diffMode', () => both('debug_traceTransaction', (s) => [s.hash, { tracer: 'prestateTracer', tracerConfig: { diffMode: true } }]))
    const callee = a.callee.toLowerCase()
    assert.deepStrictEqual(lower(diffH).post[callee], lower(diffA).post[callee], 'post state of the callee')
    assert.deepStrictEqual(lower(diffH).pre[callee], lower(diffA).pre[callee], 'pre state of the callee')

    const [logH, logA] = await step('struct logger', () => both('debug_traceTransaction', (s) => [s.hash, { disableStorage: false }]))
    const ops = (t) => t.structLogs.map((l) => [l.pc, l.op, l.gas, l.gasCost, l.depth].join(':'))
    assert.equal(logH.gas, logA.gas)
    assert.equal(logH.failed, logA.failed)
    assert.equal(logH.returnValue, logA.returnValue)
    assert.deepStrictEqual(ops(logH), ops(logA))

    const call = (s) => [{ from: devWallet(SENDER).address, to: s.caller, data: s.data, gas: '0x493e0' }, 'latest', { tracer: 'callTracer' }]
    const [tcH, tcA] = await step('debug_traceCall', () => both('debug_traceCall', call))
    assert.deepStrictEqual(rootless(tcH), rootless(tcA))

    const blockH = await step('debug_traceBlockByNumber', () => hemi.send('debug_traceBlockByNumber', ['0x' + a.block.toString(16), { tracer: 'callTracer', tracerConfig: { withLog: true } }]))
    const mine = blockH.find((t) => t.txHash.toLowerCase() === a.hash.toLowerCase())
    assert.ok(mine, JSON.stringify(blockH))
    assert.deepStrictEqual(lower(mine.result), lower(callH))

    // Parity's trace_ namespace (the flat call tracer): the same frames as anvil's. The block
    // (number and hash) and the position differ by chain: a hemi block starts with its
    // Bitcoin-attributes system transaction, so the user transaction sits one place later.
    const [flatH, flatA] = await step('trace_transaction', () => both('trace_transaction', (s) => [s.hash]))
    const placeless = (ts) => lower(ts).map((t) => ({ ...t, blockhash: undefined, blocknumber: undefined, transactionposition: undefined }))
    assert.deepStrictEqual(placeless(flatH), placeless(flatA))
    assert.equal(flatH.length, 3, JSON.stringify(flatH))
    const hemiReceipt = await hemi.send('eth_getTransactionReceipt', [a.hash])
    for (const t of flatH) {
      assert.equal(t.blockHash, hemiReceipt.blockHash)
      assert.equal(t.blockNumber, a.block)
      assert.equal(t.transactionPosition, Number(hemiReceipt.transactionIndex))
      assert.equal(t.transactionHash, a.hash)
    }
    // anvil has no trace_get: it is the transaction's trace list at one index (Parity, reth).
    const getH = await step('trace_get', () => hemi.send('trace_get', [a.hash, ['0x1']]))
    assert.deepStrictEqual(getH, flatH[1])
    assert.equal(await hemi.send('trace_get', [a.hash, ['0x9']]), null)
    const [blkH, blkA] = await step('trace_block', () => both('trace_block', (s) => ['0x' + s.block.toString(16)]))
    assert.deepStrictEqual(placeless(blkH), placeless(blkA))
    const filter = (s) => [{ fromBlock: '0x' + s.block.toString(16), toBlock: '0x' + s.block.toString(16), toAddress: [s.callee] }]
    const [filH, filA] = await step('trace_filter', () => both('trace_filter', filter))
    assert.deepStrictEqual(placeless(filH), placeless(filA))
    assert.equal(filH.length, 2, 'the two calls into the callee')
    assert.deepStrictEqual(await hemi.send('trace_filter', [{ ...filter(a)[0], count: 0 }]), [], 'count 0: none')
    assert.match(await hemi.send('trace_filter', [{ fromAddress: 'nope' }]).then(() => '', (e) => e.message), /trace filter/)
    assert.equal(await hemi.send('trace_block', ['0x' + (a.block + 10_000).toString(16)]), null)
    assert.equal(await hemi.send('trace_transaction', ['0x' + '11'.repeat(32)]), null)

    // eth_createAccessList: the callee and its slot (the sender, the called contract and the
    // precompiles left out, as geth), and the gas with the list attached: the same as anvil's.
    const listCall = (s) => [{ from: devWallet(SENDER).address, to: s.caller, data: s.data, gas: '0x493e0' }, 'latest']
    const [alH, alA] = await step('eth_createAccessList', () => both('eth_createAccessList', listCall))
    assert.deepStrictEqual(lower(alH), lower(alA))
    assert.ok(alH.accessList.some((e) => e.address.toLowerCase() === callee && e.storageKeys.length === 1), JSON.stringify(alH))

    // Receipts and blocks carry the fields anvil's do (blockTimestamp on receipts and logs).
    const [rcH, rcA] = await step('receipt fields', () => both('eth_getTransactionReceipt', (s) => [s.hash]))
    assert.deepStrictEqual(Object.keys(rcH).sort(), Object.keys(rcA).sort())
    assert.deepStrictEqual(Object.keys(rcH.logs[0]).sort(), Object.keys(rcA.logs[0]).sort())

    const bad = await step('bad options', () => hemi.send('debug_traceTransaction', [a.hash, { tracer: 'noSuchTracer' }]).then(() => null, (e) => e.message))
    assert.ok(bad && /tracer|unknown variant/i.test(bad), bad)
    const refused = (method, params) => hemi.send(method, params).then(() => null, (e) => e.message)
    assert.match(await refused('debug_traceTransaction', ['0x12']), /expected \[txHash/)
    assert.match(await refused('debug_traceTransaction', ['0x' + '11'.repeat(32)]), /not found/)
    assert.match(await refused('debug_traceBlockByNumber', []), /expected \[blockNumber/)

    return { ok: true, structLogs: logH.structLogs.length, calls: callH.calls.length, gasUsed: callH.gasUsed, accessListGas: alH.gasUsed }
  } finally {
    anvil.stop()
  }
})
