// Otterscan's ots_ namespace (API level 8) on the hemi devnet, differentially against anvil from
// npm: the same contracts and transactions from the same fresh account on both chains, then the
// ots_ answers Otterscan reads must agree (traces, internal operations, revert data, contract
// creators, a sender's transaction by nonce, an address's history, block details and pages).
import assert from 'node:assert/strict'
import { ContractFactory } from 'ethers'
import { compile } from './compile.mjs'
import { RPC_URL, devWallet, httpProvider, runScript, startAnvil, waitReceipt } from './lib.mjs'

const SENDER = 8 // an account no other script uses
const RECIPIENT = '0x000000000000000000000000000000000000c0de'
const SALT = '0x' + '42'.repeat(32)

async function scenario(provider) {
  const { OtsFactory } = await compile()
  const w = devWallet(SENDER, provider)
  const nonce = await provider.getTransactionCount(w.address)
  assert.equal(nonce, 0, `account ${SENDER} must be fresh on ${provider._getConnection().url}`)
  const fees = { maxFeePerGas: 10_000_000_000n, maxPriorityFeePerGas: 1n }
  const factory = await new ContractFactory(OtsFactory.abi, OtsFactory.bytecode, w).deploy({ ...fees, gasLimit: 2_000_000 })
  const deployed = await factory.deploymentTransaction().wait()
  const made = await factory.make(SALT, { ...fees, gasLimit: 1_000_000, value: 5n })
  const madeReceipt = await waitReceipt(made, 'make')
  const child = factory.interface.parseLog(madeReceipt.logs[0]).args.child
  const plain = await factory.makePlain({ ...fees, gasLimit: 1_000_000, value: 0n })
  const plainReceipt = await waitReceipt(plain, 'makePlain')
  const plainChild = factory.interface.parseLog(plainReceipt.logs[0]).args.child
  const paid = await factory.payThrough(child, RECIPIENT, { ...fees, gasLimit: 300_000, value: 3n })
  await waitReceipt(paid, 'payThrough')
  // A transaction that reverts: sent with a gas limit so no estimate refuses it first.
  const failing = await w.sendTransaction({ to: await factory.getAddress(), data: factory.interface.encodeFunctionData('fail'), gasLimit: 100_000, ...fees })
  const failed = await provider.waitForTransaction(failing.hash)
  assert.equal(failed.status, 0)
  return {
    sender: w.address,
    factory: await factory.getAddress(),
    child,
    plainChild,
    hashes: { deploy: deployed.hash, make: made.hash, plain: plain.hash, paid: paid.hash, failing: failing.hash },
    blocks: { make: madeReceipt.blockNumber, paid: failed.blockNumber },
  }
}

const lower = (o) => JSON.parse(JSON.stringify(o).toLowerCase())

await runScript('ots.mjs', async (step) => {
  const anvil = await startAnvil(['--silent', '--hardfork', 'prague'])
  try {
    const hemi = httpProvider(RPC_URL)
    const peer = httpProvider(anvil.url)
    const a = await step('scenario on hemi', () => scenario(hemi))
    const b = await step('scenario on anvil', () => scenario(peer))
    assert.equal(a.factory, b.factory)
    assert.equal(a.child, b.child)
    const both = (method, params) => Promise.all([hemi.send(method, params(a)), peer.send(method, params(b))])

    const [levelH, levelA] = await step('ots_getApiLevel', () => both('ots_getApiLevel', () => []))
    assert.equal(levelH, 8)
    assert.equal(levelH, levelA)
    const [hdrH] = await step('erigon_getHeaderByNumber', () => both('erigon_getHeaderByNumber', (s) => [s.blocks.make]))
    assert.equal(Number(hdrH.number), a.blocks.make)

    for (const [who, expect] of [['factory', true], ['sender', false]]) {
      const [h, p] = await step(`ots_hasCode ${who}`, () => both('ots_hasCode', (s) => [s[who], 'latest']))
      assert.equal(h, expect)
      assert.equal(h, p)
    }

    // Internal operations: the CREATE2 with value, the value forwarded through the child.
    for (const tx of ['make', 'plain', 'paid', 'failing']) {
      const [h, p] = await step(`ots_getInternalOperations ${tx}`, () => both('ots_getInternalOperations', (s) => [s.hashes[tx]]))
      assert.deepStrictEqual(lower(h), lower(p), `${tx}: hemi ${JSON.stringify(h)} anvil ${JSON.stringify(p)}`)
    }
    const [opsMake] = await both('ots_getInternalOperations', (s) => [s.hashes.make])
    assert.ok(opsMake.some((o) => o.type === 3 && o.to.toLowerCase() === a.child.toLowerCase() && BigInt(o.value) === 5n), JSON.stringify(opsMake))

    // Traces: every frame, depth first. hemi lists creation frames too, as reth does; anvil
    // 1.7.1 lists call frames only, so the calls are compared.
    const calls = (t) => t.filter((e) => !e.type.startsWith('CREATE'))
    for (const tx of ['make', 'paid', 'failing']) {
      const [h, p] = await step(`ots_traceTransaction ${tx}`, () => both('ots_traceTransaction', (s) => [s.hashes[tx]]))
      assert.deepStrictEqual(lower(calls(h)), lower(p), `${tx}: hemi ${JSON.stringify(h)} anvil ${JSON.stringify(p)}`)
    }
    const [traceMake] = await both('ots_traceTransaction', (s) => [s.hashes.make])
    const created = traceMake.find((e) => e.type === 'CREATE2')
    assert.ok(created && created.depth === 1 && created.to.toLowerCase() === a.child.toLowerCase() && BigInt(created.value) === 5n, JSON.stringify(traceMake))
    const [tracePaid] = await both('ots_traceTransaction', (s) => [s.hashes.paid])
    assert.deepStrictEqual(tracePaid.map((t) => [t.type, t.depth]), [['CALL', 0], ['CALL', 1], ['CALL', 2]])

    // The revert data of the failing transaction: Error("ots: nope").
    const [errH, errA] = await step('ots_getTransactionError', () => both('ots_getTransactionError', (s) => [s.hashes.failing]))
    assert.equal(errH, errA)
    assert.ok(errH.startsWith('0x08c379a0'), errH)
    const [okH] = await both('ots_getTransactionError', (s) => [s.hashes.paid])
    assert.equal(okH, '0x', 'a transaction that did not revert has no error data')

    // Contract creators: the factory made by the sender, the children by the factory.
    for (const [who, tx, by] of [['factory', 'deploy', 'sender'], ['child', 'make', 'factory'], ['plainChild', 'plain', 'factory']]) {
      const [h, p] = await step(`ots_getContractCreator ${who}`, () => both('ots_getContractCreator', (s) => [s[who]]))
      assert.deepStrictEqual(lower(h), lower(p))
      assert.equal(h.hash.toLowerCase(), a.hashes[tx].toLowerCase())
      assert.equal(h.creator.toLowerCase(), a[by].toLowerCase())
    }
    const [noneH] = await both('ots_getContractCreator', (s) => [s.sender])
    assert.equal(noneH, null, 'an account without code has no creator')

    // A sender's transaction by nonce.
    for (const [nonce, tx] of [[0, 'deploy'], [1, 'make'], [3, 'paid'], [4, 'failing']]) {
      const [h, p] = await step(`ots_getTransactionBySenderAndNonce ${nonce}`, () => both('ots_getTransactionBySenderAndNonce', (s) => [s.sender, nonce]))
      assert.equal(h.toLowerCase(), a.hashes[tx].toLowerCase())
      assert.equal(typeof p === 'string' ? p.toLowerCase() : p?.hash?.toLowerCase(), b.hashes[tx].toLowerCase())
    }
    const [future] = await both('ots_getTransactionBySenderAndNonce', (s) => [s.sender, 99])
    assert.equal(future, null)

    // The sender's history, newest first, on both chains.
    const order = ['failing', 'paid', 'plain', 'make', 'deploy']
    const [beforeH, beforeA] = await step('ots_searchTransactionsBefore', () => both('ots_searchTransactionsBefore', (s) => [s.sender, 0, 25]))
    assert.deepStrictEqual(beforeH.txs.map((t) => t.hash.toLowerCase()), order.map((k) => a.hashes[k].toLowerCase()))
    assert.deepStrictEqual(beforeA.txs.map((t) => t.hash.toLowerCase()), order.map((k) => b.hashes[k].toLowerCase()))
    assert.equal(beforeH.firstPage, true)
    assert.equal(beforeH.lastPage, true)
    assert.equal(beforeH.receipts.length, beforeH.txs.length)
    assert.equal(beforeH.receipts[0].status, '0x0')
    assert.ok(beforeH.receipts[0].timestamp !== undefined, JSON.stringify(beforeH.receipts[0]))
    const [afterH] = await step('ots_searchTransactionsAfter', () => both('ots_searchTransactionsAfter', (s) => [s.sender, 0, 25]))
    assert.deepStrictEqual(afterH.txs.map((t) => t.hash.toLowerCase()), order.map((k) => a.hashes[k].toLowerCase()))
    // A page of 2 stops early: the two newest, and not the last page.
    const [pageH] = await both('ots_searchTransactionsBefore', (s) => [s.sender, 0, 2])
    assert.ok(pageH.txs.length >= 2 && pageH.txs.length < order.length, JSON.stringify(pageH.txs.map((t) => t.hash)))
    assert.equal(pageH.lastPage, false)

    // Block details and a page of the block's transactions.
    const [detH, detA] = await step('ots_getBlockDetails', () => both('ots_getBlockDetails', (s) => [s.blocks.paid]))
    assert.deepStrictEqual(Object.keys(detH).sort(), Object.keys(detA).sort())
    assert.equal(detH.block.transactions, undefined)
    const full = await hemi.send('eth_getBlockByNumber', ['0x' + a.blocks.paid.toString(16), false])
    assert.equal(detH.block.transactionCount, full.transactions.length)
    assert.equal(detH.block.hash, full.hash)
    const receipts = await hemi.send('eth_getBlockReceipts', ['0x' + a.blocks.paid.toString(16)])
    const fees = receipts.reduce((s, r) => s + BigInt(r.gasUsed) * BigInt(r.effectiveGasPrice), 0n)
    assert.equal(BigInt(detH.totalFees), fees)
    const byHash = await hemi.send('ots_getBlockDetailsByHash', [full.hash])
    assert.deepStrictEqual(byHash, detH)
    const [pgH, pgA] = await step('ots_getBlockTransactions', () => both('ots_getBlockTransactions', (s) => [s.blocks.paid, 0, 25]))
    assert.deepStrictEqual(Object.keys(pgH).sort(), Object.keys(pgA).sort())
    assert.equal(pgH.fullblock.transactions.length, pgH.receipts.length)
    assert.equal(pgH.fullblock.transactionCount, full.transactions.length)
    assert.ok(pgH.fullblock.transactions.every((t) => t.input.length <= 10), 'inputs cut to the selector')
    assert.ok(pgH.receipts.every((r) => r.logs === null && r.timestamp !== undefined))

    const refused = (method, params) => hemi.send(method, params).then(() => null, (e) => e.message)
    assert.match(await refused('ots_traceTransaction', ['0x12']), /expected \[txHash\]/)
    assert.match(await refused('ots_getBlockTransactions', [1, 'x', 25]), /pageNumber/)
    assert.match(await refused('ots_searchTransactionsBefore', ['nope', 0, 25]), /expected \[address/)
    return { ok: true, traced: tracePaid.length, history: beforeH.txs.length, internalOps: opsMake.length }
  } finally {
    anvil.stop()
  }
})
