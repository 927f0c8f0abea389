// anvil's clock and mining tools on the hemi devnet, differentially against anvil: the same
// calls (evm_setNextBlockTimestamp, evm_increaseTime, evm_mine, anvil_mine, hardhat_mine) must
// move each chain's block numbers and timestamps the same way, and the same bad call must be
// refused by both.
import assert from 'node:assert/strict'
import { differentialAgainstAnvil } from './lib.mjs'

async function exercise(p) {
  const latest = async () => {
    const b = await p.send('eth_getBlockByNumber', ['latest', false])
    return { number: Number(b.number), timestamp: Number(b.timestamp) }
  }
  const out = {}
  const start = await latest()
  const target = start.timestamp + 1000
  assert.equal(await p.send('evm_setNextBlockTimestamp', [target]), null)
  await p.send('evm_mine', [])
  const exact = await latest()
  out.exactTimestamp = exact.timestamp === target
  out.pastRefused = await p.send('evm_setNextBlockTimestamp', [exact.timestamp - 5]).then(() => false, (e) => /-32602/.test(e.message) && /is lower than previous block's timestamp/.test(e.message))
  const total = await p.send('evm_increaseTime', [3600])
  out.increaseAnswer = typeof total === 'number' && total >= 3600
  await p.send('evm_mine', [])
  const later = await latest()
  out.jumpedAnHour = later.timestamp - exact.timestamp >= 3600
  assert.equal(await p.send('anvil_mine', ['0x3']), null)
  const mined = await latest()
  // The devnet also makes a block every block time: at least the blocks asked for.
  out.minedThree = mined.number - later.number >= 3
  await p.send('hardhat_mine', ['0x2', '0x3c'])
  const spaced = await latest()
  const first = await p.send('eth_getBlockByNumber', ['0x' + (mined.number + 1).toString(16), false])
  out.minedTwo = spaced.number - mined.number >= 2
  out.spacedByInterval = spaced.timestamp - Number(first.timestamp) >= 60
  return out
}

await differentialAgainstAnvil('anvil-tools.mjs', exercise)
