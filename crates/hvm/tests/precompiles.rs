//! The hVM precompiles against a real regtest chain built in-process. Expected bytes are computed
//! from the `Block`/`Transaction` objects the test built (and rust-bitcoin's display strings for
//! hashes), not from the code under test.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use bitcoin::consensus::serialize;
use bitcoin::hashes::Hash;
use bitcoin::{
    Address, Amount, Block, BlockHash, Network, OutPoint, ScriptBuf, Transaction, TxOut,
};
use hemi_btc_headers::ChainParams;
use hemi_btc_regtest::RegtestNode;
use hemi_btc_store::ChainStore;
use hemi_btc_view::{BitcoinView, BlockRef};
use hemi_btc_wallet::{build_payment, Key, KeyKind};
use hemi_hvm::precompiles::{call, gas_cost, BitcoinContext, HVM_PRECOMPILE_ADDRESSES};
use hemi_hvm::PrecompileCall;
use proptest::prelude::*;

type TestResult = Result<(), Box<dyn std::error::Error>>;

const NET: Network = Network::Regtest;

/// A chain: 101 coinbases to `a`, then block 102 with `pay` (a's first coinbase → 1M sat to b's
/// P2WPKH, 2M sat to c's P2TR, an OP_RETURN, change to a).
struct Fixture {
    store: Arc<ChainStore>,
    node: Arc<RegtestNode>,
    a: Key,
    b: Key,
    c: Key,
    /// Every block by height (index = height - 1), as mined.
    blocks: Vec<Block>,
    cb1: Transaction,
    pay: Transaction,
}

fn block_by_hash(store: &ChainStore, hash: &BlockHash) -> Block {
    store.block(hash).expect("store").expect("mined block")
}

impl Fixture {
    fn new() -> Result<Self, Box<dyn std::error::Error>> {
        let store = Arc::new(ChainStore::in_memory(ChainParams::new(NET))?);
        let node = RegtestNode::new(store.clone());
        let (a, b, c) = (
            Key::from_seed("hvm-test-a"),
            Key::from_seed("hvm-test-b"),
            Key::from_seed("hvm-test-c"),
        );
        let mut blocks = Vec::new();
        for h in node.mine(101, &a.script_pubkey(KeyKind::P2wpkh))? {
            blocks.push(block_by_hash(&store, &h));
        }
        let cb1 = blocks[0].txdata[0].clone();
        let utxo = (OutPoint::new(cb1.compute_txid(), 0), cb1.output[0].clone());
        let pay = build_payment(
            &a,
            KeyKind::P2wpkh,
            &[utxo],
            vec![
                TxOut {
                    value: Amount::from_sat(1_000_000),
                    script_pubkey: b.script_pubkey(KeyKind::P2wpkh),
                },
                TxOut {
                    value: Amount::from_sat(2_000_000),
                    script_pubkey: c.script_pubkey(KeyKind::P2tr),
                },
                TxOut {
                    value: Amount::ZERO,
                    script_pubkey: ScriptBuf::new_op_return(*b"hemi"),
                },
            ],
            2.0,
        )?;
        node.submit_transaction(pay.clone(), None)
            .map_err(|e| format!("{e:?}"))?;
        let mut f = Fixture {
            store,
            node,
            a,
            b,
            c,
            blocks,
            cb1,
            pay,
        };
        f.mine(1, KeyKind::P2wpkh, 0)?;
        assert!(f.blocks[101].txdata.contains(&f.pay), "pay is in block 102");
        Ok(f)
    }

    /// Mines `n` blocks paying to key `who` (0 = a, 1 = b) with whatever the mempool holds.
    fn mine(&mut self, n: u32, kind: KeyKind, who: u8) -> TestResult {
        let key = if who == 0 { &self.a } else { &self.b };
        for h in self.node.mine(n, &key.script_pubkey(kind))? {
            self.blocks.push(block_by_hash(&self.store, &h));
        }
        Ok(())
    }

    fn pin(&self, height: u32) -> BlockRef {
        BlockRef {
            height,
            hash: self.blocks[height as usize - 1].block_hash(),
        }
    }

    fn ctx(&self, height: u32) -> BitcoinContext<'_> {
        BitcoinContext {
            view: self.store.as_ref(),
            pinned: self.pin(height),
            network: NET,
        }
    }

    fn call(&self, pin: u32, address: u8, input: &[u8]) -> PrecompileCall {
        call(address, input, &self.ctx(pin))
    }

    fn out(&self, pin: u32, address: u8, input: &[u8]) -> Vec<u8> {
        match self.call(pin, address, input) {
            PrecompileCall::Output(b) => b,
            PrecompileCall::Fail(e) => panic!("0x{address:02x} failed: {e}"),
        }
    }

    fn addr(&self, key: &Key, kind: KeyKind) -> String {
        key.address(kind, NET).to_string()
    }

    /// UTXOs paying `script` after the first `height` blocks, computed from the blocks:
    /// (internal txid bytes, vout) -> value.
    fn utxo_set(&self, script: &ScriptBuf, height: u32) -> BTreeMap<([u8; 32], u32), u64> {
        let mut set = BTreeMap::new();
        for block in &self.blocks[..height as usize] {
            for tx in &block.txdata {
                for input in &tx.input {
                    let p = input.previous_output;
                    set.remove(&(p.txid.to_byte_array(), p.vout));
                }
                for (vout, o) in tx.output.iter().enumerate() {
                    if &o.script_pubkey == script {
                        set.insert(
                            (tx.compute_txid().to_byte_array(), vout as u32),
                            o.value.to_sat(),
                        );
                    }
                }
            }
        }
        set
    }
}

/// Display-order bytes of anything whose `Display` is the RPC hex (txids, block hashes).
fn disp(x: impl std::fmt::Display) -> Vec<u8> {
    hex::decode(x.to_string()).expect("display hex")
}

fn with(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn empty() -> PrecompileCall {
    PrecompileCall::Output(vec![])
}

fn is_fail(c: &PrecompileCall) -> bool {
    matches!(c, PrecompileCall::Fail(_))
}

#[test]
fn gas_costs_are_hemis_flat_constants() {
    let want = [
        50_000, 100_000, 25_000, 5_000, 5_000, 6_000, 25_000, 15_000, 15_000, 15_000,
    ];
    for (a, g) in HVM_PRECOMPILE_ADDRESSES.iter().zip(want) {
        assert_eq!(gas_cost(*a), Some(g));
    }
    assert_eq!(gas_cost(0x3f), None);
    assert_eq!(gas_cost(0x4a), None);
}

#[test]
fn balance_0x40_sums_utxos_as_of_the_pin() -> TestResult {
    let f = Fixture::new()?;
    let a_script = f.a.script_pubkey(KeyKind::P2wpkh);
    let want_a: u64 = f.utxo_set(&a_script, 102).values().sum();
    assert!(want_a > 0);
    let a = f.addr(&f.a, KeyKind::P2wpkh);
    assert_eq!(f.out(102, 0x40, a.as_bytes()), want_a.to_be_bytes());
    // Before block 102, a still held its first coinbase and no change.
    let want_a_101: u64 = f.utxo_set(&a_script, 101).values().sum();
    assert_eq!(f.out(101, 0x40, a.as_bytes()), want_a_101.to_be_bytes());
    let b = f.addr(&f.b, KeyKind::P2wpkh);
    assert_eq!(f.out(102, 0x40, b.as_bytes()), 1_000_000u64.to_be_bytes());
    assert_eq!(f.out(101, 0x40, b.as_bytes()), [0u8; 8]);
    let c = f.addr(&f.c, KeyKind::P2tr);
    assert_eq!(f.out(102, 0x40, c.as_bytes()), 2_000_000u64.to_be_bytes());
    let unused = f.addr(&Key::from_seed("never used"), KeyKind::P2wpkh);
    assert_eq!(f.out(102, 0x40, unused.as_bytes()), [0u8; 8]);
    // Too short, and well-sized garbage: empty success.
    assert_eq!(f.call(102, 0x40, b"bcrt1qshort"), empty());
    assert_eq!(
        f.call(102, 0x40, b"this is not a bitcoin address at all"),
        empty()
    );
    // A mainnet address on regtest does not decode (see module docs).
    let main = f.b.address(KeyKind::P2wpkh, Network::Bitcoin).to_string();
    assert_eq!(f.call(102, 0x40, main.as_bytes()), empty());
    Ok(())
}

#[test]
fn utxo_list_0x41_frames_orders_and_pages() -> TestResult {
    let f = Fixture::new()?;
    let a = f.addr(&f.a, KeyKind::P2wpkh);
    let set = f.utxo_set(&f.a.script_pubkey(KeyKind::P2wpkh), 102);
    let all: Vec<_> = set.iter().collect(); // BTreeMap order = internal txid bytes, then vout.
    assert!(all.len() > 20);
    let entry = |((txid, vout), value): &(&([u8; 32], u32), &u64)| {
        let mut t = *txid;
        t.reverse();
        with(&[&t, &(*vout as u16).to_be_bytes(), &value.to_be_bytes()])
    };
    let page = |start: u32, count: u8| {
        let mut input = a.as_bytes().to_vec();
        input.extend_from_slice(&start.to_be_bytes()[1..]);
        input.push(count);
        f.out(102, 0x41, &input)
    };
    let expect = |skip: usize, take: usize| {
        let items: Vec<_> = all.iter().skip(skip).take(take).collect();
        let mut v = vec![items.len() as u8];
        for i in items {
            v.extend(entry(i));
        }
        v
    };
    assert_eq!(page(0, 3), expect(0, 3));
    assert_eq!(page(0, 3).len(), 1 + 3 * 42);
    // start is a skip count, not a page number.
    assert_eq!(page(5, 2), expect(5, 2));
    // count 0 means 10.
    assert_eq!(page(0, 0), expect(0, 10));
    assert_eq!(page(0, 0)[0], 10);
    // Past the end: just n = 0; a tail page is short.
    assert_eq!(page(10_000, 5), vec![0]);
    assert_eq!(page(all.len() as u32 - 2, 5), expect(all.len() - 2, 5));
    // The txid bytes really are display order.
    let first = page(0, 1);
    let ((txid, _), _) = all[0];
    let txid = bitcoin::Txid::from_byte_array(*txid);
    assert_eq!(&first[1..33], disp(txid).as_slice());
    // Unused address: the single byte 0x00. Short input: empty.
    let mut unused = f
        .addr(&Key::from_seed("never used"), KeyKind::P2tr)
        .into_bytes();
    unused.extend_from_slice(&[0, 0, 0, 0]);
    assert_eq!(f.out(102, 0x41, &unused), vec![0]);
    assert_eq!(f.call(102, 0x41, &[b'x'; 27]), empty());
    Ok(())
}

fn q42(tx: &Transaction, bf: [u8; 4]) -> Vec<u8> {
    with(&[&disp(tx.compute_txid()), &bf])
}

#[test]
fn tx_by_txid_0x42_flag_combinations() -> TestResult {
    let mut f = Fixture::new()?;
    let pay = f.pay.clone();
    let block102 = f.blocks[101].block_hash();

    // Spec vector: bf=0x38,0,0,0 → version ‖ size ‖ stripped size ‖ locktime.
    let mut stripped = pay.clone();
    for i in &mut stripped.input {
        i.witness.clear();
    }
    let want = with(&[
        &2u32.to_be_bytes(),
        &(serialize(&pay).len() as u32).to_be_bytes(),
        &(serialize(&stripped).len() as u32).to_be_bytes(),
        &0u32.to_be_bytes(),
    ]);
    assert!(serialize(&pay).len() > serialize(&stripped).len());
    assert_eq!(f.out(102, 0x42, &q42(&pay, [0x38, 0, 0, 0])), want);

    // Spec vector: bf=0x44,0x00,0x08,0x00 → block hash ‖ u16 n ‖ [u16 witness items ‖ u64 value].
    let cb1_value = f.cb1.output[0].value.to_sat();
    let want = with(&[
        &disp(block102),
        &1u16.to_be_bytes(),
        &2u16.to_be_bytes(),
        &cb1_value.to_be_bytes(),
    ]);
    assert_eq!(f.out(102, 0x42, &q42(&pay, [0x44, 0x00, 0x08, 0x00])), want);

    // Inputs with source, scriptSig and sequence (no bit 6: no witness count).
    let want = with(&[
        &1u16.to_be_bytes(),
        &cb1_value.to_be_bytes(),
        &disp(f.cb1.compute_txid()),
        &0u32.to_be_bytes(),
        &0u16.to_be_bytes(),
        &0xffff_fffdu32.to_be_bytes(),
    ]);
    assert_eq!(f.out(102, 0x42, &q42(&pay, [0x07, 0x80, 0, 0])), want);

    // Outputs with scripts and the available byte; OP_RETURN skipped unless bf2 bit 3.
    let output = |o: &TxOut, max: usize, avail: Option<u8>| {
        let s = o.script_pubkey.as_bytes();
        let mut v = with(&[
            &o.value.to_sat().to_be_bytes(),
            &(s.len() as u16).to_be_bytes(),
            &s[..s.len().min(max)],
        ]);
        v.extend(avail);
        v
    };
    assert_eq!(pay.output.len(), 4, "b, c, OP_RETURN, change");
    let spendable: Vec<&TxOut> = pay
        .output
        .iter()
        .filter(|o| !o.script_pubkey.is_op_return())
        .collect();
    let mut want = 3u16.to_be_bytes().to_vec();
    for o in &spendable {
        want.extend(output(o, 128, Some(1)));
    }
    assert_eq!(f.out(102, 0x42, &q42(&pay, [0, 0x34, 0x07, 0x03])), want);
    let mut want = 4u16.to_be_bytes().to_vec();
    for o in &pay.output {
        want.extend(output(o, 128, Some(1)));
    }
    assert_eq!(f.out(102, 0x42, &q42(&pay, [0, 0x3c, 0x07, 0x03])), want);

    // Truncation: script exponent 0 → 16 bytes (full length still declared); 1 output max.
    let want = with(&[&3u16.to_be_bytes(), &output(spendable[0], 16, None)]);
    assert_eq!(f.out(102, 0x42, &q42(&pay, [0, 0x30, 0x00, 0x00])), want);
    // Values only, two outputs.
    let want = with(&[
        &3u16.to_be_bytes(),
        &1_000_000u64.to_be_bytes(),
        &2_000_000u64.to_be_bytes(),
    ]);
    assert_eq!(f.out(102, 0x42, &q42(&pay, [0, 0x20, 0x01, 0])), want);

    // No flag: empty success. Coinbase with inputs: empty (no source tx). Coinbase version: ok.
    assert_eq!(f.call(102, 0x42, &q42(&pay, [0, 0, 0, 0])), empty());
    assert_eq!(f.call(102, 0x42, &q42(&f.cb1, [0x04, 0, 0, 0])), empty());
    assert_eq!(
        f.out(102, 0x42, &q42(&f.cb1, [0x20, 0, 0, 0])),
        (f.cb1.version.0 as u32).to_be_bytes()
    );
    // Not visible at pin 101, unknown txid, wrong lengths: empty.
    assert_eq!(f.call(101, 0x42, &q42(&pay, [0x38, 0, 0, 0])), empty());
    assert_eq!(f.call(102, 0x42, &[7u8; 36]), empty());
    assert_eq!(
        f.call(102, 0x42, &q42(&pay, [0x38, 0, 0, 0])[..35]),
        empty()
    );

    // b spends its output in block 103: available byte 0 at pin 103, still 1 at pin 102.
    let spend = spend_b_output(&f)?;
    f.node
        .submit_transaction(spend, None)
        .map_err(|e| format!("{e:?}"))?;
    f.mine(1, KeyKind::P2wpkh, 0)?;
    let first_avail = |pin| f.out(pin, 0x42, &q42(&pay, [0, 0x24, 0, 0]));
    assert_eq!(
        first_avail(103),
        with(&[&3u16.to_be_bytes(), &1_000_000u64.to_be_bytes(), &[0]])
    );
    assert_eq!(
        first_avail(102),
        with(&[&3u16.to_be_bytes(), &1_000_000u64.to_be_bytes(), &[1]])
    );
    Ok(())
}

/// b's 1M-sat output of `pay`, sent on to c's P2TR with change back to b.
fn spend_b_output(f: &Fixture) -> Result<Transaction, Box<dyn std::error::Error>> {
    let op = OutPoint::new(f.pay.compute_txid(), 0);
    Ok(build_payment(
        &f.b,
        KeyKind::P2wpkh,
        &[(op, f.pay.output[0].clone())],
        vec![TxOut {
            value: Amount::from_sat(400_000),
            script_pubkey: f.c.script_pubkey(KeyKind::P2tr),
        }],
        2.0,
    )?)
}

#[test]
fn confirmations_0x43_depend_on_the_pin_not_the_tip() -> TestResult {
    let mut f = Fixture::new()?;
    f.mine(3, KeyKind::P2wpkh, 0)?; // tip = 105
    let q = disp(f.pay.compute_txid());
    assert_eq!(f.out(102, 0x43, &q), 1u32.to_be_bytes());
    assert_eq!(f.out(104, 0x43, &q), 3u32.to_be_bytes());
    assert_eq!(f.out(105, 0x43, &q), 4u32.to_be_bytes());
    let cb1 = disp(f.cb1.compute_txid());
    assert_eq!(f.out(102, 0x43, &cb1), 102u32.to_be_bytes());
    // Not yet confirmed as of the pin, or unknown: the CALL fails (Hemi's raw error).
    assert!(is_fail(&f.call(101, 0x43, &q)));
    assert!(is_fail(&f.call(105, 0x43, &[0x11; 32])));
    Ok(())
}

#[test]
fn confirmations_0x43_wrong_length_is_empty_success() -> TestResult {
    let f = Fixture::new()?;
    let q = disp(f.pay.compute_txid());
    for len in [0, 31] {
        assert_eq!(f.call(102, 0x43, &q[..len]), empty(), "len {len}");
    }
    let mut long = q.clone();
    long.push(0);
    assert_eq!(f.call(102, 0x43, &long), empty());
    Ok(())
}

/// Hemi's crash #0x43: older op-geth sliced `input[0:32]` of a 4-byte input without returning
/// first and crashed every node; C-NEW (and we) answer empty success.
#[test]
fn confirmations_0x43_four_byte_input_is_empty_success_not_hemi_crash_0x43() -> TestResult {
    let f = Fixture::new()?;
    assert_eq!(f.call(102, 0x43, &[0xde, 0xad, 0xbe, 0xef]), empty());
    Ok(())
}

fn expected_record(height: u32, block: &Block) -> Vec<u8> {
    let h = &block.header;
    with(&[
        &height.to_be_bytes(),
        &disp(block.block_hash()),
        &(h.version.to_consensus() as u32).to_be_bytes(),
        &disp(h.prev_blockhash),
        &disp(h.merkle_root),
        &h.time.to_be_bytes(),
        &h.bits.to_consensus().to_be_bytes(),
        &h.nonce.to_be_bytes(),
    ])
}

#[test]
fn headers_0x44_and_0x45_are_116_byte_records_of_the_pinned_chain() -> TestResult {
    let mut f = Fixture::new()?;
    f.mine(2, KeyKind::P2wpkh, 0)?; // tip = 104
    let rec = f.out(102, 0x44, b"ignored input");
    assert_eq!(rec.len(), 116);
    assert_eq!(rec, expected_record(102, &f.blocks[101]));
    assert_eq!(&rec[0..4], &102u32.to_be_bytes());
    assert_eq!(&rec[4..36], disp(f.blocks[101].block_hash()).as_slice());
    assert_eq!(&rec[40..72], disp(f.blocks[100].block_hash()).as_slice());
    assert_eq!(f.out(104, 0x44, &[]), expected_record(104, &f.blocks[103]));

    assert_eq!(
        f.out(102, 0x45, &1u32.to_be_bytes()),
        expected_record(1, &f.blocks[0])
    );
    assert_eq!(
        f.out(102, 0x45, &102u32.to_be_bytes()),
        expected_record(102, &f.blocks[101])
    );
    // Above the pin (though below the tip): empty. Wrong lengths: empty.
    assert_eq!(f.call(102, 0x45, &103u32.to_be_bytes()), empty());
    assert_eq!(f.call(102, 0x45, &[0, 0, 1]), empty());
    assert_eq!(f.call(102, 0x45, &[0, 0, 0, 1, 0]), empty());
    Ok(())
}

#[test]
fn addr_to_script_0x46_matches_rust_bitcoin() -> TestResult {
    let f = Fixture::new()?;
    let p2wpkh = f.b.address(KeyKind::P2wpkh, NET);
    let p2tr = f.c.address(KeyKind::P2tr, NET);
    let p2pkh = Address::p2pkh(f.b.public_key(), NET);
    for addr in [&p2wpkh, &p2tr, &p2pkh] {
        assert_eq!(
            f.out(102, 0x46, addr.to_string().as_bytes()),
            addr.script_pubkey().into_bytes(),
            "{addr}"
        );
    }
    assert_eq!(
        f.out(102, 0x46, p2wpkh.to_string().as_bytes()),
        f.b.script_pubkey(KeyKind::P2wpkh).into_bytes()
    );
    // btcutil's hex public key "address" → P2PK.
    let pk = f.b.public_key().to_bytes();
    let want = with(&[&[33], &pk, &[0xac]]);
    assert_eq!(f.out(102, 0x46, hex::encode(&pk).as_bytes()), want);
    // Invalid: the CALL fails. Too short: empty success.
    assert!(is_fail(&f.call(
        102,
        0x46,
        b"this is not a bitcoin address"
    )));
    let mainnet = f.b.address(KeyKind::P2wpkh, Network::Bitcoin).to_string();
    assert!(is_fail(&f.call(102, 0x46, mainnet.as_bytes())));
    assert!(is_fail(&f.call(102, 0x46, &[0xff; 30])));
    assert_eq!(f.call(102, 0x46, b"bcrt1q"), empty());
    Ok(())
}

fn q(tx: &Transaction, a: u16, b: u16) -> Vec<u8> {
    with(&[&disp(tx.compute_txid()), &a.to_be_bytes(), &b.to_be_bytes()])
}

#[test]
fn input_output_witness_0x47_0x48_0x49_framing() -> TestResult {
    let mut f = Fixture::new()?;
    let pay = f.pay.clone();
    let cb1_value = f.cb1.output[0].value.to_sat();
    let witness = &pay.input[0].witness;
    assert_eq!(witness.len(), 2);

    // 0x47: u16 witness items ‖ u64 value ‖ prev txid ‖ u16 prev index ‖ u16 sig len ‖ sig ‖ seq.
    let want = with(&[
        &2u16.to_be_bytes(),
        &cb1_value.to_be_bytes(),
        &disp(f.cb1.compute_txid()),
        &0u16.to_be_bytes(),
        &0u16.to_be_bytes(),
        &pay.input[0].sequence.0.to_be_bytes(),
    ]);
    assert_eq!(f.out(102, 0x47, &q(&pay, 0, 100)), want);
    assert_eq!(f.call(102, 0x47, &q(&pay, 1, 100)), empty());
    assert_eq!(f.call(102, 0x47, &q(&f.cb1, 0, 100)), empty(), "coinbase");
    assert_eq!(f.call(102, 0x47, &q(&pay, 0, 100)[..35]), empty());

    // 0x48: u64 value ‖ u16 script len ‖ script[..max] ‖ 1.
    let s = pay.output[0].script_pubkey.as_bytes();
    let full = with(&[
        &1_000_000u64.to_be_bytes(),
        &(s.len() as u16).to_be_bytes(),
        s,
        &[1],
    ]);
    assert_eq!(f.out(102, 0x48, &q(&pay, 0, 1000)), full);
    let chopped = with(&[
        &1_000_000u64.to_be_bytes(),
        &(s.len() as u16).to_be_bytes(),
        &s[..4],
        &[1],
    ]);
    assert_eq!(f.out(102, 0x48, &q(&pay, 0, 4)), chopped);
    assert_eq!(f.call(102, 0x48, &q(&pay, 9, 100)), empty());
    assert_eq!(
        f.call(101, 0x48, &q(&pay, 0, 100)),
        empty(),
        "not yet mined"
    );
    // The OP_RETURN output is never spent.
    let op_return = &pay.output[2];
    assert_eq!(
        f.out(102, 0x48, &q(&pay, 2, 0)),
        with(&[
            &0u64.to_be_bytes(),
            &(op_return.script_pubkey.len() as u16).to_be_bytes(),
            &[1]
        ])
    );

    // 0x49: u16 len ‖ item[..max].
    let q49 = |vin: u16, idx: u16, max: u16| with(&[&q(&pay, vin, idx), &max.to_be_bytes()]);
    let sig = witness.nth(0).expect("signature");
    let key = witness.nth(1).expect("pubkey");
    assert_eq!(
        f.out(102, 0x49, &q49(0, 0, 1000)),
        with(&[&(sig.len() as u16).to_be_bytes(), sig])
    );
    assert_eq!(
        f.out(102, 0x49, &q49(0, 1, 5)),
        with(&[&33u16.to_be_bytes(), &key[..5]])
    );
    assert_eq!(f.call(102, 0x49, &q49(0, 2, 5)), empty());
    assert_eq!(f.call(102, 0x49, &q49(1, 0, 5)), empty());
    assert_eq!(f.call(102, 0x49, &q49(0, 0, 5)[..37]), empty());

    // Once b spends output 0 (block 103), 0x48 at a later pin is empty (Hemi's limitation);
    // at pin 102 it still answers.
    let spend = spend_b_output(&f)?;
    f.node
        .submit_transaction(spend, None)
        .map_err(|e| format!("{e:?}"))?;
    f.mine(1, KeyKind::P2wpkh, 0)?;
    assert_eq!(f.call(103, 0x48, &q(&pay, 0, 1000)), empty());
    assert_eq!(f.out(102, 0x48, &q(&pay, 0, 1000)), full);
    Ok(())
}

/// Every precompile's answer at pin P stays byte-identical after Bitcoin moves on and the same
/// addresses gain and spend outputs.
#[test]
fn outputs_at_a_pin_are_unchanged_after_more_blocks() -> TestResult {
    let mut f = Fixture::new()?;
    let a = f.addr(&f.a, KeyKind::P2wpkh);
    let b = f.addr(&f.b, KeyKind::P2wpkh);
    let c = f.addr(&f.c, KeyKind::P2tr);
    let pay = f.pay.clone();
    let mut queries: Vec<(u8, Vec<u8>)> = vec![];
    for addr in [&a, &b, &c] {
        queries.push((0x40, addr.as_bytes().to_vec()));
        queries.push((0x41, with(&[addr.as_bytes(), &[0, 0, 0, 0xff]])));
        queries.push((0x46, addr.as_bytes().to_vec()));
    }
    queries.extend([
        (0x42, q42(&pay, [0xff, 0xff, 0xff, 0xff])),
        (0x42, q42(&f.cb1, [0x7b, 0xbc, 0x3f, 0x0f])),
        (0x43, disp(pay.compute_txid())),
        (0x43, disp(f.cb1.compute_txid())),
        (0x44, vec![]),
        (0x45, 1u32.to_be_bytes().to_vec()),
        (0x45, 102u32.to_be_bytes().to_vec()),
        (0x45, 103u32.to_be_bytes().to_vec()),
        (0x47, q(&pay, 0, 100)),
        (0x48, q(&pay, 0, 100)),
        (0x48, q(&pay, 3, 100)),
        (0x49, with(&[&q(&pay, 0, 1), &[0xff, 0xff]])),
    ]);
    let run = |f: &Fixture| -> Vec<PrecompileCall> {
        queries.iter().map(|(a, i)| f.call(102, *a, i)).collect()
    };
    let before = run(&f);
    assert!(before
        .iter()
        .all(|r| matches!(r, PrecompileCall::Output(b) if !b.is_empty()) || *r == empty()));

    // b spends its output; then coinbases to b, a and more.
    let spend = spend_b_output(&f)?;
    f.node
        .submit_transaction(spend, None)
        .map_err(|e| format!("{e:?}"))?;
    f.mine(1, KeyKind::P2wpkh, 0)?;
    f.mine(2, KeyKind::P2wpkh, 1)?;
    let a_utxo = f.blocks[1].txdata[0].clone();
    let move_a = build_payment(
        &f.a,
        KeyKind::P2wpkh,
        &[(
            OutPoint::new(a_utxo.compute_txid(), 0),
            a_utxo.output[0].clone(),
        )],
        vec![TxOut {
            value: Amount::from_sat(5_000_000),
            script_pubkey: f.c.script_pubkey(KeyKind::P2tr),
        }],
        2.0,
    )?;
    f.node
        .submit_transaction(move_a, None)
        .map_err(|e| format!("{e:?}"))?;
    f.mine(2, KeyKind::P2wpkh, 0)?;
    assert_eq!(f.store.tip()?.height, 107);

    let after = run(&f);
    for ((q, b), a) in queries.iter().zip(&before).zip(&after) {
        assert_eq!(b, a, "0x{:02x} {}", q.0, hex::encode(&q.1));
    }
    // The same queries at the new tip do differ (the test has teeth).
    let at_tip: Vec<_> = queries.iter().map(|(a, i)| f.call(107, *a, i)).collect();
    assert_ne!(before, at_tip);
    Ok(())
}

/// Panics seen anywhere in this test binary. `call` catches panics itself (Hemi's recover
/// guard), so the property test counts them through the panic hook instead.
static PANICS: AtomicUsize = AtomicUsize::new(0);

fn shared() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, Ordering::SeqCst);
            previous(info);
        }));
        Fixture::new().expect("fixture")
    })
}

fn input_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..200),
        // A real txid followed by random bytes reaches the deeper code paths.
        proptest::collection::vec(any::<u8>(), 0..12).prop_map(|tail| {
            let f = shared();
            with(&[&disp(f.pay.compute_txid()), &tail])
        }),
        proptest::collection::vec(any::<u8>(), 0..8).prop_map(|tail| {
            let f = shared();
            with(&[f.addr(&f.a, KeyKind::P2wpkh).as_bytes(), &tail])
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn no_input_panics_any_precompile(idx in 0usize..10, other in any::<u8>(), input in input_strategy()) {
        let f = shared();
        let before = PANICS.load(Ordering::SeqCst);
        for address in [HVM_PRECOMPILE_ADDRESSES[idx], other] {
            let _ = f.call(102, address, &input);
        }
        prop_assert_eq!(PANICS.load(Ordering::SeqCst), before);
    }
}
