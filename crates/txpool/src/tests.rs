//! Pool behaviour, signed with the standard dev keys (hardhat/anvil accounts 0-2).

use std::collections::HashMap;

use alloy_consensus::{
    crypto::secp256k1::sign_message, SignableTransaction, Signed, TxEip1559, TxEip2930, TxEnvelope,
    TxLegacy,
};
use alloy_eips::{
    eip2718::Encodable2718,
    eip2930::{AccessList, AccessListItem},
};
use alloy_primitives::{address, b256, Address, Bytes, Signature, TxKind, B256, U256};
use proptest::prelude::*;

use crate::*;

const CHAIN: u64 = 743_111;
const GAS_LIMIT: u64 = 30_000_000;
const KEY0: B256 = b256!("ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80");
const ADDR0: Address = address!("f39Fd6e51aad88F6F4ce6aB8827279cffFb92266");
const KEY1: B256 = b256!("59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d");
const ADDR1: Address = address!("70997970C51812dc3A010C7d01b50e0d17dc79C8");
const KEY2: B256 = b256!("5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a");
const ADDR2: Address = address!("3C44CdDdB6a900fa2b585dd299e03d12FA4293BC");
const TO: Address = address!("00000000000000000000000000000000000000aa");
const GWEI: u128 = 1_000_000_000;

#[derive(Default)]
struct State {
    nonces: HashMap<Address, u64>,
    balances: HashMap<Address, U256>,
}

impl AccountState for State {
    fn nonce(&self, a: Address) -> u64 {
        self.nonces.get(&a).copied().unwrap_or(0)
    }
    fn balance(&self, a: Address) -> U256 {
        self.balances
            .get(&a)
            .copied()
            .unwrap_or(U256::from(10u128.pow(24)))
    }
}

fn sign<T>(tx: T, key: B256) -> Vec<u8>
where
    T: SignableTransaction<Signature>,
    TxEnvelope: From<Signed<T>>,
{
    let sig = sign_message(key, tx.signature_hash()).expect("valid dev key");
    TxEnvelope::from(tx.into_signed(sig)).encoded_2718()
}

fn eip1559(nonce: u64, max_fee: u128, tip: u128) -> TxEip1559 {
    TxEip1559 {
        chain_id: CHAIN,
        nonce,
        gas_limit: 21_000,
        max_fee_per_gas: max_fee,
        max_priority_fee_per_gas: tip,
        to: TxKind::Call(TO),
        value: U256::ZERO,
        access_list: AccessList::default(),
        input: Bytes::new(),
    }
}

fn tx(key: B256, nonce: u64, max_fee: u128, tip: u128) -> Vec<u8> {
    sign(eip1559(nonce, max_fee, tip), key)
}

fn pool() -> TxPool {
    TxPool::new(PoolConfig::new(CHAIN, GAS_LIMIT))
}

fn add(pool: &mut TxPool, raw: &[u8]) -> Result<TxHash, PoolError> {
    pool.add_raw(raw, &State::default())
}

#[test]
fn recovers_the_dev_key_address_and_keeps_the_raw_bytes() {
    let mut p = pool();
    let raw = tx(KEY0, 0, 10 * GWEI, GWEI);
    let hash = add(&mut p, &raw).expect("valid tx");
    let got = p.get(&hash).expect("pooled");
    assert_eq!(got.sender(), ADDR0);
    assert_eq!(got.raw().as_ref(), raw.as_slice());
    assert_eq!(got.nonce(), 0);
    assert_eq!(p.status(), (1, 0));
    // The other dev keys recover to their known addresses too.
    let h1 = add(&mut p, &tx(KEY1, 0, GWEI, GWEI)).expect("valid");
    let h2 = add(&mut p, &tx(KEY2, 0, GWEI, GWEI)).expect("valid");
    assert_eq!(p.get(&h1).map(PooledTx::sender), Some(ADDR1));
    assert_eq!(p.get(&h2).map(PooledTx::sender), Some(ADDR2));
}

#[test]
fn legacy_eip155_and_eip2930_are_accepted_with_gas_price_as_both_fees() {
    let mut p = pool();
    let legacy = TxLegacy {
        chain_id: Some(CHAIN),
        nonce: 0,
        gas_price: 3 * GWEI,
        gas_limit: 21_000,
        to: TxKind::Call(TO),
        value: U256::from(1),
        input: Bytes::new(),
    };
    let h = add(&mut p, &sign(legacy, KEY0)).expect("legacy with EIP-155");
    let t = p.get(&h).expect("pooled");
    assert_eq!(
        (t.max_fee_per_gas(), t.max_priority_fee_per_gas()),
        (3 * GWEI, 3 * GWEI)
    );
    let eip2930 = TxEip2930 {
        chain_id: CHAIN,
        nonce: 1,
        gas_price: 3 * GWEI,
        gas_limit: 21_000,
        to: TxKind::Call(TO),
        value: U256::ZERO,
        access_list: AccessList::default(),
        input: Bytes::new(),
    };
    add(&mut p, &sign(eip2930, KEY0)).expect("EIP-2930");
    assert_eq!(p.status(), (2, 0));
}

#[test]
fn unprotected_legacy_is_refused() {
    let legacy = TxLegacy {
        chain_id: None,
        nonce: 0,
        gas_price: GWEI,
        gas_limit: 21_000,
        to: TxKind::Call(TO),
        value: U256::ZERO,
        input: Bytes::new(),
    };
    let err = add(&mut pool(), &sign(legacy, KEY0)).expect_err("pre-EIP-155");
    assert_eq!(err, PoolError::Unprotected);
    assert_eq!(
        err.to_string(),
        "only replay-protected (EIP-155) transactions allowed over RPC"
    );
}

#[test]
fn wrong_chain_id_is_refused() {
    let mut t = eip1559(0, GWEI, GWEI);
    t.chain_id = 1;
    let err = add(&mut pool(), &sign(t, KEY0)).expect_err("other chain");
    assert_eq!(
        err,
        PoolError::InvalidChainId {
            expected: CHAIN,
            got: 1
        }
    );
    assert!(err
        .to_string()
        .starts_with("invalid sender: invalid chain id for signer"));
}

#[test]
fn bad_signature_is_invalid_sender() {
    let t = eip1559(0, GWEI, GWEI);
    // r = 0 is not a valid signature.
    let zero_r = Signature::new(U256::ZERO, U256::from(1), false);
    let raw = TxEnvelope::from(t.clone().into_signed(zero_r)).encoded_2718();
    let err = add(&mut pool(), &raw).expect_err("bad sig");
    assert_eq!(err.to_string(), "invalid sender");
    // High s (EIP-2) is refused too.
    let sig = sign_message(KEY0, t.signature_hash()).expect("sign");
    let n = U256::from_str_radix(
        "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141",
        16,
    )
    .expect("curve order");
    let high = Signature::new(sig.r(), n - sig.s(), !sig.v());
    let raw = TxEnvelope::from(t.into_signed(high)).encoded_2718();
    assert_eq!(add(&mut pool(), &raw), Err(PoolError::InvalidSender));
}

#[test]
fn unsupported_types_and_garbage_are_refused() {
    for ty in [0u8, 3, 4, 5, 0x7f] {
        let err = add(&mut pool(), &[ty, 0xc0]).expect_err("type");
        assert_eq!(err, PoolError::TxTypeNotSupported(ty));
        assert!(err
            .to_string()
            .starts_with("transaction type not supported"));
    }
    assert!(matches!(add(&mut pool(), &[]), Err(PoolError::Decode(_))));
    assert!(matches!(
        add(&mut pool(), &[0x02, 0x01]),
        Err(PoolError::Decode(_))
    ));
    // A valid transaction with a trailing byte is not an exact encoding.
    let mut raw = tx(KEY0, 0, GWEI, GWEI);
    raw.push(0);
    assert!(matches!(add(&mut pool(), &raw), Err(PoolError::Decode(_))));
    let big = vec![0xc0; MAX_TX_SIZE + 1];
    assert!(matches!(
        add(&mut pool(), &big),
        Err(PoolError::OversizedData { .. })
    ));
}

#[test]
fn already_known() {
    let mut p = pool();
    let raw = tx(KEY0, 0, GWEI, GWEI);
    add(&mut p, &raw).expect("first");
    let err = add(&mut p, &raw).expect_err("dup");
    assert_eq!(err.to_string(), "already known");
}

#[test]
fn nonce_too_low() {
    let mut p = pool();
    let state = State {
        nonces: HashMap::from([(ADDR0, 5)]),
        ..State::default()
    };
    let err = p
        .add_raw(&tx(KEY0, 4, GWEI, GWEI), &state)
        .expect_err("low");
    assert_eq!(
        err,
        PoolError::NonceTooLow {
            sender: ADDR0,
            tx: 4,
            state: 5
        }
    );
    assert!(err.to_string().starts_with("nonce too low"));
    p.add_raw(&tx(KEY0, 5, GWEI, GWEI), &state)
        .expect("exact nonce");
}

#[test]
fn insufficient_funds_alone_and_with_pooled_txs() {
    let mut p = pool();
    // Exactly two transactions' worth: 21000 gas * 1 gwei each.
    let one = U256::from(21_000 * GWEI);
    let state = State {
        balances: HashMap::from([(ADDR0, one * U256::from(2))]),
        ..State::default()
    };
    p.add_raw(&tx(KEY0, 0, GWEI, GWEI), &state).expect("1st");
    p.add_raw(&tx(KEY0, 1, GWEI, GWEI), &state).expect("2nd");
    let err = p
        .add_raw(&tx(KEY0, 2, GWEI, GWEI), &state)
        .expect_err("3rd overdraws");
    assert!(
        err.to_string()
            .starts_with("insufficient funds for gas * price + value"),
        "{err}"
    );
    let err = p
        .add_raw(&tx(KEY0, 0, 3 * GWEI, 3 * GWEI), &state)
        .expect_err("alone");
    assert!(matches!(
        err,
        PoolError::InsufficientFunds {
            queued: U256::ZERO,
            ..
        }
    ));
}

#[test]
fn replacement_needs_the_full_price_bump_on_both_fees() {
    let mut p = pool();
    let old = add(&mut p, &tx(KEY0, 0, 100 * GWEI, 10 * GWEI)).expect("old");
    // +9% on both: refused.
    let err = add(&mut p, &tx(KEY0, 0, 109 * GWEI, 109 * GWEI / 10)).expect_err("+9%");
    assert_eq!(err.to_string(), "replacement transaction underpriced");
    // +10% on the fee cap only: refused.
    let err = add(&mut p, &tx(KEY0, 0, 110 * GWEI, 10 * GWEI)).expect_err("tip not bumped");
    assert_eq!(err, PoolError::ReplacementUnderpriced);
    // +10% on both: accepted, and the old one is gone.
    let new = add(&mut p, &tx(KEY0, 0, 110 * GWEI, 11 * GWEI)).expect("+10%");
    assert!(p.get(&old).is_none());
    assert_eq!(p.get(&new).map(PooledTx::max_fee_per_gas), Some(110 * GWEI));
    assert_eq!(p.len(), 1);
}

#[test]
fn intrinsic_gas_too_low_and_its_formula() {
    let mut t = eip1559(0, GWEI, GWEI);
    t.input = Bytes::from(vec![0, 1, 0, 2]); // 2 zero + 2 non-zero = 8 + 32
    let err = add(&mut pool(), &sign(t.clone(), KEY0)).expect_err("needs 21040");
    assert_eq!(
        err,
        PoolError::IntrinsicGasTooLow {
            gas: 21_000,
            needed: 21_040
        }
    );
    assert!(err.to_string().starts_with("intrinsic gas too low"));
    t.gas_limit = 21_040;
    add(&mut pool(), &sign(t, KEY0)).expect("exactly enough");

    // Creation with 33 bytes of non-zero init code (2 words) and an access list of one
    // address with two keys: 21000 + 32000 + 33*16 + 2*2 + 2400 + 2*1900.
    let mut create = eip1559(0, GWEI, GWEI);
    create.to = TxKind::Create;
    create.input = Bytes::from(vec![0x60; 33]);
    create.access_list = AccessList(vec![AccessListItem {
        address: TO,
        storage_keys: vec![B256::ZERO, B256::repeat_byte(1)],
    }]);
    create.gas_limit = 1_000_000;
    let raw = sign(create, KEY0);
    let mut p = pool();
    let h = add(&mut p, &raw).expect("create");
    let env = p.get(&h).expect("pooled").envelope().clone();
    assert_eq!(
        intrinsic_gas(&env),
        21_000 + 32_000 + 33 * 16 + 2 * 2 + 2_400 + 2 * 1_900
    );
}

#[test]
fn oversized_init_code_is_refused() {
    let mut create = eip1559(0, GWEI, GWEI);
    create.to = TxKind::Create;
    create.input = Bytes::from(vec![0; MAX_INITCODE_SIZE + 1]);
    create.gas_limit = 10_000_000;
    let err = add(&mut pool(), &sign(create, KEY0)).expect_err("too big");
    assert!(err.to_string().starts_with("max initcode size exceeded"));
}

#[test]
fn exceeds_block_gas_limit() {
    let mut t = eip1559(0, GWEI, GWEI);
    t.gas_limit = GAS_LIMIT + 1;
    let err = add(&mut pool(), &sign(t, KEY0)).expect_err("too much gas");
    assert_eq!(err.to_string(), "exceeds block gas limit");
}

#[test]
fn tip_above_fee_cap_is_refused() {
    let err = add(&mut pool(), &tx(KEY0, 0, GWEI, 2 * GWEI)).expect_err("tip > cap");
    assert!(err
        .to_string()
        .starts_with("max priority fee per gas higher than max fee per gas"));
}

#[test]
fn tip_below_the_minimum_is_underpriced() {
    let mut config = PoolConfig::new(CHAIN, GAS_LIMIT);
    config.min_priority_fee = GWEI;
    let mut p = TxPool::new(config);
    let err = p
        .add_raw(&tx(KEY0, 0, 10 * GWEI, GWEI - 1), &State::default())
        .expect_err("low tip");
    assert!(err.to_string().starts_with("transaction underpriced"));
    p.add_raw(&tx(KEY0, 0, 10 * GWEI, GWEI), &State::default())
        .expect("minimum tip");
}

#[test]
fn per_sender_limit() {
    let mut config = PoolConfig::new(CHAIN, GAS_LIMIT);
    config.max_per_sender = 2;
    let mut p = TxPool::new(config);
    let s = State::default();
    p.add_raw(&tx(KEY0, 0, GWEI, GWEI), &s).expect("1");
    p.add_raw(&tx(KEY0, 1, GWEI, GWEI), &s).expect("2");
    let err = p.add_raw(&tx(KEY0, 2, GWEI, GWEI), &s).expect_err("3rd");
    assert!(err.to_string().starts_with("account limit exceeded"));
    // A replacement does not count against the limit.
    p.add_raw(&tx(KEY0, 1, 2 * GWEI, 2 * GWEI), &s)
        .expect("replace");
    // Other senders are unaffected.
    p.add_raw(&tx(KEY1, 0, GWEI, GWEI), &s)
        .expect("other sender");
}

#[test]
fn full_pool_refuses_cheap_and_evicts_for_richer() {
    let mut config = PoolConfig::new(CHAIN, GAS_LIMIT);
    config.max_total = 3;
    let mut p = TxPool::new(config);
    let s = State::default();
    p.add_raw(&tx(KEY0, 0, 10 * GWEI, 5 * GWEI), &s)
        .expect("a0");
    let cheapest_tail = p.add_raw(&tx(KEY0, 1, 10 * GWEI, GWEI), &s).expect("a1");
    p.add_raw(&tx(KEY1, 0, 10 * GWEI, 3 * GWEI), &s)
        .expect("b0");
    let err = p
        .add_raw(&tx(KEY2, 0, 10 * GWEI, GWEI), &s)
        .expect_err("not richer");
    assert_eq!(err.to_string(), "txpool is full");
    let h = p
        .add_raw(&tx(KEY2, 0, 10 * GWEI, 2 * GWEI), &s)
        .expect("richer evicts");
    assert!(p.get(&cheapest_tail).is_none());
    assert!(p.get(&h).is_some());
    assert_eq!(p.len(), 3);
    assert_eq!(p.status(), (3, 0));
}

#[test]
fn nonce_gap_is_queued_then_promoted() {
    let mut p = pool();
    let s = State::default();
    p.add_raw(&tx(KEY0, 0, GWEI, GWEI), &s).expect("n0");
    p.add_raw(&tx(KEY0, 2, GWEI, GWEI), &s).expect("n2");
    p.add_raw(&tx(KEY0, 3, GWEI, GWEI), &s).expect("n3");
    assert_eq!(p.status(), (1, 2));
    let content = p.content();
    assert_eq!(
        content.pending[&ADDR0].keys().copied().collect::<Vec<_>>(),
        vec![0]
    );
    assert_eq!(
        content.queued[&ADDR0].keys().copied().collect::<Vec<_>>(),
        vec![2, 3]
    );
    assert_eq!(
        p.best(0, GAS_LIMIT).len(),
        1,
        "queued txs are never selected"
    );

    // Filling the gap promotes everything.
    p.add_raw(&tx(KEY0, 1, GWEI, GWEI), &s).expect("n1");
    assert_eq!(p.status(), (4, 0));
    let nonces: Vec<u64> = p.best(0, GAS_LIMIT).iter().map(PooledTx::nonce).collect();
    assert_eq!(nonces, vec![0, 1, 2, 3]);
}

#[test]
fn on_block_drops_mined_and_promotes_queued() {
    let mut p = pool();
    let s = State::default();
    let mined = p.add_raw(&tx(KEY0, 0, GWEI, GWEI), &s).expect("n0");
    p.add_raw(&tx(KEY0, 2, GWEI, GWEI), &s).expect("n2");
    p.add_raw(&tx(KEY1, 0, GWEI, GWEI), &s).expect("b0");
    assert_eq!(p.status(), (2, 1));
    // A block included ADDR0's nonce 0 and, from elsewhere, a nonce 1: account nonce is 2.
    let after = State {
        nonces: HashMap::from([(ADDR0, 2)]),
        ..State::default()
    };
    p.on_block(&[(ADDR0, 2)], &after);
    assert!(p.get(&mined).is_none());
    assert_eq!(p.status(), (2, 0));
    assert_eq!(
        p.content().pending[&ADDR0]
            .keys()
            .copied()
            .collect::<Vec<_>>(),
        vec![2]
    );

    // A balance drop makes a pooled tx unaffordable: it is dropped.
    let broke = State {
        balances: HashMap::from([(ADDR1, U256::ZERO)]),
        ..after
    };
    p.on_block(&[], &broke);
    assert_eq!(p.status(), (1, 0));
}

#[test]
fn best_orders_by_effective_tip_across_senders_in_nonce_order_within() {
    let mut p = pool();
    let s = State::default();
    // ADDR0: tip 1 then 5; ADDR1: tip 3; ADDR2: tip 2.
    p.add_raw(&tx(KEY0, 0, 100 * GWEI, GWEI), &s).expect("a0");
    p.add_raw(&tx(KEY0, 1, 100 * GWEI, 5 * GWEI), &s)
        .expect("a1");
    p.add_raw(&tx(KEY1, 0, 100 * GWEI, 3 * GWEI), &s)
        .expect("b0");
    p.add_raw(&tx(KEY2, 0, 100 * GWEI, 2 * GWEI), &s)
        .expect("c0");
    let order: Vec<(Address, u64)> = p
        .best(10 * GWEI as u64, GAS_LIMIT)
        .iter()
        .map(|t| (t.sender(), t.nonce()))
        .collect();
    // ADDR0's nonce 0 (tip 1) holds back its nonce 1 (tip 5) until it is picked.
    assert_eq!(order, vec![(ADDR1, 0), (ADDR2, 0), (ADDR0, 0), (ADDR0, 1)]);
}

#[test]
fn best_respects_base_fee_and_gas_limit() {
    let mut p = pool();
    let s = State::default();
    // Effective tip at base fee 10: min(5, 12 - 10) = 2.
    p.add_raw(&tx(KEY0, 0, 12 * GWEI, 5 * GWEI), &s)
        .expect("a0");
    // Max fee below the base fee: skipped, and so is its successor.
    p.add_raw(&tx(KEY1, 0, 9 * GWEI, GWEI), &s).expect("b0");
    p.add_raw(&tx(KEY1, 1, 100 * GWEI, 50 * GWEI), &s)
        .expect("b1");
    // Effective tip 3.
    p.add_raw(&tx(KEY2, 0, 100 * GWEI, 3 * GWEI), &s)
        .expect("c0");
    let base = 10 * GWEI as u64;
    let order: Vec<Address> = p
        .best(base, GAS_LIMIT)
        .iter()
        .map(PooledTx::sender)
        .collect();
    assert_eq!(order, vec![ADDR2, ADDR0]);
    assert_eq!(
        p.get(&p.best(base, GAS_LIMIT)[1].hash())
            .and_then(|t| t.effective_tip(base)),
        Some(2 * GWEI)
    );
    // Room for one 21 000-gas transaction only.
    let one = p.best(base, 41_999);
    assert_eq!(
        one.iter().map(PooledTx::sender).collect::<Vec<_>>(),
        vec![ADDR2]
    );
    assert!(p.best(base, 20_999).is_empty());
    // At base fee 0 all four fit.
    assert_eq!(p.best(0, GAS_LIMIT).len(), 4);
}

#[test]
fn journal_round_trip_keeps_pending_and_queued() {
    let mut p = pool();
    let s = State::default();
    p.add_raw(&tx(KEY0, 0, GWEI, GWEI), &s).expect("a0");
    p.add_raw(&tx(KEY0, 2, GWEI, GWEI), &s).expect("a2");
    p.add_raw(&tx(KEY1, 0, 2 * GWEI, GWEI), &s).expect("b0");
    let journal = p.to_journal();
    assert_eq!(journal[0], JOURNAL_VERSION);
    let (q, refused) =
        TxPool::from_journal(PoolConfig::new(CHAIN, GAS_LIMIT), &journal, &s).expect("journal");
    assert_eq!(refused, 0);
    assert_eq!(q.content(), p.content());
    assert_eq!(q.to_journal(), journal);

    // After a block mined ADDR0's nonce 0 the stale entry is skipped, not fatal.
    let after = State {
        nonces: HashMap::from([(ADDR0, 1)]),
        ..State::default()
    };
    let (q, refused) =
        TxPool::from_journal(PoolConfig::new(CHAIN, GAS_LIMIT), &journal, &after).expect("journal");
    assert_eq!((refused, q.len()), (1, 2));
}

#[test]
fn journal_errors() {
    let config = PoolConfig::new(CHAIN, GAS_LIMIT);
    let s = State::default();
    assert_eq!(
        TxPool::from_journal(config.clone(), &[], &s).map(|_| ()),
        Err(JournalError::Empty)
    );
    assert_eq!(
        TxPool::from_journal(config.clone(), &[9], &s).map(|_| ()),
        Err(JournalError::UnsupportedVersion {
            got: 9,
            expected: JOURNAL_VERSION
        })
    );
    assert_eq!(
        TxPool::from_journal(config.clone(), &[1, 0, 0, 0, 5, 1], &s).map(|_| ()),
        Err(JournalError::Truncated { offset: 1 })
    );
    let (p, refused) = TxPool::from_journal(config, &[1], &s).expect("empty pool");
    assert_eq!((p.len(), refused), (0, 0));
}

proptest! {
    #[test]
    fn add_raw_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut p = pool();
        let _ = add(&mut p, &bytes);
        // Also behind each supported type byte, where the decoder gets further.
        for ty in [0x01u8, 0x02] {
            let mut typed = vec![ty];
            typed.extend_from_slice(&bytes);
            let _ = add(&mut p, &typed);
        }
    }

    #[test]
    fn from_journal_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = TxPool::from_journal(PoolConfig::new(CHAIN, GAS_LIMIT), &bytes, &State::default());
    }
}
