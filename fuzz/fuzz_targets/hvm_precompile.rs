//! hVM precompile inputs come from any contract: for every address 0x40–0x49 and any input
//! bytes, the precompile answers (output, empty, or a failure) and never panics. Runs against
//! a real regtest chain made once by the embedded node (101 blocks and one payment).
#![no_main]

use std::sync::{Arc, OnceLock};

use bitcoin::Network;
use hemi_btc_headers::ChainParams;
use hemi_btc_regtest::RegtestNode;
use hemi_btc_store::ChainStore;
use hemi_btc_view::BitcoinView;
use hemi_btc_wallet::{Key, KeyKind};
use hemi_hvm::precompiles::{call, gas_cost, BitcoinContext, HVM_PRECOMPILE_ADDRESSES};
use libfuzzer_sys::fuzz_target;

fn chain() -> &'static Arc<ChainStore> {
    static CHAIN: OnceLock<Arc<ChainStore>> = OnceLock::new();
    CHAIN.get_or_init(|| {
        // `call` turns a panic into empty success (Hemi's recover guard); a panic is still a bug,
        // so make every panic abort here, where libFuzzer sees it.
        std::panic::set_hook(Box::new(|info| {
            eprintln!("panic inside a precompile: {info}");
            std::process::abort();
        }));
        let store = Arc::new(ChainStore::in_memory(ChainParams::new(Network::Regtest)).expect("store"));
        let node = RegtestNode::new(store.clone());
        let key = Key::from_seed("fuzz-hvm");
        node.mine(101, &key.script_pubkey(KeyKind::P2wpkh)).expect("mine");
        store
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, input)) = data.split_first() else { return };
    let n = HVM_PRECOMPILE_ADDRESSES[selector as usize % HVM_PRECOMPILE_ADDRESSES.len()];
    let store = chain();
    let Ok(tip) = store.tip() else { return };
    let ctx = BitcoinContext { view: store.as_ref(), pinned: tip, network: Network::Regtest };
    assert!(gas_cost(n).is_some());
    let _ = call(n, input, &ctx);
});
