//! The devnet's embedded regtest node against real Bitcoin Core: Core syncs our chain (so our
//! blocks are consensus-valid), and both nodes judge the same transactions the same way.

mod common;

use std::time::Duration;

use bitcoin::{Amount, Network, OutPoint, Sequence, TxOut};
use common::*;
use hemi_btc_rpc_client::BitcoinRpc;
use hemi_btc_wallet::{sign_transaction, Key, KeyKind, Multisig, Signer};
use hemi_testkit::{free_port, BitcoinCore};
use serde_json::{json, Value};

/// The devnet's built-in key (see `hemi devnet`'s banner).
fn devnet_key() -> Key {
    Key::from_seed("hemi-devnet-bitcoin-key-0")
}

struct Devnet {
    hemi: Hemi,
    btc: BitcoinRpc,
    p2p: String,
    _dir: tempfile::TempDir,
}

async fn start_devnet() -> anyhow::Result<Devnet> {
    let dir = tempfile::tempdir()?;
    let (rpc_port, p2p_port) = (free_port(), free_port());
    let rpc_addr = format!("127.0.0.1:{rpc_port}");
    let p2p = format!("127.0.0.1:{p2p_port}");
    let hemi = Hemi::start(
        &[
            "devnet",
            "--bitcoin-block-time",
            "0",
            "--bitcoin-rpc-addr",
            &rpc_addr,
            "--bitcoin-p2p-addr",
            &p2p,
        ],
        dir.path(),
    )
    .await?;
    let btc = BitcoinRpc::new(&format!("http://{rpc_addr}"))?;
    Ok(Devnet {
        hemi,
        btc,
        p2p,
        _dir: dir,
    })
}

/// The coinbase output of block `height` on the embedded node, as a spendable coin.
async fn coinbase_coin(btc: &BitcoinRpc, height: u64) -> anyhow::Result<(OutPoint, TxOut)> {
    let block = btc.get_block(&btc.get_block_hash(height).await?).await?;
    let cb = &block.txdata[0];
    Ok((OutPoint::new(cb.compute_txid(), 0), cb.output[0].clone()))
}

/// A transaction's verdict from `testmempoolaccept`.
async fn verdict(rpc: &BitcoinRpc, tx: &bitcoin::Transaction) -> anyhow::Result<Value> {
    let mut v = rpc.test_mempool_accept(std::slice::from_ref(tx)).await?;
    Ok(v.remove(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bitcoin_core_syncs_the_embedded_chain_and_agrees_on_transactions() -> anyhow::Result<()> {
    let dev = start_devnet().await?;
    let key = devnet_key();
    let other = Key::from_seed("embedded-test-other");
    let custodians: Vec<Key> = (0..3)
        .map(|i| Key::from_seed(&format!("embedded-test-custodian-{i}")))
        .collect();
    let multisig = Multisig::new(2, custodians.iter().map(Key::public_key).collect())?;
    let miner = key.address(KeyKind::P2wpkh, Network::Regtest);

    // The devnet mined 101 blocks to its key at start: block 1's coinbase is mature.
    assert_eq!(dev.btc.get_block_count().await?, 101);
    let coin = coinbase_coin(&dev.btc, 1).await?;

    // 1. P2WPKH → P2TR + P2WSH 2-of-3 through the embedded mempool, mined.
    let tx1 = pay(
        &key,
        KeyKind::P2wpkh,
        coin,
        vec![
            (other.script_pubkey(KeyKind::P2tr), 10 * 100_000_000),
            (multisig.script_pubkey(), 5 * 100_000_000),
        ],
    )?;
    dev.btc.send_raw_transaction(&tx1).await?;
    assert_eq!(dev.btc.get_raw_mempool().await?, vec![tx1.compute_txid()]);
    dev.btc.generate_to_address(1, &miner).await?;
    assert!(dev.btc.get_raw_mempool().await?.is_empty());

    // 2. Spend the taproot output (key path) and the multisig output (2 of 3) in one transaction.
    let p2tr_out = (OutPoint::new(tx1.compute_txid(), 0), tx1.output[0].clone());
    let ms_out = (OutPoint::new(tx1.compute_txid(), 1), tx1.output[1].clone());
    let mut tx2 = bitcoin::Transaction {
        version: bitcoin::transaction::Version::TWO,
        lock_time: bitcoin::absolute::LockTime::ZERO,
        input: [p2tr_out.0, ms_out.0]
            .iter()
            .map(|op| bitcoin::TxIn {
                previous_output: *op,
                sequence: Sequence(0xffff_fffd),
                ..Default::default()
            })
            .collect(),
        output: vec![TxOut {
            value: Amount::from_sat(15 * 100_000_000 - 10_000),
            script_pubkey: key.script_pubkey(KeyKind::P2wpkh),
        }],
    };
    let prevouts = vec![p2tr_out.1.clone(), ms_out.1.clone()];
    let signers_keys = [&custodians[0], &custodians[2]];
    let signers = [
        Signer::Key(&other),
        Signer::Multisig {
            script: &multisig,
            keys: &signers_keys,
        },
    ];
    sign_transaction(&mut tx2, &prevouts, &signers)?;
    dev.btc.send_raw_transaction(&tx2).await?;

    // 3. Replace-by-fee: a lower-fee conflict is refused, a higher-fee one replaces.
    let mut low = tx2.clone();
    low.output[0].value = Amount::from_sat(15 * 100_000_000 - 10_001);
    sign_transaction(&mut low, &prevouts, &signers)?;
    let err = dev
        .btc
        .send_raw_transaction(&low)
        .await
        .expect_err("low-fee replacement must fail");
    assert_eq!(err.rpc_code(), Some(-26), "{err}");
    assert!(err.to_string().contains("insufficient fee"), "{err}");
    let mut bump = tx2.clone();
    bump.output[0].value = Amount::from_sat(15 * 100_000_000 - 20_000);
    sign_transaction(&mut bump, &prevouts, &signers)?;
    dev.btc.send_raw_transaction(&bump).await?;
    assert_eq!(dev.btc.get_raw_mempool().await?, vec![bump.compute_txid()]);
    dev.btc.generate_to_address(3, &miner).await?;

    // 4. Bitcoin Core connects to the embedded node, syncs all of it, ends on the same tip.
    let core = BitcoinCore::start().await?;
    core.rpc.add_node(&dev.p2p, "add").await?;
    let best = dev.btc.get_best_block_hash().await?;
    wait_for(60, "Bitcoin Core to sync the embedded chain", || async {
        (core.rpc.get_best_block_hash().await.ok()? == best).then_some(())
    })
    .await?;
    assert_eq!(core.rpc.get_block_count().await?, 105);
    // Core validated our blocks fully: the replacement is confirmed in its chain too.
    let raw: Value = core
        .rpc
        .call(
            "getrawtransaction",
            json!([bump.compute_txid().to_string(), 1]),
        )
        .await?;
    assert_eq!(raw["confirmations"], 3);
    // Inclusion proofs: the embedded node's gettxoutproof is byte for byte Core's, and each
    // node's verifytxoutproof accepts it.
    let txid = bump.compute_txid().to_string();
    let ours: String = dev.btc.call("gettxoutproof", json!([[txid]])).await?;
    let theirs: String = core.rpc.call("gettxoutproof", json!([[txid]])).await?;
    assert_eq!(ours, theirs, "gettxoutproof");
    for rpc in [&dev.btc, &core.rpc] {
        let proved: Vec<String> = rpc.call("verifytxoutproof", json!([ours])).await?;
        assert_eq!(proved, vec![txid.clone()]);
    }

    // 5. The same transactions get the same verdicts from both nodes.
    let coin2 = coinbase_coin(&dev.btc, 2).await?;
    let good = pay(
        &key,
        KeyKind::P2wpkh,
        coin2.clone(),
        vec![(other.script_pubkey(KeyKind::P2wpkh), 100_000)],
    )?;
    let core_v = verdict(&core.rpc, &good).await?;
    let ours_v = verdict(&dev.btc, &good).await?;
    assert_eq!(
        core_v["allowed"], true,
        "Core refused a transaction our code signed: {core_v}"
    );
    assert_eq!(ours_v["allowed"], true, "{ours_v}");
    assert_eq!(core_v["vsize"], ours_v["vsize"]);
    assert_eq!(core_v["fees"]["base"], ours_v["fees"]["base"]);

    let mut tampered = good.clone();
    tampered.output[0].value = Amount::from_sat(100_001);
    let mut zero_fee = good.clone();
    let total: u64 = coin2.1.value.to_sat();
    zero_fee.output = vec![TxOut {
        value: Amount::from_sat(total),
        script_pubkey: other.script_pubkey(KeyKind::P2wpkh),
    }];
    sign_transaction(
        &mut zero_fee,
        std::slice::from_ref(&coin2.1),
        &[Signer::Key(&key)],
    )?;
    let mut premature = good.clone();
    let tip_cb = dev.btc.get_block(&best).await?.txdata[0].clone();
    premature.input[0].previous_output = OutPoint::new(tip_cb.compute_txid(), 0);
    sign_transaction(
        &mut premature,
        std::slice::from_ref(&tip_cb.output[0]),
        &[Signer::Key(&key)],
    )?;
    let mut missing = good.clone();
    missing.input[0].previous_output.vout = 7;
    for (name, tx) in [
        ("tampered signature", &tampered),
        ("zero fee", &zero_fee),
        ("immature coinbase", &premature),
        ("missing input", &missing),
    ] {
        let c = verdict(&core.rpc, tx).await?;
        let o = verdict(&dev.btc, tx).await?;
        assert_eq!(c["allowed"], false, "{name}: Core {c}");
        assert_eq!(o["allowed"], false, "{name}: ours {o}");
        assert_eq!(
            o["reject-reason"], c["reject-reason"],
            "{name}: reject reasons differ"
        );
        assert_eq!(
            o["reject-details"], c["reject-details"],
            "{name}: reject details differ"
        );
    }

    // 6. Result shapes: the embedded node's answers carry every field Core's do.
    for (method, params) in [
        ("getblockheader", json!([best.to_string()])),
        ("getblockchaininfo", json!([])),
        ("getblock", json!([best.to_string(), 1])),
        (
            "getrawtransaction",
            json!([bump.compute_txid().to_string(), true]),
        ),
    ] {
        let c: Value = core.rpc.call(method, params.clone()).await?;
        let o: Value = dev.btc.call(method, params).await?;
        let skip = [
            "automatic_pruning",
            "prune_target_size",
            "softforks",
            "signet_challenge",
            "in_active_chain",
        ];
        for k in c
            .as_object()
            .map(|m| m.keys().cloned().collect::<Vec<_>>())
            .unwrap_or_default()
        {
            if skip.contains(&k.as_str()) {
                continue;
            }
            assert!(o.get(&k).is_some(), "{method}: our result lacks {k:?}: {o}");
        }
        if method == "getblockheader" || method == "getblock" {
            for k in [
                "hash",
                "height",
                "merkleroot",
                "bits",
                "chainwork",
                "previousblockhash",
                "nTx",
                "time",
                "mediantime",
                "size",
                "strippedsize",
                "weight",
                "tx",
                "coinbase_tx",
                "difficulty",
                "target",
                "versionHex",
            ] {
                assert_eq!(o[k], c[k], "{method}.{k}");
            }
        }
    }
    // Errors carry Core's codes.
    for (method, params) in [
        ("getblockhash", json!([100000])),
        ("getblockheader", json!(["00".repeat(32)])),
        ("nosuchmethod", json!([])),
    ] {
        let c = core
            .rpc
            .call::<Value>(method, params.clone())
            .await
            .expect_err("error")
            .rpc_code();
        let o = dev
            .btc
            .call::<Value>(method, params)
            .await
            .expect_err("error")
            .rpc_code();
        assert_eq!(o, c, "{method}");
    }

    // 7. A reorg made on the embedded node reaches Bitcoin Core over P2P.
    dev.btc.invalidate_block(&best).await?;
    assert_eq!(dev.btc.get_block_count().await?, 104);
    let other_miner = other.address(KeyKind::P2wpkh, Network::Regtest);
    dev.btc.generate_to_address(2, &other_miner).await?;
    let best = dev.btc.get_best_block_hash().await?;
    wait_for(
        60,
        "Bitcoin Core to follow the embedded node's reorg",
        || async { (core.rpc.get_best_block_hash().await.ok()? == best).then_some(()) },
    )
    .await?;
    assert_eq!(core.rpc.get_block_count().await?, 106);

    // 8. Mempool entry and fee estimate shapes match Core's.
    let coin3 = coinbase_coin(&dev.btc, 3).await?;
    let pending = pay(
        &key,
        KeyKind::P2wpkh,
        coin3,
        vec![(other.script_pubkey(KeyKind::P2wpkh), 200_000)],
    )?;
    dev.btc.send_raw_transaction(&pending).await?;
    core.rpc.send_raw_transaction(&pending).await?;
    let c = core.rpc.get_mempool_entry(&pending.compute_txid()).await?;
    let o = dev.btc.get_mempool_entry(&pending.compute_txid()).await?;
    for k in c
        .as_object()
        .map(|m| m.keys().cloned().collect::<Vec<_>>())
        .unwrap_or_default()
    {
        if [
            "chunkweight",
            "clusterid",
            "chunkfee",
            "chunksize",
            "ancestorsize",
            "descendantsize",
        ]
        .contains(&k.as_str())
        {
            continue; // cluster-mempool internals and sizes we do not model
        }
        assert!(o.get(&k).is_some(), "getmempoolentry lacks {k:?}: {o}");
    }
    for k in [
        "vsize",
        "weight",
        "wtxid",
        "fees",
        "depends",
        "spentby",
        "ancestorcount",
        "descendantcount",
        "ancestorsize",
        "descendantsize",
    ] {
        assert_eq!(o[k], c[k], "getmempoolentry.{k}");
    }
    // Which mempool transaction spends an outpoint, as Core answers it (what `hemi force-tx`
    // and `hemi deposit` ask before choosing coins).
    let spent = pending.input[0].previous_output;
    let q = json!([[
        {"txid": spent.txid.to_string(), "vout": spent.vout},
        {"txid": pending.compute_txid().to_string(), "vout": 0}
    ]]);
    let c: Value = core.rpc.call("gettxspendingprevout", q.clone()).await?;
    let o: Value = dev.btc.call("gettxspendingprevout", q).await?;
    assert_eq!(o, c, "gettxspendingprevout");
    assert_eq!(c[0]["spendingtxid"], pending.compute_txid().to_string());
    for bad in [json!([[]]), json!([[{"txid": spent.txid.to_string()}]])] {
        let c = core
            .rpc
            .call::<Value>("gettxspendingprevout", bad.clone())
            .await;
        let o = dev.btc.call::<Value>("gettxspendingprevout", bad).await;
        assert!(c.is_err() && o.is_err(), "{c:?} {o:?}");
    }
    let fee: Value = dev.btc.call("estimatesmartfee", json!([6])).await?;
    assert!(fee["feerate"].as_f64().is_some_and(|r| r > 0.0), "{fee}");
    assert!(fee["blocks"].as_u64().is_some(), "{fee}");

    // 9. Our client (inside the devnet) indexed the same chain.
    let tip = dev.hemi.call("hemi_btcTip", json!([])).await?;
    wait_for(10, "devnet client to index the tip", || async {
        let t = dev.hemi.call("hemi_btcTip", json!([])).await.ok()?;
        (t["hash"] == best.to_string()).then_some(())
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}; tip {tip}"))?;
    assert_address_matches(&dev.hemi, &core.rpc, &multisig.address(Network::Regtest)).await?;
    assert_address_matches(
        &dev.hemi,
        &core.rpc,
        &other.address(KeyKind::P2tr, Network::Regtest),
    )
    .await?;
    tokio::time::sleep(Duration::from_millis(10)).await;
    Ok(())
}
