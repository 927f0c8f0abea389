//! Opening the chain: genesis, the two databases, and recovery (replaying the changesets above
//! the state database's persisted block after a crash).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use alloy_consensus::{Header, EMPTY_OMMER_ROOT_HASH};
use alloy_primitives::{keccak256, Address, Bloom, Bytes, B256, U256};
use alloy_trie::EMPTY_ROOT_HASH;
use bitcoin::hashes::Hash;
use hemi_btc_view::BlockRef;
use hemi_trie::TrieUpdate;
use parking_lot::{Mutex, RwLock};
use redb::{Database, ReadableDatabase, ReadableTable};

use super::{Chain, Head};
use crate::block::Seal;
use crate::db::*;
use crate::state::{compute_diff, StateStore};
use crate::{ChainError, ChainSpec};

impl Chain {
    /// Opens the chain at `path` (or in memory when `None`), writing genesis from `spec` if the
    /// database is new.
    ///
    /// # Errors
    /// Database errors, a schema version or genesis mismatch, corrupt records.
    ///
    /// The forced-inclusion parameters are part of the chain: stored when it is made, they are
    /// what a reopened chain keeps, whatever the spec now says (a chain made before they were
    /// stored ran rule 1 and keeps it).
    pub fn open(path: Option<&Path>, mut spec: ChainSpec) -> Result<Self, ChainError> {
        if let Some(p) = spec.forced_inclusion {
            crate::forced::check_rule(p.rule)?;
        }
        let open = |p: Option<&Path>, cache: usize| -> Result<Database, ChainError> {
            Ok(match p {
                Some(p) => {
                    let mut b = Database::builder();
                    b.set_cache_size(cache);
                    b.create(p)?
                }
                None => Database::builder()
                    .create_with_backend(redb::backends::InMemoryBackend::new())?,
            })
        };
        let db = open(path, 64 * 1024 * 1024)?;
        let state_path = path.map(state_path);
        let state_db = open(state_path.as_deref(), 1024 * 1024 * 1024)?;
        let (genesis, alloc, nodes) = Self::genesis(&spec)?;
        let genesis_hash = genesis.hash_slow();
        Self::init_blocks(&db, &mut spec, &genesis)?;
        let (state, persisted) = StateStore::open(state_db, &alloc, &nodes, genesis_hash)?;
        let chain = Chain {
            db,
            state: Arc::new(state),
            persister: Mutex::new(None),
            spec,
            head: RwLock::new(Head {
                number: 0,
                hash: B256::ZERO,
            }),
            write: Mutex::new(()),
            cache: Mutex::new(BTreeMap::new()),
            unwinds: Mutex::new(Vec::new()),
            skip_forced: Default::default(),
            executed: Default::default(),
        };
        let (head, at_persisted) = {
            let r = chain.db.begin_read()?;
            let canonical = r.open_table(CANONICAL)?;
            let last = canonical
                .last()?
                .ok_or_else(|| ChainError::Corrupt("empty chain".into()))?;
            let head = Head {
                number: last.0.value(),
                hash: B256::from(*last.1.value()),
            };
            let at = canonical.get(persisted.0)?.map(|v| B256::from(*v.value()));
            (head, at)
        };
        if persisted.0 > head.number || at_persisted != Some(persisted.1) {
            return Err(ChainError::Corrupt(format!(
                "the state database holds block {} ({}), the chain's block {} is {:?}",
                persisted.0, persisted.1, persisted.0, at_persisted
            )));
        }
        // Replay the committed blocks the state database does not hold yet.
        chain.replay(persisted.0 + 1, head.number)?;
        *chain.head.write() = head;
        let store = chain.state.clone();
        let handle = std::thread::Builder::new()
            .name("hemi-state-persist".into())
            .spawn(move || store.run_persister())
            .map_err(|e| ChainError::Db(format!("starting the state persister: {e}")))?;
        *chain.persister.lock() = Some(handle);
        Ok(chain)
    }

    /// Writes genesis into a new blocks database, or checks an existing one's schema version
    /// and genesis.
    pub(super) fn init_blocks(
        db: &Database,
        spec: &mut ChainSpec,
        genesis: &Header,
    ) -> Result<(), ChainError> {
        let mut w = db.begin_write()?;
        w.set_quick_repair(true);
        let existing = {
            let meta = w.open_table(META)?;
            let v = meta.get("schema_version")?.map(|v| v.value().to_vec());
            v
        };
        match existing {
            None => {
                create_tables(&w)?;
                {
                    let mut meta = w.open_table(META)?;
                    meta.insert("schema_version", SCHEMA_VERSION.to_le_bytes().as_slice())?;
                    meta.insert("chain_id", spec.chain_id.to_be_bytes().as_slice())?;
                    store_forced(&mut meta, spec.forced_inclusion)?;
                }
                Self::write_block(
                    &w,
                    genesis,
                    genesis.hash_slow(),
                    &Seal::ZERO,
                    None,
                    &[],
                    &[],
                    &[],
                    BlockRef {
                        height: 0,
                        hash: bitcoin::BlockHash::all_zeros(),
                    },
                )?;
                w.commit()?;
            }
            Some(v) => {
                w.abort()?;
                let found = u32::from_le_bytes(
                    v.as_slice()
                        .try_into()
                        .map_err(|_| ChainError::Corrupt("schema_version".into()))?,
                );
                if found != SCHEMA_VERSION {
                    return Err(ChainError::SchemaVersion {
                        found,
                        expected: SCHEMA_VERSION,
                    });
                }
                let r = db.begin_read()?;
                let stored = r
                    .open_table(HEADERS)?
                    .get(0)?
                    .map(|v| alloy_rlp::decode_exact::<Header>(v.value()))
                    .transpose()
                    .map_err(|e| ChainError::Corrupt(format!("genesis header: {e}")))?
                    .ok_or_else(|| ChainError::Corrupt("no genesis".into()))?;
                if stored.hash_slow() != genesis.hash_slow() {
                    return Err(ChainError::GenesisMismatch {
                        stored: stored.hash_slow(),
                        spec: genesis.hash_slow(),
                    });
                }
                let kept = r
                    .open_table(META)?
                    .get(FORCED_KEY)?
                    .map(|v| v.value().to_vec());
                drop(r);
                match kept {
                    Some(raw) => {
                        let kept: Option<crate::forced::ForcedInclusionParams> =
                            serde_json::from_slice(&raw).map_err(|e| {
                                ChainError::Corrupt(format!("stored forced-inclusion rule: {e}"))
                            })?;
                        if let Some(p) = kept {
                            crate::forced::check_rule(p.rule)?;
                        }
                        spec.forced_inclusion = kept;
                    }
                    None => {
                        // Made before the parameters were stored: it ran rule 1.
                        if let Some(p) = spec.forced_inclusion.as_mut() {
                            p.rule = 1;
                        }
                        let w = db.begin_write()?;
                        store_forced(&mut w.open_table(META)?, spec.forced_inclusion)?;
                        w.commit()?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Recomputes the state of blocks `from..=to` from their changesets into the overlay
    /// (which must end at block `from - 1`), checking each state root against the header.
    pub(super) fn replay(&self, from: u64, to: u64) -> Result<(), ChainError> {
        for n in from..=to {
            let changes = self.changeset(n)?;
            let header = self
                .header(n)?
                .ok_or_else(|| ChainError::Corrupt(format!("header {n} missing")))?;
            let diff = compute_diff(&self.state.snapshot()?, n, &changes)?;
            if diff.root != header.state_root {
                return Err(ChainError::Corrupt(format!(
                    "replaying block {n}'s changeset gives state root {}, its header has {}",
                    diff.root, header.state_root
                )));
            }
            self.state.push(diff, header.hash_slow());
        }
        Ok(())
    }

    /// Block `n`'s changeset.
    pub(super) fn changeset(&self, n: u64) -> Result<ChangeSet, ChainError> {
        let r = self.db.begin_read()?;
        let t = r.open_table(CHANGESETS)?;
        let v = t
            .get(n)?
            .ok_or_else(|| ChainError::Corrupt(format!("block {n} has no changeset")))?;
        ChangeSet::decode(v.value())
    }

    /// The genesis header, its accounts and the account trie nodes of its state root.
    #[allow(clippy::type_complexity)]
    pub(super) fn genesis(
        spec: &ChainSpec,
    ) -> Result<(Header, Vec<(Address, StoredAccount)>, TrieUpdate), ChainError> {
        let mut changes = BTreeMap::new();
        let mut alloc = Vec::new();
        for (addr, balance) in &spec.alloc {
            let a = StoredAccount {
                nonce: 0,
                balance: *balance,
                code_hash: alloy_primitives::KECCAK256_EMPTY,
                storage_root: EMPTY_ROOT_HASH,
            };
            changes.insert(keccak256(addr), Some(a.trie_value()));
            alloc.push((*addr, a));
        }
        let update = hemi_trie::update(&hemi_trie::MemNodes::new(), &changes)?;
        let header = Header {
            parent_hash: B256::ZERO,
            ommers_hash: EMPTY_OMMER_ROOT_HASH,
            beneficiary: Address::ZERO,
            state_root: update.root,
            transactions_root: EMPTY_ROOT_HASH,
            receipts_root: EMPTY_ROOT_HASH,
            logs_bloom: Bloom::default(),
            difficulty: U256::ZERO,
            number: 0,
            gas_limit: spec.gas_limit,
            gas_used: 0,
            timestamp: spec.timestamp,
            extra_data: Bytes::new(),
            mix_hash: B256::ZERO,
            nonce: Default::default(),
            base_fee_per_gas: Some(spec.base_fee_per_gas),
            ..Default::default()
        };
        Ok((header, alloc, update))
    }

    /// Persists the state of every committed block to the state database now (it is otherwise
    /// persisted in the background, in batches).
    ///
    /// # Errors
    /// Database errors.
    pub fn persist(&self) -> Result<(), ChainError> {
        self.state.persist_all()
    }

    /// Closes the chain as a crash would: the state still in memory is not persisted, so the
    /// next open replays the blocks above the state database's. For crash-recovery tests.
    #[doc(hidden)]
    pub fn close_without_persisting(self) {
        self.state.stop(true);
    }
}

/// `<stem>-state.<ext>` next to the blocks database: the state database.
pub(super) fn state_path(blocks: &Path) -> std::path::PathBuf {
    let stem = blocks
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "l2".into());
    let name = match blocks.extension() {
        Some(ext) => format!("{stem}-state.{}", ext.to_string_lossy()),
        None => format!("{stem}-state"),
    };
    blocks.with_file_name(name)
}

/// Creates every table so readers never meet a missing one.
pub(super) fn create_tables(w: &redb::WriteTransaction) -> Result<(), ChainError> {
    for t in [HEADERS, BODIES, SENDERS, RECEIPTS] {
        w.open_table(t)?;
    }
    w.open_table(CANONICAL)?;
    w.open_table(HASHES)?;
    w.open_table(PINS)?;
    w.open_table(SEALS)?;
    w.open_table(CERTIFICATES)?;
    w.open_table(TX_INDEX)?;
    w.open_table(CODE)?;
    w.open_table(CHANGESETS)?;
    Ok(())
}

/// `META` key of the forced-inclusion parameters the chain was made with (JSON; `null`: none).
const FORCED_KEY: &str = "forced_inclusion";

fn store_forced(
    meta: &mut redb::Table<&'static str, &'static [u8]>,
    params: Option<crate::forced::ForcedInclusionParams>,
) -> Result<(), ChainError> {
    let json = serde_json::to_vec(&params).map_err(|e| ChainError::Corrupt(e.to_string()))?;
    meta.insert(FORCED_KEY, json.as_slice())?;
    Ok(())
}
