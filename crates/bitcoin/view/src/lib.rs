//! What the rest of hemi-rs may ask of Bitcoin.
//!
//! The hVM precompiles, the JSON-RPC server, the PoP miner and the finality tracker all read
//! Bitcoin through the [`BitcoinView`] trait. They do not care where blocks came from — a real
//! Bitcoin Core over P2P, the embedded regtest node, or a file — only that the answer is the one
//! of the best chain, or of a named recent block ([`AsOf`]) so that re-executing an L2 block that
//! pinned Bitcoin block H gives byte-identical results.
//!
//! Place in the chain of trust: **Bitcoin** → hVM → sequencer → chain → PoP → finality.
//!
//! Main types: [`BitcoinView`], [`BlockRef`], [`Utxo`], [`IndexedTx`], [`KeystonePublication`].

use bitcoin::block::Header;
use bitcoin::{BlockHash, OutPoint, ScriptBuf, Transaction, Txid};

/// A block on the best chain: height and hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct BlockRef {
    /// Height (genesis = 0).
    pub height: u32,
    /// Block hash.
    pub hash: BlockHash,
}

/// Which chain state a query is answered against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AsOf {
    /// The current best (indexed) tip.
    #[default]
    Tip,
    /// The state right after this block on the best chain was connected.
    Block(BlockHash),
}

/// An unspent transaction output.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Utxo {
    /// Where it is.
    pub outpoint: OutPoint,
    /// Amount in satoshis.
    pub value: u64,
    /// The locking script.
    pub script_pubkey: ScriptBuf,
    /// Height of the block that created it.
    pub height: u32,
    /// Created by a coinbase transaction (matures after 100 blocks).
    pub coinbase: bool,
}

/// Where a confirmed transaction sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TxLocation {
    /// The block that contains it.
    pub block: BlockRef,
    /// Position inside the block (coinbase = 0).
    pub index: u32,
}

/// A confirmed transaction with its location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexedTx {
    /// The transaction.
    pub tx: Transaction,
    /// Where it was confirmed.
    pub location: TxLocation,
}

/// The input that spent an output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SpentBy {
    /// The spending transaction.
    pub txid: Txid,
    /// Its input index.
    pub vin: u32,
    /// Height of the block that confirmed the spend.
    pub height: u32,
}

/// One Bitcoin publication of a keystone (a PoP transaction found in a block).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KeystonePublication {
    /// Keystone id: double SHA-256 of the 76-byte abbreviated keystone.
    pub keystone_id: [u8; 32],
    /// The PoP transaction.
    pub txid: Txid,
    /// Where it was confirmed.
    pub location: TxLocation,
}

/// Why a view query failed (as opposed to "not found", which is `Ok(None)`).
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ViewError {
    /// The block named in [`AsOf::Block`] is not on the best chain.
    #[error("block {0} is not on the best chain")]
    NotOnBestChain(BlockHash),
    /// The block named in [`AsOf::Block`] is further back than the undo data we walk.
    #[error("block {hash} is {depth} blocks deep; historical queries reach {max} blocks")]
    TooDeep {
        /// The block asked for.
        hash: BlockHash,
        /// Its depth below the tip.
        depth: u32,
        /// How deep we answer.
        max: u32,
    },
    /// The storage underneath failed.
    #[error("storage: {0}")]
    Storage(String),
}

/// Read access to the indexed Bitcoin chain.
///
/// Implementations answer from one consistent snapshot per call. Few required methods; helpers
/// with defaults build on them (reth's provider style).
pub trait BitcoinView: Send + Sync {
    /// The best indexed block.
    ///
    /// # Errors
    /// [`ViewError::Storage`] if the store cannot be read.
    fn tip(&self) -> Result<BlockRef, ViewError>;

    /// Header of the best-chain block at `height`.
    ///
    /// # Errors
    /// [`ViewError::Storage`] if the store cannot be read.
    fn header_at(&self, height: u32) -> Result<Option<(BlockRef, Header)>, ViewError>;

    /// Header and height of a block by hash (best chain only).
    ///
    /// # Errors
    /// [`ViewError::Storage`] if the store cannot be read.
    fn header_by_hash(&self, hash: &BlockHash) -> Result<Option<(BlockRef, Header)>, ViewError>;

    /// Unspent outputs locked by `script`, as of `at`, ordered by outpoint.
    ///
    /// # Errors
    /// [`ViewError::NotOnBestChain`] / [`ViewError::TooDeep`] for an unusable `at`, or storage.
    fn utxos_by_script(&self, script: &bitcoin::Script, at: AsOf) -> Result<Vec<Utxo>, ViewError>;

    /// A confirmed transaction by id, as of `at` (a transaction confirmed after `at` is `None`).
    ///
    /// # Errors
    /// As [`BitcoinView::utxos_by_script`].
    fn transaction(&self, txid: &Txid, at: AsOf) -> Result<Option<IndexedTx>, ViewError>;

    /// The input that spent `outpoint` on the best chain, if any.
    ///
    /// # Errors
    /// [`ViewError::Storage`] if the store cannot be read.
    fn spent_by(&self, outpoint: &OutPoint) -> Result<Option<SpentBy>, ViewError>;

    /// The transactions of best-chain block `hash`, in block order (`None` if the block is
    /// not on the best chain or its data is not indexed).
    ///
    /// # Errors
    /// [`ViewError::Storage`] if the store cannot be read.
    fn block_transactions(
        &self,
        hash: &BlockHash,
    ) -> Result<Option<Vec<bitcoin::Transaction>>, ViewError>;

    /// All best-chain publications of a keystone, earliest first (the first one counts).
    ///
    /// # Errors
    /// [`ViewError::Storage`] if the store cannot be read.
    fn keystone_publications(
        &self,
        keystone_id: &[u8; 32],
    ) -> Result<Vec<KeystonePublication>, ViewError>;

    /// Sum of [`BitcoinView::utxos_by_script`] values, in satoshis.
    ///
    /// # Errors
    /// As [`BitcoinView::utxos_by_script`].
    fn balance_by_script(&self, script: &bitcoin::Script, at: AsOf) -> Result<u64, ViewError> {
        Ok(self
            .utxos_by_script(script, at)?
            .iter()
            .map(|u| u.value)
            .sum())
    }

    /// Confirmations of a transaction as of `at` (1 = in the tip block), `None` if unconfirmed.
    ///
    /// # Errors
    /// As [`BitcoinView::transaction`].
    fn confirmations(&self, txid: &Txid, at: AsOf) -> Result<Option<u32>, ViewError> {
        let tip_height = match at {
            AsOf::Tip => self.tip()?.height,
            AsOf::Block(h) => {
                self.header_by_hash(&h)?
                    .ok_or(ViewError::NotOnBestChain(h))?
                    .0
                    .height
            }
        };
        Ok(self
            .transaction(txid, at)?
            .map(|t| tip_height.saturating_sub(t.location.block.height) + 1))
    }

    /// The earliest best-chain publication of a keystone.
    ///
    /// # Errors
    /// As [`BitcoinView::keystone_publications`].
    fn first_publication(
        &self,
        keystone_id: &[u8; 32],
    ) -> Result<Option<KeystonePublication>, ViewError> {
        Ok(self.keystone_publications(keystone_id)?.into_iter().next())
    }
}

impl<T: BitcoinView + ?Sized> BitcoinView for std::sync::Arc<T> {
    fn tip(&self) -> Result<BlockRef, ViewError> {
        (**self).tip()
    }
    fn header_at(&self, height: u32) -> Result<Option<(BlockRef, Header)>, ViewError> {
        (**self).header_at(height)
    }
    fn header_by_hash(&self, hash: &BlockHash) -> Result<Option<(BlockRef, Header)>, ViewError> {
        (**self).header_by_hash(hash)
    }
    fn utxos_by_script(&self, script: &bitcoin::Script, at: AsOf) -> Result<Vec<Utxo>, ViewError> {
        (**self).utxos_by_script(script, at)
    }
    fn transaction(&self, txid: &Txid, at: AsOf) -> Result<Option<IndexedTx>, ViewError> {
        (**self).transaction(txid, at)
    }
    fn spent_by(&self, outpoint: &OutPoint) -> Result<Option<SpentBy>, ViewError> {
        (**self).spent_by(outpoint)
    }
    fn block_transactions(
        &self,
        hash: &BlockHash,
    ) -> Result<Option<Vec<bitcoin::Transaction>>, ViewError> {
        (**self).block_transactions(hash)
    }
    fn keystone_publications(
        &self,
        keystone_id: &[u8; 32],
    ) -> Result<Vec<KeystonePublication>, ViewError> {
        (**self).keystone_publications(keystone_id)
    }
}
