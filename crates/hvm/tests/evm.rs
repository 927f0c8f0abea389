//! The Bitcoin precompiles inside revm: contracts reach them with STATICCALL, answers follow the
//! pinned Bitcoin block, gas is Hemi's flat price, Hemi's "raw error" fails the call and burns
//! its gas, and Ethereum's own precompiles keep working.

use std::sync::Arc;

use bitcoin::Network;
use hemi_btc_headers::ChainParams;
use hemi_btc_regtest::RegtestNode;
use hemi_btc_store::ChainStore;
use hemi_btc_view::{BitcoinView, BlockRef};
use hemi_btc_wallet::{Key, KeyKind};
use hemi_hvm::evm::{hvm_address, BitcoinPin, HvmPrecompiles};
use revm::context::TxEnv;
use revm::context_interface::result::{ExecutionResult, HaltReason, OutOfGasError};
use revm::database::InMemoryDB;
use revm::primitives::hardfork::SpecId;
use revm::primitives::{Address, Bytes, TxKind, U256};
use revm::state::{AccountInfo, Bytecode};
use revm::{Context, ExecuteEvm, MainBuilder, MainContext};

const CALLER: Address = Address::new([0x11; 20]);
const FORWARDER: Address = Address::new([0x22; 20]);

/// Bytecode that STATICCALLs precompile `n` with its own calldata (all remaining gas) and
/// returns whatever came back, reverting with the returndata if the call failed:
/// CALLDATACOPY(0,0,size); ok = STATICCALL(gas, n, 0, size, 0, 0); RETURNDATACOPY(0,0,rds);
/// if ok RETURN(0, rds) else REVERT(0, rds).
fn forwarder(n: u8) -> Bytes {
    let code = vec![
        0x36, 0x5f, 0x5f, 0x37, // CALLDATACOPY(0, 0, CALLDATASIZE)
        0x5f, 0x5f, 0x36, 0x5f, 0x60, n, 0x5a,
        0xfa, // STATICCALL(GAS, n, 0, CALLDATASIZE, 0, 0)
        0x3d, 0x5f, 0x5f, 0x3e, // RETURNDATACOPY(0, 0, RETURNDATASIZE)
        0x60, 0x19, 0x57, // JUMPI(0x19, ok)
        0x3d, 0x5f, 0xfd, // REVERT(0, RETURNDATASIZE)
        0x00, 0x00, 0x00, // padding up to the JUMPDEST at 0x19
        0x5b, 0x3d, 0x5f, 0xf3, // JUMPDEST; RETURN(0, RETURNDATASIZE)
    ];
    debug_assert_eq!(code[0x19], 0x5b);
    Bytes::from(code)
}

struct Chain {
    store: Arc<ChainStore>,
    key: Key,
}

/// A real regtest chain: 101 blocks mined to `key` by the embedded node.
fn chain() -> Chain {
    let store = Arc::new(ChainStore::in_memory(ChainParams::new(Network::Regtest)).expect("store"));
    let node = RegtestNode::new(store.clone());
    let key = Key::from_seed("hvm-evm-test");
    node.mine(101, &key.script_pubkey(KeyKind::P2wpkh))
        .expect("mine");
    Chain { store, key }
}

fn pin_at(chain: &Chain, height: u32) -> BitcoinPin {
    let (pinned, _): (BlockRef, _) = chain
        .store
        .header_at(height)
        .expect("view")
        .expect("header");
    BitcoinPin {
        view: chain.store.clone(),
        pinned,
        network: Network::Regtest,
    }
}

/// Runs one transaction from CALLER to `to` with `data` under `pin`.
fn run(
    pin: BitcoinPin,
    forwarder_for: Option<u8>,
    to: Address,
    data: Vec<u8>,
    gas_limit: u64,
) -> ExecutionResult {
    let mut db = InMemoryDB::default();
    db.insert_account_info(
        CALLER,
        AccountInfo {
            balance: U256::from(10u64).pow(U256::from(20u64)),
            ..Default::default()
        },
    );
    if let Some(n) = forwarder_for {
        let code = Bytecode::new_raw(forwarder(n));
        db.insert_account_info(
            FORWARDER,
            AccountInfo {
                code_hash: code.hash_slow(),
                code: Some(code),
                ..Default::default()
            },
        );
    }
    let spec = SpecId::PRAGUE;
    let mut evm = Context::mainnet()
        .with_db(db)
        .modify_cfg_chained(|c| c.spec = spec)
        .build_mainnet()
        .with_precompiles(HvmPrecompiles::new(spec, pin));
    let tx = TxEnv::builder()
        .caller(CALLER)
        .kind(TxKind::Call(to))
        .data(Bytes::from(data))
        .gas_limit(gas_limit)
        .gas_price(0)
        .build_fill();
    evm.transact(tx).expect("transact").result
}

fn output(r: &ExecutionResult) -> Vec<u8> {
    match r {
        ExecutionResult::Success { output, .. } => output.data().to_vec(),
        other => panic!("expected success, got {other:?}"),
    }
}

#[test]
fn a_contract_reads_a_bitcoin_balance_through_0x40_as_of_the_pinned_block() {
    let c = chain();
    let addr = c.key.address(KeyKind::P2wpkh, Network::Regtest).to_string();
    // 101 regtest coinbases of 50 BTC each (halving starts at 150).
    let at_101 = output(&run(
        pin_at(&c, 101),
        Some(0x40),
        FORWARDER,
        addr.clone().into_bytes(),
        1_000_000,
    ));
    assert_eq!(at_101, (101u64 * 50 * 100_000_000).to_be_bytes().to_vec());
    // The same call pinned to block 50 answers as of block 50, whatever the tip is.
    let at_50 = output(&run(
        pin_at(&c, 50),
        Some(0x40),
        FORWARDER,
        addr.into_bytes(),
        1_000_000,
    ));
    assert_eq!(at_50, (50u64 * 50 * 100_000_000).to_be_bytes().to_vec());
}

#[test]
fn a_direct_call_to_0x40_costs_hemis_flat_50000_gas() {
    let c = chain();
    let addr = c
        .key
        .address(KeyKind::P2wpkh, Network::Regtest)
        .to_string()
        .into_bytes();
    // Intrinsic gas: 21,000 + 16 per non-zero calldata byte (bech32 text has no zero bytes).
    let intrinsic = 21_000 + 16 * addr.len() as u64;
    let r = run(
        pin_at(&c, 101),
        None,
        hvm_address(0x40),
        addr.clone(),
        1_000_000,
    );
    match &r {
        ExecutionResult::Success { gas, .. } => assert_eq!(gas.tx_gas_used(), intrinsic + 50_000),
        other => panic!("{other:?}"),
    }
    // One gas short of the precompile's price: out of gas.
    let r = run(
        pin_at(&c, 101),
        None,
        hvm_address(0x40),
        addr,
        intrinsic + 49_999,
    );
    assert!(
        matches!(
            r,
            ExecutionResult::Halt {
                reason: HaltReason::OutOfGas(OutOfGasError::Precompile),
                ..
            }
        ),
        "{r:?}"
    );
}

#[test]
fn hemis_raw_error_fails_the_call_and_burns_its_gas() {
    let c = chain();
    // 0x46 with an undecodable but long-enough address is Hemi's "raw error".
    let bad = b"this-is-not-a-bitcoin-address-at-all".to_vec();
    let r = run(
        pin_at(&c, 101),
        None,
        hvm_address(0x46),
        bad.clone(),
        1_000_000,
    );
    match &r {
        ExecutionResult::Halt { gas, .. } => {
            assert_eq!(gas.tx_gas_used(), 1_000_000, "all gas burned")
        }
        other => panic!("expected a halt, got {other:?}"),
    }
    // Through a contract: STATICCALL returns 0, the forwarder reverts; the transaction survives.
    let r = run(pin_at(&c, 101), Some(0x46), FORWARDER, bad, 1_000_000);
    assert!(matches!(r, ExecutionResult::Revert { .. }), "{r:?}");
    // Short input is Hemi's "empty success", not an error.
    let r = run(
        pin_at(&c, 101),
        Some(0x46),
        FORWARDER,
        b"short".to_vec(),
        1_000_000,
    );
    assert_eq!(output(&r), Vec::<u8>::new());
}

#[test]
fn a_four_byte_input_to_0x43_is_empty_success_not_a_crash() {
    // Hemi's op-geth crashed on this input (docs/HVM_PRECOMPILES.md §10.1).
    let c = chain();
    let r = run(
        pin_at(&c, 101),
        None,
        hvm_address(0x43),
        vec![1, 2, 3, 4],
        1_000_000,
    );
    assert_eq!(output(&r), Vec::<u8>::new());
}

#[test]
fn ethereum_precompiles_still_answer_next_to_the_bitcoin_ones() {
    let c = chain();
    // 0x04 is identity.
    let r = run(
        pin_at(&c, 101),
        None,
        Address::with_last_byte(4),
        b"hello".to_vec(),
        100_000,
    );
    assert_eq!(output(&r), b"hello".to_vec());
}
