//! The system state of one canister: everything the replica keeps about it besides its Wasm
//! memories — controllers, status, cycles, settings, call contexts, callbacks, its input queue
//! and its log.

use crate::hypervisor::{ApiType, CanisterStatusKind, EntryPoint, ExecutionParameters, LogRecord, SystemStateView, WasmClosure};
use super::snapshot::CanisterSnapshot;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use tabnet_types::{CanisterId, ErrorCode, Principal, RejectCode, UserError};

/// An ingress message id (the request id).
pub type MessageId = [u8; 32];
pub type CallContextId = u64;
pub type CallbackId = u64;

/// Who is waiting for the response of a call context (or of a pending `stop_canister`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CallOrigin {
    Ingress { message_id: MessageId, user: Principal },
    /// `deadline` is set for best-effort calls.
    Canister { caller: CanisterId, callback_id: CallbackId, deadline: Option<u64> },
    /// Heartbeat and global timer: nobody waits.
    System,
}

impl CallOrigin {
    /// The principal `msg_caller` reports; `own_id` for system tasks.
    pub fn caller(&self, own_id: CanisterId) -> Principal {
        match self {
            CallOrigin::Ingress { user, .. } => *user,
            CallOrigin::Canister { caller, .. } => *caller,
            CallOrigin::System => own_id,
        }
    }
    pub fn deadline(&self) -> Option<u64> {
        match self {
            CallOrigin::Canister { deadline, .. } => *deadline,
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CanisterStatus {
    Running,
    /// Waiting for open call contexts to close; the stop requests are answered then.
    Stopping { stop_requests: Vec<CallOrigin> },
    Stopped,
}

impl CanisterStatus {
    pub fn kind(&self) -> CanisterStatusKind {
        match self {
            CanisterStatus::Running => CanisterStatusKind::Running,
            CanisterStatus::Stopping { .. } => CanisterStatusKind::Stopping,
            CanisterStatus::Stopped => CanisterStatusKind::Stopped,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LogVisibility {
    Controllers,
    Public,
    AllowedViewers(Vec<Principal>),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CanisterSettings {
    /// Percent, 0..=100.
    pub compute_allocation: u64,
    /// Bytes; 0 = best effort.
    pub memory_allocation: u64,
    /// Seconds.
    pub freezing_threshold: u64,
    pub reserved_cycles_limit: u128,
    /// Bytes; 0 = no limit.
    pub wasm_memory_limit: u64,
    pub wasm_memory_threshold: u64,
    pub log_visibility: LogVisibility,
    /// Sorted by name (see `management::validate_env_vars`).
    pub environment_variables: Vec<(String, String)>,
    /// Who besides controllers may list and read the canister's snapshots.
    #[serde(default = "controllers_only")]
    pub snapshot_visibility: LogVisibility,
    /// Who besides controllers and the canister itself may read `canister_status`.
    #[serde(default = "controllers_only")]
    pub status_visibility: LogVisibility,
    /// Calls from other canisters that attach fewer cycles are rejected before they run.
    #[serde(default)]
    pub minimum_incoming_canister_call_cycles: u128,
}

fn controllers_only() -> LogVisibility {
    LogVisibility::Controllers
}

impl LogVisibility {
    /// Whether `p` may read what this visibility guards (controllers always may).
    pub fn allows(&self, p: &Principal, controllers: &[Principal]) -> bool {
        controllers.contains(p)
            || match self {
                LogVisibility::Controllers => false,
                LogVisibility::Public => true,
                LogVisibility::AllowedViewers(viewers) => viewers.contains(p),
            }
    }
}

impl CanisterSettings {
    pub fn new(default_freezing_threshold: u64) -> Self {
        Self {
            compute_allocation: 0,
            memory_allocation: 0,
            freezing_threshold: default_freezing_threshold,
            reserved_cycles_limit: 5_000_000_000_000,
            wasm_memory_limit: 3 << 30,
            wasm_memory_threshold: 0,
            log_visibility: LogVisibility::Controllers,
            environment_variables: Vec::new(),
            snapshot_visibility: LogVisibility::Controllers,
            status_visibility: LogVisibility::Controllers,
            minimum_incoming_canister_call_cycles: 0,
        }
    }
}

/// An open call context: one incoming message (or system task) and the calls it made.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallContext {
    pub origin: CallOrigin,
    /// Cycles of the incoming message not yet accepted; refunded with the response.
    pub available_cycles: u128,
    pub responded: bool,
    /// Instructions its executions used so far (`performance_counter(1)`).
    #[serde(default)]
    pub instructions: u64,
    pub outstanding_callbacks: u64,
}

/// What to run when the response to an outgoing call arrives.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Callback {
    pub call_context: CallContextId,
    pub callee: Principal,
    pub on_reply: WasmClosure,
    pub on_reject: WasmClosure,
    pub on_cleanup: Option<WasmClosure>,
    /// Best-effort calls: when this passes, the caller gets SYS_UNKNOWN.
    pub deadline: Option<u64>,
    /// The deadline passed and the caller was (or is being) told; a late response is dropped.
    pub expired: bool,
}

/// A call in flight.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub receiver: Principal,
    pub method: String,
    #[serde(with = "serde_bytes")]
    pub arg: Vec<u8>,
    pub cycles: u128,
    pub origin: CallOrigin,
}

impl Request {
    pub fn sender(&self) -> Principal {
        match &self.origin {
            CallOrigin::Ingress { user, .. } => *user,
            CallOrigin::Canister { caller, .. } => *caller,
            CallOrigin::System => Principal::management_canister(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResponsePayload {
    Reply(#[serde(with = "serde_bytes")] Vec<u8>),
    Reject { code: RejectCode, message: String, error_code: Option<ErrorCode> },
}

/// The response to a call a canister made, on its way back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    pub callback_id: CallbackId,
    pub respondent: Principal,
    pub payload: ResponsePayload,
    pub refund: u128,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CanisterMessage {
    Request(Request),
    Response(Response),
}

/// Memory a queued message holds (see `crate::state::message_bytes`).
pub trait HeldBytes {
    fn held_bytes(&self) -> u64;
}

/// A FIFO of messages that keeps the sum of the memory they hold, so that the subnet's memory
/// is known without walking every queue. Stored (and hashed) as the plain list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageQueue<T> {
    messages: VecDeque<T>,
    bytes: u64,
}

impl<T> Default for MessageQueue<T> {
    fn default() -> Self {
        Self { messages: VecDeque::new(), bytes: 0 }
    }
}

impl<T: HeldBytes> MessageQueue<T> {
    pub fn push_back(&mut self, m: T) {
        self.bytes += m.held_bytes();
        self.messages.push_back(m);
    }
    pub fn push_front(&mut self, m: T) {
        self.bytes += m.held_bytes();
        self.messages.push_front(m);
    }
    pub fn pop_front(&mut self) -> Option<T> {
        let m = self.messages.pop_front()?;
        self.bytes -= m.held_bytes();
        Some(m)
    }
    /// Takes every message out.
    pub fn take_all(&mut self) -> VecDeque<T> {
        self.bytes = 0;
        std::mem::take(&mut self.messages)
    }
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &T> + ExactSizeIterator {
        self.messages.iter()
    }
    pub fn len(&self) -> usize {
        self.messages.len()
    }
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }
    /// Memory the messages hold.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl<T> IntoIterator for MessageQueue<T> {
    type Item = T;
    type IntoIter = std::collections::vec_deque::IntoIter<T>;
    fn into_iter(self) -> Self::IntoIter {
        self.messages.into_iter()
    }
}

impl<T: Serialize> Serialize for MessageQueue<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.messages.serialize(s)
    }
}

impl<'de, T: Deserialize<'de> + HeldBytes> Deserialize<'de> for MessageQueue<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let messages = VecDeque::<T>::deserialize(d)?;
        let bytes = messages.iter().map(HeldBytes::held_bytes).sum();
        Ok(Self { messages, bytes })
    }
}

/// A message executing in slices across rounds (deterministic time slicing): everything
/// needed to run it from its beginning. The Wasm execution itself waits in the instance and
/// is not replicated: a replica that lost it (a restart) runs the message again, slice by
/// slice, up to `fuel_given`, where every other replica paused it too; at a checkpoint every
/// replica starts it over (`fuel_given` 0). Meanwhile the canister runs nothing else.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LongExecution {
    /// The call context it runs in (none for cleanup).
    pub call_context: Option<CallContextId>,
    pub entry: EntryPoint,
    pub api: ApiType,
    /// What the System API saw when it started (time, balance, ...), so that a restart sees it too.
    pub sys: SystemStateView,
    pub params: ExecutionParameters,
    /// Fuel its slices were given so far; 0 before the first.
    pub fuel_given: u64,
    /// Instructions it used up to its pause.
    pub instructions_used: u64,
    pub then: AfterExecution,
}

/// What follows the end of a long execution.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AfterExecution {
    /// Close (or answer for) the call context.
    FinishCallContext,
    /// A reply or reject callback: its cleanup runs if it failed, then the call context closes.
    Callback { on_cleanup: Option<WasmClosure>, caller: Principal },
    /// A cleanup callback: then the call context closes with the callback's error.
    Cleanup { call_context: CallContextId, error: UserError },
}

/// An `install_code` running in slices across rounds (deterministic time slicing), as the IC
/// slices it: everything needed to run it from its beginning, and how far it got. The new Wasm
/// state is built aside (in memory, not replicated) and replaces the canister's only when the
/// install succeeds; meanwhile the canister runs nothing else and management calls about it
/// wait, and no other `install_code` starts on the subnet (the IC runs long installs one at a
/// time). A replica that lost the aside state (a restart) runs the install again, slice by
/// slice, up to `slices` (so that it pauses where every other replica did, host calls that
/// borrowed past a slice included); at a checkpoint every replica starts it over (`slices` 0).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LongInstall {
    /// Who waits for the reply (ingress or a calling canister).
    pub origin: CallOrigin,
    /// Cycles that came with the call: they go back with the response.
    pub refund: u128,
    /// The controller that asked (`msg_caller` of the hooks).
    pub caller: Principal,
    pub mode: InstallMode,
    /// The new module as uploaded.
    #[serde(with = "serde_bytes")]
    pub module: Vec<u8>,
    /// The argument of `canister_init` / `canister_post_upgrade`.
    #[serde(with = "serde_bytes")]
    pub arg: Vec<u8>,
    /// What the System API sees in every hook (time, balance, ...), fixed when it started.
    pub sys: SystemStateView,
    /// Limits; `instruction_limit` is the whole install's.
    pub params: ExecutionParameters,
    /// Whether the new module is 64-bit (its instructions cost more).
    pub wasm64: bool,
    /// Cycles taken from the balance up front for the whole limit; what the install did not
    /// use goes back at its end.
    pub prepaid: u128,
    /// Slices given so far; 0 before the first (and after an abort).
    pub slices: u64,
    /// What the calling canister gave as `sender_canister_version` (for the canister history).
    #[serde(default)]
    pub sender_canister_version: Option<u64>,
    /// Instructions it used up to its pause.
    pub instructions_used: u64,
}

/// What an `install_code` does with the canister's old Wasm state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum InstallMode {
    /// A fresh instance (`install` into an empty canister, or `reinstall`).
    Install { reinstall: bool },
    /// `canister_pre_upgrade` (unless skipped) on the old instance, then a new instance that
    /// keeps stable memory (and the heap with `wasm_memory_persistence = keep`).
    Upgrade { skip_pre_upgrade: bool, keep_heap: bool },
}

/// One log line as `fetch_canister_logs` returns it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    pub idx: u64,
    pub timestamp_nanos: u64,
    #[serde(with = "serde_bytes")]
    pub content: Vec<u8>,
}

/// The canister log: a ring bounded by its size (content plus a fixed overhead per record, so
/// that empty records cannot pile up either); indices keep counting.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CanisterLog {
    pub records: VecDeque<LogEntry>,
    pub next_idx: u64,
    /// Content bytes of `records`.
    pub bytes: usize,
}

impl CanisterLog {
    /// The IC keeps 4 KiB of log per canister (its default `log_memory_limit`).
    pub const MAX_BYTES: usize = 4096;
    /// What a record costs besides its content: its index and timestamp, as the IC counts it.
    pub const RECORD_OVERHEAD: usize = 16;

    /// Content and per-record overhead, the size the ring is bounded by.
    pub fn size(&self) -> usize {
        self.bytes + Self::RECORD_OVERHEAD * self.records.len()
    }

    pub fn push(&mut self, record: LogRecord) {
        let mut content = record.content;
        content.truncate(Self::MAX_BYTES - Self::RECORD_OVERHEAD);
        self.bytes += content.len();
        self.records.push_back(LogEntry { idx: self.next_idx, timestamp_nanos: record.timestamp_nanos, content });
        self.next_idx += 1;
        while self.size() > Self::MAX_BYTES {
            match self.records.pop_front() {
                Some(old) => self.bytes = self.bytes.saturating_sub(old.content.len()),
                None => break,
            }
        }
    }

    /// Drops every record (reinstall, uninstall); indices go on counting, so that a reader
    /// that fetched up to some index never sees that index again for another record.
    pub fn clear(&mut self) {
        self.records.clear();
        self.bytes = 0;
    }

    /// The records as one execution reports them (without indices).
    pub fn into_records(self) -> Vec<LogRecord> {
        self.records.into_iter().map(|e| LogRecord { timestamp_nanos: e.timestamp_nanos, content: e.content }).collect()
    }
}

/// Everything about a canister except its Wasm state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SystemState {
    pub canister_id: CanisterId,
    pub controllers: Vec<Principal>,
    pub status: CanisterStatus,
    pub cycles: u128,
    pub settings: CanisterSettings,
    #[serde(with = "serde_bytes")]
    pub certified_data: Vec<u8>,
    /// 0 = inactive.
    pub global_timer: u64,
    pub canister_version: u64,
    pub call_contexts: BTreeMap<CallContextId, CallContext>,
    pub next_call_context_id: CallContextId,
    pub callbacks: BTreeMap<CallbackId, Callback>,
    pub next_callback_id: CallbackId,
    pub input_queue: MessageQueue<CanisterMessage>,
    pub log: CanisterLog,
    /// Chunks uploaded with `upload_chunk`, by SHA-256.
    pub wasm_chunk_store: BTreeMap<[u8; 32], serde_bytes::ByteBuf>,
    /// Changes ever recorded in the canister history (creation, installs, uninstalls, snapshot
    /// loads, controller changes), including those dropped from `history`.
    pub total_num_changes: u64,
    /// The most recent changes, oldest first (`canister_info`); at most [`MAX_HISTORY`].
    #[serde(default)]
    pub history: VecDeque<CanisterChange>,
    /// Block time of the last storage/compute charge.
    pub last_charge_time: u64,
    /// Cycles burned, for metrics.
    pub cycles_consumed: u128,
    /// Where the `canister_on_low_wasm_memory` hook stands.
    #[serde(default)]
    pub low_wasm_memory_hook: LowWasmMemoryHook,
    /// A message running in slices across rounds, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub long_execution: Option<LongExecution>,
    /// An `install_code` running in slices across rounds, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub long_install: Option<Box<LongInstall>>,
    /// The canister's snapshots by local id. Stored and hashed beside this record, not in it
    /// (see `state::snapshot`): a round that changes the canister rewrites its record, and
    /// snapshots are large and rarely change.
    #[serde(skip)]
    pub snapshots: BTreeMap<u64, Arc<CanisterSnapshot>>,
    /// The local id of its next snapshot (ids are never reused).
    #[serde(default)]
    pub next_snapshot_id: u64,
}

/// The canister history keeps the 20 most recent changes, as the IC does (the spec promises
/// at least 20).
pub const MAX_HISTORY: usize = 20;

/// One entry of the canister history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CanisterChange {
    pub timestamp_nanos: u64,
    pub canister_version: u64,
    pub origin: ChangeOrigin,
    pub details: ChangeDetails,
}

/// Who made a change: a user, or a canister (with the version it gave as
/// `sender_canister_version`, if it did).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChangeOrigin {
    User(Principal),
    Canister { canister_id: Principal, canister_version: Option<u64> },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChangeDetails {
    /// `environment_variables_hash`: the hash-of-map of the variables, if the settings gave any.
    Creation { controllers: Vec<Principal>, environment_variables_hash: Option<[u8; 32]> },
    CodeUninstall,
    CodeDeployment { mode: DeploymentMode, module_hash: [u8; 32] },
    /// `from_canister`: the snapshot's canister, when it is another.
    LoadSnapshot {
        canister_version: u64,
        #[serde(with = "serde_bytes")]
        snapshot_id: Vec<u8>,
        taken_at: u64,
        source: super::snapshot::SnapshotSource,
        from_canister: Option<Principal>,
    },
    ControllersChange { controllers: Vec<Principal> },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeploymentMode {
    Install,
    Reinstall,
    Upgrade,
}

/// The low-Wasm-memory hook's status: ready when the Wasm memory left under
/// `wasm_memory_limit` falls below `wasm_memory_threshold`, executed once it ran, and back to
/// "not satisfied" only when memory frees up again (so it runs once per crossing).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum LowWasmMemoryHook {
    #[default]
    ConditionNotSatisfied,
    Ready,
    Executed,
}

impl SystemState {
    /// Re-evaluates the low-Wasm-memory condition for a heap of `heap_bytes`.
    pub fn update_low_wasm_memory_hook(&mut self, heap_bytes: u64) {
        let s = &self.settings;
        let low = s.wasm_memory_limit > 0 && s.wasm_memory_limit.saturating_sub(heap_bytes) < s.wasm_memory_threshold;
        self.low_wasm_memory_hook = match (low, self.low_wasm_memory_hook) {
            (false, _) => LowWasmMemoryHook::ConditionNotSatisfied,
            (true, LowWasmMemoryHook::ConditionNotSatisfied) => LowWasmMemoryHook::Ready,
            (true, status) => status,
        };
    }

    pub fn new(canister_id: CanisterId, controllers: Vec<Principal>, cycles: u128, settings: CanisterSettings, time: u64) -> Self {
        Self {
            canister_id,
            controllers,
            status: CanisterStatus::Running,
            cycles,
            settings,
            certified_data: Vec::new(),
            global_timer: 0,
            canister_version: 0,
            call_contexts: BTreeMap::new(),
            next_call_context_id: 0,
            callbacks: BTreeMap::new(),
            next_callback_id: 0,
            input_queue: MessageQueue::default(),
            log: CanisterLog::default(),
            wasm_chunk_store: BTreeMap::new(),
            total_num_changes: 0,
            history: VecDeque::new(),
            last_charge_time: time,
            cycles_consumed: 0,
            low_wasm_memory_hook: LowWasmMemoryHook::ConditionNotSatisfied,
            long_execution: None,
            long_install: None,
            snapshots: BTreeMap::new(),
            next_snapshot_id: 0,
        }
    }

    /// Whether a message or an `install_code` runs in slices on the canister: it runs
    /// nothing else until that ends.
    pub fn is_busy(&self) -> bool {
        self.long_execution.is_some() || self.long_install.is_some()
    }

    pub fn is_controller(&self, p: &Principal) -> bool {
        self.controllers.contains(p)
    }

    pub fn new_call_context(&mut self, origin: CallOrigin, available_cycles: u128) -> CallContextId {
        let id = self.next_call_context_id;
        self.next_call_context_id += 1;
        self.call_contexts.insert(id, CallContext { origin, available_cycles, responded: false, outstanding_callbacks: 0, instructions: 0 });
        id
    }

    pub fn register_callback(&mut self, callback: Callback) -> CallbackId {
        let id = self.next_callback_id;
        self.next_callback_id += 1;
        if let Some(ctx) = self.call_contexts.get_mut(&callback.call_context) {
            ctx.outstanding_callbacks += 1;
        }
        self.callbacks.insert(id, callback);
        id
    }

    /// Take cycles out of the balance; false (and nothing taken) if there are not enough.
    pub fn withdraw(&mut self, amount: u128) -> bool {
        match self.cycles.checked_sub(amount) {
            Some(rest) => {
                self.cycles = rest;
                true
            }
            None => false,
        }
    }

    /// Records a change made now (`time`) in the canister history; its version is the
    /// canister's after the change.
    pub fn record_change(&mut self, time: u64, origin: ChangeOrigin, details: ChangeDetails) {
        self.total_num_changes += 1;
        self.history.push_back(CanisterChange { timestamp_nanos: time, canister_version: self.canister_version, origin, details });
        while self.history.len() > MAX_HISTORY {
            self.history.pop_front();
        }
    }

    /// Bytes the canister's snapshots hold.
    pub fn snapshots_size(&self) -> u64 {
        self.snapshots.values().map(|s| s.size()).sum()
    }

    /// Burn cycles for fees: as many as there are.
    pub fn charge(&mut self, amount: u128) {
        let taken = amount.min(self.cycles);
        self.cycles -= taken;
        self.cycles_consumed = self.cycles_consumed.saturating_add(taken);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_is_a_bounded_ring_with_running_indices() {
        let mut log = CanisterLog::default();
        for i in 0..10u64 {
            log.push(LogRecord { timestamp_nanos: i, content: vec![b'x'; 1000] });
        }
        assert!(log.size() <= CanisterLog::MAX_BYTES);
        assert_eq!(log.records.len(), 4);
        assert_eq!(log.records.front().unwrap().idx, 6);
        assert_eq!(log.records.back().unwrap().idx, 9);
        assert_eq!(log.next_idx, 10);
    }

    #[test]
    fn empty_records_cannot_grow_the_log_without_bound() {
        let mut log = CanisterLog::default();
        for i in 0..100_000u64 {
            log.push(LogRecord { timestamp_nanos: i, content: Vec::new() });
        }
        assert_eq!(log.records.len(), CanisterLog::MAX_BYTES / CanisterLog::RECORD_OVERHEAD);
        assert_eq!(log.next_idx, 100_000);
        log.push(LogRecord { timestamp_nanos: 0, content: vec![b'x'; 10_000] });
        assert!(log.size() <= CanisterLog::MAX_BYTES);
        assert_eq!(log.records.len(), 1);
    }

    #[test]
    fn callbacks_count_against_their_call_context() {
        let id = tabnet_types::canister_id_from_index(0);
        let mut s = SystemState::new(id, vec![], 10, CanisterSettings::new(0), 0);
        let ctx = s.new_call_context(CallOrigin::System, 0);
        let closure = WasmClosure { func: 0, env: 0 };
        s.register_callback(Callback {
            call_context: ctx,
            callee: id,
            on_reply: closure,
            on_reject: closure,
            on_cleanup: None,
            deadline: None,
            expired: false,
        });
        assert_eq!(s.call_contexts[&ctx].outstanding_callbacks, 1);
        assert!(!s.withdraw(11));
        assert!(s.withdraw(4));
        s.charge(100);
        assert_eq!((s.cycles, s.cycles_consumed), (0, 6));
    }
}
