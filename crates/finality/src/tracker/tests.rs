//! Tracker logic over an in-memory L2 and an in-memory Bitcoin view (the end-to-end tests run it
//! against a real chain and Bitcoin Core).

use super::*;
use bitcoin::hashes::Hash;
use bitcoin::OutPoint;
use hemi_btc_view::{AsOf, IndexedTx, KeystonePublication, SpentBy, TxLocation, Utxo};

#[derive(Default)]
struct FakeL2 {
    headers: RwLock<Vec<Header>>,
    unwinds: RwLock<Vec<u64>>,
}

impl FakeL2 {
    fn grow(&self, to: u64, salt: u8) {
        let mut h = self.headers.write();
        while h.len() as u64 <= to {
            let parent = h.last().map(|p| p.hash_slow()).unwrap_or_default();
            let number = h.len() as u64;
            h.push(Header {
                parent_hash: parent,
                number,
                state_root: B256::repeat_byte(salt),
                ..Default::default()
            });
        }
    }
    fn truncate(&self, len: usize) {
        self.headers.write().truncate(len);
    }
}

impl L2Headers for FakeL2 {
    fn head(&self) -> (u64, B256) {
        let h = self.headers.read();
        let last = h.last().expect("genesis");
        (last.number, last.hash_slow())
    }
    fn header(&self, number: u64) -> Result<Option<Header>, ChainError> {
        Ok(self.headers.read().get(number as usize).cloned())
    }
    fn pin(&self, number: u64) -> Result<Option<BlockRef>, ChainError> {
        Ok(Some(BlockRef {
            hash: BlockHash::all_zeros(),
            height: 100 + number as u32,
        }))
    }
    fn unwinds_since(&self, seen: usize) -> (usize, Option<u64>) {
        let u = self.unwinds.read();
        (u.len(), u.get(seen..).and_then(|s| s.iter().min().copied()))
    }
}

/// Bitcoin as a list of block hashes (the best chain) and publications in them.
#[derive(Default)]
struct FakeBitcoin {
    chain: RwLock<Vec<BlockHash>>,
    pubs: RwLock<Vec<([u8; 32], Txid, u32)>>,
}

fn block_hash(height: u32, branch: u8) -> BlockHash {
    let mut b = [branch; 32];
    b[..4].copy_from_slice(&height.to_le_bytes());
    BlockHash::from_byte_array(b)
}

impl FakeBitcoin {
    fn mine_to(&self, height: u32, branch: u8) {
        let mut c = self.chain.write();
        while c.len() as u32 <= height {
            let h = c.len() as u32;
            c.push(block_hash(h, branch));
        }
    }
    fn publish(&self, id: KeystoneId, height: u32, tag: u8) {
        self.pubs
            .write()
            .push((id.0, Txid::from_byte_array([tag; 32]), height));
    }
    /// Replaces every block above `height` (and the publications in them) with `branch`.
    fn reorg(&self, height: u32, to: u32, branch: u8) {
        self.chain.write().truncate(height as usize + 1);
        self.pubs.write().retain(|p| p.2 <= height);
        self.mine_to(to, branch);
    }
}

impl BitcoinView for FakeBitcoin {
    fn tip(&self) -> Result<BlockRef, ViewError> {
        let c = self.chain.read();
        Ok(BlockRef {
            hash: *c.last().expect("genesis"),
            height: c.len() as u32 - 1,
        })
    }
    fn header_at(&self, _: u32) -> Result<Option<(BlockRef, bitcoin::block::Header)>, ViewError> {
        Ok(None)
    }
    fn header_by_hash(
        &self,
        hash: &BlockHash,
    ) -> Result<Option<(BlockRef, bitcoin::block::Header)>, ViewError> {
        let c = self.chain.read();
        Ok(c.iter().position(|h| h == hash).map(|height| {
            (
                BlockRef {
                    hash: *hash,
                    height: height as u32,
                },
                bitcoin::constants::genesis_block(bitcoin::Network::Regtest).header,
            )
        }))
    }
    fn utxos_by_script(&self, _: &bitcoin::Script, _: AsOf) -> Result<Vec<Utxo>, ViewError> {
        Ok(Vec::new())
    }
    fn transaction(&self, _: &Txid, _: AsOf) -> Result<Option<IndexedTx>, ViewError> {
        Ok(None)
    }
    fn spent_by(&self, _: &OutPoint) -> Result<Option<SpentBy>, ViewError> {
        Ok(None)
    }
    fn block_transactions(
        &self,
        _: &BlockHash,
    ) -> Result<Option<Vec<bitcoin::Transaction>>, ViewError> {
        Ok(None)
    }
    fn keystone_publications(&self, id: &[u8; 32]) -> Result<Vec<KeystonePublication>, ViewError> {
        let c = self.chain.read();
        let mut v: Vec<KeystonePublication> = self
            .pubs
            .read()
            .iter()
            .filter(|p| &p.0 == id)
            .map(|p| KeystonePublication {
                keystone_id: p.0,
                txid: p.1,
                location: TxLocation {
                    block: BlockRef {
                        hash: c[p.2 as usize],
                        height: p.2,
                    },
                    index: 1,
                },
            })
            .collect();
        v.sort_by_key(|p| p.location.block.height);
        Ok(v)
    }
}

fn setup(depth: u32) -> (Arc<FakeL2>, Arc<FakeBitcoin>, FinalityTracker) {
    let l2 = Arc::new(FakeL2::default());
    l2.grow(0, 1);
    let btc = Arc::new(FakeBitcoin::default());
    btc.mine_to(100, 0);
    let t = FinalityTracker::new(
        l2.clone(),
        btc.clone(),
        FinalityParams {
            keystone_interval: 5,
            superfinality_depth: depth,
        },
    )
    .expect("tracker");
    (l2, btc, t)
}

#[test]
fn keystones_carry_the_block_fields_and_link_to_the_previous_keystone() {
    let (l2, _, t) = setup(10);
    l2.grow(12, 1);
    let added = t.refresh().expect("refresh");
    assert_eq!(added.iter().map(|k| k.number).collect::<Vec<_>>(), [5, 10]);
    let headers = l2.headers.read().clone();
    let k10 = &added[1].keystone;
    assert_eq!(k10.version, 1);
    assert_eq!(k10.l2_block_number, 10);
    assert_eq!(k10.l1_block_number, 110, "the pinned Bitcoin height");
    assert_eq!(k10.ep_hash, headers[10].hash_slow().0);
    assert_eq!(k10.parent_ep_hash, headers[9].hash_slow().0);
    assert_eq!(k10.prev_keystone_ep_hash, headers[5].hash_slow().0);
    assert_eq!(
        added[0].keystone.prev_keystone_ep_hash, [0; 32],
        "Hemi: none"
    );
    assert_eq!(added[1].id, k10.abbreviate().id());
    // Nothing new: nothing added; the next multiple arrives with block 15.
    assert!(t.refresh().expect("refresh").is_empty());
    l2.grow(15, 1);
    assert_eq!(t.refresh().expect("refresh")[0].number, 15);
    assert_eq!(t.latest_keystones(2)[0].number, 15);
    let from5 = t.keystone_and_descendants(&added[0].id.0, 10);
    assert_eq!(
        from5.iter().map(|k| k.number).collect::<Vec<_>>(),
        [5, 10, 15]
    );
    assert!(t.keystone_and_descendants(&[9; 32], 10).is_empty());
    assert_eq!(t.keystone_at(10).map(|k| k.number), Some(10));
    assert_eq!(t.keystone_at(11), None);
}

#[test]
fn finality_follows_the_earliest_publication_at_or_after_the_covering_keystone() {
    let (l2, btc, t) = setup(10);
    l2.grow(22, 1);
    t.refresh().expect("refresh");
    let f = t.finality(7).expect("finality").expect("block 7");
    assert_eq!(f.keystone.as_ref().map(|k| k.number), Some(10));
    assert_eq!(f.effective_confirmations, None);
    assert!(!f.super_finality);
    assert_eq!((t.safe(), t.finalized()), (0, 0));
    assert!(
        t.finality(0)
            .expect("genesis")
            .expect("genesis")
            .super_finality
    );
    assert!(t.finality(23).expect("beyond head").is_none());

    // Keystone 15 is published at 101 before keystone 10 (at 103): block 7 counts from 101.
    let k10 = t.keystone_at(10).expect("k10").id;
    let k15 = t.keystone_at(15).expect("k15").id;
    btc.mine_to(101, 0);
    btc.publish(k15, 101, 15);
    btc.mine_to(103, 0);
    btc.publish(k10, 103, 10);
    btc.mine_to(105, 0);
    t.refresh().expect("refresh");
    let f = t.finality(7).expect("finality").expect("block 7");
    assert_eq!(f.effective_publication.map(|p| p.keystone_number), Some(15));
    assert_eq!(f.effective_confirmations, Some(4));
    assert_eq!(t.safe(), 15, "newest block covered by a published keystone");
    assert_eq!(t.finalized(), 0);
    // Blocks 16..=20 are covered by the unpublished keystone 20.
    assert_eq!(
        t.finality(16)
            .expect("f")
            .expect("16")
            .effective_confirmations,
        None
    );

    // Ten confirmations of the publication at 101: up to block 15 is superfinal.
    btc.mine_to(111, 0);
    t.refresh().expect("refresh");
    assert_eq!(t.finalized(), 15);
    assert!(t.finality(15).expect("f").expect("15").super_finality);
    assert_eq!(
        t.finality(10)
            .expect("f")
            .expect("10")
            .effective_confirmations,
        Some(10)
    );
}

#[test]
fn a_bitcoin_reorg_that_drops_a_publication_moves_finality_back() {
    let (l2, btc, t) = setup(3);
    l2.grow(10, 1);
    t.refresh().expect("refresh");
    let k10 = t.keystone_at(10).expect("k10").id;
    btc.mine_to(102, 0);
    btc.publish(k10, 102, 1);
    btc.mine_to(106, 0);
    t.refresh().expect("refresh");
    assert_eq!((t.safe(), t.finalized()), (10, 10));
    // A longer branch from 101 without the publication.
    btc.reorg(101, 108, 7);
    t.refresh().expect("refresh");
    assert_eq!((t.safe(), t.finalized()), (0, 0));
    assert_eq!(t.keystone_at(10).expect("k10").publication, None);
    // Published again on the new branch.
    btc.publish(k10, 108, 2);
    btc.mine_to(111, 7);
    t.refresh().expect("refresh");
    assert_eq!((t.safe(), t.finalized()), (10, 10));
    assert_eq!(
        t.keystone_at(10)
            .and_then(|k| k.publication)
            .map(|p| p.height),
        Some(108)
    );
}

#[test]
fn an_l2_reorg_replaces_the_keystones_it_changed() {
    let (l2, _, t) = setup(10);
    l2.grow(10, 1);
    t.refresh().expect("refresh");
    let old = t.keystone_at(10).expect("k10");
    l2.truncate(8);
    l2.grow(12, 2);
    let added = t.refresh().expect("refresh");
    assert_eq!(added.len(), 1);
    let new = t.keystone_at(10).expect("k10");
    assert_ne!(new.block_hash, old.block_hash);
    assert!(t.keystone_and_descendants(&old.id.0, 5).is_empty());
    assert_eq!(t.keystone_at(5).expect("k5").number, 5);
}

#[test]
fn keystones_above_an_unwind_target_are_reread_even_if_a_later_one_looks_canonical() {
    // What a refresh racing a branch switch can leave: block 10 read before the switch matched,
    // block 5 changed underneath. The chain reports the unwind; the tracker must not trust 5.
    let (l2, _, t) = setup(10);
    l2.grow(12, 1);
    t.refresh().expect("refresh");
    let old5 = t.keystone_at(5).expect("k5");
    l2.headers.write()[5].state_root = B256::repeat_byte(9);
    l2.unwinds.write().push(3);
    t.refresh().expect("refresh");
    let new5 = t.keystone_at(5).expect("k5");
    assert_ne!(new5.block_hash, old5.block_hash, "keystone 5 re-read");
    assert_eq!(new5.keystone.state_root, [9u8; 32]);
    // Seen once: the next refresh does not drop anything again.
    assert!(t.refresh().expect("refresh").is_empty());
}

#[test]
fn a_zero_interval_is_refused() {
    let l2 = Arc::new(FakeL2::default());
    l2.grow(0, 1);
    let r = FinalityTracker::new(
        l2,
        Arc::new(FakeBitcoin::default()),
        FinalityParams {
            keystone_interval: 0,
            superfinality_depth: 1,
        },
    );
    assert!(matches!(r, Err(FinalityError::ZeroInterval)));
}
