//! One replica that is a whole subnet: it accepts ingress, orders it itself, executes rounds,
//! certifies the state after each round and answers queries and read_state requests.
//!
//! Sans-IO: time and randomness are arguments; storage goes through [`Store`].
//!
//! Keys and ids. The replica's 32-byte secret seed (made by the caller once, then kept in the
//! store) derives the subnet's BLS key and the node's Ed25519 key. The BLS public key is the
//! root key: with one subnet there is no delegation. The subnet id is the self-authenticating
//! principal of the DER root key (SHA-224(der) ‖ 0x02) — exactly what agents derive for a
//! certificate without delegation — and the node id is the self-authenticating principal of
//! the node's DER public key, as on the IC.

use ciborium::Value;
use std::collections::BTreeSet;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use tabnet_crypto::{
    hash_of_map, CertifiedMap, self_authenticating_principal, sha256, BlsSecretKey, Certificate, HashedTree, LabeledTree, NodeSigningKey,
    IC_RESPONSE, IC_STATE_ROOT,
};
use tabnet_execution::hypervisor::WasmResult;
use tabnet_execution::query_state::QueryState;
use tabnet_execution::scheduler::{ExecutionEnvironment, IngressMessage as ExecIngress, IngressOutcome};
use tabnet_execution::state::ReplicatedState;
use tabnet_execution::SubnetConfig;
use tabnet_types::{CanisterId, ErrorCode, Principal, UserError, MANAGEMENT_CANISTER};

use crate::canister_store;
use crate::envelope::{self, CanisterCall, Content, RequestType};
use crate::error::{HttpError, SubmitError};
use crate::ingress::{IngressHistory, IngressMessage, IngressPool, IngressState, IngressStatus, RequestId};
use crate::read_state::{self, CanisterAccess, ReadStateScope};
use crate::state_tree::{self, SubnetInfo};
use crate::store::Store;

/// The replicated state and ingress history kept in `store`.
fn load_replicated(store: &impl Store) -> Result<(ReplicatedState, IngressHistory), String> {
    let state = canister_store::load(store)?.unwrap_or_default();
    let mut history = IngressHistory::default();
    for key in store.list(PREFIX_INGRESS)? {
        let id = hex::decode(&key[PREFIX_INGRESS.len()..])
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .ok_or_else(|| format!("bad ingress key {key}"))?;
        let bytes = store.get(&key)?.ok_or_else(|| format!("store lost {key}"))?;
        let status: IngressStatus = ciborium::from_reader(bytes.as_slice()).map_err(|e| format!("bad ingress record {key}: {e}"))?;
        history.restore(id, status);
    }
    Ok((state, history))
}

/// The version reported by `/api/v2/status`.
pub const IMPL_VERSION: &str = concat!("tabnet-", env!("CARGO_PKG_VERSION"));

/// Store keys.
const KEY_SEED: &str = "keys/seed";
const PREFIX_INGRESS: &str = "ingress/";
const PREFIX_POOL: &str = "pool/";
/// The records of the replicated state (the same on every replica at a height): the canisters
/// and subnet metadata, and the ingress history.
const REPLICATED: [&str; 2] = [canister_store::PREFIX, PREFIX_INGRESS];

/// Management canister methods that create canisters: they may be sent to any effective
/// canister id (the new canister's id is not known yet).
const CREATE_METHODS: [&str; 2] = ["provisional_create_canister_with_cycles", "create_canister"];

/// The state as of the last round, certified.
struct Certified {
    height: u64,
    time: u64,
    /// The tree with its digests, so that each witness costs only what it reveals (shared
    /// with the query view of this state).
    tree: Arc<HashedTree>,
    /// BLS signature over `IC_STATE_ROOT ‖ root hash`; valid for every witness of `tree`.
    signature: [u8; 48],
    /// What queries run on (`None` before the first state is built).
    queries: Option<Arc<QueryState>>,
}

impl Certified {
    fn none() -> Self {
        Certified { height: 0, time: 0, tree: Arc::new(HashedTree::new(&LabeledTree::SubTree(Default::default()))), signature: [0; 48], queries: None }
    }
}

pub struct Replica<S: Store> {
    store: S,
    scheduler: ExecutionEnvironment,
    pool: IngressPool,
    history: IngressHistory,
    /// The subnet's signing key when this replica is a subnet of its own; `None` when the
    /// subnet's nodes share it and consensus certifies.
    subnet_key: Option<BlsSecretKey>,
    node_key: NodeSigningKey,
    subnet: SubnetInfo,
    /// `/request_status`, hashed entry by entry as calls change (not rebuilt each round).
    request_status: Arc<CertifiedMap>,
    certified: Certified,
    /// (Member of a subnet) the state executed last, waiting for consensus to certify it.
    pending: Option<Certified>,
    /// Canisters changed since the last query state was built, which shares the others.
    query_changed: BTreeSet<CanisterId>,
    /// Where the certified state's query view is published, for queries off the replica.
    query_views: QueryViews,
}

/// What a replica that is one node of a subnet knows about it.
pub struct Member {
    /// The subnet's public key (DER): the root key agents check certificates against.
    pub root_key_der: Vec<u8>,
    /// This node's Ed25519 secret (it signs query responses).
    pub node_key_seed: [u8; 32],
    /// Every node's Ed25519 public key (DER), in node order.
    pub nodes: Vec<Vec<u8>>,
    pub me: usize,
}

impl<S: Store> Replica<S> {
    /// Opens the replica kept in `store`, or creates a new one from `fresh_seed` if the store is
    /// empty (the seed is then persisted; later opens ignore `fresh_seed`). It is a subnet of
    /// its own: it holds the subnet key and certifies each round itself.
    pub fn open(mut store: S, fresh_seed: [u8; 32], config: SubnetConfig) -> Result<Self, String> {
        let seed: [u8; 32] = match store.get(KEY_SEED)? {
            Some(bytes) => bytes.try_into().map_err(|_| "stored key seed is not 32 bytes".to_string())?,
            None => {
                store.put(KEY_SEED, &fresh_seed)?;
                store.flush()?;
                fresh_seed
            }
        };
        let subnet_key = BlsSecretKey::from_seed(&sha256(&[b"tabnet-subnet-key".as_slice(), &seed].concat()));
        let node_key = NodeSigningKey::from_seed(sha256(&[b"tabnet-node-key".as_slice(), &seed].concat()));
        let root_key_der = subnet_key.public_key().to_der();
        let nodes = vec![node_key.public_key_der()];
        Self::open_with(store, config, root_key_der, node_key, 0, nodes, Some(subnet_key))
    }

    /// Opens the replica of node `me` of a subnet whose key is shared among its nodes: it
    /// executes the batches consensus finalizes ([`Self::execute_batch`]) and serves the states
    /// consensus certified ([`Self::certify_with`]). `nodes` are every node's query-signing
    /// keys (DER), in node order.
    pub fn open_member(store: S, config: SubnetConfig, member: Member) -> Result<Self, String> {
        let node_key = NodeSigningKey::from_seed(member.node_key_seed);
        if member.nodes.get(member.me) != Some(&node_key.public_key_der()) {
            return Err(format!("node {} of the subnet does not hold the key the subnet lists for it", member.me));
        }
        Self::open_with(store, config, member.root_key_der, node_key, member.me, member.nodes, None)
    }

    fn open_with(
        store: S,
        config: SubnetConfig,
        root_key_der: Vec<u8>,
        node_key: NodeSigningKey,
        me: usize,
        node_keys: Vec<Vec<u8>>,
        subnet_key: Option<BlsSecretKey>,
    ) -> Result<Self, String> {
        let nodes: Vec<(Principal, Vec<u8>)> = node_keys.into_iter().map(|der| (self_authenticating_principal(&der), der)).collect();
        let subnet = SubnetInfo {
            subnet_id: self_authenticating_principal(&root_key_der),
            node_id: nodes[me].0,
            public_key_der: root_key_der.clone(),
            nodes,
        };
        let (state, history) = load_replicated(&store)?;
        let pool = IngressPool::default();
        let query_views = QueryViews { subnet_id: subnet.subnet_id, current: Default::default(), cache_stats: Default::default() };
        // Calls that were accepted but not executed before a restart are lost from the pool;
        // they come back to the pool so that an acknowledged call is never dropped.
        let mut replica = Self {
            store,
            scheduler: ExecutionEnvironment::from_state(state, config, subnet.subnet_id, root_key_der),
            pool,
            history,
            subnet_key,
            node_key,
            subnet,
            request_status: Arc::new(CertifiedMap::new()),
            certified: Certified::none(),
            pending: None,
            query_changed: BTreeSet::new(),
            query_views,
        };
        replica.requeue_received()?;
        let time = replica.scheduler.state().metadata.time;
        let height = replica.scheduler.state().metadata.round;
        replica.certify(height, time);
        Ok(replica)
    }

    /// Ingress that was persisted as received goes back into the pool after a restart.
    fn requeue_received(&mut self) -> Result<(), String> {
        for key in self.store.list(PREFIX_POOL)? {
            let bytes = self.store.get(&key)?.ok_or_else(|| format!("store lost {key}"))?;
            let message: IngressMessage =
                ciborium::from_reader(bytes.as_slice()).map_err(|e| format!("bad pool record {key}: {e}"))?;
            if matches!(self.history.get(&message.request_id).map(|s| &s.state), Some(IngressState::Received)) {
                self.pool.push(message);
            } else {
                self.store.delete(&key)?;
            }
        }
        Ok(())
    }

    /// Gives the store back (to reopen it, in tests).
    pub fn into_store(self) -> S {
        self.store
    }

    /// The store, for a platform that commits its writes itself (see `BatchStore`).
    pub fn store_mut(&mut self) -> &mut S {
        &mut self.store
    }

    pub fn subnet_id(&self) -> Principal {
        self.subnet.subnet_id
    }
    pub fn node_id(&self) -> Principal {
        self.subnet.node_id
    }
    /// The DER-encoded root key (`/api/v2/status`'s `root_key`).
    pub fn root_key(&self) -> &[u8] {
        &self.subnet.public_key_der
    }
    /// Block time of the last round; the driver never asks for a round before it.
    pub fn last_round_time(&self) -> u64 {
        self.certified.time
    }
    pub fn certified_height(&self) -> u64 {
        self.certified.height
    }
    /// Whether accepted calls wait for a round.
    pub fn has_pending_ingress(&self) -> bool {
        !self.pool.is_empty()
    }
    pub fn state(&self) -> &ReplicatedState {
        self.scheduler.state()
    }
    pub fn request_status(&self, id: &RequestId) -> Option<&IngressStatus> {
        self.history.get(id)
    }

    // ---- calls ----

    /// Accepts a call envelope submitted at `/api/v*/canister/<ecid>/call`: decodes and
    /// authenticates it, asks execution whether the canister takes it, persists it and puts it
    /// in the pool. Submitting the same request again is harmless and returns its id.
    pub fn submit_call(&mut self, bytes: &[u8], effective_canister_id: &Principal, now: u64) -> Result<RequestId, SubmitError> {
        self.accept_call(authenticate_call(bytes, effective_canister_id, now)?, now)
    }

    /// [`Self::submit_call`] for an envelope already authenticated.
    pub fn accept_call(&mut self, call: AuthenticatedCall, now: u64) -> Result<RequestId, SubmitError> {
        let message = call.message();
        if self.history.contains(&message.request_id) || self.pool.contains(&message.request_id) {
            return Ok(message.request_id);
        }
        self.scheduler.should_accept_ingress(&to_execution(&message), now).map_err(SubmitError::Rejected)?;

        let status = received(&message, now);
        // Stored with the next round's group commit. Like the IC's 202, accepting a call does
        // not promise it survives a crash before it executes; its certified result does.
        self.store
            .put(&pool_key(&message.request_id), &to_cbor(&message))
            .and_then(|_| self.store.put(&ingress_key(&message.request_id), &to_cbor(&status)))
            .map_err(|e| HttpError::internal(format!("could not persist the call: {e}")))?;
        let id = message.request_id;
        self.history.insert(id, status);
        self.history.take_dirty_one(&id);
        self.pool.push(message);
        Ok(id)
    }

    /// (Member of a subnet) Checks a call before it goes to consensus: whether the canister
    /// takes it (`canister_inspect_message`, not replicated). A call the history already holds
    /// is accepted again (harmless: execution skips repeats).
    pub fn check_call(&mut self, call: &AuthenticatedCall, now: u64) -> Result<RequestId, SubmitError> {
        let message = call.message();
        if !self.history.contains(&message.request_id) {
            self.scheduler.should_accept_ingress(&to_execution(&message), now).map_err(SubmitError::Rejected)?;
        }
        Ok(message.request_id)
    }

    /// Executes one round at `now` (clamped to be after the last round) with everything in the
    /// pool, certifies and persists the result. Returns the ids of calls that completed.
    pub fn tick(&mut self, now: u64, random_seed: [u8; 32]) -> Result<Vec<RequestId>, String> {
        let time = now.max(self.certified.time.saturating_add(1));
        let (messages, expired) = self.pool.take(time);
        let completed = self.execute(time, random_seed, messages, expired)?;
        let height = self.scheduler.state().metadata.round;
        self.certify(height, time);
        Ok(completed)
    }

    /// (Member of a subnet) Executes a finalized batch: the calls in it (CBOR envelopes with
    /// their effective canister ids), at the block's time (ns), with its randomness. Calls that
    /// do not authenticate at that time, or that the history already holds, are skipped — the
    /// same way on every replica. Writes `records` with the round (consensus's own state).
    /// Returns the state tree's root hash, for consensus to certify.
    pub fn execute_batch(
        &mut self,
        time: u64,
        randomness: [u8; 32],
        calls: &[(Vec<u8>, Principal)],
        records: &[(String, Vec<u8>)],
    ) -> Result<[u8; 32], String> {
        let time = time.max(self.scheduler.state().metadata.time.saturating_add(1));
        let mut messages: Vec<IngressMessage> = Vec::with_capacity(calls.len());
        for (bytes, ecid) in calls {
            let Ok(call) = authenticate_call(bytes, ecid, time) else { continue };
            let message = call.message();
            if self.history.contains(&message.request_id) || messages.iter().any(|m| m.request_id == message.request_id) {
                continue;
            }
            self.history.insert(message.request_id, received(&message, time));
            messages.push(message);
        }
        for (key, value) in records {
            self.store.put(key, value)?;
        }
        self.execute(time, randomness, messages, Vec::new())?;
        let height = self.scheduler.state().metadata.round;
        self.certify(height, time);
        Ok(self.pending.as_ref().expect("a member keeps the state it executed").tree.root_hash())
    }

    /// (Member of a subnet) Consensus certified the state at `height` with the subnet's
    /// threshold signature over its root hash: serve it. Returns whether it was the state
    /// this replica executed last (an older one is no longer held and is skipped).
    pub fn certify_with(&mut self, height: u64, signature: [u8; 48]) -> bool {
        match self.pending.take() {
            Some(mut pending) if pending.height == height => {
                pending.signature = signature;
                self.certified = pending;
                self.publish_queries();
                true
            }
            other => {
                self.pending = other;
                false
            }
        }
    }

    /// Whether there is a certified state to answer from (a node of a subnet has none until
    /// consensus certifies its first).
    pub fn has_certified_state(&self) -> bool {
        self.subnet_key.is_some() || self.certified.signature != [0; 48]
    }

    fn require_certified_state(&self) -> Result<(), HttpError> {
        if self.has_certified_state() {
            Ok(())
        } else {
            Err(HttpError::unavailable("this node has no certified state yet; try again shortly"))
        }
    }

    /// The height of the state executed last (certified or not).
    pub fn executed_height(&self) -> u64 {
        self.scheduler.state().metadata.round
    }

    /// (Member of a subnet) The replicated state as one byte string, for a state-sync
    /// checkpoint: every record of the canisters, the subnet and the ingress history, sorted
    /// by key, in CBOR. Replicas that executed the same blocks produce the same bytes.
    ///
    /// Messages paused between slices are aborted first (every replica does so at this height),
    /// so the checkpoint holds no half-run message and a node that starts from it runs them
    /// from the beginning, as the others do.
    pub fn checkpoint(&mut self) -> Result<Vec<u8>, String> {
        if self.scheduler.abort_paused_executions() {
            let dirty = self.scheduler.state_mut().take_dirty();
            canister_store::save(&mut self.store, self.scheduler.state(), &dirty)?;
            self.query_changed.extend(dirty);
        }
        let mut records: Vec<(String, serde_bytes::ByteBuf)> = Vec::new();
        for prefix in REPLICATED {
            for key in self.store.list(prefix)? {
                let value = self.store.get(&key)?.ok_or_else(|| format!("store lost {key}"))?;
                records.push((key, serde_bytes::ByteBuf::from(value)));
            }
        }
        records.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(to_cbor(&records))
    }

    /// (Member of a subnet) Replaces the replicated state with a checkpoint's (state sync
    /// brought it) and writes `records` of the node's own with it, in one durable write; then
    /// serves nothing until consensus certifies a later height. Returns the state tree's root
    /// hash, which the catch-up package names.
    pub fn restore_checkpoint(&mut self, bytes: &[u8], records: &[(String, Vec<u8>)]) -> Result<[u8; 32], String> {
        let incoming: Vec<(String, serde_bytes::ByteBuf)> =
            ciborium::from_reader(bytes).map_err(|e| format!("the checkpoint does not decode: {e}"))?;
        if let Some((key, _)) = incoming.iter().find(|(key, _)| !REPLICATED.iter().any(|p| key.starts_with(p))) {
            return Err(format!("the checkpoint holds a record outside the replicated state: {key}"));
        }
        for prefix in REPLICATED.iter().chain([&PREFIX_POOL]) {
            for key in self.store.list(prefix)? {
                self.store.delete(&key)?;
            }
        }
        for (key, value) in incoming.iter().map(|(k, v)| (k, v.as_slice())).chain(records.iter().map(|(k, v)| (k, v.as_slice()))) {
            self.store.put(key, value)?;
        }
        self.store.flush()?;
        let (state, history) = load_replicated(&self.store)?;
        let config = self.scheduler.config().clone();
        self.scheduler = ExecutionEnvironment::from_state(state, config, self.subnet.subnet_id, self.subnet.public_key_der.clone());
        self.history = history;
        self.pool = IngressPool::default();
        self.request_status = Arc::new(CertifiedMap::new());
        self.certified = Certified::none();
        // Nothing of the old state may be shared with the new one's query view.
        self.pending = None;
        self.query_changed.clear();
        let (height, time) = (self.scheduler.state().metadata.round, self.scheduler.state().metadata.time);
        self.certify(height, time);
        Ok(self.pending.as_ref().expect("a member keeps the state it executed").tree.root_hash())
    }

    /// Stores records of the node's own (consensus's) next to the state, durably.
    pub fn put_records(&mut self, records: &[(String, Vec<u8>)]) -> Result<(), String> {
        for (key, value) in records {
            self.store.put(key, value)?;
        }
        self.store.flush()
    }

    /// Stores records to be written with the next round (not synced now).
    pub fn stage_records(&mut self, records: &[(String, Vec<u8>)]) -> Result<(), String> {
        for (key, value) in records {
            self.store.put(key, value)?;
        }
        Ok(())
    }

    pub fn record(&self, key: &str) -> Result<Option<Vec<u8>>, String> {
        self.store.get(key)
    }

    pub fn records(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, String> {
        let mut out = Vec::new();
        for key in self.store.list(prefix)? {
            if let Some(value) = self.store.get(&key)? {
                out.push((key, value));
            }
        }
        Ok(out)
    }

    pub fn delete_records(&mut self, keys: &[String]) -> Result<(), String> {
        for key in keys {
            self.store.delete(key)?;
        }
        Ok(())
    }

    /// The status of a call as the certified state shows it (`None` if it shows none yet).
    pub fn certified_status(&self, id: &RequestId) -> Option<&IngressStatus> {
        self.history.get(id).filter(|status| status.updated_at <= self.certified.time)
    }

    /// Runs a round: executes `messages`, forgets `expired`, records the outcomes, persists.
    fn execute(&mut self, time: u64, random_seed: [u8; 32], messages: Vec<IngressMessage>, expired: Vec<IngressMessage>) -> Result<Vec<RequestId>, String> {
        for m in &expired {
            // Never started: the call is forgotten as if it had not been received.
            self.history.set_state(
                &m.request_id,
                IngressState::rejected(&UserError::new(
                    ErrorCode::IngressMessageTimeout,
                    "Ingress message expired before it could be executed.",
                )),
                time,
            );
        }
        for m in &messages {
            self.history.set_state(&m.request_id, IngressState::Processing, time);
        }
        let pool_ids: Vec<RequestId> = messages.iter().chain(expired.iter()).map(|m| m.request_id).collect();

        let outcomes = self.scheduler.execute_round(time, random_seed, messages.iter().map(to_execution).collect());
        let mut completed = Vec::with_capacity(outcomes.len());
        for (id, outcome) in outcomes {
            let state = match outcome {
                IngressOutcome::Replied(reply) => IngressState::Replied(reply),
                IngressOutcome::Rejected { reject_code, message, error_code } => IngressState::Rejected {
                    reject_code: reject_code as u32,
                    reject_message: message,
                    error_code: Some(error_code.to_string()),
                },
            };
            self.history.set_state(&id, state, time);
            completed.push(id);
        }
        self.history.prune(time);
        self.persist(&pool_ids)?;
        Ok(completed)
    }

    /// Writes the round's changes: dirty canisters, metadata, ingress history; removes the
    /// executed messages from the stored pool.
    fn persist(&mut self, executed: &[RequestId]) -> Result<(), String> {
        let dirty = self.scheduler.state_mut().take_dirty();
        canister_store::save(&mut self.store, self.scheduler.state(), &dirty)?;
        self.query_changed.extend(dirty);
        for (id, status) in self.history.take_dirty() {
            match status {
                Some(status) => self.store.put(&ingress_key(&id), &to_cbor(&status))?,
                None => self.store.delete(&ingress_key(&id))?,
            }
        }
        for id in executed {
            self.store.delete(&pool_key(id))?;
        }
        self.store.flush()
    }

    /// Builds and signs the state tree of the current state.
    fn certify(&mut self, height: u64, time: u64) {
        // The last certified tree shares the map; let go of it so the map changes in place —
        // unless it must keep serving until consensus certifies the new one (then the map is
        // copied once here).
        if self.subnet_key.is_some() {
            self.certified.tree = Arc::new(HashedTree::new(&LabeledTree::SubTree(Default::default())));
        }
        let request_status = Arc::make_mut(&mut self.request_status);
        for (id, status) in self.history.take_changed() {
            match status {
                Some(status) => request_status.insert(id, HashedTree::new(&state_tree::request_status_entry(status))),
                None => request_status.remove(&id),
            }
        }
        // The state built last, certified or pending, shares what did not change.
        let previous = self.pending.take().and_then(|p| p.queries).or_else(|| self.certified.queries.clone());
        let changed = std::mem::take(&mut self.query_changed);
        let queries = Some(Arc::new(self.scheduler.query_state(previous.as_deref(), &changed, time)));
        let tree = Arc::new(HashedTree::new(&state_tree::build(time, self.scheduler.state(), self.request_status.clone(), &self.subnet)));
        match &self.subnet_key {
            Some(key) => {
                let signature = key.sign(&[IC_STATE_ROOT, &tree.root_hash()].concat());
                self.certified = Certified { height, time, tree, signature, queries };
            }
            // Consensus signs `IC_STATE_ROOT ‖ root hash` with the subnet's threshold key.
            None => self.pending = Some(Certified { height, time, tree, signature: [0; 48], queries }),
        }
        self.publish_queries();
    }

    /// A certificate revealing `paths` (and always `/time`) of the latest certified state.
    pub fn certificate(&self, paths: &[Vec<Vec<u8>>]) -> Vec<u8> {
        certificate(&self.certified.tree, self.certified.signature, paths)
    }

    /// The certificate a synchronous call answers with: its request status and `/time`.
    pub fn call_certificate(&self, id: &RequestId) -> Vec<u8> {
        self.certificate(&[vec![b"request_status".to_vec(), id.to_vec()]])
    }

    // ---- read_state ----

    /// Answers `/api/v*/canister/<ecid>/read_state` or `/api/v*/subnet/<id>/read_state`:
    /// the CBOR body `{certificate}`.
    pub fn read_state(&self, bytes: &[u8], scope: ReadStateScope, now: u64) -> Result<Vec<u8>, HttpError> {
        self.check_subnet(scope)?;
        self.answer_read_state(&authenticate(bytes, RequestType::ReadState, scope, now)?, scope)
    }

    /// [`Self::read_state`] for an envelope already authenticated.
    pub fn answer_read_state(&self, request: &Authenticated, scope: ReadStateScope) -> Result<Vec<u8>, HttpError> {
        self.check_subnet(scope)?;
        self.require_certified_state()?;
        let Content::ReadState { paths } = &request.0.content else { unreachable!("authenticated as a read_state") };
        read_state::authorize(paths, scope, &request.0.sender, &self.history, &StateAccess(self.scheduler.state()))?;
        let certificate = self.certificate(paths);
        Ok(cbor_map(vec![("certificate", Value::Bytes(certificate))]))
    }

    fn check_subnet(&self, scope: ReadStateScope) -> Result<(), HttpError> {
        check_subnet(self.subnet.subnet_id, scope)
    }

    // ---- queries ----

    /// Answers `/api/v*/canister/<ecid>/query` (`scope` is `Canister(ecid)`) or
    /// `/api/v3/subnet/<id>/query`: runs the query on the certified state and returns the
    /// signed CBOR response.
    pub fn query(&mut self, bytes: &[u8], scope: ReadStateScope, now: u64) -> Result<Vec<u8>, HttpError> {
        self.check_subnet(scope)?;
        let request = authenticate(bytes, RequestType::Query, scope, now)?;
        let result = self.run_query(&request, scope)?;
        Ok(self.query_signer().sign(result, &request, now))
    }

    /// Runs an authenticated query on the certified state's query view; [`QuerySigner::sign`]
    /// makes the response.
    pub fn run_query(&mut self, request: &Authenticated, scope: ReadStateScope) -> Result<Result<WasmResult, UserError>, HttpError> {
        self.query_views.run_query(request, scope)
    }

    /// Where this replica publishes the view queries run on, to answer them without it.
    pub fn query_views(&self) -> QueryViews {
        self.query_views.clone()
    }

    /// Publishes the certified state's query view (none while there is no certified state).
    fn publish_queries(&self) {
        let c = &self.certified;
        let view = match (&c.queries, self.has_certified_state()) {
            (Some(state), true) => Some(Arc::new(QueryView {
                tree: c.tree.clone(),
                signature: c.signature,
                state: state.clone(),
                answers: Default::default(),
            })),
            _ => None,
        };
        *self.query_views.current.write().unwrap_or_else(|e| e.into_inner()) = view;
    }

    /// What signs query responses; it needs no replica state, so edges sign outside it.
    pub fn query_signer(&self) -> QuerySigner {
        QuerySigner { key: self.node_key.clone(), node_id: self.subnet.node_id }
    }

    // ---- status ----

    /// The CBOR body of `/api/v2/status`.
    pub fn status(&self) -> Vec<u8> {
        cbor_map(vec![
            ("impl_version", Value::Text(IMPL_VERSION.into())),
            ("root_key", Value::Bytes(self.subnet.public_key_der.clone())),
            ("replica_health_status", Value::Text(if self.has_certified_state() { "healthy" } else { "waiting_for_certified_state" }.into())),
            ("certified_height", Value::Integer(self.certified.height.into())),
        ])
    }
}

/// Where a replica publishes the query view of its certified state after each round; cheap
/// to clone and shared with the edges, which answer queries with it without the replica, so a
/// query never holds up rounds and a round never waits for a query.
#[derive(Clone)]
pub struct QueryViews {
    subnet_id: Principal,
    /// Held only to swap or clone the pointer.
    current: Arc<RwLock<Option<Arc<QueryView>>>>,
    /// Queries answered from the query cache, and those run.
    cache_stats: Arc<(AtomicU64, AtomicU64)>,
}

/// The certified state as queries see it: immutable, shared by the queries that run on it.
struct QueryView {
    tree: Arc<HashedTree>,
    signature: [u8; 48],
    state: Arc<QueryState>,
    /// The query cache (the IC replica keeps one too): a query's answer is a function of the
    /// state, its time and certificate, the caller, the canister, the method and the argument,
    /// so on one view the same query has the same answer. A view lives until the next
    /// certified state, which starts with an empty cache. (The IC's cache also keeps answers
    /// across states while the canisters involved did not change; this one does not.)
    answers: Mutex<QueryAnswers>,
}

/// Bytes of keys and answers one view's query cache holds; past that it starts again empty.
const QUERY_CACHE_BYTES: usize = 16 << 20;

/// Who asked what: a query's identity, nonce and expiry aside.
#[derive(PartialEq, Eq, Hash)]
struct QueryKey {
    sender: Principal,
    canister_id: Principal,
    method: String,
    arg: Vec<u8>,
}

#[derive(Default)]
struct QueryAnswers {
    answers: HashMap<QueryKey, Result<WasmResult, UserError>>,
    bytes: usize,
}

impl QueryAnswers {
    fn insert(&mut self, key: QueryKey, answer: &Result<WasmResult, UserError>) {
        // A transient failure may not happen again: asked again, the query runs again.
        if matches!(answer, Err(e) if e.reject_code() == tabnet_types::RejectCode::SysTransient) {
            return;
        }
        let size = key.method.len() + key.arg.len() + 128 + match answer {
            Ok(WasmResult::Reply(bytes)) => bytes.len(),
            Ok(WasmResult::Reject(text)) => text.len(),
            Err(e) => e.message.len(),
        };
        if size > QUERY_CACHE_BYTES / 16 {
            return;
        }
        if self.bytes + size > QUERY_CACHE_BYTES {
            *self = QueryAnswers::default();
        }
        self.bytes += size;
        self.answers.insert(key, answer.clone());
    }
}

impl QueryViews {
    /// Runs an authenticated query on the latest certified state (it may take seconds: call it
    /// off the async threads); [`QuerySigner::sign`] makes the response.
    pub fn run_query(&self, request: &Authenticated, scope: ReadStateScope) -> Result<Result<WasmResult, UserError>, HttpError> {
        check_subnet(self.subnet_id, scope)?;
        let view = self.current.read().unwrap_or_else(|e| e.into_inner()).clone();
        let view = view.ok_or_else(|| HttpError::unavailable("this node has no certified state yet; try again shortly"))?;
        let Content::Query(call) = &request.0.content else { unreachable!("authenticated as a query") };
        let key = QueryKey { sender: request.0.sender, canister_id: call.canister_id, method: call.method_name.clone(), arg: call.arg.clone() };
        let answers = || view.answers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(answer) = answers().answers.get(&key) {
            self.cache_stats.0.fetch_add(1, Ordering::Relaxed);
            return Ok(answer.clone());
        }
        self.cache_stats.1.fetch_add(1, Ordering::Relaxed);
        let data_certificate = certificate(
            &view.tree,
            view.signature,
            &[vec![b"canister".to_vec(), call.canister_id.as_slice().to_vec(), b"certified_data".to_vec()]],
        );
        let answer = view.state.query(request.0.sender, call.canister_id, &call.method_name, call.arg.clone(), Some(data_certificate));
        answers().insert(key, &answer);
        Ok(answer)
    }

    /// Queries answered from the query cache and queries run, since this replica started.
    pub fn cache_stats(&self) -> (u64, u64) {
        (self.cache_stats.0.load(Ordering::Relaxed), self.cache_stats.1.load(Ordering::Relaxed))
    }
}

/// A 404 unless `scope` is this subnet (`subnet_id`) or a canister.
fn check_subnet(subnet_id: Principal, scope: ReadStateScope) -> Result<(), HttpError> {
    match scope {
        ReadStateScope::Subnet(id) if id != subnet_id => {
            Err(HttpError::not_found(format!("Subnet {} is not this subnet", id.to_text())))
        }
        _ => Ok(()),
    }
}

/// A certificate revealing `paths` (and always `/time`) of the state `tree` signed.
fn certificate(tree: &HashedTree, signature: [u8; 48], paths: &[Vec<Vec<u8>>]) -> Vec<u8> {
    let mut paths = paths.to_vec();
    paths.push(vec![b"time".to_vec()]);
    Certificate { tree: tree.witness(&paths), signature }.to_cbor()
}

/// Signs query responses as the node.
#[derive(Clone)]
pub struct QuerySigner {
    key: NodeSigningKey,
    node_id: Principal,
}

impl QuerySigner {
    /// `{status, reply | reject…, signatures: [{timestamp, signature, identity}]}`, the node
    /// signing `IC_RESPONSE ‖ hash_of_map(response without signatures, plus timestamp and
    /// request_id)`.
    pub fn sign(&self, result: Result<WasmResult, UserError>, request: &Authenticated, timestamp: u64) -> Vec<u8> {
        let request_id = &request.0.request_id;
        let mut fields: Vec<(&str, Value)> = match result {
            Ok(WasmResult::Reply(arg)) => vec![
                ("status", Value::Text("replied".into())),
                ("reply", Value::Map(vec![(Value::Text("arg".into()), Value::Bytes(arg))])),
            ],
            Ok(WasmResult::Reject(message)) => reject_fields(&UserError::new(ErrorCode::CanisterRejectedMessage, message)),
            Err(error) => reject_fields(&error),
        };
        let mut signed = fields.clone();
        signed.push(("timestamp", Value::Integer(timestamp.into())));
        signed.push(("request_id", Value::Bytes(request_id.to_vec())));
        let hash = hash_of_map(&map_value(signed)).expect("a map of text, blobs and nats hashes");
        let signature = self.key.sign(&[IC_RESPONSE, &hash].concat());
        fields.push((
            "signatures",
            Value::Array(vec![map_value(vec![
                ("timestamp", Value::Integer(timestamp.into())),
                ("signature", Value::Bytes(signature.to_vec())),
                ("identity", Value::Bytes(self.node_id.as_slice().to_vec())),
            ])]),
        ));
        cbor_map(fields)
    }
}

/// A query or read_state envelope, decoded and authenticated (signature, delegations, expiry,
/// effective canister id). That needs no replica state, so edges do it before taking the
/// replica.
pub struct Authenticated(envelope::Request);

/// A call envelope, decoded and authenticated, with the effective canister id it was sent to.
pub struct AuthenticatedCall {
    request: envelope::Request,
    effective_canister_id: Principal,
}

impl AuthenticatedCall {
    /// The call as an ingress message.
    fn message(&self) -> IngressMessage {
        let request = &self.request;
        let Content::Call(call) = &request.content else { unreachable!("authenticated as a call") };
        IngressMessage {
            request_id: request.request_id,
            sender: request.sender,
            canister_id: call.canister_id,
            method_name: call.method_name.clone(),
            arg: call.arg.clone(),
            ingress_expiry: request.ingress_expiry,
            effective_canister_id: self.effective_canister_id,
        }
    }
}

/// The status of a call just received.
fn received(message: &IngressMessage, time: u64) -> IngressStatus {
    IngressStatus {
        state: IngressState::Received,
        sender: message.sender,
        effective_canister_id: message.effective_canister_id,
        ingress_expiry: message.ingress_expiry,
        updated_at: time,
    }
}

/// Decodes and authenticates a call sent to `/api/v*/canister/<ecid>/call`.
pub fn authenticate_call(bytes: &[u8], effective_canister_id: &Principal, now: u64) -> Result<AuthenticatedCall, HttpError> {
    let request = envelope::decode(bytes, RequestType::Call)?;
    let Content::Call(call) = &request.content else { unreachable!("decode checked the type") };
    check_effective_canister_id(call, effective_canister_id)?;
    envelope::validate(&request, now, Some(&call.canister_id))?;
    Ok(AuthenticatedCall { request, effective_canister_id: *effective_canister_id })
}

/// Decodes and authenticates a query or read_state request sent with `scope`.
pub fn authenticate(bytes: &[u8], kind: RequestType, scope: ReadStateScope, now: u64) -> Result<Authenticated, HttpError> {
    let request = envelope::decode(bytes, kind)?;
    let target = match (&request.content, scope) {
        // As on the IC, a query to the management canister (fetch_canister_logs,
        // canister_status) goes to the URL of the canister it is about (agent-js sends it so):
        // the spec has the effective canister id be the `canister_id` of its argument.
        (Content::Query(call), ReadStateScope::Canister(ecid)) if call.canister_id == MANAGEMENT_CANISTER => {
            match management_target(&call.arg) {
                Some(target) if target == ecid => Some(call.canister_id),
                _ => {
                    return Err(HttpError::bad_request(format!(
                        "Effective canister id in URL {} is not the canister_id in the argument of management query {}",
                        ecid.to_text(),
                        call.method_name
                    )))
                }
            }
        }
        // Any other query's canister must be the effective one.
        (Content::Query(call), ReadStateScope::Canister(ecid)) if call.canister_id != ecid => {
            return Err(HttpError::bad_request(format!(
                "Specified CanisterId {} does not match effective canister id in URL {}",
                call.canister_id.to_text(),
                ecid.to_text()
            )));
        }
        (Content::Query(call), _) => Some(call.canister_id),
        (_, ReadStateScope::Canister(ecid)) => Some(ecid),
        (_, ReadStateScope::Subnet(_)) => None,
    };
    envelope::validate(&request, now, target.as_ref())?;
    Ok(Authenticated(request))
}

/// The body of a v2 call refused before execution, and of v3/v4's
/// `{status: "non_replicated_rejection", ...}` (`with_status`).
pub fn rejection_body(error: &UserError, with_status: bool) -> Vec<u8> {
    let mut fields = reject_fields(error);
    if with_status {
        fields[0].1 = Value::Text("non_replicated_rejection".into());
    } else {
        fields.remove(0);
    }
    cbor_map(fields)
}

/// The body of a synchronous call that completed: `{status: "replied", certificate}`.
pub fn replied_body(certificate: Vec<u8>) -> Vec<u8> {
    cbor_map(vec![("status", Value::Text("replied".into())), ("certificate", Value::Bytes(certificate))])
}

fn reject_fields(error: &UserError) -> Vec<(&'static str, Value)> {
    vec![
        ("status", Value::Text("rejected".into())),
        ("reject_code", Value::Integer((error.reject_code() as u32).into())),
        ("reject_message", Value::Text(error.message.clone())),
        ("error_code", Value::Text(error.code.to_string())),
    ]
}

fn map_value(fields: Vec<(&str, Value)>) -> Value {
    Value::Map(fields.into_iter().map(|(k, v)| (Value::Text(k.into()), v)).collect())
}

/// A CBOR map under the self-describing tag, as replicas send response bodies.
fn cbor_map(fields: Vec<(&str, Value)>) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(&Value::Tag(envelope::CBOR_SELF_DESCRIBE_TAG, Box::new(map_value(fields))), &mut out)
        .expect("CBOR to a Vec cannot fail");
    out
}

fn to_cbor<T: serde::Serialize>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(value, &mut out).expect("CBOR to a Vec cannot fail");
    out
}

fn ingress_key(id: &RequestId) -> String {
    format!("{PREFIX_INGRESS}{}", hex::encode(id))
}

fn pool_key(id: &RequestId) -> String {
    format!("pool/{}", hex::encode(id))
}

/// The effective canister id rules of the spec, for calls.
pub fn check_effective_canister_id(call: &CanisterCall, ecid: &Principal) -> Result<(), HttpError> {
    if call.canister_id != MANAGEMENT_CANISTER {
        if &call.canister_id != ecid {
            return Err(HttpError::bad_request(format!(
                "Specified CanisterId {} does not match effective canister id in URL {}",
                call.canister_id.to_text(),
                ecid.to_text()
            )));
        }
        return Ok(());
    }
    if CREATE_METHODS.contains(&call.method_name.as_str()) {
        return Ok(());
    }
    match management_target(&call.arg) {
        Some(target) if &target == ecid => Ok(()),
        Some(target) => Err(HttpError::bad_request(format!(
            "Effective canister id in URL {} does not match the canister_id {} in the argument of {}",
            ecid.to_text(),
            target.to_text(),
            call.method_name
        ))),
        None => Err(HttpError::bad_request(format!(
            "Could not determine the effective canister id of management method {}: its argument has no canister_id field",
            call.method_name
        ))),
    }
}

/// The `canister_id` field of a management call's Candid record argument (other fields and
/// further arguments are ignored, as Candid subtyping allows).
fn management_target(arg: &[u8]) -> Option<CanisterId> {
    #[derive(candid::Deserialize, candid::CandidType)]
    struct CanisterIdRecord {
        canister_id: Principal,
    }
    let mut de = candid::de::IDLDeserialize::new_with_config(arg, &tabnet_types::candid_untyped_decoder_config()).ok()?;
    de.get_value::<CanisterIdRecord>().ok().map(|r| r.canister_id)
}

struct StateAccess<'a>(&'a ReplicatedState);

impl CanisterAccess for StateAccess<'_> {
    fn controllers(&self, canister: &Principal) -> Option<Vec<Principal>> {
        self.0.controllers(canister).map(|c| c.to_vec())
    }
    fn metadata_is_public(&self, canister: &Principal, name: &str) -> Option<bool> {
        self.0.metadata_section(canister, name).map(|(public, _)| public)
    }
}

fn to_execution(m: &IngressMessage) -> ExecIngress {
    ExecIngress {
        id: m.request_id,
        sender: m.sender,
        canister_id: m.canister_id,
        method: m.method_name.clone(),
        arg: m.arg.clone(),
        effective_canister_id: m.effective_canister_id,
    }
}
