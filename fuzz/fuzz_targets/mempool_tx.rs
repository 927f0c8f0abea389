//! The embedded regtest node's mempool on transactions from the wire (`sendrawtransaction`,
//! `testmempoolaccept`, P2P `tx`): decoding, `Mempool::check` with the real script checker
//! (`hemi_btc_wallet::verify_transaction`) and `Mempool::accept` must never panic.
//!
//! The input is a stream of up to 8 consensus-encoded transactions. Each one is first checked
//! against the mempool built so far with the real script checker (the first one against an
//! empty mempool: `Mempool::default().check(..)`), then accepted with a checker that passes
//! every script, since the fuzzer cannot forge signatures; that lets later transactions spend,
//! chain on and replace earlier ones (parents, ancestor limits, BIP125 replacement). At the end
//! the block template (`select`) and `block_connected` run, with invariants on the indexes.
//!
//! Fuzzed transactions cannot guess each other's txids, so an input whose txid starts with 0xfe
//! is rewritten to spend an earlier transaction of the stream (the second txid byte picks which).
//!
//! Confirmed coins are made up from the outpoint: any outpoint exists (but those whose txid
//! starts with 0xff), with a script type, value and coinbase flag taken from the txid bytes.
//! Values are capped so that all the coins one input can name sum to at most `MAX_MONEY`, as on
//! a real chain.
#![no_main]

use std::collections::HashSet;

use bitcoin::block::{Header, Version};
use bitcoin::consensus::Decodable;
use bitcoin::hashes::Hash;
use bitcoin::{
    Amount, Block, BlockHash, CompactTarget, Network, OutPoint, ScriptBuf, Transaction,
    TxMerkleNode, TxOut, Txid,
};
use hemi_btc_regtest::mempool::{Coin, Mempool, Reject, ScriptFailure};
use libfuzzer_sys::fuzz_target;

const TIP_HEIGHT: u32 = 200;
const MAX_FEERATE_KVB: Option<u64> = Some(10_000_000);
const MAX_TXS: usize = 8;
/// Largest made-up coin: 2^15 of them (more than 8 standard-size transactions can spend) still
/// sum to at most `MAX_MONEY`.
const MAX_COIN: u64 = (21_000_000 * 100_000_000) >> 15;

/// A deterministic confirmed coin for any outpoint.
fn chain_coin(op: &OutPoint) -> Option<Coin> {
    let t = op.txid.to_byte_array();
    if t[0] == 0xff {
        return None;
    }
    let mut script = Vec::with_capacity(34);
    match t[1] % 6 {
        // P2WPKH
        0 => {
            script.extend_from_slice(&[0x00, 0x14]);
            script.extend_from_slice(&t[12..32]);
        }
        // P2TR
        1 => {
            script.extend_from_slice(&[0x51, 0x20]);
            script.extend_from_slice(&t);
        }
        // P2WSH
        2 => {
            script.extend_from_slice(&[0x00, 0x20]);
            script.extend_from_slice(&t);
        }
        // OP_RETURN
        3 => script.extend_from_slice(&[0x6a, 0x04, t[4], t[5], t[6], t[7]]),
        // P2PKH
        4 => {
            script.extend_from_slice(&[0x76, 0xa9, 0x14]);
            script.extend_from_slice(&t[12..32]);
            script.extend_from_slice(&[0x88, 0xac]);
        }
        // Garbage: the txid's tail, of a length the txid picks.
        _ => script.extend_from_slice(&t[32 - usize::from(t[4] % 33)..]),
    }
    let mut raw = [0u8; 8];
    raw.copy_from_slice(&t[8..16]);
    let value = ((u64::from_le_bytes(raw) ^ u64::from(op.vout)) >> (t[2] % 64)) % (MAX_COIN + 1);
    let coinbase = t[3] & 1 == 1;
    // Height 50 (mature as coinbase at tip 200); sometimes 150 (a premature coinbase).
    let height = if t[3] & 6 == 6 { 150 } else { 50 };
    Some(Coin {
        txout: TxOut {
            value: Amount::from_sat(value),
            script_pubkey: ScriptBuf::from_bytes(script),
        },
        height: Some(height),
        coinbase,
    })
}

fn real_verify(tx: &Transaction, prevouts: &[TxOut]) -> Result<(), ScriptFailure> {
    hemi_btc_wallet::verify_transaction(tx, prevouts).map_err(|e| ScriptFailure {
        reason: e.to_string(),
        input: e.input(),
    })
}

fn pass_verify(_: &Transaction, _: &[TxOut]) -> Result<(), ScriptFailure> {
    Ok(())
}

/// Index invariants: every entry's inputs are recorded as spent by it, its parents are in the
/// mempool, and its ancestor chain is within the limit.
fn check_indexes(pool: &Mempool) {
    for txid in pool.txids() {
        let e = pool.get(&txid).expect("listed txid has an entry");
        assert_eq!(e.tx.compute_txid(), txid);
        for i in &e.tx.input {
            assert_eq!(
                pool.spender(&i.previous_output),
                Some(txid),
                "spend index out of date"
            );
        }
        for p in &e.parents {
            assert!(pool.get(p).is_some(), "parent {p} of {txid} not in mempool");
        }
        assert!(pool.ancestor_count(&txid) <= hemi_btc_regtest::mempool::MAX_CHAIN);
    }
}

fn check_reject(r: &Reject) {
    assert!(!r.reason.is_empty());
    let _ = r.to_string();
    let _ = r.test_accept_reason();
    let _ = r.test_accept_details();
}

fuzz_target!(|data: &[u8]| {
    let mut cur = data;
    let mut txs = Vec::new();
    while txs.len() < MAX_TXS {
        match Transaction::consensus_decode(&mut cur) {
            Ok(tx) => txs.push(tx),
            Err(_) => break,
        }
    }
    let mut pool = Mempool::default();
    let mut seen: Vec<Txid> = Vec::new();
    for (n, mut tx) in txs.into_iter().enumerate() {
        if !seen.is_empty() {
            for i in &mut tx.input {
                let t = i.previous_output.txid.to_byte_array();
                if t[0] == 0xfe {
                    i.previous_output.txid = seen[usize::from(t[1]) % seen.len()];
                }
            }
        }
        seen.push(tx.compute_txid());
        // The RPC's decoderawtransaction / getrawtransaction view of it.
        let _ = hemi_btc_regtest::tx_json(&tx, Network::Regtest).to_string();

        match pool.check(&tx, &chain_coin, TIP_HEIGHT, &real_verify, MAX_FEERATE_KVB) {
            Ok((acc, _)) => assert_eq!(acc.txid, tx.compute_txid()),
            Err(r) => check_reject(&r),
        }
        let before = pool.len();
        match pool.accept(
            tx,
            &chain_coin,
            TIP_HEIGHT,
            &pass_verify,
            MAX_FEERATE_KVB,
            n as u64,
        ) {
            Ok(acc) => {
                assert!(pool.get(&acc.txid).is_some());
                assert!(acc.vsize > 0);
                for r in &acc.replaced {
                    assert!(pool.get(r).is_none(), "replaced {r} still in mempool");
                }
                assert_eq!(pool.len() + acc.replaced.len(), before + 1);
            }
            Err(r) => {
                check_reject(&r);
                assert_eq!(
                    pool.len(),
                    before,
                    "a rejected transaction changed the mempool"
                );
            }
        }
        check_indexes(&pool);
    }

    // Block template: parents before children, each transaction once.
    let chosen = pool.select(4_000_000);
    let mut placed = HashSet::new();
    for tx in &chosen {
        let txid = tx.compute_txid();
        let e = pool
            .get(&txid)
            .expect("selected transaction is in the mempool");
        for p in &e.parents {
            assert!(placed.contains(p), "{txid} selected before its parent {p}");
        }
        assert!(placed.insert(txid), "{txid} selected twice");
    }
    let _ = pool.feerates();

    // Mine the first half of the template: those leave, and so does anything conflicting.
    let coinbase = Transaction {
        version: bitcoin::transaction::Version::TWO,
        lock_time: bitcoin::absolute::LockTime::ZERO,
        input: vec![bitcoin::TxIn::default()],
        output: vec![],
    };
    let mut txdata = vec![coinbase];
    txdata.extend(chosen.iter().take(chosen.len().div_ceil(2)).cloned());
    let block = Block {
        header: Header {
            version: Version::TWO,
            prev_blockhash: BlockHash::all_zeros(),
            merkle_root: TxMerkleNode::all_zeros(),
            time: 0,
            bits: CompactTarget::from_consensus(0x207f_ffff),
            nonce: 0,
        },
        txdata,
    };
    pool.block_connected(&block);
    for tx in block.txdata.iter().skip(1) {
        assert!(
            pool.get(&tx.compute_txid()).is_none(),
            "mined transaction still in mempool"
        );
    }
    check_indexes(&pool);
});
