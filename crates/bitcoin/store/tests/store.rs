//! Integration tests of the chain store: indexes after connects, reorgs and invalidation,
//! historical (`AsOf::Block`) answers, keystone publications, block rejection, persistence and
//! crash safety (`kill -9` of a child process that is connecting blocks).
//!
//! The outside truth is either an in-memory model of the UTXO set built from the same blocks
//! (`common::Model`) or a second store that only ever saw the winning branch.

mod common;

use std::collections::BTreeSet;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bitcoin::consensus::serialize;
use bitcoin::hashes::Hash;
use bitcoin::{Amount, Block, Network, OutPoint, Transaction, TxOut, Txid};
use common::*;
use hemi_btc_headers::ChainParams;
use hemi_btc_store::{AsOf, BitcoinView, ChainStore, StoreError, ViewError, SCHEMA_VERSION};
use hemi_keystone::AbbreviatedKeystone;

fn keystone(n: u32) -> AbbreviatedKeystone {
    AbbreviatedKeystone {
        version: 1,
        l1_block_number: n,
        l2_block_number: n * 25,
        parent_ep_hash: [n as u8; 11],
        prev_keystone_ep_hash: [n as u8 ^ 0x55; 12],
        state_root: [n as u8 ^ 0xaa; 32],
        ep_hash: [n as u8 ^ 0x0f; 12],
    }
}

/// Appends a block whose spends each publish one of `ks` (change back to the coin's script plus
/// the PoP `OP_RETURN`), one transaction per keystone, in order.
fn pop_block(gen: &mut ChainGen, ks: &[AbbreviatedKeystone]) -> Block {
    let height = gen.height() + 1;
    let coins = gen.model.spendable(height);
    assert!(
        coins.len() >= ks.len(),
        "not enough spendable coins for PoP transactions"
    );
    let txs: Vec<Transaction> = ks
        .iter()
        .zip(&coins)
        .map(|(k, (op, c))| {
            spend(
                &[*op],
                vec![
                    out(&c.txout.script_pubkey, c.txout.value.to_sat() - FEE),
                    TxOut {
                        value: Amount::ZERO,
                        script_pubkey: k.pop_script(),
                    },
                ],
            )
        })
        .collect();
    gen.next_block_with(txs, FEE * ks.len() as u64)
}

fn tip_of(gen: &ChainGen) -> hemi_btc_view::BlockRef {
    hemi_btc_view::BlockRef {
        height: gen.height(),
        hash: gen.tip().block_hash(),
    }
}

// ----- connecting -------------------------------------------------------------------------------

#[test]
fn connecting_blocks_indexes_utxos_balances_transactions_and_spends() {
    let store = mem_store();
    let mut gen = ChainGen::new("connect", scripts("connect", 10));
    for i in 0..130u32 {
        let b = gen.next_block();
        store.put_block(&b, NOW).expect("put_block");
        let adv = store.advance(usize::MAX).expect("advance");
        assert_eq!(
            adv.connected,
            vec![tip_of(&gen)],
            "block {i} connects alone"
        );
        if i % 25 == 0 || i >= 100 {
            assert_matches_model(&store, &gen);
        }
    }
    // At least some spends (and spends of outputs made in the same block) were exercised.
    assert!(gen.model.spent_by.len() > 50, "the chain spends outputs");

    // One spend looked at by hand: the input is gone everywhere, the outputs are there.
    let b = gen.block_at(gen.height()).clone();
    let tx = b.txdata.get(1).expect("last block has a spend").clone();
    let txid = tx.compute_txid();
    let prev = tx.input[0].previous_output;
    assert_eq!(store.utxo(&prev).expect("utxo"), None);
    let sb = store
        .spent_by(&prev)
        .expect("spent_by")
        .expect("spent_by recorded");
    assert_eq!((sb.txid, sb.vin, sb.height), (txid, 0, gen.height()));
    let (raw, at, index) = store.raw_transaction(&txid).expect("raw").expect("indexed");
    assert_eq!(raw, serialize(&tx));
    assert_eq!(
        (at.hash, at.height, index),
        (b.block_hash(), gen.height(), 1)
    );
    let itx = store
        .transaction(&txid, AsOf::Tip)
        .expect("transaction")
        .expect("indexed");
    assert_eq!(itx.tx, tx);
    assert_eq!(
        store
            .confirmations(&txid, AsOf::Tip)
            .expect("confirmations"),
        Some(1)
    );
    for (vout, o) in tx.output.iter().enumerate() {
        let op = OutPoint::new(txid, vout as u32);
        let listed = store
            .utxos_by_script(&o.script_pubkey, AsOf::Tip)
            .expect("utxos");
        if store.spent_by(&op).expect("spent_by").is_none() {
            assert!(listed
                .iter()
                .any(|u| u.outpoint == op && u.value == o.value.to_sat()));
        } else {
            assert!(listed.iter().all(|u| u.outpoint != op));
        }
    }
    // Headers of the indexed chain.
    for h in [0, 1, 64, gen.height()] {
        let (r, header) = store.header_at(h).expect("header_at").expect("on chain");
        assert_eq!(
            (r.height, r.hash, header),
            (h, gen.hash_at(h), gen.headers[h as usize])
        );
        assert_eq!(
            store
                .header_by_hash(&r.hash)
                .expect("header_by_hash")
                .map(|x| x.0),
            Some(r)
        );
    }
    assert_eq!(store.header_at(gen.height() + 1).expect("header_at"), None);
    assert_eq!(
        store
            .transaction(&Txid::all_zeros(), AsOf::Tip)
            .expect("transaction"),
        None
    );
    assert_eq!(
        store.raw_transaction(&Txid::all_zeros()).expect("raw"),
        None
    );
}

// ----- reorgs -----------------------------------------------------------------------------------

/// Two branches of `depth` and `depth + 1` blocks on a common base, each with a PoP publication
/// of the same keystone; the longer one wins, invalidating its first block switches back, and
/// reconsidering it switches again. After every switch the store must equal a store that only
/// ever saw the winning branch.
fn reorg_leaves_indexes_equal_to_a_store_that_only_saw_the_winner(depth: usize) {
    let ks = keystone(7);
    let mut base = ChainGen::new("base", scripts("reorg", 12));
    base.extend(110);
    let fork = base.height();

    let mut a = base.branch("A");
    pop_block(&mut a, &[ks]);
    a.extend(depth - 1);
    let mut b = base.branch("B");
    b.extend(depth);
    pop_block(&mut b, &[ks]);
    assert_eq!(
        (a.height(), b.height()),
        (fork + depth as u32, fork + depth as u32 + 1)
    );

    let ref_a = mem_store();
    connect_all(&ref_a, &a.blocks);
    let ref_b = mem_store();
    connect_all(&ref_b, &b.blocks);
    assert_matches_model(&ref_a, &a);
    assert_matches_model(&ref_b, &b);

    let mut txids: BTreeSet<Txid> = a.all_txids().into_iter().collect();
    txids.extend(b.all_txids());
    let txids: Vec<Txid> = txids.into_iter().collect();
    let mut ops: BTreeSet<OutPoint> = a.all_outpoints().into_iter().collect();
    ops.extend(b.all_outpoints());
    let ops: Vec<OutPoint> = ops.into_iter().collect();
    let q = Questions {
        scripts: &base.scripts,
        txids: &txids,
        outpoints: &ops,
        keystones: &[ks.id().0],
        max_height: b.height() + 1,
    };
    let want_a = index_state(&ref_a, &q);
    let want_b = index_state(&ref_b, &q);
    assert_ne!(
        want_a.by_script, want_b.by_script,
        "the branches must differ to test anything"
    );

    let store = mem_store();
    connect_all(&store, &a.blocks);
    assert_same_state(&index_state(&store, &q), &want_a, "on branch A");

    for blk in b.blocks_after(fork) {
        store.put_block(blk, NOW).expect("put_block");
    }
    let adv = store.advance(usize::MAX).expect("advance");
    assert_eq!(adv.disconnected.len(), depth, "reorg to B disconnects A");
    assert_eq!(adv.connected.len(), depth + 1, "reorg to B connects B");
    assert_same_state(&index_state(&store, &q), &want_b, "after reorg to B");
    assert_matches_model(&store, &b);

    let first_b = b.hash_at(fork + 1);
    let adv = store.invalidate_block(&first_b).expect("invalidate_block");
    assert_eq!(
        (adv.disconnected.len(), adv.connected.len()),
        (depth + 1, depth)
    );
    assert_same_state(&index_state(&store, &q), &want_a, "after invalidating B");
    assert_matches_model(&store, &a);

    let adv = store.reconsider_block(&first_b).expect("reconsider_block");
    assert_eq!(
        (adv.disconnected.len(), adv.connected.len()),
        (depth, depth + 1)
    );
    assert_same_state(&index_state(&store, &q), &want_b, "after reconsidering B");
    assert_matches_model(&store, &b);
}

#[test]
fn reorg_of_depth_one_leaves_indexes_equal_to_a_store_that_only_saw_the_winner() {
    reorg_leaves_indexes_equal_to_a_store_that_only_saw_the_winner(1);
}

#[test]
fn reorg_of_depth_three_leaves_indexes_equal_to_a_store_that_only_saw_the_winner() {
    reorg_leaves_indexes_equal_to_a_store_that_only_saw_the_winner(3);
}

#[test]
fn reorg_of_depth_six_leaves_indexes_equal_to_a_store_that_only_saw_the_winner() {
    reorg_leaves_indexes_equal_to_a_store_that_only_saw_the_winner(6);
}

// ----- historical queries -----------------------------------------------------------------------

#[test]
fn as_of_block_answers_equal_the_answers_recorded_when_that_block_was_tip() {
    let store = mem_store();
    let mut gen = ChainGen::new("asof", scripts("asof", 8));
    // Intra-block spend chains are covered by their own test below.
    gen.chained_spends = false;
    // recorded[h] = (utxos, balance) per script while h was the tip.
    let record = |store: &ChainStore, gen: &ChainGen| -> Vec<(Vec<hemi_btc_view::Utxo>, u64)> {
        gen.scripts
            .iter()
            .map(|s| {
                (
                    store.utxos_by_script(s, AsOf::Tip).expect("utxos"),
                    store.balance_by_script(s, AsOf::Tip).expect("balance"),
                )
            })
            .collect()
    };
    let mut recorded = vec![record(&store, &gen)];
    for _ in 0..160 {
        let b = gen.next_block();
        connect_all(&store, &[b]);
        recorded.push(record(&store, &gen));
    }
    assert!(gen.model.spent_by.len() > 50, "the chain spends outputs");
    let tip = gen.height();
    let txids_by_height: Vec<Vec<Txid>> = std::iter::once(vec![])
        .chain(
            gen.blocks
                .iter()
                .map(|b| b.txdata.iter().map(Transaction::compute_txid).collect()),
        )
        .collect();
    for depth in [0u32, 1, 2, 5, 17, 50, 100, 159, 160] {
        let h = tip - depth;
        let at = AsOf::Block(gen.hash_at(h));
        for (s, (utxos, balance)) in gen.scripts.iter().zip(&recorded[h as usize]) {
            assert_eq!(
                &store.utxos_by_script(s, at).expect("utxos as of"),
                utxos,
                "utxos of {s} as of {h}"
            );
            assert_eq!(
                store.balance_by_script(s, at).expect("balance as of"),
                *balance,
                "balance as of {h}"
            );
        }
        for (th, txids) in txids_by_height.iter().enumerate() {
            for t in txids {
                let found = store.transaction(t, at).expect("transaction as of");
                assert_eq!(
                    found.is_some(),
                    th as u32 <= h,
                    "tx of height {th} as of {h}"
                );
                let conf = store.confirmations(t, at).expect("confirmations as of");
                assert_eq!(conf, (th as u32 <= h).then(|| h - th as u32 + 1));
            }
        }
    }

    // A block that is not on the best chain is refused, not answered from the wrong chain.
    let cb = coinbase(tip, b"side", vec![out(&gen.scripts[0], subsidy(tip))]);
    let stale = build_block(&gen.headers[tip as usize - 1], cb, vec![]);
    store.put_block(&stale, NOW).expect("put stale sibling");
    assert_eq!(
        store.advance(usize::MAX).expect("advance").connected,
        vec![]
    );
    let err = store
        .utxos_by_script(&gen.scripts[0], AsOf::Block(stale.block_hash()))
        .expect_err("stale");
    assert_eq!(err, ViewError::NotOnBestChain(stale.block_hash()));
}

/// The walk back through undo data must undo a block's transactions in reverse order: an output
/// created by one transaction and spent by a later one in the same block did not exist before
/// that block.
#[test]
fn as_of_block_does_not_resurrect_an_output_created_and_spent_in_a_later_block() {
    let store = mem_store();
    let mut gen = ChainGen::new("resurrect", scripts("resurrect", 4));
    gen.max_spends = 0;
    connect_all(&store, &gen.extend(101));
    let before = gen.tip().block_hash();
    let (s, t) = (script(b"fresh-s"), script(b"fresh-t"));
    let (op, coin) = gen.model.spendable(gen.height() + 1)[0].clone();
    let v = coin.txout.value.to_sat();
    let parent = spend(&[op], vec![out(&s, v - FEE)]);
    let child = spend(
        &[OutPoint::new(parent.compute_txid(), 0)],
        vec![out(&t, v - 2 * FEE)],
    );
    let b = gen.next_block_with(vec![parent, child], 2 * FEE);
    connect_all(&store, &[b]);
    assert_matches_model(&store, &gen);
    assert_eq!(store.utxos_by_script(&s, AsOf::Tip).expect("utxos"), vec![]);
    assert_eq!(
        store
            .utxos_by_script(&s, AsOf::Block(before))
            .expect("utxos as of the parent block"),
        vec![],
        "an output created and spent in a later block must not appear as of an earlier block"
    );
    assert_eq!(
        store
            .balance_by_script(&s, AsOf::Block(before))
            .expect("balance"),
        0
    );
}

// ----- keystones --------------------------------------------------------------------------------

#[test]
fn keystone_publications_list_earliest_first_and_drop_disconnected_blocks() {
    let (k, other) = (keystone(1), keystone(2));
    let id = k.id().0;
    let store = mem_store();
    let mut gen = ChainGen::new("pop", scripts("pop", 4));
    gen.max_spends = 0;
    // Heights 255 and 256 differ in their low byte order: a little-endian key would sort 256 first.
    connect_all(&store, &gen.extend(254));
    let b255 = pop_block(&mut gen, &[k]);
    let b256 = pop_block(&mut gen, &[k, other, k]);
    connect_all(&store, &[b255.clone(), b256.clone()]);

    let pubs = store.keystone_publications(&id).expect("publications");
    let got: Vec<(u32, u32, Txid)> = pubs
        .iter()
        .map(|p| (p.location.block.height, p.location.index, p.txid))
        .collect();
    let want = vec![
        (255, 1, b255.txdata[1].compute_txid()),
        (256, 1, b256.txdata[1].compute_txid()),
        (256, 3, b256.txdata[3].compute_txid()),
    ];
    assert_eq!(got, want, "publications, earliest first");
    assert!(pubs.iter().all(|p| p.keystone_id == id));
    assert_eq!(pubs[0].location.block.hash, b255.block_hash());
    assert_eq!(
        store
            .first_publication(&id)
            .expect("first")
            .map(|p| p.location.block.height),
        Some(255)
    );
    assert_eq!(store.keystone(&id).expect("keystone"), Some(k));
    let other_pubs = store
        .keystone_publications(&other.id().0)
        .expect("publications");
    assert_eq!(
        other_pubs
            .iter()
            .map(|p| (p.location.block.height, p.location.index))
            .collect::<Vec<_>>(),
        [(256, 2)]
    );
    assert_eq!(
        store
            .keystone_publications(&keystone(3).id().0)
            .expect("publications"),
        vec![]
    );

    // Disconnecting 256 removes its publications only.
    store
        .invalidate_block(&b256.block_hash())
        .expect("invalidate 256");
    assert_eq!(store.indexed_tip().height, 255);
    assert_eq!(
        store.keystone_publications(&id).expect("publications"),
        pubs[..1].to_vec()
    );
    assert_eq!(
        store
            .keystone_publications(&other.id().0)
            .expect("publications"),
        vec![]
    );
    store
        .invalidate_block(&b255.block_hash())
        .expect("invalidate 255");
    assert_eq!(store.indexed_tip().height, 254);
    assert_eq!(
        store.keystone_publications(&id).expect("publications"),
        vec![]
    );
    assert_eq!(store.first_publication(&id).expect("first"), None);

    store
        .reconsider_block(&b255.block_hash())
        .expect("reconsider");
    assert_eq!(store.indexed_tip().height, 256);
    assert_eq!(
        store.keystone_publications(&id).expect("publications"),
        pubs
    );
}

// ----- bad blocks -------------------------------------------------------------------------------

/// A chain of 101 blocks without spends, so the coinbase of height 1 is just mature at 101+1.
fn mature_chain(tag: &str) -> (ChainStore, ChainGen) {
    let store = mem_store();
    let mut gen = ChainGen::new(tag, scripts(tag, 3));
    gen.max_spends = 0;
    connect_all(&store, &gen.extend(101));
    (store, gen)
}

/// Puts `block` (built on the tip of `gen`, not recorded in it), advances, and checks it was
/// reported invalid with a reason containing `why`, and that nothing changed.
fn assert_rejected_on_connect(store: &ChainStore, gen: &ChainGen, block: &Block, why: &str) {
    let scripts = gen.scripts.clone();
    let q = Questions {
        scripts: &scripts,
        txids: &block
            .txdata
            .iter()
            .map(Transaction::compute_txid)
            .collect::<Vec<_>>(),
        outpoints: &block
            .txdata
            .iter()
            .skip(1)
            .flat_map(|t| t.input.iter().map(|i| i.previous_output))
            .collect::<Vec<_>>(),
        keystones: &[],
        max_height: gen.height() + 1,
    };
    let before = index_state(store, &q);
    store
        .put_block(block, NOW)
        .expect("put_block stores a well-formed block");
    let adv = store.advance(usize::MAX).expect("advance");
    assert_eq!(adv.connected, vec![]);
    assert_eq!(adv.invalid.len(), 1, "{adv:?}");
    assert_eq!(adv.invalid[0].0, block.block_hash());
    assert!(
        adv.invalid[0].1.contains(why),
        "reason {:?} should mention {why:?}",
        adv.invalid[0].1
    );
    assert_eq!(store.indexed_tip(), tip_of(gen), "tip stays");
    assert_same_state(&index_state(store, &q), &before, "after the rejected block");
    assert_matches_model(store, gen);
    assert!(
        store
            .headers()
            .get(&block.block_hash())
            .is_some_and(|n| n.invalid),
        "marked invalid"
    );
}

/// Builds a block on `gen`'s tip with `txs` without recording it in `gen`.
fn sibling(gen: &ChainGen, txs: Vec<Transaction>) -> Block {
    let height = gen.height() + 1;
    let cb = coinbase(height, b"bad", vec![out(&gen.scripts[0], subsidy(height))]);
    build_block(&gen.tip(), cb, txs)
}

#[test]
fn block_spending_a_missing_output_is_reported_invalid_and_the_tip_stays() {
    let (store, gen) = mature_chain("missing");
    let (op, coin) = gen.model.spendable(gen.height() + 1)[0].clone();
    // A valid spend first, so a half-applied block would show up in the indexes.
    let good = spend(
        &[op],
        vec![out(&gen.scripts[1], coin.txout.value.to_sat() - FEE)],
    );
    let missing = OutPoint::new(Txid::from_byte_array([7; 32]), 0);
    let bad = spend(&[missing], vec![out(&gen.scripts[1], 1_000)]);
    let block = sibling(&gen, vec![good.clone(), bad]);
    assert_rejected_on_connect(&store, &gen, &block, "missing or spent output");
    assert!(
        store.utxo(&op).expect("utxo").is_some(),
        "the good spend was rolled back"
    );
    assert_eq!(store.spent_by(&op).expect("spent_by"), None);
    assert_eq!(
        store.raw_transaction(&good.compute_txid()).expect("raw"),
        None
    );

    // A valid sibling still connects.
    let mut gen = gen;
    let next = gen.next_block_with(vec![good], FEE);
    connect_all(&store, &[next]);
    assert_matches_model(&store, &gen);
}

#[test]
fn block_spending_an_immature_coinbase_is_reported_invalid_and_the_tip_stays() {
    let (store, mut gen) = mature_chain("immature");
    let height = gen.height() + 1; // 102
    let coinbase_at = |g: &ChainGen, h: u32| -> (OutPoint, u64) {
        let tx = &g.block_at(h).txdata[0];
        (
            OutPoint::new(tx.compute_txid(), 0),
            tx.output[0].value.to_sat(),
        )
    };
    // Coinbase of height 3 has 99 confirmations' distance at 102: immature.
    let (op3, v3) = coinbase_at(&gen, height - 99);
    let block = sibling(
        &gen,
        vec![spend(&[op3], vec![out(&gen.scripts[1], v3 - FEE)])],
    );
    assert_rejected_on_connect(&store, &gen, &block, "immature coinbase");

    // Coinbase of height 2 is exactly 100 blocks below 102: mature.
    let (op2, v2) = coinbase_at(&gen, height - 100);
    let ok = gen.next_block_with(
        vec![spend(&[op2], vec![out(&gen.scripts[1], v2 - FEE)])],
        FEE,
    );
    connect_all(&store, &[ok]);
    assert_matches_model(&store, &gen);
}

#[test]
fn block_creating_more_value_than_it_spends_is_reported_invalid() {
    let (store, gen) = mature_chain("inflate");
    let (op, coin) = gen.model.spendable(gen.height() + 1)[0].clone();
    let tx = spend(
        &[op],
        vec![out(&gen.scripts[1], coin.txout.value.to_sat() + 1)],
    );
    assert_rejected_on_connect(&store, &gen, &sibling(&gen, vec![tx]), "sat in");
}

/// Output values come from outside: their sum must not overflow (a panic in debug builds; in
/// release a wrapped sum would pass the value check and create coins from nothing).
#[test]
fn block_whose_output_values_overflow_u64_is_reported_invalid() {
    let (store, gen) = mature_chain("overflow");
    let (op, coin) = gen.model.spendable(gen.height() + 1)[0].clone();
    let v = coin.txout.value.to_sat();
    let tx = spend(
        &[op],
        vec![out(&gen.scripts[1], u64::MAX), out(&gen.scripts[2], v)],
    );
    let block = sibling(&gen, vec![tx]);
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        match store.put_block(&block, NOW) {
            // Refused before it is stored: never even a candidate.
            Err(hemi_btc_store::StoreError::BadBlock { reason, .. }) => {
                assert!(reason.contains("MAX_MONEY"), "{reason}")
            }
            Ok(()) => {
                let adv = store.advance(usize::MAX).expect("advance");
                assert_eq!(adv.invalid.len(), 1, "{adv:?}");
            }
            Err(e) => panic!("unexpected error {e}"),
        }
    }));
    outcome.expect("must not panic on outside values");
    assert_eq!(store.indexed_tip(), tip_of(&gen));
    assert_matches_model(&store, &gen);
}

#[test]
fn block_spending_the_same_output_twice_is_reported_invalid() {
    let (store, gen) = mature_chain("double");
    let (op, coin) = gen.model.spendable(gen.height() + 1)[0].clone();
    let v = coin.txout.value.to_sat();
    let t1 = spend(&[op], vec![out(&gen.scripts[1], v - FEE)]);
    let t2 = spend(&[op], vec![out(&gen.scripts[2], v - FEE)]);
    assert_rejected_on_connect(
        &store,
        &gen,
        &sibling(&gen, vec![t1, t2]),
        "missing or spent output",
    );
}

#[test]
fn put_block_with_a_mismatched_merkle_root_is_refused_and_not_stored() {
    let (store, mut gen) = mature_chain("merkle");
    let (op, coin) = gen.model.spendable(gen.height() + 1)[0].clone();
    let tx = spend(
        &[op],
        vec![out(&gen.scripts[1], coin.txout.value.to_sat() - FEE)],
    );
    let genuine = gen.next_block_with(vec![tx], FEE);
    let mut junk = genuine.clone();
    junk.txdata[1].output[0].value = Amount::from_sat(1); // header unchanged, root no longer matches
    match store.put_block(&junk, NOW) {
        Err(StoreError::BadBlock {
            hash,
            height,
            reason,
        }) => {
            assert_eq!((hash, height), (genuine.block_hash(), gen.height()));
            assert!(reason.contains("merkle"), "{reason}");
        }
        other => panic!("expected BadBlock, got {other:?}"),
    }
    assert!(
        !store.has_block(&genuine.block_hash()).expect("has_block"),
        "junk not stored"
    );
    let adv = store.advance(usize::MAX).expect("advance");
    assert_eq!(
        adv.missing,
        vec![genuine.block_hash()],
        "the valid header's data is still wanted"
    );
    assert_eq!(store.indexed_tip().height, gen.height() - 1);
    // The genuine block is still accepted under the same header.
    connect_all(&store, &[genuine]);
    assert_matches_model(&store, &gen);
}

/// CVE-2012-2459: repeating the last transactions of a block with an odd count leaves the Merkle
/// root unchanged. Such a mutated copy must not be stored under the genuine block's hash, nor get
/// that hash marked invalid (which would make the node refuse the real block forever).
#[test]
fn mutated_block_with_a_duplicated_transaction_does_not_poison_the_genuine_block() {
    let (store, mut gen) = mature_chain("mutated");
    let coins = gen.model.spendable(gen.height() + 1);
    let t1 = spend(
        &[coins[0].0],
        vec![out(&gen.scripts[1], coins[0].1.txout.value.to_sat() - FEE)],
    );
    let t2 = spend(
        &[coins[1].0],
        vec![out(&gen.scripts[2], coins[1].1.txout.value.to_sat() - FEE)],
    );
    let genuine = gen.next_block_with(vec![t1, t2], 2 * FEE); // 3 transactions: odd
    let mut mutated = genuine.clone();
    mutated.txdata.push(mutated.txdata[2].clone());
    assert!(
        mutated.check_merkle_root() && mutated.check_witness_commitment(),
        "same commitments"
    );
    assert_eq!(mutated.block_hash(), genuine.block_hash());

    let put = store.put_block(&mutated, NOW);
    let adv = store.advance(usize::MAX).expect("advance");
    assert!(
        put.is_err() || adv.invalid.is_empty(),
        "mutated block was stored and its (valid) header marked invalid: {adv:?}"
    );
    connect_all(&store, &[genuine]);
    assert_matches_model(&store, &gen);
}

/// A block whose witnesses are all stripped has the same hash and Merkle root. Its coinbase still
/// carries the witness commitment, which no longer matches: it must be refused, or the store
/// would serve transactions without their witnesses under the genuine block.
#[test]
fn witness_stripped_block_is_refused() {
    let (store, mut gen) = mature_chain("stripped");
    let (op, coin) = gen.model.spendable(gen.height() + 1)[0].clone();
    let tx = spend(
        &[op],
        vec![out(&gen.scripts[1], coin.txout.value.to_sat() - FEE)],
    );
    let genuine = gen.next_block_with(vec![tx], FEE);
    let mut stripped = genuine.clone();
    for t in &mut stripped.txdata {
        for i in &mut t.input {
            i.witness.clear();
        }
    }
    assert_eq!(stripped.block_hash(), genuine.block_hash());
    assert!(stripped.check_merkle_root());
    let put = store.put_block(&stripped, NOW);
    assert!(
        matches!(put, Err(StoreError::BadBlock { .. })),
        "witness-stripped block accepted: {put:?}"
    );
    connect_all(&store, std::slice::from_ref(&genuine));
    let txid = genuine.txdata[1].compute_txid();
    let raw = store
        .raw_transaction(&txid)
        .expect("raw")
        .expect("indexed")
        .0;
    assert_eq!(
        raw,
        serialize(&genuine.txdata[1]),
        "served with its witness"
    );
}

// ----- persistence ------------------------------------------------------------------------------

fn questions_for(
    gen: &ChainGen,
    keystones: &[[u8; 32]],
) -> (Vec<Txid>, Vec<OutPoint>, Vec<[u8; 32]>) {
    (gen.all_txids(), gen.all_outpoints(), keystones.to_vec())
}

#[test]
fn file_store_reopens_with_the_same_tip_and_indexes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("chain.redb");
    let ks = keystone(9);
    let mut gen = ChainGen::new("persist", scripts("persist", 8));
    gen.extend(115);
    pop_block(&mut gen, &[ks]);
    gen.extend(3);
    let (txids, ops, kss) = questions_for(&gen, &[ks.id().0]);
    let q = Questions {
        scripts: &gen.scripts,
        txids: &txids,
        outpoints: &ops,
        keystones: &kss,
        max_height: gen.height() + 1,
    };
    let mid = gen.hash_at(gen.height() - 10);
    let (before, before_asof) = {
        let store = ChainStore::open(&path, params()).expect("create");
        connect_all(&store, &gen.blocks);
        assert_matches_model(&store, &gen);
        let asof: Vec<_> = gen
            .scripts
            .iter()
            .map(|s| store.utxos_by_script(s, AsOf::Block(mid)).expect("as of"))
            .collect();
        (index_state(&store, &q), asof)
    };
    let store = ChainStore::open(&path, params()).expect("reopen");
    assert_eq!(store.indexed_tip(), tip_of(&gen));
    assert_eq!(
        store.headers().best_hash(),
        gen.tip().block_hash(),
        "header tree rebuilt"
    );
    assert_same_state(&index_state(&store, &q), &before, "after reopen");
    assert_matches_model(&store, &gen);
    for (s, want) in gen.scripts.iter().zip(&before_asof) {
        assert_eq!(
            &store.utxos_by_script(s, AsOf::Block(mid)).expect("as of"),
            want,
            "undo data reopened"
        );
    }
    assert_eq!(
        store.advance(usize::MAX).expect("advance"),
        hemi_btc_store::Advance::default()
    );
    // And it keeps working.
    connect_all(&store, &gen.extend(2));
    assert_matches_model(&store, &gen);
}

#[test]
fn invalidated_block_stays_invalid_after_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("chain.redb");
    let mut base = ChainGen::new("inv-base", scripts("inv", 6));
    base.extend(105);
    let fork = base.height();
    let mut a = base.branch("inv-A");
    a.extend(2);
    let mut b = base.branch("inv-B");
    b.extend(3);
    {
        let store = ChainStore::open(&path, params()).expect("create");
        connect_all(&store, &a.blocks);
        connect_all(&store, b.blocks_after(fork));
        assert_eq!(store.indexed_tip(), tip_of(&b));
        store
            .invalidate_block(&b.hash_at(fork + 1))
            .expect("invalidate");
        assert_eq!(store.indexed_tip(), tip_of(&a));
    }
    let store = ChainStore::open(&path, params()).expect("reopen");
    assert_eq!(store.indexed_tip(), tip_of(&a));
    assert_eq!(
        store.headers().best_hash(),
        a.tip().block_hash(),
        "invalid mark reloaded"
    );
    assert!(store
        .advance(usize::MAX)
        .expect("advance")
        .connected
        .is_empty());
    assert_matches_model(&store, &a);
    store
        .reconsider_block(&b.hash_at(fork + 1))
        .expect("reconsider");
    assert_matches_model(&store, &b);
}

#[test]
fn opening_a_database_of_another_schema_version_is_refused() {
    // The meta table is reached from outside with redb itself (same table name and types).
    const META: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("meta");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("chain.redb");
    drop(ChainStore::open(&path, params()).expect("create"));
    {
        let db = redb::Database::open(&path).expect("redb open");
        let w = db.begin_write().expect("begin_write");
        {
            let mut meta = w.open_table(META).expect("meta table");
            meta.insert(
                "schema_version",
                (SCHEMA_VERSION + 1).to_le_bytes().as_slice(),
            )
            .expect("insert");
        }
        w.commit().expect("commit");
    }
    match ChainStore::open(&path, params()) {
        Err(StoreError::SchemaVersion { found, expected }) => {
            assert_eq!((found, expected), (SCHEMA_VERSION + 1, SCHEMA_VERSION));
        }
        other => panic!("expected SchemaVersion, got {other:?}"),
    }
}

#[test]
fn schema_1_and_2_databases_are_upgraded_on_open_and_answer_as_of_queries_as_before() {
    // Schema 1 had no script-delta table: make one by dropping it and writing version 1.
    const META: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("meta");
    const DELTAS: redb::TableDefinition<&[u8; 73], &[u8; 13]> =
        redb::TableDefinition::new("script_deltas");
    const RECENT: redb::TableDefinition<&[u8; 73], &[u8; 13]> =
        redb::TableDefinition::new("script_deltas_recent");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("chain.redb");
    let mut gen = ChainGen::new("upgrade", scripts("upgrade", 6));
    gen.extend(130);
    let depths = [0u32, 1, 7, 30];
    let answers = |store: &ChainStore| -> Vec<Vec<hemi_btc_view::Utxo>> {
        depths
            .iter()
            .flat_map(|d| {
                let at = AsOf::Block(gen.hash_at(gen.height() - d));
                gen.scripts
                    .iter()
                    .map(move |s| store.utxos_by_script(s, at).expect("as of"))
            })
            .collect()
    };
    let before = {
        let store = ChainStore::open(&path, params()).expect("create");
        connect_all(&store, &gen.blocks);
        answers(&store)
    };
    assert!(before.iter().any(|u| !u.is_empty()));
    // Schema 1 had neither delta table; schema 2 the height-first one only.
    let downgrade = |version: u32| {
        let db = redb::Database::open(&path).expect("redb open");
        let w = db.begin_write().expect("begin_write");
        if version == 1 {
            assert!(
                w.delete_table(DELTAS).expect("delete"),
                "schema 3 has the table"
            );
        }
        assert!(
            w.delete_table(RECENT).expect("delete"),
            "schema 3 has the recent table"
        );
        let mut meta = w.open_table(META).expect("meta");
        meta.insert("schema_version", version.to_le_bytes().as_slice())
            .expect("insert");
        meta.remove("recent_from").expect("remove");
        drop(meta);
        w.commit().expect("commit");
    };
    for version in [1, 2] {
        downgrade(version);
        let store = ChainStore::open(&path, params()).expect("upgrade");
        assert_eq!(
            store.recent_from().expect("recent_from"),
            Some(1),
            "the upgrade fills the recent run ({} blocks, all within reach)",
            gen.height()
        );
        assert_eq!(
            answers(&store),
            before,
            "as-of answers after the upgrade from {version}"
        );
        drop(store);
        let store = ChainStore::open(&path, params()).expect("reopen at schema 3");
        assert_eq!(answers(&store), before);
    }
    // Without a recent run (as after an initial sync far below the best header) the same
    // answers come from the per-block walk.
    {
        let db = redb::Database::open(&path).expect("redb open");
        let w = db.begin_write().expect("begin_write");
        w.open_table(META)
            .expect("meta")
            .remove("recent_from")
            .expect("remove");
        w.commit().expect("commit");
    }
    let store = ChainStore::open(&path, params()).expect("reopen without a recent run");
    assert_eq!(store.recent_from().expect("recent_from"), None);
    assert_eq!(answers(&store), before, "answers by the per-block walk");
    // Blocks connected now start a new recent run; queries reaching below it still walk.
    connect_all(&store, &gen.extend(3));
    assert_matches_model(&store, &gen);
    drop(store);
    let store = ChainStore::open(&path, params()).expect("reopen");
    let store = &store;
    let again: Vec<Vec<hemi_btc_view::Utxo>> = depths
        .iter()
        .flat_map(|d| {
            let at = AsOf::Block(gen.hash_at(gen.height() - 3 - d));
            gen.scripts
                .iter()
                .map(move |s| store.utxos_by_script(s, at).expect("as of"))
        })
        .collect();
    assert_eq!(again, before, "the old blocks' answers, 3 blocks later");
}

#[test]
fn opening_a_database_of_another_network_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("chain.redb");
    drop(ChainStore::open(&path, params()).expect("create"));
    match ChainStore::open(&path, ChainParams::new(Network::Testnet)) {
        Err(StoreError::NetworkMismatch { found, expected }) => {
            assert_eq!(
                (found.as_str(), expected.as_str()),
                ("regtest", Network::Testnet.to_core_arg())
            );
        }
        other => panic!("expected NetworkMismatch, got {other:?}"),
    }
    ChainStore::open(&path, params()).expect("still opens for its own network");
}

// ----- crash safety -----------------------------------------------------------------------------

const CHILD_ENV: &str = "HEMI_STORE_CHILD";
const DIR_ENV: &str = "HEMI_STORE_DIR";
const FAST_ENV: &str = "HEMI_STORE_FAST";
const CHILD_TEST: &str = "crash_child_connects_blocks_until_killed";
/// The child stops extending the chain here (it is killed long before in practice).
const CRASH_CHAIN_MAX: u32 = 20_000;

/// The deterministic chain the crash child builds: fixed scripts, times and choices.
fn crash_gen() -> ChainGen {
    ChainGen::new("crash", scripts("crash", 16))
}

fn crash_gen_to(height: u32) -> ChainGen {
    let mut g = crash_gen();
    while g.height() < height {
        g.next_block();
    }
    g
}

/// Not a test on its own: the body of the child process of
/// `kill_9_while_connecting_blocks_leaves_a_consistent_prefix_of_the_chain`. Without
/// `HEMI_STORE_CHILD=1` it does nothing.
#[test]
fn crash_child_connects_blocks_until_killed() {
    if std::env::var(CHILD_ENV).as_deref() != Ok("1") {
        return;
    }
    let dir = std::env::var(DIR_ENV).expect("HEMI_STORE_DIR");
    let store = ChainStore::open(Path::new(&dir).join("chain.redb"), params()).expect("child open");
    if std::env::var(FAST_ENV).as_deref() == Ok("1") {
        store.set_fast_commits(true);
    }
    let tip = store.indexed_tip();
    let mut gen = crash_gen_to(tip.height);
    assert_eq!(
        gen.tip().block_hash(),
        tip.hash,
        "child: store tip is on the deterministic chain"
    );
    loop {
        if gen.height() >= CRASH_CHAIN_MAX {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        }
        let b = gen.next_block();
        store.put_block(&b, NOW).expect("child put_block");
        // Connect in small batches so some kills land with blocks stored but not connected.
        if gen.height().is_multiple_of(3) {
            let adv = store.advance(usize::MAX).expect("child advance");
            assert!(adv.invalid.is_empty(), "child: {:?}", adv.invalid);
        }
    }
}

#[test]
fn kill_9_while_connecting_blocks_leaves_a_consistent_prefix_of_the_chain() {
    if std::env::var(CHILD_ENV).is_ok() {
        return; // never recurse
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("chain.redb");
    let exe = std::env::current_exe().expect("current_exe");
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0x9e37_79b9)
        | 1;
    let mut tips = Vec::new();
    for run in 0..5 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let delay = Duration::from_millis(50 + seed % 451);
        // Odd runs skip fsync: a kill must still leave some committed prefix.
        let fast = if run % 2 == 1 { "1" } else { "0" };
        let mut child = Command::new(&exe)
            .args(["--exact", CHILD_TEST, "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, "1")
            .env(DIR_ENV, dir.path())
            .env(FAST_ENV, fast)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn child");
        let started = Instant::now();
        std::thread::sleep(delay);
        if let Some(status) = child.try_wait().expect("try_wait") {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            panic!("child exited on its own ({status}) before the kill: {err}");
        }
        child.kill().expect("SIGKILL child");
        child.wait().expect("reap child");
        let alive = started.elapsed();

        let store = ChainStore::open(&path, params()).expect("store opens after kill -9");
        let tip = store.indexed_tip();
        let gen = crash_gen_to(tip.height);
        assert_eq!(
            tip.hash,
            gen.tip().block_hash(),
            "run {run}: tip {tip:?} is on the child's chain"
        );
        assert_matches_model(&store, &gen);
        // The headline invariant: balances of all known scripts add up to the model's UTXO value.
        let sum_store: u64 = gen
            .scripts
            .iter()
            .map(|s| store.balance_by_script(s, AsOf::Tip).expect("balance"))
            .sum();
        let sum_model: u64 = gen
            .model
            .utxos
            .values()
            .map(|c| c.txout.value.to_sat())
            .sum();
        assert_eq!(
            sum_store, sum_model,
            "run {run}: total balance at height {}",
            tip.height
        );
        // Anything stored beyond the tip is still connectable.
        let adv = store.advance(usize::MAX).expect("advance after reopen");
        assert!(adv.invalid.is_empty(), "run {run}: {:?}", adv.invalid);
        let tip2 = store.indexed_tip();
        assert_matches_model(&store, &crash_gen_to(tip2.height));
        eprintln!(
            "crash run {run}: killed after {alive:?} (fast commits: {fast}), reopened at height {}, {} after advance",
            tip.height, tip2.height
        );
        tips.push(tip2.height);
    }
    assert!(
        tips.iter().any(|&h| h > 0),
        "the child never connected a block: {tips:?}"
    );
    assert!(
        tips.windows(2).all(|w| w[0] <= w[1]),
        "durable tips never go back: {tips:?}"
    );
}

/// Past `MAX_ASOF_DEPTH` blocks the script-first deltas of blocks out of reach are pruned, one
/// a block, and queries across the whole window still answer as when each block was the tip.
#[test]
fn recent_deltas_are_pruned_past_the_window_and_as_of_answers_stay_right() {
    let store = mem_store();
    let mut gen = ChainGen::new("window", scripts("window", 3));
    gen.chained_spends = false;
    let total = hemi_btc_store::MAX_ASOF_DEPTH as usize + 40;
    let depths = [0u32, 1, 39, 40, 1_000, hemi_btc_store::MAX_ASOF_DEPTH];
    let mut recorded = std::collections::HashMap::new();
    for _ in 0..total {
        let b = gen.next_block();
        connect_all(&store, &[b]);
        let depth = (total as u32).saturating_sub(gen.height());
        if depths.contains(&depth) {
            let answers: Vec<Vec<hemi_btc_view::Utxo>> = gen
                .scripts
                .iter()
                .map(|s| store.utxos_by_script(s, AsOf::Tip).expect("utxos"))
                .collect();
            recorded.insert(gen.height(), answers);
        }
    }
    assert_eq!(gen.height() as usize, total);
    for d in depths {
        let h = gen.height() - d;
        let at = AsOf::Block(gen.hash_at(h));
        for (s, want) in gen.scripts.iter().zip(&recorded[&h]) {
            assert_eq!(
                &store.utxos_by_script(s, at).expect("as of"),
                want,
                "as of {h}"
            );
        }
    }
    // The run is the window: the oldest block a query can need and every one above it.
    assert_eq!(
        store.recent_from().expect("recent_from"),
        Some(gen.height() - hemi_btc_store::MAX_ASOF_DEPTH),
        "pruned to the window, one block a connect"
    );
    // One block deeper is out of reach, as before.
    let too_deep = AsOf::Block(gen.hash_at(gen.height() - hemi_btc_store::MAX_ASOF_DEPTH - 1));
    assert!(matches!(
        store.utxos_by_script(&gen.scripts[0], too_deep),
        Err(ViewError::TooDeep { .. })
    ));
    assert_matches_model(&store, &gen);
}
