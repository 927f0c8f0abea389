//! The pool journal: pooled transactions written on clean shutdown, re-added on start.
//!
//! Format (version 1): one version byte, then for each transaction a 4-byte big-endian length
//! followed by that many bytes of its EIP-2718 encoding, in (sender, nonce) order. Reading
//! re-validates every transaction against the current state, so a stale journal is harmless.

use crate::{AccountState, JournalError, PoolConfig, TxPool};

/// Version byte of the journal format this build writes and reads.
pub const JOURNAL_VERSION: u8 = 1;

impl TxPool {
    /// Serializes every pooled transaction (pending and queued).
    #[must_use]
    pub fn to_journal(&self) -> Vec<u8> {
        let txs = self.all_sorted();
        let mut out =
            Vec::with_capacity(1 + txs.iter().map(|tx| 4 + tx.raw().len()).sum::<usize>());
        out.push(JOURNAL_VERSION);
        for tx in txs {
            // Pooled transactions are at most `MAX_TX_SIZE` bytes, far below `u32::MAX`.
            let len = u32::try_from(tx.raw().len()).unwrap_or(u32::MAX);
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(tx.raw());
        }
        out
    }

    /// Rebuilds a pool from [`to_journal`](Self::to_journal)'s output, re-validating each
    /// transaction against `state`. Returns the pool and how many journaled transactions were
    /// refused (mined meanwhile, now unaffordable, ...). Never panics on any input.
    ///
    /// # Errors
    ///
    /// [`JournalError`] if the journal is empty, of another version, or truncated; nothing is
    /// loaded then.
    pub fn from_journal(
        config: PoolConfig,
        bytes: &[u8],
        state: &dyn AccountState,
    ) -> Result<(Self, usize), JournalError> {
        let (&version, mut rest) = bytes.split_first().ok_or(JournalError::Empty)?;
        if version != JOURNAL_VERSION {
            return Err(JournalError::UnsupportedVersion {
                got: version,
                expected: JOURNAL_VERSION,
            });
        }
        let mut records = Vec::new();
        while !rest.is_empty() {
            let offset = bytes.len() - rest.len();
            let truncated = JournalError::Truncated { offset };
            let (len, tail) = rest.split_first_chunk::<4>().ok_or(truncated.clone())?;
            let len = usize::try_from(u32::from_be_bytes(*len)).map_err(|_| truncated.clone())?;
            if tail.len() < len {
                return Err(truncated);
            }
            let (raw, tail) = tail.split_at(len);
            records.push(raw);
            rest = tail;
        }
        let mut pool = Self::new(config);
        let refused = records
            .into_iter()
            .filter(|raw| pool.add_raw(raw, state).is_err())
            .count();
        Ok((pool, refused))
    }
}
