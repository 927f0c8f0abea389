//! [`StateView`]: the state as of one block, what execution and the RPC read.

use std::sync::Arc;

use alloy_primitives::{Address, Bytes, B256, U256};
use redb::ReadOnlyTable;
use revm::database_interface::DatabaseRef;
use revm::state::{AccountInfo, Bytecode};

use crate::db::*;
use crate::ChainError;

use super::Snapshot;

/// Reads state as of a block: the latest (`at = None`) or after block `at`, using the history
/// (the overlay's diffs and the state database's history tables) for anything changed since.
pub struct StateView {
    snap: Arc<Snapshot>,
    code: ReadOnlyTable<&'static [u8; 32], &'static [u8]>,
    canonical: ReadOnlyTable<u64, &'static [u8; 32]>,
    at: Option<u64>,
}

impl std::fmt::Debug for StateView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateView").field("at", &self.at).finish()
    }
}

impl StateView {
    /// A view of `snap` (state) and `r` (the blocks database: code, block hashes).
    pub(crate) fn new(
        snap: Arc<Snapshot>,
        r: &redb::ReadTransaction,
        at: Option<u64>,
    ) -> Result<Self, ChainError> {
        // A block at or above the snapshot's head is the newest state.
        let at = at.filter(|&n| n < snap.head());
        Ok(StateView {
            snap,
            code: r.open_table(CODE)?,
            canonical: r.open_table(CANONICAL)?,
            at,
        })
    }

    /// The account, if it exists.
    ///
    /// # Errors
    /// Database errors or corrupt records.
    pub fn account(&self, address: &Address) -> Result<Option<StoredAccount>, ChainError> {
        match self.at {
            Some(at) => self.snap.account_at(address, at),
            None => self.snap.account(address),
        }
    }

    /// A storage slot (zero if unset).
    ///
    /// # Errors
    /// Database errors.
    pub fn storage(&self, address: &Address, slot: &B256) -> Result<U256, ChainError> {
        match self.at {
            Some(at) => self.snap.storage_at(address, slot, at),
            None => self.snap.storage(address, slot),
        }
    }

    /// Code by its hash.
    ///
    /// # Errors
    /// Database errors.
    pub fn code(&self, hash: &B256) -> Result<Option<Bytes>, ChainError> {
        Ok(self
            .code
            .get(&hash.0)?
            .map(|v| Bytes::copy_from_slice(v.value())))
    }

    /// The code of an account (empty if none).
    ///
    /// # Errors
    /// Database errors.
    pub fn account_code(&self, address: &Address) -> Result<Bytes, ChainError> {
        match self.account(address)? {
            Some(a) if a.code_hash != alloy_primitives::KECCAK256_EMPTY => {
                Ok(self.code(&a.code_hash)?.unwrap_or_default())
            }
            _ => Ok(Bytes::new()),
        }
    }
}

impl DatabaseRef for StateView {
    type Error = ChainError;

    fn basic_ref(&self, address: Address) -> Result<Option<AccountInfo>, Self::Error> {
        Ok(self.account(&address)?.map(|a| AccountInfo {
            balance: a.balance,
            nonce: a.nonce,
            code_hash: a.code_hash,
            code: None,
            ..Default::default()
        }))
    }

    fn code_by_hash_ref(&self, code_hash: B256) -> Result<Bytecode, Self::Error> {
        if code_hash == alloy_primitives::KECCAK256_EMPTY || code_hash == B256::ZERO {
            return Ok(Bytecode::default());
        }
        match self.code(&code_hash)? {
            Some(code) => Ok(Bytecode::new_raw(code)),
            None => Err(ChainError::Corrupt(format!("code {code_hash} missing"))),
        }
    }

    fn storage_ref(&self, address: Address, index: U256) -> Result<U256, Self::Error> {
        self.storage(&address, &B256::from(index.to_be_bytes::<32>()))
    }

    fn block_hash_ref(&self, number: u64) -> Result<B256, Self::Error> {
        Ok(self
            .canonical
            .get(number)?
            .map(|v| B256::from(*v.value()))
            .unwrap_or_default())
    }
}
