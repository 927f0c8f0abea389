import { HDNodeWallet, JsonRpcProvider, Wallet } from 'ethers'
import { spawn } from 'node:child_process'
import { createRequire } from 'node:module'
import net from 'node:net'
import path from 'node:path'

export const RPC_URL = process.env.RPC_URL || 'http://127.0.0.1:8545'
export const WS_URL = process.env.WS_URL || RPC_URL.replace(/^http/, 'ws')
export const MNEMONIC = 'test test test test test test test test test test test junk'
export const TIMEOUT_MS = Number(process.env.TEST_TIMEOUT_MS || 30_000)

const root = HDNodeWallet.fromPhrase(MNEMONIC, undefined, "m/44'/60'/0'/0")

/** Private key of standard dev account `index` (m/44'/60'/0'/0/index). */
export function devKey(index) {
  return root.deriveChild(index).privateKey
}

export function devWallet(index, provider) {
  return new Wallet(devKey(index), provider)
}

export function httpProvider(url = RPC_URL) {
  const provider = new JsonRpcProvider(url, undefined, { batchMaxCount: 1, cacheTimeout: -1 })
  provider.pollingInterval = 250
  return provider
}

export function withTimeout(promise, label, ms = TIMEOUT_MS) {
  let timer
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms / 1000}s: ${label}`)), ms)
  })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

export async function waitReceipt(txResponse, label) {
  const receipt = await withTimeout(txResponse.wait(), `receipt of ${label} (${txResponse.hash})`)
  if (receipt.status !== 1) throw new Error(`${label} (${txResponse.hash}) failed with status ${receipt.status}`)
  return receipt
}

const FOUNDRY_ARCH = { x64: 'amd64', arm64: 'arm64' }

/**
 * Path of the prebuilt binary that the npm package @foundry-rs/<tool> installs for this platform
 * (the file its bin wrapper runs). It is run directly because the 1.7.1 wrapper always exits 0.
 */
export function foundryBin(tool) {
  const require = createRequire(createRequire(import.meta.url).resolve(`@foundry-rs/${tool}/package.json`))
  const pkg = `@foundry-rs/${tool}-${process.platform}-${FOUNDRY_ARCH[process.arch] ?? process.arch}`
  const exe = process.platform === 'win32' ? `${tool}.exe` : tool
  try {
    return require.resolve(`${pkg}/bin/${exe}`)
  } catch {
    throw new Error(`${pkg} is not installed: run npm ci in tests/js (platform ${process.platform}/${process.arch})`)
  }
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer()
    srv.once('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address()
      srv.close(() => resolve(port))
    })
  })
}

/** Starts anvil on a free port; resolves once it answers eth_chainId. */
export async function startAnvil(args = []) {
  const port = await freePort()
  const child = spawn(foundryBin('anvil'), ['--port', String(port), '--mnemonic', MNEMONIC, ...args], {
    stdio: ['ignore', 'ignore', 'pipe'],
  })
  let stderr = ''
  child.stderr.on('data', (d) => (stderr += d))
  const url = `http://127.0.0.1:${port}`
  const deadline = Date.now() + TIMEOUT_MS
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`anvil exited with ${child.exitCode}: ${stderr}`)
    try {
      const res = await fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'eth_chainId', params: [] }),
      })
      if (res.ok) return { url, child, stop: () => child.kill('SIGTERM') }
    } catch {}
    await new Promise((r) => setTimeout(r, 200))
  }
  child.kill('SIGKILL')
  throw new Error(`anvil did not answer on ${url} within ${TIMEOUT_MS / 1000}s: ${stderr}`)
}

/**
 * Runs `main(step)`, prints its result as one JSON line and exits 0, or prints
 * `<name>: FAIL in step "<step>": <error>` and exits 1. `step(label, fn)` names the work in `fn`.
 */
export async function runScript(name, main) {
  let current = 'setup'
  const step = async (label, fn) => {
    current = label
    return fn()
  }
  try {
    const summary = await main(step)
    console.log(JSON.stringify(summary))
    process.exit(0)
  } catch (e) {
    console.error(`${name}: FAIL in step "${current}": ${e?.stack || e}`)
    process.exit(1)
  }
}

/**
 * A differential script: runs `exercise(provider)` on the hemi devnet (RPC_URL), then on a fresh
 * anvil from npm, requires both results to be deep-equal, and prints `{ok: true, …result}`.
 */
export async function differentialAgainstAnvil(name, exercise) {
  const assert = (await import('node:assert/strict')).default
  await runScript(name, async (step) => {
    const anvil = await startAnvil(['--silent'])
    try {
      const hemi = await step('on hemi', () => exercise(httpProvider(RPC_URL)))
      const peer = await step('on anvil', () => exercise(httpProvider(anvil.url)))
      assert.deepStrictEqual(hemi, peer)
      return { ok: true, ...hemi }
    } finally {
      anvil.stop()
    }
  })
}
