// The built-in explorer (GET /explorer) in a real headless Chromium (Debian's, driven by
// playwright-core): every page a developer opens, its numbers checked against the JSON-RPC the
// same moment, a search, live updates over the WebSocket, and screenshots kept as artifacts.
//
// Environment: RPC_URL (the devnet), DEPOSITS (comma-separated Bitcoin txids of minted,
// anchored deposits), SCREENSHOT_DIR (where the PNGs go), HEMI_CHROMIUM (default
// /usr/bin/chromium).
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { chromium } from 'playwright-core'
import { RPC_URL, httpProvider, runScript } from './lib.mjs'

const DEPOSITS = (process.env.DEPOSITS || '').split(',').filter(Boolean)
const SHOTS = process.env.SCREENSHOT_DIR || 'build/screenshots'
const num = (h) => Number(BigInt(h))

await runScript('explorer.mjs', async (step) => {
  fs.mkdirSync(SHOTS, { recursive: true })
  const rpc = httpProvider(RPC_URL)
  const browser = await chromium.launch({
    executablePath: process.env.HEMI_CHROMIUM || '/usr/bin/chromium',
    chromiumSandbox: false,
    args: ['--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  })
  const shots = []
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } })
    const errors = []
    page.on('pageerror', (e) => errors.push(e.message))
    const text = async (key) => (await page.locator(`[data-k="${key}"]`).first().textContent()).trim()
    const open = async (hash, key) => {
      await page.goto(`${RPC_URL}/explorer#${hash}`)
      await page.waitForSelector(`[data-k="${key}"]`, { timeout: 30_000 })
    }
    const shot = async (name) => {
      const file = path.join(SHOTS, `${name}.png`)
      await page.screenshot({ path: file, fullPage: true })
      shots.push(file)
    }

    // The chain page: head, safe, finalized, Bitcoin tip and keystones between the RPC's
    // answers just before and just after it is read.
    const before = await step('RPC before', async () => ({ head: num(await rpc.send('eth_blockNumber', [])), status: await rpc.send('hemi_nodeStatus', []), tip: await rpc.send('hemi_btcTip', []) }))
    await step('chain page', () => open('/', 'head'))
    const shown = { head: Number(await text('head')), safe: Number(await text('safe')), finalized: Number(await text('finalized')), tip: Number(await text('btc-tip')), keystones: Number(await text('keystones')) }
    const after = { head: num(await rpc.send('eth_blockNumber', [])), status: await rpc.send('hemi_nodeStatus', []), tip: await rpc.send('hemi_btcTip', []) }
    const within = (what, v, lo, hi) => assert.ok(lo <= v && v <= hi, `${what}: page shows ${v}, RPC ${lo}..${hi}`)
    within('head', shown.head, before.head, after.head)
    within('safe', shown.safe, before.status.finality.safe, after.status.finality.safe)
    within('finalized', shown.finalized, before.status.finality.finalized, after.status.finality.finalized)
    within('Bitcoin tip', shown.tip, before.tip.height, after.tip.height)
    within('keystones', shown.keystones, before.status.finality.keystones, after.status.finality.keystones)
    assert.equal(await page.locator('[data-k="block-row"]').count(), Math.min(12, shown.head + 1))
    await shot('chain')

    // Live: the head moves without a reload (newHeads over the WebSocket).
    await step('live update', () => page.waitForFunction((h) => Number(document.querySelector('[data-k="head"]')?.textContent) > h, shown.head, { timeout: 30_000 }))
    assert.match(await page.locator('#live').textContent(), /live · block \d+/)

    // A superfinal keystone block: its ladder equals hemi_getFinality, its pin the 0x7C's.
    const keystones = await rpc.send('hemi_getLatestKeystones', [50])
    const ks = keystones.find((k) => k.publication) ?? assert.fail('no published keystone')
    const k = ks.l2BlockNumber
    const fin = await rpc.send('hemi_getFinality', ['0x' + k.toString(16)])
    await step('block page', () => open(`/block/${k}`, 'ladder-keystone'))
    assert.equal(Number(await text('ladder-block')), k)
    assert.equal(Number(await text('ladder-keystone')), fin.keystone.l2BlockNumber)
    assert.equal(await text('ladder-pub-txid'), fin.effectivePublication.txid)
    assert.equal(Number(await text('ladder-pub-height')), fin.effectivePublication.height)
    assert.equal(Number(await text('ladder-confirmations')), fin.effectiveConfirmations)
    assert.equal(Number(await text('ladder-depth')), fin.superfinalityDepth)
    assert.equal(await text('ladder-superfinal'), fin.superFinality ? 'superfinal' : 'not superfinal yet')
    const block = await rpc.send('eth_getBlockByNumber', ['0x' + k.toString(16), true])
    const word = block.transactions[0].input.slice(10, 74)
    const pinned = await rpc.send('hemi_btcHeader', [word.match(/../g).reverse().join('')])
    assert.equal(Number(await text('block-pin')), pinned.height)
    await shot('block-finality-ladder')

    // Keystones: every row is one of the node's, newest first.
    await step('keystones page', () => open('/keystones', 'keystone-row'))
    const rows = await page.locator('[data-k="keystone-row"] td:first-child').allTextContents()
    const known = new Map((await rpc.send('hemi_getLatestKeystones', [50])).map((x) => [x.l2BlockNumber, x]))
    assert.ok(rows.length > 0)
    for (const r of rows) assert.ok(known.has(Number(r)), `keystone ${r} on the page is not the node's`)
    assert.deepStrictEqual(rows.map(Number), [...rows.map(Number)].sort((x, y) => y - x))

    // Bitcoin: the tip, ten recent blocks, the PoP transactions.
    await step('bitcoin page', () => open('/bitcoin', 'bitcoin-tip'))
    assert.equal(Number(await text('bitcoin-tip')), (await rpc.send('hemi_btcTip', [])).height)
    assert.equal(await page.locator('[data-k="bitcoin-row"]').count(), 10)

    // The tunnel: each minted deposit listed.
    await step('tunnel page', () => open('/tunnel', 'deposit-row'))
    const tunnelText = await page.locator('[data-k="deposit-row"]').allTextContents()
    for (const txid of DEPOSITS) assert.ok(tunnelText.some((t) => t.includes(txid)), `deposit ${txid} not listed`)
    await shot('tunnel')

    // Each deposit's provenance: the node's verifier's verdict and numbers, as the RPC gives them.
    for (const [i, txid] of DEPOSITS.entries()) {
      const status = await rpc.send('hemi_getDeposit', [txid])
      const report = await rpc.send('hemi_verifyProvenance', [await rpc.send('hemi_getProvenance', [txid])])
      await step(`deposit page ${txid}`, () => open(`/deposit/${txid}`, 'provenance-verdict'))
      assert.equal(await text('deposit-status'), status.status)
      assert.equal(await text('provenance-verdict'), report.superfinal ? 'verified, superfinal' : 'verified')
      assert.equal(Number(await text('provenance-mint-block')), status.mintedIn.block)
      assert.equal(Number(await text('provenance-mint-block')), report.mintBlock)
      assert.equal(Number(await text('provenance-keystone-block')), report.keystoneBlock)
      assert.equal(Number(await text('provenance-pop-confirmations')), report.popConfirmations)
      assert.equal(Number(await text('provenance-deposit-confirmations')), report.depositConfirmations)
      if (i === 0) await shot('deposit-provenance')
    }

    // Search: a block number, an address, a transaction hash.
    await step('search', async () => {
      await open('/', 'head')
      await page.fill('input[name=q]', String(k))
      await page.press('input[name=q]', 'Enter')
      await page.waitForFunction((n) => location.hash === `#/block/${n}`, k)
      await page.waitForSelector('[data-k="ladder-block"]')
      const mint = (await rpc.send('hemi_getDeposit', [DEPOSITS[0]])).mintedIn.transactionHash
      await page.fill('input[name=q]', mint)
      await page.press('input[name=q]', 'Enter')
      await page.waitForFunction((h) => location.hash === `#/tx/${h}`, mint)
    })
    assert.deepStrictEqual(errors, [], 'no script errors on any page')
    return { ok: true, head: shown.head, keystone: k, deposits: DEPOSITS.length, screenshots: shots }
  } finally {
    await browser.close()
  }
})
