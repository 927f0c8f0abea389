//! The L2 chain's redb tables, state reads (latest and historical), and revm's database view.
//!
//! One redb write transaction commits a block: header, body, receipts, the state it changed,
//! the trie nodes of the new roots, and the history needed to read older state. A crash (even
//! kill -9) leaves the chain at the last committed block.

use alloy_primitives::{Address, Bytes, B256, U256};
use redb::{ReadOnlyTable, TableDefinition};
use revm::database_interface::{DBErrorMarker, DatabaseRef};
use revm::state::{AccountInfo, Bytecode};

use crate::ChainError;

/// Version of the on-disk format; a database with another version is refused.
///
/// 2: headers without the Clique seal in `extraData`; seals in their own `seals` table.
/// 3: a `changesets` table (what each block changed), so blocks can be unwound.
pub const SCHEMA_VERSION: u32 = 3;

pub(crate) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// number → RLP header.
pub(crate) const HEADERS: TableDefinition<u64, &[u8]> = TableDefinition::new("headers");
/// number → block hash.
pub(crate) const CANONICAL: TableDefinition<u64, &[u8; 32]> = TableDefinition::new("canonical");
/// block hash → number.
pub(crate) const HASHES: TableDefinition<&[u8; 32], u64> = TableDefinition::new("hashes");
/// number → `encode_txs`.
pub(crate) const BODIES: TableDefinition<u64, &[u8]> = TableDefinition::new("bodies");
/// number → senders, 20 bytes each.
pub(crate) const SENDERS: TableDefinition<u64, &[u8]> = TableDefinition::new("senders");
/// number → RLP list of EIP-2718 receipts.
pub(crate) const RECEIPTS: TableDefinition<u64, &[u8]> = TableDefinition::new("receipts");
/// number → the sequencer's seal `r ‖ s ‖ v` (not for genesis, which is unsealed).
pub(crate) const SEALS: TableDefinition<u64, &[u8; 65]> = TableDefinition::new("seals");
/// number → pinned Bitcoin block: hash (internal order) ‖ height (BE).
pub(crate) const PINS: TableDefinition<u64, &[u8; 36]> = TableDefinition::new("pins");
/// tx hash → number (BE) ‖ index (BE).
pub(crate) const TX_INDEX: TableDefinition<&[u8; 32], &[u8; 12]> = TableDefinition::new("tx_index");
/// address → account (see [`encode_account`]).
pub(crate) const ACCOUNTS: TableDefinition<&[u8; 20], &[u8]> = TableDefinition::new("accounts");
/// address ‖ slot → value (non-zero only).
pub(crate) const STORAGE: TableDefinition<&[u8; 52], &[u8; 32]> = TableDefinition::new("storage");
/// code hash → code.
pub(crate) const CODE: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("code");
/// nibble path (one nibble a byte) → account trie node.
pub(crate) const ACCOUNT_TRIE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("account_trie");
/// address ‖ nibble path → storage trie node.
pub(crate) const STORAGE_TRIE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("storage_trie");
/// address ‖ block (BE) → the account before that block changed it (empty: absent).
pub(crate) const ACCOUNT_HISTORY: TableDefinition<&[u8; 28], &[u8]> =
    TableDefinition::new("account_history");
/// address ‖ slot ‖ block (BE) → the slot before that block changed it.
pub(crate) const STORAGE_HISTORY: TableDefinition<&[u8; 60], &[u8; 32]> =
    TableDefinition::new("storage_history");

/// number → what the block changed ([`ChangeSet::encode`]); the values before it are in the
/// history tables under the same block number.
pub(crate) const CHANGESETS: TableDefinition<u64, &[u8]> = TableDefinition::new("changesets");

/// The keys one block changed: enough to unwind it with the history tables.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ChangeSet {
    /// Accounts with an `ACCOUNT_HISTORY` entry at the block.
    pub accounts: Vec<Address>,
    /// Slots with a `STORAGE_HISTORY` entry at the block.
    pub slots: Vec<(Address, B256)>,
    /// Accounts whose storage the block wiped (self-destruct).
    pub wiped: Vec<Address>,
}

/// Format version of an encoded [`ChangeSet`].
const CHANGESET_VERSION: u8 = 1;

impl ChangeSet {
    /// `version ‖ n ‖ addresses ‖ n ‖ (address ‖ slot)… ‖ n ‖ wiped addresses` (counts u32 BE).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            13 + 20 * (self.accounts.len() + self.wiped.len()) + 52 * self.slots.len(),
        );
        out.push(CHANGESET_VERSION);
        out.extend_from_slice(&(self.accounts.len() as u32).to_be_bytes());
        for a in &self.accounts {
            out.extend_from_slice(a.as_slice());
        }
        out.extend_from_slice(&(self.slots.len() as u32).to_be_bytes());
        for (a, s) in &self.slots {
            out.extend_from_slice(a.as_slice());
            out.extend_from_slice(s.as_slice());
        }
        out.extend_from_slice(&(self.wiped.len() as u32).to_be_bytes());
        for a in &self.wiped {
            out.extend_from_slice(a.as_slice());
        }
        out
    }

    /// Inverse of [`ChangeSet::encode`].
    ///
    /// # Errors
    /// [`ChainError::Corrupt`] for another version, short or trailing bytes.
    pub fn decode(mut b: &[u8]) -> Result<Self, ChainError> {
        let corrupt = |what: &str| ChainError::Corrupt(format!("changeset: {what}"));
        let (&version, rest) = b.split_first().ok_or_else(|| corrupt("empty"))?;
        if version != CHANGESET_VERSION {
            return Err(corrupt(&format!("version {version}")));
        }
        b = rest;
        fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
            let (head, rest) = (b.len() >= n).then(|| b.split_at(n))?;
            *b = rest;
            Some(head)
        }
        fn count(b: &mut &[u8]) -> Option<usize> {
            Some(u32::from_be_bytes(take(b, 4)?.try_into().ok()?) as usize)
        }
        let mut cs = ChangeSet::default();
        let n = count(&mut b).ok_or_else(|| corrupt("accounts"))?;
        for _ in 0..n {
            cs.accounts.push(Address::from_slice(
                take(&mut b, 20).ok_or_else(|| corrupt("account"))?,
            ));
        }
        let n = count(&mut b).ok_or_else(|| corrupt("slots"))?;
        for _ in 0..n {
            let k = take(&mut b, 52).ok_or_else(|| corrupt("slot"))?;
            cs.slots
                .push((Address::from_slice(&k[..20]), B256::from_slice(&k[20..])));
        }
        let n = count(&mut b).ok_or_else(|| corrupt("wiped"))?;
        for _ in 0..n {
            cs.wiped.push(Address::from_slice(
                take(&mut b, 20).ok_or_else(|| corrupt("wiped"))?,
            ));
        }
        if !b.is_empty() {
            return Err(corrupt("trailing bytes"));
        }
        Ok(cs)
    }
}

/// An account as stored: nonce, balance, code hash, storage root.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StoredAccount {
    /// Nonce.
    pub nonce: u64,
    /// Balance, wei.
    pub balance: U256,
    /// keccak256 of the code.
    pub code_hash: B256,
    /// Root of the account's storage trie.
    pub storage_root: B256,
}

impl StoredAccount {
    /// The account trie leaf value: `rlp([nonce, balance, storageRoot, codeHash])`.
    pub fn trie_value(&self) -> Vec<u8> {
        alloy_rlp::encode(alloy_trie::TrieAccount {
            nonce: self.nonce,
            balance: self.balance,
            storage_root: self.storage_root,
            code_hash: self.code_hash,
        })
    }
}

pub(crate) fn encode_account(a: &StoredAccount) -> [u8; 104] {
    let mut out = [0u8; 104];
    out[..8].copy_from_slice(&a.nonce.to_be_bytes());
    out[8..40].copy_from_slice(&a.balance.to_be_bytes::<32>());
    out[40..72].copy_from_slice(a.code_hash.as_slice());
    out[72..].copy_from_slice(a.storage_root.as_slice());
    out
}

pub(crate) fn decode_account(b: &[u8]) -> Result<Option<StoredAccount>, ChainError> {
    if b.is_empty() {
        return Ok(None);
    }
    if b.len() != 104 {
        return Err(ChainError::Corrupt(format!(
            "account record of {} bytes",
            b.len()
        )));
    }
    let mut nonce = [0u8; 8];
    nonce.copy_from_slice(&b[..8]);
    Ok(Some(StoredAccount {
        nonce: u64::from_be_bytes(nonce),
        balance: U256::from_be_slice(&b[8..40]),
        code_hash: B256::from_slice(&b[40..72]),
        storage_root: B256::from_slice(&b[72..]),
    }))
}

pub(crate) fn storage_key(a: &Address, slot: &B256) -> [u8; 52] {
    let mut k = [0u8; 52];
    k[..20].copy_from_slice(a.as_slice());
    k[20..].copy_from_slice(slot.as_slice());
    k
}

pub(crate) fn account_history_key(a: &Address, block: u64) -> [u8; 28] {
    let mut k = [0u8; 28];
    k[..20].copy_from_slice(a.as_slice());
    k[20..].copy_from_slice(&block.to_be_bytes());
    k
}

pub(crate) fn storage_history_key(a: &Address, slot: &B256, block: u64) -> [u8; 60] {
    let mut k = [0u8; 60];
    k[..20].copy_from_slice(a.as_slice());
    k[20..52].copy_from_slice(slot.as_slice());
    k[52..].copy_from_slice(&block.to_be_bytes());
    k
}

macro_rules! db_err {
    ($($t:ty),*) => {$(
        impl From<$t> for ChainError {
            fn from(e: $t) -> Self { ChainError::Db(e.to_string()) }
        }
    )*};
}
db_err!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError
);

impl DBErrorMarker for ChainError {}

/// Reads state as of a block: the latest (`at = None`) or after block `at`, using the history
/// tables for anything changed since.
pub struct StateView {
    accounts: ReadOnlyTable<&'static [u8; 20], &'static [u8]>,
    storage: ReadOnlyTable<&'static [u8; 52], &'static [u8; 32]>,
    code: ReadOnlyTable<&'static [u8; 32], &'static [u8]>,
    account_history: ReadOnlyTable<&'static [u8; 28], &'static [u8]>,
    storage_history: ReadOnlyTable<&'static [u8; 60], &'static [u8; 32]>,
    canonical: ReadOnlyTable<u64, &'static [u8; 32]>,
    at: Option<u64>,
}

impl std::fmt::Debug for StateView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateView").field("at", &self.at).finish()
    }
}

impl StateView {
    pub(crate) fn new(r: &redb::ReadTransaction, at: Option<u64>) -> Result<Self, ChainError> {
        Ok(StateView {
            accounts: r.open_table(ACCOUNTS)?,
            storage: r.open_table(STORAGE)?,
            code: r.open_table(CODE)?,
            account_history: r.open_table(ACCOUNT_HISTORY)?,
            storage_history: r.open_table(STORAGE_HISTORY)?,
            canonical: r.open_table(CANONICAL)?,
            at,
        })
    }

    /// The account, if it exists.
    ///
    /// # Errors
    /// Database errors or corrupt records.
    pub fn account(&self, address: &Address) -> Result<Option<StoredAccount>, ChainError> {
        if let Some(at) = self.at {
            let from = account_history_key(address, at.saturating_add(1));
            let to = account_history_key(address, u64::MAX);
            if let Some(entry) = self.account_history.range::<&[u8; 28]>(&from..=&to)?.next() {
                let (_, v) = entry?;
                return decode_account(v.value());
            }
        }
        match self.accounts.get(&address.0 .0)? {
            Some(v) => decode_account(v.value()),
            None => Ok(None),
        }
    }

    /// A storage slot (zero if unset).
    ///
    /// # Errors
    /// Database errors.
    pub fn storage(&self, address: &Address, slot: &B256) -> Result<U256, ChainError> {
        if let Some(at) = self.at {
            let from = storage_history_key(address, slot, at.saturating_add(1));
            let to = storage_history_key(address, slot, u64::MAX);
            if let Some(entry) = self.storage_history.range::<&[u8; 60]>(&from..=&to)?.next() {
                let (_, v) = entry?;
                return Ok(U256::from_be_bytes(*v.value()));
            }
        }
        Ok(self
            .storage
            .get(&storage_key(address, slot))?
            .map(|v| U256::from_be_bytes(*v.value()))
            .unwrap_or_default())
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
