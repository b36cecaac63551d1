//! State sync, sans-IO: how a node too far behind to catch up by blocks gets the state at a
//! catch-up package's height from its peers.
//!
//! At every catch-up height each node turns its whole replicated state into one byte string
//! (the driver's encoding), a [`Checkpoint`]. Its [`Manifest`] lists the SHA-256 of each
//! fixed-size chunk; the manifest's hash goes into the catch-up package, which 2f+1 nodes sign.
//! A syncing node ([`StateSync`]) fetches the manifest, checks it against the package, then
//! fetches chunks from several peers at once, checks each against the manifest, and asks
//! another peer when one is silent or lies. The manifest is asked of every peer at once, and
//! chunks first of the peers that answered: a node that comes back to find most of its peers
//! gone does not wait out a timeout for each chunk it asked of them. Chunks it already holds
//! (from an earlier, abandoned sync) are not fetched again.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::artifact::{Cup, Hash, Height, NodeIndex, Time};

/// Chunk size of checkpoints (frames carry one chunk each).
pub const CHUNK_BYTES: usize = 1 << 20;
/// Requests in flight at once.
const PARALLEL: usize = 4;

/// What a checkpoint holds, chunk by chunk.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub height: Height,
    pub len: u64,
    pub chunk_bytes: u32,
    pub chunks: Vec<Hash>,
}

impl Manifest {
    pub fn of(height: Height, bytes: &[u8], chunk_bytes: usize) -> Self {
        let chunk_bytes = chunk_bytes.max(1);
        let chunks = bytes.chunks(chunk_bytes).map(|c| Sha256::digest(c).into()).collect();
        Manifest { height, len: bytes.len() as u64, chunk_bytes: chunk_bytes as u32, chunks }
    }

    /// The hash a catch-up package commits to.
    pub fn hash(&self) -> Hash {
        let mut h = Sha256::new();
        h.update(b"tabnet-state-manifest");
        h.update(self.height.to_be_bytes());
        h.update(self.len.to_be_bytes());
        h.update(self.chunk_bytes.to_be_bytes());
        for chunk in &self.chunks {
            h.update(chunk);
        }
        h.finalize().into()
    }

    /// Whether the chunk sizes add up to `len` (a manifest that matches its hash could still
    /// be a lie about sizes only if the hash was forged, but check before allocating).
    fn consistent(&self) -> bool {
        let size = u64::from(self.chunk_bytes.max(1));
        self.chunk_bytes > 0 && self.len.div_ceil(size) == self.chunks.len() as u64
    }

    fn chunk_len(&self, index: usize) -> usize {
        let size = self.chunk_bytes as u64;
        (self.len - index as u64 * size).min(size) as usize
    }
}

/// The state at one catch-up height, as this node serves it to syncing peers.
#[derive(Clone, Debug)]
pub struct Checkpoint {
    pub manifest: Manifest,
    bytes: Arc<Vec<u8>>,
}

impl Checkpoint {
    pub fn new(height: Height, bytes: Vec<u8>) -> Self {
        Self::with_chunk_bytes(height, bytes, CHUNK_BYTES)
    }
    pub fn with_chunk_bytes(height: Height, bytes: Vec<u8>, chunk_bytes: usize) -> Self {
        Checkpoint { manifest: Manifest::of(height, &bytes, chunk_bytes), bytes: Arc::new(bytes) }
    }
    pub fn height(&self) -> Height {
        self.manifest.height
    }
    pub fn hash(&self) -> Hash {
        self.manifest.hash()
    }
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The answer to a peer's request, if it asks for this checkpoint.
    pub fn answer(&self, request: &SyncMessage) -> Option<SyncMessage> {
        match *request {
            SyncMessage::ManifestRequest { height } if height == self.height() => Some(SyncMessage::Manifest(self.manifest.clone())),
            SyncMessage::ChunkRequest { height, index } if height == self.height() => {
                let size = self.manifest.chunk_bytes as usize;
                let chunk = self.bytes.chunks(size).nth(index as usize)?;
                Some(SyncMessage::Chunk { height, index, bytes: chunk.to_vec() })
            }
            _ => None,
        }
    }
}

/// What syncing nodes and the peers serving them say.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum SyncMessage {
    ManifestRequest { height: Height },
    Manifest(Manifest),
    ChunkRequest { height: Height, index: u32 },
    Chunk {
        height: Height,
        index: u32,
        #[serde(with = "serde_bytes")]
        bytes: Vec<u8>,
    },
    /// "I hold no checkpoint at that height" (the requester asks the next peer at once).
    Unavailable { height: Height, index: Option<u32> },
}

impl SyncMessage {
    pub fn is_request(&self) -> bool {
        matches!(self, SyncMessage::ManifestRequest { .. } | SyncMessage::ChunkRequest { .. })
    }

    /// The answer of a node that holds none of `checkpoints` at the requested height.
    pub fn answer_from<'a>(&self, checkpoints: impl IntoIterator<Item = &'a Checkpoint>) -> Option<SyncMessage> {
        let answer = checkpoints.into_iter().find_map(|c| c.answer(self));
        answer.or(match *self {
            SyncMessage::ManifestRequest { height } => Some(SyncMessage::Unavailable { height, index: None }),
            SyncMessage::ChunkRequest { height, index } => Some(SyncMessage::Unavailable { height, index: Some(index) }),
            _ => None,
        })
    }
}

/// What is being fetched: the manifest, or a chunk by index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Part {
    Manifest,
    Chunk(u32),
}

struct InFlight {
    peer: NodeIndex,
    deadline: Time,
    attempts: u32,
}

/// One node's fetch of the state a catch-up package names.
pub struct StateSync {
    cup: Arc<Cup>,
    peers: Vec<NodeIndex>,
    next_peer: usize,
    manifest: Option<Manifest>,
    chunks: Vec<Option<Vec<u8>>>,
    /// Chunks held from an earlier sync, by hash.
    spare: HashMap<Hash, Vec<u8>>,
    in_flight: BTreeMap<Part, InFlight>,
    outputs: VecDeque<(NodeIndex, SyncMessage)>,
    /// Chunks or manifests that failed their check, by peer (reported, and such peers are
    /// asked last).
    pub rejected: BTreeMap<NodeIndex, u32>,
    /// Requests that timed out since the peer last answered (such peers are asked late).
    silent: BTreeMap<NodeIndex, u32>,
    /// Peers that sent a manifest or a chunk (asked before those that never did).
    heard: BTreeSet<NodeIndex>,
    /// A request unanswered this long goes to the next peer (doubling per round of peers, to 8×).
    timeout: Time,
}

impl StateSync {
    /// Starts fetching the state of `cup` from `peers` (every node but this one); a request
    /// unanswered after `timeout` ms goes to another peer.
    pub fn new(now: Time, cup: Arc<Cup>, peers: Vec<NodeIndex>, timeout: Time) -> Self {
        let mut sync = Self::idle(cup, peers, timeout);
        sync.request_more(now);
        sync
    }

    fn idle(cup: Arc<Cup>, peers: Vec<NodeIndex>, timeout: Time) -> Self {
        StateSync {
            timeout,
            next_peer: cup.height() as usize % peers.len().max(1),
            cup,
            peers,
            manifest: None,
            chunks: Vec::new(),
            spare: HashMap::new(),
            in_flight: BTreeMap::new(),
            outputs: VecDeque::new(),
            rejected: BTreeMap::new(),
            silent: BTreeMap::new(),
            heard: BTreeSet::new(),
        }
    }

    /// Moves on to a newer package, keeping the chunks fetched so far for reuse.
    pub fn retarget(&mut self, now: Time, cup: Arc<Cup>) {
        let mut next = StateSync::idle(cup, std::mem::take(&mut self.peers), self.timeout);
        next.spare = std::mem::take(&mut self.spare);
        if let Some(m) = &self.manifest {
            for (hash, chunk) in m.chunks.iter().zip(self.chunks.drain(..)) {
                if let Some(bytes) = chunk {
                    next.spare.insert(*hash, bytes);
                }
            }
        }
        next.rejected = std::mem::take(&mut self.rejected);
        next.silent = std::mem::take(&mut self.silent);
        next.heard = std::mem::take(&mut self.heard);
        next.request_more(now);
        *self = next;
    }

    pub fn cup(&self) -> &Arc<Cup> {
        &self.cup
    }
    pub fn height(&self) -> Height {
        self.cup.height()
    }

    /// (chunks held, chunks in all); the total is unknown (0) until the manifest arrives.
    pub fn progress(&self) -> (usize, usize) {
        (self.chunks.iter().filter(|c| c.is_some()).count(), self.chunks.len())
    }

    /// Whether every chunk is here.
    pub fn is_complete(&self) -> bool {
        self.manifest.is_some() && self.chunks.iter().all(Option::is_some)
    }

    /// The state's bytes, once complete.
    pub fn into_bytes(self) -> Option<Vec<u8>> {
        if !self.is_complete() {
            return None;
        }
        Some(self.chunks.into_iter().flatten().flatten().collect())
    }

    pub fn poll(&mut self) -> Option<(NodeIndex, SyncMessage)> {
        self.outputs.pop_front()
    }

    pub fn next_wake(&self) -> Option<Time> {
        self.in_flight.values().map(|f| f.deadline).min()
    }

    pub fn on_message(&mut self, now: Time, from: NodeIndex, message: SyncMessage) {
        self.silent.remove(&from);
        if !matches!(message, SyncMessage::Unavailable { .. }) {
            self.heard.insert(from);
        }
        let height = self.height();
        match message {
            SyncMessage::Manifest(m) if m.height == height && self.manifest.is_none() => {
                if !self.in_flight.contains_key(&Part::Manifest) {
                    return;
                }
                if m.hash() != self.cup.checkpoint || !m.consistent() {
                    self.reject(now, from, Part::Manifest);
                    return;
                }
                self.in_flight.remove(&Part::Manifest);
                self.chunks = m.chunks.iter().map(|hash| self.spare.get(hash).cloned()).collect();
                self.spare.clear();
                self.manifest = Some(m);
            }
            SyncMessage::Chunk { height: h, index, bytes } if h == height => {
                let Some(m) = &self.manifest else { return };
                let i = index as usize;
                if i >= self.chunks.len() || self.chunks[i].is_some() || !self.in_flight.contains_key(&Part::Chunk(index)) {
                    return;
                }
                if bytes.len() != m.chunk_len(i) || <Hash>::from(Sha256::digest(&bytes)) != m.chunks[i] {
                    self.reject(now, from, Part::Chunk(index));
                    return;
                }
                self.in_flight.remove(&Part::Chunk(index));
                self.chunks[i] = Some(bytes);
            }
            SyncMessage::Unavailable { height: h, index } if h == height => {
                let part = index.map_or(Part::Manifest, Part::Chunk);
                // Next peer at once, unless every peer said so this round: then wait it out.
                let peers = self.peers.len() as u32;
                if self.in_flight.get(&part).is_some_and(|f| f.peer == from && (f.attempts + 1) % peers != 0) {
                    self.resend(now, part);
                }
            }
            _ => return,
        }
        self.request_more(now);
    }

    pub fn on_timer(&mut self, now: Time) {
        let late: Vec<Part> = self.in_flight.iter().filter(|(_, f)| f.deadline <= now).map(|(p, _)| *p).collect();
        for part in late {
            if let Some(f) = self.in_flight.get(&part) {
                *self.silent.entry(f.peer).or_default() += 1;
            }
            self.resend(now, part);
        }
    }

    /// A peer sent something that failed its check: ask someone else at once.
    fn reject(&mut self, now: Time, from: NodeIndex, part: Part) {
        *self.rejected.entry(from).or_default() += 1;
        if self.in_flight.get(&part).is_some_and(|f| f.peer == from) {
            self.resend(now, part);
        }
    }

    fn resend(&mut self, now: Time, part: Part) {
        let attempts = self.in_flight.get(&part).map_or(0, |f| f.attempts + 1);
        self.send(now, part, attempts);
    }

    fn request_more(&mut self, now: Time) {
        if self.manifest.is_none() {
            if self.in_flight.is_empty() {
                self.send(now, Part::Manifest, 0);
                // The others too (a small message): any peer's manifest is taken, and whoever
                // answers is there to be asked for chunks.
                let Some(asked) = self.in_flight.get(&Part::Manifest).map(|f| f.peer) else { return };
                let height = self.height();
                for peer in self.peers.iter().copied().filter(|p| *p != asked) {
                    self.outputs.push_back((peer, SyncMessage::ManifestRequest { height }));
                }
            }
            return;
        }
        let missing: Vec<u32> = (0..self.chunks.len() as u32)
            .filter(|i| self.chunks[*i as usize].is_none() && !self.in_flight.contains_key(&Part::Chunk(*i)))
            .take(PARALLEL.saturating_sub(self.in_flight.len()))
            .collect();
        for index in missing {
            self.send(now, Part::Chunk(index), 0);
        }
    }

    /// Asks the next peer in turn; peers that lied come last, before them peers that did not
    /// answer, and before them peers never heard from.
    fn send(&mut self, now: Time, part: Part, attempts: u32) {
        if self.peers.is_empty() {
            return;
        }
        let mut order: Vec<NodeIndex> = (0..self.peers.len()).map(|k| self.peers[(self.next_peer + k) % self.peers.len()]).collect();
        order.sort_by_key(|p| (self.rejected.get(p).copied().unwrap_or(0), self.silent.get(p).copied().unwrap_or(0), !self.heard.contains(p)));
        let peer = order[0];
        self.next_peer = (self.peers.iter().position(|p| *p == peer).unwrap_or(0) + 1) % self.peers.len();
        let rounds = attempts / self.peers.len() as u32;
        let deadline = now + self.timeout * (1 << rounds.min(3));
        self.in_flight.insert(part, InFlight { peer, deadline, attempts });
        let height = self.height();
        let message = match part {
            Part::Manifest => SyncMessage::ManifestRequest { height },
            Part::Chunk(index) => SyncMessage::ChunkRequest { height, index },
        };
        self.outputs.push_back((peer, message));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifact::{Beacon, Block};

    fn cup_for(checkpoint: &Checkpoint) -> Arc<Cup> {
        let mut block = Block::genesis(&[1; 32]);
        block.height = checkpoint.height();
        Arc::new(Cup { block, beacon: Beacon::genesis(&[1; 32]), state_hash: [2; 32], checkpoint: checkpoint.hash(), sig: [0; 48] })
    }

    /// Runs a sync against `servers` (peer → checkpoint it serves, possibly a wrong one).
    /// Returns the bytes, how many times each peer was caught lying and when it completed.
    fn sync(checkpoint: &Checkpoint, servers: &[(NodeIndex, Option<Checkpoint>)]) -> (Vec<u8>, BTreeMap<NodeIndex, u32>, Time) {
        let peers = servers.iter().map(|(p, _)| *p).collect();
        let mut s = StateSync::new(0, cup_for(checkpoint), peers, 2_000);
        let mut now = 0;
        for _ in 0..10_000 {
            while let Some((peer, request)) = s.poll() {
                let server = servers.iter().find(|(p, _)| *p == peer).unwrap().1.as_ref();
                if let Some(reply) = server.and_then(|c| c.answer(&request)) {
                    s.on_message(now, peer, reply);
                }
            }
            if s.is_complete() {
                break;
            }
            now = s.next_wake().expect("waiting for something");
            s.on_timer(now);
        }
        let rejected = s.rejected.clone();
        (s.into_bytes().expect("complete"), rejected, now)
    }

    #[test]
    fn the_peers_that_answer_are_asked_for_chunks_and_the_gone_ones_cost_no_timeout() {
        // Of three peers only the last is there; the first request in turn goes to a gone one.
        let state: Vec<u8> = (0..10_000u32).flat_map(|i| i.to_le_bytes()).collect();
        let good = Checkpoint::with_chunk_bytes(498, state.clone(), 999);
        let (bytes, _, done) = sync(&good, &[(1, None), (2, None), (3, Some(good.clone()))]);
        assert_eq!(bytes, state);
        assert_eq!(done, 0, "no request waited out its timeout");
    }

    #[test]
    fn a_state_arrives_whole_past_silent_and_lying_peers() {
        let state: Vec<u8> = (0..10_000u32).flat_map(|i| i.to_le_bytes()).collect();
        // Height 499: the first request goes to the second peer, the liar.
        let good = Checkpoint::with_chunk_bytes(499, state.clone(), 999);
        let mut forged = state.clone();
        forged[12_345] ^= 1;
        let liar = Checkpoint::with_chunk_bytes(499, forged, 999);
        assert_eq!(good.manifest.chunks.len(), 41);
        let (bytes, rejected, _) = sync(&good, &[(1, None), (2, Some(liar)), (3, Some(good.clone()))]);
        assert_eq!(bytes, state);
        // The liar's manifest differs from the one the package names: refused.
        assert!(rejected.get(&2).is_some_and(|n| *n >= 1));
    }

    #[test]
    fn a_lying_chunk_is_refused_and_fetched_elsewhere() {
        let state = vec![7u8; 5_000];
        let good = Checkpoint::with_chunk_bytes(10, state.clone(), 1_000);
        // Same manifest, but the chunks it serves are wrong.
        let bad = Checkpoint { manifest: good.manifest.clone(), bytes: Arc::new(vec![8u8; 5_000]) };
        let (bytes, rejected, _) = sync(&good, &[(1, Some(bad)), (2, Some(good.clone()))]);
        assert_eq!(bytes, state);
        assert!(rejected.get(&1).is_some_and(|n| *n >= 1));
    }

    #[test]
    fn a_sync_with_no_peers_waits_and_asks_no_one() {
        let good = Checkpoint::new(3, vec![1; 10]);
        let mut s = StateSync::new(0, cup_for(&good), Vec::new(), 2_000);
        assert!(s.poll().is_none() && !s.is_complete());
    }

    #[test]
    fn an_empty_state_syncs() {
        let good = Checkpoint::new(3, Vec::new());
        let (bytes, _, _) = sync(&good, &[(0, Some(good.clone()))]);
        assert!(bytes.is_empty());
    }

    #[test]
    fn a_newer_package_reuses_the_chunks_already_fetched() {
        let old = Checkpoint::with_chunk_bytes(10, vec![1u8; 4_000], 1_000);
        let mut s = StateSync::new(0, cup_for(&old), vec![1], 2_000);
        while let Some((_, r)) = s.poll() {
            let reply = old.answer(&r).unwrap();
            s.on_message(0, 1, reply);
        }
        assert!(s.is_complete());
        let mut newer = vec![1u8; 4_000];
        newer[3_500] = 2;
        let new = Checkpoint::with_chunk_bytes(20, newer.clone(), 1_000);
        s.retarget(0, cup_for(&new));
        let mut asked = Vec::new();
        while let Some((_, r)) = s.poll() {
            asked.push(r.clone());
            let reply = new.answer(&r).unwrap();
            s.on_message(0, 1, reply);
        }
        // The manifest and the one changed chunk.
        assert_eq!(asked.len(), 2);
        assert_eq!(s.into_bytes().unwrap(), newer);
    }
}
