//! Hostile peers and hard crashes: misbehaving peers are disconnected and banned while the
//! client keeps following Bitcoin Core; `kill -9` at random moments during sync never corrupts
//! the store and the node resumes to Bitcoin Core's exact state.

mod common;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use bitcoin::block::{Header, Version};
use bitcoin::hashes::Hash;
use bitcoin::p2p::message::NetworkMessage;
use bitcoin::{BlockHash, CompactTarget, Network, TxMerkleNode};
use common::*;
use hemi_btc_p2p::{encode_frame, read_message, write_message};
use hemi_btc_wallet::{Key, KeyKind};
use hemi_testkit::BitcoinCore;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// What a fake peer does right after the handshake.
#[derive(Debug, Clone, Copy)]
enum Misbehaviour {
    EmptyInv,
    OversizedMessage,
    BadChecksum,
    InvalidProofOfWork,
    HeadersNotChaining,
    MalformedPayload,
    UnconnectingHeaders,
}

fn regtest_genesis() -> BlockHash {
    bitcoin::constants::genesis_block(Network::Regtest).block_hash()
}

fn header(prev: BlockHash, time: u32, nonce: u32) -> Header {
    Header {
        version: Version::from_consensus(0x2000_0000),
        prev_blockhash: prev,
        merkle_root: TxMerkleNode::all_zeros(),
        time,
        bits: CompactTarget::from_consensus(0x207f_ffff),
        nonce,
    }
}

/// A header on top of `prev` that meets (or, with `valid = false`, misses) the regtest target.
fn ground(prev: BlockHash, time: u32, valid: bool) -> Header {
    let mut h = header(prev, time, 0);
    while h.target().is_met_by(h.block_hash()) != valid {
        h.nonce += 1;
    }
    h
}

fn raw_frame(command: &[u8], payload: &[u8], checksum: [u8; 4], len: u32) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&Network::Regtest.magic().to_bytes());
    let mut cmd = [0u8; 12];
    cmd[..command.len()].copy_from_slice(command);
    f.extend_from_slice(&cmd);
    f.extend_from_slice(&len.to_le_bytes());
    f.extend_from_slice(&checksum);
    f.extend_from_slice(payload);
    f
}

fn frame(m: NetworkMessage) -> Vec<u8> {
    encode_frame(Network::Regtest.magic(), &m).unwrap_or_default()
}

/// The inbound side of the version handshake over a raw socket, so the fake peer can then write
/// arbitrary bytes.
async fn handshake(
    stream: tokio::net::TcpStream,
) -> anyhow::Result<(OwnedReadHalf, OwnedWriteHalf)> {
    let magic = Network::Regtest.magic();
    let (mut r, mut w) = stream.into_split();
    let theirs = match read_message(&mut r, magic).await? {
        NetworkMessage::Version(v) => v,
        other => anyhow::bail!("expected version, got {other:?}"),
    };
    let mut ours = theirs.clone();
    ours.nonce = theirs.nonce.wrapping_add(1);
    ours.user_agent = "/fake-bad-peer:0.1/".into();
    ours.start_height = 0;
    write_message(&mut w, magic, NetworkMessage::Version(ours)).await?;
    write_message(&mut w, magic, NetworkMessage::Verack).await?;
    loop {
        if let NetworkMessage::Verack = read_message(&mut r, magic).await? {
            return Ok((r, w));
        }
    }
}

/// Runs a fake peer on `ip`; reports (accepted connections, disconnected after misbehaving).
async fn fake_peer(
    ip: &str,
    kind: Misbehaviour,
    report: mpsc::UnboundedSender<(Misbehaviour, u32)>,
) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind(format!("{ip}:0")).await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let mut accepted = 0;
        while let Ok((stream, _)) = listener.accept().await {
            accepted += 1;
            let Ok((mut r, mut w)) = handshake(stream).await else {
                continue;
            };
            let bytes = match kind {
                Misbehaviour::EmptyInv => frame(NetworkMessage::Inv(vec![])),
                Misbehaviour::InvalidProofOfWork => frame(NetworkMessage::Headers(vec![ground(
                    regtest_genesis(),
                    1_700_000_000,
                    false,
                )])),
                Misbehaviour::HeadersNotChaining => {
                    let a = ground(regtest_genesis(), 1_700_000_000, true);
                    let b = ground(regtest_genesis(), 1_700_000_001, true);
                    frame(NetworkMessage::Headers(vec![a, b]))
                }
                Misbehaviour::OversizedMessage => {
                    raw_frame(b"block", &[0u8; 64], [0; 4], 0xffff_fff0)
                }
                Misbehaviour::BadChecksum => {
                    raw_frame(b"ping", &7u64.to_le_bytes(), [1, 2, 3, 4], 8)
                }
                Misbehaviour::UnconnectingHeaders => {
                    // Headers whose parents nobody knows, again and again.
                    let mut out = Vec::new();
                    for i in 0..20u8 {
                        let h =
                            ground(BlockHash::from_byte_array([i + 1; 32]), 1_700_000_000, true);
                        out.extend(frame(NetworkMessage::Headers(vec![h])));
                    }
                    out
                }
                Misbehaviour::MalformedPayload => {
                    let payload = [0xfd, 0xff, 0xff, 0x01, 0x02];
                    let sum = bitcoin::hashes::sha256d::Hash::hash(&payload).to_byte_array();
                    raw_frame(
                        b"headers",
                        &payload,
                        [sum[0], sum[1], sum[2], sum[3]],
                        payload.len() as u32,
                    )
                }
            };
            let _ = w.write_all(&bytes).await;
            // Wait for the client to hang up on us.
            let mut buf = [0u8; 4096];
            let gone = tokio::time::timeout(Duration::from_secs(20), async {
                while matches!(r.read(&mut buf).await, Ok(n) if n > 0) {}
            })
            .await;
            if gone.is_ok() {
                let _ = report.send((kind, accepted));
            }
        }
    });
    Ok(addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misbehaving_peers_are_banned_and_the_client_keeps_following_bitcoin_core(
) -> anyhow::Result<()> {
    let core = BitcoinCore::start().await?;
    let miner = Key::from_seed("bad-peers-miner").address(KeyKind::P2wpkh, Network::Regtest);
    core.mine(120, &miner).await?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let kinds = [
        Misbehaviour::EmptyInv,
        Misbehaviour::OversizedMessage,
        Misbehaviour::BadChecksum,
        Misbehaviour::InvalidProofOfWork,
        Misbehaviour::HeadersNotChaining,
        Misbehaviour::MalformedPayload,
        Misbehaviour::UnconnectingHeaders,
    ];
    let mut peers = Vec::new();
    for (i, kind) in kinds.iter().enumerate() {
        // Each bad peer on its own loopback address: bans are per IP, and Core is on 127.0.0.1.
        peers.push(fake_peer(&format!("127.0.0.{}", i + 2), *kind, tx.clone()).await?);
    }
    let mut args: Vec<String> = vec!["node".into(), "--network".into(), "regtest".into()];
    for p in peers.iter().chain(std::iter::once(&core.p2p_addr())) {
        args.push("--bitcoin-peer".into());
        args.push(p.to_string());
    }
    let dir = tempfile::tempdir()?;
    args.push("--dir".into());
    args.push(dir.path().display().to_string());
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let hemi = Hemi::start(&argv, dir.path()).await?;

    // Every bad peer is disconnected…
    let mut seen = Vec::new();
    while seen.len() < kinds.len() {
        let got = tokio::time::timeout(Duration::from_secs(30), rx.recv()).await;
        match got {
            Ok(Some((kind, _))) => seen.push(format!("{kind:?}")),
            _ => anyhow::bail!(
                "only {seen:?} were disconnected; log:\n{}",
                tail(&hemi.log_text(), 60)
            ),
        }
    }
    // …and banned: the status lists each address, and none is called again.
    let status = hemi.call("hemi_btcSyncStatus", json!([])).await?;
    let banned = status["banned"].to_string();
    for p in &peers {
        assert!(
            banned.contains(&p.ip().to_string()),
            "{} not banned: {status}",
            p.ip()
        );
    }
    // The client kept following Bitcoin Core throughout, and still does.
    wait_synced(&hemi, &core.rpc, 60).await?;
    core.mine(5, &miner).await?;
    wait_synced(&hemi, &core.rpc, 60).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(rx.try_recv().is_err(), "a banned peer was reconnected to");
    Ok(())
}

/// Spawns `hemi node` without waiting for it.
fn spawn_node(
    dir: &std::path::Path,
    peer: SocketAddr,
    rpc_port: u16,
    log: &std::path::Path,
) -> anyhow::Result<std::process::Child> {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    Ok(Command::new(env!("CARGO_BIN_EXE_hemi"))
        .args([
            "node",
            "--network",
            "regtest",
            "--bitcoin-peer",
            &peer.to_string(),
        ])
        .args([
            "--dir",
            &dir.display().to_string(),
            "--rpc-addr",
            &format!("127.0.0.1:{rpc_port}"),
        ])
        .stdout(out.try_clone()?)
        .stderr(out)
        .stdin(Stdio::null())
        .spawn()?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_ten_times_during_sync_then_the_node_resumes_to_bitcoin_cores_state(
) -> anyhow::Result<()> {
    let core = BitcoinCore::start().await?;
    let keys: Vec<Key> = (0..3)
        .map(|i| Key::from_seed(&format!("kill9-{i}")))
        .collect();
    let a = &keys[0];
    core.mine(150, &a.address(KeyKind::P2wpkh, Network::Regtest))
        .await?;
    // Transactions spread through the chain so every index has work to do.
    for round in 0..10u64 {
        for utxo in spendable(&core.rpc, a, KeyKind::P2wpkh)
            .await?
            .into_iter()
            .take(5)
        {
            let tx = pay(
                a,
                KeyKind::P2wpkh,
                utxo,
                vec![
                    (keys[1].script_pubkey(KeyKind::P2wpkh), 50_000 + round),
                    (keys[2].script_pubkey(KeyKind::P2tr), 60_000 + round),
                ],
            )?;
            core.rpc.send_raw_transaction(&tx).await?;
        }
        core.mine(200, &keys[2].address(KeyKind::P2wpkh, Network::Regtest))
            .await?;
    }
    let height = core.rpc.get_block_count().await?;

    let dir = tempfile::tempdir()?;
    let log = dir.path().join("hemi.log");
    let rpc_port = hemi_testkit::free_port();
    let http = reqwest::Client::new();
    let tip_of = |body: serde_json::Value| {
        Some((
            body["result"]["hash"].as_str()?.to_owned(),
            body["result"]["height"].as_u64()?,
        ))
    };
    let mut kills_mid_sync = 0;
    let mut heights = Vec::new();
    // Ten, or more if scripts/reliability.sh asks (never fewer: the check below needs a short
    // run late enough to start from several runs' durable progress).
    let rounds = kill_rounds().max(10) as u64;
    for i in 0..rounds {
        let mut child = spawn_node(dir.path(), core.p2p_addr(), rpc_port, &log)?;
        // A pseudo-random moment between 100 and 1,500 ms after start.
        let wait = 100 + (i * 7919 + 13) % 1400;
        tokio::time::sleep(Duration::from_millis(wait)).await;
        let tip = http
            .post(format!("http://127.0.0.1:{rpc_port}"))
            .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "hemi_btcTip", "params": []}))
            .send()
            .await;
        let tip = match tip {
            Ok(r) => r.json::<serde_json::Value>().await.ok().and_then(tip_of),
            Err(_) => None,
        };
        child.kill()?; // SIGKILL
        child.wait()?;
        eprintln!("kill {i} after {wait} ms: tip {tip:?}");
        heights.push(tip.as_ref().map(|t| t.1).unwrap_or(0));
        if let Some((t, _)) = &tip {
            if *t != core.rpc.get_best_block_hash().await?.to_string() {
                kills_mid_sync += 1;
            }
        }
    }
    // Work survives crashes: run 8 lasts 465 ms, run 1 lasts 1,032 ms; run 8 ends higher only
    // because it starts from what runs 1–7 made durable.
    assert!(
        heights[8] > heights[1],
        "sync progress was lost across kills: {heights:?}"
    );
    // Restart: it opens, its tip is on Core's chain, and it finishes the sync.
    let hemi = Hemi::start(
        &[
            "node",
            "--network",
            "regtest",
            "--bitcoin-peer",
            &core.p2p_addr().to_string(),
            "--dir",
            &dir.path().display().to_string(),
        ],
        dir.path(),
    )
    .await?;
    let tip = hemi.call("hemi_btcTip", json!([])).await?;
    let h = tip["height"].as_u64().unwrap_or(0);
    assert_eq!(
        tip["hash"],
        core.rpc.get_block_hash(h).await?.to_string(),
        "resumed tip is not on Core's chain"
    );
    wait_synced(&hemi, &core.rpc, 180).await?;
    for k in &keys {
        assert_address_matches(
            &hemi,
            &core.rpc,
            &k.address(KeyKind::P2wpkh, Network::Regtest),
        )
        .await?;
    }
    assert_address_matches(
        &hemi,
        &core.rpc,
        &keys[2].address(KeyKind::P2tr, Network::Regtest),
    )
    .await?;
    eprintln!(
        "SUMMARY kill -9 during Bitcoin sync: {rounds} kills, {kills_mid_sync} mid-sync, of a \
         chain of {height} blocks; resumed on Core's chain, balances equal Core's"
    );
    Ok(())
}
