//! The miner's record of its publications, kept in a versioned JSON file replaced atomically
//! (write a temporary file, fsync, rename, fsync the directory): after a crash the file is the
//! old record or the new one, never a mix.

use std::io::Write;
use std::path::{Path, PathBuf};

use bitcoin::{OutPoint, Txid};
use serde::{Deserialize, Serialize};

/// Version of the record file format.
pub const RECORD_VERSION: u32 = 1;

/// One keystone this miner published (or is publishing).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Publication {
    /// Keystone hash (Hemi's display form).
    pub keystone: String,
    /// Its L2 block number.
    pub l2_block_number: u64,
    /// Every transaction broadcast for it, oldest first; the last one is current (earlier ones
    /// were replaced by fee bumps).
    pub txids: Vec<Txid>,
    /// The current transaction, hex.
    pub raw: String,
    /// Its fee rate, sat/vB.
    pub fee_rate: f64,
    /// Its fee, sat.
    pub fee: u64,
    /// Its virtual size.
    pub vsize: u64,
    /// The output it spends.
    pub input: OutPoint,
    /// That output's value, sat.
    pub input_value: u64,
    /// The change output (index, sat), if any.
    pub change: Option<(u32, u64)>,
    /// Bitcoin tip height when the current transaction was broadcast.
    pub sent_at: u32,
    /// Height of the block that confirmed one of `txids`, once the node's index shows it.
    pub confirmed: Option<u32>,
    /// Another miner's publication of the keystone confirmed first; ours is left alone.
    #[serde(default)]
    pub covered: bool,
}

impl Publication {
    /// The current transaction id.
    pub fn txid(&self) -> Option<Txid> {
        self.txids.last().copied()
    }

    /// The change outpoint, if any.
    pub fn change_outpoint(&self) -> Option<(OutPoint, u64)> {
        let txid = self.txid()?;
        self.change
            .map(|(vout, value)| (OutPoint::new(txid, vout), value))
    }

    /// Neither confirmed nor covered: the miner still has to see it through.
    pub fn pending(&self) -> bool {
        self.confirmed.is_none() && !self.covered
    }
}

/// The whole record.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MinerRecord {
    /// [`RECORD_VERSION`].
    pub version: u32,
    /// The miner's Bitcoin address (a record is refused for another key).
    pub address: String,
    /// Publications, oldest first.
    pub publications: Vec<Publication>,
}

/// Why the record cannot be read or written.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The file exists but cannot be read.
    #[error("reading {}: {error}", path.display())]
    Read {
        /// The record's path.
        path: PathBuf,
        /// The I/O error.
        error: String,
    },
    /// The file is not a miner record (JSON of this shape).
    #[error("{} is not a PoP miner record: {error}", path.display())]
    NotARecord {
        /// The record's path.
        path: PathBuf,
        /// The JSON error.
        error: String,
    },
    /// Another record format version.
    #[error("{} has record version {found}, this miner reads {expected}", path.display())]
    Version {
        /// The record's path.
        path: PathBuf,
        /// The version in the file.
        found: u32,
        /// The version this miner reads.
        expected: u32,
    },
    /// The record of another miner key.
    #[error("{} belongs to the miner {owner}, not {address}", path.display())]
    OtherMiner {
        /// The record's path.
        path: PathBuf,
        /// The address the record is for.
        owner: String,
        /// This miner's address.
        address: String,
    },
    /// Writing the record failed (the old file is still in place).
    #[error("writing {}: {error}", path.display())]
    Write {
        /// The record's path.
        path: PathBuf,
        /// The I/O error.
        error: String,
    },
    /// A publication in the record has no PoP output to fee-bump.
    #[error("record for {keystone} has no PoP output")]
    NoPopOutput {
        /// The keystone's hash.
        keystone: String,
    },
}

impl MinerRecord {
    /// Loads `path`; a missing file is an empty record for `address`.
    ///
    /// # Errors
    /// Unreadable or invalid file, another version, another address.
    pub fn load(path: &Path, address: &str) -> Result<Self, RecordError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(MinerRecord {
                    version: RECORD_VERSION,
                    address: address.to_string(),
                    publications: Vec::new(),
                })
            }
            Err(e) => {
                return Err(RecordError::Read {
                    path: path.to_path_buf(),
                    error: e.to_string(),
                })
            }
        };
        let r: MinerRecord = serde_json::from_str(&text).map_err(|e| RecordError::NotARecord {
            path: path.to_path_buf(),
            error: e.to_string(),
        })?;
        if r.version != RECORD_VERSION {
            return Err(RecordError::Version {
                path: path.to_path_buf(),
                found: r.version,
                expected: RECORD_VERSION,
            });
        }
        if r.address != address {
            return Err(RecordError::OtherMiner {
                path: path.to_path_buf(),
                owner: r.address,
                address: address.to_string(),
            });
        }
        Ok(r)
    }

    /// Replaces `path` atomically with this record.
    ///
    /// # Errors
    /// Any I/O error; the old file is then still in place.
    pub fn save(&self, path: &Path) -> Result<(), RecordError> {
        let io = |e: std::io::Error| RecordError::Write {
            path: path.to_path_buf(),
            error: e.to_string(),
        };
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(io)?;
        let tmp: PathBuf = path.with_extension("tmp");
        let body = serde_json::to_vec_pretty(self).map_err(|e| RecordError::Write {
            path: path.to_path_buf(),
            error: e.to_string(),
        })?;
        {
            let mut f = std::fs::File::create(&tmp).map_err(io)?;
            f.write_all(&body).map_err(io)?;
            f.sync_all().map_err(io)?;
        }
        std::fs::rename(&tmp, path).map_err(io)?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::hashes::Hash;

    fn sample() -> MinerRecord {
        MinerRecord {
            version: RECORD_VERSION,
            address: "bcrt1qexample".into(),
            publications: vec![Publication {
                keystone: "ab".repeat(32),
                l2_block_number: 25,
                txids: vec![Txid::from_byte_array([1; 32])],
                raw: "00".into(),
                fee_rate: 1.5,
                fee: 300,
                vsize: 200,
                input: OutPoint::new(Txid::from_byte_array([2; 32]), 0),
                input_value: 5_000_000_000,
                change: Some((1, 4_999_999_700)),
                sent_at: 120,
                confirmed: None,
                covered: false,
            }],
        }
    }

    #[test]
    fn saves_and_loads_and_refuses_another_key_or_version() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("popm.json");
        let empty = MinerRecord::load(&path, "bcrt1qexample").expect("missing is empty");
        assert!(empty.publications.is_empty());
        let r = sample();
        r.save(&path).expect("save");
        assert_eq!(MinerRecord::load(&path, "bcrt1qexample"), Ok(r.clone()));
        assert!(MinerRecord::load(&path, "bcrt1qother")
            .expect_err("refused")
            .to_string()
            .contains("belongs to the miner"));
        let mut v2 = r;
        v2.version = 2;
        v2.save(&path).expect("save");
        assert!(MinerRecord::load(&path, "bcrt1qexample")
            .expect_err("refused")
            .to_string()
            .contains("version 2"));
        std::fs::write(&path, b"{not json").expect("write");
        assert!(MinerRecord::load(&path, "bcrt1qexample")
            .expect_err("refused")
            .to_string()
            .contains("not a PoP miner record"));
    }
}
