//! The sequencer set end to end: four `hemi node --sequencer-key … --validators FILE`
//! processes order the chain by Tendermint BFT (Malachite) and two followers join by p2p only.
//! Transactions sent to different nodes land; every node has one block per height and every
//! certificate verifies; kill -9 of the proposer, then of a second validator (no progress, no
//! fork), then their return (progress, no equivocation). Real Bitcoin Core as Bitcoin.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use std::str::FromStr;

use anyhow::Context;
use bitcoin::Network;
use common::{cast, head_of, hemi_cli, raw_block, wait_for, Evil, Hemi};
use hemi_btc_wallet::{Key, KeyKind};
use hemi_chain::{SealVerifier, ValidatorSet};
use serde_json::{json, Value};

/// Blocks the run reaches before the crash half of the test.
const BLOCKS: u64 = 500;

fn p2p_port() -> String {
    format!("127.0.0.1:{}", hemi_testkit::free_port())
}

async fn listen_addr(hemi: &Hemi) -> anyhow::Result<String> {
    Ok(
        hemi.call("hemi_nodeStatus", json!([])).await?["p2p"]["listen"][0]
            .as_str()
            .context("p2p listen address")?
            .to_string(),
    )
}

async fn hash_at(hemi: &Hemi, n: u64) -> anyhow::Result<String> {
    let b = hemi
        .call("eth_getBlockByNumber", json!([format!("0x{n:x}"), false]))
        .await?;
    Ok(b["hash"].as_str().context("hash")?.to_string())
}

/// A TCP relay between two validators that the test can cut (a network partition): while cut,
/// its connections are dropped and new ones refused.
struct Relay {
    port: u16,
    cut: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    async fn to(port: u16) -> anyhow::Result<Relay> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let me = listener.local_addr()?.port();
        let cut = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
        let (c, k) = (cut.clone(), conns.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if c.load(Ordering::SeqCst) {
                    continue;
                }
                let h = tokio::spawn(async move {
                    if let Ok(mut out) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                    }
                });
                k.lock().expect("relay").push(h.abort_handle());
            }
        });
        Ok(Relay {
            port: me,
            cut,
            conns,
            task,
        })
    }

    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for c in self.conns.lock().expect("relay").drain(..) {
            c.abort();
        }
    }

    fn heal(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.cut();
        self.task.abort();
    }
}

struct Validator {
    args: Vec<String>,
    node: Option<Hemi>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_validator_processes_and_two_followers() -> anyhow::Result<()> {
    let core = hemi_testkit::BitcoinCore::start().await?;
    let (_, miner) = hemi_testkit::regtest_p2wpkh(&[7; 32])?;
    core.mine(101, &miner).await?;
    let dir = tempfile::tempdir()?;
    let peer = core.p2p_addr().to_string();

    // The set: four keys made by `hemi sequencer-key`, each validator's consensus address on
    // loopback; the validators file is the entries it prints.
    let ports: Vec<u16> = (0..4).map(|_| hemi_testkit::free_port()).collect();
    let mut entries: Vec<Value> = Vec::new();
    let mut key_files: Vec<String> = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let path = dir.path().join(format!("v{i}.key"));
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_hemi"))
            .args(["sequencer-key", "--out", &path.to_string_lossy()])
            .args(["--consensus-addr", &format!("/ip4/127.0.0.1/tcp/{port}")])
            .output()?;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let entry: Value = serde_json::from_slice(&out.stdout)?;
        // Asked again, it reads the key back: the same entry.
        let again = std::process::Command::new(env!("CARGO_BIN_EXE_hemi"))
            .args(["sequencer-key", "--out", &path.to_string_lossy()])
            .args(["--consensus-addr", &format!("/ip4/127.0.0.1/tcp/{port}")])
            .output()?;
        assert_eq!(serde_json::from_slice::<Value>(&again.stdout)?, entry);
        entries.push(entry);
        key_files.push(path.to_string_lossy().into_owned());
    }
    let secrets: Vec<alloy_primitives::B256> = key_files
        .iter()
        .map(|f| -> anyhow::Result<alloy_primitives::B256> {
            Ok(alloy_primitives::B256::from_slice(&hex::decode(
                std::fs::read_to_string(f)?.trim(),
            )?))
        })
        .collect::<anyhow::Result<_>>()?;
    let file = dir.path().join("validators.json");
    std::fs::write(&file, json!({ "validators": entries }).to_string())?;
    let file = file.to_string_lossy().into_owned();
    let addresses: Vec<alloy_primitives::Address> = secrets
        .iter()
        .map(|s| {
            hemi_consensus::PubKey::of_secret(*s)
                .and_then(|k| k.address())
                .expect("address")
        })
        .collect();
    for (e, a) in entries.iter().zip(&addresses) {
        assert_eq!(e["address"], json!(a));
    }
    let mut sorted = addresses.clone();
    sorted.sort();
    let set = ValidatorSet(sorted);

    // A key outside the set is refused by name.
    let outsider = std::process::Command::new(env!("CARGO_BIN_EXE_hemi"))
        .args(["node", "--bitcoin-peer", &peer, "--validators", &file])
        .args(["--sequencer-key", &"11".repeat(32)])
        .args(["--dir", &dir.path().join("outsider").to_string_lossy()])
        .output()?;
    assert!(!outsider.status.success());
    let err = String::from_utf8_lossy(&outsider.stderr);
    assert!(err.contains("which is not in --validators"), "{err}");

    // Every validator reaches every other through a relay of its own (relays[i][j]: i → j), so
    // the test can partition the set.
    let mut relays: Vec<Vec<Option<Relay>>> = Vec::new();
    for i in 0..4 {
        let mut row = Vec::new();
        for (j, port) in ports.iter().enumerate() {
            row.push(if i == j {
                None
            } else {
                Some(Relay::to(*port).await?)
            });
        }
        relays.push(row);
    }

    // Validator 0 first (the others bootnode its p2p address for transactions and blocks).
    let mut validators: Vec<Validator> = Vec::new();
    let mut boot = String::new();
    for (i, key_file) in key_files.iter().enumerate() {
        let mut args: Vec<String> = [
            "node",
            "--bitcoin-peer",
            &peer,
            "--sequencer-key",
            key_file,
            "--validators",
            &file,
            "--block-time",
            "0.1",
            "--p2p-addr",
            &p2p_port(),
            "--dir",
            &dir.path().join(format!("v{i}")).to_string_lossy(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if i > 0 {
            args.extend(["--bootnode".to_string(), boot.clone()]);
        }
        for (j, relay) in relays[i].iter().enumerate() {
            if let Some(r) = relay {
                args.push("--consensus-peer".into());
                args.push(format!("{}=/ip4/127.0.0.1/tcp/{}", addresses[j], r.port));
            }
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let node = Hemi::start(&refs, dir.path()).await?;
        if i == 0 {
            boot = listen_addr(&node).await?;
        }
        validators.push(Validator {
            args,
            node: Some(node),
        });
    }
    // Two followers by p2p only: one pins the set, one learns it from its peer.
    let f_pinned = Hemi::start(
        &[
            "node",
            "--bitcoin-peer",
            &peer,
            "--validators",
            &file,
            "--p2p-addr",
            &p2p_port(),
            "--bootnode",
            &boot,
            "--dir",
            &dir.path().join("f0").to_string_lossy(),
        ],
        dir.path(),
    )
    .await?;
    let f_learned = Hemi::start(
        &[
            "node",
            "--bitcoin-peer",
            &peer,
            "--p2p-addr",
            &p2p_port(),
            "--bootnode",
            &listen_addr(&f_pinned).await?,
            "--dir",
            &dir.path().join("f1").to_string_lossy(),
        ],
        dir.path(),
    )
    .await?;
    let status = f_learned.call("hemi_nodeStatus", json!([])).await?;
    assert_eq!(
        status["validators"].as_array().map(Vec::len),
        Some(4),
        "{status}"
    );

    // Transactions sent to each validator and each follower; each waits for its receipt on
    // the node it was sent to.
    let accounts = hemi_chain::dev_accounts(hemi_chain::DEV_MNEMONIC, 6)?;
    let to = "0x000000000000000000000000000000000000bEEF";
    let mut urls: Vec<String> = validators
        .iter()
        .map(|v| format!("http://{}", v.node.as_ref().expect("up").rpc_addr))
        .collect();
    urls.push(format!("http://{}", f_pinned.rpc_addr));
    urls.push(format!("http://{}", f_learned.rpc_addr));
    for (i, url) in urls.iter().enumerate() {
        let key = format!("0x{}", hex::encode(accounts[i].secret));
        let out = cast(&[
            "send",
            "--rpc-url",
            url,
            "--private-key",
            &key,
            to,
            "--value",
            "1gwei",
        ])
        .with_context(|| format!("node {i}"))?;
        assert!(out.contains("status               1 (success)"), "{out}");
    }

    let v0 = validators[0].node.as_ref().expect("up");
    let started = Instant::now();
    wait_for(600, "the set to decide its blocks", || async {
        (head_of(v0).await.ok()? >= BLOCKS).then_some(())
    })
    .await
    .with_context(|| common::tail(&v0.log_text(), 30))?;
    eprintln!(
        "{BLOCKS} blocks in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let nodes: Vec<&Hemi> = validators
        .iter()
        .filter_map(|v| v.node.as_ref())
        .chain([&f_pinned, &f_learned])
        .collect();
    for node in &nodes {
        wait_for(120, "every node to reach the height", || async {
            (head_of(node).await.ok()? >= BLOCKS).then_some(())
        })
        .await
        .with_context(|| common::tail(&node.log_text(), 30))?;
    }
    // One block per height on every node; every certificate verifies against the set.
    let chain_id = hemi_chain::ChainSpec::devnet()?.chain_id;
    let mut proposers = std::collections::BTreeSet::new();
    for n in 1..=BLOCKS {
        let want = hash_at(nodes[0], n).await?;
        for (i, node) in nodes.iter().enumerate().skip(1) {
            assert_eq!(hash_at(node, n).await?, want, "block {n} on node {i}");
        }
        let b = raw_block(nodes[(n as usize) % nodes.len()], n).await?;
        assert_eq!(format!("{:#x}", b.hash()), want);
        let cert = b.certificate.as_ref().context("certificate")?;
        set.verify(chain_id, n, b.hash(), &b.seal, Some(cert))
            .with_context(|| format!("certificate of block {n}"))?;
        proposers.insert(b.header.beneficiary);
    }
    assert_eq!(
        proposers.len(),
        4,
        "every validator proposed: {proposers:?}"
    );
    assert_eq!(cast(&["balance", to, "--rpc-url", &urls[5]])?, "6000000000");

    // A peer that gossips a block certified by only two of the four validators (real
    // signatures, too few) is refused by the follower and dropped.
    let evil = hemi_net::Network::start(
        hemi_net::NetConfig {
            chain_id,
            listen: "127.0.0.1:0".parse()?,
            bootnodes: vec![listen_addr(&f_pinned)
                .await?
                .parse::<hemi_net::Multiaddr>()?],
            limits: Default::default(),
        },
        hemi_net::load_or_create_key(None)?,
        std::sync::Arc::new(Evil),
    )
    .await?;
    let evil_id = evil.peer_id().to_string();
    // Three distinct blocks (gossip drops a repeated message), each with two real signatures.
    let base = raw_block(v0, head_of(v0).await?).await?;
    let mut forged = Vec::new();
    let mut forged_hash = Default::default();
    for k in 1..=3u64 {
        let mut short = base.clone();
        short.header.timestamp += k;
        let hash = short.hash();
        let digest = hemi_chain::certificate::vote_digest(
            chain_id,
            hemi_chain::certificate::VoteKind::Precommit,
            short.header.number,
            0,
            Some(hash),
        );
        short.certificate = Some(hemi_chain::Certificate {
            round: 0,
            signatures: secrets[..2]
                .iter()
                .map(|s| hemi_chain::certificate::sign_digest(*s, digest))
                .collect::<Result<_, _>>()?,
        });
        forged.push(short.encode());
        forged_hash = hash;
    }
    let banned = wait_for(30, "the follower to drop the peer", || async {
        for b in &forged {
            evil.publish_block(b.clone());
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let s = f_pinned.call("hemi_nodeStatus", json!([])).await.ok()?;
        s["p2p"]["banned"]
            .as_array()?
            .iter()
            .find(|b| b["peerId"] == evil_id.as_str())
            .cloned()
    })
    .await?;
    assert!(
        banned["reason"].as_str().unwrap_or("").contains("needs 3"),
        "{banned}"
    );
    assert_ne!(
        hash_at(&f_pinned, base.header.number).await?,
        format!("{forged_hash:#x}")
    );

    // kill -9 of the proposer of the next height: the others go on within a few timeouts.
    let ss = v0.call("hemi_getSequencerSet", json!([])).await?;
    let proposer: alloy_primitives::Address =
        ss["proposer"].as_str().context("proposer")?.parse()?;
    let victim = addresses
        .iter()
        .position(|a| *a == proposer)
        .context("the proposer is one of ours")?;
    validators[victim].node.take().expect("up").kill();
    let alive: Vec<usize> = (0..4).filter(|i| *i != victim).collect();
    let w = alive[0];
    let watcher = validators[w].node.as_ref().expect("up");
    let at = head_of(watcher).await?;
    let killed = Instant::now();
    wait_for(30, "blocks after the proposer's kill -9", || async {
        (head_of(watcher).await.ok()? > at).then_some(())
    })
    .await?;
    eprintln!(
        "next block {:.2} s after the proposer's kill -9",
        killed.elapsed().as_secs_f64()
    );
    let at = head_of(watcher).await?;
    wait_for(60, "progress with 3 of 4", || async {
        (head_of(watcher).await.ok()? >= at + 20).then_some(())
    })
    .await?;

    // A second one down: 2 of 4 cannot decide; nothing moves, nothing forks.
    let second = alive[1];
    validators[second].node.take().expect("up").kill();
    let survivors: Vec<usize> = (0..4).filter(|i| *i != victim && *i != second).collect();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let stuck = head_of(validators[w].node.as_ref().expect("up")).await?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    for i in &survivors {
        let h = head_of(validators[*i].node.as_ref().expect("up")).await?;
        assert!(
            h <= stuck + 1,
            "validator {i} moved to {h} with 2 of 4 (stuck at {stuck})"
        );
    }

    // Both return (the same directories: their logs replay): progress resumes, the returned
    // validators catch up, every node agrees, nobody signed twice.
    for i in [victim, second] {
        let refs: Vec<&str> = validators[i].args.iter().map(String::as_str).collect();
        validators[i].node = Some(Hemi::start(&refs, dir.path()).await?);
    }
    let target = stuck + 20;
    for v in &validators {
        let node = v.node.as_ref().expect("up");
        wait_for(120, "progress after the return", || async {
            (head_of(node).await.ok()? >= target).then_some(())
        })
        .await
        .with_context(|| common::tail(&node.log_text(), 30))?;
    }
    for node in [&f_pinned, &f_learned] {
        wait_for(120, "the followers to follow", || async {
            (head_of(node).await.ok()? >= target).then_some(())
        })
        .await?;
    }
    for n in BLOCKS..=target {
        let want = hash_at(&f_pinned, n).await?;
        for v in &validators {
            assert_eq!(
                hash_at(v.node.as_ref().expect("up"), n).await?,
                want,
                "block {n}"
            );
        }
        assert_eq!(hash_at(&f_learned, n).await?, want, "block {n}");
    }
    for v in &validators {
        let ss = v
            .node
            .as_ref()
            .expect("up")
            .call("hemi_getSequencerSet", json!([]))
            .await?;
        assert_eq!(ss["evidence"], json!([]), "{ss}");
        assert_eq!(ss["mode"], "bft");
    }

    // A 2|2 partition (the relays between {0, 1} and {2, 3} cut): neither half decides, nothing
    // forks; healed, the set goes on.
    let cross = |i: usize, j: usize| (i < 2) != (j < 2);
    for (i, row) in relays.iter().enumerate() {
        for (j, relay) in row.iter().enumerate() {
            if let (true, Some(r)) = (cross(i, j), relay) {
                r.cut();
            }
        }
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut split = Vec::new();
    for v in &validators {
        split.push(head_of(v.node.as_ref().expect("up")).await?);
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    for (i, v) in validators.iter().enumerate() {
        let h = head_of(v.node.as_ref().expect("up")).await?;
        assert!(
            h <= split[i] + 1,
            "validator {i} moved from {} to {h} in a 2|2 partition",
            split[i]
        );
    }
    for r in relays.iter().flatten().flatten() {
        r.heal();
    }
    let healed = split.iter().copied().max().unwrap_or_default() + 10;
    for v in &validators {
        let node = v.node.as_ref().expect("up");
        wait_for(120, "progress after the partition heals", || async {
            (head_of(node).await.ok()? >= healed).then_some(())
        })
        .await
        .with_context(|| common::tail(&node.log_text(), 30))?;
    }
    for n in target..=healed {
        let want = hash_at(validators[0].node.as_ref().expect("up"), n).await?;
        for v in &validators[1..] {
            assert_eq!(
                hash_at(v.node.as_ref().expect("up"), n).await?,
                want,
                "block {n}"
            );
        }
    }

    // One validator comes back equivocating (a second, conflicting vote in every round): the
    // others log the evidence and show it in hemi_getSequencerSet; the chain neither forks
    // nor stops.
    let liar = victim;
    validators[liar].node.take().expect("up").kill();
    validators[liar].args.push("--equivocate".into());
    let refs: Vec<&str> = validators[liar].args.iter().map(String::as_str).collect();
    validators[liar].node = Some(Hemi::start(&refs, dir.path()).await?);
    let honest = (0..4).find(|i| *i != liar).expect("three honest");
    let evidence = wait_for(90, "evidence of the equivocation", || async {
        let ss = validators[honest]
            .node
            .as_ref()?
            .call("hemi_getSequencerSet", json!([]))
            .await
            .ok()?;
        ss["evidence"]
            .as_array()?
            .iter()
            .find(|e| e["validator"] == json!(addresses[liar]))
            .cloned()
    })
    .await?;
    assert_eq!(evidence["kind"], "duplicateVote", "{evidence}");
    let from = head_of(&f_pinned).await?;
    let until = from + 10;
    for v in &validators {
        let node = v.node.as_ref().expect("up");
        wait_for(120, "progress beside the equivocator", || async {
            (head_of(node).await.ok()? >= until).then_some(())
        })
        .await?;
    }
    wait_for(60, "the follower", || async {
        (head_of(&f_pinned).await.ok()? >= until).then_some(())
    })
    .await?;
    for n in from..=until {
        let want = hash_at(&f_pinned, n).await?;
        for v in &validators {
            assert_eq!(
                hash_at(v.node.as_ref().expect("up"), n).await?,
                want,
                "block {n}"
            );
        }
    }
    Ok(())
}

/// A deposit to the set's devnet vault, minted and anchored, has a provenance document
/// (v2) carrying the mint block's commit certificate and the set: `hemi verify` checks the
/// quorum, against the document's set or one the user trusts, and refuses a changed
/// certificate or another set; the node's `hemi_verifyProvenance` checks it against its own
/// spec, and the follower makes the same document.
async fn provenance_under_the_set(
    core: &hemi_testkit::BitcoinCore,
    dev: &Hemi,
    follower: &Hemi,
    depositor: &Key,
    sink: &bitcoin::Address,
    set: &ValidatorSet,
    dir: &std::path::Path,
) -> anyhow::Result<()> {
    let recipient = "70997970C51812dc3A010C7d01b50e0d17dc79C8";
    let tunnel = dev.call("hemi_getTunnel", json!([])).await?;
    let vault = bitcoin::Address::from_str(tunnel["vaultAddress"].as_str().context("vault")?)?
        .require_network(Network::Regtest)?
        .script_pubkey();
    let coins = common::spendable(&core.rpc, depositor, KeyKind::P2wpkh).await?;
    let utxo = coins.first().context("a mature depositor coin")?.clone();
    let op_return =
        bitcoin::ScriptBuf::from_bytes([vec![0x6a, 0x14], hex::decode(recipient)?].concat());
    let deposit = common::pay(
        depositor,
        KeyKind::P2wpkh,
        utxo,
        vec![(vault, 10 * 100_000_000), (op_return, 0)],
    )?;
    let txid = core.rpc.send_raw_transaction(&deposit).await?;
    // Bitcoin blocks until the mint is anchored by a PoP publication.
    let mut doc = Value::Null;
    for _ in 0..120 {
        core.rpc.generate_to_address(1, sink).await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        match dev
            .call("hemi_getProvenance", json!([txid.to_string()]))
            .await
        {
            Ok(d) => {
                doc = d;
                break;
            }
            Err(e) => {
                let e = e.to_string();
                assert!(
                    e.contains("not anchored") || e.contains("not minted"),
                    "{e}"
                );
            }
        }
    }
    assert!(
        !doc.is_null(),
        "never anchored: {}",
        common::tail(&dev.log_text(), 30)
    );
    assert_eq!(doc["version"], "hemi-rs/provenance/v2");
    let lower = |v: &Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a.as_str().map(str::to_lowercase))
            .collect()
    };
    let listed: Vec<String> = set.0.iter().map(|a| a.to_string().to_lowercase()).collect();
    assert_eq!(lower(&doc["validators"]), listed);
    assert!(doc["mint"]["certificate"].is_string(), "{doc}");
    let file = dir.join("set-provenance.json");
    let file_s = file.to_string_lossy().into_owned();
    let url = format!("http://{}", dev.rpc_addr);
    let (ok, _, err) = hemi_cli(&[
        "provenance",
        &txid.to_string(),
        "-o",
        &file_s,
        "--rpc-url",
        &url,
    ])?;
    assert!(ok, "hemi provenance: {err}");

    let (ok, out, err) = hemi_cli(&["verify", &file_s, "--json"])?;
    assert!(ok, "hemi verify: {err}");
    let report: Value = serde_json::from_str(out.trim())?;
    assert_eq!(report["validatorCount"], 4, "{report}");
    let certified = report["certifiedBy"].as_array().context("certifiedBy")?;
    assert!(certified.len() >= 3, "{report}");
    assert!(
        listed.contains(
            &report["sequencer"]
                .as_str()
                .unwrap_or_default()
                .to_lowercase()
        ),
        "{report}"
    );
    let (ok, out, err) = hemi_cli(&["verify", &file_s])?;
    assert!(ok, "{err}");
    assert!(out.contains("of 4 validators"), "{out}");
    eprintln!("{out}");
    // The set the user trusts, named by addresses.
    let (ok, _, err) = hemi_cli(&["verify", &file_s, "--validators", &listed.join(",")])?;
    assert!(ok, "hemi verify --validators (the set): {err}");
    let others: Vec<String> = (1..=4u8)
        .map(|i| alloy_primitives::Address::repeat_byte(i).to_string())
        .collect();
    let (ok, _, err) = hemi_cli(&["verify", &file_s, "--validators", &others.join(",")])?;
    assert!(!ok && err.contains("link 2"), "another set: {err}");
    // A changed signature in the certificate, or a certificate cut to two signatures.
    let text = std::fs::read_to_string(&file)?;
    let mut bad: Value = serde_json::from_str(&text)?;
    let cert = bad["mint"]["certificate"]
        .as_str()
        .context("certificate")?
        .to_string();
    let mut flipped = cert.clone();
    let c = if &cert[20..21] == "0" { "1" } else { "0" };
    flipped.replace_range(20..21, c);
    bad["mint"]["certificate"] = json!(flipped);
    let bad_file = dir.join("set-provenance-bad.json");
    std::fs::write(&bad_file, bad.to_string())?;
    let (ok, _, err) = hemi_cli(&["verify", &bad_file.to_string_lossy()])?;
    assert!(
        !ok && err.contains("link 2"),
        "a changed certificate: {err}"
    );
    bad["mint"]["certificate"] = json!(cert[..2 + 8 + 2 * 130].to_string());
    std::fs::write(&bad_file, bad.to_string())?;
    let (ok, _, err) = hemi_cli(&["verify", &bad_file.to_string_lossy()])?;
    assert!(
        !ok && err.contains("it needs 3"),
        "a short certificate: {err}"
    );

    // The node checks against its own spec's set; the follower makes the same document.
    let r = dev.call("hemi_verifyProvenance", json!([doc])).await?;
    assert_eq!(r["validatorCount"], 4, "{r}");
    // It reads the set from its own spec, not the document's word: a document naming
    // another set still verifies against the node's, and a short certificate does not.
    let mut claimed = doc.clone();
    claimed["validators"] = json!(others);
    let r = dev.call("hemi_verifyProvenance", json!([claimed])).await?;
    assert_eq!(r["certifiedBy"], report["certifiedBy"], "{r}");
    let mut short = doc.clone();
    short["mint"]["certificate"] = json!(cert[..2 + 8 + 2 * 130].to_string());
    let e = dev
        .call("hemi_verifyProvenance", json!([short]))
        .await
        .expect_err("a short certificate");
    assert!(e.to_string().contains("it needs 3"), "{e}");
    let from_follower = wait_for(60, "the follower's provenance", || async {
        follower
            .call("hemi_getProvenance", json!([txid.to_string()]))
            .await
            .ok()
    })
    .await?;
    assert_eq!(from_follower["mint"], doc["mint"]);
    assert_eq!(from_follower["validators"], doc["validators"]);
    Ok(())
}

/// `hemi devnet --sequencers 4`: four validators in one process make certified blocks; a
/// `--follow` follower checks their certificates against the set the devnet reports; devnet
/// tools that make blocks on request say why they cannot; a deposit's provenance under the
/// set verifies by its commit certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devnet_with_four_sequencers_in_one_process() -> anyhow::Result<()> {
    let core = hemi_testkit::BitcoinCore::start().await?;
    let dir = tempfile::tempdir()?;
    // Coins for the built-in PoP miner (one per publication) and for a tunnel deposit.
    let depositor = Key::from_seed("set-provenance-depositor");
    let miner = Key::from_seed("hemi-devnet-bitcoin-key-0");
    let (_, sink) = hemi_testkit::regtest_p2wpkh(&[0x54; 32]).context("sink key")?;
    core.mine(30, &miner.address(KeyKind::P2wpkh, Network::Regtest))
        .await?;
    core.mine(2, &depositor.address(KeyKind::P2wpkh, Network::Regtest))
        .await?;
    core.mine(100, &sink).await?;
    let dev = Hemi::devnet_on(
        &core,
        dir.path(),
        &[
            "--sequencers",
            "4",
            "--block-time",
            "0.2",
            "--deposit-confirmations",
            "2",
        ],
    )
    .await?;
    assert!(dev.log_text().contains("sequencers: 4 validators"));
    let url = format!("http://{}", dev.rpc_addr);
    let follower = Hemi::start(
        &[
            "node",
            "--bitcoin-peer",
            &core.p2p_addr().to_string(),
            "--follow",
            &url,
            "--dir",
            &dir.path().join("f").to_string_lossy(),
        ],
        dir.path(),
    )
    .await?;
    let accounts = hemi_chain::dev_accounts(hemi_chain::DEV_MNEMONIC, 1)?;
    let key = format!("0x{}", hex::encode(accounts[0].secret));
    let to = "0x000000000000000000000000000000000000bEEF";
    let out = cast(&[
        "send",
        "--rpc-url",
        &url,
        "--private-key",
        &key,
        to,
        "--value",
        "1gwei",
    ])?;
    assert!(out.contains("status               1 (success)"), "{out}");

    let ss = dev.call("hemi_getSequencerSet", json!([])).await?;
    assert_eq!(ss["mode"], "bft");
    assert_eq!(ss["quorum"], 3);
    let set = common::sequencer_set(&dev).await?;
    assert_eq!(set.0.len(), 4);
    let target = head_of(&dev).await? + 10;
    wait_for(60, "the follower to follow", || async {
        (head_of(&follower).await.ok()? >= target).then_some(())
    })
    .await
    .with_context(|| common::tail(&follower.log_text(), 30))?;
    let chain_id = hemi_chain::ChainSpec::devnet()?.chain_id;
    for n in 1..=target {
        assert_eq!(hash_at(&follower, n).await?, hash_at(&dev, n).await?);
        let b = raw_block(&follower, n).await?;
        set.verify(chain_id, n, b.hash(), &b.seal, b.certificate.as_ref())
            .with_context(|| format!("block {n}"))?;
    }
    assert_eq!(
        cast(&[
            "balance",
            to,
            "--rpc-url",
            &format!("http://{}", follower.rpc_addr)
        ])?,
        "1000000000"
    );
    let e = dev
        .call("evm_mine", json!([]))
        .await
        .expect_err("no blocks on request under a set");
    assert!(
        e.to_string().contains("decided by its sequencer set"),
        "{e}"
    );
    provenance_under_the_set(&core, &dev, &follower, &depositor, &sink, &set, dir.path()).await?;

    // An in-memory devnet keeps its validators' logs in a directory of its own under the
    // system's temporary one; Ctrl-C stops the set and removes it.
    let mut dev = dev;
    let pid = dev.child.id();
    let scratch = std::env::temp_dir().join(format!("hemi-consensus-{pid}"));
    assert!(scratch.is_dir(), "{} while running", scratch.display());
    let int = std::process::Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()?;
    assert!(int.success());
    let code = wait_for(30, "the devnet to exit on SIGINT", || {
        let done = dev.child.try_wait().ok().flatten();
        async move { done }
    })
    .await?;
    assert!(
        code.success(),
        "{code:?}: {}",
        common::tail(&dev.log_text(), 20)
    );
    assert!(!scratch.exists(), "{} left behind", scratch.display());
    Ok(())
}
