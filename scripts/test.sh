#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs what the tests need (Bitcoin Core's bitcoind,
# built once from the crates.io package libbitcoinkernel-sys and cached in ~/.cache/hemi-rs),
# then checks formatting, lints and runs every test against real Bitcoin Core.
set -euo pipefail
cd "$(dirname "$0")/.."

HEMI_BITCOIND="$(scripts/bitcoind.sh)"
export HEMI_BITCOIND
echo "bitcoind: $HEMI_BITCOIND"

# The Ethereum clients the end-to-end tests drive (ethers v6, solc-js, cast, anvil), pinned in
# tests/js/package-lock.json. `npm install` rather than `npm ci`: the lockfile lists only this
# platform's foundry binary packages, which `npm ci` calls out of sync (tests/js/README.md).
if ! command -v node >/dev/null; then
    echo "node (Node.js >= 18) is needed for the Ethereum client tests" >&2
    exit 1
fi
npm install --prefix tests/js --no-audit --no-fund --loglevel=error

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# The fuzz targets live in their own workspace (cargo-fuzz); make sure they still build.
(cd fuzz && cargo check --quiet)
cargo test --workspace --locked "$@"
