// Issue test 3: the npm `cast` binary, unchanged, against RPC_URL.
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { AbiCoder, concat, getAddress, id, parseEther, zeroPadValue } from 'ethers'
import { compile } from './compile.mjs'
import { RPC_URL, TIMEOUT_MS, devKey, devWallet, foundryBin, runScript } from './lib.mjs'

const CAST = foundryBin('cast')
const TRANSFER_TOPIC = id('Transfer(address,address,uint256)')

function cast(command, ...args) {
  const argv = [command, '--rpc-url', RPC_URL, ...args]
  const shown = `cast ${argv.map((a) => (a.length > 80 ? a.slice(0, 77) + '...' : a)).join(' ')}`
  return new Promise((resolve, reject) => {
    execFile(CAST, argv, { env: { ...process.env, ETH_RPC_URL: '' }, timeout: TIMEOUT_MS, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${shown} failed (${err.killed ? 'timed out' : `exit ${err.code}`}): ${stderr.trim() || stdout.trim()}`))
      else resolve(stdout.trim())
    })
  })
}

const castJson = async (command, ...args) => JSON.parse(await cast(command, '--json', ...args))
const firstToken = (out) => out.split(/\s+/)[0]

await runScript('cast.mjs', async (step) => {
  const alice = devWallet(0)
  const carol = devWallet(2)

  const chainId = await step('cast chain-id', async () => {
    const out = await cast('chain-id')
    assert.match(out, /^\d+$/, `chain-id: ${out}`)
    return Number(out)
  })

  const startBlock = await step('cast block-number', async () => {
    const out = await cast('block-number')
    assert.match(out, /^\d+$/, `block-number: ${out}`)
    return Number(out)
  })

  const carolBefore = await step('cast balance', async () => {
    const out = await cast('balance', carol.address)
    assert.match(out, /^\d+$/, `balance: ${out}`)
    return BigInt(out)
  })

  const ethSend = await step('cast send --value 1ether', async () => {
    const receipt = await castJson('send', '--private-key', devKey(0), carol.address, '--value', '1ether')
    assert.equal(receipt.status, '0x1', `status ${receipt.status}`)
    assert.equal(getAddress(receipt.to), carol.address)
    const after = BigInt(await cast('balance', carol.address))
    assert.equal(after - carolBefore, parseEther('1'), 'recipient balance must grow by 1 ether')
    return receipt
  })

  const supply = 10n ** 24n
  const token = await step('cast send --create TestToken', async () => {
    const { TestToken } = await compile()
    const args = AbiCoder.defaultAbiCoder().encode(['string', 'string', 'uint256'], ['Cast Token', 'CST', supply])
    const receipt = await castJson('send', '--private-key', devKey(0), '--create', concat([TestToken.bytecode, args]))
    assert.equal(receipt.status, '0x1', `status ${receipt.status}`)
    assert.ok(receipt.contractAddress, 'deployment receipt has a contractAddress')
    return { address: getAddress(receipt.contractAddress), block: Number(receipt.blockNumber) }
  })

  const amount = 4242n
  const transfer = await step('cast send transfer(address,uint256)', async () => {
    const receipt = await castJson('send', '--private-key', devKey(0), token.address, 'transfer(address,uint256)', carol.address, String(amount))
    assert.equal(receipt.status, '0x1', `status ${receipt.status}`)
    return receipt
  })

  await step('cast call balanceOf', async () => {
    const carolBal = firstToken(await cast('call', token.address, 'balanceOf(address)(uint256)', carol.address))
    assert.equal(BigInt(carolBal), amount)
    const aliceBal = firstToken(await cast('call', token.address, 'balanceOf(address)(uint256)', alice.address))
    assert.equal(BigInt(aliceBal), supply - amount)
  })

  await step('cast receipt', async () => {
    const receipt = await castJson('receipt', transfer.transactionHash)
    assert.equal(receipt.transactionHash, transfer.transactionHash)
    assert.equal(receipt.status, '0x1')
    assert.equal(receipt.blockNumber, transfer.blockNumber)
    assert.equal(receipt.logs.length, 1)
    assert.equal(receipt.logs[0].topics[0], TRANSFER_TOPIC)
    const status = await cast('receipt', transfer.transactionHash, 'status')
    assert.match(status, /^(1\b|true$)/, `cast receipt <tx> status: ${status}`)
  })

  const logs = await step('cast logs', async () => {
    const all = await castJson('logs', '--from-block', String(token.block), '--address', token.address, 'Transfer(address,address,uint256)')
    assert.equal(all.length, 2, `expected mint + transfer, got ${all.length}`)
    assert.deepEqual(
      all.map((l) => l.transactionHash),
      [all[0].transactionHash, transfer.transactionHash],
    )
    const filtered = await castJson(
      'logs',
      '--from-block', String(token.block),
      '--to-block', 'latest',
      '--address', token.address,
      'Transfer(address indexed from,address indexed to,uint256 value)',
      alice.address,
      carol.address,
    )
    assert.equal(filtered.length, 1)
    assert.equal(filtered[0].transactionHash, transfer.transactionHash)
    assert.deepEqual(filtered[0].topics, [TRANSFER_TOPIC, zeroPadValue(alice.address, 32).toLowerCase(), zeroPadValue(carol.address, 32).toLowerCase()])
    assert.equal(BigInt(filtered[0].data), amount)
    return all.length
  })

  const endBlock = await step('cast block-number (after)', async () => Number(await cast('block-number')))
  assert.ok(endBlock > startBlock, `chain must advance: ${startBlock} -> ${endBlock}`)

  return {
    script: 'cast.mjs',
    ok: true,
    rpc: RPC_URL,
    chainId,
    blocks: [startBlock, endBlock],
    ethSend: ethSend.transactionHash,
    token: token.address,
    tokenTransfer: transfer.transactionHash,
    logs,
  }
})
