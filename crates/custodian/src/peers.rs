//! The peers file: who the custodians are, where they listen, and which key may ask them to
//! sign.
//!
//! ```toml
//! threshold = 2
//!
//! [[custodian]]
//! index = 1
//! url = "http://127.0.0.1:7301"
//! identity = "<x-only or compressed hex>"
//! # … one table per custodian, indexes 1..=n …
//!
//! [coordinator]
//! identity = "<hex>"
//! ```
//!
//! Parsed strictly: unknown keys, a missing key, indexes other than exactly 1..=n, a repeated
//! identity or URL, a threshold outside 2..=n are errors that name the entry.

use std::path::Path;

use bitcoin::hashes::{sha256, Hash, HashEngine};
use bitcoin::XOnlyPublicKey;
use serde::Deserialize;

use crate::identity::parse_public_key;
use crate::CustodianError;

/// The most custodians a set may have (the coordinator tries quorums among them).
pub const MAX_CUSTODIANS: usize = 16;

/// What is wrong in a peers file.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeersError {
    /// Not TOML of the expected shape (the parser's message names the line and key).
    #[error("{0}")]
    Syntax(String),
    /// The threshold is outside 2..=n (FROST needs at least two signers).
    #[error("threshold {threshold} with {custodians} custodians: it must be in 2..={custodians}")]
    Threshold {
        /// k.
        threshold: u16,
        /// n.
        custodians: usize,
    },
    /// More custodians than [`MAX_CUSTODIANS`].
    #[error("{0} custodians: at most {MAX_CUSTODIANS}")]
    TooMany(usize),
    /// The indexes are not exactly 1..=n.
    #[error("custodian indexes must be 1..={custodians}, each once; found {found:?}")]
    Indexes {
        /// n.
        custodians: usize,
        /// The indexes as listed.
        found: Vec<u16>,
    },
    /// An identity key does not parse.
    #[error("{entry}: identity {reason}")]
    Identity {
        /// `custodian 2` or `coordinator`.
        entry: String,
        /// Why.
        reason: String,
    },
    /// Two entries share an identity key.
    #[error("custodians {0} and {1} have the same identity key")]
    DuplicateIdentity(u16, u16),
    /// A URL is not `http://host:port` or `https://…`.
    #[error("custodian {index}: url {url:?} is not an http:// or https:// URL")]
    Url {
        /// The custodian.
        index: u16,
        /// Its URL.
        url: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PeersToml {
    threshold: u16,
    custodian: Vec<CustodianToml>,
    coordinator: CoordinatorToml,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CustodianToml {
    index: u16,
    url: String,
    identity: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CoordinatorToml {
    identity: String,
}

/// One custodian as the others know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// 1-based index: its FROST identifier.
    pub index: u16,
    /// Its JSON-RPC URL.
    pub url: String,
    /// Its identity key.
    pub identity: XOnlyPublicKey,
}

/// The custodian set and its coordinator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peers {
    /// k.
    pub threshold: u16,
    /// The custodians, by index (1..=n).
    pub custodians: Vec<Peer>,
    /// The key of the node that asks for signatures.
    pub coordinator: XOnlyPublicKey,
}

impl Peers {
    /// Reads and checks a peers file.
    ///
    /// # Errors
    /// [`CustodianError::Io`] if it cannot be read; [`CustodianError::Peers`] naming the file
    /// and the problem.
    pub fn load(path: &Path) -> Result<Self, CustodianError> {
        let text = std::fs::read_to_string(path).map_err(|source| CustodianError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text).map_err(|source| CustodianError::Peers {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Parses and checks a peers file's text (at most [`MAX_CUSTODIANS`] custodians).
    ///
    /// # Errors
    /// [`PeersError`] naming the problem.
    pub fn parse(text: &str) -> Result<Self, PeersError> {
        let raw: PeersToml = toml::from_str(text).map_err(|e| PeersError::Syntax(e.to_string()))?;
        let n = raw.custodian.len();
        let mut found: Vec<u16> = raw.custodian.iter().map(|c| c.index).collect();
        let listed = found.clone();
        found.sort_unstable();
        if n == 0
            || found
                .iter()
                .enumerate()
                .any(|(i, x)| usize::from(*x) != i + 1)
        {
            return Err(PeersError::Indexes {
                custodians: n,
                found: listed,
            });
        }
        if n > MAX_CUSTODIANS {
            return Err(PeersError::TooMany(n));
        }
        if raw.threshold < 2 || usize::from(raw.threshold) > n {
            return Err(PeersError::Threshold {
                threshold: raw.threshold,
                custodians: n,
            });
        }
        let mut custodians = Vec::with_capacity(n);
        for c in raw.custodian {
            let identity =
                parse_public_key("identity", &c.identity).map_err(|e| PeersError::Identity {
                    entry: format!("custodian {}", c.index),
                    reason: e.to_string(),
                })?;
            let url = c.url.trim().trim_end_matches('/').to_string();
            let rest = url
                .strip_prefix("http://")
                .or_else(|| url.strip_prefix("https://"));
            // Host, port and path characters only (a URL written back into TOML as is).
            let plain = |c: char| c.is_ascii_alphanumeric() || "-._~:/[]@%".contains(c);
            if rest.is_none_or(|r| r.is_empty() || !r.chars().all(plain)) {
                return Err(PeersError::Url {
                    index: c.index,
                    url: c.url,
                });
            }
            custodians.push(Peer {
                index: c.index,
                url,
                identity,
            });
        }
        custodians.sort_by_key(|c| c.index);
        let coordinator = parse_public_key("identity", &raw.coordinator.identity).map_err(|e| {
            PeersError::Identity {
                entry: "coordinator".into(),
                reason: e.to_string(),
            }
        })?;
        for (i, a) in custodians.iter().enumerate() {
            for b in &custodians[i + 1..] {
                if a.identity == b.identity {
                    return Err(PeersError::DuplicateIdentity(a.index, b.index));
                }
            }
            if a.identity == coordinator {
                return Err(PeersError::Identity {
                    entry: format!("custodian {}", a.index),
                    reason: "is the coordinator's key (use another key)".into(),
                });
            }
        }
        Ok(Peers {
            threshold: raw.threshold,
            custodians,
            coordinator,
        })
    }

    /// The file's text (what [`Peers::parse`] reads back).
    pub fn to_toml(&self) -> String {
        let mut s = format!("threshold = {}\n", self.threshold);
        for c in &self.custodians {
            s.push_str(&format!(
                "\n[[custodian]]\nindex = {}\nurl = \"{}\"\nidentity = \"{}\"\n",
                c.index, c.url, c.identity
            ));
        }
        s.push_str(&format!(
            "\n[coordinator]\nidentity = \"{}\"\n",
            self.coordinator
        ));
        s
    }

    /// n.
    pub fn len(&self) -> usize {
        self.custodians.len()
    }

    /// Whether there are no custodians (never, for a parsed file).
    pub fn is_empty(&self) -> bool {
        self.custodians.is_empty()
    }

    /// Custodian `index`.
    pub fn peer(&self, index: u16) -> Option<&Peer> {
        self.custodians.iter().find(|c| c.index == index)
    }

    /// The index of the custodian with identity `key`.
    pub fn index_of(&self, key: &XOnlyPublicKey) -> Option<u16> {
        self.custodians
            .iter()
            .find(|c| c.identity == *key)
            .map(|c| c.index)
    }

    /// The key messages from sender `from` must be signed with (0 = the coordinator).
    pub fn sender_key(&self, from: u16) -> Option<XOnlyPublicKey> {
        if from == 0 {
            Some(self.coordinator)
        } else {
            self.peer(from).map(|c| c.identity)
        }
    }

    /// A digest of the set (threshold, indexes, identities, coordinator; not the URLs, which
    /// may differ between hosts): what a DKG session is bound to.
    pub fn digest(&self) -> [u8; 32] {
        let mut e = sha256::Hash::engine();
        e.input(b"hemi-rs/custodian/v1/peers");
        e.input(&self.threshold.to_be_bytes());
        for c in &self.custodians {
            e.input(&c.index.to_be_bytes());
            e.input(&c.identity.serialize());
        }
        e.input(&self.coordinator.serialize());
        sha256::Hash::from_engine(e).to_byte_array()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;

    fn sample() -> Peers {
        Peers {
            threshold: 2,
            custodians: (1..=3)
                .map(|i| Peer {
                    index: i,
                    url: format!("http://127.0.0.1:{}", 7300 + i),
                    identity: Identity::generate().public(),
                })
                .collect(),
            coordinator: Identity::generate().public(),
        }
    }

    #[test]
    fn a_peers_file_round_trips() {
        let p = sample();
        assert_eq!(Peers::parse(&p.to_toml()).expect("parse"), p);
    }

    #[test]
    fn bad_peers_files_are_refused_naming_the_problem() {
        let p = sample();
        let text = p.to_toml();
        let cases = [
            (
                text.replace("threshold = 2", "threshold = 4"),
                "threshold 4",
            ),
            (
                text.replace("threshold = 2", "threshold = 1"),
                "threshold 1",
            ),
            (
                text.replace("index = 3", "index = 2"),
                "indexes must be 1..=3",
            ),
            (
                text.replace("index = 3", "index = 4"),
                "indexes must be 1..=3",
            ),
            (
                text.replace("threshold = 2", "threshold = 2\nextra = 1"),
                "unknown field",
            ),
            (
                text.replace("http://127.0.0.1:7302", "ftp://x"),
                "custodian 2: url",
            ),
            (
                text.replace(&p.custodians[0].identity.to_string(), "abcd"),
                "custodian 1: identity",
            ),
            (
                text.replace(
                    &p.custodians[0].identity.to_string(),
                    &p.custodians[1].identity.to_string(),
                ),
                "same identity",
            ),
            (
                text.replace(&p.coordinator.to_string(), "00"),
                "coordinator: identity",
            ),
        ];
        for (bad, expected) in cases {
            let err = Peers::parse(&bad).expect_err(expected).to_string();
            assert!(err.contains(expected), "{err:?} should say {expected:?}");
        }
    }
}
