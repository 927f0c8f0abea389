//! Per-network consensus parameters for header validation.

use bitcoin::block::Header;
use bitcoin::pow::Target;
use bitcoin::{BlockHash, Network};

/// Seconds a header's time may run ahead of the local clock (`MAX_FUTURE_BLOCK_TIME`).
pub const MAX_FUTURE_BLOCK_TIME: u32 = 2 * 60 * 60;

/// BIP94: how far (seconds) the first block of a period may precede its parent (`MAX_TIMEWARP`).
pub const MAX_TIMEWARP: i64 = 600;

/// Number of previous blocks whose median is the median time past.
pub const MEDIAN_TIME_SPAN: usize = 11;

/// Consensus parameters that header validation depends on.
///
/// [`ChainParams::new`] reproduces Bitcoin Core's `kernel/chainparams.cpp` values; the fields are
/// public so tests and custom networks can adjust them before building a
/// [`HeaderTree`](crate::HeaderTree) (which takes a copy and never changes it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainParams {
    /// The network these parameters describe.
    pub network: Network,
    /// Easiest target allowed (`powLimit`); Core's exact value, not its compact rounding.
    pub pow_limit: Target,
    /// Target seconds between blocks (`nPowTargetSpacing`).
    pub pow_target_spacing: u32,
    /// Target seconds per difficulty period (`nPowTargetTimespan`).
    pub pow_target_timespan: u32,
    /// Testnet rule: a block more than 2 × spacing after its parent may use the pow limit.
    pub allow_min_difficulty_blocks: bool,
    /// Regtest rule: difficulty never retargets.
    pub no_pow_retargeting: bool,
    /// BIP94 (testnet4): retarget from the period's first block, and the timewarp rule.
    pub enforce_bip94: bool,
    /// Height from which version ≥ 2 is required (BIP34).
    pub bip34_height: u32,
    /// Height from which version ≥ 3 is required (BIP66).
    pub bip66_height: u32,
    /// Height from which version ≥ 4 is required (BIP65).
    pub bip65_height: u32,
    /// `(height, hash)` pairs a chain must pass through. Empty by default: Bitcoin Core no
    /// longer ships checkpoints. Kept sorted by height by [`ChainParams::with_checkpoints`].
    pub checkpoints: Vec<(u32, BlockHash)>,
    /// The genesis header, the root of every [`HeaderTree`](crate::HeaderTree).
    pub genesis_header: Header,
}

/// Builds a target whose four most significant bytes are `top` and whose remaining bytes are
/// `fill` (Core writes its pow limits as hex literals of this shape).
fn target(top: [u8; 4], fill: u8) -> Target {
    let mut be = [fill; 32];
    be[..4].copy_from_slice(&top);
    Target::from_be_bytes(be)
}

impl ChainParams {
    /// Bitcoin Core's parameters for `network` (`Network::Testnet` is testnet3).
    pub fn new(network: Network) -> Self {
        let genesis_header = bitcoin::constants::genesis_block(network).header;
        let mainnet_limit = target([0, 0, 0, 0], 0xff);
        let two_weeks = 14 * 24 * 60 * 60;
        let base = ChainParams {
            network,
            pow_limit: mainnet_limit,
            pow_target_spacing: 10 * 60,
            pow_target_timespan: two_weeks,
            allow_min_difficulty_blocks: false,
            no_pow_retargeting: false,
            enforce_bip94: false,
            bip34_height: 1,
            bip66_height: 1,
            bip65_height: 1,
            checkpoints: Vec::new(),
            genesis_header,
        };
        match network {
            Network::Bitcoin => ChainParams {
                bip34_height: 227_931,
                bip66_height: 363_725,
                bip65_height: 388_381,
                ..base
            },
            Network::Testnet => ChainParams {
                allow_min_difficulty_blocks: true,
                bip34_height: 21_111,
                bip66_height: 330_776,
                bip65_height: 581_885,
                ..base
            },
            Network::Testnet4 => ChainParams {
                allow_min_difficulty_blocks: true,
                enforce_bip94: true,
                ..base
            },
            Network::Signet => ChainParams {
                // 00000377ae000000...
                pow_limit: {
                    let mut be = [0u8; 32];
                    be[2..5].copy_from_slice(&[0x03, 0x77, 0xae]);
                    Target::from_be_bytes(be)
                },
                ..base
            },
            Network::Regtest => ChainParams {
                pow_limit: target([0x7f, 0xff, 0xff, 0xff], 0xff),
                pow_target_timespan: 24 * 60 * 60,
                allow_min_difficulty_blocks: true,
                no_pow_retargeting: true,
                ..base
            },
        }
    }

    /// The genesis header.
    pub fn genesis(&self) -> Header {
        self.genesis_header
    }

    /// Returns these parameters with `cps` as the checkpoints (sorted by height, later
    /// duplicates of a height dropped).
    pub fn with_checkpoints(mut self, mut cps: Vec<(u32, BlockHash)>) -> Self {
        cps.sort_by_key(|&(h, _)| h);
        cps.dedup_by_key(|&mut (h, _)| h);
        self.checkpoints = cps;
        self
    }

    /// Blocks per difficulty period (`DifficultyAdjustmentInterval`), at least 1.
    pub fn difficulty_adjustment_interval(&self) -> u32 {
        self.pow_target_timespan
            .checked_div(self.pow_target_spacing)
            .unwrap_or(1)
            .max(1)
    }

    /// The checkpointed hash at `height`, if any.
    pub fn checkpoint_at(&self, height: u32) -> Option<BlockHash> {
        self.checkpoints
            .iter()
            .find(|&&(h, _)| h == height)
            .map(|&(_, hash)| hash)
    }
}
