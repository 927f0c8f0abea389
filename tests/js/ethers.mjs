// Issue test 1: ethers v6 against RPC_URL (HTTP) and WS_URL (WebSocket).
import assert from 'node:assert/strict'
import { Contract, ContractFactory, WebSocketProvider, id, parseEther, parseUnits, zeroPadValue } from 'ethers'
import { compile } from './compile.mjs'
import { RPC_URL, WS_URL, devWallet, httpProvider, runScript, waitReceipt, withTimeout } from './lib.mjs'

const TRANSFER_TOPIC = id('Transfer(address,address,uint256)')

await runScript('ethers.mjs', async (step) => {
  const provider = httpProvider()
  const alice = devWallet(0, provider)
  const bob = devWallet(1, provider)

  const chainId = await step('eth_chainId', () => withTimeout(provider.getNetwork(), 'eth_chainId').then((n) => n.chainId))

  const ethValue = parseEther('1.5')
  const ethReceipt = await step('ETH transfer', async () => {
    const [aliceBefore, bobBefore] = await Promise.all([provider.getBalance(alice.address), provider.getBalance(bob.address)])
    const receipt = await waitReceipt(await alice.sendTransaction({ to: bob.address, value: ethValue }), 'ETH transfer')
    const [aliceAfter, bobAfter] = await Promise.all([provider.getBalance(alice.address), provider.getBalance(bob.address)])
    assert.equal(bobAfter - bobBefore, ethValue, 'recipient balance must grow by the value sent')
    assert.equal(aliceBefore - aliceAfter, ethValue + receipt.gasUsed * receipt.gasPrice, 'sender pays value + gasUsed * effectiveGasPrice')
    return receipt
  })

  const { TestToken } = await step('compile', compile)
  const supply = parseUnits('1000000', 18)
  const token = await step('deploy TestToken', async () => {
    const factory = new ContractFactory(TestToken.abi, TestToken.bytecode, alice)
    const contract = await factory.deploy('Test Token', 'TST', supply)
    await waitReceipt(contract.deploymentTransaction(), 'TestToken deployment')
    assert.equal(await contract.totalSupply(), supply)
    assert.equal(await contract.balanceOf(alice.address), supply)
    return contract
  })
  const tokenAddress = await token.getAddress()
  const deployBlock = (await token.deploymentTransaction().wait()).blockNumber

  const amount = parseUnits('123.45', 18)
  const transferReceipt = await step('token transfer', async () => {
    const receipt = await waitReceipt(await token.transfer(bob.address, amount), 'token transfer')
    assert.equal(await token.balanceOf(bob.address), amount)
    assert.equal(await token.balanceOf(alice.address), supply - amount)
    return receipt
  })

  await step('eth_getLogs', async () => {
    const byTopic = await withTimeout(
      provider.getLogs({ address: tokenAddress, topics: [TRANSFER_TOPIC], fromBlock: deployBlock, toBlock: 'latest' }),
      'eth_getLogs by address + topic0',
    )
    assert.equal(byTopic.length, 2, `expected mint + transfer logs, got ${byTopic.length}`)
    const exact = await withTimeout(
      provider.getLogs({
        address: tokenAddress,
        topics: [TRANSFER_TOPIC, zeroPadValue(alice.address, 32), zeroPadValue(bob.address, 32)],
        fromBlock: transferReceipt.blockNumber,
        toBlock: transferReceipt.blockNumber,
      }),
      'eth_getLogs by address + from/to topics',
    )
    assert.equal(exact.length, 1, `expected exactly the transfer log, got ${exact.length}`)
    assert.equal(exact[0].transactionHash, transferReceipt.hash)
    assert.equal(BigInt(exact[0].data), amount)
    const noMatch = await provider.getLogs({
      address: tokenAddress,
      topics: [TRANSFER_TOPIC, zeroPadValue(bob.address, 32)],
      fromBlock: deployBlock,
      toBlock: 'latest',
    })
    assert.equal(noMatch.length, 0, 'no Transfer from bob yet')
  })

  const ws = new WebSocketProvider(WS_URL)
  try {
    const blocks = await step('WS newHeads (provider.on block)', async () => {
      const seen = []
      const done = new Promise((resolve) => {
        ws.on('block', (n) => {
          seen.push(n)
          if (seen.length === 3) resolve()
        })
      })
      await withTimeout(done, 'three block events over WS')
      for (let i = 1; i < seen.length; i++) assert.ok(seen[i] > seen[i - 1], `block numbers must increase: ${seen}`)
      return seen.slice(0, 3)
    })

    const event = await step('WS Transfer subscription', async () => {
      const wsToken = new Contract(tokenAddress, TestToken.abi, ws)
      const wsAmount = parseUnits('7', 18)
      let resolveEvent
      const got = new Promise((resolve) => (resolveEvent = resolve))
      await wsToken.on('Transfer', (from, to, value, ev) => resolveEvent({ from, to, value, log: ev.log }))
      await withTimeout(new Promise((resolve) => ws.once('block', resolve)), 'a block after subscribing')
      const receipt = await waitReceipt(await token.transfer(bob.address, wsAmount), 'token transfer for WS')
      const ev = await withTimeout(got, `Transfer event over WS for ${receipt.hash}`)
      assert.equal(ev.log.transactionHash, receipt.hash)
      assert.equal(ev.from, alice.address)
      assert.equal(ev.to, bob.address)
      assert.equal(ev.value, wsAmount)
      await wsToken.removeAllListeners()
      return { txHash: receipt.hash, blockNumber: ev.log.blockNumber }
    })

    return {
      script: 'ethers.mjs',
      ok: true,
      rpc: RPC_URL,
      ws: WS_URL,
      chainId: Number(chainId),
      ethTransfer: ethReceipt.hash,
      token: tokenAddress,
      tokenTransfer: transferReceipt.hash,
      wsBlocks: blocks,
      wsTransferEvent: event,
    }
  } finally {
    await ws.destroy()
  }
})
