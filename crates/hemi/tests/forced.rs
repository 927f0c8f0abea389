//! Forced inclusion through Bitcoin, end to end against Bitcoin Core: a sequencer that censors
//! a sender (test flag `--censor`) must still include the sender's transaction once it is
//! published in Bitcoin (`hemi force-tx`, in an OP_RETURN or, for a large one, a taproot
//! envelope) and confirmed, by the window's deadline; a sequencer
//! that leaves a due forced transaction out (test flag `--skip-forced-txs`) makes blocks its
//! follower refuses, and so does a sequencer *set* (`--sequencers 4`) whose validators all
//! leave it out: every follower, by `--follow` and by p2p, refuses its certified deadline block.
//! Among four validator processes, one that leaves it out is outvoted by the other three and
//! the deadline block carries it.

mod common;

use std::process::Command;

use anyhow::{bail, Context};
use common::{cast, head_of, receipt_of, tail, wait_for, wait_synced, Hemi};
use hemi_btc_wallet::{Key, KeyKind};
use hemi_testkit::BitcoinCore;
use serde_json::{json, Value};

/// `hemi force-tx` of `raw`, paid by `key`; the Bitcoin txid.
fn force_tx(hemi: &Hemi, core: &BitcoinCore, key: &Key, raw: &str) -> anyhow::Result<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_hemi"))
        .args(["force-tx", "--raw", raw])
        .args(["--key", &hex::encode(key.secret_bytes())])
        .args(["--bitcoin-rpc", &core.rpc_url()])
        .args(["--rpc-url", &format!("http://{}", hemi.rpc_addr)])
        .output()?;
    if !out.status.success() {
        bail!("hemi force-tx: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// `cast mktx` against `url`: a transaction from `key` to `to` with `extra` arguments (value,
/// calldata, nonce), signed, not sent.
fn mktx(url: &str, key: &str, to: &str, extra: &[&str]) -> anyhow::Result<String> {
    let mut args = vec!["mktx", "--rpc-url", url, "--private-key", key, to];
    args.extend_from_slice(extra);
    cast(&args)
}

/// The txid of the commit transaction whose envelope output `reveal` spends.
async fn revealed_commit(
    rpc: &hemi_btc_rpc_client::BitcoinRpc,
    reveal: &str,
) -> anyhow::Result<bitcoin::Txid> {
    let tx = rpc.get_raw_transaction(&reveal.parse()?).await?;
    Ok(tx
        .input
        .first()
        .context("reveal input")?
        .previous_output
        .txid)
}

/// The entry of `hash` in `hemi_getForcedTransactions`.
async fn forced_entry(hemi: &Hemi, hash: &str) -> anyhow::Result<Option<Value>> {
    let v = hemi.call("hemi_getForcedTransactions", json!([])).await?;
    Ok(v["transactions"]
        .as_array()
        .context("transactions")?
        .iter()
        .find(|t| t["hash"] == hash)
        .cloned())
}

/// Publishes a transfer of `value` signed by `key` through Bitcoin and mines its two
/// confirmations; waits until `seq` is two blocks past its deadline. Its L2 hash and deadline.
async fn force_past_deadline(
    seq: &Hemi,
    core: &BitcoinCore,
    btc_key: &Key,
    key: &str,
    value: &str,
) -> anyhow::Result<(String, u64)> {
    let url = format!("http://{}", seq.rpc_addr);
    let to = "0x000000000000000000000000000000000000F0Ce";
    let raw = mktx(&url, key, to, &["--value", value])?;
    let l2_hash = cast(&["keccak", &raw])?;
    force_tx(seq, core, btc_key, &raw)?;
    seq.call("hemi_mineBitcoin", json!([2])).await?;
    let deadline = wait_for(60, "the window to open", || async {
        forced_entry(seq, &l2_hash).await.ok().flatten()?["deadline"].as_u64()
    })
    .await?;
    wait_for(60, "the sequencer to pass the deadline", || async {
        (head_of(seq).await.ok()? > deadline + 2).then_some(())
    })
    .await
    .with_context(|| tail(&seq.log_text(), 30))?;
    Ok((l2_hash, deadline))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forced_inclusion_through_bitcoin() -> anyhow::Result<()> {
    let core = BitcoinCore::start().await?;
    let rpc = core.rpc.clone();
    let dir = tempfile::tempdir()?;
    let accounts = hemi_chain::dev_accounts(hemi_chain::DEV_MNEMONIC, 3)?;
    let censored = accounts[1].address.to_string();
    let forced = [
        "--forced-inclusion-confirmations",
        "2",
        "--forced-inclusion-window",
        "4",
        "--block-time",
        "0.5",
        "--no-popm",
    ];
    let mut args = vec!["--censor", censored.as_str()];
    args.extend_from_slice(&forced);
    let seq = Hemi::devnet_on(&core, dir.path(), &args).await?;
    wait_synced(&seq, &rpc, 60).await?;
    let url = format!("http://{}", seq.rpc_addr);
    let peer = core.p2p_addr().to_string();
    let fdir = dir.path().join("follower").to_string_lossy().into_owned();
    let follower = Hemi::start(
        &[
            "node",
            "--bitcoin-peer",
            &peer,
            "--follow",
            &url,
            "--dir",
            &fdir,
        ],
        dir.path(),
    )
    .await?;
    let status = follower.call("hemi_nodeStatus", json!([])).await?;
    assert_eq!(
        status["forcedInclusion"],
        json!({"confirmations": 2, "window": 4, "taprootEnvelopes": true, "rule": 2}),
        "the follower takes the sequencer's rule"
    );

    // The censored sender's transaction is refused by the sequencer.
    let key1 = format!("0x{}", hex::encode(accounts[1].secret));
    let to = "0x000000000000000000000000000000000000F0Ce";
    let raw = mktx(&url, &key1, to, &["--value", "7gwei"])?;
    let refused = seq.call("eth_sendRawTransaction", json!([raw])).await;
    assert!(format!("{refused:?}").contains("censors"), "{refused:?}");

    // A Bitcoin key funded by the devnet's helpers publishes it.
    let btc_key = Key::from_secret_bytes([0x5a; 32])?;
    let btc_addr = btc_key.address(KeyKind::P2wpkh, bitcoin::Network::Regtest);
    seq.call("hemi_sendBitcoin", json!([btc_addr.to_string(), "1"]))
        .await?;
    seq.call("hemi_mineBitcoin", json!([1])).await?;
    wait_synced(&seq, &rpc, 60).await?;
    let btc_txid = force_tx(&seq, &core, &btc_key, &raw)?;
    let l2_hash = cast(&["keccak", &raw])?;
    // Not confirmed yet: listed nowhere; mined once: confirming (1 of 2).
    seq.call("hemi_mineBitcoin", json!([1])).await?;
    wait_synced(&seq, &rpc, 60).await?;
    let entry = wait_for(30, "the forced transaction to be listed", || async {
        forced_entry(&seq, &l2_hash).await.ok().flatten()
    })
    .await?;
    assert_eq!(entry["btcTxid"], btc_txid.as_str());
    assert_eq!(entry["status"], "confirming", "{entry}");
    assert_eq!(entry["btcConfirmations"], 1);
    // The second confirmation opens the window; it is in a block by the deadline.
    seq.call("hemi_mineBitcoin", json!([1])).await?;
    let receipt = receipt_of(&seq, &l2_hash, 60, "the forced transaction's receipt")
        .await
        .with_context(|| tail(&seq.log_text(), 30))?;
    assert_eq!(receipt["status"], "0x1");
    let entry = forced_entry(&seq, &l2_hash).await?.context("listed")?;
    assert_eq!(entry["status"], "included", "{entry}");
    let included = entry["includedIn"]["blockNumber"]
        .as_u64()
        .context("block")?;
    let (due, deadline) = (
        entry["dueFrom"].as_u64().context("dueFrom")?,
        entry["deadline"].as_u64().context("deadline")?,
    );
    assert_eq!(deadline, due + 3);
    assert!(
        (due..=deadline).contains(&included),
        "included in {included}, window {due}..={deadline}"
    );
    assert_eq!(cast(&["balance", to, "--rpc-url", &url])?, "7000000000");
    // The follower re-executed the same block.
    let fr = receipt_of(&follower, &l2_hash, 60, "the follower's receipt").await?;
    assert_eq!(fr["blockHash"], receipt["blockHash"]);

    assert_eq!(
        entry["carrier"], "opReturn",
        "a small one costs least in an OP_RETURN"
    );

    // One too costly for an OP_RETURN (3,000 bytes of calldata) goes in a taproot envelope:
    // Bitcoin Core takes the commit and the reveal, and it is included the same way.
    let calldata = format!("0x{}", "ab".repeat(3_000));
    let big = mktx(&url, &key1, to, &[&calldata])?;
    let big_hash = cast(&["keccak", &big])?;
    let reveal = force_tx(&seq, &core, &btc_key, &big)?;
    // A second one sent before the first confirms pays from the first's unconfirmed change
    // (Core's gettxspendingprevout), not from the output the first already spends.
    let bad = mktx(&url, &key1, to, &["--value", "1gwei", "--nonce", "99"])?;
    let bad_hash = cast(&["keccak", &bad])?;
    let second = force_tx(&seq, &core, &btc_key, &bad)?;
    let second_tx = rpc
        .get_raw_transaction(&second.parse().context("second txid")?)
        .await?;
    let commit = revealed_commit(&rpc, &reveal).await?;
    assert!(
        second_tx
            .input
            .iter()
            .any(|i| i.previous_output.txid == commit
                || i.previous_output.txid.to_string() == reveal),
        "the second spends an output of the first's transactions: {second_tx:?}"
    );
    let revealed = rpc
        .get_raw_transaction(&reveal.parse().context("reveal txid")?)
        .await?;
    assert!(
        revealed
            .output
            .iter()
            .all(|o| !o.script_pubkey.is_op_return()),
        "the data is in the witness, not an output"
    );
    let leaf = revealed.input[0]
        .witness
        .taproot_leaf_script()
        .context("a script-path spend")?;
    assert!(leaf.script.len() > 3_000, "the leaf holds the transaction");
    seq.call("hemi_mineBitcoin", json!([2])).await?;
    let receipt = receipt_of(&seq, &big_hash, 60, "the enveloped transaction's receipt")
        .await
        .with_context(|| tail(&seq.log_text(), 30))?;
    assert_eq!(receipt["status"], "0x1");
    let entry = forced_entry(&seq, &big_hash).await?.context("listed")?;
    assert_eq!(entry["carrier"], "taproot", "{entry}");
    assert_eq!(entry["btcTxid"], reveal.as_str());
    let tx = seq
        .call("eth_getTransactionByHash", json!([big_hash]))
        .await?;
    assert_eq!(tx["input"], calldata.as_str());
    let fr = receipt_of(&follower, &big_hash, 60, "the follower's receipt of it").await?;
    assert_eq!(fr["blockHash"], receipt["blockHash"]);

    // A forced transaction that is invalid when due (nonce 99: a nonce far ahead, sent above)
    // is skipped by rule: the deadline block leaves it out and the follower accepts that block.
    seq.call("hemi_mineBitcoin", json!([2])).await?;
    let deadline = wait_for(60, "the invalid one's window", || async {
        forced_entry(&seq, &bad_hash).await.ok().flatten()?["deadline"].as_u64()
    })
    .await?;
    for node in [&seq, &follower] {
        wait_for(60, "both nodes past the deadline", || async {
            (head_of(node).await.ok()? > deadline).then_some(())
        })
        .await
        .with_context(|| tail(&node.log_text(), 20))?;
    }
    let entry = forced_entry(&seq, &bad_hash).await?.context("listed")?;
    assert_eq!(entry["status"], "skipped", "{entry}");
    let at = json!([format!("0x{deadline:x}"), false]);
    assert_eq!(
        follower.call("eth_getBlockByNumber", at.clone()).await?["hash"],
        seq.call("eth_getBlockByNumber", at).await?["hash"]
    );
    drop(follower);
    drop(seq);

    // A sequencer that leaves due forced transactions out: its follower stops before the
    // deadline block and says why.
    let dir2 = tempfile::tempdir()?;
    let mut args = vec!["--skip-forced-txs"];
    args.extend_from_slice(&forced);
    let seq = Hemi::devnet_on(&core, dir2.path(), &args).await?;
    wait_synced(&seq, &rpc, 60).await?;
    let url = format!("http://{}", seq.rpc_addr);
    let fdir = dir2.path().join("follower").to_string_lossy().into_owned();
    let follower = Hemi::start(
        &[
            "node",
            "--bitcoin-peer",
            &peer,
            "--follow",
            &url,
            "--dir",
            &fdir,
        ],
        dir2.path(),
    )
    .await?;
    let key2 = format!("0x{}", hex::encode(accounts[2].secret));
    let (l2_hash, deadline) = force_past_deadline(&seq, &core, &btc_key, &key2, "1gwei").await?;
    let log = wait_for(30, "the follower to refuse the deadline block", || async {
        let log = follower.log_text();
        log.contains("leaves out forced transaction").then_some(log)
    })
    .await?;
    assert!(log.contains(&l2_hash[2..]), "{}", tail(&log, 20));
    assert_eq!(head_of(&follower).await?, deadline - 1);
    let entry = forced_entry(&seq, &l2_hash).await?.context("listed")?;
    assert_eq!(entry["status"], "skipped", "{entry}");
    drop(follower);
    drop(seq);

    // A whole sequencer set that leaves it out (four validators in one process, every one
    // building and voting for blocks without it: more than a third faulty): the set certifies
    // the deadline block, and every follower, by --follow and by p2p alone, refuses it.
    let dir3 = tempfile::tempdir()?;
    let seq_p2p = format!("127.0.0.1:{}", hemi_testkit::free_port());
    let mut args = vec![
        "--sequencers",
        "4",
        "--skip-forced-txs",
        "--p2p-addr",
        seq_p2p.as_str(),
    ];
    args.extend_from_slice(&forced);
    let seq = Hemi::devnet_on(&core, dir3.path(), &args).await?;
    wait_synced(&seq, &rpc, 60).await?;
    let url = format!("http://{}", seq.rpc_addr);
    let boot = seq.call("hemi_nodeStatus", json!([])).await?["p2p"]["listen"][0]
        .as_str()
        .context("the set's p2p address")?
        .to_string();
    let mut followers = Vec::new();
    for (name, source) in [
        ("by-rpc", ["--follow", url.as_str()]),
        ("by-p2p", ["--bootnode", boot.as_str()]),
    ] {
        let fdir = dir3.path().join(name).to_string_lossy().into_owned();
        let f_p2p = format!("127.0.0.1:{}", hemi_testkit::free_port());
        let mut fargs = vec!["node", "--bitcoin-peer", &peer, "--dir", &fdir];
        fargs.extend_from_slice(&source);
        if name == "by-p2p" {
            fargs.extend_from_slice(&["--p2p-addr", &f_p2p]);
        }
        followers.push(Hemi::start(&fargs, dir3.path()).await?);
    }
    let key2 = format!("0x{}", hex::encode(accounts[2].secret));
    let (l2_hash, deadline) = force_past_deadline(&seq, &core, &btc_key, &key2, "2gwei").await?;
    let block = seq
        .call(
            "eth_getBlockByNumber",
            json!([format!("0x{deadline:x}"), false]),
        )
        .await?;
    assert!(
        !block["transactions"].to_string().contains(&l2_hash[2..]),
        "the set's deadline block leaves it out: {block}"
    );
    let set = seq.call("hemi_getSequencerSet", json!([])).await?;
    assert_eq!(set["mode"], "bft", "{set}");
    for f in &followers {
        let log = wait_for(
            60,
            "each follower to refuse the set's deadline block",
            || async {
                let log = f.log_text();
                log.contains("leaves out forced transaction").then_some(log)
            },
        )
        .await
        .with_context(|| tail(&f.log_text(), 30))?;
        assert!(log.contains(&l2_hash[2..]), "{}", tail(&log, 20));
        assert_eq!(head_of(f).await?, deadline - 1, "{}", tail(&log, 20));
    }
    Ok(())
}

/// One faulty validator among four honest-majority processes: once a forced transaction's
/// deadline is known, the validator that proposes that height (round 0) is restarted with
/// `--skip-forced-txs`. Its proposal leaves the transaction out; the other three vote it down
/// ("voting against an invalid block … leaves out forced transaction"), the next round's
/// proposer includes it, and the deadline block carries it with a round-1 certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_validator_that_skips_a_forced_transaction_is_outvoted_by_the_set() -> anyhow::Result<()>
{
    let core = BitcoinCore::start().await?;
    let rpc = core.rpc.clone();
    let btc_key = Key::from_secret_bytes([0x5b; 32])?;
    core.mine(
        101,
        &btc_key.address(KeyKind::P2wpkh, bitcoin::Network::Regtest),
    )
    .await?;
    let dir = tempfile::tempdir()?;
    let peer = core.p2p_addr().to_string();

    // Four validators: keys, their consensus addresses, the validators file.
    let secrets: Vec<alloy_primitives::B256> = (0..4u8)
        .map(|i| alloy_primitives::keccak256([b'f', b's', b'e', b't', i]))
        .collect();
    let mut entries = Vec::new();
    let mut addresses = Vec::new();
    for s in &secrets {
        let k = hemi_consensus::PubKey::of_secret(*s).map_err(anyhow::Error::msg)?;
        addresses.push(k.address().map_err(anyhow::Error::msg)?);
        entries.push(json!({
            "publicKey": format!("0x{}", hex::encode(k.0)),
            "consensusAddr": format!("/ip4/127.0.0.1/tcp/{}", hemi_testkit::free_port()),
        }));
    }
    let file = dir.path().join("validators.json");
    std::fs::write(&file, json!({ "validators": entries }).to_string())?;
    let file = file.to_string_lossy().into_owned();
    let p2p: Vec<String> = (0..4)
        .map(|_| format!("127.0.0.1:{}", hemi_testkit::free_port()))
        .collect();
    let args_of = |i: usize, boot: &str, skip: bool| -> Vec<String> {
        let mut a: Vec<String> = [
            "node",
            "--bitcoin-peer",
            &peer,
            "--sequencer-key",
            &hex::encode(secrets[i]),
            "--validators",
            &file,
            "--block-time",
            "0.2",
            "--forced-inclusion-confirmations",
            "1",
            "--forced-inclusion-window",
            "60",
            "--p2p-addr",
            &p2p[i],
            "--dir",
            &dir.path().join(format!("v{i}")).to_string_lossy(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if !boot.is_empty() {
            a.extend(["--bootnode".into(), boot.to_string()]);
        }
        if skip {
            a.push("--skip-forced-txs".into());
        }
        a
    };
    let start = |a: Vec<String>| {
        let d = dir.path().to_path_buf();
        async move {
            let refs: Vec<&str> = a.iter().map(String::as_str).collect();
            Hemi::start(&refs, &d).await
        }
    };
    let mut nodes: Vec<Option<Hemi>> = Vec::new();
    let v0 = start(args_of(0, "", false)).await?;
    let boot = v0.call("hemi_nodeStatus", json!([])).await?["p2p"]["listen"][0]
        .as_str()
        .context("validator 0's p2p address")?
        .to_string();
    nodes.push(Some(v0));
    for i in 1..4 {
        nodes.push(Some(start(args_of(i, &boot, false)).await?));
    }
    let v0 = nodes[0].as_ref().context("v0")?;
    wait_for(60, "the set to decide blocks", || async {
        (head_of(v0).await.ok()? >= 5).then_some(())
    })
    .await
    .with_context(|| tail(&v0.log_text(), 30))?;
    wait_synced(v0, &rpc, 60).await?;

    // A transfer published in Bitcoin and confirmed once: due, with its deadline.
    let accounts = hemi_chain::dev_accounts(hemi_chain::DEV_MNEMONIC, 4)?;
    let key = format!("0x{}", hex::encode(accounts[3].secret));
    let url = format!("http://{}", v0.rpc_addr);
    let to = "0x000000000000000000000000000000000000F0Ce";
    let raw = mktx(&url, &key, to, &["--value", "3gwei"])?;
    let l2_hash = cast(&["keccak", &raw])?;
    force_tx(v0, &core, &btc_key, &raw)?;
    let (_, sink) = hemi_testkit::regtest_p2wpkh(&[0x5c; 32])?;
    core.rpc.generate_to_address(1, &sink).await?;
    let deadline = wait_for(60, "the window to open", || async {
        forced_entry(v0, &l2_hash).await.ok().flatten()?["deadline"].as_u64()
    })
    .await?;

    // The deadline height's round-0 proposer (round robin over the sorted set) turns faulty.
    let mut sorted = addresses.clone();
    sorted.sort();
    let proposer = sorted[(deadline % 4) as usize];
    let faulty = addresses
        .iter()
        .position(|a| *a == proposer)
        .context("one of ours")?;
    let head = head_of(v0).await?;
    assert!(
        head + 15 < deadline,
        "head {head}: too close to the deadline {deadline} to restart a validator"
    );
    drop(nodes[faulty].take());
    let boot_for = if faulty == 0 { "" } else { boot.as_str() };
    let again = args_of(faulty, boot_for, true);
    nodes[faulty] = Some(start(again).await?);
    let watcher = nodes[(faulty + 1) % 4].as_ref().context("an honest one")?;
    wait_for(60, "the set past the deadline", || async {
        (head_of(watcher).await.ok()? > deadline).then_some(())
    })
    .await
    .with_context(|| tail(&watcher.log_text(), 30))?;
    let f = nodes[faulty].as_ref().context("faulty")?;
    assert!(
        head_of(f).await? >= deadline - 1,
        "the faulty validator was back in time: {}",
        tail(&f.log_text(), 20)
    );

    // The deadline block carries it, decided in a later round than the faulty proposer's.
    let receipt = receipt_of(watcher, &l2_hash, 30, "the forced transfer's receipt").await?;
    assert_eq!(
        receipt["blockNumber"].as_str(),
        Some(format!("0x{deadline:x}").as_str()),
        "included at its deadline: {receipt}"
    );
    let set = watcher.call("hemi_getSequencerSet", json!([])).await?;
    let block = common::raw_block(watcher, deadline).await?;
    let cert = block.certificate.context("a certificate")?;
    assert!(cert.round >= 1, "decided in round {}: {set}", cert.round);
    eprintln!(
        "deadline {deadline}: validator {faulty} ({proposer}) proposed without the forced transfer in round 0; block {deadline} decided in round {}, built by {}",
        cert.round, block.header.beneficiary
    );
    assert_ne!(
        block.header.beneficiary, proposer,
        "not built by the faulty validator"
    );
    let honest_voted_down = nodes
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != faulty)
        .filter_map(|(_, n)| n.as_ref())
        .any(|n| {
            let log = n.log_text();
            log.lines().any(|l| {
                l.contains("voting against an invalid block")
                    && l.contains("leaves out forced transaction")
            })
        });
    assert!(
        honest_voted_down,
        "an honest validator logged its vote against the proposal"
    );
    Ok(())
}
