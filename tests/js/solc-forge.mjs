#!/usr/bin/env node
// A `solc` command line for forge (foundry's `solc = …` setting), backed by solc-js from npm:
// forge asks `--version`, then compiles with `--standard-json` on stdin. Imports are read from
// the `--base-path`, `--include-path` and `--allow-paths` folders forge passes.
import fs from 'node:fs'
import path from 'node:path'
import { createRequire } from 'node:module'

const solc = createRequire(import.meta.url)('solc')
const args = process.argv.slice(2)
if (args.includes('--version')) {
  // The native compiler's wording, which forge parses for the version.
  console.log(`solc, the solidity compiler commandline interface\nVersion: ${solc.version().replace('.Emscripten.clang', '.Linux.g++')}`)
  process.exit(0)
}
const roots = []
for (let i = 0; i < args.length; i++) {
  if (['--base-path', '--include-path'].includes(args[i])) roots.push(args[++i])
  else if (args[i] === '--allow-paths') roots.push(...args[++i].split(','))
}
roots.push(process.cwd())
const findImports = (p) => {
  for (const root of [''].concat(roots)) {
    const file = root ? path.resolve(root, p) : path.resolve(p)
    if (fs.existsSync(file)) return { contents: fs.readFileSync(file, 'utf8') }
  }
  return { error: `${p} not found under ${roots.join(', ')}` }
}
if (!args.includes('--standard-json')) {
  console.error('solc-forge.mjs: only --version and --standard-json are supported')
  process.exit(2)
}
const input = fs.readFileSync(0, 'utf8')
process.stdout.write(solc.compile(input, { import: findImports }))
