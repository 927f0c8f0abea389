//! The L2 chain's redb tables, state reads (latest and historical), and revm's database view.
//!
//! Two databases. The blocks database commits each block in one write transaction: header,
//! body, receipts, code and the block's changeset. The state database holds accounts, storage,
//! the trie nodes of the state root and the history needed to read older state, as of its
//! persisted block; the blocks after it live in memory ([`crate::state`]) and are persisted in
//! batches. A crash (even kill -9) leaves the chain at the last committed block: on restart the
//! changesets above the persisted block are replayed.

use alloy_primitives::{Address, B256, U256};
use redb::TableDefinition;
use revm::database_interface::DBErrorMarker;

use crate::ChainError;

/// Version of the on-disk format; a database with another version is refused.
///
/// 2: headers without the Clique seal in `extraData`; seals in their own `seals` table.
/// 3: a `changesets` table (what each block changed), so blocks can be unwound.
/// 4: state, tries and history in a second database file (`<name>-state.redb`) persisted in
///    batches; changesets carry the new values, so the blocks above its persisted block replay.
pub const SCHEMA_VERSION: u32 = 4;

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
/// Block number → commit certificate ([`crate::Certificate::encode`]), for blocks certified by a
/// validator set.
pub(crate) const CERTIFICATES: TableDefinition<u64, &[u8]> = TableDefinition::new("certificates");
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

/// number → what the block changed ([`ChangeSet::encode`]): the new values, enough to replay
/// the block onto the state before it (and the keys to unwind it with the history tables).
pub(crate) const CHANGESETS: TableDefinition<u64, &[u8]> = TableDefinition::new("changesets");

/// The state database's own metadata: `schema_version`, `persisted` (number ‖ hash of the
/// block whose state it holds).
pub(crate) const STATE_META: TableDefinition<&str, &[u8]> = TableDefinition::new("state_meta");

/// An account's nonce, balance and code hash (its storage root follows from its slots).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Info {
    pub nonce: u64,
    pub balance: U256,
    pub code_hash: B256,
}

/// What a block did to one account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AccountChange {
    pub address: Address,
    /// The account record changed (it has a history entry at the block).
    pub changed: bool,
    /// Its storage was wiped (self-destruct) before `slots` were written.
    pub wiped: bool,
    /// The account after the block (`None`: absent).
    pub info: Option<Info>,
    /// Slots written, new values (zero: deleted), sorted by slot.
    pub slots: Vec<(B256, U256)>,
}

/// What one block changed, per account (sorted by address).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ChangeSet {
    pub accounts: Vec<AccountChange>,
}

/// Format version of an encoded [`ChangeSet`] (1: keys only, schema 3).
const CHANGESET_VERSION: u8 = 2;

const FLAG_CHANGED: u8 = 1;
const FLAG_WIPED: u8 = 2;
const FLAG_INFO: u8 = 4;

impl ChangeSet {
    /// `version ‖ n ‖ (address ‖ flags ‖ [nonce ‖ balance ‖ code hash] ‖ m ‖ (slot ‖ value)…)…`
    /// (counts u32 BE; flags: 1 changed, 2 wiped, 4 account present).
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(5 + self.accounts.len() * 97);
        out.push(CHANGESET_VERSION);
        out.extend_from_slice(&(self.accounts.len() as u32).to_be_bytes());
        for c in &self.accounts {
            out.extend_from_slice(c.address.as_slice());
            let mut flags = 0;
            if c.changed {
                flags |= FLAG_CHANGED;
            }
            if c.wiped {
                flags |= FLAG_WIPED;
            }
            if c.info.is_some() {
                flags |= FLAG_INFO;
            }
            out.push(flags);
            if let Some(i) = &c.info {
                out.extend_from_slice(&i.nonce.to_be_bytes());
                out.extend_from_slice(&i.balance.to_be_bytes::<32>());
                out.extend_from_slice(i.code_hash.as_slice());
            }
            out.extend_from_slice(&(c.slots.len() as u32).to_be_bytes());
            for (slot, v) in &c.slots {
                out.extend_from_slice(slot.as_slice());
                out.extend_from_slice(&v.to_be_bytes::<32>());
            }
        }
        out
    }

    /// Inverse of [`ChangeSet::encode`].
    ///
    /// # Errors
    /// [`ChainError::Corrupt`] for another version, short or trailing bytes.
    pub(crate) fn decode(mut b: &[u8]) -> Result<Self, ChainError> {
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
            let address = Address::from_slice(take(&mut b, 20).ok_or_else(|| corrupt("address"))?);
            let flags = take(&mut b, 1).ok_or_else(|| corrupt("flags"))?[0];
            if flags & !(FLAG_CHANGED | FLAG_WIPED | FLAG_INFO) != 0 {
                return Err(corrupt(&format!("flags {flags:#x}")));
            }
            let info = if flags & FLAG_INFO != 0 {
                let v = take(&mut b, 72).ok_or_else(|| corrupt("account"))?;
                Some(Info {
                    nonce: u64::from_be_bytes(v[..8].try_into().expect("8 bytes")),
                    balance: U256::from_be_slice(&v[8..40]),
                    code_hash: B256::from_slice(&v[40..]),
                })
            } else {
                None
            };
            let m = count(&mut b).ok_or_else(|| corrupt("slots"))?;
            let mut slots = Vec::with_capacity(m.min(b.len() / 64));
            for _ in 0..m {
                let v = take(&mut b, 64).ok_or_else(|| corrupt("slot"))?;
                slots.push((B256::from_slice(&v[..32]), U256::from_be_slice(&v[32..])));
            }
            cs.accounts.push(AccountChange {
                address,
                changed: flags & FLAG_CHANGED != 0,
                wiped: flags & FLAG_WIPED != 0,
                info,
                slots,
            });
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
