//! Misbehaviour scores and bans by IP address, as in Bitcoin Core.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Score at which an address is banned (Bitcoin Core's `DISCOURAGEMENT_THRESHOLD`).
pub const BAN_THRESHOLD: u32 = 100;
/// How long a ban lasts by default (Bitcoin Core's `DEFAULT_MISBEHAVING_BANTIME`).
pub const DEFAULT_BAN_DURATION: Duration = Duration::from_secs(24 * 60 * 60);
/// Most addresses with a pending score we remember; past it an arbitrary one is forgotten, so a
/// peer hopping over many addresses cannot grow the table without bound.
const MAX_SCORED: usize = 65_536;

/// Misbehaviour scores and bans by IP address: [`BAN_THRESHOLD`] points ban an address for
/// [`DEFAULT_BAN_DURATION`] (or the duration given to [`BanList::with_duration`]).
///
/// Thread-safe (a mutex inside) and cheap to clone (the clones share one list). IPv4-mapped IPv6
/// addresses count as their IPv4 address.
#[derive(Clone, Debug)]
pub struct BanList {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug)]
struct Inner {
    duration: Duration,
    scores: HashMap<IpAddr, u32>,
    bans: HashMap<IpAddr, Ban>,
}

#[derive(Debug)]
struct Ban {
    until: Instant,
    reason: String,
}

impl Default for BanList {
    fn default() -> Self {
        Self::with_duration(DEFAULT_BAN_DURATION)
    }
}

impl BanList {
    /// An empty list whose bans last `duration`.
    pub fn with_duration(duration: Duration) -> Self {
        BanList {
            inner: Arc::new(Mutex::new(Inner {
                duration,
                scores: HashMap::new(),
                bans: HashMap::new(),
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The table stays consistent even if a holder panicked: every update is one map operation.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Adds `score` to `ip`'s misbehaviour score; at [`BAN_THRESHOLD`] the address is banned (and
    /// its score reset). Returns whether `ip` is banned after the call.
    pub fn misbehaving(&self, ip: IpAddr, score: u32, reason: &str) -> bool {
        let ip = ip.to_canonical();
        let mut inner = self.lock();
        if inner.is_banned(ip, Instant::now()) {
            return true;
        }
        if !inner.scores.contains_key(&ip) && inner.scores.len() >= MAX_SCORED {
            if let Some(victim) = inner.scores.keys().next().copied() {
                inner.scores.remove(&victim);
            }
        }
        let total = inner.scores.entry(ip).or_insert(0);
        *total = total.saturating_add(score);
        let total = *total;
        tracing::debug!(%ip, score, total, reason, "peer misbehaving");
        if total >= BAN_THRESHOLD {
            inner.scores.remove(&ip);
            inner.ban(ip, reason);
            true
        } else {
            false
        }
    }

    /// Whether `ip` is banned now.
    pub fn is_banned(&self, ip: IpAddr) -> bool {
        self.lock().is_banned(ip.to_canonical(), Instant::now())
    }

    /// Bans `ip` now, whatever its score.
    pub fn ban(&self, ip: IpAddr, reason: &str) {
        self.lock().ban(ip.to_canonical(), reason);
    }

    /// The addresses banned now, with the reason of each ban.
    pub fn banned(&self) -> Vec<(IpAddr, String)> {
        let now = Instant::now();
        let mut inner = self.lock();
        inner.bans.retain(|_, ban| ban.until > now);
        inner
            .bans
            .iter()
            .map(|(ip, ban)| (*ip, ban.reason.clone()))
            .collect()
    }

    /// Lifts every ban and forgets every score.
    pub fn clear(&self) {
        let mut inner = self.lock();
        inner.bans.clear();
        inner.scores.clear();
    }
}

impl Inner {
    fn is_banned(&mut self, ip: IpAddr, now: Instant) -> bool {
        match self.bans.get(&ip) {
            Some(ban) if ban.until > now => true,
            Some(_) => {
                self.bans.remove(&ip);
                false
            }
            None => false,
        }
    }

    fn ban(&mut self, ip: IpAddr, reason: &str) {
        let now = Instant::now();
        // An absurd duration saturates to "as long as the clock goes" instead of overflowing.
        let until = now.checked_add(self.duration).unwrap_or_else(|| {
            now.checked_add(Duration::from_secs(100 * 365 * 24 * 60 * 60))
                .unwrap_or(now)
        });
        tracing::info!(%ip, reason, "banning peer");
        self.bans.insert(
            ip,
            Ban {
                until,
                reason: reason.to_owned(),
            },
        );
    }
}
