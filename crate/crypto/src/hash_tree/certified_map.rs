//! A labeled subtree with many children that change a few at a time — the request statuses —
//! kept between rounds so that a change rehashes only its own path, not the whole subtree.
//!
//! The spec lets forks take any shape as long as labels stay in order. Here the children form a
//! binary trie over their 32-byte labels: a fork splits them at the first bit where they differ
//! (crit-bit), 0 to the left, so the left side's labels sort before the right side's. Inserting
//! or removing a child changes one path of about log2(n) forks.
//!
//! Nodes are shared (`Arc`): a clone of the map costs one pointer, and a change copies only the
//! nodes on its path that a clone still holds — so a replica can keep serving the certified
//! tree while it builds the next one.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{empty_hash, fork_hash, labeled_hash, HashTree, HashedTree, Wanted};

pub type MapKey = [u8; 32];

#[derive(Clone, Debug, Default)]
pub struct CertifiedMap {
    root: Option<Arc<Node>>,
    len: usize,
}

#[derive(Clone, Debug)]
enum Node {
    /// A labeled child; `digest` is the labeled digest.
    Leaf { key: MapKey, value: HashedTree, digest: [u8; 32] },
    /// Children whose labels agree on the bits before `bit`; `min` is the smallest label.
    Fork { bit: usize, min: MapKey, left: Arc<Node>, right: Arc<Node>, digest: [u8; 32] },
}

fn bit_of(key: &MapKey, i: usize) -> bool {
    (key[i / 8] >> (7 - i % 8)) & 1 == 1
}

/// The first bit (from the most significant of byte 0) where `a` and `b` differ.
fn crit_bit(a: &MapKey, b: &MapKey) -> Option<usize> {
    a.iter().zip(b).position(|(x, y)| x != y).map(|i| i * 8 + (a[i] ^ b[i]).leading_zeros() as usize)
}

impl Node {
    fn leaf(key: MapKey, value: HashedTree) -> Arc<Node> {
        let digest = labeled_hash(&key, &value.root_hash());
        Arc::new(Node::Leaf { key, value, digest })
    }

    fn fork(bit: usize, left: Arc<Node>, right: Arc<Node>) -> Arc<Node> {
        let digest = fork_hash(&left.digest(), &right.digest());
        Arc::new(Node::Fork { bit, min: *left.min(), left, right, digest })
    }

    fn digest(&self) -> [u8; 32] {
        match self {
            Node::Leaf { digest, .. } | Node::Fork { digest, .. } => *digest,
        }
    }

    fn min(&self) -> &MapKey {
        match self {
            Node::Leaf { key, .. } => key,
            Node::Fork { min, .. } => min,
        }
    }

    /// The label reached by following `key`'s bits: it shares the longest prefix with `key`.
    fn nearest(&self, key: &MapKey) -> &MapKey {
        match self {
            Node::Leaf { key, .. } => key,
            Node::Fork { bit, left, right, .. } => if bit_of(key, *bit) { right } else { left }.nearest(key),
        }
    }

    fn find(&self, key: &MapKey) -> Option<&HashedTree> {
        match self {
            Node::Leaf { key: k, value, .. } => (k == key).then_some(value),
            Node::Fork { bit, left, right, .. } => if bit_of(key, *bit) { right } else { left }.find(key),
        }
    }

    /// Puts `leaf` in place of the leaf with the same label, or as a new child splitting at
    /// `crit` (the label's first difference from its nearest one).
    fn insert(self: Arc<Node>, key: &MapKey, leaf: Arc<Node>, crit: Option<usize>) -> Arc<Node> {
        match Arc::unwrap_or_clone(self) {
            Node::Fork { bit, left, right, .. } if crit.is_none_or(|c| bit < c) => {
                if bit_of(key, bit) {
                    Node::fork(bit, left, right.insert(key, leaf, crit))
                } else {
                    Node::fork(bit, left.insert(key, leaf, crit), right)
                }
            }
            Node::Leaf { .. } if crit.is_none() => leaf,
            node => {
                let c = crit.expect("an equal label ends at its leaf");
                let node = Arc::new(node);
                if bit_of(key, c) {
                    Node::fork(c, node, leaf)
                } else {
                    Node::fork(c, leaf, node)
                }
            }
        }
    }

    /// The subtree without the label `key` (which is in it).
    fn remove(self: Arc<Node>, key: &MapKey) -> Option<Arc<Node>> {
        match Arc::unwrap_or_clone(self) {
            Node::Leaf { .. } => None,
            Node::Fork { bit, left, right, .. } => Some(if bit_of(key, bit) {
                match right.remove(key) {
                    Some(right) => Node::fork(bit, left, right),
                    None => left,
                }
            } else {
                match left.remove(key) {
                    Some(left) => Node::fork(bit, left, right),
                    None => right,
                }
            }),
        }
    }

    /// The greatest label below `label`. (Left labels sort before right ones.)
    fn before(&self, label: &[u8]) -> Option<&MapKey> {
        match self {
            Node::Leaf { key, .. } => (key.as_slice() < label).then_some(key),
            Node::Fork { left, right, .. } => {
                if right.min().as_slice() < label {
                    right.before(label)
                } else {
                    left.before(label)
                }
            }
        }
    }

    /// The least label above `label`.
    fn after(&self, label: &[u8]) -> Option<&MapKey> {
        match self {
            Node::Leaf { key, .. } => (key.as_slice() > label).then_some(key),
            Node::Fork { left, right, .. } => {
                if right.min().as_slice() > label {
                    left.after(label).or(Some(right.min()))
                } else {
                    right.after(label)
                }
            }
        }
    }

    /// The pruned tree showing the children in `shown`.
    fn reveal(&self, shown: &mut BTreeMap<MapKey, HashTree>) -> HashTree {
        match self {
            Node::Leaf { key, digest, .. } => shown.remove(key).unwrap_or(HashTree::Pruned(*digest)),
            Node::Fork { bit, min, left, right, digest } => {
                // Labels under this fork: `min`'s bits before `bit`, anything after.
                let (mut low, mut high) = (*min, *min);
                for i in *bit..256 {
                    let mask = 1u8 << (7 - i % 8);
                    low[i / 8] &= !mask;
                    high[i / 8] |= mask;
                }
                if shown.range(low..=high).next().is_none() {
                    return HashTree::Pruned(*digest);
                }
                HashTree::fork(left.reveal(shown), right.reveal(shown))
            }
        }
    }

    fn full(&self) -> HashTree {
        match self {
            Node::Leaf { key, value, .. } => HashTree::labeled(key.to_vec(), value.root.witness_of(&Wanted::All)),
            Node::Fork { left, right, .. } => HashTree::fork(left.full(), right.full()),
        }
    }
}

impl CertifiedMap {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Sets the child labeled `key` (adding or replacing it).
    pub fn insert(&mut self, key: MapKey, value: HashedTree) {
        let leaf = Node::leaf(key, value);
        self.root = Some(match self.root.take() {
            None => {
                self.len = 1;
                leaf
            }
            Some(root) => {
                let crit = crit_bit(root.nearest(&key), &key);
                if crit.is_some() {
                    self.len += 1;
                }
                root.insert(&key, leaf, crit)
            }
        });
    }

    /// Removes the child labeled `key`, if there is one.
    pub fn remove(&mut self, key: &MapKey) {
        if self.root.as_ref().is_some_and(|root| root.find(key).is_some()) {
            self.len -= 1;
            self.root = self.root.take().and_then(|root| root.remove(key));
        }
    }

    /// The digest of the subtree (`Empty`'s when there are no children).
    pub fn digest(&self) -> [u8; 32] {
        self.root.as_ref().map_or_else(empty_hash, |r| r.digest())
    }

    pub(super) fn full_tree(&self) -> HashTree {
        self.root.as_ref().map_or(HashTree::Empty, |r| r.full())
    }

    /// The witness for the wanted children; an absent label shows its neighbours' labels
    /// (contents pruned), which proves it absent.
    pub(super) fn witness(&self, wanted: &BTreeMap<Vec<u8>, Wanted>) -> HashTree {
        let Some(root) = &self.root else { return HashTree::Empty };
        let mut shown = BTreeMap::new();
        for (label, w) in wanted {
            let found = MapKey::try_from(label.as_slice()).ok().and_then(|k| Some((k, root.find(&k)?)));
            match found {
                Some((key, value)) => {
                    shown.insert(key, HashTree::labeled(label.clone(), value.root.witness_of(w)));
                }
                None => {
                    for key in root.before(label).into_iter().chain(root.after(label)) {
                        let value = root.find(key).expect("keys and trie agree");
                        shown.entry(*key).or_insert_with(|| HashTree::labeled(key.to_vec(), HashTree::Pruned(value.root_hash())));
                    }
                }
            }
        }
        root.reveal(&mut shown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash_tree::{lookup_path, LabeledTree, LookupResult};
    use std::sync::Arc;

    fn status(n: u8) -> LabeledTree {
        LabeledTree::SubTree([(b"status".to_vec(), LabeledTree::Leaf(vec![b'r', n]))].into_iter().collect())
    }

    fn key(seed: u32) -> MapKey {
        crate::sha256(&seed.to_be_bytes())
    }

    #[test]
    fn a_clone_keeps_its_contents_while_the_original_changes() {
        let mut map = CertifiedMap::new();
        for i in 0..100u32 {
            map.insert(key(i), HashedTree::new(&status(1)));
        }
        let kept = map.clone();
        let digest = kept.digest();
        for i in 50..150u32 {
            map.insert(key(i), HashedTree::new(&status(2)));
        }
        map.remove(&key(3));
        assert_eq!((kept.len(), kept.digest()), (100, digest), "the clone is untouched");
        assert_eq!(map.len(), 149);
        let mut fresh = CertifiedMap::new();
        for i in (0..150u32).filter(|i| *i != 3) {
            fresh.insert(key(i), HashedTree::new(&status(if i < 50 { 1 } else { 2 })));
        }
        assert_eq!(fresh.digest(), map.digest(), "the changed map hashes as if built afresh");
    }

    #[test]
    fn the_trie_certifies_what_it_holds_and_proves_absence() {
        let mut map = CertifiedMap::new();
        let mut model = BTreeMap::new();
        for i in 0..300u32 {
            map.insert(key(i), HashedTree::new(&status(i as u8)));
            model.insert(key(i), i as u8);
        }
        for i in (0..300u32).step_by(3) {
            map.remove(&key(i));
            model.remove(&key(i));
        }
        map.insert(key(1), HashedTree::new(&status(99)));
        model.insert(key(1), 99);
        map.remove(&key(5000)); // not there: no change
        assert_eq!(map.len(), model.len());

        let tree = LabeledTree::SubTree(
            [(b"request_status".to_vec(), LabeledTree::Map(Arc::new(map.clone())))].into_iter().collect(),
        );
        let full = tree.hash_tree();
        let root = full.digest();
        assert_eq!(tree.root_hash(), root);
        assert_eq!(HashedTree::new(&tree).root_hash(), root);

        for probe in [1u32, 2, 3, 299, 300, 5000] {
            let path = vec![b"request_status".to_vec(), key(probe).to_vec(), b"status".to_vec()];
            for witness in [tree.witness(&[path.clone()]), HashedTree::new(&tree).witness(&[path.clone()])] {
                assert_eq!(witness.digest(), root, "a witness keeps the root hash");
                let path: Vec<&[u8]> = path.iter().map(Vec::as_slice).collect();
                match (model.get(&key(probe)), lookup_path(&witness, &path)) {
                    (Some(n), LookupResult::Found(leaf)) => assert_eq!(leaf, &[b'r', *n][..]),
                    (None, LookupResult::Absent) => {}
                    (expected, got) => panic!("label {probe}: expected {expected:?}, got {got:?}"),
                }
            }
        }
    }

    #[test]
    fn an_empty_map_is_an_empty_subtree() {
        let map = CertifiedMap::new();
        let as_map = LabeledTree::Map(Arc::new(map));
        let as_subtree = LabeledTree::SubTree(BTreeMap::new());
        assert_eq!(as_map.root_hash(), as_subtree.root_hash());
        assert_eq!(as_map.hash_tree(), HashTree::Empty);
    }
}
