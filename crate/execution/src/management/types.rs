//! Candid types of the management canister, as the IC interface spec's `ic.did` defines them.

use candid::{CandidType, Deserialize, Nat, Principal};

pub type CanisterId = Principal;

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum LogVisibility {
    #[serde(rename = "controllers")]
    Controllers,
    #[serde(rename = "public")]
    Public,
    #[serde(rename = "allowed_viewers")]
    AllowedViewers(Vec<Principal>),
}

/// Who may list and read a canister's snapshots (`snapshot_visibility`); the shape of
/// [`LogVisibility`].
pub type SnapshotVisibility = LogVisibility;
/// Who may read a canister's status (`status_visibility`); the shape of [`LogVisibility`].
pub type StatusVisibility = LogVisibility;

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct EnvironmentVariable {
    pub name: String,
    pub value: String,
}

#[derive(CandidType, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct CanisterSettings {
    pub controllers: Option<Vec<Principal>>,
    pub compute_allocation: Option<Nat>,
    pub memory_allocation: Option<Nat>,
    pub freezing_threshold: Option<Nat>,
    pub reserved_cycles_limit: Option<Nat>,
    pub minimum_incoming_canister_call_cycles: Option<Nat>,
    pub log_visibility: Option<LogVisibility>,
    pub snapshot_visibility: Option<SnapshotVisibility>,
    pub status_visibility: Option<StatusVisibility>,
    pub wasm_memory_limit: Option<Nat>,
    pub wasm_memory_threshold: Option<Nat>,
    pub environment_variables: Option<Vec<EnvironmentVariable>>,
}

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct DefiniteCanisterSettings {
    pub controllers: Vec<Principal>,
    pub compute_allocation: Nat,
    pub memory_allocation: Nat,
    pub freezing_threshold: Nat,
    pub reserved_cycles_limit: Nat,
    pub minimum_incoming_canister_call_cycles: Nat,
    pub log_visibility: LogVisibility,
    pub log_memory_limit: Nat,
    pub snapshot_visibility: SnapshotVisibility,
    pub status_visibility: StatusVisibility,
    pub wasm_memory_limit: Nat,
    pub wasm_memory_threshold: Nat,
    pub environment_variables: Vec<EnvironmentVariable>,
}

#[derive(CandidType, Deserialize, Clone, Debug, Default)]
pub struct CreateCanisterArgs {
    pub settings: Option<CanisterSettings>,
    pub sender_canister_version: Option<u64>,
}

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct CreateCanisterResult {
    pub canister_id: CanisterId,
}

#[derive(CandidType, Deserialize, Clone, Debug, Default)]
pub struct ProvisionalCreateCanisterWithCyclesArgs {
    pub amount: Option<Nat>,
    pub settings: Option<CanisterSettings>,
    pub specified_id: Option<CanisterId>,
    pub sender_canister_version: Option<u64>,
}

#[derive(CandidType, Deserialize, Clone, Debug)]
pub struct ProvisionalTopUpCanisterArgs {
    pub canister_id: CanisterId,
    pub amount: Nat,
}

#[derive(CandidType, Deserialize, Clone, Debug)]
pub struct UpdateSettingsArgs {
    pub canister_id: CanisterId,
    pub settings: CanisterSettings,
    pub sender_canister_version: Option<u64>,
}

#[derive(CandidType, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum WasmMemoryPersistence {
    #[serde(rename = "keep")]
    Keep,
    #[serde(rename = "replace")]
    Replace,
}

#[derive(CandidType, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UpgradeOptions {
    pub skip_pre_upgrade: Option<bool>,
    pub wasm_memory_persistence: Option<WasmMemoryPersistence>,
}

#[derive(CandidType, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum CanisterInstallMode {
    #[serde(rename = "install")]
    Install,
    #[serde(rename = "reinstall")]
    Reinstall,
    #[serde(rename = "upgrade")]
    Upgrade(Option<UpgradeOptions>),
}

#[derive(CandidType, Deserialize, Clone, Debug)]
pub struct InstallCodeArgs {
    pub mode: CanisterInstallMode,
    pub canister_id: CanisterId,
    #[serde(with = "serde_bytes")]
    pub wasm_module: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub arg: Vec<u8>,
    pub sender_canister_version: Option<u64>,
}

/// `record { canister_id }` with an optional `sender_canister_version` (uninstall_code,
/// start/stop/delete_canister, canister_status, deposit_cycles, fetch_canister_logs).
#[derive(CandidType, Deserialize, Clone, Debug)]
pub struct CanisterIdRecord {
    pub canister_id: CanisterId,
}

#[derive(CandidType, Deserialize, Clone, Debug)]
pub struct UninstallCodeArgs {
    pub canister_id: CanisterId,
    pub sender_canister_version: Option<u64>,
}

#[derive(CandidType, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum CanisterStatusType {
    #[serde(rename = "running")]
    Running,
    #[serde(rename = "stopping")]
    Stopping,
    #[serde(rename = "stopped")]
    Stopped,
}

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct QueryStats {
    pub num_calls_total: Nat,
    pub num_instructions_total: Nat,
    pub request_payload_bytes_total: Nat,
    pub response_payload_bytes_total: Nat,
}

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct MemoryMetrics {
    pub wasm_memory_size: Nat,
    pub stable_memory_size: Nat,
    pub global_memory_size: Nat,
    pub wasm_binary_size: Nat,
    pub custom_sections_size: Nat,
    pub canister_history_size: Nat,
    pub wasm_chunk_store_size: Nat,
    pub snapshots_size: Nat,
    pub log_memory_store_size: Nat,
}

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct CanisterStatusResult {
    pub status: CanisterStatusType,
    /// Stopped with empty queues.
    pub ready_for_migration: bool,
    /// The canister version.
    pub version: u64,
    pub settings: DefiniteCanisterSettings,
    pub module_hash: Option<serde_bytes::ByteBuf>,
    pub memory_size: Nat,
    pub memory_metrics: MemoryMetrics,
    pub cycles: Nat,
    pub reserved_cycles: Nat,
    pub idle_cycles_burned_per_day: Nat,
    pub query_stats: QueryStats,
}

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct CanisterLogRecord {
    pub idx: u64,
    pub timestamp_nanos: u64,
    #[serde(with = "serde_bytes")]
    pub content: Vec<u8>,
}

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct FetchCanisterLogsResult {
    pub canister_log_records: Vec<CanisterLogRecord>,
}

#[derive(CandidType, Deserialize, Clone, Debug)]
pub struct UploadChunkArgs {
    pub canister_id: CanisterId,
    #[serde(with = "serde_bytes")]
    pub chunk: Vec<u8>,
}

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ChunkHash {
    #[serde(with = "serde_bytes")]
    pub hash: Vec<u8>,
}

#[derive(CandidType, Deserialize, Clone, Debug)]
pub struct InstallChunkedCodeArgs {
    pub mode: CanisterInstallMode,
    pub target_canister: CanisterId,
    pub store_canister: Option<CanisterId>,
    pub chunk_hashes_list: Vec<ChunkHash>,
    #[serde(with = "serde_bytes")]
    pub wasm_module_hash: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub arg: Vec<u8>,
    pub sender_canister_version: Option<u64>,
}

// ---- canister snapshots ----

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    #[serde(with = "serde_bytes")]
    pub id: Vec<u8>,
    pub taken_at_timestamp: u64,
    pub total_size: u64,
}

#[derive(CandidType, Deserialize, Clone, Debug)]
pub struct TakeCanisterSnapshotArgs {
    pub canister_id: CanisterId,
    pub replace_snapshot: Option<serde_bytes::ByteBuf>,
    pub uninstall_code: Option<bool>,
    pub sender_canister_version: Option<u64>,
}

#[derive(CandidType, Deserialize, Clone, Debug)]
pub struct LoadCanisterSnapshotArgs {
    pub canister_id: CanisterId,
    #[serde(with = "serde_bytes")]
    pub snapshot_id: Vec<u8>,
    pub sender_canister_version: Option<u64>,
}

/// `delete_canister_snapshot` and `read_canister_snapshot_metadata`.
#[derive(CandidType, Deserialize, Clone, Debug)]
pub struct SnapshotIdRecord {
    pub canister_id: CanisterId,
    #[serde(with = "serde_bytes")]
    pub snapshot_id: Vec<u8>,
}

#[derive(CandidType, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SnapshotSource {
    #[serde(rename = "taken_from_canister")]
    TakenFromCanister(candid::Reserved),
    #[serde(rename = "metadata_upload")]
    MetadataUpload(candid::Reserved),
}

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq)]
pub enum SnapshotGlobal {
    #[serde(rename = "i32")]
    I32(i32),
    #[serde(rename = "i64")]
    I64(i64),
    #[serde(rename = "f32")]
    F32(f32),
    #[serde(rename = "f64")]
    F64(f64),
    #[serde(rename = "v128")]
    V128(Nat),
}

#[derive(CandidType, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum GlobalTimer {
    #[serde(rename = "inactive")]
    Inactive,
    #[serde(rename = "active")]
    Active(u64),
}

#[derive(CandidType, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnLowWasmMemoryHookStatus {
    #[serde(rename = "condition_not_satisfied")]
    ConditionNotSatisfied,
    #[serde(rename = "ready")]
    Ready,
    #[serde(rename = "executed")]
    Executed,
}

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq)]
pub struct ReadCanisterSnapshotMetadataResult {
    pub source: SnapshotSource,
    pub taken_at_timestamp: u64,
    pub wasm_module_size: u64,
    pub globals: Vec<SnapshotGlobal>,
    pub wasm_memory_size: u64,
    pub stable_memory_size: u64,
    pub wasm_chunk_store: Vec<ChunkHash>,
    pub canister_version: u64,
    #[serde(with = "serde_bytes")]
    pub certified_data: Vec<u8>,
    pub global_timer: Option<GlobalTimer>,
    pub on_low_wasm_memory_hook_status: Option<OnLowWasmMemoryHookStatus>,
}

#[derive(CandidType, Deserialize, Clone, Debug)]
pub enum SnapshotDataKind {
    #[serde(rename = "wasm_module")]
    WasmModule { offset: u64, size: u64 },
    #[serde(rename = "wasm_memory")]
    WasmMemory { offset: u64, size: u64 },
    #[serde(rename = "stable_memory")]
    StableMemory { offset: u64, size: u64 },
    #[serde(rename = "wasm_chunk")]
    WasmChunk {
        #[serde(with = "serde_bytes")]
        hash: Vec<u8>,
    },
}

#[derive(CandidType, Deserialize, Clone, Debug)]
pub struct ReadCanisterSnapshotDataArgs {
    pub canister_id: CanisterId,
    #[serde(with = "serde_bytes")]
    pub snapshot_id: Vec<u8>,
    pub kind: SnapshotDataKind,
}

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ReadCanisterSnapshotDataResult {
    #[serde(with = "serde_bytes")]
    pub chunk: Vec<u8>,
}

#[derive(CandidType, Deserialize, Clone, Debug)]
pub struct UploadCanisterSnapshotMetadataArgs {
    pub canister_id: CanisterId,
    pub replace_snapshot: Option<serde_bytes::ByteBuf>,
    pub wasm_module_size: u64,
    pub globals: Vec<SnapshotGlobal>,
    pub wasm_memory_size: u64,
    pub stable_memory_size: u64,
    #[serde(with = "serde_bytes")]
    pub certified_data: Vec<u8>,
    pub global_timer: Option<GlobalTimer>,
    pub on_low_wasm_memory_hook_status: Option<OnLowWasmMemoryHookStatus>,
}

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct UploadCanisterSnapshotMetadataResult {
    #[serde(with = "serde_bytes")]
    pub snapshot_id: Vec<u8>,
}

#[derive(CandidType, Deserialize, Clone, Debug)]
pub enum SnapshotDataOffset {
    #[serde(rename = "wasm_module")]
    WasmModule { offset: u64 },
    #[serde(rename = "wasm_memory")]
    WasmMemory { offset: u64 },
    #[serde(rename = "stable_memory")]
    StableMemory { offset: u64 },
    #[serde(rename = "wasm_chunk")]
    WasmChunk,
}

#[derive(CandidType, Deserialize, Clone, Debug)]
pub struct UploadCanisterSnapshotDataArgs {
    pub canister_id: CanisterId,
    #[serde(with = "serde_bytes")]
    pub snapshot_id: Vec<u8>,
    pub kind: SnapshotDataOffset,
    #[serde(with = "serde_bytes")]
    pub chunk: Vec<u8>,
}

// ---- canister_info ----

#[derive(CandidType, Deserialize, Clone, Debug)]
pub struct CanisterInfoArgs {
    pub canister_id: CanisterId,
    pub num_requested_changes: Option<u64>,
}

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum ChangeOrigin {
    #[serde(rename = "from_user")]
    FromUser { user_id: Principal },
    #[serde(rename = "from_canister")]
    FromCanister { canister_id: Principal, canister_version: Option<u64> },
}

#[derive(CandidType, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum CodeDeploymentMode {
    #[serde(rename = "install")]
    Install,
    #[serde(rename = "reinstall")]
    Reinstall,
    #[serde(rename = "upgrade")]
    Upgrade,
}

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum ChangeDetails {
    #[serde(rename = "creation")]
    Creation { controllers: Vec<Principal>, environment_variables_hash: Option<serde_bytes::ByteBuf> },
    #[serde(rename = "code_uninstall")]
    CodeUninstall,
    #[serde(rename = "code_deployment")]
    CodeDeployment { mode: CodeDeploymentMode, module_hash: serde_bytes::ByteBuf },
    #[serde(rename = "load_snapshot")]
    LoadSnapshot {
        canister_version: u64,
        snapshot_id: serde_bytes::ByteBuf,
        taken_at_timestamp: u64,
        source: SnapshotSource,
        from_canister_id: Option<Principal>,
    },
    #[serde(rename = "controllers_change")]
    ControllersChange { controllers: Vec<Principal> },
}

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub timestamp_nanos: u64,
    pub canister_version: u64,
    pub origin: ChangeOrigin,
    pub details: ChangeDetails,
}

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct CanisterInfoResult {
    pub total_num_changes: u64,
    pub recent_changes: Vec<Change>,
    pub module_hash: Option<serde_bytes::ByteBuf>,
    pub controllers: Vec<Principal>,
}
