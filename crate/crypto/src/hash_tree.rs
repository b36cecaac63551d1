//! The certification hash tree (IC interface spec, "Certification").
//!
//! [`LabeledTree`] is the replica's view of its whole state tree; [`HashTree`] is what goes into
//! a certificate: the full tree, or a witness that reveals some paths and prunes the rest while
//! keeping the same root hash. [`lookup_path`] is the spec's client-side lookup.

mod certified_map;

pub use certified_map::{CertifiedMap, MapKey};

use crate::sha256;
use ciborium::Value;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use std::sync::Arc;

const DOMAIN_EMPTY: &[u8] = b"\x11ic-hashtree-empty";
const DOMAIN_FORK: &[u8] = b"\x10ic-hashtree-fork";
const DOMAIN_LABELED: &[u8] = b"\x13ic-hashtree-labeled";
const DOMAIN_LEAF: &[u8] = b"\x10ic-hashtree-leaf";

/// A (possibly pruned) hash tree, as sent in certificates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HashTree {
    Empty,
    Fork(Box<HashTree>, Box<HashTree>),
    Labeled(Vec<u8>, Box<HashTree>),
    Leaf(Vec<u8>),
    Pruned([u8; 32]),
}

fn hash_parts(parts: &[&[u8]]) -> [u8; 32] {
    sha256(&parts.concat())
}

fn empty_hash() -> [u8; 32] {
    sha256(DOMAIN_EMPTY)
}

fn fork_hash(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
    hash_parts(&[DOMAIN_FORK, left, right])
}

fn labeled_hash(label: &[u8], subtree: &[u8; 32]) -> [u8; 32] {
    hash_parts(&[DOMAIN_LABELED, label, subtree])
}

fn leaf_hash(value: &[u8]) -> [u8; 32] {
    hash_parts(&[DOMAIN_LEAF, value])
}

impl HashTree {
    pub fn fork(left: HashTree, right: HashTree) -> Self {
        HashTree::Fork(Box::new(left), Box::new(right))
    }

    pub fn labeled(label: impl Into<Vec<u8>>, subtree: HashTree) -> Self {
        HashTree::Labeled(label.into(), Box::new(subtree))
    }

    pub fn leaf(value: impl Into<Vec<u8>>) -> Self {
        HashTree::Leaf(value.into())
    }

    /// The root hash this tree stands for ("reconstruct" in the spec).
    pub fn digest(&self) -> [u8; 32] {
        match self {
            HashTree::Empty => empty_hash(),
            HashTree::Fork(l, r) => fork_hash(&l.digest(), &r.digest()),
            HashTree::Labeled(label, t) => labeled_hash(label, &t.digest()),
            HashTree::Leaf(v) => leaf_hash(v),
            HashTree::Pruned(h) => *h,
        }
    }

    /// The CBOR form agents expect: `[0]`, `[1,l,r]`, `[2,label,t]`, `[3,value]`, `[4,hash]`.
    pub fn to_cbor_value(&self) -> Value {
        let tag = |n: u8| Value::Integer(n.into());
        match self {
            HashTree::Empty => Value::Array(vec![tag(0)]),
            HashTree::Fork(l, r) => {
                Value::Array(vec![tag(1), l.to_cbor_value(), r.to_cbor_value()])
            }
            HashTree::Labeled(label, t) => {
                Value::Array(vec![tag(2), Value::Bytes(label.clone()), t.to_cbor_value()])
            }
            HashTree::Leaf(v) => Value::Array(vec![tag(3), Value::Bytes(v.clone())]),
            HashTree::Pruned(h) => Value::Array(vec![tag(4), Value::Bytes(h.to_vec())]),
        }
    }

    /// Parses the CBOR form; rejects anything malformed.
    pub fn from_cbor_value(value: &Value) -> Result<Self, String> {
        let items = match value {
            Value::Array(items) if !items.is_empty() => items,
            _ => return Err("hash tree node must be a non-empty array".into()),
        };
        let kind = match &items[0] {
            Value::Integer(i) => u8::try_from(i128::from(*i)).ok(),
            _ => None,
        };
        let bytes = |v: &Value, what: &str| match v {
            Value::Bytes(b) => Ok(b.clone()),
            _ => Err(format!("hash tree {what} must be a byte string")),
        };
        match (kind, items.len()) {
            (Some(0), 1) => Ok(HashTree::Empty),
            (Some(1), 3) => Ok(HashTree::fork(
                Self::from_cbor_value(&items[1])?,
                Self::from_cbor_value(&items[2])?,
            )),
            (Some(2), 3) => Ok(HashTree::Labeled(
                bytes(&items[1], "label")?,
                Box::new(Self::from_cbor_value(&items[2])?),
            )),
            (Some(3), 2) => Ok(HashTree::Leaf(bytes(&items[1], "leaf")?)),
            (Some(4), 2) => {
                let h = bytes(&items[1], "pruned hash")?;
                let h: [u8; 32] = h
                    .try_into()
                    .map_err(|_| "pruned hash must be 32 bytes".to_string())?;
                Ok(HashTree::Pruned(h))
            }
            _ => Err("malformed hash tree node".into()),
        }
    }

    /// CBOR bytes of the tree (no tag; trees are embedded in certificates).
    pub fn to_cbor(&self) -> Vec<u8> {
        let mut out = Vec::new();
        ciborium::into_writer(&self.to_cbor_value(), &mut out)
            .expect("writing CBOR to a Vec cannot fail");
        out
    }

    pub fn from_cbor(bytes: &[u8]) -> Result<Self, String> {
        let value: Value =
            ciborium::from_reader(bytes).map_err(|e| format!("invalid CBOR: {e}"))?;
        Self::from_cbor_value(&value)
    }
}

impl Serialize for HashTree {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_cbor_value().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for HashTree {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        HashTree::from_cbor_value(&value).map_err(serde::de::Error::custom)
    }
}

/// The result of looking a path up in a (pruned) hash tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LookupResult<'a> {
    /// The path leads to this leaf value.
    Found(&'a [u8]),
    /// The tree proves that the path does not exist.
    Absent,
    /// The path was pruned: the tree says nothing about it.
    Unknown,
    /// The path leads to something that is not a leaf.
    Error,
}

/// The spec's `lookup_path`: follows `path` label by label.
pub fn lookup_path<'a>(tree: &'a HashTree, path: &[&[u8]]) -> LookupResult<'a> {
    let Some((label, rest)) = path.split_first() else {
        return match tree {
            HashTree::Empty => LookupResult::Absent,
            HashTree::Leaf(v) => LookupResult::Found(v),
            HashTree::Pruned(_) => LookupResult::Unknown,
            HashTree::Labeled(..) | HashTree::Fork(..) => LookupResult::Error,
        };
    };
    let mut nodes = Vec::new();
    flatten_forks(tree, &mut nodes);
    match find_label(label, &nodes) {
        Found::Subtree(t) => lookup_path(t, rest),
        Found::Absent => LookupResult::Absent,
        Found::Unknown => LookupResult::Unknown,
    }
}

fn flatten_forks<'a>(tree: &'a HashTree, out: &mut Vec<&'a HashTree>) {
    match tree {
        HashTree::Empty => {}
        HashTree::Fork(l, r) => {
            flatten_forks(l, out);
            flatten_forks(r, out);
        }
        t => out.push(t),
    }
}

enum Found<'a> {
    Subtree(&'a HashTree),
    Absent,
    Unknown,
}

/// The spec's `find_label` over the flattened children of a node.
fn find_label<'a>(label: &[u8], nodes: &[&'a HashTree]) -> Found<'a> {
    fn label_of(t: &HashTree) -> Option<&[u8]> {
        match t {
            HashTree::Labeled(l, _) => Some(l.as_slice()),
            _ => None,
        }
    }
    for node in nodes {
        if let HashTree::Labeled(l, t) = node {
            if l.as_slice() == label {
                return Found::Subtree(t);
            }
        }
    }
    match nodes {
        [] | [HashTree::Leaf(_)] => return Found::Absent,
        _ => {}
    }
    // Absent only if two *adjacent* labeled nodes (or an end of the list) bracket the label.
    if let Some(first) = label_of(nodes[0]) {
        if label < first {
            return Found::Absent;
        }
    }
    if let Some(last) = label_of(nodes[nodes.len() - 1]) {
        if last < label {
            return Found::Absent;
        }
    }
    for pair in nodes.windows(2) {
        if let (Some(l1), Some(l2)) = (label_of(pair[0]), label_of(pair[1])) {
            if l1 < label && label < l2 {
                return Found::Absent;
            }
        }
    }
    Found::Unknown
}

/// The replica's state tree: leaves hold values, subtrees map labels to children.
#[derive(Clone, Debug)]
pub enum LabeledTree {
    Leaf(Vec<u8>),
    SubTree(BTreeMap<Vec<u8>, LabeledTree>),
    /// A subtree kept hashed between rounds (see [`CertifiedMap`]).
    Map(Arc<CertifiedMap>),
}

impl LabeledTree {
    /// The full hash tree: a subtree's labeled children form a balanced binary tree of forks in
    /// label order; an empty subtree is `Empty`.
    pub fn hash_tree(&self) -> HashTree {
        match self {
            LabeledTree::Leaf(v) => HashTree::Leaf(v.clone()),
            LabeledTree::SubTree(children) => {
                let mut parts: Vec<Part> = children
                    .iter()
                    .map(|(label, child)| {
                        Part::Shown(HashTree::labeled(label.clone(), child.hash_tree()))
                    })
                    .collect();
                assemble(&mut parts)
            }
            LabeledTree::Map(map) => map.full_tree(),
        }
    }

    /// The root hash of [`Self::hash_tree`], computed without building it.
    pub fn root_hash(&self) -> [u8; 32] {
        match self {
            LabeledTree::Leaf(v) => leaf_hash(v),
            LabeledTree::SubTree(children) => {
                let hashes: Vec<[u8; 32]> = children
                    .iter()
                    .map(|(l, c)| labeled_hash(l, &c.root_hash()))
                    .collect();
                range_digest(&hashes)
            }
            LabeledTree::Map(map) => map.digest(),
        }
    }

    /// A pruned tree revealing exactly `paths` (a path ending at a subtree reveals all of it) and
    /// proving the absence of requested labels that do not exist. Same root hash as the full tree.
    pub fn witness(&self, paths: &[Vec<Vec<u8>>]) -> HashTree {
        let mut wanted = Wanted::Some(BTreeMap::new());
        for path in paths {
            wanted.add(path);
        }
        self.witness_of(&wanted)
    }

    fn witness_of(&self, wanted: &Wanted) -> HashTree {
        let wanted_children = match wanted {
            Wanted::All => return self.hash_tree(),
            Wanted::Some(w) => w,
        };
        let children = match self {
            // A path that runs past a leaf: reveal the leaf, which proves the rest absent.
            LabeledTree::Leaf(v) if !wanted_children.is_empty() => {
                return HashTree::Leaf(v.clone())
            }
            LabeledTree::Leaf(v) => return HashTree::Pruned(leaf_hash(v)),
            LabeledTree::Map(map) => return map.witness(wanted_children),
            LabeledTree::SubTree(children) => children,
        };
        let entries: Vec<(&Vec<u8>, &LabeledTree)> = children.iter().collect();
        let mut parts: Vec<Part> = entries
            .iter()
            .map(|(label, child)| match wanted_children.get(*label) {
                Some(w) => Part::Shown(HashTree::labeled((*label).clone(), child.witness_of(w))),
                None => Part::Hidden(labeled_hash(label, &child.root_hash())),
            })
            .collect();
        // Absent labels: reveal the neighbours (contents pruned) so that lookups say Absent.
        for label in wanted_children.keys() {
            if let Err(insert_at) = entries.binary_search_by(|(l, _)| l.as_slice().cmp(label)) {
                let neighbours = [insert_at.checked_sub(1), Some(insert_at)];
                for i in neighbours
                    .into_iter()
                    .flatten()
                    .filter(|&i| i < entries.len())
                {
                    if let Part::Hidden(_) = parts[i] {
                        let (l, child) = entries[i];
                        parts[i] = Part::Shown(HashTree::labeled(
                            l.clone(),
                            HashTree::Pruned(child.root_hash()),
                        ));
                    }
                }
            }
        }
        assemble(&mut parts)
    }
}

/// A [`LabeledTree`] with every digest computed once: the replica builds one per certified
/// state and cuts many witnesses from it, each in time proportional to what it reveals (times
/// the tree's depth) rather than to the size of the state.
#[derive(Clone, Debug)]
pub struct HashedTree {
    root: HashedNode,
}

#[derive(Clone, Debug)]
enum HashedNode {
    Leaf(Vec<u8>),
    Map(Arc<CertifiedMap>),
    SubTree { labels: Vec<Vec<u8>>, children: Vec<HashedNode>, forks: ForkRange },
}

/// The balanced fork tree over a run of labeled children, with the digest of every run.
#[derive(Clone, Debug)]
enum ForkRange {
    Empty,
    /// One labeled child: its index and its labeled digest.
    Child(usize, [u8; 32]),
    /// Children `start..end`.
    Fork { digest: [u8; 32], start: usize, end: usize, left: Box<ForkRange>, right: Box<ForkRange> },
}

impl ForkRange {
    /// The same shape as [`assemble`] and [`range_digest`]: split at `len / 2`.
    fn build(start: usize, digests: &[[u8; 32]]) -> Self {
        match digests {
            [] => ForkRange::Empty,
            [d] => ForkRange::Child(start, *d),
            _ => {
                let mid = split_point(digests.len());
                let (left, right) = (Self::build(start, &digests[..mid]), Self::build(start + mid, &digests[mid..]));
                let digest = fork_hash(&left.digest(), &right.digest());
                let end = start + digests.len();
                ForkRange::Fork { digest, start, end, left: Box::new(left), right: Box::new(right) }
            }
        }
    }

    fn digest(&self) -> [u8; 32] {
        match self {
            ForkRange::Empty => empty_hash(),
            ForkRange::Child(_, d) => *d,
            ForkRange::Fork { digest, .. } => *digest,
        }
    }

    /// The pruned fork tree showing the children in `shown` (index → tree), hiding the rest.
    fn reveal(&self, shown: &mut BTreeMap<usize, HashTree>) -> HashTree {
        match self {
            ForkRange::Empty => HashTree::Empty,
            ForkRange::Child(i, d) => shown.remove(i).unwrap_or(HashTree::Pruned(*d)),
            ForkRange::Fork { digest, start, end, left, right } => {
                if shown.range(*start..*end).next().is_none() {
                    return HashTree::Pruned(*digest);
                }
                HashTree::fork(left.reveal(shown), right.reveal(shown))
            }
        }
    }
}

impl HashedNode {
    fn new(tree: &LabeledTree) -> (Self, [u8; 32]) {
        match tree {
            LabeledTree::Leaf(v) => (HashedNode::Leaf(v.clone()), leaf_hash(v)),
            LabeledTree::Map(map) => (HashedNode::Map(map.clone()), map.digest()),
            LabeledTree::SubTree(map) => {
                let mut labels = Vec::with_capacity(map.len());
                let mut children = Vec::with_capacity(map.len());
                let mut digests = Vec::with_capacity(map.len());
                for (label, child) in map {
                    let (node, digest) = HashedNode::new(child);
                    digests.push(labeled_hash(label, &digest));
                    labels.push(label.clone());
                    children.push(node);
                }
                let forks = ForkRange::build(0, &digests);
                let digest = forks.digest();
                (HashedNode::SubTree { labels, children, forks }, digest)
            }
        }
    }

    fn digest(&self) -> [u8; 32] {
        match self {
            HashedNode::Leaf(v) => leaf_hash(v),
            HashedNode::Map(map) => map.digest(),
            HashedNode::SubTree { forks, .. } => forks.digest(),
        }
    }

    fn witness_of(&self, wanted: &Wanted) -> HashTree {
        let (labels, children, forks) = match (self, wanted) {
            (HashedNode::Leaf(v), Wanted::All) => return HashTree::Leaf(v.clone()),
            // A path that runs past a leaf: reveal the leaf, which proves the rest absent.
            (HashedNode::Leaf(v), Wanted::Some(w)) if !w.is_empty() => return HashTree::Leaf(v.clone()),
            (HashedNode::Leaf(v), _) => return HashTree::Pruned(leaf_hash(v)),
            (HashedNode::Map(map), Wanted::All) => return map.full_tree(),
            (HashedNode::Map(map), Wanted::Some(w)) => return map.witness(w),
            (HashedNode::SubTree { labels, children, forks }, _) => (labels, children, forks),
        };
        let mut shown = BTreeMap::new();
        match wanted {
            Wanted::All => {
                for (i, (label, child)) in labels.iter().zip(children).enumerate() {
                    shown.insert(i, HashTree::labeled(label.clone(), child.witness_of(&Wanted::All)));
                }
            }
            Wanted::Some(wanted_children) => {
                for (label, w) in wanted_children {
                    match labels.binary_search(label) {
                        Ok(i) => {
                            shown.insert(i, HashTree::labeled(label.clone(), children[i].witness_of(w)));
                        }
                        // Absent: reveal the neighbours (contents pruned) so that lookups say Absent.
                        Err(at) => {
                            for i in [at.checked_sub(1), Some(at)].into_iter().flatten().filter(|&i| i < labels.len()) {
                                shown
                                    .entry(i)
                                    .or_insert_with(|| HashTree::labeled(labels[i].clone(), HashTree::Pruned(children[i].digest())));
                            }
                        }
                    }
                }
            }
        }
        forks.reveal(&mut shown)
    }
}

impl HashedTree {
    pub fn new(tree: &LabeledTree) -> Self {
        Self { root: HashedNode::new(tree).0 }
    }

    pub fn root_hash(&self) -> [u8; 32] {
        self.root.digest()
    }

    /// As [`LabeledTree::witness`], from the cached digests.
    pub fn witness(&self, paths: &[Vec<Vec<u8>>]) -> HashTree {
        let mut wanted = Wanted::Some(BTreeMap::new());
        for path in paths {
            wanted.add(path);
        }
        self.root.witness_of(&wanted)
    }
}

/// Which parts of a tree a witness must reveal.
enum Wanted {
    All,
    Some(BTreeMap<Vec<u8>, Wanted>),
}

impl Wanted {
    fn add(&mut self, path: &[Vec<u8>]) {
        let Wanted::Some(children) = self else { return };
        match path.split_first() {
            None => *self = Wanted::All,
            Some((label, rest)) => children
                .entry(label.clone())
                .or_insert_with(|| Wanted::Some(BTreeMap::new()))
                .add(rest),
        }
    }
}

/// One labeled child of a subtree while building a (pruned) fork tree.
enum Part {
    Shown(HashTree),
    /// Digest of the labeled child, which is not revealed.
    Hidden([u8; 32]),
}

impl Part {
    fn digest(&self) -> [u8; 32] {
        match self {
            Part::Shown(t) => t.digest(),
            Part::Hidden(h) => *h,
        }
    }
}

/// Where a run of children splits into the left and right side of a fork. The full tree, the
/// witnesses and `root_hash` must all use the same shape.
fn split_point(len: usize) -> usize {
    len / 2
}

/// Builds the balanced fork tree over `parts`; runs with nothing shown become one `Pruned`.
fn assemble(parts: &mut [Part]) -> HashTree {
    if parts.is_empty() {
        return HashTree::Empty;
    }
    if parts.iter().all(|p| matches!(p, Part::Hidden(_))) {
        let hashes: Vec<[u8; 32]> = parts.iter().map(Part::digest).collect();
        return HashTree::Pruned(range_digest(&hashes));
    }
    if parts.len() == 1 {
        return match std::mem::replace(&mut parts[0], Part::Hidden([0; 32])) {
            Part::Shown(t) => t,
            Part::Hidden(_) => unreachable!("all-hidden runs are handled above"),
        };
    }
    let (left, right) = parts.split_at_mut(split_point(parts.len()));
    HashTree::fork(assemble(left), assemble(right))
}

/// The digest of the balanced fork tree over children with these digests.
fn range_digest(hashes: &[[u8; 32]]) -> [u8; 32] {
    match hashes {
        [] => empty_hash(),
        [h] => *h,
        _ => {
            let (left, right) = hashes.split_at(split_point(hashes.len()));
            fork_hash(&range_digest(left), &range_digest(right))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(v: &[u8]) -> LabeledTree {
        LabeledTree::Leaf(v.to_vec())
    }

    fn sub(children: Vec<(&[u8], LabeledTree)>) -> LabeledTree {
        LabeledTree::SubTree(children.into_iter().map(|(l, t)| (l.to_vec(), t)).collect())
    }

    fn path(labels: &[&[u8]]) -> Vec<Vec<u8>> {
        labels.iter().map(|l| l.to_vec()).collect()
    }

    /// A state tree shaped like the replica's: time, request_status, canister.
    fn state() -> LabeledTree {
        let statuses: Vec<(&[u8], LabeledTree)> = vec![
            (
                b"\x01id-a",
                sub(vec![
                    (b"status", leaf(b"replied")),
                    (b"reply", leaf(b"DIDL\x00\x00")),
                ]),
            ),
            (b"\x05id-c", sub(vec![(b"status", leaf(b"processing"))])),
            (
                b"\x09id-e",
                sub(vec![
                    (b"status", leaf(b"rejected")),
                    (b"reject_code", leaf(&[4])),
                ]),
            ),
            (b"\x0cid-g", sub(vec![(b"status", leaf(b"done"))])),
        ];
        sub(vec![
            (b"time", leaf(&[0x80, 0x80, 0x01])),
            (b"request_status", sub(statuses)),
            (
                b"canister",
                sub(vec![(b"c1", sub(vec![(b"certified_data", leaf(b"cd"))]))]),
            ),
            (b"subnet", sub(vec![])),
        ])
    }

    #[test]
    fn spec_example_tree_digest() {
        // The example of the IC interface spec ("Example" under "Certification encoding").
        let tree = HashTree::fork(
            HashTree::fork(
                HashTree::labeled(
                    "a",
                    HashTree::fork(
                        HashTree::fork(
                            HashTree::labeled("x", HashTree::leaf("hello")),
                            HashTree::Empty,
                        ),
                        HashTree::labeled("y", HashTree::leaf("world")),
                    ),
                ),
                HashTree::labeled("b", HashTree::leaf("good")),
            ),
            HashTree::fork(
                HashTree::labeled("c", HashTree::Empty),
                HashTree::labeled("d", HashTree::leaf("morning")),
            ),
        );
        assert_eq!(
            hex::encode(tree.digest()),
            "eb5c5b2195e62d996b84c9bcc8259d19a83786a2f59e0878cec84c811f669aa0"
        );
        let decoded = HashTree::from_cbor(&tree.to_cbor()).unwrap();
        assert_eq!(decoded, tree);
        assert_eq!(
            lookup_path(&tree, &[b"a", b"x"]),
            LookupResult::Found(b"hello")
        );
        assert_eq!(lookup_path(&tree, &[b"c"]), LookupResult::Absent);
        assert_eq!(lookup_path(&tree, &[b"a"]), LookupResult::Error);
        assert_eq!(lookup_path(&tree, &[b"aa"]), LookupResult::Absent);
        assert_eq!(lookup_path(&tree, &[b"e"]), LookupResult::Absent);
        assert_eq!(lookup_path(&tree, &[b"0"]), LookupResult::Absent);
    }

    #[test]
    fn cbor_form_is_what_agents_expect() {
        let tree = HashTree::fork(
            HashTree::labeled("a", HashTree::leaf("b")),
            HashTree::Pruned([7; 32]),
        );
        let bytes = tree.to_cbor();
        // [1, [2, h'61', [3, h'62']], [4, h'0707..']]
        let mut expected = hex::decode("830183024161820341628204").unwrap();
        expected.extend_from_slice(&hex::decode("5820").unwrap());
        expected.extend_from_slice(&[7; 32]);
        assert_eq!(bytes, expected);
        assert_eq!(HashTree::from_cbor(&bytes).unwrap(), tree);
        // Through serde, as when a tree is a field of a larger CBOR structure.
        let via_serde: HashTree = ciborium::from_reader(&bytes[..]).unwrap();
        assert_eq!(via_serde, tree);
        let mut reencoded = Vec::new();
        ciborium::into_writer(&tree, &mut reencoded).unwrap();
        assert_eq!(reencoded, bytes);
    }

    #[test]
    fn malformed_cbor_trees_are_rejected() {
        for bad in [
            "80",
            "8105",
            "820041",
            "82036161",
            "820443000000",
            "a0",
            "820143",
            "8300410a80",
        ] {
            assert!(
                HashTree::from_cbor(&hex::decode(bad).unwrap()).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn full_tree_and_root_hash_agree() {
        let state = state();
        let full = state.hash_tree();
        assert_eq!(full.digest(), state.root_hash());
        assert_eq!(
            lookup_path(&full, &[b"time"]),
            LookupResult::Found(&[0x80, 0x80, 0x01])
        );
        assert_eq!(lookup_path(&full, &[b"subnet", b"x"]), LookupResult::Absent);
        assert_eq!(
            lookup_path(&full, &[b"request_status", b"\x05id-c", b"status"]),
            LookupResult::Found(b"processing")
        );
        assert_eq!(
            LabeledTree::SubTree(BTreeMap::new()).hash_tree(),
            HashTree::Empty
        );
    }

    #[test]
    fn balanced_shape_for_many_children() {
        let children: BTreeMap<Vec<u8>, LabeledTree> = (0u16..37)
            .map(|i| (i.to_be_bytes().to_vec(), leaf(&i.to_le_bytes())))
            .collect();
        let tree = LabeledTree::SubTree(children);
        let full = tree.hash_tree();
        assert_eq!(full.digest(), tree.root_hash());
        fn depth(t: &HashTree) -> usize {
            match t {
                HashTree::Fork(l, r) => 1 + depth(l).max(depth(r)),
                _ => 0,
            }
        }
        assert_eq!(depth(&full), 6); // ceil(log2(37))
        for i in 0u16..37 {
            let label = i.to_be_bytes();
            assert_eq!(
                lookup_path(&full, &[&label]),
                LookupResult::Found(&i.to_le_bytes())
            );
        }
    }

    #[test]
    fn witness_reveals_requested_paths_and_keeps_root_hash() {
        let state = state();
        let w = state.witness(&[path(&[b"time"]), path(&[b"request_status", b"\x05id-c"])]);
        assert_eq!(w.digest(), state.root_hash());
        assert_eq!(
            lookup_path(&w, &[b"time"]),
            LookupResult::Found(&[0x80, 0x80, 0x01])
        );
        assert_eq!(
            lookup_path(&w, &[b"request_status", b"\x05id-c", b"status"]),
            LookupResult::Found(b"processing")
        );
        // Not requested: pruned.
        assert_eq!(
            lookup_path(&w, &[b"request_status", b"\x01id-a", b"status"]),
            LookupResult::Unknown
        );
        assert_eq!(
            lookup_path(&w, &[b"canister", b"c1", b"certified_data"]),
            LookupResult::Unknown
        );
        // Nothing was revealed beyond the requested subtree.
        let cbor = w.to_cbor();
        assert!(!cbor.windows(7).any(|win| win == b"replied"));
        assert!(!cbor.windows(2).any(|win| win == b"cd"));
    }

    #[test]
    fn witness_proves_absence() {
        let state = state();
        for missing in [&b"\x00first"[..], b"\x03id-b", b"\x0aid-f", b"\x0fid-z"] {
            let w = state.witness(&[path(&[b"request_status", missing, b"status"])]);
            assert_eq!(w.digest(), state.root_hash());
            assert_eq!(
                lookup_path(&w, &[b"request_status", missing, b"status"]),
                LookupResult::Absent,
                "{missing:?}"
            );
            assert_eq!(
                lookup_path(&w, &[b"request_status", missing]),
                LookupResult::Absent
            );
            // Neighbours' contents stay hidden.
            assert!(!w.to_cbor().windows(4).any(|win| win == b"done"));
        }
        // Absent at the top level, in an empty subtree, and past a leaf.
        let w = state.witness(&[
            path(&[b"nope"]),
            path(&[b"subnet", b"s"]),
            path(&[b"time", b"x"]),
        ]);
        assert_eq!(w.digest(), state.root_hash());
        assert_eq!(lookup_path(&w, &[b"nope"]), LookupResult::Absent);
        assert_eq!(lookup_path(&w, &[b"subnet", b"s"]), LookupResult::Absent);
        assert_eq!(lookup_path(&w, &[b"time", b"x"]), LookupResult::Absent);
        // A missing label under a missing label is absent too.
        let w = state.witness(&[path(&[b"canister", b"c0", b"certified_data"])]);
        assert_eq!(
            lookup_path(&w, &[b"canister", b"c0", b"certified_data"]),
            LookupResult::Absent
        );
        assert_eq!(
            lookup_path(&w, &[b"canister", b"c1", b"certified_data"]),
            LookupResult::Unknown
        );
    }

    #[test]
    fn witness_of_whole_tree_and_of_nothing() {
        let state = state();
        assert_eq!(state.witness(&[vec![]]), state.hash_tree());
        assert_eq!(state.witness(&[]), HashTree::Pruned(state.root_hash()));
        // A path ending at a subtree reveals all of it.
        let w = state.witness(&[path(&[b"request_status"])]);
        for id in [&b"\x01id-a"[..], b"\x05id-c", b"\x09id-e", b"\x0cid-g"] {
            assert!(matches!(
                lookup_path(&w, &[b"request_status", id, b"status"]),
                LookupResult::Found(_)
            ));
        }
        assert_eq!(lookup_path(&w, &[b"time"]), LookupResult::Unknown);
    }

    #[test]
    fn lookup_in_pruned_and_odd_trees() {
        let t = HashTree::Pruned([0; 32]);
        assert_eq!(lookup_path(&t, &[]), LookupResult::Unknown);
        assert_eq!(lookup_path(&t, &[b"a"]), LookupResult::Unknown);
        assert_eq!(lookup_path(&HashTree::Empty, &[]), LookupResult::Absent);
        // A pruned node between two labels hides whether the label exists.
        let t = HashTree::fork(
            HashTree::labeled("a", HashTree::Empty),
            HashTree::fork(
                HashTree::Pruned([1; 32]),
                HashTree::labeled("z", HashTree::Empty),
            ),
        );
        assert_eq!(lookup_path(&t, &[b"m"]), LookupResult::Unknown);
        assert_eq!(lookup_path(&t, &[b"0"]), LookupResult::Absent);
        assert_eq!(lookup_path(&t, &[b"zz"]), LookupResult::Absent);
    }

    #[test]
    fn hashed_tree_witnesses_equal_labeled_tree_witnesses() {
        let mut requests = BTreeMap::new();
        for i in 0u32..37 {
            let status = LabeledTree::SubTree(BTreeMap::from([
                (b"status".to_vec(), LabeledTree::Leaf(b"replied".to_vec())),
                (b"reply".to_vec(), LabeledTree::Leaf(i.to_be_bytes().to_vec())),
            ]));
            requests.insert((i * 2).to_be_bytes().to_vec(), status);
        }
        let tree = LabeledTree::SubTree(BTreeMap::from([
            (b"request_status".to_vec(), LabeledTree::SubTree(requests)),
            (b"time".to_vec(), LabeledTree::Leaf(vec![1, 2, 3])),
            (b"empty".to_vec(), LabeledTree::SubTree(BTreeMap::new())),
        ]));
        let hashed = HashedTree::new(&tree);
        assert_eq!(hashed.root_hash(), tree.root_hash());
        let l = |s: &str| s.as_bytes().to_vec();
        let cases: Vec<Vec<Vec<Vec<u8>>>> = vec![
            vec![vec![l("time")]],
            vec![vec![l("request_status"), 10u32.to_be_bytes().to_vec()]],
            vec![vec![l("request_status"), 11u32.to_be_bytes().to_vec(), l("status")], vec![l("time")]],
            vec![vec![l("request_status"), 0u32.to_be_bytes().to_vec(), l("reply")], vec![l("empty"), l("x")]],
            vec![vec![l("request_status")]],
            vec![vec![l("time"), l("past_a_leaf")], vec![l("zzz")]],
            vec![],
        ];
        for paths in cases {
            assert_eq!(hashed.witness(&paths), tree.witness(&paths), "paths {paths:?}");
        }
    }
}
