//! The L2 as users meet it, against real Bitcoin Core regtest: ethers v6 and cast (npm) and
//! web3.py (PyPI, run with `$HEMI_PYTHON`) drive a `hemi devnet`; a Solidity contract reads
//! Bitcoin through the hVM precompiles and gets what Bitcoin Core reports for the pinned block;
//! a `hemi node --follow` re-executes 500+ blocks with hVM calls and reaches the sequencer's
//! exact chain.

mod common;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use common::{cast, client_script, js_dir, tail, wait_for, wait_synced, Hemi};
use hemi_testkit::BitcoinCore;
use serde_json::{json, Value};

/// Runs `node tests/js/<script>` against `hemi`; returns its last stdout line as JSON.
fn node_script(hemi: &Hemi, script: &str, env: &[(&str, &str)]) -> anyhow::Result<Value> {
    let dir = js_dir();
    if !dir.join("node_modules").exists() {
        bail!(
            "{}/node_modules is missing: run `npm install --prefix tests/js` (scripts/test.sh does)",
            dir.display()
        );
    }
    let path = dir.join(script);
    client_script(hemi, "node", &[path.as_os_str()], &dir, env)
}

fn hemi_python() -> anyhow::Result<PathBuf> {
    const HOW: &str = "scripts/test.sh creates a venv with tests/py/requirements.txt and exports \
        HEMI_PYTHON; by hand: `python3 -m venv /tmp/hemi-py && /tmp/hemi-py/bin/pip install -r \
        tests/py/requirements.txt`, then HEMI_PYTHON=/tmp/hemi-py/bin/python";
    let python = match std::env::var_os("HEMI_PYTHON") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => bail!("HEMI_PYTHON is not set (the Python with web3.py): {HOW}"),
    };
    if !python.exists() {
        bail!("HEMI_PYTHON={} does not exist: {HOW}", python.display());
    }
    Ok(python)
}

/// Runs `$HEMI_PYTHON tests/py/web3_client.py` (web3.py v7) against `hemi`; returns its last
/// stdout line as JSON.
fn web3_py(hemi: &Hemi, python: &Path) -> anyhow::Result<Value> {
    let dir = js_dir().join("../py");
    let script = dir.join("web3_client.py");
    client_script(hemi, python, &[script.as_os_str()], &dir, &[])
}

fn hex_u64(v: &Value) -> u64 {
    v.as_str()
        .and_then(|s| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok())
        .unwrap_or(u64::MAX)
}

/// The Bitcoin block an L2 block pinned: the `canonicalTip` word of its first (0x7C)
/// transaction's `updateHvmState` calldata, in display order.
async fn pinned_bitcoin_block(hemi: &Hemi, number: u64) -> anyhow::Result<String> {
    let block = hemi
        .call(
            "eth_getBlockByNumber",
            json!([format!("0x{number:x}"), true]),
        )
        .await?;
    let tx = &block["transactions"][0];
    if tx["type"] != "0x7c" {
        bail!("block {number} does not begin with a 0x7C transaction: {tx}");
    }
    let input = hex::decode(tx["input"].as_str().unwrap_or("").trim_start_matches("0x"))?;
    let mut tip = input
        .get(4..36)
        .context("attributes calldata too short")?
        .to_vec();
    tip.reverse();
    Ok(hex::encode(tip))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ethereum_clients_hvm_contracts_and_a_follower_on_real_bitcoin_core() -> anyhow::Result<()>
{
    let python = hemi_python()?;
    let core = BitcoinCore::start().await?;
    let dir = tempfile::tempdir()?;
    let peer = core.p2p_addr().to_string();
    let hemi = Hemi::devnet_on(&core, dir.path(), &["--block-time", "0.5"]).await?;
    wait_synced(&hemi, &core.rpc, 60).await?;

    // 1 and 3: ethers v6 (ETH transfer, ERC-20 deploy/transfer/balances, getLogs, WS
    // subscriptions, receipts) and cast (block-number, balance, send, call, receipt, logs).
    let ethers = node_script(&hemi, "ethers.mjs", &[])?;
    assert_eq!(ethers["ok"], true, "{ethers}");
    assert_eq!(ethers["chainId"], 31337);
    let cast_out = node_script(&hemi, "cast.mjs", &[])?;
    assert_eq!(cast_out["ok"], true, "{cast_out}");
    // geth's tracing API: the same traces as anvil's for the same transactions.
    let traced = node_script(&hemi, "trace.mjs", &[])?;
    assert_eq!(traced["ok"], true, "{traced}");
    // viem and forge (create and script --broadcast, solc-js standing in for solc) unchanged.
    let viem = node_script(&hemi, "viem.mjs", &[])?;
    assert_eq!(viem["ok"], true, "{viem}");
    let forge = node_script(&hemi, "forge.mjs", &[])?;
    assert_eq!(forge["ok"], true, "{forge}");
    // Otterscan's ots_ namespace: the same answers as anvil's for the same transactions.
    let ots = node_script(&hemi, "ots.mjs", &[])?;
    assert_eq!(ots["ok"], true, "{ots}");
    // web3.py v7: transfers, ERC-20 deploy/transfer/calls, logs, filters, full blocks with the
    // 0x7C transaction, fee history, gas estimates, error paths, WS newHeads.
    let web3 = web3_py(&hemi, &python)?;
    assert_eq!(web3["ok"], true, "{web3}");
    assert_eq!(web3["chainId"], 31337, "{web3}");
    // web3.py's default middleware refuses blocks whose extraData exceeds 32 bytes; the seal
    // travels next to the header, so the unchanged client (no ExtraDataToPOAMiddleware) works.
    assert_eq!(web3["unchangedClient"], true, "{web3}");
    // Prometheus: /metrics parsed by the Prometheus project's Python client, its numbers
    // checked against the RPC (head, finality, pool, Bitcoin, RPC calls by method).
    let dir_py = js_dir().join("../py");
    let metrics = client_script(
        &hemi,
        &python,
        &[dir_py.join("metrics_scrape.py").as_os_str()],
        &dir_py,
        &[],
    )?;
    assert_eq!(metrics["ok"], true, "{metrics}");
    assert!(metrics["transactions"].as_u64() >= Some(3), "{metrics}");

    // 2: a contract reads Bitcoin through the Hvm library; compare with Bitcoin Core for the
    // Bitcoin block the L2 block pinned.
    let status = hemi.call("hemi_nodeStatus", json!([])).await?;
    let btc_addr = status["bitcoinAddress"]
        .as_str()
        .context("bitcoinAddress")?
        .to_string();
    let coinbase_block = core.rpc.get_block_hash(5).await?;
    let block5: Value = core
        .rpc
        .call("getblock", json!([coinbase_block.to_string(), 1]))
        .await?;
    let txid = block5["tx"][0]
        .as_str()
        .context("coinbase txid")?
        .to_string();
    let best = core.rpc.get_best_block_hash().await?.to_string();
    // Wait until the L2 pins Core's tip (the devnet follows Core; Core mines only on request).
    wait_for(30, "an L2 block pinning Core's tip", || async {
        let n = hex_u64(&hemi.call("eth_blockNumber", json!([])).await.ok()?);
        (pinned_bitcoin_block(&hemi, n).await.ok()? == best).then_some(())
    })
    .await?;
    let hvm = node_script(
        &hemi,
        "hvm.mjs",
        &[("BTC_ADDRESS", &btc_addr), ("BTC_TXID", &txid)],
    )?;
    let call_block = hvm["blockNumber"].as_u64().context("blockNumber")?;
    let pinned = pinned_bitcoin_block(&hemi, call_block).await?;
    let header: Value = core.rpc.call("getblockheader", json!([pinned])).await?;
    assert_eq!(hvm["lastHeader"]["hash"], header["hash"], "{hvm}");
    assert_eq!(hvm["lastHeader"]["height"], header["height"], "{hvm}");
    assert_eq!(
        hvm["lastHeader"]["merkleRoot"], header["merkleroot"],
        "{hvm}"
    );
    assert_eq!(hvm["lastHeader"]["time"], header["time"], "{hvm}");
    let scan: Value = core
        .rpc
        .call(
            "scantxoutset",
            json!(["start", [format!("addr({btc_addr})")]]),
        )
        .await?;
    assert_eq!(scan["bestblock"].as_str(), Some(pinned.as_str()));
    let core_sats = (scan["total_amount"].as_f64().context("total_amount")? * 1e8).round() as u64;
    assert_eq!(hvm["balance"].as_u64(), Some(core_sats), "{hvm}");
    let raw: Value = core
        .rpc
        .call("getrawtransaction", json!([txid, true]))
        .await?;
    assert_eq!(
        hvm["confirmations"].as_u64(),
        raw["confirmations"].as_u64(),
        "{hvm} vs {raw}"
    );
    // The transaction that ran the precompiles recorded the same header.
    assert_eq!(hvm["record"]["height"], header["height"], "{hvm}");
    let contract = hvm["contract"].as_str().context("contract")?.to_string();

    // 4: a follower re-executes 500+ blocks with hVM calls while Bitcoin moves.
    let follower_dir = dir.path().join("follower").to_string_lossy().into_owned();
    let followed = format!("http://{}", hemi.rpc_addr);
    let follower_args = [
        "node",
        "--network",
        "regtest",
        "--bitcoin-peer",
        &peer,
        "--dir",
        &follower_dir,
        "--follow",
        &followed,
    ];
    let mut follower = Hemi::start(&follower_args, dir.path()).await?;
    let rpc = format!("http://{}", hemi.rpc_addr);
    let key0 = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
    let (_, miner_addr) = hemi_testkit::regtest_p2wpkh(&[7u8; 32]).context("miner key")?;
    let start = hex_u64(&hemi.call("eth_blockNumber", json!([])).await?);
    let mut hvm_txs = 0;
    while hex_u64(&hemi.call("eth_blockNumber", json!([])).await?) < start + 520 {
        let n = hex_u64(&hemi.call("eth_blockNumber", json!([])).await?);
        if n.is_multiple_of(10) {
            cast(&[
                "send",
                "--async",
                "--rpc-url",
                &rpc,
                "--private-key",
                key0,
                &contract,
                "recordLastHeader()",
            ])?;
            hvm_txs += 1;
        }
        if n.is_multiple_of(40) {
            core.mine(1, &miner_addr).await?;
        }
        hemi.call("evm_mine", json!([])).await?;
    }
    let head = hex_u64(&hemi.call("eth_blockNumber", json!([])).await?);
    let followed = wait_for(
        180,
        "the follower to reach the sequencer's head",
        || async {
            let n = hex_u64(&follower.call("eth_blockNumber", json!([])).await.ok()?);
            (n >= head).then_some(n)
        },
    )
    .await;
    if let Err(e) = followed {
        bail!("{e}\nfollower log:\n{}", tail(&follower.log_text(), 40));
    }
    eprintln!(
        "follower reached block {head}: {} blocks produced under follow, {hvm_txs} hVM transactions",
        head - start
    );
    for n in (1..=head).step_by(37).chain([head]) {
        let q = json!([format!("0x{n:x}"), false]);
        let a = hemi.call("eth_getBlockByNumber", q.clone()).await?;
        let b = follower.call("eth_getBlockByNumber", q).await?;
        assert_eq!(a["hash"], b["hash"], "block {n}");
        assert_eq!(a["stateRoot"], b["stateRoot"], "block {n}");
    }
    // The contract's storage, written by the precompile-reading transactions, is the same.
    for slot in ["0x0", "0x1"] {
        let q = json!([contract, slot, "latest"]);
        assert_eq!(
            hemi.call("eth_getStorageAt", q.clone()).await?,
            follower.call("eth_getStorageAt", q).await?
        );
    }
    assert!(hvm_txs >= 20, "only {hvm_txs} hVM transactions were sent");
    // The devnet's PoP miner published keystones that Core confirmed; blocks 200 after them
    // paid the miner (0x7D payouts), and the follower re-executed those payouts to the same
    // state roots.
    let rewards = hemi
        .call(
            "eth_getLogs",
            json!([{"fromBlock": "0x1", "toBlock": format!("0x{head:x}"),
                    "address": "0x4200000000000000000000000000000000000042"}]),
        )
        .await?;
    let paid = rewards.as_array().map_or(0, Vec::len);
    assert!(paid >= 1, "no PoP reward was paid in {head} blocks");
    assert_eq!(
        follower
            .call(
                "eth_getLogs",
                json!([{"fromBlock": "0x1", "toBlock": format!("0x{head:x}"),
                        "address": "0x4200000000000000000000000000000000000042"}]),
            )
            .await?,
        rewards
    );
    eprintln!("{paid} PoP rewards paid and re-executed by the follower");
    assert_eq!(follower.call("eth_syncing", json!([])).await?, false);

    // A follower that was down catches up, and says so through eth_syncing as geth does.
    let follower_args: Vec<String> = follower_args.iter().map(|a| a.to_string()).collect();
    follower.kill();
    for _ in 0..300 {
        hemi.call("evm_mine", json!([])).await?;
    }
    let target = hex_u64(&hemi.call("eth_blockNumber", json!([])).await?);
    let follower = Hemi::start(
        &follower_args.iter().map(String::as_str).collect::<Vec<_>>(),
        dir.path(),
    )
    .await?;
    let seen = std::cell::RefCell::new(None);
    let caught_up = wait_for(180, "the restarted follower to catch up", || async {
        let s = follower.call("eth_syncing", json!([])).await.ok()?;
        if s.is_object() && seen.borrow().is_none() {
            *seen.borrow_mut() = Some(s);
        }
        let n = hex_u64(&follower.call("eth_blockNumber", json!([])).await.ok()?);
        (n >= target).then_some(())
    })
    .await;
    if let Err(e) = caught_up {
        bail!("{e}\nfollower log:\n{}", tail(&follower.log_text(), 40));
    }
    let seen = seen
        .into_inner()
        .context("eth_syncing never reported the catch-up")?;
    // The sequencer keeps making blocks meanwhile: the highest is at least the target.
    assert!(hex_u64(&seen["highestBlock"]) >= target, "{seen}");
    assert!(hex_u64(&seen["startingBlock"]) >= head, "{seen}");
    assert!(hex_u64(&seen["currentBlock"]) < target, "{seen}");
    wait_for(30, "eth_syncing false once caught up", || async {
        (follower.call("eth_syncing", json!([])).await.ok()? == false).then_some(())
    })
    .await?;

    // Last (it moves the devnet's clock): anvil's clock and mining tools behave as anvil's,
    // and the follower takes the time-travelled blocks too.
    // anvil's direct state changes behave as anvil's; they ride in 0x7A blocks the follower
    // re-executes (it must reach the head below).
    // eth_sendTransaction from the unlocked dev accounts behaves as anvil's.
    let send = node_script(&hemi, "anvil-send.mjs", &[])?;
    assert_eq!(send["ok"], true, "{send}");
    assert_eq!(send["call"], format!("0x{:064x}", 42), "{send}");
    let state = node_script(&hemi, "anvil-state.mjs", &[])?;
    assert_eq!(state["ok"], true, "{state}");
    assert_eq!(state["nonce"], 32, "{state}");
    // Impersonation behaves as anvil's; its 0x79 transactions the follower re-executes.
    let impersonated = node_script(&hemi, "anvil-impersonate.mjs", &[])?;
    assert_eq!(impersonated["ok"], true, "{impersonated}");
    assert_eq!(impersonated["status"], "0x1", "{impersonated}");
    let tools = node_script(&hemi, "anvil-tools.mjs", &[])?;
    assert_eq!(tools["ok"], true, "{tools}");
    let head = hex_u64(&hemi.call("eth_blockNumber", json!([])).await?);
    wait_for(
        60,
        "the follower to take the time-travelled blocks",
        || async {
            let n = hex_u64(&follower.call("eth_blockNumber", json!([])).await.ok()?);
            (n >= head).then_some(())
        },
    )
    .await?;

    // Very last (it rewinds the devnet's chain under its follower): anvil's state snapshots
    // behave as anvil's.
    let snaps = node_script(&hemi, "anvil-snapshots.mjs", &[])?;
    assert_eq!(snaps["ok"], true, "{snaps}");
    assert_eq!(snaps["reverted"], true, "{snaps}");
    assert_eq!(snaps["secondRevert"], false, "{snaps}");
    Ok(())
}
