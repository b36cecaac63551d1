//! A subnet of native processes on one machine. `tabnet init-subnet` writes its configuration;
//! `tabnet node --index K` runs node K: the IC HTTP interface on port P+K, gossip with its peers
//! over loopback TCP on port P+N+K, consensus driving the replica.
//!
//! Keys come from a trusted dealer: the configuration holds the dealer's seed and every node
//! derives its own secrets from it (and could derive the others'). A real distributed key
//! generation comes with chain evolution.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tabnet_consensus::handshake::PeerKeys;
use tabnet_consensus::{
    deal, Artifact, Beacon, Block, BlsCrypto, Checkpoint, Config, ConsensusNode, Cup, Height, Ingress, IngressCheck, Message, Output, Start,
    StateSync, Time, UnverifiedIngress, VerifiedIngress,
};
use tabnet_crypto::node_key::ED25519_DER_PREFIX;
use tabnet_execution::SubnetConfig;
use tabnet_replica::envelope::{self, RequestType};
use tabnet_replica::{authenticate_call, Member, Replica};
use tabnet_types::Principal;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::checkpoints::Checkpoints;
use crate::gossip::{self, Identity, Inbound, Outbox};
use crate::log_store::LogStore;
use crate::server::{self, Node};

const CONFIG_FILE: &str = "subnet.conf";
const KEY_CHECKPOINT: &str = "consensus/checkpoint";
/// What consensus asked to persist: `consensus/persisted/<height>/<digest>`.
const PREFIX_PERSISTED: &str = "consensus/persisted/";
const KEY_CERTIFICATION: &str = "consensus/certification";
/// Messages waiting for a peer beyond this are dropped (consensus re-sends what matters).
const PEER_QUEUE: usize = 20_000;
/// Heights between catch-up packages unless `init-subnet --dkg-interval` says otherwise.
pub const DEFAULT_DKG_INTERVAL: u64 = 500;
/// State sync asks another peer when one has not answered in this long (ms).
const SYNC_TIMEOUT: Time = 2_000;
/// Ingress signature checks running at once, on the blocking pool (which also runs rounds and
/// queries): the consensus task never checks a signature itself.
const VERIFY_WORKERS: usize = 2;
/// Peers' frames taken in one go when they are waiting.
const FRAME_BATCH: usize = 256;

/// What `init-subnet` writes.
#[derive(Clone, Debug, PartialEq)]
pub struct SubnetFile {
    pub nodes: usize,
    /// Node K serves HTTP on `port + K` and gossips on `port + nodes + K`.
    pub port: u16,
    pub dealer_seed: [u8; 32],
    /// Heights between catch-up packages (state-sync points).
    pub dkg_interval: u64,
}

impl SubnetFile {
    pub fn http_port(&self, k: usize) -> u16 {
        self.port + k as u16
    }
    pub fn p2p_port(&self, k: usize) -> u16 {
        self.port + (self.nodes + k) as u16
    }

    fn render(&self) -> String {
        format!(
            "# A tabnet subnet (written by `tabnet init-subnet`).\n\
             # Node K serves the IC HTTP interface on port+K and gossips on port+nodes+K.\n\
             # Trusted dealer: every node derives its keys from dealer_seed, so whoever can read\n\
             # this file holds every key of the subnet.\n\
             nodes = {}\nport = {}\ndealer_seed = {}\n\
             # A catch-up package (and a state checkpoint) every dkg_interval heights.\n\
             dkg_interval = {}\n",
            self.nodes,
            self.port,
            hex::encode(self.dealer_seed),
            self.dkg_interval
        )
    }

    fn parse(text: &str) -> Result<Self, String> {
        let mut fields = BTreeMap::new();
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
            let (k, v) = line.split_once('=').ok_or_else(|| format!("`{line}` is not `key = value`"))?;
            fields.insert(k.trim().to_string(), v.trim().to_string());
        }
        let get = |k: &str| fields.get(k).ok_or_else(|| format!("{CONFIG_FILE} has no `{k}`"));
        let seed = hex::decode(get("dealer_seed")?).map_err(|e| format!("dealer_seed: {e}"))?;
        let file = SubnetFile {
            nodes: get("nodes")?.parse().map_err(|e| format!("nodes: {e}"))?,
            port: get("port")?.parse().map_err(|e| format!("port: {e}"))?,
            dealer_seed: seed.try_into().map_err(|_| "dealer_seed must be 32 bytes")?,
            dkg_interval: match fields.get("dkg_interval") {
                Some(v) => v.parse().map_err(|e| format!("dkg_interval: {e}"))?,
                None => DEFAULT_DKG_INTERVAL,
            },
        };
        file.check()?;
        Ok(file)
    }

    fn check(&self) -> Result<(), String> {
        if self.nodes == 0 || self.nodes > 100 {
            return Err(format!("a subnet of {} nodes? (1 to 100)", self.nodes));
        }
        if self.dkg_interval < 2 {
            return Err(format!("dkg_interval {} is too short (2 or more heights)", self.dkg_interval));
        }
        if u32::from(self.port) + 2 * self.nodes as u32 > 65_535 {
            return Err(format!("ports {} to {} do not fit", self.port, u32::from(self.port) + 2 * self.nodes as u32 - 1));
        }
        Ok(())
    }

    pub fn read(dir: &Path) -> Result<Self, String> {
        let path = dir.join(CONFIG_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e} (run `tabnet init-subnet` first)", path.display()))?;
        // Written world-readable by earlier versions: tighten it.
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .map_err(|e| format!("cannot make {} private: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }
}

/// `tabnet init-subnet`: writes the configuration of a new subnet into `dir`.
pub fn init(dir: &Path, nodes: usize, port: u16, dkg_interval: u64) -> Result<SubnetFile, String> {
    let path = dir.join(CONFIG_FILE);
    if path.exists() {
        return Err(format!("{} exists already; remove the directory to make a new subnet", path.display()));
    }
    let mut dealer_seed = [0u8; 32];
    getrandom::getrandom(&mut dealer_seed).map_err(|e| format!("no OS randomness: {e}"))?;
    let file = SubnetFile { nodes, port, dealer_seed, dkg_interval };
    file.check()?;
    // The file holds the dealer's seed, every key of the subnet: for this user's eyes only.
    crate::log_store::create_private_dir(dir)?;
    crate::log_store::write_durably(&path, &[file.render().as_bytes()])?;
    Ok(file)
}

pub fn node_dir(dir: &Path, k: usize) -> PathBuf {
    dir.join(format!("node-{k}"))
}

fn now_millis() -> Time {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as Time).unwrap_or(0)
}

/// In consensus, an ingress message is the call's CBOR envelope and the effective canister id
/// from its URL: `len(ecid) ‖ ecid ‖ envelope`.
pub fn wrap_call(envelope: &[u8], ecid: &Principal) -> Vec<u8> {
    let id = ecid.as_slice();
    let mut bytes = Vec::with_capacity(1 + id.len() + envelope.len());
    bytes.push(id.len() as u8);
    bytes.extend_from_slice(id);
    bytes.extend_from_slice(envelope);
    bytes
}

fn unwrap_call(bytes: &[u8]) -> Option<(Principal, &[u8])> {
    let len = *bytes.first()? as usize;
    let id = bytes.get(1..1 + len)?;
    Some((Principal::try_from_slice(id).ok()?, &bytes[1 + len..]))
}

/// What consensus asks of an ingress message. Before it enters the pool (submitted here or
/// gossiped by a peer): at most `max_bytes`, a call for its effective canister id, signed by
/// its sender, expiring within the IC's window around the node's time. (Execution checks the
/// signature again, the same way on every replica.)
struct CallCheck {
    max_bytes: usize,
}

impl IngressCheck for CallCheck {
    fn expiry(&self, bytes: &[u8]) -> Result<Time, String> {
        let (_, envelope) = unwrap_call(bytes).ok_or("not a wrapped call")?;
        let request = envelope::decode(envelope, RequestType::Call).map_err(|e| e.message)?;
        Ok(request.ingress_expiry / 1_000_000)
    }

    fn admit(&self, now: Time, bytes: &[u8]) -> Result<Time, String> {
        let (ecid, envelope) = unwrap_call(bytes).ok_or("not a wrapped call")?;
        if envelope.len() > self.max_bytes {
            return Err(format!("the call takes {} bytes; at most {} are allowed", envelope.len(), self.max_bytes));
        }
        authenticate_call(envelope, &ecid, now.saturating_mul(1_000_000)).map_err(|e| e.message)?;
        self.expiry(bytes)
    }
}

/// Where consensus resumes: the block and beacon of the state kept with it.
#[derive(Serialize, Deserialize)]
struct ResumePoint {
    block: Block,
    beacon: Beacon,
}

fn resume_record(block: &Block, beacon: &Beacon) -> (String, Vec<u8>) {
    (KEY_CHECKPOINT.to_string(), cbor(&ResumePoint { block: block.clone(), beacon: beacon.clone() }))
}

fn cbor<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(value, &mut out).expect("serializing to memory cannot fail");
    out
}

/// The records of what consensus asked this node to persist (what it signed, the finalized
/// blocks it can still prove to peers, its latest catch-up package), by height. The same
/// artifact always gets the same key, so persisting it again writes nothing.
struct Persisted {
    keys: BTreeMap<Height, BTreeSet<String>>,
    /// Records no longer needed, deleted with the next write.
    forgotten: Vec<String>,
}

impl Persisted {
    /// Reads the records back: the artifacts, for [`Start::persisted`].
    fn load(replica: &Replica<LogStore>) -> Result<(Self, Vec<Artifact>), String> {
        let mut persisted = Persisted { keys: BTreeMap::new(), forgotten: Vec::new() };
        let mut artifacts = Vec::new();
        for (key, bytes) in replica.records(PREFIX_PERSISTED)? {
            let artifact: Artifact = ciborium::from_reader(bytes.as_slice()).map_err(|e| format!("bad record {key}: {e}"))?;
            persisted.keys.entry(artifact.height()).or_default().insert(key);
            artifacts.push(artifact);
        }
        Ok((persisted, artifacts))
    }

    /// The record to write for `artifact`, unless it is stored already.
    fn record(&mut self, artifact: &Artifact) -> Option<(String, Vec<u8>)> {
        let bytes = cbor(artifact);
        let height = artifact.height();
        let key = format!("{PREFIX_PERSISTED}{height:020}/{}", hex::encode(&tabnet_crypto::sha256(&bytes)[..12]));
        self.keys.entry(height).or_default().insert(key.clone()).then_some((key, bytes))
    }

    fn forget_below(&mut self, height: Height) {
        let kept = self.keys.split_off(&height);
        let old = std::mem::replace(&mut self.keys, kept);
        self.forgotten.extend(old.into_values().flatten());
    }
}

/// What reaches the consensus task from the HTTP interface (peers' frames come by [`Inbound`]).
pub enum Input {
    Ingress(Vec<u8>, oneshot::Sender<Result<(), String>>),
}

/// `tabnet node`: runs node `index` of the subnet configured in `dir` until stopped.
pub async fn run_node(dir: &Path, index: usize, www: Option<PathBuf>) -> Result<(), String> {
    let file = SubnetFile::read(dir)?;
    let n = file.nodes;
    if index >= n {
        return Err(format!("the subnet has nodes 0 to {}; there is no node {index}", n - 1));
    }
    let (public, mut secrets) = deal(n, &file.dealer_seed);
    let public = Arc::new(public);
    let secret = secrets.swap_remove(index);
    let member = Member {
        root_key_der: public.high.group.to_der(),
        node_key_seed: secret.proposal_key.to_bytes(),
        nodes: public.proposal_keys.iter().map(|k| [&ED25519_DER_PREFIX[..], k.as_bytes()].concat()).collect(),
        me: index,
    };
    let state_dir = node_dir(dir, index);
    let store = LogStore::open(&state_dir)?;
    let config = SubnetConfig::for_subnet_size(n as u64);
    let max_ingress_bytes = config.max_ingress_bytes;
    let replica = tokio::task::spawn_blocking(move || Replica::open_member(store, config, member))
        .await
        .map_err(|e| format!("opening the state failed: {e}"))?
        .map_err(|e| format!("cannot open the state in {}: {e}", state_dir.display()))?;

    let mut replica = replica;
    if let Some(bytes) = replica.record(KEY_CERTIFICATION)? {
        let (height, sig): (Height, serde_bytes::ByteBuf) =
            ciborium::from_reader(bytes.as_slice()).map_err(|e| format!("bad certification record: {e}"))?;
        if let Ok(sig) = <[u8; 48]>::try_from(sig.as_slice()) {
            replica.certify_with(height, sig);
        }
    }
    // Where consensus starts: the last height this node executed, or genesis.
    let genesis_seed = tabnet_crypto::sha256(&[b"tabnet-genesis".as_slice(), &file.dealer_seed].concat());
    let mut start = match replica.record(KEY_CHECKPOINT)? {
        Some(bytes) => {
            let c: ResumePoint = ciborium::from_reader(bytes.as_slice()).map_err(|e| format!("bad consensus checkpoint: {e}"))?;
            Start { block: c.block, beacon: c.beacon, state_hash: [0; 32], persisted: Vec::new() }
        }
        None => Start::genesis(&genesis_seed),
    };
    let (persisted, artifacts) = Persisted::load(&replica)?;
    start.persisted = artifacts;
    if start.block.height != replica.executed_height() {
        return Err(format!(
            "the state in {} is at height {} but consensus's checkpoint at {}",
            node_dir(dir, index).display(),
            replica.executed_height(),
            start.block.height
        ));
    }
    // Loopback delays are well under a millisecond: notaries need not wait for rank 0's block
    // (mainnet waits 300 ms); an idle subnet makes about four blocks a second.
    let consensus_config =
        Config { unit_delay: 1_000, initial_notary_delay: 0, idle_block_delay: 250, dkg_interval: file.dkg_interval, ..Config::default() };
    let checkpoints = Checkpoints::open(&node_dir(dir, index))?;
    let identity = Arc::new(Identity { me: index, key: secret.proposal_key.clone(), peers: PeerKeys::new(&public) });
    let crypto = Arc::new(BlsCrypto::new(index, secret, public));
    let check = Arc::new(CallCheck { max_bytes: max_ingress_bytes });
    let consensus = ConsensusNode::new(consensus_config, crypto, check.clone(), start);

    let (inbox_tx, inbox) = mpsc::channel::<Input>(PEER_QUEUE);
    let listener = TcpListener::bind(("127.0.0.1", file.p2p_port(index)))
        .await
        .map_err(|e| format!("cannot listen for peers on port {}: {e}", file.p2p_port(index)))?;
    let inbound = gossip::listen(listener, identity.clone(), now_millis);
    let peers: Vec<Option<Outbox>> =
        (0..n).map(|k| (k != index).then(|| gossip::connect(identity.clone(), k, file.p2p_port(k), PEER_QUEUE))).collect();

    let settings =
        server::Settings { bind: "127.0.0.1".into(), port: file.http_port(index), state_dir: node_dir(dir, index), www, memory_capacity: None };
    let node = server::Node::new(replica, Some(inbox_tx));
    let (verifier, verified) = Verifier::new(check);
    let mut driver = tokio::spawn(drive(consensus, node.clone(), inbox, inbound, peers, persisted, checkpoints, verifier, verified));
    // A node that cannot store what it executed or signed stops: serving on would answer from,
    // or sign over, a state a restart would not have.
    let result = tokio::select! {
        served = server::serve_node(node, settings) => served,
        stopped = &mut driver => return stopped.unwrap_or_else(|e| Err(format!("consensus panicked: {e}"))),
    };
    driver.abort();
    result
}

/// Sends `message` to peer `to`, or to every peer.
fn send(peers: &[Option<Outbox>], to: Option<usize>, message: &Message) {
    gossip::send(peers, to, cbor(message));
}

type Reply = oneshot::Sender<Result<(), String>>;

/// Checks ingress off the consensus task, at most [`VERIFY_WORKERS`] at once, and returns the
/// outcomes to it (with the client's reply channel, for a client's call). What waits is
/// bounded by consensus (ingress of each peer being verified) and the HTTP edge (bodies held).
struct Verifier {
    check: Arc<CallCheck>,
    workers: Arc<Semaphore>,
    done: mpsc::UnboundedSender<(VerifiedIngress, Option<Reply>)>,
}

impl Verifier {
    fn new(check: Arc<CallCheck>) -> (Self, mpsc::UnboundedReceiver<(VerifiedIngress, Option<Reply>)>) {
        let (done, verified) = mpsc::unbounded_channel();
        (Verifier { check, workers: Arc::new(Semaphore::new(VERIFY_WORKERS)), done }, verified)
    }

    fn verify(&self, ingress: UnverifiedIngress, reply: Option<Reply>) {
        let (check, workers, done) = (self.check.clone(), self.workers.clone(), self.done.clone());
        tokio::spawn(async move {
            let Ok(_worker) = workers.acquire_owned().await else {
                return;
            };
            if let Ok(verified) = tokio::task::spawn_blocking(move || ingress.verify(&*check)).await {
                let _ = done.send((verified, reply));
            }
        });
    }
}

/// The consensus task: feeds it peers' messages, ingress and timer ticks, and performs its outputs.
/// `persisted`: the records of what consensus asked to persist.
/// It also serves state sync from `checkpoints`, and syncs state itself when too far behind.
async fn drive(
    mut consensus: ConsensusNode,
    node: Arc<Node>,
    mut inbox: mpsc::Receiver<Input>,
    mut inbound: Inbound,
    peers: Vec<Option<Outbox>>,
    mut persisted: Persisted,
    mut checkpoints: Checkpoints,
    verifier: Verifier,
    mut verified: mpsc::UnboundedReceiver<(VerifiedIngress, Option<Reply>)>,
) -> Result<(), String> {
    let mut sync: Option<StateSync> = None;
    let mut sync_started = std::time::Instant::now();
    loop {
        let now = now_millis();
        let wake = consensus.next_wake(now).into_iter().chain(sync.as_ref().and_then(StateSync::next_wake)).min().unwrap_or(now + 1_000);
        let sleep = tokio::time::sleep(Duration::from_millis(wake.saturating_sub(now)));
        tokio::select! {
            // `from` is the member whose node key the connection proved (see gossip.rs).
            // Frames already waiting are taken together (up to `FRAME_BATCH`), so that what is
            // done once per wake-up (outputs, the next wake time) is not done per frame.
            first = inbound.recv() => {
                let mut next = Some(first);
                for taken in 1..=FRAME_BATCH {
                    let Some((from, message)) = next.take() else { break };
                    match message {
                        Message::Sync(m) if m.is_request() => {
                            // At the asker's rate, charged what the answer weighs.
                            if let Some(answer) = consensus.answer_sync(now_millis(), from, &m, &checkpoints.kept) {
                                send(&peers, Some(from), &Message::Sync(answer));
                            }
                        }
                        Message::Sync(m) => {
                            if let Some(s) = &mut sync {
                                s.on_message(now_millis(), from, m);
                            }
                        }
                        message => consensus.on_message(now_millis(), from, message),
                    }
                    // (Only a frame this batch will handle is taken off its queue.)
                    next = if taken < FRAME_BATCH { inbound.try_recv() } else { None };
                }
            }
            input = inbox.recv() => match input {
                Some(Input::Ingress(bytes, reply)) => verifier.verify(UnverifiedIngress::from_client(now_millis(), Ingress { bytes }), Some(reply)),
                None => return Ok(()),
            },
            Some((ingress, reply)) = verified.recv() => {
                let result = consensus.on_ingress_verified(now_millis(), ingress);
                if let Some(reply) = reply {
                    let _ = reply.send(result.map(|_| ()));
                }
            }
            _ = sleep => {
                consensus.on_timer(now_millis());
                if let Some(s) = &mut sync {
                    s.on_timer(now_millis());
                }
            }
        }
        // Perform what it asked, in order: what it persists is stored before anything after it
        // is sent (or, with the batch's state, executed).
        let mut unsaved: Vec<(String, Vec<u8>)> = Vec::new();
        while let Some(output) = consensus.poll() {
            match output {
                Output::Persist(artifact) => unsaved.extend(persisted.record(&artifact)),
                Output::Forget(below) => persisted.forget_below(below),
                Output::Send { to, message } => {
                    if !unsaved.is_empty() {
                        let records = std::mem::take(&mut unsaved);
                        if let Err(e) = node.blocking_replica(move |r| r.put_records(&records)).await {
                            return Err(format!("cannot store what this node signed: {e}"));
                        }
                    }
                    send(&peers, to, &message);
                }
                Output::Deliver(batch) => {
                    let height = batch.height;
                    let mut records = std::mem::take(&mut unsaved);
                    records.push(resume_record(&batch.block, &batch.beacon));
                    let old = std::mem::take(&mut persisted.forgotten);
                    let calls: Vec<(Vec<u8>, Principal)> =
                        batch.ingress.iter().filter_map(|i| unwrap_call(&i.bytes).map(|(ecid, env)| (env.to_vec(), ecid))).collect();
                    let time = batch.block.time * 1_000_000;
                    let randomness = batch.randomness;
                    let make_checkpoint = batch.checkpoint;
                    let result = node
                        .blocking_replica(move |r| {
                            r.delete_records(&old)?;
                            let state_hash = r.execute_batch(time, randomness, &calls, &records)?;
                            let checkpoint = if make_checkpoint { Some(Checkpoint::new(height, r.checkpoint()?)) } else { None };
                            Ok((state_hash, checkpoint))
                        })
                        .await;
                    match result {
                        Ok((state_hash, checkpoint)) => {
                            let hash = checkpoint.as_ref().map(Checkpoint::hash);
                            // Consensus signs over the checkpoint's hash: it must be on disk to serve.
                            if let Some(c) = checkpoint {
                                checkpoints.add(c)?;
                            }
                            consensus.on_executed(now_millis(), height, state_hash, hash);
                        }
                        Err(e) => return Err(format!("executing height {height} failed: {e}")),
                    }
                }
                Output::Certified { height, certification, .. } => {
                    let sig = certification.sig;
                    // Kept, so that after a restart the node serves its state at once.
                    let record = (KEY_CERTIFICATION.to_string(), cbor(&(height, serde_bytes::ByteBuf::from(sig.to_vec()))));
                    // Not synced on its own: it rides with the next height's write. (Lost in a
                    // crash, the node just waits for the subnet's next certification.)
                    let served = node
                        .blocking_replica(move |r| {
                            let served = r.certify_with(height, sig);
                            if served {
                                r.stage_records(&[record])?;
                            }
                            Ok(served)
                        })
                        .await;
                    match served {
                        Ok(true) => node.round_done(),
                        Ok(false) => {}
                        Err(e) => return Err(format!("cannot store the certification of height {height}: {e}")),
                    }
                }
                Output::VerifyIngress(ingress) => verifier.verify(ingress, None),
                Output::StateSyncNeeded(cup) => match &mut sync {
                    Some(s) if s.height() >= cup.height() => {}
                    Some(s) => s.retarget(now_millis(), cup),
                    None => {
                        eprintln!(
                            "tabnet: this node is at height {}, too far behind to catch up by blocks; syncing the state at height {} from its peers",
                            consensus.finalized_height(),
                            cup.height()
                        );
                        let me = consensus.me();
                        sync_started = std::time::Instant::now();
                        sync = Some(StateSync::new(now_millis(), cup, (0..peers.len()).filter(|k| *k != me).collect(), SYNC_TIMEOUT));
                    }
                },
            }
        }
        if !unsaved.is_empty() {
            let records = std::mem::take(&mut unsaved);
            let old = std::mem::take(&mut persisted.forgotten);
            if let Err(e) = node.blocking_replica(move |r| r.delete_records(&old).and_then(|_| r.put_records(&records))).await {
                return Err(format!("cannot store what consensus persists: {e}"));
            }
        }
        // State sync: blocks may have brought the node there after all; else ask, and install
        // the state once it is whole.
        if sync.as_ref().is_some_and(|s| s.height() <= consensus.finalized_height()) {
            sync = None;
        }
        if let Some(s) = &mut sync {
            while let Some((peer, request)) = s.poll() {
                send(&peers, Some(peer), &Message::Sync(request));
            }
        }
        if sync.as_ref().is_some_and(StateSync::is_complete) {
            let s = sync.take().expect("syncing");
            let cup = s.cup().clone();
            match install_state(&node, &mut consensus, &mut persisted, &mut checkpoints, cup, s).await {
                Ok((height, size)) => eprintln!(
                    "tabnet: state sync brought this node to height {height} ({size} bytes of state) in {} ms",
                    sync_started.elapsed().as_millis()
                ),
                Err(e) => return Err(e),
            }
        }
    }
}

/// Puts the state that sync brought in place of this node's, with the package's block as the
/// point consensus resumes from, in one durable write; restarts consensus from the package.
/// Returns the height and the state's size in bytes.
async fn install_state(
    node: &Arc<Node>,
    consensus: &mut ConsensusNode,
    persisted: &mut Persisted,
    checkpoints: &mut Checkpoints,
    cup: Arc<Cup>,
    sync: StateSync,
) -> Result<(Height, usize), String> {
    let height = cup.height();
    let bytes = sync.into_bytes().expect("complete");
    let size = bytes.len();
    // What was persisted at and below the package no longer matters; the package itself does.
    persisted.forget_below(height + 1);
    let old = std::mem::take(&mut persisted.forgotten);
    let mut records = vec![resume_record(&cup.block, &cup.beacon)];
    records.extend(persisted.record(&Artifact::Cup(cup.clone())));
    let (root, bytes) = node
        .blocking_replica(move |r| {
            r.delete_records(&old)?;
            let root = r.restore_checkpoint(&bytes, &records)?;
            Ok((root, bytes))
        })
        .await
        .map_err(|e| format!("installing the state of height {height} failed: {e}"))?;
    if root != cup.state_hash {
        // The manifest matched what 2f+1 nodes signed, so this is non-determinism, not a lie.
        return Err(format!("the state synced at height {height} does not certify as the subnet's (a replica bug); stopping"));
    }
    checkpoints.add(Checkpoint::new(height, bytes))?;
    let kept = node.blocking_replica(|r| Persisted::load(r)).await.map_err(|e| format!("reading back what consensus persisted: {e}"))?.1;
    consensus.restart(Start { block: cup.block.clone(), beacon: cup.beacon.clone(), state_hash: cup.state_hash, persisted: kept });
    consensus.on_timer(now_millis());
    Ok((height, size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configuration_round_trips_and_is_checked() {
        let file = SubnetFile { nodes: 4, port: 8000, dealer_seed: [7; 32], dkg_interval: 20 };
        assert_eq!(SubnetFile::parse(&file.render()).unwrap(), file);
        assert_eq!((file.http_port(3), file.p2p_port(0)), (8003, 8004));
        assert!(SubnetFile::parse("nodes = 4\nport = 65530\ndealer_seed = 00").is_err());
        assert!(SubnetFile { nodes: 4, port: 65_530, dealer_seed: [0; 32], dkg_interval: 500 }.check().is_err());
        assert!(SubnetFile { dkg_interval: 1, ..file }.check().is_err());
        assert_eq!(
            SubnetFile::parse("nodes = 4\nport = 8000\ndealer_seed = 0707070707070707070707070707070707070707070707070707070707070707")
                .unwrap()
                .dkg_interval,
            500
        );
    }

    #[test]
    fn the_subnet_configuration_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("tabnet-subnet-conf-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        init(&dir, 4, 8000, 500).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!((mode(&dir), mode(&dir.join(CONFIG_FILE))), (0o700, 0o600));
        // A file an earlier version left readable is tightened when read.
        std::fs::set_permissions(dir.join(CONFIG_FILE), std::fs::Permissions::from_mode(0o644)).unwrap();
        SubnetFile::read(&dir).unwrap();
        assert_eq!(mode(&dir.join(CONFIG_FILE)), 0o600);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_call_travels_wrapped_with_its_effective_canister_id() {
        let ecid = Principal::from_text("rwlgt-iiaaa-aaaaa-aaaaa-cai").unwrap();
        let wrapped = wrap_call(b"envelope", &ecid);
        assert_eq!(unwrap_call(&wrapped), Some((ecid, &b"envelope"[..])));
        assert_eq!(unwrap_call(&[40, 1]), None);
    }

    /// A call to `ecid` signed with the key of `seed` (by another key if `forged`), expiring at
    /// `expiry` (ms), with an argument of `arg_len` bytes; wrapped as consensus carries it.
    fn signed_call(ecid: &Principal, seed: u8, forged: bool, expiry: Time, arg_len: usize) -> Vec<u8> {
        use ciborium::Value;
        use tabnet_crypto::node_key::NodeSigningKey;
        let key = NodeSigningKey::from_seed([seed; 32]);
        let sender = tabnet_crypto::ingress_auth::self_authenticating_principal(&key.public_key_der());
        let text = |s: &str| Value::Text(s.into());
        let content = Value::Map(vec![
            (text("request_type"), text("call")),
            (text("sender"), Value::Bytes(sender.as_slice().to_vec())),
            (text("ingress_expiry"), Value::Integer((expiry * 1_000_000).into())),
            (text("canister_id"), Value::Bytes(ecid.as_slice().to_vec())),
            (text("method_name"), text("go")),
            (text("arg"), Value::Bytes(vec![7; arg_len])),
        ]);
        let id = tabnet_crypto::request_id::request_id(&content).unwrap();
        let signer = if forged { NodeSigningKey::from_seed([seed ^ 0xFF; 32]) } else { key.clone() };
        let sig = signer.sign(&[tabnet_crypto::request_id::IC_REQUEST, &id[..]].concat());
        let envelope = Value::Map(vec![
            (text("content"), content),
            (text("sender_pubkey"), Value::Bytes(key.public_key_der())),
            (text("sender_sig"), Value::Bytes(sig.to_vec())),
        ]);
        wrap_call(&cbor(&envelope), ecid)
    }

    #[test]
    fn ingress_is_checked_before_it_enters_the_pool() {
        let (public, mut secrets) = deal(4, &[3; 32]);
        let crypto = Arc::new(BlsCrypto::new(0, secrets.swap_remove(0), Arc::new(public)));
        let check = Arc::new(CallCheck { max_bytes: SubnetConfig::for_subnet_size(4).max_ingress_bytes });
        let mut node = ConsensusNode::new(Config::default(), crypto, check.clone(), Start::genesis(&[1; 32]));
        let ecid = Principal::from_text("rwlgt-iiaaa-aaaaa-aaaaa-cai").unwrap();
        let now = now_millis();
        let hostile = [
            ("a forged signature", signed_call(&ecid, 1, true, now + 60_000, 10)),
            ("expired", signed_call(&ecid, 2, false, now - 1_000, 10)),
            ("expiring beyond the window", signed_call(&ecid, 3, false, now + 3_600_000, 10)),
            ("over 2 MiB", signed_call(&ecid, 4, false, now + 60_000, 2 << 20)),
            ("for another canister than its effective id", {
                let other = signed_call(&Principal::from_text("ryjl3-tyaaa-aaaaa-aaaba-cai").unwrap(), 5, false, now + 60_000, 10);
                wrap_call(unwrap_call(&other).unwrap().1, &ecid)
            }),
        ];
        // What the driver does: verify what consensus hands out, hand back the outcome.
        let verify = |node: &mut ConsensusNode| {
            while let Some(output) = node.poll() {
                if let Output::VerifyIngress(ingress) = output {
                    let _ = node.on_ingress_verified(now, ingress.verify(&*check));
                }
            }
        };
        for (peer, (why, bytes)) in hostile.into_iter().enumerate() {
            let peer = peer % 3 + 1;
            node.on_message(now, peer, Message::Push(Artifact::Ingress(Arc::new(Ingress { bytes: bytes.clone() }))));
            verify(&mut node);
            assert_eq!(node.ingress_pool_len(), 0, "a peer's ingress {why} entered the pool");
            assert!(node.submit_ingress(now, Ingress { bytes }).is_err(), "a client's ingress {why} was accepted");
        }
        // Peers 1 and 2 sent a forged signature, an oversized call, one for another canister;
        // peer 3 only one whose expiry lies beyond the window (the client's doing, or a clock).
        assert!(node.is_penalized(1) && node.is_penalized(2), "a peer that sent forged or malformed ingress is charged");
        assert!(!node.is_penalized(3), "a peer is not charged for a message's timing");
        let (public, mut secrets) = deal(4, &[3; 32]);
        let crypto = Arc::new(BlsCrypto::new(0, secrets.swap_remove(0), Arc::new(public)));
        let mut node = ConsensusNode::new(Config::default(), crypto, check.clone(), Start::genesis(&[1; 32]));
        node.on_message(now, 1, Message::Push(Artifact::Ingress(Arc::new(Ingress { bytes: signed_call(&ecid, 6, false, now + 60_000, 10) }))));
        assert_eq!(node.ingress_pool_len(), 0, "a peer's call is not checked on the consensus task");
        verify(&mut node);
        assert_eq!(node.ingress_pool_len(), 1, "a good call from a peer is pooled once verified");
        assert!(node.submit_ingress(now, Ingress { bytes: signed_call(&ecid, 7, false, now + 60_000, 10) }).is_ok());
    }
}
