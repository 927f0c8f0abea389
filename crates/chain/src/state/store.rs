//! The [`StateStore`]: the state database, the overlay over it, and the background persister.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy_primitives::{Address, B256};
use hemi_trie::TrieUpdate;
use parking_lot::{Condvar, Mutex, RwLock};
use redb::{Database, Durability, ReadableDatabase, ReadableTable};

use super::layers::{BlockDiff, Overlay};
use super::snapshot::{Snapshot, StateTables};
use super::write::{apply_nodes, persisted_record, read_persisted, WriteTables};
use super::{MAX_OVERLAY_BLOCKS, PERSIST_IDLE};
use crate::db::*;
use crate::ChainError;

/// Gives the calling thread (the persister) a lower CPU priority (nice 10), as databases do for
/// their background writers: the block path, whose latency users see, gets the cores first, and
/// the persister takes what is left (back-pressure bounds how far it may fall behind).
pub(super) fn lower_thread_priority() {
    // Failing (a sandbox forbidding it) only leaves the persister at normal priority.
    #[cfg(target_os = "linux")]
    let _ = rustix::process::setpriority_process(Some(rustix::thread::gettid()), 10);
}

/// When the persister runs.
#[derive(Debug)]
pub(super) struct PersistCtl {
    pub(super) stop: bool,
    /// Stop without persisting (a simulated crash).
    pub(super) abandon: bool,
    pub(super) last_push: Instant,
}

/// The state database, the overlay over it, and the persister's controls.
pub(crate) struct StateStore {
    pub(super) db: Database,
    pub(super) overlay: RwLock<Arc<Overlay>>,
    /// Held while persisting or unwinding the state database.
    pub(super) persist: Mutex<()>,
    pub(super) ctl: Mutex<PersistCtl>,
    pub(super) wake: Condvar,
}

impl std::fmt::Debug for StateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let o = self.overlay.read();
        f.debug_struct("StateStore")
            .field("base", &o.base)
            .field("head", &o.head)
            .finish()
    }
}

impl StateStore {
    /// Opens the state database; a new one gets `genesis` (its accounts and trie nodes) as the
    /// state after block 0 (hash `genesis_hash`). Returns the store and the block it holds.
    ///
    /// # Errors
    /// Database errors, another schema version, corrupt records.
    pub(crate) fn open(
        db: Database,
        genesis: &[(Address, StoredAccount)],
        genesis_nodes: &TrieUpdate,
        genesis_hash: B256,
    ) -> Result<(Self, (u64, B256)), ChainError> {
        let mut w = db.begin_write()?;
        w.set_quick_repair(true);
        let existing = {
            let meta = w.open_table(STATE_META)?;
            let v = meta.get("schema_version")?.map(|v| v.value().to_vec());
            v
        };
        match existing {
            None => {
                {
                    let mut meta = w.open_table(STATE_META)?;
                    meta.insert("schema_version", SCHEMA_VERSION.to_le_bytes().as_slice())?;
                    meta.insert("persisted", persisted_record(0, genesis_hash).as_slice())?;
                    let mut t = WriteTables::open(&w)?;
                    for (addr, a) in genesis {
                        t.accounts
                            .insert(&addr.0 .0, encode_account(a).as_slice())?;
                    }
                    apply_nodes(&mut t.account_trie, &[], genesis_nodes)?;
                }
                w.commit()?;
            }
            Some(v) => {
                w.abort()?;
                let found =
                    u32::from_le_bytes(v.as_slice().try_into().map_err(|_| {
                        ChainError::Corrupt("state database: schema_version".into())
                    })?);
                if found != SCHEMA_VERSION {
                    return Err(ChainError::SchemaVersion {
                        found,
                        expected: SCHEMA_VERSION,
                    });
                }
            }
        }
        let persisted = read_persisted(&db.begin_read()?.open_table(STATE_META)?)?;
        let store = StateStore {
            db,
            overlay: RwLock::new(Arc::new(Overlay::new(persisted.0, persisted.1))),
            persist: Mutex::new(()),
            ctl: Mutex::new(PersistCtl {
                stop: false,
                abandon: false,
                last_push: Instant::now(),
            }),
            wake: Condvar::new(),
        };
        Ok((store, persisted))
    }

    /// A consistent view of the newest state.
    ///
    /// # Errors
    /// Database errors.
    pub(crate) fn snapshot(&self) -> Result<Snapshot, ChainError> {
        loop {
            let overlay = self.overlay.read().clone();
            let r = self.db.begin_read()?;
            let (persisted, hash) = read_persisted(&r.open_table(STATE_META)?)?;
            // A persist (or an unwind) may have finished between the two reads: the state
            // database must hold a block of the overlay's branch.
            if persisted < overlay.base
                || persisted > overlay.head
                || overlay.hash_of(persisted) != Some(hash)
            {
                std::thread::yield_now();
                continue;
            }
            return Ok(Snapshot {
                tables: StateTables {
                    accounts: r.open_table(ACCOUNTS)?,
                    storage: r.open_table(STORAGE)?,
                    account_trie: r.open_table(ACCOUNT_TRIE)?,
                    storage_trie: r.open_table(STORAGE_TRIE)?,
                    account_history: r.open_table(ACCOUNT_HISTORY)?,
                    storage_history: r.open_table(STORAGE_HISTORY)?,
                },
                overlay,
                persisted,
                read_accounts: Mutex::new(HashMap::new()),
                read_slots: Mutex::new(HashMap::new()),
            });
        }
    }

    /// Adds a committed block's diff (`hash`: the block's hash). Persists first when the
    /// overlay is full (a failed persist is retried later; the overlay keeps the blocks).
    pub(crate) fn push(&self, mut diff: BlockDiff, hash: B256) {
        diff.hash = hash;
        let (len, due) = {
            let mut o = self.overlay.write();
            // In place unless a reader still holds this overlay (then its maps share structure).
            let next = Arc::make_mut(&mut o);
            next.push(Arc::new(diff));
            (next.blocks.len(), next.due())
        };
        self.ctl.lock().last_push = Instant::now();
        if len >= MAX_OVERLAY_BLOCKS {
            let _ = self.persist_all();
        } else if due {
            self.wake.notify_all();
        }
    }

    /// Writes every block in the overlay to the state database (one transaction) and drops
    /// them from the overlay; blocks committed meanwhile wait for the next persist.
    ///
    /// # Errors
    /// Database errors (the overlay keeps the blocks then).
    pub(crate) fn persist_all(&self) -> Result<(), ChainError> {
        let _p = self.persist.lock();
        let (snap, upto) = {
            let mut o = self.overlay.write();
            let Some(upto) = Arc::make_mut(&mut o).freeze() else {
                return Ok(());
            };
            (o.clone(), upto)
        };
        let hash = snap
            .hash_of(upto)
            .ok_or_else(|| ChainError::Corrupt(format!("overlay block {upto} missing")))?;
        let mut w = self.db.begin_write()?;
        w.set_durability(Durability::Immediate)?;
        w.set_quick_repair(true);
        {
            let mut t = WriteTables::open(&w)?;
            for d in snap.blocks.iter().filter(|d| d.number <= upto) {
                t.write_history(d)?;
            }
            // The frozen layers (all but the newest), oldest first.
            for l in &snap.layers[..snap.layers.len() - 1] {
                t.write_layer(l)?;
            }
            w.open_table(STATE_META)?
                .insert("persisted", persisted_record(upto, hash).as_slice())?;
        }
        w.commit()?;
        drop(snap);
        let dropped = Arc::make_mut(&mut self.overlay.write()).drop_persisted(upto);
        drop(dropped);
        Ok(())
    }

    /// Unwinds the state to block `target`: the overlay drops the blocks above it, and if the
    /// state database holds a later block it is unwound with its history tables (`changeset`
    /// gives block n's changeset, `root` the state root block n must be left with).
    ///
    /// The state database is committed before the caller removes the blocks: a crash between
    /// the two replays the blocks on restart (the unwind did not happen).
    ///
    /// # Errors
    /// Database errors, missing history, a restored root that differs (nothing is changed).
    pub(crate) fn unwind_to(
        &self,
        target: u64,
        target_hash: B256,
        changeset: &dyn Fn(u64) -> Result<ChangeSet, ChainError>,
        root: &dyn Fn(u64) -> Result<B256, ChainError>,
    ) -> Result<Arc<Overlay>, ChainError> {
        let _p = self.persist.lock();
        let before = self.overlay.read().clone();
        if target >= before.base {
            *self.overlay.write() = Arc::new(before.truncated(target));
        } else {
            let mut w = self.db.begin_write()?;
            w.set_durability(Durability::Immediate)?;
            w.set_quick_repair(true);
            {
                let mut t = WriteTables::open(&w)?;
                for n in (target + 1..=before.base).rev() {
                    let restored = t.unwind(n, &changeset(n)?)?;
                    let want = root(n - 1)?;
                    if restored != want {
                        drop(t);
                        w.abort()?;
                        return Err(ChainError::Corrupt(format!(
                            "unwinding block {n} restored state root {restored}, block {} has \
                             {want}",
                            n - 1
                        )));
                    }
                }
                w.open_table(STATE_META)?.insert(
                    "persisted",
                    persisted_record(target, target_hash).as_slice(),
                )?;
            }
            w.commit()?;
            *self.overlay.write() = Arc::new(Overlay::new(target, target_hash));
        }
        Ok(before)
    }

    /// Puts back an overlay [`StateStore::unwind_to`] replaced (when the caller's own commit
    /// failed and the state database was not touched).
    pub(crate) fn restore(&self, overlay: Arc<Overlay>) {
        *self.overlay.write() = overlay;
    }

    /// The overlay's base (the state database's block) and head.
    pub(crate) fn range(&self) -> (u64, u64) {
        let o = self.overlay.read();
        (o.base, o.head)
    }

    /// The persister: persists the overlay when it holds [`PERSIST_BLOCKS`] blocks or
    /// [`PERSIST_ENTRIES`] new entries, or no block came for [`PERSIST_IDLE`]; on stop, persists
    /// what is left and returns.
    pub(crate) fn run_persister(self: Arc<Self>) {
        lower_thread_priority();
        let mut ctl = self.ctl.lock();
        loop {
            if ctl.stop {
                let abandon = ctl.abandon;
                drop(ctl);
                if !abandon {
                    let _ = self.persist_all();
                }
                return;
            }
            let (len, due) = {
                let o = self.overlay.read();
                (o.blocks.len(), o.due())
            };
            let idle = ctl.last_push.elapsed() >= PERSIST_IDLE;
            if due || (len > 0 && idle) {
                drop(ctl);
                let failed = self.persist_all().is_err();
                ctl = self.ctl.lock();
                if !failed {
                    continue;
                }
            }
            self.wake.wait_for(&mut ctl, Duration::from_millis(500));
        }
    }

    /// Asks the persister to persist what is left and stop (`abandon`: without persisting).
    pub(crate) fn stop(&self, abandon: bool) {
        let mut ctl = self.ctl.lock();
        ctl.stop = true;
        ctl.abandon |= abandon;
        drop(ctl);
        self.wake.notify_all();
    }
}
