// forge (npm @foundry-rs/forge, unchanged) against the hemi devnet: tests/forge builds with
// solc-js standing in for a native solc (solc-forge.mjs), `forge create` deploys a contract with
// constructor arguments, and `forge script --broadcast` runs a deployment script; ethers reads
// the results back.
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { Contract } from 'ethers'
import { RPC_URL, devKey, foundryBin, httpProvider, runScript } from './lib.mjs'

const here = path.dirname(fileURLToPath(import.meta.url))
const project = path.resolve(here, '../forge')
const KEY = devKey(4) // an account no other script uses
const ABI = ['function number() view returns (uint256)']

await runScript('forge.mjs', async (step) => {
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'hemi-forge-'))
  const env = {
    ...process.env,
    FOUNDRY_SOLC: path.join(here, 'solc-forge.mjs'),
    FOUNDRY_OUT: path.join(scratch, 'out'),
    FOUNDRY_CACHE_PATH: path.join(scratch, 'cache'),
    FOUNDRY_BROADCAST: path.join(scratch, 'broadcast'),
    FOUNDRY_DISABLE_NIGHTLY_WARNING: '1',
    NO_COLOR: '1',
  }
  const forge = (...args) => execFileSync(foundryBin('forge'), args, { cwd: project, env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 180_000 })
  const provider = httpProvider()
  try {
    const built = await step('forge build', () => forge('build', '--offline'))
    assert.match(built, /Compiler run successful/)

    const created = await step('forge create', () => forge('create', 'src/Counter.sol:Counter', '--rpc-url', RPC_URL, '--private-key', KEY, '--broadcast', '--constructor-args', '7'))
    const address = created.match(/Deployed to: (0x[0-9a-fA-F]{40})/)?.[1] ?? assert.fail(created)
    const hash = created.match(/Transaction hash: (0x[0-9a-fA-F]{64})/)?.[1] ?? assert.fail(created)
    assert.equal((await provider.getTransactionReceipt(hash)).status, 1)
    assert.equal(await new Contract(address, ABI, provider).number(), 7n)

    const script = await step('forge script --broadcast', () => forge('script', 'script/Deploy.s.sol:Deploy', '--rpc-url', RPC_URL, '--private-key', KEY, '--broadcast', '--slow'))
    assert.match(script, /ONCHAIN EXECUTION COMPLETE & SUCCESSFUL/)
    const run = JSON.parse(fs.readFileSync(path.join(scratch, 'broadcast', 'Deploy.s.sol', '31337', 'run-latest.json'), 'utf8'))
    assert.equal(run.transactions.length, 2, 'the deployment and the increment')
    assert.ok(run.receipts.every((r) => Number(r.status) === 1), JSON.stringify(run.receipts))
    const counter = run.transactions[0].contractAddress
    assert.equal(await new Contract(counter, ABI, provider).number(), 42n)
    return { ok: true, created: address, scripted: counter, receipts: run.receipts.length }
  } finally {
    fs.rmSync(scratch, { recursive: true, force: true })
  }
})
