//! The document's shape. Bitcoin items are hex without `0x` (what `bitcoin-cli` prints and
//! takes: a `merkleBlock` goes to `verifytxoutproof` as it is); L2 items are `0x` hex.

use alloy_primitives::{Address, Bytes};
use serde::{Deserialize, Serialize};

use crate::verify::{Link, VerifyError};

/// The format of a document from a chain sealed by one sequencer key.
pub const VERSION: &str = "hemi-rs/provenance/v1";

/// The format of a document from a chain ordered by a sequencer set: v1 plus the set
/// (`validators`) and the mint block's commit certificate (`mint.certificate`).
pub const VERSION_SET: &str = "hemi-rs/provenance/v2";

/// Bytes as plain hex (no `0x`), Bitcoin Core's style.
pub(crate) mod plain_hex {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(b))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        hex::decode(&s).map_err(serde::de::Error::custom)
    }

    pub(crate) mod list {
        use serde::{Deserialize, Deserializer, Serializer};

        pub(crate) fn serialize<S: Serializer>(v: &[Vec<u8>], s: S) -> Result<S::Ok, S::Error> {
            s.collect_seq(v.iter().map(hex::encode))
        }

        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Vec<Vec<u8>>, D::Error> {
            Vec::<String>::deserialize(d)?
                .iter()
                .map(|s| hex::decode(s).map_err(serde::de::Error::custom))
                .collect()
        }
    }
}

/// One Bitcoin transaction with its proof of inclusion and the headers above its block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BitcoinInclusion {
    /// The transaction, consensus-serialized (with witness).
    #[serde(with = "plain_hex")]
    pub tx: Vec<u8>,
    /// Bitcoin Core's `gettxoutproof` serialization: the block header and a partial Merkle tree
    /// matching the transaction.
    #[serde(with = "plain_hex")]
    pub merkle_block: Vec<u8>,
    /// The 80-byte headers after that block, in order, up to the tip the document was made at.
    #[serde(with = "plain_hex::list")]
    pub headers: Vec<Vec<u8>>,
}

/// Link 1: the deposit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Deposit {
    /// Its txid as Bitcoin Core prints it.
    pub txid: String,
    /// The output that pays the vault.
    pub vout: u32,
    /// The vault's scriptPubKey.
    #[serde(with = "plain_hex")]
    pub vault_script: Vec<u8>,
    /// Its inclusion in Bitcoin.
    #[serde(flatten)]
    pub inclusion: BitcoinInclusion,
}

/// Link 2: the L2 block that minted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Mint {
    /// The block's header, RLP (its hash is keccak256 of these bytes).
    pub header: Bytes,
    /// The sequencer's 65-byte seal over the block hash (under a set: its proposer's).
    pub seal: Bytes,
    /// Under a sequencer set (v2): the block's commit certificate, `round (4, BE) ‖ 65-byte
    /// precommit signatures`, more than two thirds of `validators` for its hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<Bytes>,
    /// The mint transaction's index in the block (the receipt trie's key is `rlp(index)`).
    pub receipt_index: u64,
    /// The mint's receipt, EIP-2718 encoded (the receipt trie's value).
    pub receipt: Bytes,
    /// The trie nodes from the receipts root to the receipt.
    pub receipt_proof: Vec<Bytes>,
    /// Which log of the receipt is `DepositConfirmed`.
    pub log_index: u64,
    /// The L2 headers (RLP) after the mint block up to the anchoring keystone's block; empty
    /// when the mint block is that keystone.
    pub headers: Vec<Bytes>,
}

/// Link 3: the keystone and its PoP publication.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Anchor {
    /// The 76-byte abbreviated keystone.
    #[serde(with = "plain_hex")]
    pub keystone: Vec<u8>,
    /// The PoP transaction's txid as Bitcoin Core prints it.
    pub pop_txid: String,
    /// Its inclusion in Bitcoin.
    #[serde(flatten)]
    pub inclusion: BitcoinInclusion,
}

/// The whole document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Provenance {
    /// [`VERSION`].
    pub version: String,
    /// The Bitcoin network, as Bitcoin Core's `-chain` names it (`main`, `test`, `testnet4`,
    /// `signet`, `regtest`).
    pub network: String,
    /// The L2's EIP-155 chain id (the seal commits to it).
    pub chain_id: u64,
    /// The address that seals L2 blocks (under a set: the mint block's proposer).
    pub sequencer: Address,
    /// Under a sequencer set (v2): the chain spec's validators, whose quorum certifies blocks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub validators: Vec<Address>,
    /// The tunnel contract whose `DepositConfirmed` log is the mint.
    pub tunnel_manager: Address,
    /// Link 1.
    pub deposit: Deposit,
    /// Link 2.
    pub mint: Mint,
    /// Link 3.
    pub anchor: Anchor,
}

impl Provenance {
    /// Reads a document: valid JSON of exactly this shape, [`VERSION`] or [`VERSION_SET`].
    ///
    /// # Errors
    /// [`VerifyError`] on the document link: not JSON, an unknown or missing field, bad hex,
    /// another version, or a version whose set fields are missing or out of place.
    pub fn from_json(text: &str) -> Result<Self, VerifyError> {
        let doc: Provenance = serde_json::from_str(text).map_err(|e| {
            VerifyError::new(Link::Document, format!("not a provenance document: {e}"))
        })?;
        doc.check_version()?;
        Ok(doc)
    }

    /// The version names the shape: v1 carries no set, v2 a set and a certificate.
    ///
    /// # Errors
    /// [`VerifyError`] on the document link.
    pub fn check_version(&self) -> Result<(), VerifyError> {
        let set = !self.validators.is_empty() || self.mint.certificate.is_some();
        let complete = !self.validators.is_empty() && self.mint.certificate.is_some();
        match self.version.as_str() {
            VERSION if !set => Ok(()),
            VERSION => Err(VerifyError::new(
                Link::Document,
                format!("a {VERSION} document carries no validators or certificate"),
            )),
            VERSION_SET if complete => Ok(()),
            VERSION_SET => Err(VerifyError::new(
                Link::Document,
                format!("a {VERSION_SET} document needs both validators and mint.certificate"),
            )),
            other => Err(VerifyError::new(
                Link::Document,
                format!("version {other:?}; this build reads {VERSION:?} and {VERSION_SET:?}"),
            )),
        }
    }

    /// The document as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}
