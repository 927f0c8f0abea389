#!/usr/bin/env bash
# Every benchmark of docs/BENCHMARKS.md in one command, each beside its peer or ceiling in the
# same run (Bitcoin Core's bitcoind, anvil from npm, the embedded node's verifytxoutproof, one
# sequencer key beside a set, polling beside gossip), at sizes that finish within 20 minutes on 2
# cores. Every table, with the machine, the versions and the commands, goes to the report
# (target/bench/report.md), and a run of all of them rewrites the generated section of
# docs/BENCHMARKS.md with it (between its `bench.sh begin` and `bench.sh end` markers; the rest
# of that file keeps the longer runs and their analysis).
#
#   scripts/bench.sh              all of them (release build first), then docs/BENCHMARKS.md
#   scripts/bench.sh erc20 set    only the named ones, into the report only
#   BENCH_REPORT=FILE             write the report elsewhere
#
# Each step has its own time limit; a step that runs over is stopped and says so, and the whole
# run stops by itself.
set -euo pipefail
self="$(cd "$(dirname "$0")" && pwd)/$(basename "$0")"
cd "$(dirname "$self")/.."

# The erc20 step's body (run by the step below as its own process, so it can be timed out).
if [ "${1:-}" = --erc20-pair ]; then
    dir=$(mktemp -d)
    target/release/hemi devnet --dir "$dir" --rpc-addr 127.0.0.1:18945 --bitcoin-rpc-addr 127.0.0.1:18943 \
        --bitcoin-p2p-addr 127.0.0.1:18944 --bitcoin-block-time 0 --gas-limit 2000000000 --no-popm >"$dir/log" 2>&1 &
    pid=$!
    trap 'kill $pid 2>/dev/null; rm -rf "$dir"' EXIT
    sleep 4
    cd tests/js
    node bench-erc20.mjs --rpc http://127.0.0.1:18945 --count 20000 --batch 100 --senders 20 --gas-limit 2000000000 | tail -n 1
    echo "{\"client\": \"hemi-rs\", \"rssKbAfterLoad\": $(ps -o rss= -p $pid)}"
    node bench-erc20.mjs --anvil --count 20000 --batch 100 --senders 20 --gas-limit 2000000000 | tail -n 1
    exit 0
fi

HEMI_BITCOIND="${HEMI_BITCOIND:-$(scripts/bitcoind.sh)}"
export HEMI_BITCOIND
npm install --prefix tests/js --no-audit --no-fund --loglevel=error >/dev/null
cargo build --release --locked -p hemi
# The criterion benches are built before the clock starts, like the binary.
cargo bench --no-run --locked -q -p hemi-btc-headers --bench headers
cargo bench --no-run --locked -q -p hemi-btc-store --bench lookup
hemi=target/release/hemi
out=target/bench
mkdir -p "$out"
report="${BENCH_REPORT:-$out/report.md}"
all_steps=$(( $# == 0 ))
started=$(date +%s)
budget=1200 # seconds: the whole run stops by itself within 20 minutes

steps=(headers lookup bitcoin-sync l2-exec hvm-pin erc20 finality tunnel gossip set)
[ $# -gt 0 ] && steps=("$@")

anvil_bin=$(ls tests/js/node_modules/@foundry-rs/anvil-linux-*/bin/anvil 2>/dev/null | head -n 1 || true)
{
    echo "# The latest run of \`scripts/bench.sh\`"
    echo
    echo "Written by \`scripts/bench.sh $*\` on $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD)$(git diff --quiet -- . ':(exclude)docs/BENCHMARKS.md' || echo ' (with local changes)'). Every number in this section is from this one run; the sections after it explain them and keep longer runs."
    echo
    echo "Machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(free -g | awk '/Mem:/ {print $2}') GiB RAM, $(uname -sr)."
    echo "Versions: $($hemi --version 2>/dev/null || echo hemi), $(rustc --version), bitcoind $("$HEMI_BITCOIND" -version | head -n 1 | sed 's/.*version //'), anvil $( [ -n "$anvil_bin" ] && "$anvil_bin" --version | head -n 1 | sed 's/anvil Version: //' || echo 'not installed'), node $(node --version)."
    echo
} >"$report"

# step NAME LIMIT-SECONDS "what it compares" COMMAND...
step() {
    local name="$1" limit="$2" what="$3"
    shift 3
    local left=$((budget - ($(date +%s) - started)))
    if [ "$left" -le 30 ]; then
        printf '## %s\n\nNot run: the 20-minute budget was spent.\n\n' "$name" >>"$report"
        return
    fi
    [ "$limit" -gt "$left" ] && limit=$left
    echo "== $name (at most ${limit} s): $*" >&2
    local log="$out/$name.log" t0 t1 status=0
    t0=$(date +%s)
    timeout --kill-after=10 "$limit" "$@" >"$log" 2>&1 || status=$?
    t1=$(date +%s)
    {
        printf '## %s\n\n%s\n\n`%s` (%s s' "$name" "$what" "$*" "$((t1 - t0))"
        case "$status" in
            0) printf ')\n\n' ;;
            124|137) printf '; stopped at its %s s limit)\n\n' "$limit" ;;
            *) printf '; failed with status %s, log in %s)\n\n' "$status" "$log" ;;
        esac
        # What the benchmark printed, less logs and progress: tables, result lines, criterion's
        # names with their estimates.
        sed 's/\x1b\[[0-9;]*m//g' "$log" \
            | grep -Ev '^[0-9]{4}-[0-9]{2}-[0-9]{2}T|^ *(INFO|WARN|DEBUG|TRACE|ERROR) |^Benchmarking|^Found [0-9]+ outliers|^ +[0-9]+ \([0-9.]+%\) (low|high)|^ +(change|thrpt):|^ +time: +\[[^]]*%|^Warning: Unable to complete|Performance has|No change in performance|Change within noise|^ *(Compiling|Finished|Running|Downloaded|Gnuplot|Executable) |^ *$' \
            || echo '(nothing printed: see the log)'
        echo
    } >>"$report"
}

for s in "${steps[@]}"; do
    case "$s" in
        headers) step headers 120 "Header validation (criterion), the ceiling for P2P header sync." \
            cargo bench -q --locked -p hemi-btc-headers --bench headers -- --warm-up-time 1 --measurement-time 3 ;;
        lookup) step lookup 240 "Balance and UTXO lookup at 1,000,000 UTXOs, at the tip and at older Bitcoin blocks (criterion)." \
            cargo bench -q --locked -p hemi-btc-store --bench lookup -- --warm-up-time 1 --measurement-time 3 ;;
        bitcoin-sync) step bitcoin-sync 180 "Bitcoin P2P sync: our client beside bitcoind syncing the same chain from the same peer." \
            "$hemi" bench bitcoin-sync --blocks 3000 ;;
        l2-exec) step l2-exec 240 "Block execution + state root + commit at 10k and 1M accounts (the flat-cost goal: the ratio of medians)." \
            "$hemi" bench l2-exec --accounts 10000,1000000 --blocks 60 --rounds 1 ;;
        hvm-pin) step hvm-pin 120 "An L2 block of hVM balance calls re-executed at its pin and 100 / 1,000 Bitcoin blocks later." \
            "$hemi" bench hvm-pin --blocks 3 ;;
        erc20) step erc20 180 "ERC-20 transfers per second end to end, hemi-rs beside anvil (npm), same client, 2e9 gas, 1 s blocks; the node's RSS after the load." \
            "$self" --erc20-pair ;;
        finality) step finality 240 "Devnet time from an L2 block to superfinality beside Bitcoin's bound; hemi_getFinality throughput." \
            "$hemi" bench finality --samples 1 ;;
        tunnel) step tunnel 240 "Deposit → mint latency against its bound; provenance size and verification beside verifytxoutproof; payout vsize per withdrawal." \
            "$hemi" bench tunnel --samples 1 ;;
        gossip) step gossip 120 "Commit → import on a follower: p2p gossip beside --follow polling." \
            "$hemi" bench gossip --blocks 40 ;;
        set) step set 420 "The sequencer set beside one key: block interval, send → receipt, kill -9 of a proposer; ERC-20 transfers with four validator processes beside one key." \
            "$hemi" bench set --blocks 30 --txs 15 --erc20 20000 ;;
        *) echo "unknown step $s (one of: headers lookup bitcoin-sync l2-exec hvm-pin erc20 finality tunnel gossip set)" >&2; exit 2 ;;
    esac
done
echo "Whole run: $(( $(date +%s) - started )) s." >>"$report"
cat "$report"

# A run of every step rewrites docs/BENCHMARKS.md's generated section (headings one level down).
if [ "$all_steps" = 1 ]; then
    doc=docs/BENCHMARKS.md
    if grep -q '^<!-- bench.sh begin' "$doc" && grep -q '^<!-- bench.sh end' "$doc"; then
        awk -v rep="$report" '
            /^<!-- bench.sh begin/ {
                print
                while ((getline line < rep) > 0) {
                    if (line ~ /^#/) line = "#" line
                    print line
                }
                skip = 1
                next
            }
            /^<!-- bench.sh end/ { skip = 0 }
            !skip { print }
        ' "$doc" >"$doc.tmp" && mv "$doc.tmp" "$doc"
        echo "rewrote the generated section of $doc" >&2
    else
        echo "$doc has no bench.sh markers; the report is in $report" >&2
    fi
fi
