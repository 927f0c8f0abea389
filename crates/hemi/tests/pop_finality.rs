//! Proof-of-Proof end to end against real Bitcoin Core regtest: the devnet's built-in PoP miner
//! publishes every keystone, Core accepts and mines the transactions, our Bitcoin client finds
//! them, `safe`/`finalized` follow Bitcoin (seen through ethers and cast), a Bitcoin reorg that
//! drops the publications moves them back until the miner has republished, and Hemi's finality
//! API (`/v2/keystonefinality/{hash}`, `kss_*`) answers in Hemi's shapes. A second (taproot)
//! miner killed nine times never publishes a keystone twice; two miners whose publications
//! Bitcoin confirms two blocks apart split the keystone's reward 100000 : 25000.

mod common;

use std::collections::BTreeMap;
use std::process::Command;

use anyhow::{bail, Context};
use bitcoin::hashes::Hash;
use bitcoin::{Transaction, Txid};
use common::{cast_bin, client_script, head_of, js_dir, tail, wait_for, wait_synced, Hemi};
use hemi_btc_rpc_client::BitcoinRpc;
use hemi_keystone::AbbreviatedKeystone;
use hemi_testkit::BitcoinCore;
use serde_json::{json, Value};

/// PoP transactions in Core's mempool: keystone L2 number → (txid, vsize).
async fn mempool_pops(core: &BitcoinRpc) -> anyhow::Result<BTreeMap<u32, Vec<(Txid, u64)>>> {
    let mut out: BTreeMap<u32, Vec<(Txid, u64)>> = BTreeMap::new();
    for txid in core.get_raw_mempool().await? {
        let Ok(tx) = core.get_raw_transaction(&txid).await else {
            continue; // mined or replaced meanwhile
        };
        let Some(k) = pop_keystone(&tx) else {
            continue;
        };
        let Ok(entry) = core.get_mempool_entry(&txid).await else {
            continue;
        };
        out.entry(k.l2_block_number)
            .or_default()
            .push((txid, entry["vsize"].as_u64().unwrap_or(u64::MAX)));
    }
    Ok(out)
}

fn pop_keystone(tx: &Transaction) -> Option<AbbreviatedKeystone> {
    tx.output
        .iter()
        .find_map(|o| AbbreviatedKeystone::from_pop_script(&o.script_pubkey).ok())
}

/// The devnet's keystones (newest 50): L2 number → JSON.
async fn keystones(hemi: &Hemi) -> anyhow::Result<BTreeMap<u64, Value>> {
    let v = hemi.call("hemi_getLatestKeystones", json!([50])).await?;
    Ok(v.as_array()
        .context("keystones array")?
        .iter()
        .map(|k| (k["l2BlockNumber"].as_u64().unwrap_or(0), k.clone()))
        .collect())
}

async fn tag_number(hemi: &Hemi, tag: &str) -> anyhow::Result<u64> {
    let b = hemi
        .call("eth_getBlockByNumber", json!([tag, false]))
        .await?;
    let n = b["number"].as_str().context("number")?;
    Ok(u64::from_str_radix(n.trim_start_matches("0x"), 16)?)
}

/// The number of the block `debug_getRawBlock(tag)` serves (decoded as a follower decodes it).
async fn raw_block_number(hemi: &Hemi, tag: &str) -> anyhow::Result<u64> {
    let raw = hemi.call("debug_getRawBlock", json!([tag])).await?;
    let bytes = hex::decode(
        raw.as_str()
            .context("raw block hex")?
            .trim_start_matches("0x"),
    )?;
    Ok(hemi_chain::L2Block::decode(&bytes)?.header.number)
}

fn cast_block_number(rpc: &str, tag: &str) -> anyhow::Result<u64> {
    let bin = cast_bin();
    let out = Command::new(&bin)
        .args(["block", tag, "--field", "number", "--rpc-url", rpc])
        .output()
        .with_context(|| format!("running {}", bin.display()))?;
    if !out.status.success() {
        bail!("cast block {tag}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let s = String::from_utf8_lossy(&out.stdout).trim().to_string();
    Ok(match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16)?,
        None => s.parse()?,
    })
}

fn ethers_tags(hemi: &Hemi) -> anyhow::Result<Value> {
    let script = js_dir().join("finality.mjs");
    client_script(hemi, "node", &[script.as_os_str()], &js_dir(), &[])
}

async fn http_get(url: &str) -> anyhow::Result<(u16, Value)> {
    let r = reqwest::get(url).await?;
    let status = r.status().as_u16();
    Ok((status, r.json().await?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pop_miner_publishes_every_keystone_and_finality_follows_bitcoin() -> anyhow::Result<()> {
    let core = BitcoinCore::start().await?;
    let dir = tempfile::tempdir()?;
    // The devnet's miner key is deterministic; give it mature coins before the devnet starts
    // (so nothing is mined while it publishes), one confirmed output per publication: fee
    // bumps need transactions without children.
    let (_, sink) = hemi_testkit::regtest_p2wpkh(&[0x51; 32]).context("sink key")?;
    let miner_addr = hemi_btc_wallet::Key::from_seed("hemi-devnet-bitcoin-key-0")
        .address(hemi_btc_wallet::KeyKind::P2wpkh, bitcoin::Network::Regtest);
    core.mine(30, &miner_addr).await?;
    core.mine(100, &sink).await?;
    let hemi = Hemi::devnet_on(
        &core,
        dir.path(),
        &[
            "--block-time",
            "0.5",
            "--keystone-interval",
            "5",
            "--superfinality-depth",
            "10",
        ],
    )
    .await?;
    let rpc = format!("http://{}", hemi.rpc_addr);
    // Keystones as they are made, over WebSocket: eth_subscribe("newKeystones") and Hemi's
    // kss_subscribe("newKeystones").
    use jsonrpsee::core::client::SubscriptionClientT;
    let ws = jsonrpsee::ws_client::WsClientBuilder::default()
        .build(format!("ws://{}", hemi.rpc_addr))
        .await?;
    let mut eth_sub = ws
        .subscribe::<Value, _>(
            "eth_subscribe",
            jsonrpsee::rpc_params!["newKeystones"],
            "eth_unsubscribe",
        )
        .await?;
    let mut kss_sub = ws
        .subscribe::<Value, _>(
            "kss_subscribe",
            jsonrpsee::rpc_params!["newKeystones"],
            "kss_unsubscribe",
        )
        .await?;
    let status = hemi.call("hemi_nodeStatus", json!([])).await?;
    assert_eq!(
        status["bitcoinAddress"].as_str(),
        Some(miner_addr.to_string().as_str())
    );
    wait_synced(&hemi, &core.rpc, 60).await?;

    // 1. The miner publishes keystones 5 and 10; Core accepts them; each is ≤ 203 vB and
    //    carries exactly the keystone the node reports.
    let pops = wait_for(
        60,
        "PoP transactions for keystones 5 and 10 in Core's mempool",
        || async {
            let m = mempool_pops(&core.rpc).await.ok()?;
            (m.contains_key(&5) && m.contains_key(&10)).then_some(m)
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}\nhemi log:\n{}", tail(&hemi.log_text(), 40)))?;
    let ks = keystones(&hemi).await?;
    let mut vsizes = Vec::new();
    for (number, txs) in &pops {
        assert_eq!(
            txs.len(),
            1,
            "one publication per keystone by our miner: {txs:?}"
        );
        let (txid, vsize) = txs[0];
        assert!(vsize <= 203, "PoP transaction {txid} is {vsize} vB");
        vsizes.push(vsize);
        let tx = core.rpc.get_raw_transaction(&txid).await?;
        let k = pop_keystone(&tx).context("pop output")?;
        let node = ks
            .get(&(*number as u64))
            .context("keystone known to the node")?;
        assert_eq!(
            node["abbreviated"].as_str(),
            Some(hex::encode(k.to_bytes()).as_str()),
            "keystone {number}"
        );
        assert_eq!(node["hash"].as_str(), Some(k.id().to_hex().as_str()));
    }
    eprintln!("PoP transactions in Core's mempool: {pops:?}");
    // The subscriptions saw keystones arrive (the first one after subscribing, in order).
    let within = std::time::Duration::from_secs(10);
    let k = tokio::time::timeout(within, eth_sub.next())
        .await?
        .context("newKeystones closed")??;
    let n = k["l2BlockNumber"].as_u64().context("l2BlockNumber")?;
    assert_eq!(n % 5, 0, "{k}");
    assert_eq!(k["hash"], ks[&n]["hash"], "{k}");
    let note = tokio::time::timeout(within, kss_sub.next())
        .await?
        .context("kss_subscribe closed")??;
    assert!(
        note.as_str()
            .is_some_and(|s| s.starts_with("New Keystone Available")),
        "{note}"
    );
    let first_txid = pops[&5][0].0;
    assert_eq!(tag_number(&hemi, "safe").await?, 0, "nothing published yet");

    // Core mines them; our Bitcoin client finds them.
    let h = core.mine(1, &sink).await?[0];
    let pub_height = core.rpc.get_block_count().await? as u64;
    wait_for(
        30,
        "keystones 5 and 10 published at the new block",
        || async {
            let ks = keystones(&hemi).await.ok()?;
            let ok = [5u64, 10].iter().all(|n| {
                ks.get(n)
                    .is_some_and(|k| k["publication"]["height"].as_u64() == Some(pub_height))
            });
            ok.then_some(())
        },
    )
    .await?;
    let ks = keystones(&hemi).await?;
    assert_eq!(
        ks[&5]["publication"]["txid"].as_str(),
        Some(first_txid.to_string().as_str())
    );
    let safe = wait_for(10, "safe to cover keystone 10", || async {
        let s = tag_number(&hemi, "safe").await.ok()?;
        (s >= 10).then_some(s)
    })
    .await?;
    assert_eq!(safe % 5, 0, "safe is a keystone: {safe}");
    let f7 = hemi.call("hemi_getFinality", json!([7])).await?;
    assert_eq!(f7["keystone"]["l2BlockNumber"], 10, "{f7}");
    assert_eq!(f7["effectiveConfirmations"], 0, "{f7}");
    assert_eq!(f7["superFinality"], false, "{f7}");
    assert_eq!(tag_number(&hemi, "finalized").await?, 0);

    // 9 more blocks: 9 effective confirmations, still not superfinal; the 10th makes it.
    core.mine(9, &sink).await?;
    wait_synced(&hemi, &core.rpc, 30).await?;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let f7 = hemi.call("hemi_getFinality", json!([7])).await?;
    assert_eq!(f7["effectiveConfirmations"], 9, "{f7}");
    assert_eq!(tag_number(&hemi, "finalized").await?, 0);
    let newest_before = *keystones(&hemi)
        .await?
        .keys()
        .last()
        .context("a keystone")?;
    core.mine(1, &sink).await?;
    let finalized = wait_for(30, "finalized to cover keystone 10", || async {
        let f = tag_number(&hemi, "finalized").await.ok()?;
        (f >= 10).then_some(f)
    })
    .await?;
    let f7 = hemi.call("hemi_getFinality", json!([7])).await?;
    assert_eq!(f7["superFinality"], true, "{f7}");
    assert!(f7["effectiveConfirmations"].as_u64() >= Some(10), "{f7}");
    // ethers and cast see the same tags.
    let e = ethers_tags(&hemi)?;
    assert_eq!(e["ok"], true, "{e}");
    assert!(e["finalized"].as_u64() >= Some(finalized), "{e}");
    assert!(e["safe"].as_u64() >= e["finalized"].as_u64(), "{e}");
    let cast_finalized = cast_block_number(&rpc, "finalized")?;
    assert!(cast_finalized >= finalized, "cast: {cast_finalized}");
    let cast_safe = cast_block_number(&rpc, "safe")?;
    assert!(cast_safe >= cast_finalized);
    // debug_getRawBlock reads the tags as every other method does (it used to serve the head).
    for tag in ["finalized", "safe"] {
        let before = tag_number(&hemi, tag).await?;
        let raw = raw_block_number(&hemi, tag).await?;
        let after = tag_number(&hemi, tag).await?;
        assert!(
            before <= raw && raw <= after,
            "debug_getRawBlock({tag:?}) served block {raw}; the tag names {before}..={after}"
        );
    }
    let raw_finalized = raw_block_number(&hemi, "finalized").await?;
    let head = tag_number(&hemi, "latest").await?;
    assert!(
        raw_finalized < head,
        "debug_getRawBlock(\"finalized\") served block {raw_finalized}, the head is {head}"
    );
    eprintln!(
        "finalized {finalized} (ethers {}, cast {cast_finalized}), safe {cast_safe}",
        e["finalized"]
    );

    // Every keystone is published: all up to the newest one before the last mining round end
    // up in Bitcoin once Core mines again.
    wait_for(
        60,
        "every keystone up to the snapshot published",
        || async {
            core.mine(1, &sink).await.ok()?;
            let ks = keystones(&hemi).await.ok()?;
            let missing: Vec<u64> = ks
                .iter()
                .filter(|(n, k)| **n <= newest_before && k["publication"].is_null())
                .map(|(n, _)| *n)
                .collect();
            missing.is_empty().then_some(())
        },
    )
    .await?;

    // 5. Hemi's finality endpoint and kss_ methods, in Hemi's shapes.
    let k10 = keystones(&hemi).await?[&10].clone();
    let hash10 = k10["hash"].as_str().context("hash")?.to_string();
    let (status, body) = http_get(&format!("{rpc}/v2/keystonefinality/{hash10}")).await?;
    assert_eq!(status, 200, "{body}");
    let mut keys: Vec<&str> = body
        .as_object()
        .context("object")?
        .keys()
        .map(|k| k.as_str())
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "block_hash",
            "block_height",
            "effective_confirmations",
            "l2_keystone",
            "super_finality"
        ]
    );
    assert_eq!(body["l2_keystone"]["l2_block_number"], 10, "{body}");
    assert_eq!(
        body["l2_keystone"]["ep_hash"].as_str(),
        k10["epHash"].as_str().map(|s| s.trim_start_matches("0x")),
        "{body}"
    );
    assert_eq!(body["block_height"].as_u64(), Some(pub_height), "{body}");
    let raw_hash = hex::encode(h.to_byte_array());
    assert_eq!(
        body["block_hash"].as_str(),
        Some(raw_hash.as_str()),
        "Hemi prints raw order"
    );
    let tip = core.rpc.get_block_count().await?;
    let eff = body["effective_confirmations"].as_u64().context("eff")?;
    assert!(
        eff + 1 >= tip - pub_height && eff <= tip - pub_height,
        "{eff} vs tip {tip}"
    );
    assert_eq!(body["super_finality"], true);
    let (status, body) =
        http_get(&format!("{rpc}/v2/keystonefinality/{}", "00".repeat(32))).await?;
    assert_eq!(status, 404, "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("unknown keystone")),
        "{body}"
    );
    let (status, body) = http_get(&format!("{rpc}/v2/keystonefinality/xyz")).await?;
    assert_eq!(status, 400, "{body}");
    wait_for(30, "keystone 15", || async {
        keystones(&hemi).await.ok()?.contains_key(&15).then_some(())
    })
    .await?;
    let kss = hemi.call("kss_getLatestKeystones", json!([3])).await?;
    let list = kss["keystones"].as_array().context("keystones")?;
    assert_eq!(list.len(), 3, "{kss}");
    assert!(list[0]["l2_block_number"].as_u64() > list[1]["l2_block_number"].as_u64());
    let kss = hemi.call("kss_getLatestKeystones", json!([51])).await?;
    assert!(
        kss["keystones"].is_null() && kss["error"]["message"] == "count too large",
        "{kss}"
    );
    let kss = hemi.call("kss_getKeystone", json!([hash10, 2])).await?;
    let list = kss["keystones"].as_array().context("keystones")?;
    assert_eq!(
        list.iter()
            .map(|k| k["l2_block_number"].as_u64().unwrap_or(0))
            .collect::<Vec<_>>(),
        [10, 15]
    );

    // 2. A Bitcoin reorg that drops the publications: invalidate the block that first carried
    //    them and build a longer branch with no transactions at all.
    let old_tip = core.rpc.get_block_count().await?;
    core.rpc.invalidate_block(&h).await?;
    for _ in 0..(old_tip - pub_height + 2) {
        core.rpc.generate_block(&sink, &[]).await?;
    }
    wait_synced(&hemi, &core.rpc, 60).await?;
    wait_for(30, "safe and finalized to move back", || async {
        let s = tag_number(&hemi, "safe").await.ok()?;
        let f = tag_number(&hemi, "finalized").await.ok()?;
        (s < 5 && f < 5).then_some(())
    })
    .await?;
    let ks = keystones(&hemi).await?;
    assert!(ks[&5]["publication"].is_null(), "{}", ks[&5]);
    // The miner republishes: the reorged-out transactions are unconfirmed again, and after
    // `bump_after` (3) blocks without them it replaces them with a higher fee.
    let bumped = wait_for(
        60,
        "keystone 5 republished with a new transaction",
        || async {
            core.rpc.generate_block(&sink, &[]).await.ok()?;
            tokio::time::sleep(std::time::Duration::from_millis(700)).await;
            let m = mempool_pops(&core.rpc).await.ok()?;
            m.get(&5)
                .and_then(|v| v.iter().find(|(t, _)| *t != first_txid).copied())
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}\nhemi log:\n{}", tail(&hemi.log_text(), 40)))?;
    eprintln!("keystone 5 republished as {} ({} vB)", bumped.0, bumped.1);
    assert!(bumped.1 <= 203);
    core.mine(1, &sink).await?;
    wait_for(30, "safe to move forward again", || async {
        let s = tag_number(&hemi, "safe").await.ok()?;
        (s >= 10).then_some(())
    })
    .await?;
    let ks = keystones(&hemi).await?;
    assert_eq!(
        ks[&5]["publication"]["txid"].as_str(),
        Some(bumped.0.to_string().as_str())
    );
    core.mine(10, &sink).await?;
    wait_for(30, "finalized to move forward again", || async {
        let f = tag_number(&hemi, "finalized").await.ok()?;
        (f >= 10).then_some(())
    })
    .await?;
    eprintln!("PoP vsizes: {vsizes:?}");
    Ok(())
}

/// Who signed a PoP transaction's first input: P2WPKH's witness public key; a taproot key-path
/// spend (one witness element) shows no key, so it is named "p2tr" (one taproot miner here).
fn signer_of(tx: &Transaction) -> Vec<u8> {
    let Some(input) = tx.input.first() else {
        return Vec::new();
    };
    match input.witness.len() {
        1 => b"p2tr".to_vec(),
        _ => input.witness.nth(1).map(<[u8]>::to_vec).unwrap_or_default(),
    }
}

/// Every PoP transaction in Core's best chain from `from` up: (keystone L2 number, signer).
async fn chain_pops(
    core: &BitcoinRpc,
    from: u64,
) -> anyhow::Result<Vec<(u32, Vec<u8>, Txid, usize)>> {
    let tip = core.get_block_count().await?;
    let mut out = Vec::new();
    for h in from..=tip {
        let block = core.get_block(&core.get_block_hash(h).await?).await?;
        for tx in &block.txdata {
            if let Some(k) = pop_keystone(tx) {
                out.push((
                    k.l2_block_number,
                    signer_of(tx),
                    tx.compute_txid(),
                    tx.vsize(),
                ));
            }
        }
    }
    Ok(out)
}

/// Starts `hemi popm` for `key` against `hemi` and the Bitcoin node at `bitcoin_rpc`, its record
/// in `record_dir`, output to `log`.
fn spawn_popm(
    hemi: &Hemi,
    bitcoin_rpc: &str,
    key: &hemi_btc_wallet::Key,
    key_type: &str,
    poll: &str,
    record_dir: &std::path::Path,
    log: &std::path::Path,
) -> anyhow::Result<std::process::Child> {
    let out = std::fs::File::create(log)?;
    let l2 = format!("http://{}", hemi.rpc_addr);
    Ok(Command::new(env!("CARGO_BIN_EXE_hemi"))
        .args(["popm", "--l2-rpc", &l2, "--bitcoin-rpc", bitcoin_rpc])
        .args(["--poll", poll, "--key-type", key_type])
        .arg("--dir")
        .arg(record_dir)
        .env("HEMI_POPM_KEY", hex::encode(key.secret_bytes()))
        .env("RUST_LOG", "info")
        .stdout(out.try_clone()?)
        .stderr(out)
        .spawn()?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_miner_killed_nine_times_never_publishes_a_keystone_twice() -> anyhow::Result<()> {
    use hemi_btc_wallet::{Key, KeyKind};
    let core = BitcoinCore::start().await?;
    let dir = tempfile::tempdir()?;
    let (_, sink) = hemi_testkit::regtest_p2wpkh(&[0x52; 32]).context("sink key")?;
    let devnet_key = Key::from_seed("hemi-devnet-bitcoin-key-0");
    let second = Key::from_seed("pop-test-second-miner");
    core.mine(
        20,
        &devnet_key.address(KeyKind::P2wpkh, bitcoin::Network::Regtest),
    )
    .await?;
    // The second miner spends taproot outputs (key path).
    core.mine(
        20,
        &second.address(KeyKind::P2tr, bitcoin::Network::Regtest),
    )
    .await?;
    core.mine(100, &sink).await?;
    let start_height = core.rpc.get_block_count().await? + 1;
    let url = core.rpc_url();
    let hemi = Hemi::devnet_on(
        &core,
        dir.path(),
        &["--block-time", "0.25", "--keystone-interval", "2"],
    )
    .await?;
    wait_synced(&hemi, &core.rpc, 60).await?;
    let record_dir = dir.path().join("popm2");
    let start_popm = |n: usize| {
        spawn_popm(
            &hemi,
            &url,
            &second,
            "p2tr",
            "0.3",
            &record_dir,
            &dir.path().join(format!("popm-{n}.log")),
        )
    };
    let mut kills = Vec::new();
    for round in 0..9 {
        let mut child = start_popm(round)?;
        // 0.3–2.3 s of mining while Core confirms a block now and then.
        let ms = 300 + (rand::random::<u64>() % 2000);
        let deadline = std::time::Instant::now() + std::time::Duration::from_millis(ms);
        while std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            if rand::random::<u8>().is_multiple_of(4) {
                core.mine(1, &sink).await?;
            }
        }
        child.kill()?; // SIGKILL
        child.wait()?;
        kills.push(ms);
    }
    // A last run that is left to finish its work.
    let mut child = start_popm(99)?;
    let newest = *keystones(&hemi).await?.keys().last().context("keystones")?;
    let r = wait_for(90, "every keystone published by both miners", || async {
        core.mine(1, &sink).await.ok()?;
        tokio::time::sleep(std::time::Duration::from_millis(400)).await;
        let pops = chain_pops(&core.rpc, start_height).await.ok()?;
        let by = |who: &[u8]| -> std::collections::BTreeSet<u32> {
            pops.iter().filter(|p| p.1 == who).map(|p| p.0).collect()
        };
        let (a, b) = (by(&devnet_key.public_key().to_bytes()), by(b"p2tr"));
        let want: std::collections::BTreeSet<u32> =
            (1..=newest / 2).map(|i| (i * 2) as u32).collect();
        (want.is_subset(&a) && b.len() >= 3).then_some((a.len(), b.len()))
    })
    .await;
    let _ = child.kill();
    let _ = child.wait();
    let (a, b) = r.map_err(|e| {
        let log = std::fs::read_to_string(dir.path().join("popm-99.log")).unwrap_or_default();
        anyhow::anyhow!("{e}\nlast popm log:\n{}", tail(&log, 30))
    })?;
    // Never twice by one miner, whatever the kills interrupted.
    let pops = chain_pops(&core.rpc, start_height).await?;
    let mut seen: BTreeMap<(u32, Vec<u8>), Txid> = BTreeMap::new();
    let mut vsizes: BTreeMap<&str, std::collections::BTreeSet<usize>> = BTreeMap::new();
    for (k, who, txid, vsize) in &pops {
        if let Some(prev) = seen.insert((*k, who.clone()), *txid) {
            bail!("keystone {k} published twice by one miner: {prev} and {txid}");
        }
        let kind = if who.as_slice() == b"p2tr" {
            "p2tr"
        } else {
            "p2wpkh"
        };
        vsizes.entry(kind).or_default().insert(*vsize);
    }
    // Both input types, as Bitcoin Core accepted and mined them.
    assert!(vsizes.values().flatten().all(|v| *v <= 203), "{vsizes:?}");
    eprintln!("PoP transaction vsizes mined by Bitcoin Core: {vsizes:?}");
    eprintln!(
        "kills after {kills:?} ms; keystones published: devnet miner {a}, second miner {b}; {} PoP transactions in all",
        pops.len()
    );
    assert!(b > 0);
    Ok(())
}

/// The L2 address of a miner's key, lower-case hex (as event topics carry it).
fn eth_address(key: &hemi_btc_wallet::Key) -> anyhow::Result<String> {
    let secret = bitcoin::secp256k1::SecretKey::from_slice(&key.secret_bytes())?;
    Ok(format!("{:#x}", hemi_chain::eth_address(&secret)))
}

async fn balance_at(hemi: &Hemi, who: &str, block: u64) -> anyhow::Result<u128> {
    let v = hemi
        .call("eth_getBalance", json!([who, format!("0x{block:x}")]))
        .await?;
    Ok(u128::from_str_radix(
        v.as_str().context("balance")?.trim_start_matches("0x"),
        16,
    )?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_miners_split_a_keystone_reward_by_how_soon_bitcoin_confirmed_them(
) -> anyhow::Result<()> {
    use hemi_btc_wallet::{Key, KeyKind};
    let core = BitcoinCore::start().await?;
    let dir = tempfile::tempdir()?;
    let (_, sink) = hemi_testkit::regtest_p2wpkh(&[0x53; 32]).context("sink key")?;
    let miners = [
        Key::from_seed("pop-reward-miner-a"),
        Key::from_seed("pop-reward-miner-b"),
    ];
    for m in &miners {
        core.mine(5, &m.address(KeyKind::P2wpkh, bitcoin::Network::Regtest))
            .await?;
    }
    core.mine(100, &sink).await?;
    let url = core.rpc_url();
    let delay = 40u64;
    let hemi = Hemi::devnet_on(
        &core,
        dir.path(),
        &[
            "--no-popm",
            "--block-time",
            "0.5",
            "--keystone-interval",
            "5",
            "--pop-payout-delay",
            &delay.to_string(),
        ],
    )
    .await?;
    wait_synced(&hemi, &core.rpc, 60).await?;
    let mut children = Vec::new();
    for (i, m) in miners.iter().enumerate() {
        children.push(spawn_popm(
            &hemi,
            &url,
            m,
            "p2wpkh",
            // B polls once an hour: it hears of new keystones through its subscription.
            if i == 0 { "0.3" } else { "3600" },
            &dir.path().join(format!("popm-{i}")),
            &dir.path().join(format!("popm-{i}.log")),
        )?);
    }
    // Both publish keystone 5; Core confirms A's at h and B's at h + 2.
    let pks: Vec<Vec<u8>> = miners.iter().map(|m| m.public_key().to_bytes()).collect();
    let (ta, tb) = wait_for(
        60,
        "both miners' keystone-5 transactions in the mempool",
        || async {
            let mut found: [Option<Transaction>; 2] = [None, None];
            for txid in core.rpc.get_raw_mempool().await.ok()? {
                let Ok(tx) = core.rpc.get_raw_transaction(&txid).await else {
                    continue;
                };
                if pop_keystone(&tx).map(|k| k.l2_block_number) != Some(5) {
                    continue;
                }
                if let Some(i) = pks.iter().position(|pk| *pk == signer_of(&tx)) {
                    found[i] = Some(tx);
                }
            }
            let [a, b] = found;
            Some((a?, b?))
        },
    )
    .await?;
    // What B publishes of a keystone made from now on, it learnt of over WebSocket.
    let later = (head_of(&hemi).await? / 5 + 2) * 5;
    wait_for(
        30,
        "B's publication of a keystone made after it last polled",
        || async {
            for txid in core.rpc.get_raw_mempool().await.ok()? {
                let Ok(tx) = core.rpc.get_raw_transaction(&txid).await else {
                    continue;
                };
                let newer =
                    pop_keystone(&tx).is_some_and(|k| u64::from(k.l2_block_number) >= later);
                if newer && signer_of(&tx) == pks[1] {
                    return Some(());
                }
            }
            None
        },
    )
    .await?;
    core.rpc
        .generate_block(&sink, std::slice::from_ref(&ta))
        .await?;
    let h = core.rpc.get_block_count().await?;
    core.rpc.generate_block(&sink, &[]).await?;
    core.rpc
        .generate_block(&sink, std::slice::from_ref(&tb))
        .await?;
    wait_synced(&hemi, &core.rpc, 30).await?;
    let paying = 5 + delay;
    let head = wait_for(60, "the paying block", || async {
        let v = hemi.call("eth_blockNumber", json!([])).await.ok()?;
        let n = u64::from_str_radix(v.as_str()?.trim_start_matches("0x"), 16).ok()?;
        (n >= paying).then_some(n)
    })
    .await?;
    for c in &mut children {
        let _ = c.kill();
        let _ = c.wait();
    }
    // The paying block carries the 0x7D payout right after the attributes transaction.
    let block = hemi
        .call(
            "eth_getBlockByNumber",
            json!([format!("0x{paying:x}"), true]),
        )
        .await?;
    assert_eq!(
        block["transactions"][1]["type"], "0x7d",
        "{}",
        block["transactions"][1]
    );
    // 1 ETH split 100000 : 25000 (relative heights 0 and 2, Hemi's table).
    let one_eth: u128 = 1_000_000_000_000_000_000;
    let expected = [one_eth * 100_000 / 125_000, one_eth * 25_000 / 125_000];
    for (m, want) in miners.iter().zip(expected) {
        let who = eth_address(m)?;
        let before = balance_at(&hemi, &who, paying - 1).await?;
        let after = balance_at(&hemi, &who, paying).await?;
        assert_eq!(after - before, want, "reward of {who}");
        assert_eq!(balance_at(&hemi, &who, head).await?, after, "paid once");
    }
    // One PopReward event per publication, from the rewards address.
    let logs = hemi
        .call(
            "eth_getLogs",
            json!([{"fromBlock": format!("0x{paying:x}"), "toBlock": format!("0x{paying:x}"),
                    "address": "0x4200000000000000000000000000000000000042"}]),
        )
        .await?;
    let logs = logs.as_array().context("logs")?;
    assert_eq!(logs.len(), 2, "{logs:?}");
    for (log, (m, rel)) in logs.iter().zip(miners.iter().zip([0u64, 2])) {
        let topic_miner = log["topics"][2].as_str().context("topic")?;
        assert!(topic_miner.ends_with(&eth_address(m)?[2..]), "{log}");
        let data = hex::decode(
            log["data"]
                .as_str()
                .context("data")?
                .trim_start_matches("0x"),
        )?;
        assert_eq!(u64::from_be_bytes(data[56..64].try_into()?), rel, "{log}");
    }
    eprintln!(
        "keystone 5 published at Bitcoin heights {h} and {}; block {paying} paid {:?} wei",
        h + 2,
        expected
    );
    Ok(())
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let target = to.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_dir(&e.path(), &target)?;
        } else {
            std::fs::copy(e.path(), target)?;
        }
    }
    Ok(())
}

async fn hash_at(hemi: &Hemi, n: u64) -> anyhow::Result<String> {
    let b = hemi
        .call("eth_getBlockByNumber", json!([format!("0x{n:x}"), false]))
        .await?;
    Ok(b["hash"].as_str().context("block hash")?.to_string())
}

/// Block `n`'s abbreviated keystone as `hemi` serves it.
async fn abbreviated_at(hemi: &Hemi, n: u64) -> anyhow::Result<AbbreviatedKeystone> {
    let ks = keystones(hemi).await?;
    let k = ks
        .get(&n)
        .with_context(|| format!("keystone {n} on {}", hemi.rpc_addr))?;
    let bytes = hex::decode(k["abbreviated"].as_str().context("abbreviated")?)?;
    Ok(AbbreviatedKeystone::from_bytes(&bytes)?)
}

/// A signed EIP-1559 transfer of `value` wei from a dev account (raw 0x-hex).
fn signed_transfer(
    secret: alloy_primitives::B256,
    nonce: u64,
    to: alloy_primitives::Address,
    value: u64,
) -> String {
    use alloy_consensus::{SignableTransaction, TxEip1559, TxEnvelope};
    use alloy_eips::eip2718::Encodable2718;
    let tx = TxEip1559 {
        chain_id: 31337,
        nonce,
        gas_limit: 21_000,
        max_fee_per_gas: 20_000_000_000,
        max_priority_fee_per_gas: 1_000_000_000,
        to: alloy_primitives::TxKind::Call(to),
        value: alloy_primitives::U256::from(value),
        access_list: Default::default(),
        input: Default::default(),
    };
    let sig = alloy_consensus::crypto::secp256k1::sign_message(secret, tx.signature_hash())
        .expect("sign");
    format!(
        "0x{}",
        hex::encode(TxEnvelope::from(tx.into_signed(sig)).encoded_2718())
    )
}

async fn fork_choice(hemi: &Hemi) -> anyhow::Result<Value> {
    hemi.call("hemi_getForkChoice", json!([])).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_equivocating_sequencer_is_settled_by_bitcoin_and_superfinal_blocks_stay(
) -> anyhow::Result<()> {
    equivocation_settled_by_bitcoin(&[]).await
}

/// The same with a sequencer *set* of four (`--sequencers 4`) in place of one key: the whole
/// set runs on three copies of its state, so three branches each carry valid commit
/// certificates of one validator set (what more than a third of the set turning faulty
/// makes). PoP fork choice, above consensus, settles it the same way, and a superfinal block
/// is never reverted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certified_branches_of_a_faulty_set_are_settled_by_bitcoin() -> anyhow::Result<()> {
    equivocation_settled_by_bitcoin(&["--sequencers", "4"]).await
}

/// Three branches from one block producer (`extra` says which: one key or a set), settled by
/// where Bitcoin has their keystones; C, the best anchored, comes after B is superfinal.
async fn equivocation_settled_by_bitcoin(extra: &[&str]) -> anyhow::Result<()> {
    use hemi_btc_wallet::{Key, KeyKind};
    let core = BitcoinCore::start().await?;
    let dir = tempfile::tempdir()?;
    let (_, sink) = hemi_testkit::regtest_p2wpkh(&[0x54; 32]).context("sink key")?;
    let publisher = Key::from_seed("fork-choice-publisher");
    core.mine(
        4,
        &publisher.address(KeyKind::P2wpkh, bitcoin::Network::Regtest),
    )
    .await?;
    core.mine(100, &sink).await?;
    let dirs: Vec<std::path::PathBuf> =
        ["a", "b", "c"].iter().map(|n| dir.path().join(n)).collect();
    let (core_ref, log_dir) = (&core, dir.path());
    let sequencer = |d: &std::path::Path| {
        let d = d.to_string_lossy().into_owned();
        async move {
            let mut args = vec![
                "--no-popm",
                "--persist",
                "--dir",
                &d,
                "--block-time",
                "0.5",
                "--keystone-interval",
                "5",
            ];
            args.extend_from_slice(extra);
            Hemi::devnet_on(core_ref, log_dir, &args).await
        }
    };
    // One sequencer key, three copies of its state at block n0: A, B and C each go on alone
    // (each start pins a new Bitcoin tip, so their next blocks differ): two extra signed
    // branches from one key.
    let mut first = sequencer(&dirs[0]).await?;
    wait_for(60, "block 6", || async {
        (head_of(&first).await.ok()? >= 6).then_some(())
    })
    .await?;
    let at_kill = head_of(&first).await?;
    first.kill();
    copy_dir(&dirs[0], &dirs[1])?;
    copy_dir(&dirs[0], &dirs[2])?;
    // Each copy makes its first own block before the next one starts, and the next starts over
    // a second later: its first block has a later timestamp (and pins a newer Bitcoin tip, as
    // every devnet start mines 101 blocks on Core), so the three differ from there on.
    let mut nodes = Vec::new();
    for d in &dirs {
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        let node = sequencer(d).await?;
        wait_for(60, "the copy's first own block", || async {
            (head_of(&node).await.ok()? >= at_kill + 2).then_some(())
        })
        .await?;
        nodes.push(node);
    }
    let c = nodes.pop().context("c")?;
    let b = nodes.pop().context("b")?;
    let a = nodes.pop().context("a")?;
    // B and C also carry different transfers, visible to anyone who follows them.
    let dev = hemi_chain::dev_accounts(hemi_chain::DEV_MNEMONIC, 1)?;
    let to = alloy_primitives::Address::repeat_byte(0x5e);
    for (node, value) in [(&b, 1u64), (&c, 2)] {
        let nonce = node
            .call(
                "eth_getTransactionCount",
                json!([format!("{:?}", dev[0].address), "pending"]),
            )
            .await?;
        let nonce = u64::from_str_radix(
            nonce.as_str().context("nonce")?.trim_start_matches("0x"),
            16,
        )?;
        node.call(
            "eth_sendRawTransaction",
            json!([signed_transfer(dev[0].secret.into(), nonce, to, value)]),
        )
        .await?;
    }
    for node in [&a, &b, &c] {
        wait_for(60, "each branch's own blocks", || async {
            (head_of(node).await.ok()? >= 15).then_some(())
        })
        .await?;
    }
    // The fork point: the last block all three share.
    let mut n0 = 0;
    while hash_at(&a, n0 + 1).await? == hash_at(&b, n0 + 1).await?
        && hash_at(&a, n0 + 1).await? == hash_at(&c, n0 + 1).await?
    {
        n0 += 1;
    }
    assert!(
        n0 >= 6,
        "the copies share the blocks up to 6 at least (n0 = {n0})"
    );
    for (x, y) in [(&a, &b), (&b, &c), (&a, &c)] {
        assert_ne!(hash_at(x, n0 + 1).await?, hash_at(y, n0 + 1).await?);
    }
    let k = n0 - n0 % 5 + 5;
    for node in [&a, &b, &c] {
        wait_for(60, "each branch's keystone after the fork", || async {
            (head_of(node).await.ok()? >= k + 3).then_some(())
        })
        .await?;
    }
    if !extra.is_empty() {
        // Under a set, each branch's blocks after the fork carry a commit certificate of the
        // same four validators: three certified branches.
        use hemi_chain::SealVerifier as _;
        let set = common::sequencer_set(&a).await?;
        assert_eq!(set.0.len(), 4);
        let chain_id = hemi_chain::ChainSpec::devnet()?.chain_id;
        for node in [&a, &b, &c] {
            for n in [n0 + 1, k] {
                let raw = node
                    .call("debug_getRawBlock", json!([format!("0x{n:x}")]))
                    .await?;
                let block = hemi_chain::L2Block::decode(&hex::decode(
                    raw.as_str().context("raw")?.trim_start_matches("0x"),
                )?)?;
                set.verify(
                    chain_id,
                    n,
                    block.hash(),
                    &block.seal,
                    block.certificate.as_ref(),
                )
                .with_context(|| format!("block {n}"))?;
            }
        }
    }
    let peer = core.p2p_addr().to_string();
    let (url_a, url_b, url_c) = (
        format!("http://{}", a.rpc_addr),
        format!("http://{}", b.rpc_addr),
        format!("http://{}", c.rpc_addr),
    );
    let fdir = dir.path().join("follower");
    let fdir_s = fdir.to_string_lossy().into_owned();
    let follower_args = |sources: &[&str]| {
        let mut v = vec![
            "node".to_string(),
            "--bitcoin-peer".into(),
            peer.clone(),
            "--dir".into(),
            fdir_s.clone(),
        ];
        for s in sources {
            v.push("--follow".into());
            v.push(s.to_string());
        }
        v
    };
    // The follower first knows only A and takes its chain; restarted with B too, it keeps B's
    // branch beside it.
    let (a_k, b_k) = (hash_at(&a, k).await?, hash_at(&b, k).await?);
    let args = follower_args(&[&url_a]);
    let mut f = Hemi::start(
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        dir.path(),
    )
    .await?;
    wait_for(60, "the follower on A's chain", || async {
        (hash_at(&f, k).await.ok()? == a_k).then_some(())
    })
    .await
    .with_context(|| tail(&f.log_text(), 30))?;
    f.kill();
    let args = follower_args(&[&url_a, &url_b]);
    let mut f = Hemi::start(
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        dir.path(),
    )
    .await?;
    wait_for(
        60,
        "the follower on A's branch, B's tip listed as a candidate",
        || async {
            if hash_at(&f, k).await.ok()? != a_k {
                return None;
            }
            let fc = fork_choice(&f).await.ok()?;
            fc["tips"].as_array()?.iter().find(|t| {
                t["status"] == "candidate"
                    && t["forkPoint"] == n0
                    && t["number"].as_u64() >= Some(k)
            })?;
            Some(())
        },
    )
    .await
    .with_context(|| tail(&f.log_text(), 30))?;

    // Bitcoin: C's keystone k at height h, B's at h + 2, A's at h + 5.
    let mut utxos = common::spendable(&core.rpc, &publisher, KeyKind::P2wpkh).await?;
    let mut publish = |ks: &AbbreviatedKeystone| -> anyhow::Result<Transaction> {
        let utxo = utxos.pop().context("a publisher UTXO")?;
        Ok(hemi_pop::build_pop_transaction(
            &publisher,
            KeyKind::P2wpkh,
            utxo,
            ks,
            2.0,
        )?)
    };
    let pop_c = publish(&abbreviated_at(&c, k).await?)?;
    let pop_b = publish(&abbreviated_at(&b, k).await?)?;
    let pop_a = publish(&abbreviated_at(&a, k).await?)?;
    core.rpc
        .generate_block(&sink, std::slice::from_ref(&pop_c))
        .await?;
    let h = core.rpc.get_block_count().await?;
    core.rpc.generate_block(&sink, &[]).await?;
    core.rpc
        .generate_block(&sink, std::slice::from_ref(&pop_b))
        .await?;
    core.rpc.generate_block(&sink, &[]).await?;
    core.rpc.generate_block(&sink, &[]).await?;
    core.rpc
        .generate_block(&sink, std::slice::from_ref(&pop_a))
        .await?;

    // B's keystone was published 3 blocks before A's: 100 against 89 → the follower switches.
    wait_for(60, "the follower to switch to B's branch", || async {
        (hash_at(&f, k).await.ok()? == b_k).then_some(())
    })
    .await
    .with_context(|| tail(&f.log_text(), 40))?;
    // The follower may have switched at block k before taking B's block with the transfer.
    let balance = wait_for(30, "B's transfer in the follower's state", || async {
        let b = f
            .call("eth_getBalance", json!([format!("{to:?}"), "latest"]))
            .await
            .ok()?;
        (b != "0x0").then_some(b)
    })
    .await?;
    assert_eq!(
        balance, "0x1",
        "B's transfer is in the follower's state, C's is not"
    );
    let a_tip = wait_for(30, "A's branch listed as the losing candidate", || async {
        let fc = fork_choice(&f).await.ok()?;
        let t = fc["tips"]
            .as_array()?
            .iter()
            .find(|t| t["active"] == false && t["forkPoint"] == n0)?
            .clone();
        (t["status"] == "candidate" && t["keystones"][0]["publicationHeight"] == h + 5).then_some(t)
    })
    .await?;
    assert_eq!(a_tip["score"], 89, "{a_tip}");
    assert_eq!(a_tip["activeScore"], 100, "{a_tip}");
    assert_eq!(
        a_tip["keystones"][0],
        json!({"number": k, "publicationHeight": h + 5}),
        "{a_tip}"
    );
    assert_eq!(
        a_tip["activeKeystones"][0],
        json!({"number": k, "publicationHeight": h + 2}),
        "{a_tip}"
    );
    // It keeps following B.
    let b_head = head_of(&b).await?;
    wait_for(30, "the follower to follow B onwards", || async {
        let n = head_of(&f).await.ok()?;
        (n >= b_head && hash_at(&f, b_head).await.ok()? == hash_at(&b, b_head).await.ok()?)
            .then_some(())
    })
    .await?;

    // Ten Bitcoin blocks on B's publication: block k is superfinal on the follower.
    core.mine(10, &sink).await?;
    wait_for(60, "block k finalized on the follower", || async {
        (tag_number(&f, "finalized").await.ok()? >= k).then_some(())
    })
    .await
    .with_context(|| tail(&f.log_text(), 30))?;

    // Now the follower also hears of C, whose keystone Bitcoin has had longest (height h): it
    // scores better than B (100 against 95) but forks below a superfinal block: refused.
    f.kill();
    let args = follower_args(&[&url_a, &url_b, &url_c]);
    let f = Hemi::start(
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        dir.path(),
    )
    .await?;
    wait_for(
        60,
        "the restarted follower at block k finalized",
        || async { (tag_number(&f, "finalized").await.ok()? >= k).then_some(()) },
    )
    .await?;
    let c_head = head_of(&c).await?;
    let c_tip_hash = hash_at(&c, c_head).await?;
    let c_tip = wait_for(60, "C's branch scored and refused", || async {
        let fc = fork_choice(&f).await.ok()?;
        let t = fc["tips"]
            .as_array()?
            .iter()
            .find(|t| {
                t["forkPoint"] == n0
                    && t["status"] == "refused"
                    && t["number"].as_u64() >= Some(c_head)
                    && {
                        let kk = &t["keystones"][0];
                        kk["publicationHeight"] == h
                    }
            })?
            .clone();
        Some(t)
    })
    .await
    .with_context(|| format!("C's tip {c_tip_hash}; {}", tail(&f.log_text(), 30)))?;
    assert_eq!(c_tip["score"], 100, "{c_tip}");
    assert_eq!(c_tip["activeScore"], 95, "{c_tip}");
    assert!(
        c_tip["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("superfinal"),
        "{c_tip}"
    );
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert_eq!(hash_at(&f, k).await?, b_k, "the superfinal block stays B's");
    assert_eq!(
        f.call("eth_getBalance", json!([format!("{to:?}"), "latest"]))
            .await?,
        "0x1"
    );
    eprintln!(
        "fork after block {n0}; keystone {k} published by C at {h}, B at {}, A at {}; the follower switched A → B and refused C below finalized {}",
        h + 2,
        h + 5,
        tag_number(&f, "finalized").await?
    );
    Ok(())
}
