//! Four validators on loopback decide a chain of blocks through Malachite; every block's
//! certificate verifies against the set, and every validator has the same chain. Then one
//! validator stops and the other three go on (f = 1 of 4).

use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy_consensus::Header;
use alloy_primitives::{keccak256, B256};
use hemi_chain::{L2Block, Seal, SealVerifier, ValidatorSet as CertSet};
use hemi_consensus::{
    lan_timeouts, start, Host, PubKey, SetStatus, ValidatorConfig, ValidatorSet, Verdict,
};
use parking_lot::Mutex;

const CHAIN_ID: u64 = 31337;

/// A chain of empty blocks kept in memory: the smallest host that still refuses a block that
/// is not next or whose certificate does not verify.
struct MemHost {
    blocks: Mutex<Vec<L2Block>>,
    set: CertSet,
}

impl MemHost {
    fn new(set: CertSet) -> Self {
        let genesis = L2Block {
            header: Header::default(),
            txs: vec![],
            seal: Seal::ZERO,
            certificate: None,
        };
        MemHost {
            blocks: Mutex::new(vec![genesis]),
            set,
        }
    }
    fn head_hash(&self) -> B256 {
        self.blocks
            .lock()
            .last()
            .map(|b| b.hash())
            .unwrap_or_default()
    }
}

impl Host for MemHost {
    fn head(&self) -> u64 {
        self.blocks.lock().len() as u64 - 1
    }
    fn propose(
        &self,
        height: u64,
        beneficiary: alloy_primitives::Address,
    ) -> Result<L2Block, String> {
        if height != self.head() + 1 {
            return Err(format!("height {height} is not next"));
        }
        Ok(L2Block {
            header: Header {
                number: height,
                parent_hash: self.head_hash(),
                beneficiary,
                ..Default::default()
            },
            txs: vec![],
            seal: Seal::ZERO,
            certificate: None,
        })
    }
    fn validate(&self, block: &L2Block) -> Verdict {
        if block.header.number == self.head() + 1 && block.header.parent_hash == self.head_hash() {
            Verdict::Valid
        } else {
            Verdict::Invalid("not on our head".into())
        }
    }
    fn commit(&self, block: &L2Block) -> Result<(), String> {
        let n = block.header.number;
        if n <= self.head() {
            return Ok(());
        }
        if let Verdict::Invalid(e) = self.validate(block) {
            return Err(e);
        }
        self.set
            .verify(
                CHAIN_ID,
                n,
                block.hash(),
                &block.seal,
                block.certificate.as_ref(),
            )
            .map_err(|e| e.to_string())?;
        self.blocks.lock().push(block.clone());
        Ok(())
    }
    fn block(&self, number: u64) -> Option<L2Block> {
        self.blocks.lock().get(number as usize).cloned()
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("test")
        .local_addr()
        .expect("test")
        .port()
}

async fn wait_for(hosts: &[Arc<MemHost>], height: u64, limit: Duration) {
    let t = Instant::now();
    while hosts.iter().any(|h| h.head() < height) {
        assert!(
            t.elapsed() < limit,
            "heads {:?} did not reach {height} in {limit:?}",
            hosts.iter().map(|h| h.head()).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_validators_decide_certified_blocks_and_three_go_on() {
    let secrets: Vec<B256> = (0..4u8).map(|i| keccak256([i])).collect();
    let keys: Vec<PubKey> = secrets
        .iter()
        .map(|s| PubKey::of_secret(*s).expect("test"))
        .collect();
    let set = ValidatorSet::new(&keys).expect("test");
    let cert_set = CertSet(set.addresses());
    let ports: Vec<u16> = (0..4).map(|_| free_port()).collect();
    let dir = std::env::temp_dir().join(format!("hemi-consensus-test-{}", std::process::id()));
    let hosts: Vec<Arc<MemHost>> = (0..4)
        .map(|_| Arc::new(MemHost::new(cert_set.clone())))
        .collect();
    let status = Arc::new(SetStatus::default());
    let mut running = Vec::new();
    for i in 0..4 {
        let cfg = ValidatorConfig {
            chain_id: CHAIN_ID,
            secret: secrets[i],
            set: set.clone(),
            listen: format!("/ip4/127.0.0.1/tcp/{}", ports[i])
                .parse()
                .expect("test"),
            peers: (0..4)
                .filter(|j| *j != i)
                .map(|j| {
                    format!("/ip4/127.0.0.1/tcp/{}", ports[j])
                        .parse()
                        .expect("test")
                })
                .collect(),
            wal: dir.join(format!("v{i}/wal")),
            block_time: Duration::from_millis(100),
            timeouts: lan_timeouts(),
            moniker: format!("v{i}"),
            equivocate: false,
        };
        running.push(
            start(cfg, hosts[i].clone(), status.clone())
                .await
                .expect("start"),
        );
    }
    wait_for(&hosts, 10, Duration::from_secs(60)).await;
    for n in 1..=10 {
        let b0 = hosts[0].block(n).expect("test");
        for h in &hosts[1..] {
            let b = h.block(n).expect("test");
            assert_eq!(b.hash(), b0.hash(), "block {n}");
        }
        let cert = b0.certificate.as_ref().expect("certificate");
        assert!(cert.signatures.len() >= 3);
        cert_set
            .verify(CHAIN_ID, n, b0.hash(), &Seal::ZERO, Some(cert))
            .expect("verifies");
    }
    // Proposers rotate: every validator proposed some of the first ten blocks.
    let proposers: std::collections::BTreeSet<_> = (1..=10)
        .map(|n| hosts[0].block(n).expect("test").header.beneficiary)
        .collect();
    assert_eq!(proposers.len(), 4, "{proposers:?}");
    let json = status.to_json();
    assert_eq!(json["validators"].as_array().expect("test").len(), 4);

    // One of four stops: the other three go on, rounds whose proposer it is time out.
    running.pop().expect("four").stop();
    let at = hosts[0].head();
    wait_for(&hosts[..3], at + 8, Duration::from_secs(90)).await;
    let _ = std::fs::remove_dir_all(&dir);
}
