//! Support for driving a spawned `tabnet` node through DFINITY's `ic-agent`, exactly as a Rust
//! user would: start the binary on a free port and a state directory, build agents that fetch
//! the root key and verify everything, and talk to the management canister.

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use candid::{CandidType, Decode, Encode, Principal};
use ic_agent::agent::RejectResponse;
use ic_agent::identity::{BasicIdentity, Prime256v1Identity, Secp256k1Identity};
use ic_agent::{Agent, AgentError, Identity};
use serde::Deserialize;

/// The workspace root (this package lives in `tests/agent-rs`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("..")
}

/// The node binary: `$TABNET_BIN`, else `target/debug/tabnet` of the workspace.
pub fn tabnet_bin() -> PathBuf {
    match std::env::var_os("TABNET_BIN") {
        Some(path) => PathBuf::from(path),
        None => workspace_root().join("target").join("debug").join("tabnet"),
    }
}

/// A module from `target/canisters/` (built by `scripts/build-canisters.sh`).
pub fn canister_wasm(name: &str) -> Vec<u8> {
    let path = workspace_root().join("target").join("canisters").join(format!("{name}.wasm"));
    std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; run scripts/build-canisters.sh", path.display()))
}

/// Canister id with the given index: big-endian u64 ‖ 0x01 0x01.
pub fn canister_id_from_index(index: u64) -> Principal {
    let mut bytes = index.to_be_bytes().to_vec();
    bytes.extend_from_slice(&[1, 1]);
    Principal::from_slice(&bytes)
}

/// Index of a canister id (inverse of [`canister_id_from_index`]).
pub fn canister_index(id: Principal) -> u64 {
    let bytes = id.as_slice();
    assert_eq!(bytes.len(), 10, "{id} is not a canister id");
    u64::from_be_bytes(bytes[..8].try_into().unwrap())
}

/// One `tabnet` process on a state directory; killed on drop, directory removed on drop
/// unless it was given by the caller.
///
/// With `TABNET_NODES=N` set it is a subnet of N `tabnet node` processes instead (made with
/// `tabnet init-subnet`), and the tests talk to node `TABNET_NODE_INDEX` (default 1).
pub struct TabnetNode {
    children: Vec<Child>,
    /// (Subnet) its size and the node the tests talk to.
    subnet: Option<(usize, usize)>,
    port: u16,
    state_dir: PathBuf,
    log_path: PathBuf,
}

impl TabnetNode {
    /// Starts a node on a fresh temporary state directory.
    pub async fn start() -> TabnetNode {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let unique = format!(
            "tabnet-agent-rs-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let state_dir = std::env::temp_dir().join(unique);
        let _ = std::fs::remove_dir_all(&state_dir);
        std::fs::create_dir_all(&state_dir).expect("creating the state directory");
        let subnet = std::env::var("TABNET_NODES").ok().and_then(|n| n.parse::<usize>().ok()).map(|n| {
            let index = std::env::var("TABNET_NODE_INDEX").ok().and_then(|k| k.parse().ok()).unwrap_or(1usize);
            (n, index.min(n - 1))
        });
        let mut node = TabnetNode {
            children: Vec::new(),
            subnet,
            port: 0,
            log_path: state_dir.with_extension("log"),
            state_dir,
        };
        if let Some((n, _)) = subnet {
            node.port = free_ports(2 * n);
            let status = Command::new(tabnet_bin())
                .args(["init-subnet", "--nodes", &n.to_string(), "--port", &node.port.to_string(), "--dir"])
                .arg(&node.state_dir)
                .status()
                .expect("running tabnet init-subnet");
            assert!(status.success(), "tabnet init-subnet failed");
        }
        node.spawn().await;
        node
    }

    pub fn url(&self) -> String {
        match self.subnet {
            Some((_, index)) => format!("http://127.0.0.1:{}", self.port + index as u16),
            None => format!("http://127.0.0.1:{}", self.port),
        }
    }

    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// Kills the process and starts it again on the same state directory and a new port.
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn().await;
    }

    fn kill(&mut self) {
        for mut child in self.children.drain(..) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    async fn spawn(&mut self) {
        let bin = tabnet_bin();
        assert!(
            bin.exists(),
            "tabnet binary not found at {}: cargo build -p tabnet, or set TABNET_BIN",
            bin.display()
        );
        let log = File::create(&self.log_path).expect("creating the node log");
        let mut commands = Vec::new();
        match self.subnet {
            Some((n, _)) => {
                for k in 0..n {
                    let mut cmd = Command::new(&bin);
                    cmd.args(["node", "--index", &k.to_string(), "--dir"]).arg(&self.state_dir);
                    commands.push(cmd);
                }
            }
            None => {
                self.port = free_port();
                let mut cmd = Command::new(&bin);
                cmd.arg("--port").arg(self.port.to_string()).arg("--state-dir").arg(&self.state_dir);
                commands.push(cmd);
            }
        }
        for mut cmd in commands {
            let child = cmd
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log.try_clone().unwrap())
                .spawn()
                .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
            self.children.push(child);
        }

        // Ready when /api/v2/status answers healthy (a subnet's node: once it has a certified state).
        let probe = Agent::builder().with_url(self.url()).build().unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.children.iter_mut().find_map(|c| c.try_wait().ok().flatten()) {
                panic!("tabnet exited during start-up ({status}):\n{}", self.log());
            }
            if probe.status().await.is_ok_and(|s| s.replica_health_status.as_deref().is_none_or(|h| h == "healthy")) {
                return;
            }
            if Instant::now() > deadline {
                panic!("tabnet did not answer /api/v2/status within 60 s:\n{}", self.log());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for TabnetNode {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.state_dir);
        let _ = std::fs::remove_file(&self.log_path);
    }
}

/// `count` consecutive ports that were free a moment ago.
fn free_ports(count: usize) -> u16 {
    // Tests run in parallel: each call starts from its own place.
    static CALLS: AtomicU32 = AtomicU32::new(0);
    let call = CALLS.fetch_add(1, Ordering::Relaxed);
    for attempt in 0..100u32 {
        let base = 20_000 + (std::process::id().wrapping_mul(7919).wrapping_add((call * 100 + attempt) * 613) % 40_000) as u16;
        if (0..count as u16).all(|k| TcpListener::bind(("127.0.0.1", base + k)).is_ok()) {
            return base;
        }
    }
    panic!("no {count} consecutive free ports");
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding an ephemeral port");
    listener.local_addr().unwrap().port()
}

/// 32 bytes from the OS, e.g. a key seed.
pub fn random_32() -> [u8; 32] {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes).expect("OS randomness");
    bytes
}

pub fn ed25519_identity() -> BasicIdentity {
    BasicIdentity::from_raw_key(&random_32())
}

/// The same Ed25519 identity every time for one seed (to act as one user across restarts).
pub fn ed25519_identity_from_seed(seed: &[u8; 32]) -> BasicIdentity {
    BasicIdentity::from_raw_key(seed)
}

pub fn secp256k1_identity() -> Secp256k1Identity {
    Secp256k1Identity::from_private_key(k256::SecretKey::from_slice(&random_32()).unwrap())
}

pub fn p256_identity() -> Prime256v1Identity {
    Prime256v1Identity::from_private_key(p256::SecretKey::from_slice(&random_32()).unwrap())
}

/// An agent for `node` that fetched the node's root key; certificates and query signatures
/// are verified (ic-agent's defaults, stated here so nobody turns them off by accident).
pub async fn agent(node: &TabnetNode, identity: impl Identity + 'static) -> Agent {
    let agent = Agent::builder()
        .with_url(node.url())
        .with_identity(identity)
        .with_verify_query_signatures(true)
        .build()
        .expect("building the agent");
    agent.fetch_root_key().await.expect("fetching the root key");
    agent
}

/// The reject inside an agent error, if it is one.
pub fn reject_of(err: &AgentError) -> Option<&RejectResponse> {
    match err {
        AgentError::CertifiedReject { reject, .. } | AgentError::UncertifiedReject { reject, .. } => {
            Some(reject)
        }
        _ => None,
    }
}

/// Asserts `result` is a reject with `reject_code` (as a number) and, if given, `error_code`.
#[track_caller]
pub fn assert_reject<T: std::fmt::Debug>(
    result: Result<T, AgentError>,
    reject_code: u64,
    error_code: Option<&str>,
) -> RejectResponse {
    let err = result.expect_err("expected a reject, but the call succeeded");
    let reject = reject_of(&err).unwrap_or_else(|| panic!("expected a reject, got {err}")).clone();
    assert_eq!(reject.reject_code as u64, reject_code, "{}", reject.reject_message);
    if let Some(code) = error_code {
        assert_eq!(reject.error_code.as_deref(), Some(code), "{}", reject.reject_message);
    }
    reject
}

// ---- management canister (types from the interface spec's ic.did) ----

#[derive(CandidType, Default)]
pub struct CanisterSettings {
    pub controllers: Option<Vec<Principal>>,
    pub compute_allocation: Option<candid::Nat>,
    pub memory_allocation: Option<candid::Nat>,
    pub freezing_threshold: Option<candid::Nat>,
}

#[derive(CandidType)]
struct ProvisionalCreateArgs {
    amount: Option<candid::Nat>,
    settings: Option<CanisterSettings>,
    specified_id: Option<Principal>,
    sender_canister_version: Option<u64>,
}

#[derive(CandidType, Deserialize)]
struct CanisterIdRecord {
    canister_id: Principal,
}

#[derive(CandidType, Deserialize, Clone, Copy, Debug)]
pub enum WasmMemoryPersistence {
    #[serde(rename = "keep")]
    Keep,
    #[serde(rename = "replace")]
    Replace,
}

#[derive(CandidType, Deserialize, Clone, Copy, Debug)]
pub struct UpgradeOptions {
    pub skip_pre_upgrade: Option<bool>,
    pub wasm_memory_persistence: Option<WasmMemoryPersistence>,
}

#[derive(CandidType, Deserialize, Clone, Copy, Debug)]
pub enum InstallMode {
    #[serde(rename = "install")]
    Install,
    #[serde(rename = "reinstall")]
    Reinstall,
    #[serde(rename = "upgrade")]
    Upgrade(Option<UpgradeOptions>),
}

#[derive(CandidType)]
struct InstallCodeArgs {
    mode: InstallMode,
    canister_id: Principal,
    wasm_module: Vec<u8>,
    arg: Vec<u8>,
    sender_canister_version: Option<u64>,
}

#[derive(CandidType, Deserialize, Debug)]
pub struct DefiniteCanisterSettings {
    pub controllers: Vec<Principal>,
}

#[derive(CandidType, Deserialize, Debug)]
pub enum CanisterStatusKind {
    #[serde(rename = "running")]
    Running,
    #[serde(rename = "stopping")]
    Stopping,
    #[serde(rename = "stopped")]
    Stopped,
}

#[derive(CandidType, Deserialize, Debug)]
pub struct CanisterStatus {
    pub status: CanisterStatusKind,
    pub settings: DefiniteCanisterSettings,
    pub module_hash: Option<Vec<u8>>,
    pub cycles: candid::Nat,
}

/// Cycles each test canister gets.
pub const CANISTER_CYCLES: u128 = 10_000_000_000_000;

/// Creates a canister through `provisional_create_canister_with_cycles`, addressed (as the
/// spec allows for creation) to the first canister id of the subnet's range.
pub async fn create_canister(agent: &Agent) -> Result<Principal, AgentError> {
    let arg = ProvisionalCreateArgs {
        amount: Some(CANISTER_CYCLES.into()),
        settings: None,
        specified_id: None,
        sender_canister_version: None,
    };
    let reply = agent
        .update(&Principal::management_canister(), "provisional_create_canister_with_cycles")
        .with_effective_canister_id(canister_id_from_index(0))
        .with_arg(Encode!(&arg).unwrap())
        .call_and_wait()
        .await?;
    Ok(Decode!(&reply, CanisterIdRecord).expect("decoding the new canister id").canister_id)
}

pub async fn install_code(
    agent: &Agent,
    canister_id: Principal,
    mode: InstallMode,
    wasm_module: Vec<u8>,
    arg: Vec<u8>,
) -> Result<(), AgentError> {
    let args = InstallCodeArgs {
        mode,
        canister_id,
        wasm_module,
        arg,
        sender_canister_version: None,
    };
    management_update(agent, "install_code", canister_id, Encode!(&args).unwrap()).await?;
    Ok(())
}

pub async fn canister_status(agent: &Agent, canister_id: Principal) -> Result<CanisterStatus, AgentError> {
    let reply = management_update(
        agent,
        "canister_status",
        canister_id,
        Encode!(&CanisterIdRecord { canister_id }).unwrap(),
    )
    .await?;
    Ok(Decode!(&reply, CanisterStatus).expect("decoding canister_status"))
}

async fn management_update(
    agent: &Agent,
    method: &str,
    canister_id: Principal,
    arg: Vec<u8>,
) -> Result<Vec<u8>, AgentError> {
    agent
        .update(&Principal::management_canister(), method)
        .with_effective_canister_id(canister_id)
        .with_arg(arg)
        .call_and_wait()
        .await
}

/// Creates a canister and installs `name` from target/canisters/ with `arg`.
pub async fn deploy(agent: &Agent, name: &str, arg: Vec<u8>) -> Principal {
    let id = create_canister(agent).await.expect("creating a canister");
    install_code(agent, id, InstallMode::Install, canister_wasm(name), arg)
        .await
        .unwrap_or_else(|e| panic!("installing {name}: {e}"));
    id
}

/// Candid `()` — the empty argument.
pub fn no_args() -> Vec<u8> {
    Encode!().unwrap()
}
