//! Blocks built by one chain re-execute on another to the same roots; tampered blocks (state
//! root, header after sealing, seal, signer, extraData, body, a PoP payout Bitcoin does not back)
//! are refused with a clear error;
//! state survives reopening; proofs verify against the state root; older state stays readable.

use std::sync::Arc;

use alloy_consensus::{SignableTransaction, TxEip1559, TxEnvelope};
use alloy_eips::eip2718::Encodable2718;
use alloy_primitives::{keccak256, Address, Bytes, TxKind, B256, U256};
use bitcoin::Network;
use hemi_btc_headers::ChainParams;
use hemi_btc_regtest::RegtestNode;
use hemi_btc_store::ChainStore;
use hemi_btc_view::BitcoinView;
use hemi_chain::block::seal;
use hemi_chain::{
    dev_accounts, Chain, ChainError, ChainSpec, L2Block, L2Tx, SealError, Sealer, SequencerAddress,
    SignedTx, DEV_MNEMONIC,
};
use hemi_hvm::{BitcoinPin, BtcAttributes};

const SEQUENCER: B256 = B256::repeat_byte(0x11);

/// Seals with one test key (the sequencer crate's `KeySealer` does the same).
#[derive(Debug)]
struct TestSealer(B256);

impl Sealer for TestSealer {
    fn address(&self) -> Address {
        hemi_chain::eth_address(
            &bitcoin::secp256k1::SecretKey::from_slice(self.0.as_slice()).expect("key"),
        )
    }
    fn seal(&self, chain_id: u64, block_hash: B256) -> Result<hemi_chain::Seal, SealError> {
        seal(chain_id, block_hash, self.0)
    }
}

fn bitcoin() -> BitcoinPin {
    let store = Arc::new(ChainStore::in_memory(ChainParams::new(Network::Regtest)).expect("store"));
    let node = RegtestNode::new(store.clone());
    let key = hemi_btc_wallet::Key::from_seed("chain-import-test");
    node.mine(101, &key.script_pubkey(hemi_btc_wallet::KeyKind::P2wpkh))
        .expect("mine");
    let pinned = store.tip().expect("tip");
    BitcoinPin {
        view: store,
        pinned,
        network: Network::Regtest,
    }
}

fn attrs(pin: &BitcoinPin) -> BtcAttributes {
    BtcAttributes {
        canonical_tip: pin.pinned.hash,
        headers: vec![],
    }
}

fn sequencer_address() -> Address {
    hemi_chain::eth_address(
        &bitcoin::secp256k1::SecretKey::from_slice(SEQUENCER.as_slice()).expect("key"),
    )
}

fn transfer(secret: [u8; 32], nonce: u64, to: Address, value: u64) -> SignedTx {
    let tx = TxEip1559 {
        chain_id: 31337,
        nonce,
        gas_limit: 21_000,
        max_fee_per_gas: 10_000_000_000,
        max_priority_fee_per_gas: 1_000_000_000,
        to: TxKind::Call(to),
        value: U256::from(value),
        access_list: Default::default(),
        input: Bytes::new(),
    };
    let sig =
        alloy_consensus::crypto::secp256k1::sign_message(B256::from(secret), tx.signature_hash())
            .expect("sign");
    let env = TxEnvelope::from(tx.into_signed(sig));
    let raw = env.encoded_2718();
    SignedTx::recover(L2Tx::decode_2718(&raw).expect("decode")).expect("recover")
}

/// Block `number` as a follower receives it: `debug_getRawBlock`'s bytes, decoded.
fn block_of(chain: &Chain, number: u64) -> L2Block {
    let raw = chain.raw_block(number).expect("read").expect("block");
    L2Block::decode(&raw).expect("decode")
}

fn resolver(pin: &BitcoinPin) -> impl Fn(&BtcAttributes) -> Result<BitcoinPin, ChainError> + '_ {
    move |_| Ok(pin.clone())
}

#[test]
fn a_follower_reaches_the_same_roots_and_refuses_tampered_blocks() {
    let pin = bitcoin();
    let accounts = dev_accounts(DEV_MNEMONIC, 2).expect("accounts");
    let a = Chain::open(None, ChainSpec::devnet().expect("spec")).expect("chain a");
    let b = Chain::open(None, ChainSpec::devnet().expect("spec")).expect("chain b");
    assert_eq!(a.head(), b.head(), "same genesis");
    let to = Address::repeat_byte(0x77);
    for n in 0..3u64 {
        let txs = vec![
            transfer(accounts[0].secret, n, to, 1_000 + n),
            transfer(accounts[1].secret, n, to, 5),
        ];
        let built = a
            .build_block(&pin, &attrs(&pin), txs, 1_000 + n, &TestSealer(SEQUENCER))
            .expect("build");
        assert!(built.rejected.is_empty(), "{:?}", built.rejected);
        assert_eq!(built.block.txs.len(), 3);
        b.import_block(
            &block_of(&a, n + 1),
            &SequencerAddress(sequencer_address()),
            &resolver(&pin),
        )
        .expect("import");
        assert_eq!(a.head(), b.head());
    }
    let expect = U256::from(1_000 + 1_001 + 1_002 + 15);
    let bal = |c: &Chain| {
        c.state_at(c.head().0)
            .expect("state")
            .account(&to)
            .expect("read")
            .map(|x| x.balance)
    };
    assert_eq!(bal(&a), Some(expect));
    assert_eq!(bal(&b), Some(expect));

    // Block 4, and tampered copies of it.
    a.build_block(
        &pin,
        &attrs(&pin),
        vec![transfer(accounts[0].secret, 3, to, 9)],
        2_000,
        &TestSealer(SEQUENCER),
    )
    .expect("build 4");
    let genuine = block_of(&a, 4);
    assert!(
        genuine.header.extra_data.is_empty(),
        "the seal is not in extraData"
    );
    assert_eq!(
        genuine.hash(),
        a.block(4).expect("read").expect("block").hash
    );
    let chain_id = a.spec().chain_id;
    let reseal = |mut blk: L2Block, key: B256| {
        blk.seal = seal(chain_id, blk.hash(), key).expect("seal");
        blk
    };
    let mut wrong_root = genuine.clone();
    wrong_root.header.state_root = keccak256("not the root");
    let wrong_root = reseal(wrong_root, SEQUENCER);
    let err = b
        .import_block(
            &wrong_root,
            &SequencerAddress(sequencer_address()),
            &resolver(&pin),
        )
        .expect_err("tampered root");
    assert!(err.to_string().contains("state root"), "{err}");

    let mut unsealed_change = genuine.clone();
    unsealed_change.header.gas_used += 1;
    let err = b
        .import_block(
            &unsealed_change,
            &SequencerAddress(sequencer_address()),
            &resolver(&pin),
        )
        .expect_err("changed after sealing");
    assert!(matches!(err, ChainError::InvalidSeal(_)), "{err}");
    assert!(
        err.to_string()
            .starts_with("invalid seal: block 4 is signed by 0x"),
        "{err}"
    );
    assert!(
        err.to_string()
            .ends_with(&format!("not by the sequencer {}", sequencer_address())),
        "{err}"
    );

    let other_key = reseal(genuine.clone(), B256::repeat_byte(0x22));
    let err = b
        .import_block(
            &other_key,
            &SequencerAddress(sequencer_address()),
            &resolver(&pin),
        )
        .expect_err("other sealer");
    assert!(matches!(err, ChainError::InvalidSeal(_)), "{err}");
    let other_address = hemi_chain::eth_address(
        &bitcoin::secp256k1::SecretKey::from_slice(&[0x22; 32]).expect("key"),
    );
    assert!(
        err.to_string().contains(&format!(
            "block 4 is signed by {other_address}, not by the sequencer {}",
            sequencer_address()
        )),
        "{err}"
    );

    // A changed seal (one bit of s) recovers someone else, or no one.
    let mut bad_seal = genuine.clone();
    bad_seal.seal.0[40] ^= 1;
    let err = b
        .import_block(
            &bad_seal,
            &SequencerAddress(sequencer_address()),
            &resolver(&pin),
        )
        .expect_err("tampered seal");
    assert!(matches!(err, ChainError::InvalidSeal(_)), "{err}");

    // A seal made for another chain id does not verify here.
    let mut other_chain = genuine.clone();
    other_chain.seal = seal(chain_id + 1, genuine.hash(), SEQUENCER).expect("seal");
    let err = b
        .import_block(
            &other_chain,
            &SequencerAddress(sequencer_address()),
            &resolver(&pin),
        )
        .expect_err("seal of another chain");
    assert!(err.to_string().contains("not by the sequencer"), "{err}");

    // extraData must stay empty, even when the sequencer's key sealed it.
    let mut extra = genuine.clone();
    extra.header.extra_data = Bytes::from(vec![0u8; 97]);
    let extra = reseal(extra, SEQUENCER);
    let err = b
        .import_block(
            &extra,
            &SequencerAddress(sequencer_address()),
            &resolver(&pin),
        )
        .expect_err("extraData");
    assert!(err.to_string().contains("extraData is 97 bytes"), "{err}");

    let mut other_body = genuine.clone();
    other_body.txs[1] = transfer(accounts[0].secret, 3, to, 10).tx;
    let err = b
        .import_block(
            &other_body,
            &SequencerAddress(sequencer_address()),
            &resolver(&pin),
        )
        .expect_err("other body");
    assert!(err.to_string().contains("transactions root"), "{err}");

    // A PoP payout Bitcoin does not back (nothing was published), sealed by the right key
    // with a consistent transactions root: refused by the payout check.
    let mut minted = genuine.clone();
    minted.txs.insert(
        1,
        L2Tx::PopPayout(hemi_chain::PopPayoutTx {
            keystone: 0,
            payouts: vec![hemi_chain::PopPayout {
                miner: Address::repeat_byte(0x66),
                amount: U256::from(10u64).pow(U256::from(18u64)),
                relative_height: 0,
                bitcoin_txid: B256::repeat_byte(0x99),
            }],
        }),
    );
    minted.header.transactions_root = hemi_chain::block::transactions_root(&minted.txs);
    let minted = reseal(minted, SEQUENCER);
    let err = b
        .import_block(
            &minted,
            &SequencerAddress(sequencer_address()),
            &resolver(&pin),
        )
        .expect_err("unbacked payout");
    assert!(
        err.to_string()
            .contains("its PoP payout pays keystone 0 to 1 publication(s), but Bitcoin up to the pinned block says nothing"),
        "{err}"
    );

    assert_eq!(b.head().0, 3, "nothing refused was committed");
    b.import_block(
        &genuine,
        &SequencerAddress(sequencer_address()),
        &resolver(&pin),
    )
    .expect("the genuine block still imports");
    assert_eq!(a.head(), b.head());
}

#[test]
fn state_persists_proofs_verify_and_history_is_readable() {
    let pin = bitcoin();
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("l2.redb");
    let accounts = dev_accounts(DEV_MNEMONIC, 1).expect("accounts");
    let to = Address::repeat_byte(0x55);
    let head = {
        let chain = Chain::open(Some(&path), ChainSpec::devnet().expect("spec")).expect("open");
        for n in 0..3u64 {
            chain
                .build_block(
                    &pin,
                    &attrs(&pin),
                    vec![transfer(accounts[0].secret, n, to, 100)],
                    10 + n,
                    &TestSealer(SEQUENCER),
                )
                .expect("build");
        }
        chain.head()
    };
    let chain = Chain::open(Some(&path), ChainSpec::devnet().expect("spec")).expect("reopen");
    assert_eq!(chain.head(), head);
    // History: after block n the recipient had 100 * n wei.
    for n in 0..=3u64 {
        let got = chain
            .state_at(n)
            .expect("state")
            .account(&to)
            .expect("read")
            .map(|a| a.balance)
            .unwrap_or_default();
        assert_eq!(got, U256::from(100 * n), "after block {n}");
    }
    // eth_getProof: the account proof verifies against the head's state root.
    let root = chain.header(3).expect("read").expect("header").state_root;
    for addr in [to, accounts[0].address, Address::repeat_byte(0x99)] {
        let (_, p) = chain.proof(addr, &[]).expect("proof");
        let exists = addr != Address::repeat_byte(0x99);
        let expected = exists.then(|| p.account.trie_value());
        alloy_trie::proof::verify_proof(
            root,
            alloy_trie::Nibbles::unpack(keccak256(addr)),
            expected,
            &p.account_proof,
        )
        .unwrap_or_else(|e| panic!("proof of {addr}: {e}"));
    }
    // Another chain spec cannot open this database.
    let mut other = ChainSpec::devnet().expect("spec");
    other.chain_id = 1;
    other.alloc.clear();
    drop(chain);
    let err = Chain::open(Some(&path), other).expect_err("other genesis");
    assert!(matches!(err, ChainError::GenesisMismatch { .. }), "{err}");
}

fn deploy(secret: [u8; 32], nonce: u64, init: &[u8]) -> SignedTx {
    let tx = TxEip1559 {
        chain_id: 31337,
        nonce,
        gas_limit: 200_000,
        max_fee_per_gas: 10_000_000_000,
        max_priority_fee_per_gas: 1_000_000_000,
        to: TxKind::Create,
        value: U256::ZERO,
        access_list: Default::default(),
        input: Bytes::copy_from_slice(init),
    };
    let sig =
        alloy_consensus::crypto::secp256k1::sign_message(B256::from(secret), tx.signature_hash())
            .expect("sign");
    let raw = TxEnvelope::from(tx.into_signed(sig)).encoded_2718();
    SignedTx::recover(L2Tx::decode_2718(&raw).expect("decode")).expect("recover")
}

/// Init code storing `value` at slots 1 and 2 (no runtime code).
fn storing(value: u8) -> Vec<u8> {
    vec![
        0x60, value, 0x60, 0x01, 0x55, 0x60, value, 0x60, 0x02, 0x55, 0x00,
    ]
}

#[test]
fn unwinding_restores_the_state_and_another_branch_imports_in_its_place() {
    let pin = bitcoin();
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("l2.redb");
    let accounts = dev_accounts(DEV_MNEMONIC, 2).expect("accounts");
    let to = Address::repeat_byte(0x66);
    let spec = || ChainSpec::devnet().expect("spec");
    // Branch A: blocks 1..=3 (transfers; block 2 deploys a contract with storage).
    let a = Chain::open(None, spec()).expect("a");
    let sender = accounts[0].address;
    let contract = sender.create(1);
    a.build_block(
        &pin,
        &attrs(&pin),
        vec![transfer(accounts[0].secret, 0, to, 10)],
        100,
        &TestSealer(SEQUENCER),
    )
    .expect("a1");
    a.build_block(
        &pin,
        &attrs(&pin),
        vec![
            deploy(accounts[0].secret, 1, &storing(7)),
            transfer(accounts[1].secret, 0, to, 20),
        ],
        101,
        &TestSealer(SEQUENCER),
    )
    .expect("a2");
    a.build_block(
        &pin,
        &attrs(&pin),
        vec![transfer(accounts[0].secret, 2, to, 30)],
        102,
        &TestSealer(SEQUENCER),
    )
    .expect("a3");
    // Branch B forks after block 1: another block 2.
    let b = Chain::open(None, spec()).expect("b");
    b.import_block(
        &block_of(&a, 1),
        &SequencerAddress(sequencer_address()),
        &resolver(&pin),
    )
    .expect("b1");
    b.build_block(
        &pin,
        &attrs(&pin),
        vec![
            transfer(accounts[1].secret, 0, to, 5),
            deploy(accounts[0].secret, 1, &storing(9)),
        ],
        101,
        &TestSealer(SEQUENCER),
    )
    .expect("b2");

    let node = Chain::open(Some(&path), spec()).expect("node");
    for n in 1..=3 {
        node.import_block(
            &block_of(&a, n),
            &SequencerAddress(sequencer_address()),
            &resolver(&pin),
        )
        .expect("import a");
    }
    assert_eq!(node.head(), a.head());
    // The user transactions of block 2 (its Bitcoin-attributes transaction repeats block 1's).
    let a2_txs: Vec<B256> = a.block(2).expect("read").expect("a2").txs[1..]
        .iter()
        .map(|t| t.hash)
        .collect();
    let attributes = a.block(1).expect("read").expect("a1").txs[0].hash;
    assert_eq!(
        a.tx_location(&attributes).expect("read"),
        Some((3, 0)),
        "indexed at its newest copy"
    );

    let removed = node.unwind_to(1).expect("unwind");
    assert_eq!(
        removed.iter().map(|b| b.hash()).collect::<Vec<_>>(),
        vec![block_of(&a, 2).hash(), block_of(&a, 3).hash()],
        "the removed blocks, oldest first"
    );
    assert_eq!(
        node.head(),
        (1, a.header(1).expect("read").expect("h").hash_slow())
    );
    assert!(node.block(2).expect("read").is_none());
    for h in &a2_txs {
        assert_eq!(
            node.tx_location(h).expect("read"),
            None,
            "tx {h} left with its block"
        );
    }
    assert_eq!(
        node.tx_location(&attributes).expect("read"),
        Some((1, 0)),
        "the repeated attributes transaction now points at block 1's copy"
    );
    assert_eq!(node.unwinds_since(0), (1, Some(1)));
    let state = node.state_at(1).expect("state");
    assert_eq!(
        state.account(&to).expect("read").map(|x| x.balance),
        Some(U256::from(10))
    );
    assert_eq!(
        state.account(&contract).expect("read"),
        None,
        "the contract is gone"
    );
    assert_eq!(
        state
            .storage(&contract, &B256::with_last_byte(1))
            .expect("read"),
        U256::ZERO
    );

    // Branch B imports where A was, and survives reopening.
    node.import_block(
        &block_of(&b, 2),
        &SequencerAddress(sequencer_address()),
        &resolver(&pin),
    )
    .expect("b2 on the unwound chain");
    assert_eq!(node.head(), b.head());
    drop(node);
    let node = Chain::open(Some(&path), spec()).expect("reopen");
    assert_eq!(node.head(), b.head());
    let state = node.state_at(2).expect("state");
    assert_eq!(
        state
            .storage(&contract, &B256::with_last_byte(2))
            .expect("read"),
        U256::from(9)
    );
    assert_eq!(
        state.account(&to).expect("read").map(|x| x.balance),
        Some(U256::from(15))
    );

    // And back to A: the removed blocks import again, to A's roots; proofs verify.
    let removed_b = node.unwind_to(1).expect("unwind b");
    assert_eq!(removed_b.len(), 1);
    for block in &removed {
        node.import_block(
            block,
            &SequencerAddress(sequencer_address()),
            &resolver(&pin),
        )
        .expect("re-import a");
    }
    assert_eq!(node.head(), a.head());
    let root = node.header(3).expect("read").expect("h").state_root;
    let (_, p) = node
        .proof(contract, &[B256::with_last_byte(1)])
        .expect("proof");
    alloy_trie::proof::verify_proof(
        root,
        alloy_trie::Nibbles::unpack(keccak256(contract)),
        Some(p.account.trie_value()),
        &p.account_proof,
    )
    .expect("account proof after the round trip");
    assert_eq!(p.storage[0].1, U256::from(7));
    assert!(matches!(
        node.unwind_to(9),
        Err(ChainError::UnknownBlock(9))
    ));
    assert!(node.unwind_to(3).expect("no-op").is_empty());
}

/// Balances of `who` and slots 1..=2 of `contracts` after every block up to the head.
fn state_table(chain: &Chain, who: &[Address], contracts: &[Address]) -> Vec<Vec<U256>> {
    (0..=chain.head().0)
        .map(|n| {
            let s = chain.state_at(n).expect("state");
            let mut row: Vec<U256> = who
                .iter()
                .map(|a| {
                    s.account(a)
                        .expect("read")
                        .map(|x| x.balance)
                        .unwrap_or_default()
                })
                .collect();
            for c in contracts {
                for slot in 1..=2u8 {
                    row.push(s.storage(c, &B256::with_last_byte(slot)).expect("read"));
                }
            }
            row
        })
        .collect()
}

#[test]
fn state_in_memory_replays_after_a_crash_and_rebuilds_from_the_blocks() {
    let pin = bitcoin();
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("l2.redb");
    let spec = || ChainSpec::devnet().expect("spec");
    let accounts = dev_accounts(DEV_MNEMONIC, 1).expect("accounts");
    let key = accounts[0].secret;
    let to = Address::repeat_byte(0x77);
    let (c1, c2) = (accounts[0].address.create(1), accounts[0].address.create(4));
    let chain = Chain::open(Some(&path), spec()).expect("open");
    let blocks: Vec<Vec<SignedTx>> = vec![
        vec![transfer(key, 0, to, 1)],
        vec![deploy(key, 1, &storing(7)), transfer(key, 2, to, 2)],
        vec![transfer(key, 3, to, 3)],
        vec![deploy(key, 4, &storing(5))],
        vec![transfer(key, 5, to, 4)],
    ];
    for (i, txs) in blocks.into_iter().enumerate() {
        let built = chain
            .build_block(
                &pin,
                &attrs(&pin),
                txs,
                100 + i as u64,
                &TestSealer(SEQUENCER),
            )
            .expect("build");
        assert!(built.rejected.is_empty(), "{:?}", built.rejected);
        if i == 2 {
            // Blocks 1..=3 in the state database, 4..=5 only in memory.
            chain.persist().expect("persist");
        }
    }
    let who = [to, accounts[0].address];
    let before = state_table(&chain, &who, &[c1, c2]);
    assert_eq!(before[5][0], U256::from(10));
    assert_eq!(before[5][2..], [7, 7, 5, 5].map(U256::from));
    assert_eq!(
        before[3][4..],
        [0, 0].map(U256::from),
        "c2 not yet deployed"
    );
    let head = chain.head();
    let root = chain.header(5).expect("read").expect("h").state_root;
    chain.close_without_persisting();

    let check = |chain: &Chain, what: &str| {
        assert_eq!(chain.head(), head, "{what}: head");
        assert_eq!(state_table(chain, &who, &[c1, c2]), before, "{what}: state");
        let (_, p) = chain.proof(c2, &[B256::with_last_byte(1)]).expect("proof");
        alloy_trie::proof::verify_proof(
            root,
            alloy_trie::Nibbles::unpack(keccak256(c2)),
            Some(p.account.trie_value()),
            &p.account_proof,
        )
        .unwrap_or_else(|e| panic!("{what}: proof: {e}"));
    };
    // The crash lost blocks 4 and 5's state in memory: the reopen replays their changesets.
    let chain = Chain::open(Some(&path), spec()).expect("reopen after the crash");
    check(&chain, "after a crash");
    chain
        .build_block(
            &pin,
            &attrs(&pin),
            vec![transfer(key, 6, to, 5)],
            200,
            &TestSealer(SEQUENCER),
        )
        .expect("a block on the replayed state");
    let root6 = chain.header(6).expect("read").expect("h").state_root;
    drop(chain);

    // Without its state database the chain rebuilds the state from the blocks' changesets.
    std::fs::remove_file(dir.path().join("l2-state.redb")).expect("remove the state database");
    let chain = Chain::open(Some(&path), spec()).expect("reopen without state");
    assert_eq!(chain.head().0, 6);
    assert_eq!(
        chain
            .state_at(6)
            .expect("state")
            .account(&to)
            .expect("read")
            .map(|a| a.balance),
        Some(U256::from(15))
    );
    assert_eq!(
        chain
            .state_at(3)
            .expect("state")
            .account(&to)
            .expect("read")
            .map(|a| a.balance),
        Some(U256::from(6)),
        "history rebuilt too"
    );
    let (_, p) = chain.proof(to, &[]).expect("proof");
    alloy_trie::proof::verify_proof(
        root6,
        alloy_trie::Nibbles::unpack(keccak256(to)),
        Some(p.account.trie_value()),
        &p.account_proof,
    )
    .expect("proof after the rebuild");
}

/// A devnet that takes devnet transactions, a follower of it, and a chain that takes none.
fn devnet_follower_and_other() -> (Chain, Chain, Chain) {
    let mut spec = ChainSpec::devnet().expect("spec");
    spec.dev_state = true;
    let a = Chain::open(None, spec.clone()).expect("devnet");
    let b = Chain::open(None, spec.clone()).expect("devnet follower");
    spec.dev_state = false;
    let c = Chain::open(None, spec).expect("a chain that takes none");
    (a, b, c)
}

#[test]
fn devnet_state_changes_re_execute_on_a_devnet_follower_and_are_refused_elsewhere() {
    use hemi_chain::dev::{DevChange, DevOp};
    let pin = bitcoin();
    let (a, b, c) = devnet_follower_and_other();
    let who = Address::repeat_byte(0x31);
    let code = Bytes::from_static(&[0x60, 0x2a, 0x60, 0x00, 0x52, 0x60, 0x20, 0x60, 0x00, 0xf3]);
    let changes = vec![
        DevChange::new(who, DevOp::Balance(U256::from(12_345u64))),
        DevChange::new(who, DevOp::Nonce(9)),
        DevChange::new(who, DevOp::Code(code.clone())),
        DevChange::new(who, DevOp::Storage(U256::from(5u64), U256::from(77u64))),
        DevChange::new(who, DevOp::Storage(U256::from(6u64), U256::from(78u64))),
    ];
    a.build_block_with_dev(
        &pin,
        &attrs(&pin),
        vec![],
        1_000,
        &TestSealer(SEQUENCER),
        changes,
    )
    .expect("build");
    let block = block_of(&a, 1);
    assert!(matches!(block.txs[1], L2Tx::DevState(_)), "{:?}", block.txs);
    let seq = SequencerAddress(sequencer_address());
    b.import_block(&block, &seq, &resolver(&pin))
        .expect("a devnet follower takes it");
    assert_eq!(a.head(), b.head(), "same roots");
    let state = b.state_at(1).expect("state");
    let acct = state.account(&who).expect("read").expect("account");
    assert_eq!((acct.balance, acct.nonce), (U256::from(12_345u64), 9));
    let slot = |k: u64| {
        state
            .storage(&who, &B256::from(U256::from(k).to_be_bytes::<32>()))
            .expect("slot")
    };
    assert_eq!((slot(5), slot(6)), (U256::from(77u64), U256::from(78u64)));
    let err = c
        .import_block(&block, &seq, &resolver(&pin))
        .expect_err("refused where the spec takes none");
    assert!(
        err.to_string()
            .contains("devnet state change: this chain takes none"),
        "{err}"
    );
    // Building one there is refused too, and a malformed change anywhere.
    let err = c
        .build_block_with_dev(
            &pin,
            &attrs(&pin),
            vec![],
            1_000,
            &TestSealer(SEQUENCER),
            vec![DevChange::new(who, DevOp::Nonce(1))],
        )
        .expect_err("no dev state here");
    assert!(err.to_string().contains("takes none"), "{err}");
    let mut bad = DevChange::new(who, DevOp::Nonce(1));
    bad.value = Bytes::from_static(&[1, 2, 3]);
    let err = a
        .build_block_with_dev(
            &pin,
            &attrs(&pin),
            vec![],
            1_001,
            &TestSealer(SEQUENCER),
            vec![bad],
        )
        .expect_err("malformed");
    assert!(
        err.to_string().contains("a nonce is 8 bytes, got 3"),
        "{err}"
    );
}

#[test]
fn impersonated_transactions_re_execute_on_a_devnet_follower_and_are_refused_elsewhere() {
    let pin = bitcoin();
    let (a, b, c) = devnet_follower_and_other();
    // A funded dev account nobody signs for here: the transaction carries no real signature.
    let whale = dev_accounts(DEV_MNEMONIC, 1).expect("accounts")[0].address;
    let to = Address::repeat_byte(0x44);
    let inner = TxEip1559 {
        chain_id: a.spec().chain_id,
        nonce: 0,
        gas_limit: 21_000,
        max_fee_per_gas: 100_000_000_000,
        max_priority_fee_per_gas: 1,
        to: TxKind::Call(to),
        value: U256::from(777u64),
        access_list: Default::default(),
        input: Bytes::new(),
    }
    .into_signed(alloy_primitives::Signature::new(
        U256::ZERO,
        U256::ZERO,
        false,
    ));
    let imp = SignedTx::recover(L2Tx::Impersonated(hemi_chain::ImpersonatedTx {
        from: whale,
        tx: TxEnvelope::Eip1559(inner),
    }))
    .expect("recover");
    assert_eq!(imp.sender, whale);
    let built = a
        .build_block(
            &pin,
            &attrs(&pin),
            vec![imp.clone()],
            1_000,
            &TestSealer(SEQUENCER),
        )
        .expect("build");
    assert!(built.rejected.is_empty(), "{:?}", built.rejected);
    let block = block_of(&a, 1);
    assert_eq!(block.txs[1].hash(), imp.hash);
    let seq = SequencerAddress(sequencer_address());
    b.import_block(&block, &seq, &resolver(&pin))
        .expect("a devnet follower takes it");
    assert_eq!(a.head(), b.head(), "same roots");
    let state = b.state_at(1).expect("state");
    assert_eq!(
        state.account(&to).expect("read").expect("account").balance,
        U256::from(777u64)
    );
    assert_eq!(
        state.account(&whale).expect("read").expect("whale").nonce,
        1
    );
    let err = c
        .import_block(&block, &seq, &resolver(&pin))
        .expect_err("refused where the spec takes none");
    assert!(
        err.to_string()
            .contains("impersonated transactions: this chain takes none"),
        "{err}"
    );
}

/// Forced inclusion's rule 2 judges each due forced transaction on its own: a sender's forced
/// transaction with a nonce far ahead, published first, does not keep its next one (nonce 0)
/// out; a block that leaves that one out is refused. Under rule 1 (chains made before rule 2)
/// the first keeps the second out, so a block without either is valid there.
#[test]
fn due_forced_transactions_are_judged_each_on_its_own_under_rule_2() {
    use hemi_btc_view::AsOf;
    use hemi_btc_wallet::{build_payment, Key, KeyKind};
    use hemi_chain::forced::{forced_script, ForcedInclusionParams};

    for rule in [1u32, 2] {
        let store =
            Arc::new(ChainStore::in_memory(ChainParams::new(Network::Regtest)).expect("store"));
        let node = RegtestNode::new(store.clone());
        let key = Key::from_seed("chain-forced-rule-test");
        let script = key.script_pubkey(KeyKind::P2wpkh);
        node.mine(101, &script).expect("mine");
        let pin_at = |store: &Arc<ChainStore>| BitcoinPin {
            view: store.clone(),
            pinned: store.tip().expect("tip"),
            network: Network::Regtest,
        };
        let before = pin_at(&store);

        let mut spec = ChainSpec::devnet().expect("spec");
        spec.forced_inclusion = Some(ForcedInclusionParams {
            confirmations: 1,
            window: 1,
            taproot_envelopes: true,
            rule,
        });
        let chain_id = spec.chain_id;
        let censor = Chain::open(None, spec.clone()).expect("censor");
        let honest = Chain::open(None, spec.clone()).expect("honest");
        let follower = Chain::open(None, spec).expect("follower");
        let sealer = TestSealer(SEQUENCER);
        let verifier = SequencerAddress(sequencer_address());
        for c in [&censor, &honest] {
            c.build_block(&before, &attrs(&before), vec![], 1_000, &sealer)
                .expect("block 1");
        }
        follower
            .import_block(&block_of(&censor, 1), &verifier, &resolver(&before))
            .expect("import 1");

        // One Bitcoin transaction: the nonce-99 transfer, then the nonce-0 one, same sender.
        let sender = dev_accounts(DEV_MNEMONIC, 1).expect("accounts")[0].secret;
        let to = Address::repeat_byte(0x5e);
        let ahead = transfer(sender, 99, to, 1);
        let next = transfer(sender, 0, to, 2);
        let coin = store
            .utxos_by_script(&script, AsOf::Tip)
            .expect("utxos")
            .into_iter()
            .min_by_key(|u| u.height)
            .expect("a coin");
        let carrier = |t: &SignedTx| bitcoin::TxOut {
            value: bitcoin::Amount::ZERO,
            script_pubkey: forced_script(chain_id, &t.tx.encoded_2718()),
        };
        let published = build_payment(
            &key,
            KeyKind::P2wpkh,
            &[(
                coin.outpoint,
                bitcoin::TxOut {
                    value: bitcoin::Amount::from_sat(coin.value),
                    script_pubkey: coin.script_pubkey,
                },
            )],
            vec![carrier(&ahead), carrier(&next)],
            2.0,
        )
        .expect("payment");
        node.mine_block_with(&script, vec![published])
            .expect("mine the forced transactions");
        let due = pin_at(&store);

        // Block 2 is the deadline of both. The censor builds it without them.
        censor.set_skip_forced(true);
        censor
            .build_block(&due, &attrs(&due), vec![], 1_001, &sealer)
            .expect("censored block 2");
        let censored = follower.import_block(&block_of(&censor, 2), &verifier, &resolver(&due));
        // The honest builder runs them as its rule's check does: under rule 2 it includes the
        // nonce-0 one (not the other); under rule 1 the nonce-99 one holds the sender back.
        let built = honest
            .build_block(&due, &attrs(&due), vec![], 1_001, &sealer)
            .expect("honest block 2");
        let hashes: Vec<B256> = built.block.txs.iter().map(|t| t.hash).collect();
        assert_eq!(
            hashes.contains(&next.hash),
            rule == 2,
            "rule {rule}: {hashes:?}"
        );
        assert!(!hashes.contains(&ahead.hash), "rule {rule}");
        match rule {
            1 => {
                censored.expect("rule 1: the nonce-99 one keeps the next one out");
            }
            _ => {
                let e = censored.expect_err("rule 2: the nonce-0 one was due on its own");
                assert!(
                    e.to_string().contains(&next.hash.to_string()),
                    "rule {rule}: {e}"
                );
                follower
                    .import_block(&block_of(&honest, 2), &verifier, &resolver(&due))
                    .expect("the honest block");
            }
        }
    }
}

/// The forced-inclusion rule is part of the chain: a reopened chain keeps the parameters it
/// was made with whatever the spec now says; a chain made before they were stored ran rule 1
/// and keeps it; a rule this build does not know is refused.
#[test]
fn a_reopened_chain_keeps_the_forced_inclusion_rule_it_was_made_with() {
    use hemi_chain::forced::ForcedInclusionParams;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("l2.redb");
    let with = |rule: u32, window: u64| {
        let mut spec = ChainSpec::devnet().expect("spec");
        spec.forced_inclusion = Some(ForcedInclusionParams {
            confirmations: 2,
            window,
            taproot_envelopes: true,
            rule,
        });
        spec
    };
    let made = with(2, 10).forced_inclusion;
    drop(Chain::open(Some(&path), with(2, 10)).expect("make"));
    let reopened = Chain::open(Some(&path), with(1, 99)).expect("reopen");
    assert_eq!(reopened.spec().forced_inclusion, made, "kept as made");
    drop(reopened);

    // A database from before the parameters were stored.
    {
        const META: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("meta");
        let db = redb::Database::open(&path).expect("redb");
        let w = db.begin_write().expect("write");
        w.open_table(META)
            .expect("meta")
            .remove("forced_inclusion")
            .expect("remove");
        w.commit().expect("commit");
    }
    let old = Chain::open(Some(&path), with(2, 10)).expect("reopen an older chain");
    assert_eq!(old.spec().forced_inclusion.map(|p| p.rule), Some(1));
    drop(old);
    let again = Chain::open(Some(&path), with(2, 10)).expect("and again");
    assert_eq!(again.spec().forced_inclusion.map(|p| p.rule), Some(1));
    drop(again);

    let unknown = Chain::open(None, with(3, 10)).expect_err("rule 3");
    assert!(
        unknown.to_string().contains("knows rules 1 and 2"),
        "{unknown}"
    );
}
