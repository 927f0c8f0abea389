#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs what the tests need (Bitcoin Core's bitcoind,
# built once from the crates.io package libbitcoinkernel-sys and cached in ~/.cache/hemi-rs),
# then checks formatting, lints and runs every test against real Bitcoin Core.
set -euo pipefail
cd "$(dirname "$0")/.."

HEMI_BITCOIND="$(scripts/bitcoind.sh)"
export HEMI_BITCOIND
echo "bitcoind: $HEMI_BITCOIND"

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# The fuzz targets live in their own workspace (cargo-fuzz); make sure they still build.
(cd fuzz && cargo check --quiet)
cargo test --workspace --locked "$@"
