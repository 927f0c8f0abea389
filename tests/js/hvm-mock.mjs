// Checks the Hvm library's encoding and decoding on a private anvil whose 0x40-0x49 hold mock
// contracts (anvil_setCode) that return byte strings laid out as docs/HVM_PRECOMPILES.md says.
import assert from 'node:assert/strict'
import { ContractFactory, concat, hexlify, isError, toBeHex, toUtf8Bytes, zeroPadValue } from 'ethers'
import { compile } from './compile.mjs'
import { devWallet, httpProvider, runScript, startAnvil, waitReceipt } from './lib.mjs'

const be = (value, bytes) => zeroPadValue(toBeHex(value), bytes)
const hex = (s) => '0x' + s

/** Runtime code that returns `data` whatever the input. */
function returning(data) {
  const len = (data.length - 2) / 2
  return concat(['0x61', be(len, 2), '0x61', be(13, 2), '0x5f39', '0x61', be(len, 2), '0x5ff3', data])
}
const ECHO = '0x365f5f37365ff3'
const REVERT = '0x5f5ffd'

const header = {
  height: 883092,
  hash: '000000000000000000006e4855d5adfaefb7611c9446eb41ceb8a9327188eda8',
  version: 0x20000000,
  prevHash: '00000000000000000001a5e0f8c2d2ee1b6c8fb1e6c4c1b1f7b0a5f4a1c3d2e1',
  merkleRoot: '4a5e1e4baab89f3a32518a88c31bc87f618f76673e2cc77ab2127b7afdeda33b',
  time: 1740000000,
  bits: 0x17027726,
  nonce: 0x9abcdef0,
}
const headerRecord = concat([
  be(header.height, 4), hex(header.hash), be(header.version, 4), hex(header.prevHash),
  hex(header.merkleRoot), be(header.time, 4), be(header.bits, 4), be(header.nonce, 4),
])
const txid = hex('f4184fc596403b9d638783cf57adfe4c75c605f6356fbc91338530e9831e9e16')
const utxoTxids = [hex('11'.repeat(32)), hex('22'.repeat(32))]
const input = { witnessItemCount: 2, value: 5_000_000_000n, prevTxid: hex('0437cd7f8525ceed2324359c2d0ba26006d92d856a9c20fa0241106ee5a597c9'), prevIndex: 1, scriptSig: '0xabcdef', sequence: 0xfffffffd }
const output = { value: 1_000_000_000n, script: '0x0014' + '33'.repeat(20) }
const witnessItem = '0x0102030405'

const mocks = {
  '0x40': returning(be(123_456_789n, 8)),
  '0x41': returning(concat(['0x02', utxoTxids[0], be(0, 2), be(1000, 8), utxoTxids[1], be(7, 2), be(2000, 8)])),
  '0x42': ECHO,
  '0x43': returning(be(6, 4)),
  '0x44': returning(headerRecord),
  '0x45': returning(headerRecord),
  '0x46': ECHO,
  '0x47': returning(concat([be(input.witnessItemCount, 2), be(input.value, 8), input.prevTxid, be(input.prevIndex, 2), be(3, 2), input.scriptSig, be(input.sequence, 4)])),
  '0x48': returning(concat([be(output.value, 8), be(22, 2), output.script, '0x01'])),
  '0x49': returning(concat([be(5, 2), witnessItem])),
}

const revertName = (e) => (isError(e, 'CALL_EXCEPTION') && e.revert ? `${e.revert.name}(${e.revert.args.join(',')})` : `not a decoded revert: ${e.message}`)

await runScript('hvm-mock.mjs', async (step) => {
  const anvil = await startAnvil(['--silent'])
  try {
    const provider = httpProvider(anvil.url)
    const { HvmReader } = await step('compile', compile)
    const reader = await step('deploy HvmReader', async () => {
      const c = await new ContractFactory(HvmReader.abi, HvmReader.bytecode, devWallet(0, provider)).deploy()
      await waitReceipt(c.deploymentTransaction(), 'HvmReader deployment')
      return c
    })

    await step('no code at 0x45: tryHeaderN finds nothing, lastHeader reverts HvmNoResult', async () => {
      const [found] = await reader.headerN(5)
      assert.equal(found, false)
      await assert.rejects(reader.lastHeader(), (e) => revertName(e) === 'HvmNoResult(0x0000000000000000000000000000000000000044)')
    })

    await step('anvil_setCode mocks', async () => {
      for (const [addr, code] of Object.entries(mocks)) await provider.send('anvil_setCode', [zeroPadValue(addr, 20), code])
    })

    await step('0x40 balance', async () => assert.equal(await reader.btcBalance('bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq'), 123_456_789n))

    await step('0x41 utxos', async () => {
      const list = await reader.btcUtxos('bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq', 0, 10)
      assert.deepEqual(list.map((u) => [u.txid, Number(u.vout), u.value]), [[utxoTxids[0], 0, 1000n], [utxoTxids[1], 7, 2000n]])
    })

    await step('0x42 input bytes (echo)', async () => {
      assert.equal(await reader.txByTxid(txid, '0x78000000'), concat([txid, '0x78000000']))
      await assert.rejects(reader.txInfo(txid), (e) => revertName(e) === 'HvmMalformedResult(0x0000000000000000000000000000000000000042,36)')
    })

    await step('0x43 confirmations', async () => assert.equal(await reader.txConfirmations(txid), 6n))

    await step('0x44 lastHeader', async () => {
      const h = await reader.lastHeader()
      assert.deepEqual(
        { height: Number(h.height), hash: h.hash.slice(2), version: Number(h.version), prevHash: h.prevHash.slice(2), merkleRoot: h.merkleRoot.slice(2), time: Number(h.time), bits: Number(h.bits), nonce: Number(h.nonce) },
        header,
      )
      const receipt = await waitReceipt(await reader.recordLastHeader(), 'recordLastHeader()')
      const ev = reader.interface.parseLog(receipt.logs[0])
      assert.equal(Number(ev.args.height), header.height)
      assert.equal(ev.args.hash, hex(header.hash))
      assert.equal(await reader.recordedHash(), hex(header.hash))
    })

    await step('0x45 headerN', async () => {
      const [found, h] = await reader.headerN(883092)
      assert.equal(found, true)
      assert.equal(h.hash, hex(header.hash))
    })

    await step('0x46 addrToScript input bytes (echo)', async () => {
      const addr = 'tb1qw508d6qejxtdg4y5r3zarvary0c5xw7kxpjzsx'
      assert.equal(await reader.addrToScript(addr), hexlify(toUtf8Bytes(addr)))
    })

    await step('0x47 inputByTxid', async () => {
      const r = await reader.inputByTxid(txid, 0, 100)
      assert.equal(Number(r.witnessItemCount), input.witnessItemCount)
      assert.equal(r.value, input.value)
      assert.equal(r.prevTxid, input.prevTxid)
      assert.equal(Number(r.prevIndex), input.prevIndex)
      assert.equal(Number(r.scriptSigLength), 3)
      assert.equal(r.scriptSig, input.scriptSig)
      assert.equal(Number(r.sequence), input.sequence)
      await assert.rejects(reader.inputByTxid(txid, 0, 2), (e) => revertName(e).startsWith('HvmMalformedResult(0x0000000000000000000000000000000000000047,'))
    })

    await step('0x48 outputByTxid', async () => {
      const r = await reader.outputByTxid(txid, 0, 100)
      assert.equal(r.value, output.value)
      assert.equal(Number(r.scriptLength), 22)
      assert.equal(r.script, output.script)
      assert.equal(r.unspent, true)
    })

    await step('0x49 txInputWitness', async () => {
      const [len, item] = await reader.txInputWitness(txid, 0, 1, 64)
      assert.equal(Number(len), 5)
      assert.equal(item, witnessItem)
    })

    await step('failing precompile reverts HvmCallFailed', async () => {
      await provider.send('anvil_setCode', [zeroPadValue('0x43', 20), REVERT])
      await assert.rejects(reader.txConfirmations(txid), (e) => revertName(e) === 'HvmCallFailed(0x0000000000000000000000000000000000000043)')
    })

    return { script: 'hvm-mock.mjs', ok: true, precompiles: Object.keys(mocks).length }
  } finally {
    anvil.stop()
  }
})
