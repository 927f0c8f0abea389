// Issue test 2: HvmReader against the hVM precompiles. Prints what the contract returns for
// BTC_ADDRESS (balance, script) and BTC_TXID (confirmations; hex as Bitcoin displays it), the
// last header, and the values emitted by one recordLastHeader() transaction.
import { ContractFactory, isError } from 'ethers'
import { compile } from './compile.mjs'
import { RPC_URL, devWallet, httpProvider, runScript, waitReceipt, withTimeout } from './lib.mjs'

const BTC_ADDRESS = process.env.BTC_ADDRESS || ''
const BTC_TXID = (process.env.BTC_TXID || '').replace(/^0x/, '').toLowerCase()
if (BTC_TXID && !/^[0-9a-f]{64}$/.test(BTC_TXID)) {
  console.error(`hvm.mjs: FAIL: BTC_TXID must be 64 hex characters, got "${process.env.BTC_TXID}"`)
  process.exit(1)
}

const display = (bytes32) => bytes32.slice(2)

const HINTS = {
  HvmNoResult: 'the precompile returned no data: the chain has no hVM precompiles (e.g. anvil), or it has no Bitcoin data for this query',
  HvmCallFailed: 'the precompile call failed: unknown txid (0x43), header lookup failure (0x44), invalid address (0x46) or out of gas',
  HvmMalformedResult: 'the precompile returned bytes that do not match docs/HVM_PRECOMPILES.md',
}

function explain(label, e, client) {
  if (isError(e, 'CALL_EXCEPTION') && e.revert) {
    const args = e.revert.args.map(String).join(', ')
    const onAnvil = /anvil/i.test(client) ? ` (client is ${client}, which has no hVM precompiles)` : ''
    return new Error(`${label} reverted with ${e.revert.name}(${args}): ${HINTS[e.revert.name] ?? e.revert.signature}${onAnvil}`)
  }
  return new Error(`${label}: ${e.shortMessage ?? e.message}`)
}

await runScript('hvm.mjs', async (step) => {
  const provider = httpProvider()
  const wallet = devWallet(0, provider)
  const client = await step('web3_clientVersion', () => provider.send('web3_clientVersion', []).catch(() => 'unknown'))
  const { chainId } = await step('eth_chainId', () => withTimeout(provider.getNetwork(), 'eth_chainId'))

  const { HvmReader } = await step('compile', compile)
  const reader = await step('deploy HvmReader', async () => {
    const contract = await new ContractFactory(HvmReader.abi, HvmReader.bytecode, wallet).deploy()
    await waitReceipt(contract.deploymentTransaction(), 'HvmReader deployment')
    return contract
  })

  const call = (label, fn) =>
    step(label, async () => {
      try {
        return await withTimeout(fn(), label)
      } catch (e) {
        throw explain(label, e, client)
      }
    })

  const blockNumber = await step('eth_blockNumber', () => provider.getBlockNumber())
  const at = { blockTag: blockNumber }
  const result = {
    script: 'hvm.mjs',
    ok: true,
    rpc: RPC_URL,
    client,
    chainId: Number(chainId),
    contract: await reader.getAddress(),
    blockNumber,
  }

  const h = await call('lastHeader()', () => reader.lastHeader(at))
  result.lastHeader = {
    height: Number(h.height),
    hash: display(h.hash),
    version: Number(h.version),
    prevHash: display(h.prevHash),
    merkleRoot: display(h.merkleRoot),
    time: Number(h.time),
    bits: Number(h.bits),
    nonce: Number(h.nonce),
  }

  if (BTC_ADDRESS) {
    result.btcAddress = BTC_ADDRESS
    result.balance = Number(await call(`btcBalance("${BTC_ADDRESS}")`, () => reader.btcBalance(BTC_ADDRESS, at)))
    result.scriptPubKey = (await call(`addrToScript("${BTC_ADDRESS}")`, () => reader.addrToScript(BTC_ADDRESS, at))).slice(2)
  }
  if (BTC_TXID) {
    result.btcTxid = BTC_TXID
    result.confirmations = Number(await call(`txConfirmations(${BTC_TXID})`, () => reader.txConfirmations('0x' + BTC_TXID, at)))
  }

  result.record = await call('recordLastHeader() transaction', async () => {
    const receipt = await waitReceipt(await reader.recordLastHeader(), 'recordLastHeader()')
    const ev = receipt.logs.map((l) => reader.interface.parseLog(l)).find((l) => l?.name === 'LastHeaderRecorded')
    if (!ev) throw new Error(`recordLastHeader() receipt ${receipt.hash} has no LastHeaderRecorded event`)
    return { txHash: receipt.hash, blockNumber: receipt.blockNumber, height: Number(ev.args.height), hash: display(ev.args.hash) }
  })

  return result
})
