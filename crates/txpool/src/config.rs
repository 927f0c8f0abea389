//! The pool's settings.

/// Pool settings. Defaults (see [`PoolConfig::new`]) follow geth where it has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolConfig {
    /// Chain id transactions must be signed for (EIP-155).
    pub chain_id: u64,
    /// Most transactions one sender may have pooled (pending + queued). Default 64.
    pub max_per_sender: usize,
    /// Most transactions in the pool. Default 10 000.
    pub max_total: usize,
    /// Percent by which a replacement must raise both the max fee and the priority fee.
    /// Default 10 (geth's `--txpool.pricebump`).
    pub price_bump_percent: u64,
    /// Smallest priority fee (gas price for legacy) accepted, in wei. Default 0.
    pub min_priority_fee: u128,
    /// Block gas limit: a transaction asking for more can never be included.
    pub block_gas_limit: u64,
}

impl PoolConfig {
    /// Default per-sender limit.
    pub const DEFAULT_MAX_PER_SENDER: usize = 64;
    /// Default pool size limit.
    pub const DEFAULT_MAX_TOTAL: usize = 10_000;
    /// Default replacement price bump, in percent.
    pub const DEFAULT_PRICE_BUMP_PERCENT: u64 = 10;

    /// A configuration for `chain_id` and `block_gas_limit` with the documented defaults.
    #[must_use]
    pub const fn new(chain_id: u64, block_gas_limit: u64) -> Self {
        Self {
            chain_id,
            max_per_sender: Self::DEFAULT_MAX_PER_SENDER,
            max_total: Self::DEFAULT_MAX_TOTAL,
            price_bump_percent: Self::DEFAULT_PRICE_BUMP_PERCENT,
            min_priority_fee: 0,
            block_gas_limit,
        }
    }
}
