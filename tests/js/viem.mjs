// viem (npm, unchanged) against the hemi devnet: an ETH transfer, an ERC-20 deployed, read,
// transferred, simulated and its events filtered, full blocks with hemi's system transaction,
// fee history, and new blocks watched over the WebSocket.
import assert from 'node:assert/strict'
import { createPublicClient, createWalletClient, defineChain, http, webSocket, parseEther, parseUnits } from 'viem'
import { privateKeyToAccount } from 'viem/accounts'
import { compile } from './compile.mjs'
import { RPC_URL, WS_URL, devKey, runScript, withTimeout } from './lib.mjs'

const hemi = defineChain({
  id: 31337,
  name: 'hemi-rs devnet',
  nativeCurrency: { name: 'Ether', symbol: 'ETH', decimals: 18 },
  rpcUrls: { default: { http: [RPC_URL], webSocket: [WS_URL] } },
})

await runScript('viem.mjs', async (step) => {
  const account = privateKeyToAccount(devKey(5))
  const to = privateKeyToAccount(devKey(6)).address
  const pub = createPublicClient({ chain: hemi, transport: http(RPC_URL) })
  const wallet = createWalletClient({ account, chain: hemi, transport: http(RPC_URL) })

  assert.equal(await step('getChainId', () => pub.getChainId()), 31337)
  const value = parseEther('0.25')
  const transfer = await step('ETH transfer', async () => {
    const before = await pub.getBalance({ address: to })
    const hash = await wallet.sendTransaction({ to, value })
    const receipt = await withTimeout(pub.waitForTransactionReceipt({ hash }), 'transfer receipt')
    assert.equal(receipt.status, 'success')
    assert.equal((await pub.getBalance({ address: to })) - before, value)
    return receipt
  })

  const { TestToken } = await step('compile', compile)
  const supply = parseUnits('1000', 18)
  const token = await step('deploy TestToken', async () => {
    const hash = await wallet.deployContract({ abi: TestToken.abi, bytecode: TestToken.bytecode, args: ['Viem Token', 'VTK', supply] })
    const receipt = await withTimeout(pub.waitForTransactionReceipt({ hash }), 'deploy receipt')
    assert.equal(receipt.status, 'success')
    assert.ok(receipt.contractAddress)
    return receipt.contractAddress
  })
  const read = (functionName, args = []) => pub.readContract({ address: token, abi: TestToken.abi, functionName, args })
  assert.equal(await step('totalSupply', () => read('totalSupply')), supply)
  assert.equal(await read('symbol'), 'VTK')

  const amount = parseUnits('12.5', 18)
  const sent = await step('simulate + write transfer', async () => {
    const { request, result } = await pub.simulateContract({ account, address: token, abi: TestToken.abi, functionName: 'transfer', args: [to, amount] })
    assert.equal(result, true)
    const hash = await wallet.writeContract(request)
    return withTimeout(pub.waitForTransactionReceipt({ hash }), 'transfer receipt')
  })
  assert.equal(await read('balanceOf', [to]), amount)
  assert.equal(await read('balanceOf', [account.address]), supply - amount)

  const events = await step('getContractEvents', () => pub.getContractEvents({ address: token, abi: TestToken.abi, eventName: 'Transfer', fromBlock: sent.blockNumber, toBlock: sent.blockNumber }))
  assert.equal(events.length, 1)
  assert.equal(events[0].args.to, to)
  assert.equal(events[0].args.value, amount)

  const tooMuch = await step('a reverting simulation', () => pub.simulateContract({ account, address: token, abi: TestToken.abi, functionName: 'transfer', args: [to, supply * 2n] }).then(() => null, (e) => e))
  assert.ok(tooMuch, 'a transfer above the balance must not simulate')
  assert.equal(tooMuch.name, 'ContractFunctionExecutionError', String(tooMuch))

  const block = await step('full block', () => pub.getBlock({ blockNumber: transfer.blockNumber, includeTransactions: true }))
  assert.equal(block.hash, transfer.blockHash)
  assert.ok(block.transactions.some((t) => t.hash === transfer.transactionHash))
  const fees = await step('fee history', () => pub.getFeeHistory({ blockCount: 4, rewardPercentiles: [50] }))
  assert.equal(fees.baseFeePerGas.length, 5)
  const gas = await step('estimateGas', () => pub.estimateGas({ account, to, value: 1n }))
  assert.equal(gas, 21000n)

  const ws = createPublicClient({ chain: hemi, transport: webSocket(WS_URL) })
  const start = await pub.getBlockNumber()
  const seen = await step('watchBlockNumber over WebSocket', () => withTimeout(new Promise((resolve) => {
    const stop = ws.watchBlockNumber({ onBlockNumber: (n) => { if (n > start) { stop(); resolve(n) } } })
  }), 'a new block over WebSocket'))
  assert.ok(seen > start)
  return { ok: true, token, transferBlock: Number(transfer.blockNumber), events: events.length, newBlock: Number(seen) }
})
