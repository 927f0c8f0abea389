#!/usr/bin/env bash
# The reliability suite in one command: crashes (kill -9) under load, Bitcoin reorganisations
# during operation, the RPC bad-input catalogue and every fuzz target, each a real test against
# real Bitcoin Core; then a table of what was tried, how often, and what was lost.
#
#   scripts/reliability.sh            short form (CI): 3 kill -9 rounds under load (the sync
#                                     test keeps its 10), no fuzzing;
#                                     the table goes to target/reliability/RELIABILITY.md
#   scripts/reliability.sh --full     20 kill -9 rounds each, every fuzz target for
#                                     --fuzz-seconds (default 30) with its corpus kept in
#                                     fuzz/corpus/; the table replaces docs/RELIABILITY.md
#
# Fuzzing needs a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`); without them
# the fuzz rows say so. Needs what scripts/test.sh installs (bitcoind via scripts/bitcoind.sh).
set -euo pipefail
self="$(cd "$(dirname "$0")" && pwd)/$(basename "$0")"
cd "$(dirname "$self")/.."

full=0
fuzz_seconds=30
while [ $# -gt 0 ]; do
    case "$1" in
        --full) full=1 ;;
        --fuzz-seconds) fuzz_seconds="$2"; shift ;;
        -h|--help) sed -n '2,15p' "$self"; exit 0 ;;
        *) echo "unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
rounds=3
[ "$full" = 1 ] && rounds=20
export HEMI_KILL_ROUNDS="$rounds"

HEMI_BITCOIND="${HEMI_BITCOIND:-$(scripts/bitcoind.sh)}"
export HEMI_BITCOIND
out=target/reliability
mkdir -p "$out"
rows=()
failed=0

# run NAME "what was tried" "how often" TEST-BINARY TEST-NAME
run() {
    local name="$1" what="$2" often="$3" bin="$4" test="$5"
    local log="$out/$name.log" start end lost summary
    echo "== $what ($often)" >&2
    start=$(date +%s)
    if cargo test -q -p hemi --locked --test "$bin" -- --exact "$test" --nocapture >"$log" 2>&1; then
        lost="nothing"
    else
        lost="**FAILED**: see $log"
        failed=1
        tail -n 30 "$log" >&2
    fi
    end=$(date +%s)
    summary=$(grep -h '^SUMMARY' "$log" | sed 's/^SUMMARY //' | paste -sd ';' - || true)
    rows+=("| $what | $often | $((end - start)) s | $lost | ${summary:-—} |")
}

run kill9-load "kill -9 of \`hemi devnet --persist\` under a steady transfer load and a tunnel deposit with a Bitcoin block each round, every third one broadcast and mined racing the kill and sent again after it (every reported head, receipt and mint checked after each restart, balances equal the transfers on chain, hemiBTC held equals the mints: none twice)" \
    "$rounds kills" l2_crash_and_bad_input kill_9_ten_times_under_load_loses_no_reported_block
run kill9-sync "kill -9 of \`hemi node\` while it syncs a 2,150-block chain from Bitcoin Core" \
    "$(( rounds < 10 ? 10 : rounds )) kills" bad_peers_and_crashes kill_9_ten_times_during_sync_then_the_node_resumes_to_bitcoin_cores_state
run kill9-popm "kill -9 of a PoP miner while it publishes (no keystone published twice)" \
    "9 kills" pop_finality a_second_miner_killed_nine_times_never_publishes_a_keystone_twice
run reorg-index "Bitcoin reorganisations of depth 1, 3 and 6 while following Bitcoin Core (UTXO, balance and transaction indexes equal Core's)" \
    "3 reorgs" bitcoin_client client_syncs_from_bitcoin_core_and_follows_reorgs_of_depth_1_3_6
run reorg-finality "a Bitcoin reorg that drops keystone publications (\`safe\`/\`finalized\` follow Bitcoin back and forward)" \
    "1 reorg" pop_finality pop_miner_publishes_every_keystone_and_finality_follows_bitcoin
run reorg-tunnel "a deposit reorganised out of Bitcoin before its confirmations (never minted), beside deposits that mint once" \
    "1 reorg" tunnel deposits_mint_hemibtc_once_and_every_bad_deposit_is_refused_with_its_reason
run bad-input "the RPC bad-input catalogue over HTTP and WebSocket against the whole devnet (malformed JSON, frames, transactions; the node stays up)" \
    "1 pass" l2_crash_and_bad_input bad_input_over_http_and_ws_is_refused_like_geth_and_the_node_stays_up

# Every fuzz target for a set time, its corpus kept in the repository.
targets=$(ls fuzz/fuzz_targets | sed 's/\.rs$//')
if [ "$full" != 1 ]; then
    rows+=("| fuzz targets ($(echo "$targets" | wc -w)) | — | — | not run | the short form does not fuzz: \`scripts/reliability.sh --full\` |")
elif ! cargo +nightly --version >/dev/null 2>&1 || ! command -v cargo-fuzz >/dev/null; then
    rows+=("| fuzz targets ($(echo "$targets" | wc -w)) | — | — | not run | needs a nightly toolchain and cargo-fuzz |")
else
    for t in $targets; do
        echo "== fuzz $t (${fuzz_seconds} s)" >&2
        mkdir -p "fuzz/corpus/$t"
        log="$out/fuzz-$t.log"
        start=$(date +%s)
        if (cd fuzz && cargo +nightly fuzz run "$t" "corpus/$t" -- \
                -max_total_time="$fuzz_seconds" -rss_limit_mb=4096 -max_len=65536) >"$log" 2>&1; then
            lost="nothing (no crash, no leak)"
            # Keep the corpus small: only inputs that add coverage.
            (cd fuzz && cargo +nightly fuzz cmin "$t" "corpus/$t") >>"$log" 2>&1 || true
        else
            lost="**CRASH**: see $log and fuzz/artifacts/$t"
            failed=1
            tail -n 30 "$log" >&2
        fi
        end=$(date +%s)
        runs=$(grep -o 'Done [0-9]* runs' "$log" | tail -n 1 | grep -o '[0-9]*' || echo '?')
        files=$(ls "fuzz/corpus/$t" | wc -l)
        rows+=("| fuzz \`$t\` | $runs inputs | $((end - start)) s | $lost | corpus: $files inputs |")
    done
fi

if [ "$full" = 1 ]; then table=docs/RELIABILITY.md; else table="$out/RELIABILITY.md"; fi
{
    echo "# Reliability"
    echo
    echo "Written by \`scripts/reliability.sh$([ "$full" = 1 ] && echo ' --full')\` on $(date -u +%Y-%m-%d) at commit $(git rev-parse --short HEAD)$(git diff --quiet -- . ":(exclude)$table" ":(exclude)fuzz/corpus" || echo ' (with local changes)'), $(nproc) cores. Each row is a test against real Bitcoin Core (\`cargo test -p hemi\`); \"lost\" is what the test would have found missing — a reported block, receipt or mint, a keystone published twice, an index that differs from Core's, a node that stopped answering — and it fails on any of it."
    echo
    echo "| what was tried | how often | took | what was lost | the test's summary |"
    echo "|---|---|---|---|---|"
    printf '%s\n' "${rows[@]}"
} >"$table"
cat "$table"
exit "$failed"
