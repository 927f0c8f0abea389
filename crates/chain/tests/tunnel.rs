//! The tunnel on the chain, against the embedded regtest node as Bitcoin: a deposit to the
//! devnet's FROST vault is minted as hemiBTC in the first block whose pin gives it its
//! confirmations, once; deposits that break a rule are never minted; a follower re-executes the
//! mint to the same roots and refuses a block whose mint differs. Withdrawals: burnt requests
//! paid by one FROST-signed payout the regtest node accepts, finalized by the chain; an unpaid
//! one challenged after its deadline is minted back. A vault spend that pays no request is
//! reported by anyone and freezes new deposits; a finalized payout is not reportable.

use std::sync::Arc;

use alloy_primitives::{Address, Bytes, TxKind, B256, U256};
use alloy_sol_types::SolCall;
use bitcoin::{Amount, Network, OutPoint, ScriptBuf, Transaction, TxOut};
use hemi_btc_headers::ChainParams;
use hemi_btc_regtest::RegtestNode;
use hemi_btc_store::ChainStore;
use hemi_btc_view::BitcoinView;
use hemi_btc_wallet::{build_payment, Key, KeyKind};
use hemi_chain::block::seal;
use hemi_chain::{
    BlockError, CallOutcome, Chain, ChainError, ChainSpec, DepositTx, L2Block, L2Tx, SealError,
    Sealer, SequencerAddress, TunnelSpec,
};
use hemi_hvm::{BitcoinPin, BtcAttributes};
use hemi_tunnel::contracts::{self, IHemiBTC, HEMI_BTC_ADDRESS, TUNNEL_MANAGER_ADDRESS};
use hemi_tunnel::{Custody, TunnelParams};

const SEQUENCER: B256 = B256::repeat_byte(0x11);
const FEE: u64 = 1_000;
const MIN: u64 = 10_000;
const CONFIRMATIONS: u32 = 3;
const DEADLINE: u64 = 5;

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

struct World {
    store: Arc<ChainStore>,
    node: Arc<RegtestNode>,
    key: Key,
    coins: Vec<(OutPoint, TxOut)>,
    params: TunnelParams,
    custody: Custody,
    vault: hemi_tunnel::Vault,
}

impl World {
    fn new() -> Self {
        let store =
            Arc::new(ChainStore::in_memory(ChainParams::new(Network::Regtest)).expect("store"));
        let node = RegtestNode::new(store.clone());
        let key = Key::from_seed("chain-tunnel-test");
        let script = key.script_pubkey(KeyKind::P2wpkh);
        let hashes = node.mine(110, &script).expect("mine");
        // The mature coinbases (the first ten blocks'), 50 BTC each.
        let coins = hashes[..10]
            .iter()
            .map(|h| {
                let block = store.block(h).expect("read").expect("block");
                let cb = &block.txdata[0];
                (OutPoint::new(cb.compute_txid(), 0), cb.output[0].clone())
            })
            .collect();
        let custody = Custody::devnet().expect("dkg");
        let recovery = Key::from_seed("recovery").x_only();
        let vault = custody.vault(recovery, 144).expect("vault");
        let params = TunnelParams {
            vault_output_key: B256::from(vault.output_key().serialize()),
            deposit_fee: FEE,
            min_deposit: MIN,
            deposit_confirmations: CONFIRMATIONS,
            withdrawal_deadline: DEADLINE,
        };
        World {
            store,
            node,
            key,
            coins,
            params,
            custody,
            vault,
        }
    }

    fn spec(&self) -> ChainSpec {
        let mut spec = ChainSpec::devnet().expect("spec");
        spec.tunnel = Some(TunnelSpec {
            activation: 1,
            params: self.params,
        });
        spec
    }

    fn pin(&self) -> BitcoinPin {
        BitcoinPin {
            view: self.store.clone(),
            pinned: self.store.tip().expect("tip"),
            network: Network::Regtest,
        }
    }

    /// Pays `outputs` from the next `inputs` coinbases and mines it into one block.
    fn send(&mut self, inputs: usize, outputs: Vec<TxOut>) -> Transaction {
        let utxos: Vec<_> = self.coins.drain(..inputs).collect();
        let tx = build_payment(&self.key, KeyKind::P2wpkh, &utxos, outputs, 2.0).expect("build");
        self.node
            .submit_transaction(tx.clone(), None)
            .expect("accepted");
        self.mine(1);
        tx
    }

    fn mine(&self, n: u32) {
        self.node
            .mine(n, &self.key.script_pubkey(KeyKind::P2wpkh))
            .expect("mine");
    }

    fn vault_out(&self, sats: u64) -> TxOut {
        TxOut {
            value: Amount::from_sat(sats),
            script_pubkey: self.params.vault_script(),
        }
    }
}

fn op_return(data: &[u8]) -> TxOut {
    TxOut {
        value: Amount::ZERO,
        script_pubkey: hemi_tunnel::deposit::op_return_script(data),
    }
}

fn build(chain: &Chain, pin: &BitcoinPin, t: u64) -> hemi_chain::Built {
    let attrs = BtcAttributes {
        canonical_tip: pin.pinned.hash,
        headers: vec![],
    };
    chain
        .build_block(pin, &attrs, vec![], t, &TestSealer(SEQUENCER))
        .expect("build")
}

fn balance(chain: &Chain, pin: &BitcoinPin, owner: Address) -> U256 {
    let tx = revm::context::TxEnv::builder()
        .kind(TxKind::Call(HEMI_BTC_ADDRESS))
        .data(Bytes::from(IHemiBTC::balanceOfCall { owner }.abi_encode()))
        .gas_limit(100_000)
        .chain_id(Some(31337))
        .build()
        .expect("tx");
    match chain
        .call(chain.head().0, tx, None, pin.clone(), None)
        .expect("call")
    {
        CallOutcome::Success { output, .. } => U256::from_be_slice(&output),
        other => panic!("balanceOf: {other:?}"),
    }
}

fn deposits(block: &hemi_chain::Built) -> Vec<DepositTx> {
    block
        .block
        .txs
        .iter()
        .filter_map(|t| match &t.tx {
            L2Tx::Deposit(d) => Some(*d),
            _ => None,
        })
        .collect()
}

fn import(b: &Chain, a: &Chain, n: u64, pin: &BitcoinPin) -> Result<(), ChainError> {
    let raw = a.raw_block(n).expect("read").expect("block");
    let block = L2Block::decode(&raw).expect("decode");
    import_block(b, &block, pin)
}

fn import_block(b: &Chain, block: &L2Block, pin: &BitcoinPin) -> Result<(), ChainError> {
    let sealer = TestSealer(SEQUENCER);
    b.import_block(
        block,
        &SequencerAddress(sealer.address()),
        &|_: &BtcAttributes| Ok(pin.clone()),
    )
    .map(|_| ())
}

#[test]
fn a_deposit_mints_once_after_its_confirmations_and_a_follower_agrees() {
    let mut w = World::new();
    let a = Chain::open(None, w.spec()).expect("chain a");
    let b = Chain::open(None, w.spec()).expect("chain b");
    let recipient = Address::repeat_byte(0xab);

    // Block 1 activates the tunnel: the contracts are there afterwards.
    let pin = w.pin();
    let first = build(&a, &pin, 1);
    assert!(matches!(first.block.txs[1].tx, L2Tx::TunnelActivation(_)));
    import(&b, &a, 1, &pin).expect("import activation");
    let code = a
        .state_at(1)
        .expect("state")
        .account_code(&TUNNEL_MANAGER_ADDRESS);
    assert_eq!(&code.expect("code"), contracts::tunnel_manager_code());

    // 100 BTC (three coinbases) to the vault, the recipient in an OP_RETURN.
    let deposit = w.send(
        3,
        vec![
            w.vault_out(100 * 100_000_000),
            op_return(recipient.as_slice()),
        ],
    );
    let txid = contracts::txid_display(&deposit.compute_txid());
    let mut minted_in = None;
    for n in 2..=5u64 {
        // One Bitcoin block per L2 block: 1, 2, 3, 4 confirmations.
        let pin = w.pin();
        let built = build(&a, &pin, n);
        import(&b, &a, n, &pin).unwrap_or_else(|e| panic!("import {n}: {e}"));
        let confs = pin.pinned.height
            - w.store
                .transaction(&deposit.compute_txid(), hemi_btc_view::AsOf::Tip)
                .expect("tx")
                .expect("indexed")
                .location
                .block
                .height
            + 1;
        let found = deposits(&built);
        if confs < CONFIRMATIONS || minted_in.is_some() {
            assert!(
                found.is_empty(),
                "block {n} at {confs} confirmations: {found:?}"
            );
        } else {
            assert_eq!(found, vec![DepositTx { txid, vout: 0 }], "block {n}");
            let at = built
                .block
                .txs
                .iter()
                .position(|t| matches!(t.tx, L2Tx::Deposit(_)))
                .expect("deposit tx");
            let receipt = &built.receipts[at].receipt;
            assert!(receipt.status.coerce_status(), "mint succeeded");
            assert_eq!(receipt.logs.len(), 2, "Transfer and DepositConfirmed");
            assert_eq!(
                receipt.logs[1].topics()[0],
                contracts::deposit_confirmed_topic()
            );
            minted_in = Some(n);
        }
        w.mine(1);
    }
    assert_eq!(
        minted_in,
        Some(4),
        "minted in the first block pinned at 3 confirmations"
    );
    let pin = w.pin();
    assert_eq!(
        balance(&a, &pin, recipient),
        U256::from(100 * 100_000_000 - FEE)
    );
    assert_eq!(
        a.head(),
        b.head(),
        "the follower re-executed to the same blocks"
    );
    assert_eq!(
        a.header(5).expect("h").expect("h").state_root,
        b.header(5).expect("h").expect("h").state_root
    );
}

#[test]
fn deposits_that_break_a_rule_are_never_minted_and_a_different_mint_is_refused() {
    let mut w = World::new();
    let a = Chain::open(None, w.spec()).expect("chain a");
    let b = Chain::open(None, w.spec()).expect("chain b");
    let r = Address::repeat_byte(0x42);
    let pin = w.pin();
    build(&a, &pin, 1);
    import(&b, &a, 1, &pin).expect("activation");

    let good = w.send(
        1,
        vec![
            w.vault_out(20_000),
            op_return(format!("{r:x}").trim_start_matches("0x").as_bytes()),
        ],
    );
    let bad: Vec<Transaction> = vec![
        // Under the minimum.
        w.send(1, vec![w.vault_out(MIN - 1), op_return(r.as_slice())]),
        // No recipient.
        w.send(1, vec![w.vault_out(50_000)]),
        // The push opcode says 19 bytes but 20 follow.
        {
            let mut script = vec![0x6a, 0x13];
            script.extend_from_slice(r.as_slice());
            w.send(
                1,
                vec![
                    w.vault_out(50_000),
                    TxOut {
                        value: Amount::ZERO,
                        script_pubkey: ScriptBuf::from_bytes(script),
                    },
                ],
            )
        },
        // Two OP_RETURNs.
        w.send(
            1,
            vec![
                w.vault_out(50_000),
                op_return(r.as_slice()),
                op_return(&[1u8; 20]),
            ],
        ),
    ];
    w.mine(CONFIRMATIONS);
    let pin = w.pin();
    let built = build(&a, &pin, 2);
    let good_txid = contracts::txid_display(&good.compute_txid());
    assert_eq!(
        deposits(&built),
        vec![DepositTx {
            txid: good_txid,
            vout: 0
        }],
        "only the well-formed deposit"
    );
    // Anyone calling confirmDeposit for the others is refused by the contract, with the reason.
    let reasons: Vec<String> = bad
        .iter()
        .map(|tx| {
            let call = revm::context::TxEnv::builder()
                .kind(TxKind::Call(TUNNEL_MANAGER_ADDRESS))
                .data(contracts::confirm_deposit_calldata(
                    contracts::txid_display(&tx.compute_txid()),
                    0,
                ))
                .gas_limit(1_000_000)
                .chain_id(Some(31337))
                .build()
                .expect("tx");
            match a.call(2, call, None, pin.clone(), None).expect("call") {
                CallOutcome::Revert { output, .. } => contracts::revert_reason(&output),
                other => panic!("not refused: {other:?}"),
            }
        })
        .collect();
    assert_eq!(
        reasons,
        vec![
            format!("{} sat is below the minimum deposit of {MIN} sat", MIN - 1),
            "no OP_RETURN names the recipient".to_string(),
            "OP_RETURN pushes with opcode 0x13 but carries 20 bytes".to_string(),
            "2 OP_RETURN outputs".to_string(),
        ]
    );
    // The minted one a second time: already minted.
    let again = revm::context::TxEnv::builder()
        .kind(TxKind::Call(TUNNEL_MANAGER_ADDRESS))
        .data(contracts::confirm_deposit_calldata(good_txid, 0))
        .gas_limit(1_000_000)
        .chain_id(Some(31337))
        .build()
        .expect("tx");
    match a.call(2, again, None, pin.clone(), None).expect("call") {
        CallOutcome::Revert { output, .. } => {
            assert_eq!(contracts::revert_reason(&output), "already minted")
        }
        other => panic!("minted twice: {other:?}"),
    }
    assert_eq!(balance(&a, &pin, r), U256::from(20_000 - FEE));

    // A block minting a deposit the rule does not give, sealed by the right key: refused.
    let genuine = L2Block::decode(&a.raw_block(2).expect("read").expect("block")).expect("decode");
    let mut forged = genuine.clone();
    forged.txs.insert(
        2,
        L2Tx::Deposit(DepositTx {
            txid: contracts::txid_display(&bad[0].compute_txid()),
            vout: 0,
        }),
    );
    forged.header.transactions_root = hemi_chain::block::transactions_root(&forged.txs);
    forged.seal = seal(a.spec().chain_id, forged.hash(), SEQUENCER).expect("seal");
    let err = import_block(&b, &forged, &pin).expect_err("forged mint");
    assert!(
        matches!(err, ChainError::InvalidBlock(BlockError::Deposits { .. })),
        "{err}"
    );
    assert!(err.to_string().contains("confirms deposits ["), "{err}");
    // One left out: refused too.
    let mut skipped = genuine.clone();
    skipped.txs.remove(1);
    skipped.header.transactions_root = hemi_chain::block::transactions_root(&skipped.txs);
    skipped.seal = seal(a.spec().chain_id, skipped.hash(), SEQUENCER).expect("seal");
    let err = import_block(&b, &skipped, &pin).expect_err("skipped mint");
    assert!(
        err.to_string().contains("but Bitcoin as of its pin"),
        "{err}"
    );
    import_block(&b, &genuine, &pin).expect("the genuine block imports");
}

fn call_tx(secret: [u8; 32], nonce: u64, to: Address, data: Bytes) -> hemi_chain::SignedTx {
    use alloy_consensus::{SignableTransaction, TxEip1559, TxEnvelope};
    use alloy_eips::eip2718::Encodable2718;
    let tx = TxEip1559 {
        chain_id: 31337,
        nonce,
        gas_limit: 500_000,
        max_fee_per_gas: 10_000_000_000,
        max_priority_fee_per_gas: 1_000_000_000,
        to: TxKind::Call(to),
        value: U256::ZERO,
        access_list: Default::default(),
        input: data,
    };
    let sig =
        alloy_consensus::crypto::secp256k1::sign_message(B256::from(secret), tx.signature_hash())
            .expect("sign");
    let raw = TxEnvelope::from(tx.into_signed(sig)).encoded_2718();
    hemi_chain::SignedTx::recover(L2Tx::decode_2718(&raw).expect("decode")).expect("recover")
}

fn build_with(
    chain: &Chain,
    pin: &BitcoinPin,
    t: u64,
    txs: Vec<hemi_chain::SignedTx>,
) -> hemi_chain::Built {
    let attrs = BtcAttributes {
        canonical_tip: pin.pinned.hash,
        headers: vec![],
    };
    let built = chain
        .build_block(pin, &attrs, txs, t, &TestSealer(SEQUENCER))
        .expect("build");
    assert!(built.rejected.is_empty(), "{:?}", built.rejected);
    built
}

fn withdrawal(chain: &Chain, pin: &BitcoinPin, id: u64) -> contracts::ITunnelManager::Withdrawal {
    use contracts::ITunnelManager::getWithdrawalCall;
    let tx = revm::context::TxEnv::builder()
        .kind(TxKind::Call(TUNNEL_MANAGER_ADDRESS))
        .data(Bytes::from(
            getWithdrawalCall { id: U256::from(id) }.abi_encode(),
        ))
        .gas_limit(1_000_000)
        .chain_id(Some(31337))
        .build()
        .expect("tx");
    match chain
        .call(chain.head().0, tx, None, pin.clone(), None)
        .expect("call")
    {
        CallOutcome::Success { output, .. } => {
            getWithdrawalCall::abi_decode_returns(&output).expect("decode")
        }
        other => panic!("getWithdrawal: {other:?}"),
    }
}

#[test]
fn withdrawals_are_paid_in_one_frost_signed_batch_and_an_unpaid_one_is_challenged() {
    use contracts::ITunnelManager::{challengeCall, initiateWithdrawalCall};
    let mut w = World::new();
    let a = Chain::open(None, w.spec()).expect("chain a");
    let b = Chain::open(None, w.spec()).expect("chain b");
    let user = hemi_chain::dev_accounts(hemi_chain::DEV_MNEMONIC, 2).expect("accounts")[1].clone();
    let mut n = 0u64;
    let mut step = |w: &World, txs: Vec<hemi_chain::SignedTx>| {
        n += 1;
        let pin = w.pin();
        let built = build_with(&a, &pin, n, txs);
        import(&b, &a, n, &pin).unwrap_or_else(|e| panic!("import {n}: {e}"));
        built
    };
    step(&w, vec![]);
    let deposit = w.send(
        1,
        vec![
            w.vault_out(10 * 100_000_000),
            op_return(user.address.as_slice()),
        ],
    );
    w.mine(CONFIRMATIONS);
    step(&w, vec![]);
    let pin = w.pin();
    assert_eq!(
        balance(&a, &pin, user.address),
        U256::from(10 * 100_000_000 - FEE)
    );

    // Four requests: three pay up to 10,000 sat of fee, one at most 1 sat (left unpaid).
    let payees: Vec<Key> = (0..4)
        .map(|i| Key::from_seed(&format!("payee {i}")))
        .collect();
    let requests: Vec<_> = payees
        .iter()
        .enumerate()
        .map(|(i, k)| {
            let max_fee = if i == 3 { 1 } else { 10_000 };
            call_tx(
                user.secret,
                i as u64,
                TUNNEL_MANAGER_ADDRESS,
                Bytes::from(
                    initiateWithdrawalCall {
                        script: k.script_pubkey(KeyKind::P2wpkh).to_bytes().into(),
                        amount: 100_000_000 + i as u64,
                        maxFee: max_fee,
                    }
                    .abi_encode(),
                ),
            )
        })
        .collect();
    let built = step(&w, requests);
    assert!(
        built.receipts[1..]
            .iter()
            .all(|r| r.receipt.status.coerce_status()),
        "requests accepted"
    );
    let pin = w.pin();
    let burnt: u64 = (0..4).map(|i| 100_000_000 + i).sum();
    assert_eq!(
        balance(&a, &pin, user.address),
        U256::from(10 * 100_000_000 - FEE - burnt)
    );
    for id in 1..=4 {
        assert_eq!(withdrawal(&a, &pin, id).status, 1, "request {id} pending");
    }

    // The custodians pay the first three in one transaction, signed by custodians 2 and 3.
    let utxo = (
        OutPoint::new(deposit.compute_txid(), 0),
        deposit.output[0].clone(),
    );
    let reqs: Vec<hemi_tunnel::payout::Request> = (0..3)
        .map(|i| hemi_tunnel::payout::Request {
            id: i as u32 + 1,
            script: payees[i].script_pubkey(KeyKind::P2wpkh),
            amount: 100_000_000 + i as u64,
            max_fee: 10_000,
        })
        .collect();
    let unpayable = hemi_tunnel::payout::Request {
        id: 4,
        script: payees[3].script_pubkey(KeyKind::P2wpkh),
        amount: 100_000_003,
        max_fee: 1,
    };
    assert!(matches!(
        hemi_tunnel::payout::build_payout(
            &w.vault,
            std::slice::from_ref(&utxo),
            &[reqs.clone(), vec![unpayable]].concat(),
            2
        ),
        Err(hemi_tunnel::payout::PayoutError::FeeTooHigh { id: 4, .. })
    ));
    let mut payout =
        hemi_tunnel::payout::build_payout(&w.vault, std::slice::from_ref(&utxo), &reqs, 2)
            .expect("payout");
    let mut rng =
        <rand_chacha::ChaCha20Rng as rand_chacha::rand_core::SeedableRng>::from_seed([9; 32]);
    hemi_tunnel::payout::sign_payout(
        &w.custody,
        &w.vault,
        &mut payout,
        std::slice::from_ref(&utxo.1),
        &[2, 3],
        &mut rng,
    )
    .expect("sign");
    hemi_btc_wallet::verify_transaction(&payout, std::slice::from_ref(&utxo.1))
        .expect("consensus-valid");
    w.node
        .submit_transaction(payout.clone(), None)
        .expect("the regtest node accepts the payout");
    w.mine(CONFIRMATIONS);
    let built = step(&w, vec![]);
    let at = built
        .block
        .txs
        .iter()
        .position(|t| matches!(t.tx, L2Tx::Payout(_)))
        .expect("the chain finalizes the payout");
    let logs = &built.receipts[at].receipt.logs;
    assert_eq!(logs.len(), 3, "three WithdrawalPaid: {logs:?}");
    let pin = w.pin();
    for id in 1..=3 {
        let got = withdrawal(&a, &pin, id);
        assert_eq!(got.status, 2, "request {id} paid");
        assert_eq!(
            got.payoutTxid,
            contracts::txid_display(&payout.compute_txid())
        );
    }
    assert_eq!(
        withdrawal(&a, &pin, 4).status,
        1,
        "the fourth still pending"
    );
    // Once: the next block does not finalize it again.
    let built = step(&w, vec![]);
    assert!(!built
        .block
        .txs
        .iter()
        .any(|t| matches!(t.tx, L2Tx::Payout(_))));

    // The fourth, unpaid past its deadline, is challenged by its requester: minted back.
    let challenge = |nonce| {
        call_tx(
            user.secret,
            nonce,
            TUNNEL_MANAGER_ADDRESS,
            Bytes::from(challengeCall { id: U256::from(4) }.abi_encode()),
        )
    };
    let early = step(&w, vec![challenge(4)]);
    assert!(
        !early.receipts[1].receipt.status.coerce_status(),
        "too early: refused"
    );
    // Request 4 was made in block 3; it can be challenged from block 3 + DEADLINE.
    while a.head().0 + 1 < 3 + DEADLINE {
        step(&w, vec![]);
    }
    let built = step(&w, vec![challenge(5)]);
    assert!(
        built.receipts[1].receipt.status.coerce_status(),
        "challenged"
    );
    let pin = w.pin();
    assert_eq!(withdrawal(&a, &pin, 4).status, 3);
    assert_eq!(
        balance(&a, &pin, user.address),
        U256::from(10 * 100_000_000 - FEE - burnt + 100_000_003)
    );
    assert_eq!(a.head(), b.head(), "the follower agrees on every block");
}

/// `eth_call` of the manager at the head: its revert reason, or `None` if it succeeds.
fn manager_revert(chain: &Chain, pin: &BitcoinPin, data: Bytes) -> Option<String> {
    let tx = revm::context::TxEnv::builder()
        .kind(TxKind::Call(TUNNEL_MANAGER_ADDRESS))
        .data(data)
        .gas_limit(2_000_000)
        .chain_id(Some(31337))
        .build()
        .expect("tx");
    match chain
        .call(chain.head().0, tx, None, pin.clone(), None)
        .expect("call")
    {
        CallOutcome::Success { .. } => None,
        CallOutcome::Revert { output, .. } => Some(contracts::revert_reason(&output)),
        other => panic!("call: {other:?}"),
    }
}

#[test]
fn a_vault_spend_that_pays_no_request_is_reported_and_freezes_new_deposits() {
    use contracts::ITunnelManager::{confirmDepositCall, initiateWithdrawalCall};
    let mut w = World::new();
    let a = Chain::open(None, w.spec()).expect("chain a");
    let b = Chain::open(None, w.spec()).expect("chain b");
    let user = hemi_chain::dev_accounts(hemi_chain::DEV_MNEMONIC, 2).expect("accounts")[1].clone();
    let mut n = 0u64;
    let mut step = |w: &World, txs: Vec<hemi_chain::SignedTx>| {
        n += 1;
        let pin = w.pin();
        let built = build_with(&a, &pin, n, txs);
        import(&b, &a, n, &pin).unwrap_or_else(|e| panic!("import {n}: {e}"));
        built
    };
    let mut nonce = 0u64;
    let mut user_call = |data: Bytes| {
        nonce += 1;
        call_tx(user.secret, nonce - 1, TUNNEL_MANAGER_ADDRESS, data)
    };
    let report = |txid: &bitcoin::Txid, vin: u16| {
        contracts::report_invalid_spend_calldata(contracts::txid_display(txid), vin)
    };
    let mut rng =
        <rand_chacha::ChaCha20Rng as rand_chacha::rand_core::SeedableRng>::from_seed([4; 32]);
    step(&w, vec![]);
    let deposit = w.send(
        1,
        vec![
            w.vault_out(10 * 100_000_000),
            op_return(user.address.as_slice()),
        ],
    );
    w.mine(CONFIRMATIONS);
    step(&w, vec![]);

    // A legitimate payout (one request, change to the vault) is not reportable.
    let payee = Key::from_seed("report payee").script_pubkey(KeyKind::P2wpkh);
    let built = step(
        &w,
        vec![user_call(Bytes::from(
            initiateWithdrawalCall {
                script: payee.to_bytes().into(),
                amount: 100_000_000,
                maxFee: 10_000,
            }
            .abi_encode(),
        ))],
    );
    assert!(built.receipts[1].receipt.status.coerce_status());
    let utxo = (
        OutPoint::new(deposit.compute_txid(), 0),
        deposit.output[0].clone(),
    );
    let req = hemi_tunnel::payout::Request {
        id: 1,
        script: payee,
        amount: 100_000_000,
        max_fee: 10_000,
    };
    let mut payout = hemi_tunnel::payout::build_payout(
        &w.vault,
        std::slice::from_ref(&utxo),
        std::slice::from_ref(&req),
        2,
    )
    .expect("payout");
    hemi_tunnel::payout::sign_payout(
        &w.custody,
        &w.vault,
        &mut payout,
        std::slice::from_ref(&utxo.1),
        &[1, 2],
        &mut rng,
    )
    .expect("sign");
    w.node
        .submit_transaction(payout.clone(), None)
        .expect("payout accepted");
    w.mine(1);
    let pin = w.pin();
    assert_eq!(
        manager_revert(&a, &pin, report(&payout.compute_txid(), 0)).as_deref(),
        Some("1 of 3 confirmations")
    );
    w.mine(CONFIRMATIONS - 1);
    // The report waits for finalization (here the sequencer's in the next block).
    let pin = w.pin();
    let reason = manager_revert(&a, &pin, report(&payout.compute_txid(), 0));
    assert!(
        reason
            .as_deref()
            .unwrap_or("")
            .contains("finalizeWithdrawal"),
        "{reason:?}"
    );
    step(&w, vec![]);
    let pin = w.pin();
    assert_eq!(withdrawal(&a, &pin, 1).status, 2, "paid");
    let reason = manager_revert(&a, &pin, report(&payout.compute_txid(), 0));
    assert!(
        reason
            .as_deref()
            .unwrap_or("")
            .contains("not an invalid spend"),
        "{reason:?}"
    );
    // The deposit's own input spends the user's coin, not the vault.
    assert_eq!(
        manager_revert(&a, &pin, report(&deposit.compute_txid(), 0)).as_deref(),
        Some("input 0 does not spend a vault output")
    );

    // A payout that pays its request as asked but gives miners 50,000 sat more of the vault's
    // change than the request's fee share covers: reportable once finalized (the contract adds
    // up its inputs through 0x42).
    let payee2 = Key::from_seed("report payee 2").script_pubkey(KeyKind::P2wpkh);
    step(
        &w,
        vec![user_call(Bytes::from(
            initiateWithdrawalCall {
                script: payee2.to_bytes().into(),
                amount: 50_000_000,
                maxFee: 10_000,
            }
            .abi_encode(),
        ))],
    );
    let vault_script = w.params.vault_script();
    let at = payout
        .output
        .iter()
        .position(|o| o.script_pubkey == vault_script)
        .expect("change");
    let change1 = (
        OutPoint::new(payout.compute_txid(), at as u32),
        payout.output[at].clone(),
    );
    let req2 = hemi_tunnel::payout::Request {
        id: 2,
        script: payee2,
        amount: 50_000_000,
        max_fee: 10_000,
    };
    let mut greedy = hemi_tunnel::payout::build_payout(
        &w.vault,
        std::slice::from_ref(&change1),
        std::slice::from_ref(&req2),
        2,
    )
    .expect("payout");
    for o in &mut greedy.output {
        if o.script_pubkey == vault_script {
            o.value -= Amount::from_sat(50_000);
        }
    }
    hemi_tunnel::payout::sign_payout(
        &w.custody,
        &w.vault,
        &mut greedy,
        std::slice::from_ref(&change1.1),
        &[2, 3],
        &mut rng,
    )
    .expect("sign");
    w.node
        .submit_transaction(greedy.clone(), None)
        .expect("the regtest node accepts the overpaying payout");
    w.mine(CONFIRMATIONS);
    step(&w, vec![]);
    let pin = w.pin();
    assert_eq!(withdrawal(&a, &pin, 2).status, 2, "its request was paid");
    assert_eq!(
        manager_revert(&a, &pin, report(&greedy.compute_txid(), 0)),
        None,
        "the overpaid fee is reportable"
    );
    let payout = greedy;

    // The custodians (2 of them suffice) take the change somewhere else: no id list.
    let change_vout = payout
        .output
        .iter()
        .position(|o| o.script_pubkey == w.params.vault_script())
        .expect("change");
    let change = (
        OutPoint::new(payout.compute_txid(), change_vout as u32),
        payout.output[change_vout].clone(),
    );
    let thief = Key::from_seed("thief").script_pubkey(KeyKind::P2wpkh);
    let mut theft = Transaction {
        version: bitcoin::transaction::Version::TWO,
        lock_time: bitcoin::absolute::LockTime::ZERO,
        input: vec![bitcoin::TxIn {
            previous_output: change.0,
            ..Default::default()
        }],
        output: vec![TxOut {
            value: change.1.value - Amount::from_sat(1_000),
            script_pubkey: thief,
        }],
    };
    hemi_tunnel::payout::sign_payout(
        &w.custody,
        &w.vault,
        &mut theft,
        std::slice::from_ref(&change.1),
        &[1, 3],
        &mut rng,
    )
    .expect("sign");
    w.node
        .submit_transaction(theft.clone(), None)
        .expect("the regtest node accepts the theft: the key is valid");
    w.mine(CONFIRMATIONS);
    // A deposit made now would have been minted; the report comes first.
    let late = w.send(
        1,
        vec![
            w.vault_out(2 * 100_000_000),
            op_return(user.address.as_slice()),
        ],
    );
    let before = balance(&a, &w.pin(), user.address);
    let built = step(&w, vec![user_call(report(&theft.compute_txid(), 0))]);
    let r = built.receipts.last().expect("receipt");
    assert!(r.receipt.status.coerce_status(), "reported");
    assert_eq!(r.receipt.logs.len(), 1, "InvalidSpendReported");
    let pin = w.pin();
    let state = a.state_at(a.head().0).expect("state");
    assert_eq!(
        hemi_chain::tunnel::frozen_at(&state).expect("read"),
        Some(a.head().0)
    );
    assert_eq!(
        manager_revert(&a, &pin, report(&theft.compute_txid(), 0)).as_deref(),
        Some(
            format!(
                "the vault is frozen (an invalid spend was reported in L2 block {})",
                a.head().0
            )
            .as_str()
        )
    );

    // The late deposit gets its confirmations; the sequencer mints nothing, and a direct call
    // is refused.
    w.mine(CONFIRMATIONS);
    let built = step(&w, vec![]);
    assert!(deposits(&built).is_empty(), "no mint once frozen");
    let pin = w.pin();
    let confirm = Bytes::from(
        confirmDepositCall {
            txid: contracts::txid_display(&late.compute_txid()),
            vout: 0,
        }
        .abi_encode(),
    );
    let reason = manager_revert(&a, &pin, confirm);
    assert!(
        reason.as_deref().unwrap_or("").contains("frozen"),
        "{reason:?}"
    );
    assert_eq!(balance(&a, &pin, user.address), before);
    assert_eq!(a.head(), b.head(), "the follower agrees on every block");
}

/// The calls `confirmDeposit(txid, 0)` refused by the manager, as sentences.
fn refusal(chain: &Chain, pin: &BitcoinPin, tx: &Transaction) -> String {
    manager_revert(
        chain,
        pin,
        contracts::confirm_deposit_calldata(contracts::txid_display(&tx.compute_txid()), 0),
    )
    .unwrap_or_else(|| "minted".to_string())
}

#[test]
fn a_taproot_deposit_is_minted_through_its_hint_and_swept_into_the_vault_by_its_deposit_leaf() {
    use hemi_tunnel::sweep::{build_sweep, sign_sweep, SweepInput};
    use hemi_tunnel::TaprootDeposit;

    let mut w = World::new();
    let a = Chain::open(None, w.spec()).expect("chain a");
    let b = Chain::open(None, w.spec()).expect("chain b");
    let pin = w.pin();
    build(&a, &pin, 1);
    import(&b, &a, 1, &pin).expect("activation");

    let r = Address::repeat_byte(0x5a);
    let deposit = |reclaim_after: u16, chain_id: u64, max_fee: u64| TaprootDeposit {
        chain_id,
        recipient: r,
        max_fee: Amount::from_sat(max_fee),
        vault_key: w.vault.output_key(),
        depositor_key: Key::from_seed("taproot depositor").x_only(),
        reclaim_after,
    };
    let outputs = |d: &TaprootDeposit, hint: &TaprootDeposit, sats: u64| {
        vec![
            TxOut {
                value: Amount::from_sat(sats),
                script_pubkey: d.script_pubkey(),
            },
            TxOut {
                value: Amount::ZERO,
                script_pubkey: hint.hint_script(),
            },
        ]
    };
    let soon = deposit(5, 31337, FEE);
    let other_chain = deposit(144, 1, FEE);
    let low_fee = deposit(144, 31337, FEE - 1);
    let good = deposit(144, 31337, FEE);
    let mismatched = deposit(145, 31337, FEE);
    let bad: Vec<Transaction> = vec![
        w.send(1, outputs(&soon, &soon, 50_000)),
        w.send(1, outputs(&other_chain, &other_chain, 50_000)),
        w.send(1, outputs(&low_fee, &low_fee, 50_000)),
        // The output is one deposit, the hint describes another.
        w.send(1, outputs(&good, &mismatched, 50_000)),
    ];
    // 100 BTC, the seed story's amount, from three coinbases.
    let gross = 100 * 100_000_000;
    let tx = w.send(3, outputs(&good, &good, gross));
    w.mine(CONFIRMATIONS - 1);

    let pin = w.pin();
    let built = build(&a, &pin, 2);
    let txid = contracts::txid_display(&tx.compute_txid());
    assert_eq!(
        deposits(&built),
        vec![DepositTx { txid, vout: 0 }],
        "only the good taproot deposit, found through its hint"
    );
    let at = built
        .block
        .txs
        .iter()
        .position(|t| matches!(t.tx, L2Tx::Deposit(_)))
        .expect("deposit tx");
    assert!(
        built.receipts[at].receipt.status.coerce_status(),
        "the mint failed: {}",
        refusal(&a, &pin, &tx)
    );
    assert_eq!(balance(&a, &pin, r), U256::from(gross - FEE));
    import(&b, &a, 2, &pin).expect("the follower re-executes the taproot mint");
    assert_eq!(
        a.header(2).expect("h").expect("h").state_root,
        b.header(2).expect("h").expect("h").state_root
    );
    assert_eq!(refusal(&a, &pin, &tx), "already minted");

    // The others, asked of the contract by anyone: refused, each with its reason.
    let reasons: Vec<String> = bad.iter().map(|t| refusal(&a, &pin, t)).collect();
    // Sent four blocks before the good one: 4 more confirmations, plus the 6 sweep blocks.
    let soon_confs = CONFIRMATIONS + 4 + 6;
    assert_eq!(
        reasons,
        vec![
            format!(
                "the deposit's reclaim path opens after 5 blocks; minting needs at least \
                 {soon_confs}"
            ),
            "taproot deposit: for another chain id".to_string(),
            "taproot deposit: the tunnel's fee is above the deposit's max fee".to_string(),
            "output 0 is not the taproot deposit its HEMT hint describes".to_string(),
        ]
    );
    // The same rules in Rust (what the sequencer and hemi_getDeposit use).
    assert!(soon.mint_refusal(31337, FEE, 3).is_some());
    assert!(other_chain.mint_refusal(31337, FEE, 3).is_some());
    assert!(low_fee.mint_refusal(31337, FEE, 3).is_some());
    assert_eq!(good.mint_refusal(31337, FEE, 3), None);
    assert!(
        hemi_tunnel::find_taproot_deposit(&bad[3], w.vault.output_key()).is_err(),
        "a hint that does not build the output is refused"
    );

    // The custodians sweep it into the vault through the deposit leaf; the node accepts it.
    let inputs = [SweepInput {
        outpoint: OutPoint::new(tx.compute_txid(), 0),
        value: Amount::from_sat(gross),
        deposit: good,
    }];
    let mut sweep = build_sweep(&w.vault, &inputs, 2).expect("sweep");
    let mut rng =
        <rand_chacha::ChaCha20Rng as rand_chacha::rand_core::SeedableRng>::from_seed([3; 32]);
    sign_sweep(&w.custody, &w.vault, &mut sweep, &inputs, &[1, 3], &mut rng).expect("sign");
    let vault_before = w
        .store
        .balance_by_script(&w.params.vault_script(), hemi_btc_view::AsOf::Tip)
        .expect("balance");
    w.node
        .submit_transaction(sweep.clone(), None)
        .unwrap_or_else(|e| panic!("sweep refused: {e:?}"));
    w.mine(1);
    let vault_after = w
        .store
        .balance_by_script(&w.params.vault_script(), hemi_btc_view::AsOf::Tip)
        .expect("balance");
    assert_eq!(vault_after - vault_before, sweep.output[0].value.to_sat());
    assert!(
        gross - sweep.output[0].value.to_sat() < FEE,
        "the sweep's fee fits the tunnel's fee"
    );
}
