//! A subnet of native processes on one machine. `tabnet init-subnet` writes its configuration;
//! `tabnet node --index K` runs node K: the IC HTTP interface on port P+K, gossip with its peers
//! over loopback TCP on port P+N+K, consensus driving the replica.
//!
//! Keys come from a trusted dealer: the configuration holds the dealer's seed and every node
//! derives its own secrets from it (and could derive the others'). A real distributed key
//! generation comes with chain evolution.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tabnet_consensus::{BlsCrypto, Checkpoint, Hash, Height, Ingress, Message, Time, UnverifiedIngress, VerifiedIngress};
use tabnet_execution::SubnetConfig;
use tabnet_node::dealt::{dealt_node, genesis_seed, local_node_config};
use tabnet_node::replica::CallCheck;
use tabnet_node::store::{CheckpointStore, Record, Replicated};
use tabnet_node::{NodeCore, NodeOutput};
use tabnet_replica::Replica;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::checkpoints::Checkpoints;
use crate::gossip::{self, Identity, Inbound, Outbox};
use crate::log_store::LogStore;
use crate::server::{self, Node};

const CONFIG_FILE: &str = "subnet.conf";
/// Messages waiting for a peer beyond this are dropped (consensus re-sends what matters).
const PEER_QUEUE: usize = 20_000;
/// Heights between catch-up packages unless `init-subnet --dkg-interval` says otherwise.
pub const DEFAULT_DKG_INTERVAL: u64 = 500;
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

pub(crate) fn now_millis() -> Time {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as Time).unwrap_or(0)
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
    let dealt = dealt_node(n, &file.dealer_seed, index);
    let identity = Arc::new(Identity { me: index, key: dealt.secret.proposal_key.clone(), peers: dealt.peers.clone() });
    let listener = TcpListener::bind(("127.0.0.1", file.p2p_port(index)))
        .await
        .map_err(|e| format!("cannot listen for peers on port {}: {e}", file.p2p_port(index)))?;
    let inbound = gossip::listen(listener, identity.clone(), now_millis);
    let peers: Vec<Option<Outbox>> =
        (0..n).map(|k| (k != index).then(|| gossip::connect(identity.clone(), k, file.p2p_port(k), PEER_QUEUE))).collect();
    let state_dir = node_dir(dir, index);
    let store = LogStore::open(&state_dir)?;
    let settings = server::Settings { bind: "127.0.0.1".into(), port: file.http_port(index), state_dir, www, memory_capacity: None };
    run(dealt, genesis_seed(&file.dealer_seed), file.dkg_interval, SubnetConfig::for_subnet_size(n as u64), store, settings, inbound, peers).await
}

/// Where a lone node keeps its seed: the dealer's seed of its subnet of one (earlier versions
/// kept their key seed under the same name).
const KEY_LONE_SEED: &str = "keys/seed";

/// `tabnet` (a lone node): a subnet of one node, on the same node core as every node of a
/// subnet — consensus orders its calls into blocks, every executed height is certified, a
/// checkpoint is kept every catch-up interval — with no peers. Fees are those of a subnet of
/// `fee_subnet_size` nodes.
pub async fn run_lone(settings: server::Settings, fee_subnet_size: u64) -> Result<(), String> {
    let mut store = LogStore::open(&settings.state_dir)?;
    let seed: [u8; 32] = match tabnet_replica::Store::get(&store, KEY_LONE_SEED)? {
        Some(bytes) => bytes.try_into().map_err(|_| format!("{KEY_LONE_SEED} is not 32 bytes"))?,
        None => {
            let mut seed = [0u8; 32];
            getrandom::getrandom(&mut seed).map_err(|e| format!("no OS randomness: {e}"))?;
            tabnet_replica::Store::put(&mut store, KEY_LONE_SEED, &seed)?;
            tabnet_replica::Store::flush(&mut store)?;
            seed
        }
    };
    let mut config = SubnetConfig::for_subnet_size(fee_subnet_size);
    if let Some(capacity) = settings.memory_capacity {
        config.subnet_memory_capacity = capacity;
    }
    run(dealt_node(1, &seed, 0), genesis_seed(&seed), DEFAULT_DKG_INTERVAL, config, store, settings, Inbound::none(), vec![None]).await
}

/// Waits until `node` has a certified state to answer from (a lone node's first block, or the
/// certification it kept): it starts listening only then, ready for its clients.
async fn certified(node: &Node) {
    let mut rounds = node.subscribe_rounds();
    while !tokio::task::block_in_place(|| node.with_replica(|r| r.has_certified_state())) {
        if rounds.changed().await.is_err() {
            return;
        }
    }
}

/// Opens node `dealt` of its subnet (whose genesis derives from `genesis`) on `store`, and
/// serves it (HTTP and its peers, whatever carries their frames) until stopped or until it
/// cannot go on.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn run(
    dealt: tabnet_node::dealt::DealtNode,
    genesis: Hash,
    dkg_interval: u64,
    config: SubnetConfig,
    store: LogStore,
    settings: server::Settings,
    inbound: Inbound,
    peers: Vec<Option<Outbox>>,
) -> Result<(), String> {
    let index = dealt.member.me;
    let state_dir = settings.state_dir.clone();
    let check = Arc::new(CallCheck { max_bytes: config.max_ingress_bytes });
    let member = dealt.member;
    let replica = tokio::task::spawn_blocking(move || Replica::open_member(store, config, member))
        .await
        .map_err(|e| format!("opening the state failed: {e}"))?
        .map_err(|e| format!("cannot open the state in {}: {e}", state_dir.display()))?;
    let (inbox_tx, inbox) = mpsc::channel::<Input>(PEER_QUEUE);
    let node = server::Node::new(replica, inbox_tx);
    let checkpoints = Checkpoints::open(&state_dir)?;
    let crypto = Arc::new(BlsCrypto::new(index, dealt.secret, dealt.public));
    let node_config = local_node_config(genesis, dkg_interval);
    let shared = SharedReplica(node.clone());
    let core = tokio::task::spawn_blocking(move || NodeCore::open(node_config, crypto, check, shared, checkpoints))
        .await
        .map_err(|e| format!("opening the node failed: {e}"))?
        .map_err(|e| format!("cannot resume the node in {}: {e}", state_dir.display()))?;
    let (verifier, verified) = Verifier::new(core.ingress_check());
    let lone = peers.len() == 1;
    let mut driver = tokio::spawn(drive(core, node.clone(), inbox, inbound, peers, verifier, verified));
    // A node that cannot store what it executed or signed stops: serving on would answer from,
    // or sign over, a state a restart would not have.
    // A lone node listens once it is ready; a node of a subnet at once (its status says when
    // the subnet has certified a state).
    let serve = async {
        if lone {
            certified(&node).await;
        }
        server::serve_node(node.clone(), settings).await
    };
    let result = tokio::select! {
        served = serve => served,
        stopped = &mut driver => return stopped.unwrap_or_else(|e| Err(format!("consensus panicked: {e}"))),
    };
    driver.abort();
    result
}

/// The replica the node core drives natively: the one the HTTP interface serves from, behind
/// the node's lock. Each call may wait for the lock and run a round, so the driver calls the
/// core where a thread may block (`block_in_place`).
struct SharedReplica(Arc<Node>);

impl Replicated for SharedReplica {
    fn executed_height(&self) -> Height {
        self.0.with_replica(|r| r.executed_height())
    }
    fn execute(&mut self, batch: &tabnet_consensus::Batch, records: &[Record], delete: &[String]) -> Result<Hash, String> {
        self.0.with_replica(|r| Replicated::execute(r, batch, records, delete))
    }
    fn checkpoint(&mut self) -> Result<Vec<u8>, String> {
        self.0.with_replica(Replicated::checkpoint)
    }
    fn restore(&mut self, checkpoint: &[u8], records: &[Record], delete: &[String]) -> Result<Hash, String> {
        self.0.with_replica(|r| Replicated::restore(r, checkpoint, records, delete))
    }
    fn certify(&mut self, height: Height, signature: [u8; 48], record: Record) -> Result<bool, String> {
        self.0.with_replica(|r| Replicated::certify(r, height, signature, record))
    }
    fn write_records(&mut self, records: &[Record], delete: &[String]) -> Result<(), String> {
        self.0.with_replica(|r| Replicated::write_records(r, records, delete))
    }
    fn records(&self, prefix: &str) -> Result<Vec<Record>, String> {
        self.0.with_replica(|r| Replicated::records(r, prefix))
    }
}

impl CheckpointStore for Checkpoints {
    fn add(&mut self, checkpoint: Checkpoint) -> Result<(), String> {
        Checkpoints::add(self, checkpoint)
    }
    fn kept(&self) -> &[Checkpoint] {
        &self.kept
    }
}

/// Sends `message` to peer `to`, or to every peer.
fn send(peers: &[Option<Outbox>], to: Option<usize>, message: &Message) {
    gossip::send(peers, to, tabnet_node::codec::encode(message));
}

type Reply = oneshot::Sender<Result<(), String>>;

/// Checks ingress off the consensus task, at most [`VERIFY_WORKERS`] at once, and returns the
/// outcomes to it (with the client's reply channel, for a client's call). What waits is
/// bounded by consensus (ingress of each peer being verified) and the HTTP edge (bodies held).
struct Verifier {
    check: Arc<dyn tabnet_consensus::IngressCheck>,
    workers: Arc<Semaphore>,
    done: mpsc::UnboundedSender<(VerifiedIngress, Option<Reply>)>,
}

impl Verifier {
    fn new(check: Arc<dyn tabnet_consensus::IngressCheck>) -> (Self, mpsc::UnboundedReceiver<(VerifiedIngress, Option<Reply>)>) {
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

/// The node's task: feeds the node core peers' messages, verified ingress and timer ticks,
/// and performs its outputs. The core runs rounds and writes to disk inside its calls, so they
/// are made with `block_in_place`: other tasks move off this thread meanwhile.
async fn drive(
    mut core: NodeCore<SharedReplica, Checkpoints>,
    node: Arc<Node>,
    mut inbox: mpsc::Receiver<Input>,
    mut inbound: Inbound,
    peers: Vec<Option<Outbox>>,
    verifier: Verifier,
    mut verified: mpsc::UnboundedReceiver<(VerifiedIngress, Option<Reply>)>,
) -> Result<(), String> {
    use tokio::task::block_in_place;
    let mut sync_started = std::time::Instant::now();
    // TABNET_TRACE=1: the node's consensus state every 2 s, on stderr (for diagnosing stalls).
    let trace = std::env::var_os("TABNET_TRACE").is_some();
    let mut traced = 0;
    loop {
        let now = now_millis();
        if trace && now >= traced + 2_000 {
            traced = now;
            let c = core.consensus();
            let n = c.crypto_stats();
            eprintln!(
                "tabnet trace: finalized {} notarized {} certified {} unvalidated {} ingress pool {} penalized {:?} requests dropped {:?} rejections {:?} crypto {:?}; {}",
                c.finalized_height(),
                c.notarized_height(),
                c.certified_height(),
                c.unvalidated_len(),
                c.ingress_pool_len(),
                (0..peers.len()).filter(|k| c.is_penalized(*k)).collect::<Vec<_>>(),
                (0..peers.len()).map(|k| c.requests_dropped(k)).collect::<Vec<_>>(),
                c.rejections(),
                n,
                c.round_view()
            );
        }
        let wake = core.next_wake(now).unwrap_or(now + 1_000);
        let sleep = tokio::time::sleep(Duration::from_millis(wake.saturating_sub(now)));
        tokio::select! {
            // `from` is the member whose node key the connection proved (see gossip.rs).
            // Frames already waiting are taken together (up to `FRAME_BATCH`), so that what is
            // done once per wake-up (outputs, the next wake time) is not done per frame.
            first = inbound.recv() => {
                let mut batch = vec![first];
                // (Only a frame this batch will handle is taken off its queue.)
                while batch.len() < FRAME_BATCH {
                    let Some(next) = inbound.try_recv() else { break };
                    batch.push(next);
                }
                block_in_place(|| core.on_messages(now_millis(), batch));
            }
            input = inbox.recv() => match input {
                Some(Input::Ingress(bytes, reply)) => verifier.verify(UnverifiedIngress::from_client(now_millis(), Ingress { bytes }), Some(reply)),
                None => return Ok(()),
            },
            Some((ingress, reply)) = verified.recv() => {
                let result = block_in_place(|| core.on_ingress_verified(now_millis(), ingress));
                if let Some(reply) = reply {
                    let _ = reply.send(result.map(|_| ()));
                }
            }
            _ = sleep => block_in_place(|| core.on_timer(now_millis())),
        }
        // Perform what it asked, in order (what it persisted is on disk already).
        while let Some(output) = core.poll() {
            match output {
                NodeOutput::Send { to, message } => send(&peers, to, &message),
                NodeOutput::VerifyIngress(ingress) => verifier.verify(ingress, None),
                NodeOutput::Certified { served: true, .. } => node.round_done(),
                NodeOutput::Certified { .. } | NodeOutput::Executed { .. } | NodeOutput::Proposed { .. } => {}
                NodeOutput::SyncStarted { finalized, target } => {
                    eprintln!(
                        "tabnet: this node is at height {finalized}, too far behind to catch up by blocks; syncing the state at height {target} from its peers"
                    );
                    sync_started = std::time::Instant::now();
                }
                NodeOutput::Synced { height, bytes, .. } => eprintln!(
                    "tabnet: state sync brought this node to height {height} ({bytes} bytes of state) in {} ms",
                    sync_started.elapsed().as_millis()
                ),
                NodeOutput::Failed(reason) => return Err(reason),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tabnet_consensus::{deal, Artifact, Config, ConsensusNode, Output, Start};
    use tabnet_node::replica::{unwrap_call, wrap_call};
    use tabnet_types::Principal;

    fn cbor<T: serde::Serialize>(value: &T) -> Vec<u8> {
        tabnet_node::codec::cbor(value)
    }

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
