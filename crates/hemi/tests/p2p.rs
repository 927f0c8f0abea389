//! The L2's p2p network end to end: followers that know the sequencer only through p2p
//! (`--p2p-addr`, `--bootnode`, no `--follow`) sync, relay blocks to each other, carry
//! transactions sent to them to the sequencer, catch up after kill -9, and drop a peer that
//! gossips blocks with forged seals. Real Bitcoin Core as Bitcoin; transactions by the npm
//! `cast`.

mod common;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use common::{cast, head_of, wait_for, Evil, Hemi};
use hemi_net::{Multiaddr, NetConfig, Network};
use hemi_testkit::BitcoinCore;
use serde_json::{json, Value};

async fn block_at(hemi: &Hemi, n: u64) -> anyhow::Result<(String, String)> {
    let b = hemi
        .call("eth_getBlockByNumber", json!([format!("0x{n:x}"), false]))
        .await?;
    Ok((
        b["hash"].as_str().context("hash")?.to_string(),
        b["stateRoot"].as_str().context("stateRoot")?.to_string(),
    ))
}

async fn p2p_status(hemi: &Hemi) -> anyhow::Result<Value> {
    Ok(hemi.call("hemi_nodeStatus", json!([])).await?["p2p"].clone())
}

async fn listen_addr(hemi: &Hemi) -> anyhow::Result<String> {
    Ok(p2p_status(hemi).await?["listen"][0]
        .as_str()
        .context("p2p listen address")?
        .to_string())
}

fn p2p_port() -> String {
    format!("127.0.0.1:{}", hemi_testkit::free_port())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followers_over_p2p_only() -> anyhow::Result<()> {
    let core = BitcoinCore::start().await?;
    let dir = tempfile::tempdir()?;
    let seq_p2p = p2p_port();
    let seq = Hemi::devnet_on(&core, dir.path(), &["--p2p-addr", &seq_p2p]).await?;
    let boot = listen_addr(&seq).await?;
    assert!(boot.starts_with(&format!("/ip4/127.0.0.1/tcp/{}/p2p/12D3", &seq_p2p[10..])));

    // A bootnode that is not a multiaddr is refused by name.
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_hemi"))
        .args(["node", "--bitcoin-peer", &core.p2p_addr().to_string()])
        .args(["--p2p-addr", &p2p_port(), "--bootnode", "127.0.0.1:1"])
        .args(["--dir", &dir.path().join("bad").to_string_lossy()])
        .output()?;
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("--bootnode \"127.0.0.1:1\" is not a multiaddr"),
        "{err}"
    );

    // Follower 1 dials the sequencer; follower 2 dials only follower 1, so everything it gets
    // (blocks, and the sequencer's parameters) comes through another follower.
    let peer = core.p2p_addr().to_string();
    let d1 = dir.path().join("f1").to_string_lossy().into_owned();
    let d2 = dir.path().join("f2").to_string_lossy().into_owned();
    let f1_p2p = p2p_port();
    let f1 = Hemi::start(
        &[
            "node",
            "--bitcoin-peer",
            &peer,
            "--p2p-addr",
            &f1_p2p,
            "--bootnode",
            &boot,
            "--dir",
            &d1,
        ],
        dir.path(),
    )
    .await?;
    let f1_addr = listen_addr(&f1).await?;
    let f2_p2p = p2p_port();
    let f2_args = [
        "node",
        "--bitcoin-peer",
        &peer,
        "--p2p-addr",
        &f2_p2p,
        "--bootnode",
        &f1_addr,
        "--dir",
        &d2,
    ];
    let mut f2 = Hemi::start(&f2_args, dir.path()).await?;
    let status = f2.call("hemi_nodeStatus", json!([])).await?;
    assert_eq!(status["following"], json!(["the p2p network"]));
    assert_eq!(
        status["sequencer"],
        seq.call("hemi_nodeStatus", json!([])).await?["sequencer"]
    );

    // Transactions sent to each of the three nodes, each from its own dev account; every
    // `cast send` waits for its receipt on the node it was sent to.
    let accounts = hemi_chain::dev_accounts(hemi_chain::DEV_MNEMONIC, 3)?;
    let to = "0x000000000000000000000000000000000000bEEF";
    let urls: Vec<String> = [&seq, &f1, &f2]
        .iter()
        .map(|h| format!("http://{}", h.rpc_addr))
        .collect();
    for round in 0..4 {
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
            .with_context(|| format!("round {round}, node {i}"))?;
            assert!(out.contains("status               1 (success)"), "{out}");
        }
    }
    let balance = cast(&["balance", to, "--rpc-url", &urls[0]])
        .with_context(|| common::tail(&seq.log_text(), 40))?;
    assert_eq!(balance, "12000000000");

    // kill -9 of follower 2; it misses blocks and transactions, then catches up from its peer.
    f2.kill();
    for account in &accounts {
        let key = format!("0x{}", hex::encode(account.secret));
        cast(&[
            "send",
            "--rpc-url",
            &urls[1],
            "--private-key",
            &key,
            to,
            "--value",
            "1gwei",
        ])?;
    }
    let missed_up_to = head_of(&seq).await? + 5;
    wait_for(60, "the sequencer to move on", || async {
        (head_of(&seq).await.ok()? >= missed_up_to).then_some(())
    })
    .await?;
    let f2 = Hemi::start(&f2_args, dir.path()).await?;
    let target = head_of(&seq).await?;
    for node in [&f1, &f2] {
        wait_for(
            90,
            "the followers to reach the sequencer's head",
            || async { (head_of(node).await.ok()? >= target).then_some(()) },
        )
        .await
        .with_context(|| common::tail(&node.log_text(), 30))?;
    }
    for n in 1..=target {
        let want = block_at(&seq, n).await?;
        assert_eq!(block_at(&f1, n).await?, want, "block {n} on follower 1");
        assert_eq!(block_at(&f2, n).await?, want, "block {n} on follower 2");
    }
    assert_eq!(
        cast(&[
            "balance",
            to,
            "--rpc-url",
            &format!("http://{}", f2.rpc_addr)
        ])?,
        "15000000000"
    );

    // A peer that gossips blocks with forged seals gets three strikes and is dropped; the
    // follower's chain is untouched.
    let evil = Network::start(
        NetConfig {
            chain_id: hemi_chain::ChainSpec::devnet()?.chain_id,
            listen: "127.0.0.1:0".parse()?,
            bootnodes: vec![f1_addr.parse::<Multiaddr>()?],
            limits: Default::default(),
        },
        hemi_net::load_or_create_key(None)?,
        Arc::new(Evil),
    )
    .await?;
    let forger = alloy_primitives::B256::repeat_byte(0x42);
    let mut forged = Vec::new();
    let head = head_of(&seq).await?;
    for n in head - 2..=head {
        let raw = seq
            .call("debug_getRawBlock", json!([format!("0x{n:x}")]))
            .await?;
        let mut block = hemi_chain::L2Block::decode(&hex::decode(
            raw.as_str().context("raw")?.trim_start_matches("0x"),
        )?)?;
        block.header.timestamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs();
        block.seal = hemi_chain::block::seal(
            hemi_chain::ChainSpec::devnet()?.chain_id,
            block.hash(),
            forger,
        )?;
        forged.push(block.encode());
    }
    let evil_id = evil.peer_id().to_string();
    let banned = wait_for(30, "follower 1 to drop the forging peer", || async {
        for b in &forged {
            evil.publish_block(b.clone());
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let s = p2p_status(&f1).await.ok()?;
        s["banned"]
            .as_array()?
            .iter()
            .find(|b| b["peerId"] == evil_id.as_str())
            .cloned()
    })
    .await?;
    assert!(
        banned["reason"]
            .as_str()
            .unwrap_or("")
            .contains("not by the sequencer"),
        "{banned}"
    );
    let peers = p2p_status(&f1).await?["peers"].clone();
    assert!(
        !peers.to_string().contains(&evil_id),
        "the dropped peer is still connected: {peers}"
    );
    let now = head_of(&f1).await?;
    assert_eq!(block_at(&f1, now).await?, block_at(&seq, now).await?);
    Ok(())
}
