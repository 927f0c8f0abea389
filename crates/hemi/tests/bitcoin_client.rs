//! The Bitcoin client against real Bitcoin Core: sync, indexes equal to Core's view, reorgs.

mod common;

use bitcoin::Network;
use common::*;
use hemi_btc_wallet::{Key, KeyKind, Multisig};
use hemi_testkit::BitcoinCore;
use serde_json::json;

/// Builds a chain of 300+ blocks on Core with transactions to P2WPKH, P2TR and P2WSH-multisig
/// addresses, all signed by our wallet code and accepted by Core's mempool.
async fn build_chain(
    core: &BitcoinCore,
    keys: &[Key],
    multisig: &Multisig,
) -> anyhow::Result<Vec<bitcoin::Txid>> {
    let rpc = &core.rpc;
    let a = &keys[0];
    core.mine(110, &a.address(KeyKind::P2wpkh, Network::Regtest))
        .await?;
    let mut txids = Vec::new();
    let mut round = 0;
    while rpc.get_block_count().await? < 310 {
        let utxos = spendable(rpc, a, KeyKind::P2wpkh).await?;
        // A few payments per block, from distinct coinbases.
        for utxo in utxos.into_iter().take(3) {
            round += 1;
            let to = vec![
                (keys[1].script_pubkey(KeyKind::P2wpkh), 100_000 + round),
                (keys[2].script_pubkey(KeyKind::P2tr), 200_000 + round),
                (multisig.script_pubkey(), 300_000 + round),
            ];
            let tx = pay(a, KeyKind::P2wpkh, utxo, to)?;
            txids.push(rpc.send_raw_transaction(&tx).await?);
        }
        core.mine(7, &keys[3].address(KeyKind::P2wpkh, Network::Regtest))
            .await?;
    }
    Ok(txids)
}

async fn assert_indexes_match(
    hemi: &Hemi,
    core: &BitcoinCore,
    addrs: &[bitcoin::Address],
) -> anyhow::Result<()> {
    for a in addrs {
        assert_address_matches(hemi, &core.rpc, a).await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_syncs_from_bitcoin_core_and_follows_reorgs_of_depth_1_3_6() -> anyhow::Result<()> {
    let core = BitcoinCore::start().await?;
    let keys: Vec<Key> = (0..5)
        .map(|i| Key::from_seed(&format!("client-test-{i}")))
        .collect();
    let multisig = Multisig::new(
        2,
        vec![
            keys[1].public_key(),
            keys[2].public_key(),
            keys[4].public_key(),
        ],
    )?;
    let txids = build_chain(&core, &keys, &multisig).await?;
    // Coins no transaction touches, kept for payments that exist only on a reorg's new branch
    // (coins spent in invalidated blocks go back to Core's mempool and cannot be reused).
    let mut reserved = spendable(&core.rpc, &keys[0], KeyKind::P2wpkh).await?;
    let addrs = vec![
        keys[0].address(KeyKind::P2wpkh, Network::Regtest),
        keys[1].address(KeyKind::P2wpkh, Network::Regtest),
        keys[2].address(KeyKind::P2tr, Network::Regtest),
        keys[3].address(KeyKind::P2wpkh, Network::Regtest),
        multisig.address(Network::Regtest),
    ];

    let dir = tempfile::tempdir()?;
    let peer = core.p2p_addr().to_string();
    let hemi = Hemi::start(
        &[
            "node",
            "--network",
            "regtest",
            "--bitcoin-peer",
            &peer,
            "--dir",
            dir.path().to_str().unwrap_or("."),
        ],
        dir.path(),
    )
    .await?;
    wait_synced(&hemi, &core.rpc, 120).await?;
    let height = core.rpc.get_block_count().await?;
    assert!(height >= 300, "chain has {height} blocks");
    let tip = hemi.call("hemi_btcTip", json!([])).await?;
    assert_eq!(tip["height"].as_u64(), Some(height));
    assert_indexes_match(&hemi, &core, &addrs).await?;

    // Transactions by id: bytes, block and confirmations as Core reports them.
    for txid in txids.iter().step_by(7) {
        let ours = hemi
            .call("hemi_btcTransaction", json!([txid.to_string()]))
            .await?;
        let raw: serde_json::Value = core
            .rpc
            .call("getrawtransaction", json!([txid.to_string(), 1]))
            .await?;
        assert_eq!(ours["hex"], raw["hex"]);
        assert_eq!(ours["blockHash"], raw["blockhash"]);
        assert_eq!(ours["confirmations"], raw["confirmations"]);
    }
    // Headers by height and hash.
    let h100 = core.rpc.get_block_hash(100).await?;
    let hdr = hemi.call("hemi_btcHeader", json!([100])).await?;
    assert_eq!(hdr["hash"], h100.to_string());
    let hdr2 = hemi
        .call("hemi_btcHeader", json!([h100.to_string()]))
        .await?;
    assert_eq!(hdr2["height"], 100);

    // Reorgs: invalidate at depth d, mine a longer competing chain with a new payment in it.
    for depth in [1u64, 3, 6] {
        let tip_height = core.rpc.get_block_count().await?;
        let fork_hash = core.rpc.get_block_hash(tip_height - depth + 1).await?;
        core.rpc.invalidate_block(&fork_hash).await?;
        // A payment that exists only on the new branch.
        if let Some(utxo) = reserved.pop() {
            let tx = pay(
                &keys[0],
                KeyKind::P2wpkh,
                utxo,
                vec![(keys[1].script_pubkey(KeyKind::P2wpkh), 777_000 + depth)],
            )?;
            core.rpc.send_raw_transaction(&tx).await?;
        }
        core.mine(
            depth + 1,
            &keys[4].address(KeyKind::P2wpkh, Network::Regtest),
        )
        .await?;
        wait_synced(&hemi, &core.rpc, 60).await?;
        let mut all = addrs.clone();
        all.push(keys[4].address(KeyKind::P2wpkh, Network::Regtest));
        assert_indexes_match(&hemi, &core, &all).await?;
        // The abandoned branch's blocks are no longer answered by height.
        let hdr = hemi
            .call("hemi_btcHeader", json!([fork_hash.to_string()]))
            .await?;
        assert!(
            hdr.is_null(),
            "invalidated block {fork_hash} still on our best chain"
        );
    }
    let status = hemi.call("hemi_btcSyncStatus", json!([])).await?;
    assert_eq!(status["synced"], true, "{status}");
    eprintln!(
        "SUMMARY Bitcoin reorgs: depths 1, 3 and 6 followed; UTXOs, balances and transactions \
         of every address equal Bitcoin Core's after each"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devnet_on_an_external_bitcoin_core_funds_its_key_there_and_follows_it(
) -> anyhow::Result<()> {
    let core = BitcoinCore::start().await?;
    let dir = tempfile::tempdir()?;
    let peer = core.p2p_addr().to_string();
    let url = core.rpc_url();
    let hemi = Hemi::start(
        &["devnet", "--bitcoin-peer", &peer, "--bitcoin-rpc", &url],
        dir.path(),
    )
    .await?;
    // The devnet mined 101 blocks on Core to its own key, so the key has a mature coinbase.
    assert!(core.rpc.get_block_count().await? >= 101);
    wait_synced(&hemi, &core.rpc, 60).await?;
    let status = hemi.call("hemi_nodeStatus", json!([])).await?;
    let addr: bitcoin::Address<bitcoin::address::NetworkUnchecked> = status["bitcoinAddress"]
        .as_str()
        .unwrap_or_default()
        .parse()?;
    let addr = addr.require_network(Network::Regtest)?;
    let sats = assert_address_matches(&hemi, &core.rpc, &addr).await?;
    assert!(
        sats >= 101 * 50 * 100_000_000 / 2,
        "devnet key holds {sats} sat"
    );
    Ok(())
}
