// Runs the RPC compatibility scripts in sequence against RPC_URL (and WS_URL); used by CI.
import { spawnSync } from 'node:child_process'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const here = path.dirname(fileURLToPath(import.meta.url))
const scripts = ['ethers.mjs', 'cast.mjs']
const failed = []

for (const script of scripts) {
  console.log(`--- ${script}`)
  const started = Date.now()
  const r = spawnSync(process.execPath, [path.join(here, script)], { stdio: 'inherit', timeout: 300_000 })
  const seconds = ((Date.now() - started) / 1000).toFixed(1)
  if (r.status === 0) {
    console.log(`--- ${script}: PASS (${seconds}s)`)
  } else {
    failed.push(script)
    console.log(`--- ${script}: FAIL (${r.error?.message ?? (r.signal ? `signal ${r.signal}` : `exit ${r.status}`)}, ${seconds}s)`)
  }
}

console.log(`js: ${scripts.length - failed.length} passed, ${failed.length} failed`)
process.exit(failed.length ? 1 : 0)
