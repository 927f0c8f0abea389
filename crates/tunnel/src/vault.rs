//! The vault: a taproot output whose key path is the custodians' k-of-n FROST key and whose
//! script tree holds a `sortedmulti_a` k-of-n leaf (if the FROST tooling fails, the custodians
//! still sign a PSBT with their own keys) and a timelocked recovery leaf.
//!
//! ```text
//! internal key: the FROST group key (as frost-secp256k1-tr's DKG outputs it: already
//!               BIP-341-tweaked with an empty script tree, so no participant can hide a
//!               script path in it)
//! leaf 1:       <k_1> OP_CHECKSIG <k_2> OP_CHECKSIGADD … <k_n> OP_CHECKSIGADD <k> OP_NUMEQUAL
//!               (keys sorted by their bytes: miniscript's sortedmulti_a)
//! leaf 2:       <N> OP_CHECKSEQUENCEVERIFY OP_DROP <recovery key> OP_CHECKSIG
//! ```

use bitcoin::opcodes::all::{OP_CHECKSIG, OP_CHECKSIGADD, OP_CSV, OP_DROP, OP_NUMEQUAL};
use bitcoin::script::Builder;
use bitcoin::secp256k1::Secp256k1;
use bitcoin::taproot::{TapNodeHash, TaprootBuilder, TaprootSpendInfo};
use bitcoin::{Address, Network, ScriptBuf, XOnlyPublicKey};

/// Why a vault cannot be built.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VaultError {
    /// The threshold is 0 or above the number of custodians.
    #[error("threshold {threshold} of {custodians} custodians")]
    Threshold {
        /// k.
        threshold: usize,
        /// n.
        custodians: usize,
    },
    /// Two custodians share a key.
    #[error("two custodians share the key {0}")]
    DuplicateKey(XOnlyPublicKey),
    /// The recovery timelock is 0 (the recovery key could spend at once).
    #[error("the recovery timelock must be at least one block")]
    RecoveryTimelock,
}

/// The vault's keys and timelock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vault {
    /// The key-path key: the FROST group key.
    pub group_key: XOnlyPublicKey,
    /// k.
    pub threshold: usize,
    /// The custodians' own keys for the `sortedmulti_a` leaf, sorted.
    pub custodian_keys: Vec<XOnlyPublicKey>,
    /// The key that may spend after `recovery_after` blocks.
    pub recovery_key: XOnlyPublicKey,
    /// The recovery leaf's relative timelock, blocks.
    pub recovery_after: u16,
}

impl Vault {
    /// A vault of `custodian_keys` (any order) with threshold `threshold`.
    ///
    /// # Errors
    /// [`VaultError`] for a threshold out of range, a repeated key, a zero timelock.
    pub fn new(
        group_key: XOnlyPublicKey,
        threshold: usize,
        mut custodian_keys: Vec<XOnlyPublicKey>,
        recovery_key: XOnlyPublicKey,
        recovery_after: u16,
    ) -> Result<Self, VaultError> {
        if threshold == 0 || threshold > custodian_keys.len() {
            return Err(VaultError::Threshold {
                threshold,
                custodians: custodian_keys.len(),
            });
        }
        custodian_keys.sort_by_key(|k| k.serialize());
        if let Some(w) = custodian_keys.windows(2).find(|w| w[0] == w[1]) {
            return Err(VaultError::DuplicateKey(w[0]));
        }
        if recovery_after == 0 {
            return Err(VaultError::RecoveryTimelock);
        }
        Ok(Vault {
            group_key,
            threshold,
            custodian_keys,
            recovery_key,
            recovery_after,
        })
    }

    /// The `sortedmulti_a(k, keys…)` leaf.
    pub fn multisig_leaf(&self) -> ScriptBuf {
        let mut b = Builder::new();
        for (i, key) in self.custodian_keys.iter().enumerate() {
            b = b.push_x_only_key(key);
            b = b.push_opcode(if i == 0 { OP_CHECKSIG } else { OP_CHECKSIGADD });
        }
        b.push_int(self.threshold as i64)
            .push_opcode(OP_NUMEQUAL)
            .into_script()
    }

    /// The recovery leaf: `<N> OP_CSV OP_DROP <recovery key> OP_CHECKSIG`.
    pub fn recovery_leaf(&self) -> ScriptBuf {
        Builder::new()
            .push_int(i64::from(self.recovery_after))
            .push_opcode(OP_CSV)
            .push_opcode(OP_DROP)
            .push_x_only_key(&self.recovery_key)
            .push_opcode(OP_CHECKSIG)
            .into_script()
    }

    /// The taproot tree: both leaves at depth 1, the group key inside.
    #[allow(clippy::expect_used)] // two leaves at depth 1 always make a complete tree
    pub fn spend_info(&self) -> TaprootSpendInfo {
        let secp = Secp256k1::verification_only();
        TaprootBuilder::new()
            .add_leaf(1, self.multisig_leaf())
            .and_then(|b| b.add_leaf(1, self.recovery_leaf()))
            .ok()
            .and_then(|b| b.finalize(&secp, self.group_key).ok())
            .expect("two leaves at depth 1 form a complete tree")
    }

    /// The script tree's Merkle root (what the key-path signature's tweak commits to).
    pub fn merkle_root(&self) -> Option<TapNodeHash> {
        self.spend_info().merkle_root()
    }

    /// The output key (x-only) the vault's `OP_1 <key>` names.
    pub fn output_key(&self) -> XOnlyPublicKey {
        self.spend_info().output_key().to_x_only_public_key()
    }

    /// The vault's scriptPubKey.
    pub fn script_pubkey(&self) -> ScriptBuf {
        ScriptBuf::new_p2tr_tweaked(self.spend_info().output_key())
    }

    /// The vault's address on `network`.
    pub fn address(&self, network: Network) -> Address {
        Address::p2tr_tweaked(self.spend_info().output_key(), network)
    }
}
