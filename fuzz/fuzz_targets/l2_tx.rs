//! L2 transactions arrive as raw bytes over eth_sendRawTransaction (and in journals): decoding,
//! sender recovery and pool validation never panic, whatever the bytes.
#![no_main]

use alloy_primitives::{Address, U256};
use hemi_txpool::{AccountState, PoolConfig, TxPool};
use libfuzzer_sys::fuzz_target;

struct Rich;

impl AccountState for Rich {
    fn nonce(&self, _: Address) -> u64 {
        0
    }
    fn balance(&self, _: Address) -> U256 {
        U256::MAX
    }
}

fuzz_target!(|data: &[u8]| {
    let mut pool = TxPool::new(PoolConfig::new(31337, 30_000_000));
    let _ = pool.add_raw(data, &Rich);
    let _ = pool.best(1_000_000_000, 30_000_000);
    let _ = TxPool::from_journal(PoolConfig::new(31337, 30_000_000), data, &Rich);
});
