//! The BTC tunnel end to end against real Bitcoin Core regtest: a 100 BTC deposit to the
//! devnet's 2-of-3 FROST vault, made and signed in Rust and broadcast through Core, is minted
//! as hemiBTC in the first L2 block whose Bitcoin pin gives it its confirmations (ethers reads
//! the balance: 100 BTC minus the fee); `hemi_getDeposit` tells where each deposit stands; a
//! second confirmation of it, a deposit to another address, malformed or mismatched
//! OP_RETURNs, an amount under the minimum and a deposit reorganised out of Bitcoin before its
//! confirmations are never minted, each with its reason; a `hemi node --follow` re-executes
//! the mints to the same roots.

mod common;

use std::str::FromStr;

use anyhow::{bail, Context};
use bitcoin::{Amount, Network, ScriptBuf, Transaction, TxOut};
use common::{
    cast, client_script, hemi_cli, js_dir, receipt_of, spendable, tail, wait_for, wait_synced, Hemi,
};
use hemi_btc_wallet::{build_payment, Key, KeyKind};
use hemi_testkit::BitcoinCore;
use serde_json::{json, Value};

/// Anvil's account 1, the recipient.
const RECIPIENT: &str = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8";
const CONFIRMATIONS: u64 = 3;
const FEE: u64 = 1_000;

fn op_return(bytes: Vec<u8>) -> TxOut {
    TxOut {
        value: Amount::ZERO,
        script_pubkey: ScriptBuf::from_bytes(bytes),
    }
}

fn recipient_bytes() -> Vec<u8> {
    hex::decode(RECIPIENT.trim_start_matches("0x")).expect("hex")
}

async fn deposit_status(hemi: &Hemi, txid: &bitcoin::Txid) -> anyhow::Result<Value> {
    hemi.call("hemi_getDeposit", json!([txid.to_string()]))
        .await
}

async fn wait_status(hemi: &Hemi, txid: &bitcoin::Txid, want: &str) -> anyhow::Result<Value> {
    let what = format!("deposit {txid} to be {want}");
    let r = wait_for(60, &what, || async {
        let s = deposit_status(hemi, txid).await.ok()?;
        (s["status"] == want).then_some(s)
    })
    .await;
    match r {
        Ok(v) => Ok(v),
        Err(e) => bail!(
            "{e}; now {}; hemi log:\n{}",
            deposit_status(hemi, txid).await.unwrap_or_default(),
            tail(&hemi.log_text(), 30)
        ),
    }
}

fn hex_u64(v: &Value) -> u64 {
    u64::from_str_radix(v.as_str().unwrap_or("0x0").trim_start_matches("0x"), 16).unwrap_or(0)
}

/// The Bitcoin height L2 block `n` pinned (its attributes transaction names the tip).
async fn pinned_height(hemi: &Hemi, n: u64) -> anyhow::Result<u64> {
    let block = hemi
        .call("eth_getBlockByNumber", json!([format!("0x{n:x}"), true]))
        .await?;
    let input = block["transactions"][0]["input"]
        .as_str()
        .with_context(|| format!("attributes input of block {n}: {block}"))?;
    let attrs = hemi_hvm::BtcAttributes::decode(&hex::decode(input.trim_start_matches("0x"))?)?;
    let header = hemi
        .call("hemi_btcHeader", json!([attrs.canonical_tip.to_string()]))
        .await?;
    header["height"].as_u64().context("height")
}

fn ethers_view(hemi: &Hemi, tunnel: &Value, txid: &bitcoin::Txid) -> anyhow::Result<Value> {
    let script = js_dir().join("tunnel.mjs");
    let token = tunnel["tokenAddress"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let manager = tunnel["tunnelAddress"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let txid = txid.to_string();
    client_script(
        hemi,
        "node",
        &[script.as_os_str()],
        &js_dir(),
        &[
            ("TOKEN", &token),
            ("TUNNEL", &manager),
            ("OWNER", RECIPIENT),
            ("TXID", &txid),
            ("VOUT", "0"),
        ],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deposits_mint_hemibtc_once_and_every_bad_deposit_is_refused_with_its_reason(
) -> anyhow::Result<()> {
    let core = BitcoinCore::start().await?;
    let rpc = core.rpc.clone();
    let dir = tempfile::tempdir()?;
    let depositor = Key::from_seed("tunnel-e2e-depositor");
    let depositor_addr = depositor.address(KeyKind::P2wpkh, Network::Regtest);
    let (_, sink) = hemi_testkit::regtest_p2wpkh(&[0x52; 32]).context("sink key")?;
    core.mine(10, &depositor_addr).await?;
    core.mine(100, &sink).await?;
    let hemi = Hemi::devnet_on(
        &core,
        dir.path(),
        &[
            "--block-time",
            "0.5",
            "--deposit-confirmations",
            "3",
            "--no-popm",
        ],
    )
    .await?;
    // The L2 is running (and the tunnel active since block 1) before anything is deposited.
    wait_for(60, "L2 block 2", || async {
        let n = hex_u64(&hemi.call("eth_blockNumber", json!([])).await.ok()?);
        (n >= 2).then_some(())
    })
    .await?;
    let tunnel = hemi.call("hemi_getTunnel", json!([])).await?;
    assert_eq!(tunnel["threshold"], 2, "{tunnel}");
    assert_eq!(tunnel["custodians"], 3, "{tunnel}");
    assert_eq!(tunnel["depositConfirmations"], CONFIRMATIONS, "{tunnel}");
    let status = hemi.call("hemi_nodeStatus", json!([])).await?;
    assert_eq!(status["tunnel"]["vaultAddress"], tunnel["vaultAddress"]);
    assert!(
        hemi.log_text()
            .contains(tunnel["vaultAddress"].as_str().unwrap_or("?")),
        "the banner shows the vault address"
    );
    let vault = bitcoin::Address::from_str(tunnel["vaultAddress"].as_str().context("vault")?)?
        .require_network(Network::Regtest)?
        .script_pubkey();
    let vault_out = |sats: u64| TxOut {
        value: Amount::from_sat(sats),
        script_pubkey: vault.clone(),
    };
    let mut coins = spendable(&rpc, &depositor, KeyKind::P2wpkh).await?;
    assert!(coins.len() >= 9, "{} coins", coins.len());
    let mut spend = |inputs: usize, outputs: Vec<TxOut>| -> anyhow::Result<Transaction> {
        let utxos: Vec<_> = coins.drain(..inputs).collect();
        Ok(build_payment(
            &depositor,
            KeyKind::P2wpkh,
            &utxos,
            outputs,
            2.0,
        )?)
    };

    // 1. The seed story: 100 BTC locked, the recipient in `6a 14 <address>`.
    let hundred = spend(
        3,
        vec![
            vault_out(100 * 100_000_000),
            op_return([vec![0x6a, 0x14], recipient_bytes()].concat()),
        ],
    )?;
    let txid = rpc.send_raw_transaction(&hundred).await?;
    let s = deposit_status(&hemi, &txid).await?;
    assert_eq!(s["status"], "unknown", "in the mempool: {s}");
    rpc.generate_to_address(1, &sink).await?;
    let s = wait_status(&hemi, &txid, "confirming").await?;
    assert_eq!(s["confirmations"], 1, "{s}");
    assert_eq!(
        s["recipient"].as_str().map(str::to_lowercase),
        Some(RECIPIENT.to_lowercase())
    );
    let deposit_height = s["bitcoinBlock"]["height"].as_u64().context("height")?;
    rpc.generate_to_address(CONFIRMATIONS - 1, &sink).await?;
    let s = wait_status(&hemi, &txid, "minted").await?;
    assert_eq!(s["net"], 100 * 100_000_000 - FEE, "{s}");
    let minted_block = s["mintedIn"]["block"].as_u64().context("minted block")?;
    let mint_tx = s["mintedIn"]["transactionHash"]
        .as_str()
        .context("mint tx")?
        .to_string();
    // The bound: the first L2 block whose pin gives the deposit its confirmations.
    let needed = deposit_height + CONFIRMATIONS - 1;
    assert!(pinned_height(&hemi, minted_block).await? >= needed);
    assert!(
        pinned_height(&hemi, minted_block - 1).await? < needed,
        "block {} already had the confirmations",
        minted_block - 1
    );
    let receipt = hemi
        .call("eth_getTransactionReceipt", json!([mint_tx]))
        .await?;
    assert_eq!(receipt["status"], "0x1", "{receipt}");
    assert_eq!(hex_u64(&receipt["blockNumber"]), minted_block);
    let tx = hemi
        .call("eth_getTransactionByHash", json!([mint_tx]))
        .await?;
    assert_eq!(tx["type"], "0x7f", "{tx}");
    assert_eq!(
        tx["to"].as_str().map(str::to_lowercase),
        tunnel["tunnelAddress"].as_str().map(str::to_lowercase)
    );

    let seen = ethers_view(&hemi, &tunnel, &txid)?;
    assert_eq!(seen["symbol"], "hemiBTC", "{seen}");
    assert_eq!(seen["decimals"], 8, "{seen}");
    assert_eq!(
        seen["balance"],
        (100 * 100_000_000 - FEE).to_string(),
        "{seen}"
    );
    assert_eq!(seen["minted"], true, "{seen}");
    assert_eq!(seen["events"].as_array().map(Vec::len), Some(1), "{seen}");
    assert_eq!(seen["events"][0]["tx"], mint_tx.as_str());
    eprintln!("deposit {txid} minted in L2 block {minted_block} ({mint_tx}); ethers: {seen}");

    // 2. The same deposit confirmed a second time, by anyone: refused by the contract.
    let again = hemi
        .call(
            "eth_call",
            json!([{
                "to": tunnel["tunnelAddress"],
                "data": format!("0x{}", hex::encode(hemi_tunnel::contracts::confirm_deposit_calldata(
                    hemi_tunnel::contracts::txid_display(&txid), 0))),
            }, "latest"]),
        )
        .await
        .expect_err("a second mint");
    let already = hex::encode(<hemi_tunnel::contracts::ITunnelManager::AlreadyMinted as alloy_sol_types::SolError>::SELECTOR);
    assert!(again.to_string().contains(&already), "{again}");

    // 3. Deposits that break a rule, and one in the hex form that is fine.
    let hex_form = spend(
        1,
        vec![
            vault_out(20_000),
            op_return([vec![0x6a, 0x28], RECIPIENT[2..].to_lowercase().into_bytes()].concat()),
        ],
    )?;
    let other_address = spend(
        1,
        vec![
            TxOut {
                value: Amount::from_sat(50_000),
                script_pubkey: sink.script_pubkey(),
            },
            op_return([vec![0x6a, 0x14], recipient_bytes()].concat()),
        ],
    )?;
    let push_mismatch = spend(
        1,
        vec![
            vault_out(50_000),
            op_return([vec![0x6a, 0x13], recipient_bytes()].concat()),
        ],
    )?;
    let short = spend(
        1,
        vec![
            vault_out(50_000),
            op_return([vec![0x6a, 0x10], recipient_bytes()[..16].to_vec()].concat()),
        ],
    )?;
    let under = spend(
        1,
        vec![
            vault_out(9_999),
            op_return([vec![0x6a, 0x14], recipient_bytes()].concat()),
        ],
    )?;
    let cases = [
        (&hex_form, None),
        (&other_address, Some("does not pay the vault")),
        (
            &push_mismatch,
            Some("OP_RETURN pushes with opcode 0x13 but carries 20 bytes"),
        ),
        (&short, Some("OP_RETURN of 18 bytes is neither")),
        (
            &under,
            Some("9999 sat is below the minimum deposit of 10000 sat"),
        ),
    ];
    // Core relays the standard ones; `6a 13 <20 bytes>` is not push-only (its last byte reads as
    // an opcode), so Core's policy refuses it and it goes straight into a block (generateblock).
    for (tx, _) in &cases {
        if tx.compute_txid() != push_mismatch.compute_txid() {
            rpc.send_raw_transaction(tx).await?;
        }
    }
    rpc.generate_block(&sink, std::slice::from_ref(&push_mismatch))
        .await?;
    rpc.generate_to_address(CONFIRMATIONS, &sink).await?;
    wait_synced(&hemi, &rpc, 30).await?;
    wait_status(&hemi, &hex_form.compute_txid(), "minted").await?;
    for (tx, reason) in &cases {
        let s = deposit_status(&hemi, &tx.compute_txid()).await?;
        match reason {
            None => assert_eq!(s["status"], "minted", "{s}"),
            Some(r) => {
                assert_eq!(s["status"], "refused", "{s}");
                assert!(s["reason"].as_str().unwrap_or_default().contains(r), "{s}");
            }
        }
    }

    // 4. A deposit reorganised out of Bitcoin before its confirmations is never minted.
    let reorged = spend(
        1,
        vec![
            vault_out(30_000),
            op_return([vec![0x6a, 0x14], recipient_bytes()].concat()),
        ],
    )?;
    let reorged_txid = rpc.send_raw_transaction(&reorged).await?;
    let mined = rpc.generate_to_address(1, &sink).await?;
    wait_status(&hemi, &reorged_txid, "confirming").await?;
    rpc.invalidate_block(&mined[0]).await?;
    // A longer branch without it (Core puts it back in its mempool; these blocks leave it out).
    for _ in 0..CONFIRMATIONS + 1 {
        rpc.generate_block(&sink, &[]).await?;
    }
    wait_synced(&hemi, &rpc, 30).await?;
    let s = wait_status(&hemi, &reorged_txid, "unknown").await?;
    assert!(
        s["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("reorganised out"),
        "{s}"
    );
    // Let the L2 pin the new tip, then check nothing more was minted.
    let head = hex_u64(&hemi.call("eth_blockNumber", json!([])).await?);
    wait_for(30, "two more L2 blocks", || async {
        let n = hex_u64(&hemi.call("eth_blockNumber", json!([])).await.ok()?);
        (n >= head + 2).then_some(())
    })
    .await?;
    let seen = ethers_view(&hemi, &tunnel, &txid)?;
    assert_eq!(
        seen["balance"],
        (100 * 100_000_000 - FEE + 20_000 - FEE).to_string(),
        "the two good deposits and nothing else: {seen}"
    );
    assert_eq!(seen["events"].as_array().map(Vec::len), Some(2), "{seen}");

    // 5. A follower re-executes every mint to the same roots.
    let follower_dir = dir.path().join("follower").to_string_lossy().into_owned();
    let followed = format!("http://{}", hemi.rpc_addr);
    let peer = core.p2p_addr().to_string();
    let follower = Hemi::start(
        &[
            "node",
            "--network",
            "regtest",
            "--bitcoin-peer",
            &peer,
            "--dir",
            &follower_dir,
            "--follow",
            &followed,
        ],
        dir.path(),
    )
    .await?;
    let target = hex_u64(&hemi.call("eth_blockNumber", json!([])).await?);
    wait_for(
        120,
        "the follower to reach the sequencer's head",
        || async {
            let n = hex_u64(&follower.call("eth_blockNumber", json!([])).await.ok()?);
            (n >= target).then_some(())
        },
    )
    .await
    .with_context(|| tail(&follower.log_text(), 30))?;
    let at = format!("0x{target:x}");
    let ours = hemi
        .call("eth_getBlockByNumber", json!([at, false]))
        .await?;
    let theirs = follower
        .call("eth_getBlockByNumber", json!([at, false]))
        .await?;
    assert_eq!(ours["hash"], theirs["hash"]);
    assert_eq!(ours["stateRoot"], theirs["stateRoot"]);
    let s = follower
        .call("hemi_getDeposit", json!([txid.to_string()]))
        .await?;
    assert_eq!(s["status"], "minted", "the follower sees the mint: {s}");
    assert_eq!(s["mintedIn"]["transactionHash"], mint_tx.as_str());
    Ok(())
}

/// Flips the first hex digit of the string at `pointer` in `doc`.
fn flip(doc: &Value, pointer: &str) -> Option<Value> {
    let mut doc = doc.clone();
    let s = doc.pointer_mut(pointer)?;
    let text = s.as_str()?.to_string();
    let at = if text.starts_with("0x") { 2 } else { 0 };
    let c = text.as_bytes().get(at + 10).copied()? as char;
    let flipped = if c == '0' { '1' } else { '0' };
    let mut t = text.clone();
    t.replace_range(at + 10..at + 11, &flipped.to_string());
    *s = Value::String(t);
    Some(doc)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provenance_of_each_deposit_format_verifies_offline_and_in_bitcoin_core(
) -> anyhow::Result<()> {
    let core = BitcoinCore::start().await?;
    let rpc = core.rpc.clone();
    let dir = tempfile::tempdir()?;
    let depositor = Key::from_seed("tunnel-e2e-provenance-depositor");
    let depositor_addr = depositor.address(KeyKind::P2wpkh, Network::Regtest);
    let (_, sink) = hemi_testkit::regtest_p2wpkh(&[0x53; 32]).context("sink key")?;
    // The built-in PoP miner gets one confirmed output per publication (as pop_finality does).
    let miner_addr =
        Key::from_seed("hemi-devnet-bitcoin-key-0").address(KeyKind::P2wpkh, Network::Regtest);
    core.mine(30, &miner_addr).await?;
    core.mine(7, &depositor_addr).await?;
    core.mine(100, &sink).await?;
    let hemi = Hemi::devnet_on(
        &core,
        dir.path(),
        &[
            "--block-time",
            "0.5",
            "--deposit-confirmations",
            "3",
            "--keystone-interval",
            "5",
            "--superfinality-depth",
            "10",
        ],
    )
    .await?;
    let tunnel = hemi.call("hemi_getTunnel", json!([])).await?;
    let vault = bitcoin::Address::from_str(tunnel["vaultAddress"].as_str().context("vault")?)?
        .require_network(Network::Regtest)?
        .script_pubkey();
    let mut coins = spendable(&rpc, &depositor, KeyKind::P2wpkh).await?;
    let by_address = build_payment(
        &depositor,
        KeyKind::P2wpkh,
        &coins.drain(..3).collect::<Vec<_>>(),
        vec![
            TxOut {
                value: Amount::from_sat(100 * 100_000_000),
                script_pubkey: vault.clone(),
            },
            op_return([vec![0x6a, 0x14], recipient_bytes()].concat()),
        ],
        2.0,
    )?;
    let by_hex = build_payment(
        &depositor,
        KeyKind::P2wpkh,
        &coins.drain(..1).collect::<Vec<_>>(),
        vec![
            op_return([vec![0x6a, 0x28], RECIPIENT[2..].to_string().into_bytes()].concat()),
            TxOut {
                value: Amount::from_sat(100_000_000),
                script_pubkey: vault.clone(),
            },
        ],
        2.0,
    )?;
    // The taproot format: 100 BTC to a NUMS-keyed output with a deposit leaf naming the vault
    // key and a 144-block reclaim leaf, and its HEMT hint.
    let vault_key = bitcoin::XOnlyPublicKey::from_str(
        tunnel["vaultOutputKey"]
            .as_str()
            .context("vaultOutputKey")?
            .trim_start_matches("0x"),
    )?;
    let taproot = hemi_tunnel::TaprootDeposit {
        chain_id: 31337,
        recipient: alloy_primitives::Address::from_str(RECIPIENT)?,
        max_fee: Amount::from_sat(FEE),
        vault_key,
        depositor_key: depositor.x_only(),
        reclaim_after: 144,
    };
    let by_taproot = build_payment(
        &depositor,
        KeyKind::P2wpkh,
        &coins.drain(..3).collect::<Vec<_>>(),
        vec![
            TxOut {
                value: Amount::from_sat(100 * 100_000_000),
                script_pubkey: taproot.script_pubkey(),
            },
            TxOut {
                value: Amount::ZERO,
                script_pubkey: taproot.hint_script(),
            },
        ],
        2.0,
    )?;
    let deposits = [
        by_address.compute_txid(),
        by_hex.compute_txid(),
        by_taproot.compute_txid(),
    ];
    rpc.send_raw_transaction(&by_address).await?;
    rpc.send_raw_transaction(&by_hex).await?;
    rpc.send_raw_transaction(&by_taproot).await?;
    rpc.generate_to_address(CONFIRMATIONS, &sink).await?;
    for txid in &deposits {
        let s = wait_status(&hemi, txid, "minted").await?;
        eprintln!(
            "deposit {txid}: {} minted in {}",
            s["format"], s["mintedIn"]
        );
    }
    // Bitcoin blocks until both mints are anchored by a PoP publication, then superfinal.
    let mut anchored = false;
    for _ in 0..120 {
        let mut ready = true;
        for txid in &deposits {
            if let Err(e) = hemi
                .call("hemi_getProvenance", json!([txid.to_string()]))
                .await
            {
                assert!(e.to_string().contains("not anchored in Bitcoin yet"), "{e}");
                ready = false;
            }
        }
        if ready {
            anchored = true;
            break;
        }
        rpc.generate_to_address(1, &sink).await?;
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    assert!(
        anchored,
        "never anchored; hemi log:\n{}",
        tail(&hemi.log_text(), 40)
    );
    rpc.generate_to_address(10, &sink).await?;
    wait_synced(&hemi, &rpc, 30).await?;
    let url = format!("http://{}", hemi.rpc_addr);
    let core_url = core.rpc_url();
    for txid in &deposits {
        let file = dir.path().join(format!("{txid}.json"));
        let file_s = file.to_string_lossy().into_owned();
        let (ok, _, err) = hemi_cli(&[
            "provenance",
            &txid.to_string(),
            "-o",
            &file_s,
            "--rpc-url",
            &url,
        ])?;
        assert!(ok, "hemi provenance: {err}");
        let text = std::fs::read_to_string(&file)?;
        let doc: Value = serde_json::from_str(&text)?;
        assert_eq!(doc["version"], "hemi-rs/provenance/v1");
        eprintln!("provenance of {txid}: {} bytes", text.len());

        let (ok, out, err) = hemi_cli(&["verify", &file_s, "--json"])?;
        assert!(ok, "hemi verify: {err}");
        let report: Value = serde_json::from_str(out.trim())?;
        assert_eq!(report["superfinal"], true, "{report}");
        assert_eq!(
            report["recipient"].as_str().map(str::to_lowercase),
            Some(RECIPIENT.to_lowercase())
        );
        let (ok, out, err) = hemi_cli(&["verify", &file_s, "--bitcoin-rpc", &core_url])?;
        assert!(ok, "hemi verify --bitcoin-rpc: {err}");
        assert!(out.contains("verifytxoutproof ok"), "{out}");
        eprintln!("{out}");
        // Bitcoin Core accepts both merkleblocks as they are.
        for (part, id) in [
            ("deposit", &doc["deposit"]["txid"]),
            ("anchor", &doc["anchor"]["popTxid"]),
        ] {
            let proved: Vec<String> = rpc
                .call("verifytxoutproof", json!([doc[part]["merkleBlock"]]))
                .await?;
            assert_eq!(
                proved,
                vec![id.as_str().unwrap_or_default().to_string()],
                "{part}"
            );
        }
        // The same document from the L2 transaction that minted.
        let status = deposit_status(&hemi, txid).await?;
        let mint_tx = status["mintedIn"]["transactionHash"]
            .as_str()
            .context("mint tx")?;
        let by_l2 = hemi.call("hemi_getProvenance", json!([mint_tx])).await?;
        assert_eq!(by_l2["mint"], doc["mint"]);

        // A changed byte in any part fails, naming its link.
        let mut parts = vec![
            ("/deposit/tx", "link 1"),
            ("/deposit/merkleBlock", "link 1"),
            ("/deposit/headers/0", "link 1"),
            ("/deposit/vaultScript", "link 1"),
            ("/mint/header", "link 2"),
            ("/mint/seal", "link 2"),
            ("/mint/receipt", "link 2"),
            ("/mint/receiptProof/0", "link 2"),
            ("/anchor/keystone", "link 3"),
            ("/anchor/tx", "link 3"),
            ("/anchor/merkleBlock", "link 3"),
            ("/anchor/headers/0", "link 3"),
        ];
        if doc["mint"]["headers"]
            .as_array()
            .is_some_and(|h| h.len() >= 2)
        {
            parts.push(("/mint/headers/0", "link 2"));
        }
        for (pointer, link) in parts {
            let bad = flip(&doc, pointer).with_context(|| format!("{pointer} in {doc}"))?;
            let bad_file = dir.path().join("tampered.json");
            std::fs::write(&bad_file, serde_json::to_string_pretty(&bad)?)?;
            let (ok, _, err) = hemi_cli(&["verify", &bad_file.to_string_lossy()])?;
            assert!(!ok, "{pointer} changed but hemi verify passed");
            assert!(err.contains(link), "{pointer}: expected {link}: {err}");
        }
    }

    // The built-in explorer in headless Chromium: the chain, a keystone block's finality
    // ladder, keystones, Bitcoin, the tunnel and each deposit's provenance, its numbers checked
    // against the RPC; screenshots kept under target/tmp/explorer.
    let shots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("explorer");
    let ids: Vec<String> = deposits.iter().map(|t| t.to_string()).collect();
    let ids = ids.join(",");
    let shots_s = shots.to_string_lossy().into_owned();
    let script = js_dir().join("explorer.mjs");
    let out = client_script(
        &hemi,
        "node",
        &[script.as_os_str()],
        &js_dir(),
        &[
            ("DEPOSITS", ids.as_str()),
            ("SCREENSHOT_DIR", shots_s.as_str()),
        ],
    )?;
    assert_eq!(out["ok"], true, "{out}");
    eprintln!("explorer: {out}");
    for file in out["screenshots"].as_array().context("screenshots")? {
        let file = file.as_str().context("screenshot path")?;
        assert!(std::fs::metadata(file)?.len() > 10_000, "{file} is empty");
    }
    Ok(())
}

/// Anvil's account 1's key (the recipient's).
const RECIPIENT_KEY: &str = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";

/// Locks `btc` whole BTC in `vault` from `depositor`'s first confirmed coin, for RECIPIENT
/// (Hemi's `6a 14` form), and waits until it is minted `CONFIRMATIONS` blocks later.
async fn mint_from_vault_deposit(
    hemi: &Hemi,
    rpc: &hemi_btc_rpc_client::BitcoinRpc,
    depositor: &Key,
    vault: ScriptBuf,
    btc: u64,
    sink: &bitcoin::Address,
) -> anyhow::Result<bitcoin::Txid> {
    let coins = spendable(rpc, depositor, KeyKind::P2wpkh).await?;
    let deposit = build_payment(
        depositor,
        KeyKind::P2wpkh,
        &coins[..1],
        vec![
            TxOut {
                value: Amount::from_sat(btc * 100_000_000),
                script_pubkey: vault,
            },
            op_return([vec![0x6a, 0x14], recipient_bytes()].concat()),
        ],
        2.0,
    )?;
    let txid = rpc.send_raw_transaction(&deposit).await?;
    rpc.generate_to_address(CONFIRMATIONS, sink).await?;
    wait_status(hemi, &txid, "minted").await?;
    Ok(txid)
}

/// `initiateWithdrawal(script, amount, maxFee)` from RECIPIENT through cast, one per
/// `(payee, amount, max fee)`, with explicit nonces (`--async`: all in one L2 block); the
/// transaction hashes.
fn request_withdrawals(
    url: &str,
    manager: &str,
    nonce: u64,
    requests: &[(&Key, u64, u64)],
) -> anyhow::Result<Vec<String>> {
    let mut hashes = Vec::new();
    for (i, (payee, amount, max_fee)) in requests.iter().enumerate() {
        let script = format!(
            "0x{}",
            hex::encode(payee.script_pubkey(KeyKind::P2wpkh).as_bytes())
        );
        let n = (nonce + i as u64).to_string();
        hashes.push(cast(&[
            "send",
            "--async",
            "--rpc-url",
            url,
            "--private-key",
            RECIPIENT_KEY,
            "--nonce",
            &n,
            manager,
            "initiateWithdrawal(bytes,uint64,uint64)",
            &script,
            &amount.to_string(),
            &max_fee.to_string(),
        ])?);
    }
    Ok(hashes)
}

/// The first payout (a transaction with a HEMW id list) in Core's mempool.
async fn payout_in_mempool(rpc: &hemi_btc_rpc_client::BitcoinRpc) -> Option<Transaction> {
    for t in rpc.get_raw_mempool().await.ok()? {
        let tx = rpc.get_raw_transaction(&t).await.ok()?;
        if hemi_tunnel::payout::is_payout(&tx) {
            return Some(tx);
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn withdrawals_are_paid_in_one_bitcoin_transaction_and_an_unpaid_one_is_challenged(
) -> anyhow::Result<()> {
    let core = BitcoinCore::start().await?;
    let rpc = core.rpc.clone();
    let dir = tempfile::tempdir()?;
    let depositor = Key::from_seed("tunnel-e2e-withdrawal-depositor");
    let (_, sink) = hemi_testkit::regtest_p2wpkh(&[0x54; 32]).context("sink key")?;
    core.mine(1, &depositor.address(KeyKind::P2wpkh, Network::Regtest))
        .await?;
    core.mine(100, &sink).await?;
    let hemi = Hemi::devnet_on(
        &core,
        dir.path(),
        &[
            "--block-time",
            "0.5",
            "--deposit-confirmations",
            "3",
            "--withdrawal-deadline",
            "30",
            "--no-popm",
        ],
    )
    .await?;
    let url = format!("http://{}", hemi.rpc_addr);
    let tunnel = hemi.call("hemi_getTunnel", json!([])).await?;
    let manager = tunnel["tunnelAddress"]
        .as_str()
        .context("manager")?
        .to_string();
    let vault = bitcoin::Address::from_str(tunnel["vaultAddress"].as_str().context("vault")?)?
        .require_network(Network::Regtest)?
        .script_pubkey();
    let txid = mint_from_vault_deposit(&hemi, &rpc, &depositor, vault.clone(), 10, &sink).await?;

    // Four requests through cast, in one L2 block (explicit nonces, --async): three with room
    // for the fee, one that allows 1 sat (the custodians leave it).
    let payees: Vec<Key> = (0..4)
        .map(|i| Key::from_seed(&format!("e2e payee {i}")))
        .collect();
    let nonce = hex_u64(
        &hemi
            .call("eth_getTransactionCount", json!([RECIPIENT, "latest"]))
            .await?,
    );
    let asks: Vec<(&Key, u64, u64)> = payees
        .iter()
        .enumerate()
        .map(|(i, p)| (p, 100_000_000 + i as u64, if i == 3 { 1 } else { 10_000 }))
        .collect();
    let hashes = request_withdrawals(&url, &manager, nonce, &asks)?;
    for h in &hashes {
        let r = receipt_of(&hemi, h, 30, "a withdrawal request's receipt").await?;
        assert_eq!(r["status"], "0x1", "{r}");
    }
    let w = hemi.call("hemi_getWithdrawal", json!([1])).await?;
    assert_eq!(w["status"], "pending", "{w}");
    assert_eq!(
        w["address"],
        payees[0]
            .address(KeyKind::P2wpkh, Network::Regtest)
            .to_string()
    );

    // The custodians' one payout in Core's mempool: three requests, in id order.
    let payout = wait_for(
        60,
        "the custodians' payout in Bitcoin Core's mempool",
        || payout_in_mempool(&rpc),
    )
    .await
    .with_context(|| tail(&hemi.log_text(), 30))?;
    let ids: Vec<u32> = payout
        .output
        .iter()
        .filter_map(|o| hemi_tunnel::payout::parse_id_list(&o.script_pubkey))
        .flatten()
        .collect();
    assert_eq!(
        ids,
        vec![1, 2, 3],
        "one transaction pays the three payable requests"
    );
    for (i, payee) in payees[..3].iter().enumerate() {
        let out = &payout.output[i];
        assert_eq!(out.script_pubkey, payee.script_pubkey(KeyKind::P2wpkh));
        let amount = 100_000_000 + i as u64;
        assert!(
            out.value.to_sat() <= amount && out.value.to_sat() + 10_000 >= amount,
            "{out:?}"
        );
    }
    let payout_txid = payout.compute_txid();
    eprintln!("payout {payout_txid}: {} vB for 3 requests", payout.vsize());
    rpc.generate_to_address(CONFIRMATIONS, &sink).await?;
    for id in 1..=3 {
        let w = wait_for(60, "the payout finalized on L2", || async {
            let w = hemi.call("hemi_getWithdrawal", json!([id])).await.ok()?;
            (w["status"] == "paid").then_some(w)
        })
        .await?;
        assert_eq!(w["payoutTxid"], payout_txid.to_string(), "{w}");
    }
    // Bitcoin Core's UTXO set holds the three payments at the payees' addresses.
    for (i, payee) in payees[..3].iter().enumerate() {
        let utxo: Value = rpc
            .call("gettxout", json!([payout_txid.to_string(), i]))
            .await?;
        assert_eq!(
            utxo["scriptPubKey"]["address"],
            payee.address(KeyKind::P2wpkh, Network::Regtest).to_string(),
            "{utxo}"
        );
    }

    // A finalized payout is not an invalid spend: reporting it is refused.
    let report = cast(&[
        "call",
        "--rpc-url",
        &url,
        &manager,
        "reportInvalidSpend(bytes32,uint16)",
        &format!("0x{payout_txid}"),
        "0",
    ]);
    assert!(
        report.is_err(),
        "a finalized payout is not reportable: {report:?}"
    );
    // … and refused for that reason, not another: the revert data decodes to NotInvalid.
    let data = hemi_tunnel::contracts::report_invalid_spend_calldata(
        hemi_tunnel::contracts::txid_display(&payout_txid),
        0,
    );
    let err = hemi
        .call("eth_call", json!([{"to": manager, "data": data}, "latest"]))
        .await
        .err()
        .context("eth_call of reportInvalidSpend on a real payout succeeded")?
        .to_string();
    let revert = err
        .split("\"data\":\"0x")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .and_then(|h| hex::decode(h).ok())
        .with_context(|| format!("no revert data in {err}"))?;
    let reason = hemi_tunnel::contracts::revert_reason(&revert);
    assert!(reason.starts_with("not an invalid spend"), "{reason}");

    // Request 4 is still pending; its requester challenges it after the deadline.
    let w = hemi.call("hemi_getWithdrawal", json!([4])).await?;
    assert_eq!(w["status"], "pending", "{w}");
    let from = w["challengeableFrom"].as_u64().context("deadline")?;
    let early = cast(&[
        "send",
        "--rpc-url",
        &url,
        "--private-key",
        RECIPIENT_KEY,
        &manager,
        "challenge(uint256)",
        "4",
    ]);
    assert!(
        early.is_err(),
        "a challenge before the deadline is refused: {early:?}"
    );
    wait_for(60, "the challenge deadline", || async {
        let n = hex_u64(&hemi.call("eth_blockNumber", json!([])).await.ok()?);
        (n + 1 >= from).then_some(())
    })
    .await?;
    cast(&[
        "send",
        "--rpc-url",
        &url,
        "--private-key",
        RECIPIENT_KEY,
        &manager,
        "challenge(uint256)",
        "4",
    ])?;
    let w = hemi.call("hemi_getWithdrawal", json!([4])).await?;
    assert_eq!(w["status"], "challenged", "{w}");
    let seen = ethers_view(&hemi, &tunnel, &txid)?;
    let paid: u64 = (0..3).map(|i| 100_000_000 + i).sum();
    assert_eq!(
        seen["balance"],
        (10 * 100_000_000 - FEE - paid).to_string(),
        "the challenged request's hemiBTC is back: {seen}"
    );
    let t = hemi.call("hemi_getTunnel", json!([])).await?;
    assert_eq!(t["faulty"], true, "a challenge marks the vault faulty: {t}");
    assert_eq!(t["frozenAt"], Value::Null, "{t}");
    let unknown = hemi.call("hemi_getWithdrawal", json!([99])).await?;
    assert_eq!(unknown["status"], "unknown", "{unknown}");
    Ok(())
}

/// `hemi deposit` end to end, funded by the devnet's `hemi_sendBitcoin` / `hemi_mineBitcoin`:
/// a Hemi-format deposit it builds from a key is minted; a taproot deposit it builds (with a
/// reclaim leaf and a HEMT hint) whose reclaim path opens too soon is refused with the height it
/// becomes reclaimable at; `hemi deposit reclaim` is refused by Bitcoin Core one block before
/// the timelock opens and accepted (and mined) at it; a second reclaim is refused because the
/// output is spent. A taproot deposit with the default 144-block reclaim leaf is minted in the
/// block after its confirmations and swept into the vault through its deposit leaf.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hemi_deposit_mints_and_an_unminted_taproot_deposit_is_reclaimed_after_its_timelock(
) -> anyhow::Result<()> {
    const RECLAIM_AFTER: u64 = 5;
    let core = BitcoinCore::start().await?;
    let rpc = core.rpc.clone();
    let dir = tempfile::tempdir()?;
    let depositor = Key::from_seed("tunnel-e2e-cli-depositor");
    let secret = hex::encode(depositor.secret_bytes());
    let depositor_addr = depositor.address(KeyKind::P2wpkh, Network::Regtest);
    let (_, sink) = hemi_testkit::regtest_p2wpkh(&[0x55; 32]).context("sink key")?;
    core.mine(100, &sink).await?;
    let hemi = Hemi::devnet_on(
        &core,
        dir.path(),
        &[
            "--block-time",
            "0.5",
            "--deposit-confirmations",
            "3",
            "--no-popm",
        ],
    )
    .await?;
    wait_synced(&hemi, &rpc, 60).await?;
    // The devnet's Bitcoin helpers fund the depositor: no bitcoin-cli.
    let bad = hemi.call("hemi_mineBitcoin", json!([0])).await;
    assert!(format!("{bad:?}").contains("1..=1000"), "{bad:?}");
    let bad = hemi
        .call(
            "hemi_sendBitcoin",
            json!(["bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq", "1"]),
        )
        .await;
    assert!(
        format!("{bad:?}").contains("not a regtest address"),
        "{bad:?}"
    );
    let funding = hemi
        .call("hemi_sendBitcoin", json!([depositor_addr.to_string(), "5"]))
        .await?;
    let funding = bitcoin::Txid::from_str(funding.as_str().context("txid")?)?;
    let mined = hemi.call("hemi_mineBitcoin", json!([1])).await?;
    assert_eq!(mined.as_array().map(Vec::len), Some(1), "{mined}");
    let block = rpc
        .get_block(&bitcoin::BlockHash::from_str(
            mined[0].as_str().context("hash")?,
        )?)
        .await?;
    let paid = block
        .txdata
        .iter()
        .find(|t| t.compute_txid() == funding)
        .context("the funding is in the mined block")?;
    assert!(paid
        .output
        .iter()
        .any(|o| o.script_pubkey == depositor_addr.script_pubkey()
            && o.value == Amount::from_sat(500_000_000)));
    wait_synced(&hemi, &rpc, 60).await?;
    let l2 = format!("http://{}", hemi.rpc_addr);
    let btc = core.rpc_url();
    let cli = |extra: &[&str]| -> anyhow::Result<(bool, String, String)> {
        let mut args = vec!["deposit"];
        args.extend_from_slice(extra);
        hemi_cli(&args)
    };
    let common = [
        "--key",
        secret.as_str(),
        "--rpc-url",
        l2.as_str(),
        "--bitcoin-rpc",
        btc.as_str(),
    ];

    // The Hemi format, built by `hemi deposit`: minted like any other.
    let (ok, out, err) =
        cli(&[&["--amount", "2", "--recipient", RECIPIENT][..], &common].concat())?;
    assert!(ok, "hemi deposit failed: {err}");
    let txid = bitcoin::Txid::from_str(out.trim()).with_context(|| format!("txid in {out:?}"))?;
    assert!(err.contains("hemi_getDeposit"), "{err}");
    hemi.call("hemi_mineBitcoin", json!([CONFIRMATIONS, sink.to_string()]))
        .await?;
    let s = wait_status(&hemi, &txid, "minted").await?;
    assert_eq!(s["format"], "opReturnAddress", "{s}");
    assert_eq!(s["net"], 2 * 100_000_000 - FEE, "{s}");
    wait_synced(&hemi, &rpc, 60).await?;

    // An unsigned PSBT for the depositor's own wallet (no key given to hemi): the wallet
    // (here hemi_btc_wallet, as a stand-in for any BIP-174 signer) signs it, Core relays it,
    // and it mints like any other deposit.
    let (ok, out, err) = cli(&[
        "--psbt",
        "--from",
        &depositor_addr.to_string(),
        "--amount",
        "0.5",
        "--recipient",
        RECIPIENT,
        "--rpc-url",
        l2.as_str(),
    ])?;
    assert!(ok, "hemi deposit --psbt failed: {err}");
    assert!(err.contains("unsigned PSBT"), "{err}");
    let psbt = {
        use base64::Engine;
        let bytes = base64::engine::general_purpose::STANDARD.decode(out.trim())?;
        bitcoin::psbt::Psbt::deserialize(&bytes)?
    };
    let prevouts: Vec<TxOut> = psbt
        .inputs
        .iter()
        .map(|i| i.witness_utxo.clone().context("witness_utxo"))
        .collect::<anyhow::Result<_>>()?;
    let mut tx = psbt.unsigned_tx.clone();
    let signers = vec![hemi_btc_wallet::Signer::Key(&depositor); tx.input.len()];
    hemi_btc_wallet::sign_transaction(&mut tx, &prevouts, &signers)?;
    let fee = prevouts.iter().map(|o| o.value.to_sat()).sum::<u64>()
        - tx.output.iter().map(|o| o.value.to_sat()).sum::<u64>();
    assert!(
        fee <= tx.vsize() as u64 * 2,
        "fee {fee} for {} vB",
        tx.vsize()
    );
    let psbt_txid = rpc.send_raw_transaction(&tx).await?;
    hemi.call("hemi_mineBitcoin", json!([CONFIRMATIONS, sink.to_string()]))
        .await?;
    let s = wait_status(&hemi, &psbt_txid, "minted").await?;
    assert_eq!(s["net"], 50_000_000 - FEE, "{s}");
    wait_synced(&hemi, &rpc, 60).await?;

    // Bad flags are refused before anything is signed.
    let (ok, _, err) = cli(&[&["--amount", "2", "--recipient", "0x12"][..], &common].concat())?;
    assert!(!ok && err.contains("not an L2 address"), "{err}");
    let (ok, _, err) = cli(&[
        &["--amount", "0.00000001", "--recipient", RECIPIENT][..],
        &common,
    ]
    .concat())?;
    assert!(!ok && err.contains("minimum deposit"), "{err}");

    // A taproot deposit with a 5-block reclaim leaf.
    let record = dir.path().join("taproot-deposit.json");
    let reclaim_after = RECLAIM_AFTER.to_string();
    let (ok, out, err) = cli(&[
        &[
            "--amount",
            "1.5",
            "--recipient",
            RECIPIENT,
            "--format",
            "taproot",
            "--reclaim-after",
            reclaim_after.as_str(),
            "-o",
            record.to_str().context("path")?,
        ][..],
        &common,
    ]
    .concat())?;
    assert!(ok, "hemi deposit --format taproot failed: {err}");
    let txid = bitcoin::Txid::from_str(out.trim())?;
    let tx = rpc.get_raw_transaction(&txid).await?;
    assert!(
        tx.output[0].script_pubkey.is_p2tr(),
        "the deposit output is taproot"
    );
    assert_eq!(tx.output[0].value, Amount::from_sat(150_000_000));
    assert_eq!(
        &tx.output[1].script_pubkey.as_bytes()[2..6],
        b"HEMT",
        "the hint"
    );
    let deposit_height = rpc.get_block_count().await? + 1;
    rpc.generate_to_address(1, &sink).await?;
    let s = wait_status(&hemi, &txid, "refused").await?;
    assert_eq!(s["format"], "taproot", "{s}");
    assert_eq!(s["amount"], 150_000_000u64, "{s}");
    assert_eq!(
        s["reclaimableAtHeight"],
        deposit_height + RECLAIM_AFTER,
        "{s}"
    );
    assert!(
        s["reason"].as_str().unwrap_or("").contains("reclaim"),
        "{s}"
    );

    let reclaim = |extra: &[&str]| {
        let mut args = vec!["deposit", "reclaim", record.to_str().unwrap_or("?")];
        args.extend_from_slice(extra);
        hemi_cli(&args)
    };
    let btc_flags = ["--key", secret.as_str(), "--bitcoin-rpc", btc.as_str()];
    // Another key cannot reclaim it.
    let other = hex::encode(Key::from_seed("someone-else").secret_bytes());
    let (ok, _, err) = reclaim(&["--key", other.as_str(), "--bitcoin-rpc", btc.as_str()])?;
    assert!(
        !ok && err.contains("not the deposit's depositor key"),
        "{err}"
    );
    // One block short of the timelock (the next block would be deposit + 4): Core refuses.
    rpc.generate_to_address(RECLAIM_AFTER - 2, &sink).await?;
    assert_eq!(
        rpc.get_block_count().await? + 1,
        deposit_height + RECLAIM_AFTER - 1
    );
    let (ok, _, err) = reclaim(&btc_flags)?;
    assert!(
        !ok && err.contains("too early") && err.contains("non-BIP68-final"),
        "{err}"
    );
    // At the timelock: Core accepts it and mines it.
    rpc.generate_to_address(1, &sink).await?;
    let (ok, out, err) = reclaim(&btc_flags)?;
    assert!(ok, "reclaim at the timelock failed: {err}");
    let reclaim_txid = bitcoin::Txid::from_str(out.trim())?;
    let hash = rpc.generate_to_address(1, &sink).await?;
    let block = rpc.get_block(&hash[0]).await?;
    let mined = block
        .txdata
        .iter()
        .find(|t| t.compute_txid() == reclaim_txid)
        .context("the reclaim is in the next block")?;
    assert_eq!(
        mined.input[0].previous_output,
        bitcoin::OutPoint::new(txid, 0)
    );
    assert_eq!(
        mined.output[0].script_pubkey,
        depositor_addr.script_pubkey()
    );
    let fee = 150_000_000 - mined.output[0].value.to_sat();
    assert!(fee > 0 && fee < 1_000, "reclaim fee {fee} sat");
    eprintln!(
        "reclaimed 1.5 BTC in {reclaim_txid} ({} vB, fee {fee} sat)",
        mined.vsize()
    );
    // Twice: the output is gone (the same reclaim is in the chain; one to another address
    // finds its input spent).
    let (ok, _, err) = reclaim(&btc_flags)?;
    assert!(!ok && err.contains("already reclaimed"), "{err}");
    let elsewhere = sink.to_string();
    let (ok, _, err) = reclaim(&[&btc_flags[..], &["--to", elsewhere.as_str()]].concat())?;
    assert!(!ok && err.contains("is spent"), "{err}");
    let s = deposit_status(&hemi, &txid).await?;
    assert_eq!(s["status"], "refused", "{s}");
    assert_eq!(s["spentIn"]["txid"], reclaim_txid.to_string(), "{s}");

    // A taproot deposit whose reclaim path stays shut long enough (the default 144 blocks) is
    // minted through its hint, checked by the tunnel contract through the hVM (the tweaked
    // output key rebuilt from the leaves), and the custodians sweep it into the vault through
    // its deposit leaf before the depositor could reclaim it.
    let record = dir.path().join("taproot-minted.json");
    let (ok, out, err) = cli(&[
        &[
            "--amount",
            "2",
            "--recipient",
            RECIPIENT,
            "--format",
            "taproot",
            "-o",
            record.to_str().context("path")?,
        ][..],
        &common,
    ]
    .concat())?;
    assert!(ok, "hemi deposit --format taproot failed: {err}");
    assert!(!err.contains("warning"), "{err}");
    let txid = bitcoin::Txid::from_str(out.trim())?;
    hemi.call("hemi_mineBitcoin", json!([1, sink.to_string()]))
        .await?;
    let s = wait_status(&hemi, &txid, "confirming").await?;
    assert_eq!(s["format"], "taproot", "{s}");
    hemi.call(
        "hemi_mineBitcoin",
        json!([CONFIRMATIONS - 1, sink.to_string()]),
    )
    .await?;
    let s = wait_status(&hemi, &txid, "minted").await?;
    assert_eq!(s["net"], 200_000_000 - FEE, "{s}");
    assert_eq!(
        s["recipient"].as_str().map(str::to_lowercase),
        Some(RECIPIENT.to_lowercase())
    );
    let minted_in = s["mintedIn"]["block"].as_u64().context("mintedIn")?;
    // The mint is in the first L2 block pinned at the confirming height.
    let deposit_height = s["bitcoinBlock"]["height"].as_u64().context("height")?;
    assert_eq!(
        pinned_height(&hemi, minted_in).await?,
        deposit_height + CONFIRMATIONS - 1
    );
    assert!(pinned_height(&hemi, minted_in - 1).await? < deposit_height + CONFIRMATIONS - 1);
    // The custodians' sweep reaches Core's mempool; mine it.
    let vault = hemi.call("hemi_getTunnel", json!([])).await?;
    let vault_addr = bitcoin::Address::from_str(vault["vaultAddress"].as_str().context("vault")?)?
        .assume_checked();
    let sweep = wait_for(60, "the custodians' sweep in Core's mempool", || async {
        for t in rpc.get_raw_mempool().await.ok()? {
            let tx = rpc.get_raw_transaction(&t).await.ok()?;
            if tx
                .input
                .iter()
                .any(|i| i.previous_output == bitcoin::OutPoint::new(txid, 0))
            {
                return Some(tx);
            }
        }
        None
    })
    .await?;
    assert_eq!(sweep.output[0].script_pubkey, vault_addr.script_pubkey());
    assert_eq!(
        sweep.input[0].witness.len(),
        3,
        "a script-path spend: sig, leaf, control block"
    );
    rpc.generate_to_address(1, &sink).await?;
    let s = wait_for(60, "the deposit to show its sweep", || async {
        let s = deposit_status(&hemi, &txid).await.ok()?;
        s.get("sweptIn").is_some().then_some(s)
    })
    .await?;
    assert_eq!(
        s["sweptIn"]["txid"],
        sweep.compute_txid().to_string(),
        "{s}"
    );
    eprintln!(
        "taproot deposit minted in L2 block {minted_in}, swept in {} ({} vB)",
        sweep.compute_txid(),
        sweep.vsize()
    );
    // Its depositor can no longer reclaim it.
    let (ok, _, err) = hemi_cli(&[
        "deposit",
        "reclaim",
        record.to_str().unwrap_or("?"),
        "--key",
        secret.as_str(),
        "--bitcoin-rpc",
        btc.as_str(),
    ])?;
    assert!(!ok && err.contains("is spent"), "{err}");
    Ok(())
}

/// Child processes killed (SIGKILL) when the test ends, however it ends.
struct Children(Vec<std::process::Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The value after `label ` on a line of `out` (`hemi custodian` prints `identity <hex>` …).
fn printed(out: &str, label: &str) -> anyhow::Result<String> {
    out.lines()
        .find_map(|l| l.strip_prefix(label).map(|v| v.trim().to_string()))
        .with_context(|| format!("no {label:?} in {out:?}"))
}

/// Custodians as processes: three `hemi custodian` processes make the vault by DKG over
/// JSON-RPC (each share stored encrypted; all three write the same vault.json); a devnet on
/// Bitcoin Core uses that vault and asks them to sign; custodian 1 dies in the middle of the
/// first signing round (after its commitments, before its share) and the payout of three
/// requests still reaches Bitcoin Core through the other quorum and is finalized on L2. Then,
/// without FROST, custodians 2 and 3 spend the payout's change through the vault's
/// `sortedmulti_a` leaf by passing a PSBT, and Core mines it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custodian_processes_make_the_vault_by_dkg_and_pay_though_one_dies_mid_round(
) -> anyhow::Result<()> {
    const PASS: &str = "correct horse battery staple";
    let core = BitcoinCore::start().await?;
    let rpc = core.rpc.clone();
    let dir = tempfile::tempdir()?;
    let depositor = Key::from_seed("tunnel-e2e-custodians-depositor");
    let (_, sink) = hemi_testkit::regtest_p2wpkh(&[0x56; 32]).context("sink key")?;
    core.mine(1, &depositor.address(KeyKind::P2wpkh, Network::Regtest))
        .await?;
    core.mine(100, &sink).await?;
    let exe = env!("CARGO_BIN_EXE_hemi");
    let cli = |args: &[&str]| -> anyhow::Result<String> {
        let out = std::process::Command::new(exe)
            .args(args)
            .env("HEMI_CUSTODIAN_PASSPHRASE", PASS)
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "hemi {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };

    // Identities, the coordinator's key, the peers file.
    let dirs: Vec<std::path::PathBuf> = (1..=3).map(|i| dir.path().join(format!("c{i}"))).collect();
    let ports: Vec<u16> = (0..3).map(|_| hemi_testkit::free_port()).collect();
    let mut peers = String::from("threshold = 2\n\n");
    for (i, d) in dirs.iter().enumerate() {
        let out = cli(&["custodian", "init", "--dir", d.to_str().context("dir")?])?;
        let identity = printed(&out, "identity ")?;
        peers += &format!(
            "[[custodian]]\nindex = {}\nurl = \"http://127.0.0.1:{}\"\nidentity = \"{identity}\"\n\n",
            i + 1,
            ports[i]
        );
    }
    let coordinator_key = dir.path().join("coordinator.key");
    let out = cli(&[
        "custodian",
        "coordinator-key",
        "--out",
        coordinator_key.to_str().context("path")?,
    ])?;
    peers += &format!(
        "[coordinator]\nidentity = \"{}\"\n",
        printed(&out, "coordinator identity ")?
    );
    let peers_file = dir.path().join("peers.toml");
    std::fs::write(&peers_file, &peers)?;
    let peers_s = peers_file.to_str().context("path")?.to_string();

    // The DKG: three processes at once.
    let keygens: Vec<std::process::Child> = (0..3)
        .map(|i| {
            std::process::Command::new(exe)
                .args([
                    "custodian",
                    "keygen",
                    "--dir",
                    dirs[i].to_str().unwrap_or_default(),
                    "--index",
                    &(i + 1).to_string(),
                    "--peers",
                    &peers_s,
                    "--listen",
                    &format!("127.0.0.1:{}", ports[i]),
                    "--timeout",
                    "60",
                ])
                .env("HEMI_CUSTODIAN_PASSPHRASE", PASS)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
        })
        .collect::<Result<_, _>>()?;
    let mut vault_addresses = Vec::new();
    for k in keygens {
        let out = k.wait_with_output()?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        anyhow::ensure!(
            out.status.success(),
            "keygen: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        vault_addresses.push(printed(&stdout, "vault address ")?);
    }
    assert!(
        vault_addresses.windows(2).all(|w| w[0] == w[1]),
        "{vault_addresses:?}"
    );
    let vault_json = std::fs::read_to_string(dirs[0].join("vault.json"))?;
    for d in &dirs[1..] {
        assert_eq!(std::fs::read_to_string(d.join("vault.json"))?, vault_json);
    }
    // The key store holds no readable secret; a wrong passphrase opens nothing.
    let store = std::fs::read_to_string(dirs[0].join("custodian.json"))?;
    assert!(
        !store.contains("signing_share") && !store.contains("signingShare"),
        "{store}"
    );
    let out = std::process::Command::new(exe)
        .args([
            "custodian",
            "run",
            "--dir",
            dirs[0].to_str().unwrap_or_default(),
            "--peers",
            &peers_s,
            "--listen",
            "127.0.0.1:1",
            "--l2-rpc",
            "http://127.0.0.1:1",
        ])
        .env("HEMI_CUSTODIAN_PASSPHRASE", "wrong")
        .output()?;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("passphrase"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The devnet on that vault, its payouts signed by the processes.
    let vault_path = dirs[0].join("vault.json");
    let hemi = Hemi::devnet_on(
        &core,
        dir.path(),
        &[
            "--block-time",
            "0.5",
            "--deposit-confirmations",
            "3",
            "--no-popm",
            "--vault",
            vault_path.to_str().context("path")?,
            "--custodians",
            &peers_s,
            "--coordinator-key",
            coordinator_key.to_str().context("path")?,
        ],
    )
    .await?;
    let url = format!("http://{}", hemi.rpc_addr);
    let tunnel = hemi.call("hemi_getTunnel", json!([])).await?;
    assert_eq!(
        tunnel["vaultAddress"],
        vault_addresses[0].as_str(),
        "{tunnel}"
    );
    let mut running = Children(Vec::new());
    for (i, d) in dirs.iter().enumerate() {
        let log = std::fs::File::create(dir.path().join(format!("custodian-{}.log", i + 1)))?;
        let mut args = vec![
            "custodian".to_string(),
            "run".into(),
            "--dir".into(),
            d.to_string_lossy().into_owned(),
            "--peers".into(),
            peers_s.clone(),
            "--listen".into(),
            format!("127.0.0.1:{}", ports[i]),
            "--l2-rpc".into(),
            url.clone(),
        ];
        if i == 0 {
            args.push("--exit-before-share".into());
        }
        running.0.push(
            std::process::Command::new(exe)
                .args(&args)
                .env("HEMI_CUSTODIAN_PASSPHRASE", PASS)
                .env("RUST_LOG", "info")
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()?,
        );
    }

    // 10 BTC into the vault, minted; three withdrawal requests.
    let manager = tunnel["tunnelAddress"]
        .as_str()
        .context("manager")?
        .to_string();
    let vault = bitcoin::Address::from_str(&vault_addresses[0])?
        .require_network(Network::Regtest)?
        .script_pubkey();
    mint_from_vault_deposit(&hemi, &rpc, &depositor, vault, 10, &sink).await?;
    let payees: Vec<Key> = (0..3)
        .map(|i| Key::from_seed(&format!("e2e custodians payee {i}")))
        .collect();
    let nonce = hex_u64(
        &hemi
            .call("eth_getTransactionCount", json!([RECIPIENT, "latest"]))
            .await?,
    );
    let asks: Vec<(&Key, u64, u64)> = payees.iter().map(|p| (p, 100_000_000, 10_000)).collect();
    request_withdrawals(&url, &manager, nonce, &asks)?;

    // One payout for the three, through the quorum without custodian 1.
    let payout = wait_for(60, "the custodians' payout in Core's mempool", || {
        payout_in_mempool(&rpc)
    })
    .await
    .with_context(|| {
        let logs: Vec<String> = (1..=3)
            .map(|i| {
                std::fs::read_to_string(dir.path().join(format!("custodian-{i}.log")))
                    .unwrap_or_default()
            })
            .collect();
        format!(
            "custodian logs: {logs:?}\nhemi log:\n{}",
            tail(&hemi.log_text(), 30)
        )
    })?;
    let ids: Vec<u32> = payout
        .output
        .iter()
        .filter_map(|o| hemi_tunnel::payout::parse_id_list(&o.script_pubkey))
        .flatten()
        .collect();
    assert_eq!(ids, vec![1, 2, 3]);
    let status = running.0[0].try_wait()?;
    assert!(
        status.is_some_and(|s| !s.success()),
        "custodian 1 died mid-round: {status:?}"
    );
    assert!(running.0[1].try_wait()?.is_none() && running.0[2].try_wait()?.is_none());
    assert!(
        hemi.log_text().contains("quorum"),
        "the coordinator tried another quorum:\n{}",
        tail(&hemi.log_text(), 30)
    );
    rpc.generate_to_address(CONFIRMATIONS, &sink).await?;
    for id in 1..=3 {
        let w = wait_for(60, "the request paid on L2", || async {
            let w = hemi.call("hemi_getWithdrawal", json!([id])).await.ok()?;
            (w["status"] == "paid").then_some(w)
        })
        .await?;
        assert_eq!(w["payoutTxid"], payout.compute_txid().to_string(), "{w}");
    }
    eprintln!(
        "payout {} by custodians 2 and 3 after custodian 1 died mid-round: {} vB",
        payout.compute_txid(),
        payout.vsize()
    );

    // Without FROST: custodians 2 and 3 spend the payout's change through the vault's
    // sortedmulti_a leaf, passing a PSBT; one signature is not enough; Core accepts two.
    let vault_spk = bitcoin::Address::from_str(&vault_addresses[0])?
        .assume_checked()
        .script_pubkey();
    let (change_vout, change) = payout
        .output
        .iter()
        .enumerate()
        .find(|(_, o)| o.script_pubkey == vault_spk)
        .context("the payout's change")?;
    let input = format!(
        "{}:{change_vout}:{}",
        payout.compute_txid(),
        change.value.to_sat()
    );
    let pay = format!("{sink}=1");
    let vault_s = vault_path.to_str().context("path")?;
    let psbt = cli(&[
        "custodian",
        "fallback-psbt",
        "--vault",
        vault_s,
        "--input",
        &input,
        "--pay",
        &pay,
    ])?;
    let psbt_file = dir.path().join("fallback.psbt");
    std::fs::write(&psbt_file, psbt)?;
    let psbt_s = psbt_file.to_str().context("path")?;
    let finalize = || {
        std::process::Command::new(exe)
            .args([
                "custodian",
                "fallback-finalize",
                "--vault",
                vault_s,
                psbt_s,
                "--bitcoin-rpc",
                &core.rpc_url(),
            ])
            .output()
    };
    cli(&[
        "custodian",
        "fallback-sign",
        "--dir",
        dirs[2].to_str().context("dir")?,
        psbt_s,
    ])?;
    let out = finalize()?;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("1 valid signatures; the vault needs 2"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    cli(&[
        "custodian",
        "fallback-sign",
        "--dir",
        dirs[1].to_str().context("dir")?,
        psbt_s,
    ])?;
    let out = finalize()?;
    anyhow::ensure!(
        out.status.success(),
        "fallback-finalize: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let spend = bitcoin::Txid::from_str(String::from_utf8_lossy(&out.stdout).trim())?;
    let hash = rpc.generate_to_address(1, &sink).await?;
    let block = rpc.get_block(&hash[0]).await?;
    let mined = block
        .txdata
        .iter()
        .find(|t| t.compute_txid() == spend)
        .context("Core mined the multisig-leaf spend")?;
    assert_eq!(
        mined.input[0].witness.len(),
        5,
        "3 key slots, the leaf, the control block"
    );
    eprintln!(
        "fallback spend {spend} through the sortedmulti_a leaf: {} vB",
        mined.vsize()
    );
    Ok(())
}
