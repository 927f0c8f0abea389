#!/usr/bin/env bash
# Builds Bitcoin Core's bitcoind and bitcoin-cli from the source tree shipped inside the crates.io
# package libbitcoinkernel-sys 0.4.1 (folder bitcoin/, a v31.99 snapshot), once, and caches them
# outside the checkout. Prints the path of bitcoind on stdout (the only stdout line).
#
#   HEMI_CACHE   cache root            (default: ~/.cache/hemi-rs)
#   HEMI_BITCOIND  use this bitcoind instead (printed as is, nothing built)
set -euo pipefail

if [ -n "${HEMI_BITCOIND:-}" ]; then
  echo "$HEMI_BITCOIND"
  exit 0
fi

VERSION=0.4.1
CACHE="${HEMI_CACHE:-$HOME/.cache/hemi-rs}"
OUT="$CACHE/bitcoin-core-kernel-sys-$VERSION"
BIN="$OUT/bin/bitcoind"

if [ -x "$BIN" ] && [ -x "$OUT/bin/bitcoin-cli" ]; then
  echo "$BIN"
  exit 0
fi

log() { echo "[bitcoind.sh] $*" >&2; }

# Build tools from Debian, installed only when missing.
need=()
command -v cmake >/dev/null || need+=(cmake)
command -v pkg-config >/dev/null || need+=(pkg-config)
[ -f /usr/include/boost/version.hpp ] || need+=(libboost-dev)
[ -f /usr/include/event2/event.h ] || need+=(libevent-dev)
command -v g++ >/dev/null || need+=(g++)
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >&2
fi

mkdir -p "$CACHE"
WORK="$CACHE/build-kernel-sys-$VERSION"
mkdir -p "$WORK"   # kept across failed runs so an interrupted build resumes

# Fetch the crate with cargo itself (crates.io is the registry we reach).
log "fetching libbitcoinkernel-sys $VERSION"
mkdir -p "$WORK/fetch/src"
cat >"$WORK/fetch/Cargo.toml" <<TOML
[package]
name = "hemi-bitcoind-fetch"
version = "0.0.0"
edition = "2021"
[dependencies]
libbitcoinkernel-sys = "=$VERSION"
TOML
echo 'fn main() {}' >"$WORK/fetch/src/main.rs"
SRC="$WORK/libbitcoinkernel-sys-$VERSION/bitcoin"
if [ ! -f "$SRC/CMakeLists.txt" ]; then
  (cd "$WORK/fetch" && cargo fetch -q >&2)
  CRATE=$(ls "${CARGO_HOME:-$HOME/.cargo}"/registry/cache/*/libbitcoinkernel-sys-$VERSION.crate | head -n1)
  tar -xzf "$CRATE" -C "$WORK"
fi
[ -f "$SRC/CMakeLists.txt" ] || { log "no bitcoin/ source tree in the crate"; exit 1; }

log "configuring (this build takes ~10 minutes on 2 cores, once)"
cmake -S "$SRC" -B "$WORK/build" \
  -DCMAKE_BUILD_TYPE=Release \
  -DBUILD_DAEMON=ON -DBUILD_CLI=ON -DBUILD_BITCOIN_BIN=OFF \
  -DBUILD_GUI=OFF -DBUILD_TESTS=OFF -DBUILD_TX=OFF -DBUILD_UTIL=OFF \
  -DBUILD_BENCH=OFF -DBUILD_FUZZ_BINARY=OFF -DBUILD_KERNEL_LIB=OFF \
  -DENABLE_WALLET=OFF -DENABLE_IPC=OFF -DWITH_ZMQ=OFF -DENABLE_EXTERNAL_SIGNER=OFF \
  -DWITH_USDT=OFF -DWITH_EMBEDDED_ASMAP=OFF -DWITH_CCACHE=OFF -DINSTALL_MAN=OFF >&2
JOBS=$(nproc 2>/dev/null || echo 2)
cmake --build "$WORK/build" --target bitcoind bitcoin-cli -j"$JOBS" >&2

mkdir -p "$OUT/bin.tmp"
cp "$WORK/build/bin/bitcoind" "$WORK/build/bin/bitcoin-cli" "$OUT/bin.tmp/"
rm -rf "$OUT/bin"; mv "$OUT/bin.tmp" "$OUT/bin"   # atomic publish: a half build is never cached
rm -rf "$WORK"
log "built $BIN"
echo "$BIN"
