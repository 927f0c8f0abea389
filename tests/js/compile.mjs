import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import solc from 'solc'

const here = path.dirname(fileURLToPath(import.meta.url))
export const CONTRACTS_DIR = path.resolve(here, '../../contracts')
export const BUILD_DIR = path.join(here, 'build')
export const EVM_VERSION = 'prague'

function solFiles(dir) {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name)
    if (e.isDirectory()) return solFiles(p)
    return e.name.endsWith('.sol') ? [p] : []
  })
}

/**
 * Compiles every .sol under contracts/ and writes build/<Name>.json ({contractName, sourceName, abi, bytecode}).
 * @returns {Promise<Record<string, {contractName: string, sourceName: string, abi: object[], bytecode: string}>>}
 */
export async function compile() {
  const sources = {}
  for (const file of solFiles(CONTRACTS_DIR).sort()) {
    sources[path.relative(CONTRACTS_DIR, file).split(path.sep).join('/')] = { content: fs.readFileSync(file, 'utf8') }
  }
  const input = {
    language: 'Solidity',
    sources,
    settings: {
      evmVersion: EVM_VERSION,
      optimizer: { enabled: true, runs: 200 },
      outputSelection: { '*': { '*': ['abi', 'evm.bytecode.object', 'evm.deployedBytecode.object'] } },
    },
  }
  const output = JSON.parse(solc.compile(JSON.stringify(input)))
  const errors = (output.errors ?? []).filter((e) => e.severity === 'error')
  for (const w of (output.errors ?? []).filter((e) => e.severity !== 'error')) console.error(w.formattedMessage)
  if (errors.length) throw new Error(`solc ${solc.version()} failed:\n${errors.map((e) => e.formattedMessage).join('\n')}`)

  fs.mkdirSync(BUILD_DIR, { recursive: true })
  const artifacts = {}
  for (const [sourceName, contracts] of Object.entries(output.contracts)) {
    for (const [contractName, c] of Object.entries(contracts)) {
      if (artifacts[contractName]) throw new Error(`duplicate contract name ${contractName} in ${sourceName} and ${artifacts[contractName].sourceName}`)
      const artifact = {
        contractName,
        sourceName,
        abi: c.abi,
        bytecode: '0x' + c.evm.bytecode.object,
        deployedBytecode: '0x' + c.evm.deployedBytecode.object,
      }
      artifacts[contractName] = artifact
      fs.writeFileSync(path.join(BUILD_DIR, `${contractName}.json`), JSON.stringify(artifact, null, 2) + '\n')
    }
  }
  return artifacts
}

/** The contracts the chain installs itself (their runtime code is committed in the Rust crate). */
export const TUNNEL_CONTRACTS = ['HemiBTC', 'TunnelManager']
export const TUNNEL_RUNTIME_DIR = path.resolve(here, '../../crates/tunnel/contracts')

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  try {
    const artifacts = await compile()
    // --write-tunnel: refresh the committed runtime code; --check-tunnel: fail on a difference.
    for (const name of TUNNEL_CONTRACTS) {
      const file = path.join(TUNNEL_RUNTIME_DIR, `${name}.runtime.hex`)
      const fresh = artifacts[name].deployedBytecode.slice(2) + '\n'
      if (process.argv.includes('--write-tunnel')) fs.writeFileSync(file, fresh)
      if (process.argv.includes('--check-tunnel')) {
        const committed = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : ''
        if (committed !== fresh) {
          throw new Error(`${path.relative(process.cwd(), file)} differs from what solc ${solc.version()} builds from contracts/; run node tests/js/compile.mjs --write-tunnel`)
        }
      }
    }
    const sizes = Object.fromEntries(Object.entries(artifacts).map(([n, a]) => [n, (a.bytecode.length - 2) / 2]))
    console.log(JSON.stringify({ solc: solc.version(), evmVersion: EVM_VERSION, contracts: sizes }))
  } catch (e) {
    console.error(`compile.mjs: ${e.message}`)
    process.exit(1)
  }
}
