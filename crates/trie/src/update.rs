//! Incremental updates: apply leaf changes along their paths only.
//!
//! The update walks down from the root once, visiting only the nodes on the changed keys' paths
//! (plus, where a branch collapses, its one remaining child). Everything it would write goes into
//! an overlay keyed by path, so later steps of the same update read their own writes; at the end
//! the overlay, minus what did not actually change, becomes the [`TrieUpdate`].
//!
//! Path-keyed storage makes restructuring cheap: a subtree never moves. Splitting or merging only
//! relocates a leaf or an extension (one node), because an extension's child stays at
//! `path ‖ key` whatever the extension's own path becomes.

use crate::{NodeReader, StoredNode, TrieError};
use alloy_primitives::{keccak256, B256};
use alloy_trie::{nodes::RlpNode, Nibbles, EMPTY_ROOT_HASH};
use std::collections::{BTreeMap, HashMap};

/// Nibbles in a full key (a 32-byte hash).
const KEY_NIBBLES: usize = 64;

/// What an update changes: the new root, and the node writes and deletes by path, for the caller
/// to commit atomically with the rest of its block.
///
/// `puts` and `deletes` are sorted by path and never name the same path; `puts` holds only nodes
/// that differ from what the store had, `deletes` only paths the store had.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrieUpdate {
    /// The root hash after the update.
    pub root: B256,
    /// Nodes to store (replacing whatever is at the path).
    pub puts: Vec<(Nibbles, StoredNode)>,
    /// Paths whose node must be removed.
    pub deletes: Vec<Nibbles>,
}

/// Applies leaf changes to the trie stored in `reader` and returns the new root and the node
/// changes; `reader` itself is not modified.
///
/// Keys are 32-byte hashed keys (`keccak(address)`, `keccak(slot)`); a value is the RLP-encoded
/// leaf value and `None` deletes the key (deleting an absent key is a no-op). Cost: node reads
/// and hashes proportional to `changes × depth`, independent of the trie's size.
///
/// # Errors
///
/// [`TrieError::EmptyValue`] for `Some(empty)` (pass `None` to delete); otherwise whatever the
/// reader returns, or [`TrieError::MissingNode`] / [`TrieError::CorruptNode`] when the stored trie
/// is incomplete or inconsistent.
pub fn update(
    reader: &dyn NodeReader,
    changes: &BTreeMap<B256, Option<Vec<u8>>>,
) -> Result<TrieUpdate, TrieError> {
    let sorted = sorted_changes(changes)?;
    let mut updater = Updater::new(reader);
    let root_path = Nibbles::new();
    let root_node = updater.load(&root_path)?;
    if sorted.is_empty() {
        return Ok(TrieUpdate {
            root: root_hash(root_node.as_ref()),
            ..TrieUpdate::default()
        });
    }
    let new_root = updater.subtree(root_path, root_node, &sorted)?;
    let root = root_hash(new_root.as_ref());
    updater.place(root_path, new_root);
    let (puts, deletes) = updater.finish()?;
    Ok(TrieUpdate {
        root,
        puts,
        deletes,
    })
}

/// [`update`] with the root's sixteen subtrees spread over up to `threads` threads (the calling
/// thread is one of them); the result is identical to [`update`]'s.
///
/// Worth it for many changes (a block's accounts): the subtrees share no node, so each thread
/// reads, rebuilds and hashes its own; only the root is joined at the end. Falls back to
/// [`update`] when the root is not a branch with at least two changed subtrees, or when the
/// root would be left with fewer than two children (it then collapses, which [`update`]
/// handles).
///
/// # Errors
///
/// As [`update`].
pub fn update_parallel(
    reader: &(dyn NodeReader + Sync),
    changes: &BTreeMap<B256, Option<Vec<u8>>>,
    threads: usize,
) -> Result<TrieUpdate, TrieError> {
    let sorted = sorted_changes(changes)?;
    let root_path = Nibbles::new();
    let original_root = reader.node(&root_path)?;
    let Some(StoredNode::Branch { children }) = &original_root else {
        return update(reader, changes);
    };
    let mut groups = Vec::new();
    let mut rest = sorted.as_slice();
    while let Some(group) = next_group(&mut rest, 0) {
        groups.push(group);
    }
    if threads < 2 || groups.len() < 2 {
        return update(reader, changes);
    }
    // Contiguous runs of subtrees with about the same number of changes each.
    let per_thread = sorted.len().div_ceil(threads.min(groups.len()));
    let mut chunks: Vec<Vec<(u8, &[Change<'_>])>> = vec![Vec::new()];
    let mut in_chunk = 0;
    for group in groups {
        if in_chunk >= per_thread {
            chunks.push(Vec::new());
            in_chunk = 0;
        }
        in_chunk += group.1.len();
        chunks.last_mut().expect("a chunk").push(group);
    }
    let run = |chunk: &[(u8, &[Change<'_>])]| -> Result<Subtrees, TrieError> {
        let mut updater = Updater::new(reader);
        let mut refs = Vec::with_capacity(chunk.len());
        for (index, group) in chunk {
            let child_path = Nibbles::from_nibbles_unchecked([*index]);
            let existing = match children[usize::from(*index)] {
                Some(_) => Some(updater.load_child(&child_path)?),
                None => None,
            };
            let new_child = updater.subtree(child_path, existing, group)?;
            refs.push((*index, updater.place(child_path, new_child)));
        }
        let (puts, deletes) = updater.finish()?;
        Ok((refs, puts, deletes))
    };
    let results: Vec<Result<Subtrees, TrieError>> = std::thread::scope(|scope| {
        let (first, others) = chunks.split_first().expect("a chunk");
        let handles: Vec<_> = others
            .iter()
            .map(|chunk| scope.spawn(|| run(chunk)))
            .collect();
        let mut results = vec![run(first)];
        for handle in handles {
            results.push(
                handle
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            );
        }
        results
    });

    let mut new_children = children.clone();
    let mut puts = Vec::new();
    let mut deletes = Vec::new();
    for result in results {
        let (refs, p, d) = result?;
        for (index, child) in refs {
            new_children[usize::from(index)] = child;
        }
        puts.extend(p);
        deletes.extend(d);
    }
    if new_children.iter().filter(|c| c.is_some()).count() < 2 {
        return update(reader, changes);
    }
    let new_root = StoredNode::Branch {
        children: new_children,
    };
    let root = root_hash(Some(&new_root));
    if original_root.as_ref() != Some(&new_root) {
        puts.push((root_path, new_root));
    }
    // Each thread's writes are sorted and the threads hold consecutive subtrees, so only the
    // root (the smallest path) is out of place.
    puts.sort_unstable_by_key(|(path, _)| *path);
    deletes.sort_unstable();
    Ok(TrieUpdate {
        root,
        puts,
        deletes,
    })
}

/// What one thread of [`update_parallel`] returns: the new reference of each subtree it
/// updated, and its node writes and deletes.
type Subtrees = (
    Vec<(u8, Option<RlpNode>)>,
    Vec<(Nibbles, StoredNode)>,
    Vec<Nibbles>,
);

/// The changes as full keys in nibble order, checked.
fn sorted_changes(changes: &BTreeMap<B256, Option<Vec<u8>>>) -> Result<Vec<Change<'_>>, TrieError> {
    // B256 order is nibble order, so the changes stay sorted.
    let mut sorted: Vec<Change<'_>> = Vec::with_capacity(changes.len());
    for (key, value) in changes {
        if value.as_ref().is_some_and(Vec::is_empty) {
            return Err(TrieError::EmptyValue { key: *key });
        }
        sorted.push((Nibbles::unpack(key), value.as_deref()));
    }
    Ok(sorted)
}

/// The root hash of a trie whose root node is `node`: keccak of its RLP even when that is
/// shorter than 32 bytes, [`EMPTY_ROOT_HASH`] for no node.
pub(crate) fn root_hash(node: Option<&StoredNode>) -> B256 {
    node.map_or(EMPTY_ROOT_HASH, |node| keccak256(node.rlp_encoded()))
}

/// A full key (64 nibbles) and its new value (`None`: delete).
type Change<'a> = (Nibbles, Option<&'a [u8]>);
/// A full key and its value, for building a subtree from scratch.
type Entry<'a> = (Nibbles, &'a [u8]);

struct Updater<'r> {
    reader: &'r dyn NodeReader,
    /// This update's writes by path (`None`: removed); reads see them first.
    overlay: HashMap<Nibbles, Option<StoredNode>>,
    /// What the store held at each path read, so `finish` drops writes that change nothing.
    original: HashMap<Nibbles, Option<StoredNode>>,
}

impl<'r> Updater<'r> {
    fn new(reader: &'r dyn NodeReader) -> Self {
        Updater {
            reader,
            overlay: HashMap::new(),
            original: HashMap::new(),
        }
    }

    /// The node at `path` as of this update so far.
    fn load(&mut self, path: &Nibbles) -> Result<Option<StoredNode>, TrieError> {
        if let Some(node) = self.overlay.get(path) {
            return Ok(node.clone());
        }
        if let Some(node) = self.original.get(path) {
            return Ok(node.clone());
        }
        let node = self.reader.node(path)?;
        self.original.insert(*path, node.clone());
        Ok(node)
    }

    /// Loads a node its parent references.
    fn load_child(&mut self, path: &Nibbles) -> Result<StoredNode, TrieError> {
        self.load(path)?
            .ok_or(TrieError::MissingNode { path: *path })
    }

    /// Writes `node` at `path` (or removes what is there) and returns its reference.
    fn place(&mut self, path: Nibbles, node: Option<StoredNode>) -> Option<RlpNode> {
        let rlp = node.as_ref().map(StoredNode::rlp);
        self.overlay.insert(path, node);
        rlp
    }

    fn remove(&mut self, path: Nibbles) {
        self.overlay.insert(path, None);
    }

    /// Applies `changes` (all under `path`, sorted, non-empty) to the subtree whose top node
    /// `node` is at `path`. Returns the subtree's new top node, not yet placed: the caller places
    /// it at `path` or merges it into its own node. Everything below is placed.
    fn subtree(
        &mut self,
        path: Nibbles,
        node: Option<StoredNode>,
        changes: &[Change<'_>],
    ) -> Result<Option<StoredNode>, TrieError> {
        match node {
            None => {
                let entries: Vec<Entry<'_>> = changes
                    .iter()
                    .filter_map(|(k, v)| v.map(|v| (*k, v)))
                    .collect();
                self.build(path, &entries)
            }
            Some(StoredNode::Leaf { key, value }) => {
                let full = join(&path, &key)
                    .filter(|full| full.len() == KEY_NIBBLES)
                    .ok_or(TrieError::CorruptNode {
                        path,
                        reason: "leaf key is not 64 nibbles",
                    })?;
                let mut entries: Vec<Entry<'_>> = Vec::with_capacity(changes.len() + 1);
                let mut existing = Some((full, value.as_slice()));
                for (k, v) in changes {
                    if let Some(old) = existing {
                        if old.0 < *k {
                            entries.push(old);
                            existing = None;
                        } else if old.0 == *k {
                            existing = None; // the change replaces or deletes it
                        }
                    }
                    if let Some(v) = v {
                        entries.push((*k, v));
                    }
                }
                entries.extend(existing);
                self.build(path, &entries)
            }
            Some(StoredNode::Extension { key, child }) => self.extension(path, key, child, changes),
            Some(StoredNode::Branch { children }) => self.branch(path, children, changes),
        }
    }

    fn extension(
        &mut self,
        path: Nibbles,
        key: Nibbles,
        child: RlpNode,
        changes: &[Change<'_>],
    ) -> Result<Option<StoredNode>, TrieError> {
        let child_path = join(&path, &key)
            .filter(|p| !key.is_empty() && p.len() < KEY_NIBBLES)
            .ok_or(TrieError::CorruptNode {
                path,
                reason: "extension key empty or too long",
            })?;
        // Where the first inserted key leaves the extension's segment, if one does.
        let split = changes
            .iter()
            .filter(|(_, v)| v.is_some())
            .map(|(k, _)| {
                k.common_prefix_length(&child_path)
                    .saturating_sub(path.len())
            })
            .min()
            .unwrap_or(key.len());

        if split == key.len() {
            // Changes off the segment are deletes of absent keys.
            let inner: Vec<Change<'_>> = changes
                .iter()
                .filter(|(k, _)| k.starts_with(&child_path))
                .copied()
                .collect();
            if inner.is_empty() {
                return Ok(Some(StoredNode::Extension { key, child }));
            }
            let child_node = self.load_child(&child_path)?;
            let new_child = self.subtree(child_path, Some(child_node), &inner)?;
            return self.wrap(path, key, new_child);
        }

        // An insert leaves the segment at `split`: a branch goes there, holding the old child
        // (through a shorter extension if the segment continues) and the new keys.
        let head = key.slice(..split);
        let branch_path = path.join(&head);
        let index = key.get_unchecked(split);
        let mut children: Box<[Option<RlpNode>; 16]> = Box::default();
        if split + 1 == key.len() {
            children[usize::from(index)] = Some(child);
        } else {
            let rest = StoredNode::Extension {
                key: key.slice(split + 1..),
                child,
            };
            children[usize::from(index)] = Some(rest.rlp());
            let mut rest_path = branch_path;
            rest_path.push_unchecked(index);
            self.overlay.insert(rest_path, Some(rest));
        }
        let inner: Vec<Change<'_>> = changes
            .iter()
            .filter(|(k, _)| k.starts_with(&branch_path))
            .copied()
            .collect();
        let branch = self.branch(branch_path, children, &inner)?;
        self.wrap(path, head, branch)
    }

    fn branch(
        &mut self,
        path: Nibbles,
        mut children: Box<[Option<RlpNode>; 16]>,
        changes: &[Change<'_>],
    ) -> Result<Option<StoredNode>, TrieError> {
        let depth = path.len();
        if depth >= KEY_NIBBLES {
            return Err(TrieError::CorruptNode {
                path,
                reason: "branch at full key depth",
            });
        }
        let mut rest = changes;
        while let Some((index, group)) = next_group(&mut rest, depth) {
            let mut child_path = path;
            child_path.push_unchecked(index);
            let existing = match children[usize::from(index)] {
                Some(_) => Some(self.load_child(&child_path)?),
                None => None,
            };
            let new_child = self.subtree(child_path, existing, group)?;
            children[usize::from(index)] = self.place(child_path, new_child);
        }

        let mut present = children.iter().enumerate().filter(|(_, c)| c.is_some());
        let only = match (present.next(), present.next()) {
            (None, _) => return Ok(None),
            (Some((index, _)), None) => index,
            (Some(_), Some(_)) => return Ok(Some(StoredNode::Branch { children })),
        };

        // One child left: the branch collapses into it, prefixed with its nibble.
        let index = u8::try_from(only).unwrap_or_default();
        let mut child_path = path;
        child_path.push_unchecked(index);
        let prefix = Nibbles::from_nibbles_unchecked([index]);
        let child = self.load_child(&child_path)?;
        if let StoredNode::Branch { .. } = child {
            return Ok(Some(StoredNode::Extension {
                key: prefix,
                child: children[only].take().unwrap_or_default(),
            }));
        }
        self.remove(child_path);
        Ok(Some(prefixed(path, prefix, child)?))
    }

    /// The node at `path` for a subtree whose top node `node` belongs at `path ‖ prefix`: a
    /// branch stays there behind an extension; a leaf or an extension absorbs `prefix` and moves
    /// up to `path`.
    fn wrap(
        &mut self,
        path: Nibbles,
        prefix: Nibbles,
        node: Option<StoredNode>,
    ) -> Result<Option<StoredNode>, TrieError> {
        if prefix.is_empty() {
            return Ok(node);
        }
        let inner_path = join(&path, &prefix).ok_or(TrieError::CorruptNode {
            path,
            reason: "key longer than 64 nibbles",
        })?;
        match node {
            None => {
                self.remove(inner_path);
                Ok(None)
            }
            Some(branch @ StoredNode::Branch { .. }) => {
                let child = self.place(inner_path, Some(branch)).unwrap_or_default();
                Ok(Some(StoredNode::Extension { key: prefix, child }))
            }
            Some(node) => {
                self.remove(inner_path);
                Ok(Some(prefixed(path, prefix, node)?))
            }
        }
    }

    /// Builds the subtree at `path` holding exactly `entries` (sorted, distinct, all under
    /// `path`), placing every node below `path`, and returns its top node.
    fn build(
        &mut self,
        path: Nibbles,
        entries: &[Entry<'_>],
    ) -> Result<Option<StoredNode>, TrieError> {
        let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
            return Ok(None);
        };
        if entries.len() == 1 {
            return Ok(Some(StoredNode::Leaf {
                key: first.0.slice(path.len()..),
                value: first.1.to_vec(),
            }));
        }
        let common = first.0.common_prefix_length(&last.0);
        if common >= KEY_NIBBLES {
            return Err(TrieError::CorruptNode {
                path,
                reason: "duplicate key in update",
            });
        }
        if common > path.len() {
            let branch_path = first.0.slice(..common);
            let branch = self.build_branch(branch_path, entries)?;
            return self.wrap(path, first.0.slice(path.len()..common), Some(branch));
        }
        self.build_branch(path, entries).map(Some)
    }

    /// A branch at `path` over `entries` (at least two, differing at nibble `path.len()`).
    fn build_branch(
        &mut self,
        path: Nibbles,
        entries: &[Entry<'_>],
    ) -> Result<StoredNode, TrieError> {
        let depth = path.len();
        let mut children: Box<[Option<RlpNode>; 16]> = Box::default();
        let mut rest = entries;
        while let Some((index, group)) = next_group(&mut rest, depth) {
            let mut child_path = path;
            child_path.push_unchecked(index);
            let child = self.build(child_path, group)?;
            children[usize::from(index)] = self.place(child_path, child);
        }
        Ok(StoredNode::Branch { children })
    }

    /// Turns the overlay into puts and deletes (each sorted), dropping writes that change
    /// nothing.
    #[allow(clippy::type_complexity)]
    fn finish(self) -> Result<(Vec<(Nibbles, StoredNode)>, Vec<Nibbles>), TrieError> {
        let mut puts = Vec::new();
        let mut deletes = Vec::new();
        for (path, node) in self.overlay {
            let original = match self.original.get(&path) {
                Some(original) => original.clone(),
                // Only paths this update created or vacated are unread; a vacated one has
                // nothing stored unless the store disagrees with its parents, so check.
                None if node.is_none() => self.reader.node(&path)?,
                None => None,
            };
            match node {
                Some(node) if original.as_ref() != Some(&node) => puts.push((path, node)),
                None if original.is_some() => deletes.push(path),
                _ => {}
            }
        }
        puts.sort_unstable_by_key(|(path, _)| *path);
        deletes.sort_unstable();
        Ok((puts, deletes))
    }
}

/// `prefix ‖ node` for a leaf or extension moving up from `path ‖ prefix` to `path`.
fn prefixed(path: Nibbles, prefix: Nibbles, node: StoredNode) -> Result<StoredNode, TrieError> {
    let too_long = TrieError::CorruptNode {
        path,
        reason: "key longer than 64 nibbles",
    };
    Ok(match node {
        StoredNode::Leaf { key, value } => StoredNode::Leaf {
            key: join(&prefix, &key).ok_or(too_long)?,
            value,
        },
        StoredNode::Extension { key, child } => StoredNode::Extension {
            key: join(&prefix, &key).ok_or(too_long)?,
            child,
        },
        branch @ StoredNode::Branch { .. } => branch,
    })
}

/// `a ‖ b`, or `None` if that exceeds a full key.
fn join(a: &Nibbles, b: &Nibbles) -> Option<Nibbles> {
    (a.len() + b.len() <= KEY_NIBBLES).then(|| a.join(b))
}

/// Splits off the leading run of `rest` (sorted by key) whose keys share the nibble at `depth`;
/// returns that nibble and the run.
fn next_group<'a, V>(
    rest: &mut &'a [(Nibbles, V)],
    depth: usize,
) -> Option<(u8, &'a [(Nibbles, V)])> {
    let (first, _) = rest.first()?;
    let index = first.get_unchecked(depth);
    let end = rest
        .iter()
        .position(|(k, _)| k.get_unchecked(depth) != index)
        .unwrap_or(rest.len());
    let (group, tail) = rest.split_at(end);
    *rest = tail;
    Some((index, group))
}
