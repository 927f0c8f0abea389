"""Scrapes RPC_URL's /metrics with the Prometheus project's own Python client (its OpenMetrics
parser, PyPI `prometheus-client`) and checks the numbers against the node's JSON-RPC.

Prints one JSON line on success; on failure prints `metrics_scrape.py: FAIL ...` to stderr and
exits 1.
"""

import json
import os
import sys
import traceback

import requests
from prometheus_client.openmetrics.parser import text_string_to_metric_families

RPC_URL = os.environ.get("RPC_URL", "http://127.0.0.1:8545")
TIMEOUT = 30


def check(cond, msg):
    if not cond:
        raise AssertionError(msg)


def rpc(method, params=None):
    r = requests.post(
        RPC_URL,
        json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []},
        timeout=TIMEOUT,
    )
    return r.json()


def num(v):
    return int(v, 16) if isinstance(v, str) else int(v)


def scrape():
    """The families and samples at /metrics: {name: [(labels, value)]}, and the content type."""
    r = requests.get(RPC_URL + "/metrics", timeout=TIMEOUT)
    check(r.status_code == 200, f"/metrics answered {r.status_code}: {r.text[:200]}")
    samples = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            samples.setdefault(s.name, []).append((s.labels, s.value))
    return samples, r.headers.get("content-type", "")


def value(samples, name, **labels):
    for got, v in samples.get(name, []):
        if all(got.get(k) == want for k, want in labels.items()):
            return v
    return None


def main():
    out = {}
    head0 = num(rpc("eth_blockNumber")["result"])
    status0 = rpc("hemi_nodeStatus")["result"]
    m1, ctype = scrape()
    head1 = num(rpc("eth_blockNumber")["result"])
    status1 = rpc("hemi_nodeStatus")["result"]
    check(ctype.startswith("application/openmetrics-text"), f"content type {ctype!r}")

    # Gauges read when scraped: between the RPC's answers just before and just after.
    head = value(m1, "hemi_l2_head_block")
    check(head0 <= head <= head1, f"head {head} outside {head0}..{head1}")
    for name, key in [("hemi_l2_safe_block", "safe"), ("hemi_l2_finalized_block", "finalized")]:
        v = value(m1, name)
        lo, hi = status0["finality"][key], status1["finality"][key]
        check(lo <= v <= hi, f"{name} {v} outside {lo}..{hi}")
    lag = value(m1, "hemi_l2_finality_lag_blocks")
    check(lag == head - value(m1, "hemi_l2_finalized_block"), f"finality lag {lag}")
    keystones = value(m1, "hemi_keystones")
    check(
        status0["finality"]["keystones"] <= keystones <= status1["finality"]["keystones"],
        f"keystones {keystones}",
    )
    check(value(m1, "hemi_keystones_published") <= keystones, "published <= keystones")
    indexed = value(m1, "hemi_bitcoin_indexed_height")
    lo, hi = status0["bitcoin"]["indexedHeight"], status1["bitcoin"]["indexedHeight"]
    check(lo <= indexed <= hi, f"bitcoin indexed {indexed} outside {lo}..{hi}")
    check(value(m1, "hemi_bitcoin_peers") >= 1, "a Bitcoin peer")
    pin = value(m1, "hemi_l2_bitcoin_pin_height")
    check(0 < pin <= indexed, f"pin {pin}, indexed {indexed}")
    pool = rpc("txpool_status")["result"]
    check(value(m1, "hemi_txpool_pending") == num(pool["pending"]), f"pending vs {pool}")
    check(value(m1, "hemi_txpool_queued") == num(pool["queued"]), f"queued vs {pool}")
    check(value(m1, "hemi_build_info", role="devnet") == 1, "build info")

    # Counters since the start: the test's clients sent transactions before this script.
    txs = value(m1, "hemi_l2_transactions_total")
    blocks = value(m1, "hemi_l2_blocks_total")
    check(txs >= 1 and blocks >= 1, f"txs {txs}, blocks {blocks}")
    check(value(m1, "hemi_l2_gas_used_total") >= 21000 * txs, "gas used")

    # RPC calls by method: one more web3_sha3, one failing call and one batch show up exactly.
    sha_before = value(m1, "hemi_rpc_requests_total", method="web3_sha3") or 0
    err_before = value(m1, "hemi_rpc_errors_total", method="eth_getBalance") or 0
    batches_before = value(m1, "hemi_rpc_batches_total")
    sha = rpc("web3_sha3", ["0x68656d69"])
    check("result" in sha, f"web3_sha3: {sha}")
    bad = rpc("eth_getBalance", ["not an address", "latest"])
    check("error" in bad, f"eth_getBalance of garbage: {bad}")
    batch = requests.post(
        RPC_URL,
        json=[
            {"jsonrpc": "2.0", "id": 1, "method": "web3_sha3", "params": ["0x00"]},
            {"jsonrpc": "2.0", "id": 2, "method": "eth_chainId", "params": []},
        ],
        timeout=TIMEOUT,
    ).json()
    check(len(batch) == 2, f"batch: {batch}")
    unknown = rpc("no_suchMethod")
    check("error" in unknown, f"no_suchMethod: {unknown}")
    m2, _ = scrape()
    sha_after = value(m2, "hemi_rpc_requests_total", method="web3_sha3")
    check(sha_after == sha_before + 2, f"web3_sha3 calls {sha_before} -> {sha_after}")
    err_after = value(m2, "hemi_rpc_errors_total", method="eth_getBalance")
    check(err_after == err_before + 1, f"eth_getBalance errors {err_before} -> {err_after}")
    check(value(m2, "hemi_rpc_batches_total") == batches_before + 1, "one more batch")
    # Timed: every call outside a batch is in the latency histogram (the batched one is not).
    timed_before = value(m1, "hemi_rpc_request_duration_seconds_count", method="web3_sha3") or 0
    timed = value(m2, "hemi_rpc_request_duration_seconds_count", method="web3_sha3")
    check(timed == timed_before + 1, f"timed web3_sha3 calls {timed_before} -> {timed}")
    inf = value(m2, "hemi_rpc_request_duration_seconds_bucket", method="web3_sha3", le="+Inf")
    check(inf == timed, f"+Inf bucket {inf} vs count {timed}")
    check(value(m2, "hemi_rpc_request_duration_seconds_sum", method="web3_sha3") > 0, "latency sum")
    check(value(m2, "hemi_rpc_requests_total", method="no_suchMethod") is None, "no label for unknown methods")

    out.update(
        ok=True,
        head=int(head),
        transactions=int(txs),
        blocks=int(blocks),
        keystones=int(keystones),
        bitcoinIndexed=int(indexed),
        families=len(m2),
    )
    print(json.dumps(out))


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # noqa: BLE001
        traceback.print_exc()
        print(f"metrics_scrape.py: FAIL: {e}", file=sys.stderr)
        sys.exit(1)
