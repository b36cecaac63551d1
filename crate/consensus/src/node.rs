//! One consensus node: inputs in, [`Output`]s and a wake-up time out. The components (finalizer,
//! notary, beacon maker, block maker, certifier, CUP maker, validator, aggregator) each read the
//! pools and return [`Change`]s; the first that has something to do wins, its changes are
//! applied, and the loop runs again until none has anything left (as in the IC).

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::artifact::{Aggregate, Artifact, ArtifactId, Beacon, Block, Cup, Hash, Height, Ingress, Kind, NodeIndex, Proposal, Share, Sig, Time};
use crate::crypto::{faults_tolerated, threshold, Crypto};
use crate::limits::{PeerLimits, Rates, Verdict};
use crate::pool::{Change, Created, IngressPool, Pool};
use crate::state_sync::{Checkpoint, SyncMessage};

/// Protocol parameters (milliseconds and heights).
#[derive(Clone, Debug)]
pub struct Config {
    /// How much longer each rank waits than the one before it (mainnet app subnets: 1 s).
    pub unit_delay: Time,
    /// How long notaries wait before signing a rank-0 block (mainnet: 300 ms).
    pub initial_notary_delay: Time,
    /// Heights between catch-up packages (mainnet: 500).
    pub dkg_interval: Height,
    pub max_block_ingress: usize,
    pub max_block_bytes: usize,
    /// Artifacts more than this many heights ahead of the notarized height are dropped.
    pub max_ahead: Height,
    /// Notaries stop this many heights ahead of finalization (execution must keep up).
    pub max_notarization_gap: Height,
    /// Without progress for this long, a node re-sends its latest artifacts.
    pub rebroadcast_interval: Time,
    /// Send blocks without the ingress they include (the receiver has or fetches it).
    pub strip_blocks: bool,
    /// Artifacts larger than this are advertised instead of pushed.
    pub push_limit: usize,
    pub max_ingress_pool: usize,
    /// How far in the future a block's time may be.
    pub max_time_drift: Time,
    /// A block maker with no ingress to include waits this much longer before it proposes an
    /// empty block (an idle subnet then makes a few blocks a second instead of spinning).
    pub idle_block_delay: Time,
    /// Deliberate misbehaviour, for the simulator's Byzantine nodes.
    pub malice: Malice,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            unit_delay: 1_000,
            initial_notary_delay: 300,
            dkg_interval: 500,
            max_block_ingress: 1_000,
            max_block_bytes: 4 << 20,
            max_ahead: 10,
            max_notarization_gap: 10,
            rebroadcast_interval: 1_000,
            strip_blocks: true,
            push_limit: 1_024,
            max_ingress_pool: 50_000,
            max_time_drift: 10_000,
            idle_block_delay: 0,
            malice: Malice::default(),
        }
    }
}

/// What a Byzantine node does (like the IC replica's malicious flags). Its fields exist only
/// with the `byzantine` feature, which only the simulator turns on: in a node's build every
/// behaviour reads `false` and the code behind it folds away.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Malice {
    /// As a block maker, sign two different blocks: one to even peers, one to odd peers.
    #[cfg(feature = "byzantine")]
    pub equivocate: bool,
    /// Notarize and finalize every valid block it sees, whatever the rank.
    #[cfg(feature = "byzantine")]
    pub notarize_everything: bool,
    /// Spoil every signature it makes.
    #[cfg(feature = "byzantine")]
    pub corrupt_signatures: bool,
    /// As a block maker, propose blocks that each break one rule (repeated, finalized or
    /// expired ingress, too many messages or bytes, a bad signature, a wrong rank or time);
    /// it keeps finalized and expired ingress to do so.
    #[cfg(feature = "byzantine")]
    pub bad_blocks: bool,
}

macro_rules! behaviours {
    ($($name:ident),*) => {
        impl Malice {
            $(
                #[inline(always)]
                pub fn $name(&self) -> bool {
                    #[cfg(feature = "byzantine")]
                    return self.$name;
                    #[cfg(not(feature = "byzantine"))]
                    return false;
                }
            )*
        }
    };
}
behaviours!(equivocate, notarize_everything, corrupt_signatures, bad_blocks);

/// Reads and checks ingress messages for consensus.
pub trait IngressCheck: Send + Sync {
    /// The message's expiry (ms), or why it does not parse (of messages finalized blocks hold).
    fn expiry(&self, bytes: &[u8]) -> Result<Time, String>;
    /// Whether the message may enter the pool at `now` (ms), from a client or a peer: its size,
    /// its form, its sender's signature, its expiry within the window around `now`. Returns
    /// the expiry.
    fn admit(&self, now: Time, bytes: &[u8]) -> Result<Time, String>;
}

/// Ingress waiting for its check ([`IngressCheck::admit`]: a signature, too costly for the task
/// that drives consensus rounds). The driver runs [`UnverifiedIngress::verify`] where it likes
/// (natively on a bounded worker pool) and hands the result to
/// [`ConsensusNode::on_ingress_verified`].
#[derive(Debug)]
pub struct UnverifiedIngress {
    from: Option<NodeIndex>,
    ingress: Arc<Ingress>,
    at: Time,
}

/// The outcome of [`UnverifiedIngress::verify`] (only that makes one).
#[derive(Debug)]
pub struct VerifiedIngress {
    from: Option<NodeIndex>,
    ingress: Arc<Ingress>,
    expiry: Result<Time, String>,
    /// Refused for its form or signature, not only for its timing (a message that expired on
    /// its way is no fault of the peer that relayed it).
    forged: bool,
}

impl UnverifiedIngress {
    /// A client's message, submitted at `now`.
    pub fn from_client(now: Time, ingress: Ingress) -> Self {
        UnverifiedIngress { from: None, ingress: Arc::new(ingress), at: now }
    }

    /// The peer that sent it (`None`: a client of this node).
    pub fn sender(&self) -> Option<NodeIndex> {
        self.from
    }

    pub fn verify(self, check: &dyn IngressCheck) -> VerifiedIngress {
        let bytes = &self.ingress.bytes;
        let expiry = check.admit(self.at, bytes);
        // Checked again at its own expiry: if it passes there, only its timing was wrong.
        let forged = expiry.is_err() && check.expiry(bytes).map_or(true, |at| check.admit(at, bytes).is_err());
        VerifiedIngress { from: self.from, ingress: self.ingress, expiry, forged }
    }
}

impl VerifiedIngress {
    /// Its expiry, or why it was refused.
    pub fn result(&self) -> &Result<Time, String> {
        &self.expiry
    }
}

/// Where a node starts: genesis, its own last persisted height, or a catch-up package.
#[derive(Clone, Debug)]
pub struct Start {
    pub block: Block,
    pub beacon: Beacon,
    /// The state hash at that height (the driver's state must be the state after `block`).
    pub state_hash: Hash,
    /// What this node persisted ([`Output::Persist`]) and was not told to forget: what it
    /// signed (it must not sign anything contradicting it), the finalized blocks it can still
    /// prove and serve to peers behind it (with their beacons and finalizations, some perhaps
    /// above `block`: those are delivered again), and its latest catch-up package.
    pub persisted: Vec<Artifact>,
}

impl Start {
    pub fn genesis(subnet_seed: &Hash) -> Self {
        Start { block: Block::genesis(subnet_seed), beacon: Beacon::genesis(subnet_seed), state_hash: [0; 32], persisted: Vec::new() }
    }
}

/// What nodes say to each other.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Message {
    Push(Artifact),
    Advert(ArtifactId),
    Request(ArtifactId),
    /// "I have finalized up to here; send me what follows."
    CatchUpRequest { finalized: Height },
    CatchUp(Arc<CatchUp>),
    /// State sync: the driver answers and consumes these (see [`crate::state_sync`]).
    Sync(SyncMessage),
}

/// Finalized blocks (with their ingress) after the requester's height, proved by the last
/// one's finalization; then the notarized blocks above it with their notarizations, and the
/// beacons of all those heights (and the next, if made) — everything a node needs to take part
/// in the current round at once instead of chasing the subnet.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CatchUp {
    pub blocks: Vec<Arc<Proposal>>,
    pub finalization: Aggregate,
    pub notarized: Vec<(Arc<Proposal>, Aggregate)>,
    pub beacons: Vec<Beacon>,
    /// More finalized blocks follow than one message holds: ask again at once.
    pub more: bool,
}

/// A finalized block, ready to execute.
#[derive(Clone, Debug)]
pub struct Batch {
    pub height: Height,
    pub block: Block,
    /// The random beacon at this height (persist it with the state: a restart starts from it).
    pub beacon: Beacon,
    /// Randomness for execution: SHA-256 of the beacon.
    pub randomness: Hash,
    pub ingress: Vec<Arc<Ingress>>,
    /// A catch-up height: keep a [`crate::Checkpoint`] of the state after this batch, to serve
    /// to syncing peers, and pass its hash to [`ConsensusNode::on_executed`].
    pub checkpoint: bool,
}

#[derive(Debug)]
pub enum Output {
    /// To one peer, or to every peer (`None`).
    Send { to: Option<NodeIndex>, message: Message },
    /// Execute this, then call [`ConsensusNode::on_executed`].
    Deliver(Batch),
    /// Store this before sending or delivering anything after it; pass it back in
    /// [`Start::persisted`] until an [`Output::Forget`] covers its height.
    Persist(Artifact),
    /// What was persisted for heights below this is no longer needed.
    Forget(Height),
    /// The state hash at `height` is certified (threshold signature in `certification`).
    Certified { height: Height, state_hash: Hash, certification: Aggregate },
    /// A catch-up package beyond what this node can reach by blocks: its state must be
    /// fetched by state sync (the driver's job) and the node restarted from the package.
    StateSyncNeeded(Arc<Cup>),
    /// Check this off the consensus task, then call [`ConsensusNode::on_ingress_verified`].
    VerifyIngress(UnverifiedIngress),
}

/// Signatures made and checked (for the crypto-cost figure).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CryptoStats {
    pub signed: u64,
    pub verified_shares: u64,
    pub verified_aggregates: u64,
    pub verified_proposals: u64,
}

struct Pending {
    peers: Vec<NodeIndex>,
    attempts: u32,
    next_at: Time,
}

pub struct ConsensusNode {
    config: Config,
    crypto: Arc<dyn Crypto>,
    ingress_check: Arc<dyn IngressCheck>,
    me: NodeIndex,
    n: usize,
    f: usize,
    pool: Pool,
    ingress: IngressPool,
    /// Finalized (and delivered) blocks still held, by height.
    chain: BTreeMap<Height, Hash>,
    finalized_height: Height,
    /// Ingress in finalized blocks, with its expiry: never included again.
    finalized_ingress: HashMap<Hash, Time>,
    /// When each height's round began here (its parent notarized and its beacon known).
    round_start: BTreeMap<Height, Time>,
    /// State hashes of executed heights not yet certified.
    executed: BTreeMap<Height, Hash>,
    /// Checkpoint (state manifest) hashes at catch-up heights not yet in a package.
    checkpoints: BTreeMap<Height, Hash>,
    certified_height: Height,
    /// The catch-up package this node last started from or made.
    cup: Arc<Cup>,
    /// The lowest height whose artifacts are still held.
    base_height: Height,
    invalid: HashSet<Hash>,
    outputs: VecDeque<Output>,
    requests: BTreeMap<ArtifactId, Pending>,
    /// Pending fetches by the peer whose advert (or block) started them.
    fetching: HashMap<NodeIndex, usize>,
    /// When finality last moved here (rebroadcasts happen only once it has stalled).
    progressed_at: Time,
    /// When `on_timer` last ran: deadlines after it are still to be acted upon.
    timer_at: Time,
    next_rebroadcast: Time,
    last_catch_up_request: Option<Time>,
    /// Whom the last catch-up request went to, from which finalized height; and how many
    /// times a request was turned to another peer (see `request_catch_up`).
    catch_up_asked: Option<(NodeIndex, Height)>,
    catch_up_turn: usize,
    purged_at: (Height, Height),
    /// The highest finalized block persisted, and the height below which persisted artifacts
    /// were forgotten.
    persisted_height: Height,
    forgotten_below: Height,
    stats: Cell<CryptoStats>,
    /// The notarized height, until the validated pool changes.
    notarized_cache: Cell<Option<Height>>,
    /// The block-maker ranking of the last height asked about.
    ranking_cache: RefCell<Option<(Height, Vec<u32>)>>,
    /// Blocks refused, by reason (what a test asserts and an operator reads).
    rejected: RefCell<BTreeMap<&'static str, u64>>,
    /// Peers that sent an aggregate, catch-up package or catch-up whose signature does not
    /// verify: what they send of those is ignored until finality reaches the height given.
    penalized: BTreeMap<NodeIndex, Height>,
    /// When each peer was last sent a catch-up, and the height it reached.
    catch_up_served: BTreeMap<NodeIndex, (Time, Height)>,
    /// What each peer's requests may cost this node (answers, by their bytes).
    serving: PeerLimits,
    /// Ingress being verified, by id: who sent it (`None`: this node, for a block's payload).
    verifying: HashMap<Hash, Option<NodeIndex>>,
}

const FETCH_BACKOFF_MIN: Time = 250;
const FETCH_BACKOFF_MAX: Time = 60_000;
const FETCH_ATTEMPTS: u32 = 12;
const CATCH_UP_MAX_BLOCKS: usize = 500;
/// A catch-up message's payload stays well under the native transport's 16 MiB frame.
const CATCH_UP_MAX_BYTES: usize = 8 << 20;
/// How many heights finality must move before a peer that sent a bad signature is heard again
/// (honest peers check what they relay, so only a faulty one ever pays this).
pub const PENALTY_HEIGHTS: Height = 20;
/// A peer asking again for blocks it was sent already waits this long (ms) for an answer: one
/// request must not buy up to 8 MiB again and again. A follow-up from the top of what it was
/// sent is answered at once.
const CATCH_UP_REPEAT_INTERVAL: Time = 1_000;
/// Ingress messages of one peer being verified at once (a block's worth fetched, twice over).
pub const MAX_VERIFYING_PER_PEER: usize = 2_000;
/// Artifacts one peer's adverts may have this node fetching at once. A fetch takes a round trip,
/// so 500 at once carry thousands of advertised (large) messages a second; junk ids are asked
/// of every peer in turn until they are given up, and 2,000 of them from one flooder slowed a
/// 4-node native subnet's rounds for a minute (debug build; gossip_hostile.rs).
pub const MAX_FETCHES_PER_PEER: usize = 500;

impl ConsensusNode {
    pub fn new(config: Config, crypto: Arc<dyn Crypto>, ingress_check: Arc<dyn IngressCheck>, start: Start) -> Self {
        let (me, n) = (crypto.me(), crypto.nodes());
        let height = start.block.height;
        let hash = start.block.hash();
        let mut pool = Pool::default();
        // Finalized blocks persisted at and below the start: those that chain down from it.
        let mut below: HashMap<Hash, Arc<Proposal>> = HashMap::new();
        let mut cups: Vec<Arc<Cup>> = Vec::new();
        let mut aggregates: Vec<Aggregate> = Vec::new();
        for artifact in start.persisted {
            match artifact {
                Artifact::Proposal(p) if p.block.height > height => pool.apply(&Change::ValidateProposal(p)),
                Artifact::Proposal(p) => {
                    below.insert(p.block.hash(), p);
                }
                Artifact::Share(s) if s.height > height => pool.apply(&Change::ValidateShare(s)),
                Artifact::Aggregate(a) => aggregates.push(a),
                Artifact::Cup(c) => cups.push(c),
                _ => {}
            }
        }
        let base = below.remove(&hash).unwrap_or_else(|| Arc::new(Proposal { block: start.block.clone(), signature: [0; 64], payload: Some(Vec::new()) }));
        pool.validated.proposals.entry(height).or_default().insert(hash, base);
        let mut chain = BTreeMap::from([(height, hash)]);
        let mut parent = start.block.parent;
        for h in (0..height).rev() {
            let Some(p) = below.remove(&parent).filter(|p| p.block.height == h) else { break };
            parent = p.block.parent;
            chain.insert(h, p.block.hash());
            pool.validated.proposals.entry(h).or_default().insert(p.block.hash(), p);
        }
        let base_height = *chain.keys().next().expect("the start block");
        // What those blocks included may never be included again.
        let mut finalized_ingress = HashMap::new();
        for (h, hash) in &chain {
            let payload = pool.validated.proposal(*h, hash).and_then(|p| p.payload.as_ref());
            for ingress in payload.into_iter().flatten() {
                finalized_ingress.insert(ingress.id(), ingress_check.expiry(&ingress.bytes).unwrap_or(Time::MAX));
            }
        }
        // The starting block counts as notarized and finalized; its beacon as made.
        for kind in [Kind::Notarization, Kind::Finalization] {
            let trusted = Aggregate { kind, height, content: hash, signers: Vec::new(), sig: [0; 48] };
            pool.validated.aggregates.entry((kind, height)).or_default().insert(hash, trusted);
        }
        let beacon = Aggregate { kind: Kind::Beacon, height, content: start.beacon.parent, signers: Vec::new(), sig: start.beacon.sig };
        pool.validated.aggregates.entry((Kind::Beacon, height)).or_default().insert(beacon.content, beacon);
        // Beacons and finalizations of the persisted blocks (a real finalization replaces the
        // trusted one; one above the start finalizes blocks to deliver again).
        for a in aggregates {
            let keep = match a.kind {
                Kind::Beacon => a.height >= base_height,
                Kind::Finalization => !a.signers.is_empty() && (a.height > height || chain.get(&a.height) == Some(&a.content)),
                _ => false,
            };
            if keep {
                pool.validated.aggregates.entry((a.kind, a.height)).or_default().insert(a.content, a);
            }
        }
        let mut cup = Arc::new(Cup { block: start.block, beacon: start.beacon, state_hash: start.state_hash, checkpoint: [0; 32], sig: [0; 48] });
        // The latest catch-up package: served to peers too far behind; one beyond the start is
        // checked again (and state sync follows).
        if let Some(latest) = cups.into_iter().max_by_key(|c| c.height()) {
            if latest.height() > height {
                pool.unvalidated.cups.insert(latest.height(), latest);
            } else if chain.get(&latest.height()) == Some(&latest.block.hash()) {
                pool.validated.cups.insert(latest.height(), latest.clone());
                cup = latest;
            }
        }
        ConsensusNode {
            f: faults_tolerated(n),
            config,
            crypto,
            ingress_check,
            me,
            n,
            pool,
            ingress: IngressPool::default(),
            chain,
            finalized_height: height,
            finalized_ingress,
            round_start: BTreeMap::new(),
            executed: BTreeMap::new(),
            checkpoints: BTreeMap::new(),
            certified_height: height,
            persisted_height: height,
            forgotten_below: cup.height().min(base_height),
            cup,
            base_height,
            invalid: HashSet::new(),
            outputs: VecDeque::new(),
            requests: BTreeMap::new(),
            fetching: HashMap::new(),
            progressed_at: 0,
            timer_at: 0,
            next_rebroadcast: 0,
            last_catch_up_request: None,
            catch_up_asked: None,
            catch_up_turn: 0,
            purged_at: (height, height),
            stats: Cell::new(CryptoStats::default()),
            notarized_cache: Cell::new(None),
            ranking_cache: Default::default(),
            rejected: Default::default(),
            penalized: BTreeMap::new(),
            catch_up_served: BTreeMap::new(),
            serving: PeerLimits::new(Rates::REQUESTS, n, 0),
            verifying: HashMap::new(),
        }
    }

    // ----- what the driver reads -----

    pub fn me(&self) -> NodeIndex {
        self.me
    }
    pub fn finalized_height(&self) -> Height {
        self.finalized_height
    }
    pub fn finalized_hash(&self, height: Height) -> Option<Hash> {
        self.chain.get(&height).copied()
    }
    pub fn notarized_height(&self) -> Height {
        if let Some(h) = self.notarized_cache.get() {
            return h;
        }
        let h = self.find_notarized_height();
        self.notarized_cache.set(Some(h));
        h
    }
    fn find_notarized_height(&self) -> Height {
        self.pool
            .validated
            .proposals
            .iter()
            .rev()
            .find(|(h, blocks)| blocks.keys().any(|b| self.pool.validated.aggregate(Kind::Notarization, **h, b).is_some()))
            .map_or(self.finalized_height, |(h, _)| *h)
            // Finalized blocks count as notarized (catch-up brings them without notarizations).
            .max(self.finalized_height)
    }
    /// What the next height's round looks like here, for traces: the beacon tip, when the
    /// round began, this node's rank, the (rank, maker) of the blocks it holds for it, and the
    /// fetches pending.
    pub fn round_view(&self) -> String {
        let h = self.notarized_height() + 1;
        let blocks: Vec<(u32, NodeIndex)> = self.pool.validated.proposals_at(h).map(|(_, p)| (p.block.rank, p.block.maker)).collect();
        let parents = self.pool.validated.proposals_at(h - 1).filter(|(hash, _)| self.is_notarized(h - 1, hash)).count();
        format!(
            "height {h}: beacon tip {}, round began {:?}, my rank {:?}, blocks {blocks:?}, notarized parents {parents}, fetches {}",
            self.beacon_tip(),
            self.round_start.get(&h),
            self.rank(h, self.me),
            self.requests.len()
        )
    }

    /// This node's rank as block maker at `height` (0 makes the block everyone waits for),
    /// once the random beacon of the height before is known.
    pub fn rank_at(&self, height: Height) -> Option<u32> {
        self.rank(height, self.me)
    }

    /// When this node's round for `height` began (kept until the height is finalized).
    pub fn round_started(&self, height: Height) -> Option<Time> {
        self.round_start.get(&height).copied()
    }
    pub fn certified_height(&self) -> Height {
        self.certified_height
    }
    /// The random beacon of `height` held here (the simulator's live view ranks makers by it).
    pub fn beacon_at(&self, height: Height) -> Option<Beacon> {
        self.beacon(height)
    }
    /// The validated blocks at `height`, each with whether it is notarized and finalized here
    /// (the simulator's live view draws the block tree, forks included, from them).
    pub fn blocks_at(&self, height: Height) -> Vec<(&Block, bool, bool)> {
        self.pool
            .validated
            .proposals_at(height)
            .map(|(hash, p)| {
                let finalized = self.chain.get(&height) == Some(hash) || self.pool.validated.aggregate(Kind::Finalization, height, hash).is_some();
                (&p.block, finalized || self.is_notarized(height, hash), finalized)
            })
            .collect()
    }
    /// (Simulator) Changes how this node misbehaves from now on: the live view toggles it.
    #[cfg(feature = "byzantine")]
    pub fn set_malice(&mut self, malice: Malice) {
        self.config.malice = malice;
    }
    pub fn latest_cup(&self) -> &Arc<Cup> {
        &self.cup
    }
    pub fn ingress_pool_len(&self) -> usize {
        self.ingress.len()
    }
    /// Signatures this node made and checked so far.
    pub fn crypto_stats(&self) -> CryptoStats {
        self.stats.get()
    }
    /// Artifacts waiting in the unvalidated section (what a flood can grow).
    pub fn unvalidated_len(&self) -> usize {
        let u = &self.pool.unvalidated;
        u.proposals.values().map(|m| m.len()).sum::<usize>()
            + u.shares.values().flat_map(|g| g.values()).map(|s| s.len()).sum::<usize>()
            + u.aggregates.values().map(|m| m.len()).sum::<usize>()
            + u.cups.len()
    }

    /// Whether what `peer` sends of aggregates and catch-up packages is ignored for now.
    pub fn is_penalized(&self, peer: NodeIndex) -> bool {
        self.penalized.get(&peer).is_some_and(|until| self.finalized_height < *until)
    }

    /// `peer` sent something whose signature does not verify.
    fn charge(&mut self, peer: NodeIndex, why: &'static str) {
        if peer == self.me {
            return;
        }
        self.reject(why);
        self.penalized.insert(peer, self.finalized_height + PENALTY_HEIGHTS);
    }

    /// How many blocks this node refused, by reason.
    pub fn rejections(&self) -> BTreeMap<&'static str, u64> {
        self.rejected.borrow().clone()
    }
    fn reject(&self, why: &'static str) {
        *self.rejected.borrow_mut().entry(why).or_default() += 1;
    }
    fn count(&self, update: impl FnOnce(&mut CryptoStats)) {
        let mut stats = self.stats.get();
        update(&mut stats);
        self.stats.set(stats);
    }
    /// The next output to perform, in order.
    pub fn poll(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When the node next needs [`ConsensusNode::on_timer`], if ever; a time already past means
    /// at once.
    pub fn next_wake(&self, now: Time) -> Option<Time> {
        let mut times: Vec<Time> = self.requests.values().map(|p| p.next_at).collect();
        times.push(self.next_rebroadcast.max(self.progressed_at + self.config.rebroadcast_interval));
        let h = self.notarized_height() + 1;
        if let Some(start) = self.round_start.get(&h) {
            let gap = h - 1 - self.finalized_height;
            for rank in 0..=self.f as u32 {
                times.push(start + self.notary_delay(rank, gap));
                times.push(start + self.config.unit_delay * u64::from(rank));
            }
            if let Some(rank) = self.rank(h, self.me) {
                times.push(start + self.config.unit_delay * u64::from(rank) + self.config.idle_block_delay);
            }
        }
        // A deadline that passed while the driver was busy with messages (which may not run
        // the components: adverts and requests do not) is still due: it is returned, in the past,
        // until `on_timer` has run after it. Dropping it stalled a flooded node that was the
        // round's only block maker (gossip_hostile.rs).
        let _ = now;
        times.into_iter().filter(|t| *t > self.timer_at).min()
    }

    // ----- inputs -----

    /// An ingress message submitted here through the HTTP interface, checked here and now (a
    /// driver that keeps checks off its consensus task verifies
    /// [`UnverifiedIngress::from_client`] itself): pooled and gossiped.
    pub fn submit_ingress(&mut self, now: Time, ingress: Ingress) -> Result<Hash, String> {
        let verified = UnverifiedIngress::from_client(now, ingress).verify(&*self.ingress_check);
        self.on_ingress_verified(now, verified)
    }

    /// Ingress checked by [`UnverifiedIngress::verify`]: a client's is pooled and gossiped, a
    /// peer's pooled; one that does not verify is charged to the peer that sent it.
    pub fn on_ingress_verified(&mut self, now: Time, verified: VerifiedIngress) -> Result<Hash, String> {
        let VerifiedIngress { from, ingress, expiry, forged } = verified;
        let id = ingress.id();
        let awaited = self.verifying.remove(&id).is_some();
        let expiry = match expiry {
            Ok(expiry) => expiry,
            Err(e) => {
                if let Some(peer) = from.filter(|_| forged) {
                    self.charge(peer, "ingress that does not verify");
                }
                return Err(e);
            }
        };
        if self.finalized_ingress.contains_key(&id) || self.ingress.contains(&id) {
            return Ok(id);
        }
        if from.is_none() && !awaited && self.ingress.len() + self.verifying.len() >= self.config.max_ingress_pool {
            return Err("the ingress pool is full; try again later".into());
        }
        self.ingress.insert(id, ingress.clone(), expiry);
        if from.is_none() && !awaited {
            self.broadcast(Artifact::Ingress(ingress));
        }
        self.process(now);
        Ok(id)
    }

    pub fn on_message(&mut self, now: Time, from: NodeIndex, message: Message) {
        if from >= self.n || from == self.me {
            return;
        }
        match message {
            Message::Push(artifact) => {
                // Most pushes are copies of what this node already has: nothing to do.
                if !self.receive(now, from, artifact) {
                    return;
                }
            }
            // Adverts and requests change no pool: nothing for the components to do after them.
            Message::Advert(id) => {
                // What one peer's adverts make this node chase is bounded (junk ids are never found).
                if self.wants(&id) {
                    if !self.requests.contains_key(&id) && self.fetching.get(&from).is_some_and(|n| *n >= MAX_FETCHES_PER_PEER) {
                        self.reject("adverts beyond the peer's fetch share");
                    } else {
                        self.fetch(now, id, from);
                    }
                }
                return;
            }
            Message::Request(id) => return self.serve(now, from, id),
            Message::CatchUpRequest { finalized } => return self.serve_catch_up(now, from, finalized),
            Message::CatchUp(c) => self.apply_catch_up(now, from, &c),
            Message::Sync(_) => return,
        }
        self.process(now);
    }

    pub fn on_timer(&mut self, now: Time) {
        self.timer_at = self.timer_at.max(now);
        self.retry_fetches(now);
        if now >= self.next_rebroadcast && now >= self.progressed_at + self.config.rebroadcast_interval {
            self.rebroadcast();
            self.next_rebroadcast = now + self.config.rebroadcast_interval;
        }
        self.process(now);
    }

    /// The driver executed the batch at `height`; its state hash is `state_hash`, and the hash
    /// of its checkpoint `checkpoint` if the batch asked for one.
    pub fn on_executed(&mut self, now: Time, height: Height, state_hash: Hash, checkpoint: Option<Hash>) {
        if height > self.certified_height {
            self.executed.insert(height, state_hash);
        }
        if let Some(hash) = checkpoint.filter(|_| height > self.cup.height()) {
            self.checkpoints.insert(height, hash);
        }
        self.process(now);
    }

    /// Starts over from `start` (after state sync brought the state of a catch-up package),
    /// with the same configuration and keys.
    pub fn restart(&mut self, start: Start) {
        *self = ConsensusNode::new(self.config.clone(), self.crypto.clone(), self.ingress_check.clone(), start);
    }

    // ----- the component loop -----

    fn process(&mut self, now: Time) {
        // A catch-up may have brought finalized blocks that no component has work on.
        self.deliver_finalized(now);
        for _ in 0..10_000 {
            self.update_round(now);
            let changes = [
                Self::finalizer,
                Self::notary,
                Self::beacon_maker,
                Self::block_maker,
                Self::certifier,
                Self::cup_maker,
                Self::validator,
                Self::aggregator,
            ]
            .iter()
            .map(|component| component(self, now))
            .find(|changes| !changes.is_empty());
            let Some(changes) = changes else { break };
            for change in changes {
                self.apply(now, change);
            }
            self.deliver_finalized(now);
        }
        self.purge();
    }

    fn update_round(&mut self, now: Time) {
        let h = self.notarized_height() + 1;
        if !self.round_start.contains_key(&h) && self.beacon(h - 1).is_some() {
            self.round_start.insert(h, now);
        }
    }

    fn apply(&mut self, now: Time, change: Change) {
        let culprit = match &change {
            Change::RejectAggregate(kind, height, content) => self.pool.aggregate_senders.get(&(*kind, *height, *content)).map(|p| (*p, "aggregate with a bad signature")),
            Change::RejectCup(height) => self.pool.cup_senders.get(height).map(|p| (*p, "catch-up package with a bad signature")),
            _ => None,
        };
        if let Some((peer, why)) = culprit {
            self.charge(peer, why);
        }
        self.pool.apply(&change);
        self.notarized_cache.set(None);
        match change {
            Change::Create(created) => self.created(created),
            Change::Fetch(id, from) => self.fetch(now, id, from),
            Change::ValidateProposal(p) => {
                self.unrequest(&ArtifactId::Block(p.block.hash()));
                // Relay: a maker may have sent different blocks to different peers; everyone
                // must see both to disqualify it.
                self.send_proposal(None, &p);
            }
            Change::ValidateAggregate(a) if a.kind == Kind::Certification => self.certified(a),
            Change::ValidateCup(cup) => self.adopt_cup(cup),
            Change::DropProposal(_, hash) => {
                self.invalid.insert(hash);
            }
            _ => {}
        }
    }

    fn created(&mut self, created: Created) {
        if matches!(created, Created::Proposal(_) | Created::Share(_)) {
            self.count(|s| s.signed += 1);
        }
        match created {
            Created::Proposal(p) => {
                self.outputs.push_back(Output::Persist(Artifact::Proposal(p.clone())));
                if self.config.malice.equivocate() {
                    // Even peers got (or will get) the other block.
                    let parity = p.block.time % 2;
                    let (me, n) = (self.me, self.n);
                    for peer in (0..n).filter(|peer| *peer != me && (*peer as u64) % 2 == parity) {
                        self.send_proposal(Some(peer), &p);
                    }
                } else {
                    self.send_proposal(None, &p);
                }
            }
            Created::Share(s) => {
                if matches!(s.kind, Kind::Notarization | Kind::Finalization) {
                    self.outputs.push_back(Output::Persist(Artifact::Share(s.clone())));
                }
                self.broadcast(Artifact::Share(s));
            }
            Created::Aggregate(a) => {
                if a.kind == Kind::Certification {
                    self.certified(a.clone());
                }
                self.broadcast(Artifact::Aggregate(a));
            }
            Created::Cup(cup) => {
                self.adopt_cup(cup.clone());
                self.broadcast(Artifact::Cup(cup));
            }
        }
    }

    fn certified(&mut self, a: Aggregate) {
        if a.height > self.certified_height {
            self.certified_height = a.height;
            self.executed = self.executed.split_off(&(a.height + 1));
            self.outputs.push_back(Output::Certified { height: a.height, state_hash: a.content, certification: a });
        }
    }

    fn adopt_cup(&mut self, cup: Arc<Cup>) {
        if cup.height() <= self.cup.height() {
            return;
        }
        if cup.height() > self.finalized_height && !self.chain.contains_key(&cup.height()) {
            // Beyond our blocks: unless catch-up brings them, the driver must sync state.
            if self.pool.validated.proposal(cup.height(), &cup.block.hash()).is_none() {
                self.outputs.push_back(Output::StateSyncNeeded(cup.clone()));
            }
        }
        self.outputs.push_back(Output::Persist(Artifact::Cup(cup.clone())));
        self.cup = cup;
    }

    // ----- components -----

    /// Finalization-signs a notarized block if it is the only block this node notarized there.
    fn finalizer(&self, _now: Time) -> Vec<Change> {
        let v = &self.pool.validated;
        for h in self.finalized_height + 1..=self.notarized_height() {
            if !v.signed_by(Kind::Finalization, h, self.me).is_empty() {
                continue;
            }
            let signed = v.signed_by(Kind::Notarization, h, self.me);
            let notarized: Vec<Hash> = signed.iter().filter(|b| v.aggregate(Kind::Notarization, h, b).is_some()).copied().collect();
            if self.config.malice.notarize_everything() && !notarized.is_empty() {
                return notarized.iter().map(|b| self.share(Kind::Finalization, h, *b)).collect();
            }
            if signed.len() == 1 && notarized.len() == 1 {
                return vec![self.share(Kind::Finalization, h, notarized[0])];
            }
        }
        Vec::new()
    }

    /// Notarization-signs the lowest-ranked valid blocks whose notary delay has passed.
    fn notary(&self, now: Time) -> Vec<Change> {
        let h = self.notarized_height() + 1;
        let Some(start) = self.round_start.get(&h) else { return Vec::new() };
        if h > self.finalized_height + self.config.max_notarization_gap {
            return Vec::new();
        }
        let gap = h - 1 - self.finalized_height;
        let v = &self.pool.validated;
        // Having signed a finalization share here, this node had seen a block notarized and moved
        // on (a restart forgot that): it must never notarize another block at this height.
        if !v.signed_by(Kind::Finalization, h, self.me).is_empty() {
            return Vec::new();
        }
        let ready: Vec<(u32, Hash)> = v
            .proposals_at(h)
            .filter(|(_, p)| !self.pool.disqualified.contains(&(h, p.block.maker)))
            .filter(|(_, p)| now >= start + self.notary_delay(p.block.rank, gap))
            .map(|(hash, p)| (p.block.rank, *hash))
            .collect();
        let Some(lowest) = ready.iter().map(|(r, _)| *r).min() else { return Vec::new() };
        let signed = v.signed_by(Kind::Notarization, h, self.me);
        // A disqualified maker's block no longer binds its notaries to its rank (safety rests on
        // the finalization rule: whoever signed two blocks at a height finalizes neither).
        let signed_rank = |b: &Hash| {
            v.proposal(h, b).filter(|p| !self.pool.disqualified.contains(&(h, p.block.maker))).map_or(u32::MAX, |p| p.block.rank)
        };
        if !self.config.malice.notarize_everything() && signed.iter().any(|b| signed_rank(b) < lowest) {
            return Vec::new();
        }
        ready
            .iter()
            .filter(|(r, b)| (*r == lowest || self.config.malice.notarize_everything()) && !signed.contains(b))
            .map(|(_, b)| self.share(Kind::Notarization, h, *b))
            .collect()
    }

    /// Signs a beacon share for the height whose round has begun.
    fn beacon_maker(&self, _now: Time) -> Vec<Change> {
        let tip = self.beacon_tip();
        let h = tip + 1;
        if self.notarized_height() < tip || !self.pool.validated.signed_by(Kind::Beacon, h, self.me).is_empty() {
            return Vec::new();
        }
        let parent = self.beacon(tip).expect("the tip exists").hash();
        vec![self.share(Kind::Beacon, h, parent)]
    }

    /// Proposes a block when this node is a block maker of the round and its rank's time came.
    fn block_maker(&self, now: Time) -> Vec<Change> {
        let h = self.notarized_height() + 1;
        let Some(start) = self.round_start.get(&h) else { return Vec::new() };
        if h > self.finalized_height + self.config.max_notarization_gap {
            return Vec::new();
        }
        let Some(rank) = self.rank(h, self.me) else { return Vec::new() };
        let v = &self.pool.validated;
        if now < start + self.config.unit_delay * u64::from(rank)
            || v.proposals_at(h).any(|(_, p)| p.block.maker == self.me || (p.block.rank < rank && !self.pool.disqualified.contains(&(h, p.block.maker))))
        {
            return Vec::new();
        }
        let Some(parent) = v
            .proposals_at(h - 1)
            .filter(|(hash, _)| self.is_notarized(h - 1, hash))
            .min_by_key(|(hash, p)| (p.block.rank, **hash))
            .map(|(_, p)| p.clone())
        else {
            return Vec::new();
        };
        let time = now.max(parent.block.time + 1);
        let taken = self.ancestor_ingress(&parent.block);
        let (mut ids, mut payload, mut bytes) = (Vec::new(), Vec::new(), 0);
        for (id, ingress, expiry) in self.ingress.iter() {
            if ids.len() == self.config.max_block_ingress {
                break;
            }
            if expiry < time || taken.contains(id) || self.finalized_ingress.contains_key(id) || bytes + ingress.bytes.len() > self.config.max_block_bytes {
                continue;
            }
            bytes += ingress.bytes.len();
            ids.push(*id);
            payload.push(ingress.clone());
        }
        if ids.is_empty() && now < start + self.config.unit_delay * u64::from(rank) + self.config.idle_block_delay {
            return Vec::new();
        }
        let block = Block { parent: parent.block.hash(), height: h, rank, maker: self.me, time, ingress: ids };
        if self.config.malice.bad_blocks() {
            return vec![self.bad_block(block, payload, parent.block.time)];
        }
        let mut changes = vec![self.proposal(block.clone(), payload.clone())];
        if self.config.malice.equivocate() {
            let other = Block { time: time + 1, ..block };
            changes.push(self.proposal(other, payload));
        }
        changes
    }

    /// (Byzantine) a block that breaks one rule, taken in turn by height.
    fn bad_block(&self, mut block: Block, mut payload: Vec<Arc<Ingress>>, parent_time: Time) -> Change {
        let kept = |keep: &dyn Fn(&Hash, Time) -> bool| -> Vec<Hash> { self.ingress.iter().filter(|(id, _, e)| keep(id, *e)).map(|(id, _, _)| *id).take(3).collect() };
        let time = block.time;
        let fresh = |id: &Hash, expiry: Time| expiry >= time && !self.finalized_ingress.contains_key(id);
        // The ingress the bad block names instead of its own, if this node has what it takes.
        let variant = block.height % 9;
        let instead: Option<Vec<Hash>> = match variant {
            0 => block.ingress.first().map(|id| vec![*id, *id]),
            1 => Some(kept(&|id, _| self.finalized_ingress.contains_key(id))),
            2 => Some(kept(&|_, expiry| expiry < time)),
            3 => {
                let junk = |k: u64| -> Hash { Sha256::new().chain_update(block.hash()).chain_update(k.to_be_bytes()).finalize().into() };
                Some((0..=self.config.max_block_ingress as u64).map(junk).collect())
            }
            4 => {
                // Just over the byte limit, within the count limit.
                let (mut ids, mut bytes) = (Vec::new(), 0);
                for (id, i, _) in self.ingress.iter().filter(|(id, _, e)| fresh(id, *e)) {
                    if bytes > self.config.max_block_bytes {
                        break;
                    }
                    bytes += i.bytes.len();
                    ids.push(*id);
                }
                (bytes > self.config.max_block_bytes && ids.len() <= self.config.max_block_ingress).then_some(ids)
            }
            _ => None,
        };
        let mut bad_signature = false;
        match instead.filter(|ids| !ids.is_empty()) {
            Some(ids) => {
                payload = ids.iter().filter_map(|id| self.ingress.get(id).cloned()).collect();
                block.ingress = ids;
            }
            None => match variant {
                5 => block.rank += 1,
                6 => block.time = parent_time,
                _ => bad_signature = true,
            },
        }
        let mut signature = self.crypto.sign_proposal(&Proposal::signed_bytes(&block.hash()));
        if bad_signature {
            signature[0] ^= 1;
        }
        Change::Create(Created::Proposal(Arc::new(Proposal { block, signature, payload: Some(payload) })))
    }

    /// Signs a certification share for each executed height.
    fn certifier(&self, _now: Time) -> Vec<Change> {
        self.executed
            .iter()
            .filter(|(h, _)| self.pool.validated.signed_by(Kind::Certification, **h, self.me).is_empty())
            .map(|(h, state)| self.share(Kind::Certification, *h, *state))
            .take(1)
            .collect()
    }

    /// Signs a catch-up package share at each interval height once its state is certified.
    fn cup_maker(&self, _now: Time) -> Vec<Change> {
        let interval = self.config.dkg_interval.max(1);
        let h = self.certified_height / interval * interval;
        if h <= self.cup.height() || !self.pool.validated.signed_by(Kind::CatchUp, h, self.me).is_empty() {
            return Vec::new();
        }
        match self.cup_content(h) {
            Some(content) => vec![self.share(Kind::CatchUp, h, content)],
            None => Vec::new(),
        }
    }

    /// Checks unvalidated proposals, aggregates and catch-up packages whose dependencies are
    /// met; drops what is stale or invalid. Shares are checked by the aggregator, in batches.
    fn validator(&self, now: Time) -> Vec<Change> {
        let mut changes = Vec::new();
        let u = &self.pool.unvalidated;
        let notarized = self.notarized_height();
        for (&h, proposals) in &u.proposals {
            if h > notarized + 1 {
                break;
            }
            for (hash, p) in proposals {
                if h <= self.finalized_height {
                    changes.push(Change::DropProposal(h, *hash));
                    continue;
                }
                match self.check_proposal(now, p) {
                    Check::Valid(full) => changes.push(Change::ValidateProposal(full)),
                    Check::Invalid(why) => {
                        self.reject(why);
                        changes.push(Change::DropProposal(h, *hash));
                    }
                    Check::Missing(ids) => {
                        let from = self.pool.proposal_senders.get(hash).copied().unwrap_or(p.block.maker);
                        // (Not what is being verified: it is on its way.)
                        let verifying = |id: &ArtifactId| matches!(id, ArtifactId::Ingress(i) if self.verifying.contains_key(i));
                        changes.extend(ids.into_iter().filter(|id| !self.requests.contains_key(id) && !verifying(id)).map(|id| Change::Fetch(id, from)));
                    }
                    Check::Later => {}
                }
            }
        }
        for (&(kind, h), aggregates) in &u.aggregates {
            for (content, a) in aggregates {
                if self.is_stale(kind, h) || self.pool.validated.aggregate(kind, h, content).is_some() {
                    changes.push(Change::DropAggregate(kind, h, *content));
                    continue;
                }
                if kind == Kind::Beacon && (h != self.beacon_tip() + 1) {
                    continue;
                }
                if kind == Kind::Beacon && *content != self.beacon(h - 1).expect("tip").hash() {
                    changes.push(Change::DropAggregate(kind, h, *content));
                    continue;
                }
                if self.check_aggregate(a) {
                    changes.push(Change::ValidateAggregate(a.clone()));
                } else {
                    changes.push(Change::RejectAggregate(kind, h, *content));
                }
            }
        }
        for (&h, cup) in &u.cups {
            if h <= self.cup.height() {
                changes.push(Change::DropCup(h));
                continue;
            }
            self.count(|s| s.verified_aggregates += 1);
            let valid = self.crypto.verify_aggregate(Kind::CatchUp, &[], &Kind::CatchUp.message(h, &cup.hash()), &cup.sig);
            changes.push(if valid { Change::ValidateCup(cup.clone()) } else { Change::RejectCup(h) });
        }
        changes
    }

    /// Combines shares once a threshold of them agree; checks the result once, and only if
    /// that fails checks the shares one by one (so a height costs one verification per kind).
    fn aggregator(&self, _now: Time) -> Vec<Change> {
        for kind in Kind::ALL {
            let (lo, hi) = match kind {
                Kind::Beacon => (self.beacon_tip() + 1, self.beacon_tip() + 1),
                Kind::Notarization => (self.finalized_height + 1, self.notarized_height() + 1),
                Kind::Finalization => (self.finalized_height + 1, self.notarized_height()),
                Kind::Certification => (self.certified_height + 1, Height::MAX),
                Kind::CatchUp => (self.cup.height() + 1, self.certified_height),
            };
            if lo > hi {
                continue;
            }
            let needed = threshold(self.n, kind);
            let (v, u) = (&self.pool.validated, &self.pool.unvalidated);
            let heights: BTreeSet<Height> = [v, u].iter().flat_map(|s| s.shares.range((kind, lo)..=(kind, hi)).map(|((_, h), _)| *h)).collect();
            for h in heights {
                let empty = BTreeMap::new();
                let (vg, ug) = (v.share_groups(kind, h).unwrap_or(&empty), u.share_groups(kind, h).unwrap_or(&empty));
                let contents: BTreeSet<&Hash> = vg.keys().chain(ug.keys()).collect();
                for content in contents {
                    if v.aggregate(kind, h, content).is_some() || (kind == Kind::CatchUp && v.cups.contains_key(&h)) {
                        continue;
                    }
                    if kind == Kind::Beacon && *content != self.beacon(h - 1).expect("tip").hash() {
                        continue;
                    }
                    let checked = vg.get(content);
                    let unchecked = ug.get(content);
                    let count = checked.map_or(0, |s| s.len()) + unchecked.map_or(0, |s| s.iter().filter(|(i, _)| checked.is_none_or(|c| !c.contains_key(i))).count());
                    if count < needed {
                        continue;
                    }
                    // Own share first, then checked shares, then unchecked ones.
                    let mut chosen: Vec<(NodeIndex, Sig, bool)> = Vec::with_capacity(needed);
                    let mut ordered: Vec<(NodeIndex, Sig, bool)> = checked.into_iter().flatten().map(|(i, s)| (*i, *s, true)).collect();
                    ordered.sort_by_key(|(i, _, _)| (*i != self.me, *i));
                    ordered.extend(unchecked.into_iter().flatten().map(|(i, s)| (*i, *s, false)));
                    for entry in ordered {
                        if chosen.len() < needed && !chosen.iter().any(|(i, _, _)| *i == entry.0) {
                            chosen.push(entry);
                        }
                    }
                    let msg = kind.message(h, content);
                    let shares: Vec<(NodeIndex, Sig)> = chosen.iter().map(|(i, s, _)| (*i, *s)).collect();
                    let mut signers: Vec<NodeIndex> = shares.iter().map(|(i, _)| *i).collect();
                    signers.sort_unstable();
                    let combined = self.crypto.combine(kind, &msg, &shares);
                    self.count(|s| s.verified_aggregates += 1);
                    let is_multi = matches!(kind, Kind::Notarization | Kind::Finalization);
                    let named = if is_multi { signers } else { Vec::new() };
                    if let Some(sig) = combined.filter(|sig| self.crypto.verify_aggregate(kind, &named, &msg, sig)) {
                        let aggregate = Aggregate { kind, height: h, content: *content, signers: named, sig };
                        if kind == Kind::CatchUp {
                            match self.cup_from(&aggregate) {
                                Some(cup) => return vec![Change::Create(Created::Cup(Arc::new(cup)))],
                                None => continue,
                            }
                        }
                        return vec![Change::Create(Created::Aggregate(aggregate))];
                    }
                    // Someone's share is bad: check the unchecked ones singly.
                    if chosen.iter().all(|(_, _, checked)| *checked) {
                        continue;
                    }
                    return chosen
                        .iter()
                        .filter(|(_, _, checked)| !checked)
                        .map(|(i, sig, _)| {
                            let share = Share { kind, height: h, content: *content, signer: *i, sig: *sig };
                            self.count(|s| s.verified_shares += 1);
                            if self.crypto.verify_share(kind, *i, &msg, sig) {
                                Change::ValidateShare(share)
                            } else {
                                Change::DropShare(share)
                            }
                        })
                        .collect();
                }
            }
        }
        Vec::new()
    }

    /// Forgets what can no longer matter: runs after the component loop when finality or the
    /// catch-up package moved.
    fn purge(&mut self) {
        if self.purged_at == (self.finalized_height, self.cup.height()) {
            return;
        }
        self.purged_at = (self.finalized_height, self.cup.height());
        let f = self.finalized_height;
        for kind in [Kind::Notarization, Kind::Finalization] {
            self.pool.apply(&Change::PurgeKindBelow(kind, f + 1));
        }
        self.pool.apply(&Change::PurgeKindBelow(Kind::Beacon, self.beacon_tip() + 1));
        self.pool.apply(&Change::PurgeKindBelow(Kind::Certification, self.certified_height + 1));
        let stale: Vec<(Height, Hash)> =
            self.pool.unvalidated.proposals.range(..=f).flat_map(|(h, m)| m.keys().map(move |k| (*h, *k))).collect();
        for (h, hash) in stale {
            self.pool.apply(&Change::DropProposal(h, hash));
        }
        self.round_start = self.round_start.split_off(&(f + 1));
        self.checkpoints = self.checkpoints.split_off(&(self.cup.height() + 1));
        // Ingress: block times only grow, so what expired before the finalized block's time
        // can never be included again.
        let time = self.finalized_time();
        if !self.config.malice.bad_blocks() {
            self.ingress.remove_expired(time);
        }
        self.finalized_ingress.retain(|_, expiry| *expiry >= time);
        // On disk, what a restart needs: from the newest catch-up package (or the finalized
        // height, if that is still below it) up.
        let forget = self.cup.height().min(f);
        if forget > self.forgotten_below {
            self.forgotten_below = forget;
            self.outputs.push_back(Output::Forget(forget));
        }
        // Keep one interval behind the newest catch-up package, for nodes catching up by blocks.
        let keep_from = self.cup.height().saturating_sub(self.config.dkg_interval).max(self.base_height);
        if keep_from > self.base_height && keep_from <= f {
            self.pool.apply(&Change::PurgeBelow(keep_from));
            self.notarized_cache.set(None);
            self.chain = self.chain.split_off(&keep_from);
            self.base_height = keep_from;
        }
        if self.invalid.len() > 10_000 {
            self.invalid.clear();
        }
    }

    // ----- finality and delivery -----

    /// Delivers, in order, every block a validated finalization proves (with its ancestors).
    fn deliver_finalized(&mut self, now: Time) {
        let v = &self.pool.validated;
        let Some(top) = v
            .aggregates
            .range((Kind::Finalization, self.finalized_height + 1)..=(Kind::Finalization, Height::MAX))
            .rev()
            .flat_map(|((_, h), m)| m.keys().map(move |b| (*h, *b)))
            .find(|(h, b)| v.proposal(*h, b).is_some())
        else {
            return;
        };
        let mut blocks = Vec::new();
        let (mut h, mut hash) = top;
        while h > self.finalized_height {
            let Some(p) = v.proposal(h, &hash) else { return };
            blocks.push(p.clone());
            hash = p.block.parent;
            h -= 1;
        }
        if Some(&hash) != self.chain.get(&self.finalized_height) {
            return;
        }
        // Kept before any of them is delivered: after a crash, the node can again prove these
        // blocks to peers behind it (in a whole-subnet restart no one else may hold them), and
        // deliver those it had not executed.
        if top.0 > self.persisted_height {
            let finalization = v.aggregate(Kind::Finalization, top.0, &top.1).cloned().expect("found above");
            for p in blocks.iter().rev().filter(|p| p.block.height > self.persisted_height) {
                self.outputs.push_back(Output::Persist(Artifact::Proposal(p.clone())));
            }
            self.outputs.push_back(Output::Persist(Artifact::Aggregate(finalization)));
            self.persisted_height = top.0;
        }
        for p in blocks.into_iter().rev() {
            let h = p.block.height;
            let Some(beacon) = self.pool.validated.aggregates_at(Kind::Beacon, h).next().cloned() else { return };
            self.outputs.push_back(Output::Persist(Artifact::Aggregate(beacon.clone())));
            let beacon = Beacon::from(&beacon);
            let ingress = p.payload.clone().unwrap_or_default();
            for (id, i) in p.block.ingress.iter().zip(&ingress) {
                // The pool knows the expiry; only blocks that came by catch-up need it read again.
                let expiry = match self.ingress.entry(id) {
                    Some((_, expiry)) => expiry,
                    None => self.ingress_check.expiry(&i.bytes).unwrap_or(Time::MAX),
                };
                if !self.config.malice.bad_blocks() {
                    self.ingress.remove(id);
                }
                self.unrequest(&ArtifactId::Ingress(*id));
                self.finalized_ingress.insert(*id, expiry);
            }
            self.chain.insert(h, p.block.hash());
            self.finalized_height = h;
            self.progressed_at = now;
            let randomness = Sha256::digest(beacon.hash()).into();
            let checkpoint = h % self.config.dkg_interval.max(1) == 0;
            self.outputs.push_back(Output::Deliver(Batch { height: h, block: p.block.clone(), beacon, randomness, ingress, checkpoint }));
        }
    }

    // ----- gossip -----

    /// Small artifacts are pushed; big ones (ingress over `push_limit`) advertised.
    fn broadcast(&mut self, artifact: Artifact) {
        let artifact = self.maybe_corrupt(artifact);
        let message = match artifact.id() {
            Some(id) if artifact.wire_size() > self.config.push_limit => Message::Advert(id),
            _ => Message::Push(artifact),
        };
        self.outputs.push_back(Output::Send { to: None, message });
    }

    /// Proposals are latency-critical: pushed whole, whatever their size (stripped of their
    /// ingress unless configured otherwise).
    fn send_proposal(&mut self, to: Option<NodeIndex>, p: &Arc<Proposal>) {
        let wire = if self.config.strip_blocks { Arc::new(p.stripped()) } else { p.clone() };
        self.outputs.push_back(Output::Send { to, message: Message::Push(Artifact::Proposal(wire)) });
    }

    fn maybe_corrupt(&self, artifact: Artifact) -> Artifact {
        if !self.config.malice.corrupt_signatures() {
            return artifact;
        }
        match artifact {
            Artifact::Share(mut s) => {
                s.sig[7] ^= 0x55;
                Artifact::Share(s)
            }
            Artifact::Aggregate(mut a) => {
                a.sig[7] ^= 0x55;
                Artifact::Aggregate(a)
            }
            other => other,
        }
    }

    /// The bouncer: keeps what may still matter, drops the rest. Returns whether the pools
    /// changed.
    fn receive(&mut self, now: Time, from: NodeIndex, artifact: Artifact) -> bool {
        let notarized = self.notarized_height();
        let max_ahead = self.config.max_ahead;
        let too_far = |h: Height| h > notarized + max_ahead;
        match artifact {
            Artifact::Ingress(ingress) => self.take_ingress(now, from, ingress, false),
            Artifact::Proposal(p) => {
                let (h, hash) = (p.block.height, p.block.hash());
                self.unrequest(&ArtifactId::Block(hash));
                if h <= self.finalized_height || too_far(h) || self.invalid.contains(&hash) || p.block.maker >= self.n {
                    return false;
                }
                if self.pool.validated.proposal(h, &hash).is_some() || self.pool.unvalidated.proposal(h, &hash).is_some() {
                    return false;
                }
                // Two blocks of one maker at a height prove equivocation; more are only load.
                if self.pool.unvalidated.proposals_at(h).filter(|(_, q)| q.block.maker == p.block.maker).count() >= 2 {
                    return false;
                }
                // The maker's signature (Ed25519, cheap) is checked at once, so that junk in an
                // honest maker's name never takes the place of its block.
                self.count(|s| s.verified_proposals += 1);
                if !self.crypto.verify_proposal(p.block.maker, &Proposal::signed_bytes(&hash), &p.signature) {
                    self.reject("bad maker signature");
                    self.invalid.insert(hash);
                    return false;
                }
                if let Some(payload) = &p.payload {
                    for ingress in payload {
                        self.take_ingress(now, from, ingress.clone(), true);
                    }
                }
                let stripped = Arc::new(p.stripped());
                self.pool.unvalidated.proposals.entry(h).or_default().insert(hash, stripped);
                self.pool.proposal_senders.insert(hash, from);
                true
            }
            Artifact::Share(s) => {
                // Shares come straight from their signers (nobody relays another's): junk in an
                // honest node's name cannot fill the slots its real shares need.
                if s.signer != from || self.is_stale(s.kind, s.height) || too_far(s.height) {
                    return false;
                }
                if self.pool.validated.has_share(&s) || self.pool.validated.aggregate(s.kind, s.height, &s.content).is_some() {
                    return false;
                }
                // An honest node signs at most f+1 contents of a kind per height (one per rank).
                let u = &mut self.pool.unvalidated;
                if u.signed_by(s.kind, s.height, s.signer).len() > self.f + 1 {
                    return false;
                }
                let signers = u.shares.entry((s.kind, s.height)).or_default().entry(s.content).or_default();
                signers.insert(s.signer, s.sig) != Some(s.sig)
            }
            Artifact::Aggregate(a) => {
                if self.is_penalized(from) || self.is_stale(a.kind, a.height) {
                    return false;
                }
                // A finalization this node holds already but has not delivered (it is above the
                // finalized height): it lacks that block or one below it. After a whole-subnet
                // restart it may hold the finalization it made before the crash but not the block
                // (others' blocks are not persisted), and the block's maker, past that height,
                // sends it no more: the peer re-sending the finalization is asked to catch it up,
                // as often as it re-sends (a request lost while links came up stalled the subnet
                // for good).
                let held = self.pool.validated.aggregate(a.kind, a.height, &a.content).is_some();
                // A finalization beyond the next height, or of a block this node has not seen (a
                // peer that restarted holds it, and pushes it no more): catch up from its sender.
                // So does a beacon beyond the next (this node lacks one between).
                let unseen = |a: &Aggregate| [&self.pool.validated, &self.pool.unvalidated].iter().all(|s| s.proposal(a.height, &a.content).is_none());
                let behind = match a.kind {
                    Kind::Finalization => held || a.height > notarized + 1 || unseen(&a),
                    Kind::Beacon => !held && a.height > self.beacon_tip() + 1,
                    _ => false,
                };
                // Whom to ask is the sender's word: checked first (at most once per catch-up
                // interval), so junk from far ahead cannot steer this node's catch-up to a peer
                // that never answers. (One held was checked when it came.)
                if behind && self.may_request_catch_up(now) {
                    if !held && !self.check_aggregate(&a) {
                        self.charge(from, "aggregate with a bad signature");
                        return false;
                    }
                    self.request_catch_up(now, from);
                }
                if held || too_far(a.height) {
                    return false;
                }
                // Honest nodes make at most one aggregate per rank of a kind and height; beacons
                // of heights ahead wait here unchecked, so junk must not pile up, and one
                // sender's junk must not take the others' places.
                let (kind, height, content) = (a.kind, a.height, a.content);
                if self.pool.unvalidated.aggregate(kind, height, &content).is_some() || self.pool.pending_aggregates_from(from, kind, height) > self.f {
                    return false;
                }
                self.pool.unvalidated.aggregates.entry((kind, height)).or_default().insert(content, a);
                self.pool.aggregate_senders.insert((kind, height, content), from);
                true
            }
            Artifact::Cup(cup) => {
                // One package waits per sender; the first at a height stays (a bad one is
                // charged to its sender, and the good one comes again).
                let h = cup.height();
                if h <= self.cup.height() || self.is_penalized(from) || self.pool.unvalidated.cups.contains_key(&h) || self.pool.cup_senders.values().any(|s| *s == from) {
                    return false;
                }
                if h > self.finalized_height {
                    self.request_catch_up(now, from);
                }
                self.pool.unvalidated.cups.insert(h, cup);
                self.pool.cup_senders.insert(h, from);
                true
            }
        }
    }

    /// Pools a peer's ingress if it passes [`IngressCheck::admit`]. Ingress a signed block names
    /// (in its payload, or fetched for it) is checked as of its expiry if that has passed: the
    /// block's time decides whether it may be included (see `check_proposal`).
    /// The check runs off this task: the message is handed out ([`Output::VerifyIngress`]) and
    /// pooled when it comes back verified.
    fn take_ingress(&mut self, now: Time, from: NodeIndex, ingress: Arc<Ingress>, in_block: bool) -> bool {
        let id = ingress.id();
        // A peer charged for forged ingress is heard only when asked (a block may need it).
        if self.is_penalized(from) && !in_block && !self.requests.contains_key(&ArtifactId::Ingress(id)) {
            return false;
        }
        let requested = self.unrequest(&ArtifactId::Ingress(id));
        if self.ingress.contains(&id) || self.finalized_ingress.contains_key(&id) || self.verifying.contains_key(&id) {
            return false;
        }
        if self.ingress.len() + self.verifying.len() >= self.config.max_ingress_pool {
            return false;
        }
        if self.verifying.values().filter(|s| **s == Some(from)).count() >= MAX_VERIFYING_PER_PEER {
            self.reject("ingress beyond the peer's verification share");
            return false;
        }
        let at = if in_block || requested { self.ingress_check.expiry(&ingress.bytes).map_or(now, |expiry| expiry.min(now)) } else { now };
        self.verifying.insert(id, Some(from));
        self.outputs.push_back(Output::VerifyIngress(UnverifiedIngress { from: Some(from), ingress, at }));
        false
    }

    /// Answers the state-sync request of `peer` from `checkpoints`, if its share of this
    /// node's work allows (a chunk costs what it weighs).
    pub fn answer_sync<'a>(&mut self, now: Time, peer: NodeIndex, request: &SyncMessage, checkpoints: impl IntoIterator<Item = &'a Checkpoint>) -> Option<SyncMessage> {
        if !request.is_request() || peer >= self.n || peer == self.me || !self.may_serve(now, peer) {
            return None;
        }
        let answer = request.answer_from(checkpoints)?;
        let cost = match &answer {
            SyncMessage::Chunk { bytes, .. } => bytes.len(),
            SyncMessage::Manifest(m) => m.chunks.len() * 32,
            _ => 0,
        };
        self.serving.charge(now, peer, cost as u64);
        Some(answer)
    }

    /// Whether `peer` may have an answer now (else its request is dropped and counted).
    fn may_serve(&mut self, now: Time, peer: NodeIndex) -> bool {
        if self.serving.has_credit(now, peer) {
            return true;
        }
        if self.serving.charge(now, peer, 0) == Verdict::Disconnect {
            self.reject("requests beyond the peer's share");
        }
        false
    }

    /// Requests of `peer` this node dropped for its rate.
    pub fn requests_dropped(&self, peer: NodeIndex) -> u64 {
        self.serving.dropped(peer)
    }

    fn wants(&self, id: &ArtifactId) -> bool {
        match id {
            ArtifactId::Ingress(id) => {
                !self.ingress.contains(id)
                    && !self.finalized_ingress.contains_key(id)
                    && !self.verifying.contains_key(id)
                    && self.ingress.len() + self.verifying.len() < self.config.max_ingress_pool
            }
            ArtifactId::Block(hash) => !self.invalid.contains(hash) && self.find_proposal(hash).is_none(),
        }
    }

    fn fetch(&mut self, now: Time, id: ArtifactId, from: NodeIndex) {
        if let Some(pending) = self.requests.get_mut(&id) {
            if !pending.peers.contains(&from) {
                pending.peers.push(from);
            }
            return;
        }
        self.requests.insert(id, Pending { peers: vec![from], attempts: 1, next_at: now + FETCH_BACKOFF_MIN });
        *self.fetching.entry(from).or_default() += 1;
        self.outputs.push_back(Output::Send { to: Some(from), message: Message::Request(id) });
    }

    /// Asks again, each time another peer, backing off from 250 ms to 60 s.
    fn retry_fetches(&mut self, now: Time) {
        let (n, me) = (self.n, self.me);
        let mut sends = Vec::new();
        let mut given_up = Vec::new();
        self.requests.retain(|id, p| {
            if p.next_at > now {
                return true;
            }
            if p.attempts >= FETCH_ATTEMPTS {
                given_up.push(p.peers[0]);
                return false;
            }
            // First the peers that advertised it, then everyone in turn.
            let k = p.attempts as usize;
            let peer = if k < p.peers.len() { p.peers[k] } else { (p.peers[0] + k) % n };
            let peer = if peer == me { (peer + 1) % n } else { peer };
            sends.push(Output::Send { to: Some(peer), message: Message::Request(*id) });
            let backoff = (FETCH_BACKOFF_MIN << p.attempts.min(10)).min(FETCH_BACKOFF_MAX);
            p.attempts += 1;
            p.next_at = now + backoff;
            true
        });
        self.outputs.extend(sends);
        for peer in given_up {
            self.uncount_fetch(peer);
        }
    }

    /// Drops a pending fetch; returns whether there was one.
    fn unrequest(&mut self, id: &ArtifactId) -> bool {
        let Some(pending) = self.requests.remove(id) else { return false };
        self.uncount_fetch(pending.peers[0]);
        true
    }

    fn uncount_fetch(&mut self, peer: NodeIndex) {
        if let Some(count) = self.fetching.get_mut(&peer) {
            *count = count.saturating_sub(1);
        }
    }

    fn serve(&mut self, now: Time, to: NodeIndex, id: ArtifactId) {
        if !self.may_serve(now, to) {
            return;
        }
        match id {
            ArtifactId::Ingress(id) => {
                let found = self.ingress.get(&id).cloned().or_else(|| {
                    // Recently finalized: look in the blocks that hold it.
                    let v = &self.pool.validated;
                    v.proposals.range(self.finalized_height.saturating_sub(20)..).flat_map(|(_, m)| m.values()).find_map(|p| {
                        let i = p.block.ingress.iter().position(|x| *x == id)?;
                        p.payload.as_ref()?.get(i).cloned()
                    })
                });
                if let Some(ingress) = found {
                    self.serving.charge(now, to, ingress.bytes.len() as u64);
                    self.outputs.push_back(Output::Send { to: Some(to), message: Message::Push(Artifact::Ingress(ingress)) });
                }
            }
            ArtifactId::Block(hash) => {
                if let Some(p) = self.find_proposal(&hash).filter(|p| p.block.height > self.base_height) {
                    let wire = if self.config.strip_blocks { Arc::new(p.stripped()) } else { p };
                    self.serving.charge(now, to, wire.wire_size() as u64);
                    self.outputs.push_back(Output::Send { to: Some(to), message: Message::Push(Artifact::Proposal(wire)) });
                }
            }
        }
    }

    fn find_proposal(&self, hash: &Hash) -> Option<Arc<Proposal>> {
        [&self.pool.validated, &self.pool.unvalidated]
            .iter()
            .find_map(|s| s.proposals.values().rev().find_map(|m| m.get(hash)).cloned())
    }

    /// Re-sends this node's latest artifacts when nothing has moved for a while (lost messages,
    /// healed partitions, restarted peers).
    fn rebroadcast(&mut self) {
        let f = self.finalized_height;
        let mut again: Vec<Artifact> = Vec::new();
        let v = &self.pool.validated;
        for ((kind, h), groups) in &v.shares {
            if *h > f || (*kind == Kind::Certification && *h > self.certified_height) || *kind == Kind::CatchUp {
                for (content, signers) in groups {
                    if let Some(sig) = signers.get(&self.me) {
                        again.push(Artifact::Share(Share { kind: *kind, height: *h, content: *content, signer: self.me, sig: *sig }));
                    }
                }
            }
        }
        // Own blocks, and above the finalized height every block that is notarized or that this
        // node signed for, whoever made it: a peer that restarted kept its shares but not
        // others' blocks (it persists only its own), and with the maker gone no one else would
        // send it the block it must notarize or finalize.
        let signed = |h: Height, hash: &Hash| v.share_groups(Kind::Notarization, h).and_then(|g| g.get(hash)).is_some_and(|s| s.contains_key(&self.me));
        let blocks: Vec<Arc<Proposal>> = v
            .proposals
            .range(f + 1..)
            .flat_map(|(h, m)| m.iter().map(move |(hash, p)| (*h, hash, p)))
            .filter(|(h, hash, p)| p.block.maker == self.me || self.is_notarized(*h, hash) || signed(*h, hash))
            .map(|(_, _, p)| p.clone())
            .collect();
        // Every beacon above the finalized height, not only the tip: a peer that restarted at
        // this finalized height takes beacons only in order, and it can neither make one below
        // our tip (we purged our shares of it and drop its share as stale) nor get it by
        // catch-up (nothing is finalized above it). Missing one, it never ranks the makers of
        // the next height, and with f nodes down the subnet stalled for good.
        for (kind, from) in [(Kind::Notarization, f + 1), (Kind::Finalization, f), (Kind::Beacon, f + 1), (Kind::Certification, self.certified_height)] {
            for ((_, h), m) in v.aggregates.range((kind, from)..=(kind, Height::MAX)) {
                // Not the start block's trusted notarization and finalization (no signers).
                let trusted = |a: &&Aggregate| matches!(kind, Kind::Notarization | Kind::Finalization) && a.signers.is_empty();
                if *h > self.base_height || kind == Kind::Finalization {
                    again.extend(m.values().filter(|a| !trusted(a)).map(|a| Artifact::Aggregate(a.clone())));
                }
            }
        }
        if let Some(cup) = v.cups.values().next_back() {
            again.push(Artifact::Cup(cup.clone()));
        }
        for p in blocks {
            self.send_proposal(None, &p);
        }
        for artifact in again {
            self.outputs.push_back(Output::Send { to: None, message: Message::Push(self.maybe_corrupt(artifact)) });
        }
    }

    fn may_request_catch_up(&self, now: Time) -> bool {
        self.last_catch_up_request.is_none_or(|t| now >= t + FETCH_BACKOFF_MIN * 2)
    }

    fn request_catch_up(&mut self, now: Time, from: NodeIndex) {
        if !self.may_request_catch_up(now) {
            return;
        }
        self.last_catch_up_request = Some(now);
        // Asking the same peer again from the same height did not help the last time (the
        // answer was lost, the peer is not ahead, or it is faulty and re-sends a finalization
        // to be asked): every other time the next other peer in turn is asked, so that no one
        // peer can keep this node waiting.
        let h = self.finalized_height;
        let to = if self.catch_up_asked == Some((from, h)) {
            self.catch_up_turn += 1;
            let others: Vec<NodeIndex> = (0..self.n).filter(|p| *p != self.me && *p != from).collect();
            others.get(self.catch_up_turn % others.len().max(1)).copied().unwrap_or(from)
        } else {
            from
        };
        self.catch_up_asked = Some((to, h));
        self.outputs.push_back(Output::Send { to: Some(to), message: Message::CatchUpRequest { finalized: h } });
    }

    fn serve_catch_up(&mut self, now: Time, to: NodeIndex, from: Height) {
        if from >= self.finalized_height {
            return;
        }
        if self.catch_up_served.get(&to).is_some_and(|(at, top)| from < *top && now < at + CATCH_UP_REPEAT_INTERVAL) {
            return;
        }
        if !self.may_serve(now, to) {
            return;
        }
        if from < self.base_height {
            if let Some(cup) = self.pool.validated.cups.values().next_back() {
                self.outputs.push_back(Output::Send { to: Some(to), message: Message::Push(Artifact::Cup(cup.clone())) });
            }
            return;
        }
        let v = &self.pool.validated;
        // As many finalized blocks as one message may carry (a transport frame must hold them)…
        let mut blocks = Vec::new();
        let mut bytes = 0;
        for h in from + 1..=self.finalized_height {
            let Some(p) = self.chain.get(&h).and_then(|hash| v.proposal(h, hash)) else { return };
            bytes += p.wire_size();
            if !blocks.is_empty() && (blocks.len() == CATCH_UP_MAX_BLOCKS || bytes > CATCH_UP_MAX_BYTES) {
                break;
            }
            blocks.push(p.clone());
        }
        // …up to the highest of them a finalization we hold proves (parent hashes prove the rest).
        let last = from + blocks.len() as Height;
        let Some(finalization) = v
            .aggregates
            .range((Kind::Finalization, from + 1)..=(Kind::Finalization, last))
            .rev()
            .flat_map(|(_, m)| m.values())
            .find(|a| !a.signers.is_empty() && self.chain.get(&a.height) == Some(&a.content))
            .cloned()
        else {
            return;
        };
        let top = finalization.height;
        blocks.truncate((top - from) as usize);
        let mut notarized = Vec::new();
        let mut parent = finalization.content;
        if top == self.finalized_height {
            for h in top + 1.. {
                let Some((p, n)) = v
                    .proposals_at(h)
                    .filter(|(_, p)| p.block.parent == parent)
                    .find_map(|(hash, p)| Some((p.clone(), v.aggregate(Kind::Notarization, h, hash)?.clone())))
                else {
                    break;
                };
                parent = n.content;
                notarized.push((p, n));
            }
        }
        let beacons: Vec<Beacon> = (from + 1..).map_while(|h| self.beacon(h)).take(blocks.len() + notarized.len() + 1).collect();
        if beacons.len() < blocks.len() + notarized.len() {
            return;
        }
        let more = top < self.finalized_height;
        self.catch_up_served.insert(to, (now, top));
        let cost = blocks.iter().chain(notarized.iter().map(|(p, _)| p)).map(|p| p.wire_size()).sum::<usize>();
        self.serving.charge(now, to, cost as u64);
        let catch_up = CatchUp { blocks, finalization, notarized, beacons, more };
        self.outputs.push_back(Output::Send { to: Some(to), message: Message::CatchUp(Arc::new(catch_up)) });
    }

    /// Takes finalized blocks from a peer: the finalization proves the top block, parent hashes
    /// the rest, and the top beacon's signature the chain of beacons.
    fn apply_catch_up(&mut self, now: Time, from: NodeIndex, c: &CatchUp) {
        if self.is_penalized(from) {
            return;
        }
        let f = self.finalized_height;
        let a = &c.finalization;
        let tail = c.notarized.len();
        if a.kind != Kind::Finalization || a.height <= f || c.blocks.len() as Height != a.height - f || c.beacons.len() < c.blocks.len() + tail {
            return;
        }
        let mut beacon_parent = match self.beacon(f) {
            Some(b) => b.hash(),
            None => return,
        };
        for (i, beacon) in c.beacons.iter().enumerate() {
            if beacon.height != f + 1 + i as Height || beacon.parent != beacon_parent {
                return;
            }
            beacon_parent = beacon.hash();
        }
        let mut parent = self.chain[&f];
        let blocks = c.blocks.iter().chain(c.notarized.iter().map(|(p, _)| p));
        for (i, p) in blocks.enumerate() {
            let payload_ok = p.payload.as_ref().is_some_and(|v| v.len() == p.block.ingress.len() && v.iter().zip(&p.block.ingress).all(|(i, id)| i.id() == *id));
            if p.block.height != f + 1 + i as Height || p.block.parent != parent || !payload_ok {
                return;
            }
            parent = p.block.hash();
            if i + 1 == c.blocks.len() && parent != a.content {
                return;
            }
        }
        if !self.check_aggregate(a) {
            self.charge(from, "catch-up with a bad signature");
            return;
        }
        // Notarized blocks: each needs its notarization (the finalization vouches only below).
        let mut tail_ok = 0;
        for (p, n) in &c.notarized {
            if n.kind != Kind::Notarization || n.height != p.block.height || n.content != p.block.hash() || !self.check_aggregate(n) {
                break;
            }
            tail_ok += 1;
        }
        let last = c.beacons.last().expect("at least one block");
        self.count(|s| s.verified_aggregates += 1);
        if !self.crypto.verify_aggregate(Kind::Beacon, &[], &Kind::Beacon.message(last.height, &last.parent), &last.sig) {
            self.charge(from, "catch-up with a bad signature");
            return;
        }
        for p in &c.blocks {
            self.pool.apply(&Change::ValidateProposal(p.clone()));
        }
        self.pool.apply(&Change::ValidateAggregate(a.clone()));
        for (p, n) in c.notarized.iter().take(tail_ok) {
            self.pool.apply(&Change::ValidateProposal(p.clone()));
            self.pool.apply(&Change::ValidateAggregate(n.clone()));
        }
        for beacon in &c.beacons {
            let b = Aggregate { kind: Kind::Beacon, height: beacon.height, content: beacon.parent, signers: Vec::new(), sig: beacon.sig };
            self.pool.apply(&Change::ValidateAggregate(b));
        }
        self.notarized_cache.set(None);
        if c.more {
            // Ask for what follows at once (these blocks are delivered before the answer comes).
            self.last_catch_up_request = Some(now);
            self.outputs.push_back(Output::Send { to: Some(from), message: Message::CatchUpRequest { finalized: a.height } });
        }
    }

    // ----- helpers -----

    fn share(&self, kind: Kind, height: Height, content: Hash) -> Change {
        let sig = self.crypto.sign_share(kind, &kind.message(height, &content));
        Change::Create(Created::Share(Share { kind, height, content, signer: self.me, sig }))
    }

    fn proposal(&self, block: Block, payload: Vec<Arc<Ingress>>) -> Change {
        let signature = self.crypto.sign_proposal(&Proposal::signed_bytes(&block.hash()));
        Change::Create(Created::Proposal(Arc::new(Proposal { block, signature, payload: Some(payload) })))
    }

    fn check_aggregate(&self, a: &Aggregate) -> bool {
        let is_multi = matches!(a.kind, Kind::Notarization | Kind::Finalization);
        if is_multi {
            let distinct: BTreeSet<&NodeIndex> = a.signers.iter().collect();
            if distinct.len() != a.signers.len() || a.signers.len() < threshold(self.n, a.kind) {
                return false;
            }
        } else if !a.signers.is_empty() {
            return false;
        }
        self.count(|s| s.verified_aggregates += 1);
        self.crypto.verify_aggregate(a.kind, &a.signers, &a.kind.message(a.height, &a.content), &a.sig)
    }

    fn is_stale(&self, kind: Kind, height: Height) -> bool {
        match kind {
            Kind::Beacon => height <= self.beacon_tip(),
            Kind::Notarization | Kind::Finalization => height <= self.finalized_height,
            Kind::Certification => height <= self.certified_height,
            Kind::CatchUp => height <= self.cup.height(),
        }
    }

    /// Whether the block is notarized; a finalized one counts (catch-up brings the top finalized
    /// block without its notarization).
    fn is_notarized(&self, height: Height, hash: &Hash) -> bool {
        self.chain.get(&height) == Some(hash) || self.pool.validated.aggregate(Kind::Notarization, height, hash).is_some()
    }

    fn beacon(&self, height: Height) -> Option<Beacon> {
        self.pool.validated.aggregates_at(Kind::Beacon, height).next().map(Beacon::from)
    }

    fn beacon_tip(&self) -> Height {
        self.pool.validated.aggregates.range((Kind::Beacon, 0)..=(Kind::Beacon, Height::MAX)).next_back().map_or(0, |((_, h), _)| *h)
    }

    fn finalized_time(&self) -> Time {
        let h = self.finalized_height;
        self.chain.get(&h).and_then(|hash| self.pool.validated.proposal(h, hash)).map_or(0, |p| p.block.time)
    }

    /// The rank of `node` at `height` (from the beacon of `height − 1`), if it is a block maker.
    fn rank(&self, height: Height, node: NodeIndex) -> Option<u32> {
        let beacon = self.beacon(height - 1)?;
        let mut cache = self.ranking_cache.borrow_mut();
        if cache.as_ref().is_none_or(|(h, _)| *h != height) {
            *cache = Some((height, ranking(&beacon, self.n)));
        }
        let rank = cache.as_ref().expect("just set").1[node];
        (rank as usize <= self.f).then_some(rank)
    }

    /// `initial_notary_delay + rank × unit_delay`, growing 1.5× for each height notarization
    /// runs ahead of finalization beyond the usual one (not for rank 0), so a lagging
    /// finalization gets time to catch up.
    fn notary_delay(&self, rank: u32, gap: Height) -> Time {
        let base = self.config.initial_notary_delay + self.config.unit_delay * u64::from(rank);
        if rank == 0 {
            return base;
        }
        let g = gap.saturating_sub(1).min(12) as u32;
        base * 3u64.pow(g) / 2u64.pow(g)
    }

    /// Ingress already in the unfinalized ancestors of a block on top of `parent`.
    fn ancestor_ingress(&self, parent: &Block) -> HashSet<Hash> {
        let mut taken = HashSet::new();
        let mut block = parent.clone();
        while block.height > self.finalized_height {
            taken.extend(block.ingress.iter().copied());
            match self.pool.validated.proposal(block.height - 1, &block.parent) {
                Some(p) => block = p.block.clone(),
                None => break,
            }
        }
        taken
    }

    fn cup_content(&self, h: Height) -> Option<Hash> {
        let block = self.chain.get(&h)?;
        let beacon = self.beacon(h)?;
        let state = self.pool.validated.aggregates_at(Kind::Certification, h).next()?.content;
        let checkpoint = self.checkpoints.get(&h)?;
        Some(Cup::content_hash(block, &beacon.hash(), &state, checkpoint))
    }

    fn cup_from(&self, a: &Aggregate) -> Option<Cup> {
        let h = a.height;
        if self.cup_content(h)? != a.content {
            return None;
        }
        let block = self.pool.validated.proposal(h, self.chain.get(&h)?)?.block.clone();
        let state_hash = self.pool.validated.aggregates_at(Kind::Certification, h).next()?.content;
        Some(Cup { block, beacon: self.beacon(h)?, state_hash, checkpoint: *self.checkpoints.get(&h)?, sig: a.sig })
    }

    fn check_proposal(&self, now: Time, p: &Proposal) -> Check {
        let b = &p.block;
        let h = b.height;
        let Some(parent) = self.pool.validated.proposal(h - 1, &b.parent) else { return Check::Later };
        if !self.is_notarized(h - 1, &b.parent) {
            return Check::Later;
        }
        // The beacon of the height before ranks the makers; it may come after the parent's
        // notarization (a restarted node gets notarizations rebroadcast before it can make that
        // beacon). Refused then, an honest block would be invalid here for good and its copies
        // dropped: a restarted node never saw the rank-0 block the others had signed, signed
        // another, and neither got 2f+1 shares.
        if self.beacon(h - 1).is_none() {
            return Check::Later;
        }
        match self.rank(h, b.maker) {
            Some(rank) if rank == b.rank => {}
            Some(_) | None => return Check::Invalid("not the maker's rank"),
        }
        if b.time <= parent.block.time {
            return Check::Invalid("block time not after its parent's");
        }
        if b.time > now + self.config.max_time_drift {
            return Check::Later;
        }
        if b.ingress.len() > self.config.max_block_ingress {
            return Check::Invalid("too many ingress messages");
        }
        let taken = self.ancestor_ingress(&parent.block);
        let mut seen = HashSet::new();
        if b.ingress.iter().any(|id| taken.contains(id) || self.finalized_ingress.contains_key(id) || !seen.insert(*id)) {
            return Check::Invalid("repeated or already finalized ingress");
        }
        let missing: Vec<ArtifactId> = b.ingress.iter().filter(|id| self.ingress.get(id).is_none()).map(|id| ArtifactId::Ingress(*id)).collect();
        if !missing.is_empty() {
            return Check::Missing(missing);
        }
        let mut bytes = 0;
        let mut payload = Vec::with_capacity(b.ingress.len());
        for (ingress, expiry) in b.ingress.iter().filter_map(|id| self.ingress.entry(id)) {
            if expiry < b.time {
                return Check::Invalid("expired ingress");
            }
            bytes += ingress.bytes.len();
            payload.push(ingress.clone());
        }
        if bytes > self.config.max_block_bytes {
            return Check::Invalid("payload too large");
        }
        Check::Valid(Arc::new(Proposal { block: b.clone(), signature: p.signature, payload: Some(payload) }))
    }
}

enum Check {
    Valid(Arc<Proposal>),
    /// Why (counted in [`ConsensusNode::rejections`]).
    Invalid(&'static str),
    Missing(Vec<ArtifactId>),
    Later,
}

/// The block-maker ranking of a round: a shuffle of the nodes seeded by the beacon. Returns
/// each node's rank.
pub fn ranking(beacon: &Beacon, n: usize) -> Vec<u32> {
    let seed: [u8; 32] = Sha256::new().chain_update(b"tabnet-ranking").chain_update(beacon.hash()).finalize().into();
    let mut state = u64::from_be_bytes(seed[..8].try_into().expect("8 bytes"));
    let mut next = || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = (next() % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    let mut rank = vec![0u32; n];
    for (r, node) in order.into_iter().enumerate() {
        rank[node] = r as u32;
    }
    rank
}
