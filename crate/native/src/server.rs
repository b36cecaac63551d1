//! The HTTP edge: axum routes onto the sans-IO replica, and the task that runs rounds.
//!
//! One executor task runs rounds: at once when a call arrives (everything that has arrived by
//! then is one batch), and every `IDLE_ROUND` otherwise so heartbeats and timers fire. Round
//! time is wall-clock nanoseconds, never earlier than the last round (the replica clamps it,
//! across restarts too). Request handlers do their CPU work (signature checks, queries) on the
//! blocking pool.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path as UrlPath, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tabnet_execution::SubnetConfig;
use tabnet_replica::{
    authenticate, authenticate_call, rejection_body, replied_body, HttpError, QuerySigner, ReadStateScope, Replica, RequestId,
    RequestType, SubmitError,
};
use tabnet_types::{Principal, MANAGEMENT_CANISTER};
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tower_http::services::ServeDir;

use crate::log_store::LogStore;
use crate::subnet::Input;

/// Rounds run at least this often, for heartbeats and timers.
const IDLE_ROUND: Duration = Duration::from_millis(150);
/// A synchronous call answers 202 if it has not completed by then.
const SYNC_CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Ingress messages are at most 2 MiB; the envelope adds signatures and delegations.
const MAX_BODY_BYTES: usize = 2 * 1024 * 1024 + 256 * 1024;
/// This node is a subnet of one replica: the IC's fees (quoted for 13 nodes) scale to it.
const SUBNET_SIZE: u64 = 1;

/// How the node is started.
pub struct Settings {
    pub bind: String,
    pub port: u16,
    pub state_dir: PathBuf,
    /// The web app's files, served at `/` (the IC interface stays under `/api`).
    pub www: Option<PathBuf>,
    /// Memory all canisters may use together, bytes; `None` for the default.
    pub memory_capacity: Option<u64>,
}

pub struct Node {
    replica: Mutex<Replica<LogStore>>,
    /// (A node of a subnet) where calls go: to consensus, which orders them into blocks.
    consensus: Option<mpsc::Sender<Input>>,
    /// Signs query responses without taking the replica.
    signer: QuerySigner,
    /// Time from receiving a synchronous call to sending its certified reply.
    update_latency: Mutex<LatencyLog>,
    /// Wakes the executor when ingress arrives.
    wake: Notify,
    /// Counts rounds; synchronous calls wait on it.
    rounds: watch::Sender<u64>,
}

impl Node {
    pub fn new(replica: Replica<LogStore>, consensus: Option<mpsc::Sender<Input>>) -> Arc<Self> {
        let (rounds, _) = watch::channel(0u64);
        Arc::new(Node {
            signer: replica.query_signer(),
            replica: Mutex::new(replica),
            consensus,
            update_latency: Mutex::new(LatencyLog::default()),
            wake: Notify::new(),
            rounds,
        })
    }

    /// Runs `f` on the replica, off the async threads.
    pub async fn blocking_replica<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut Replica<LogStore>) -> Result<T, String> + Send + 'static,
    ) -> Result<T, String> {
        let node = self.clone();
        tokio::task::spawn_blocking(move || f(&mut node.replica())).await.map_err(|e| format!("replica task failed: {e}"))?
    }

    /// A new state is certified: wake the calls waiting for theirs.
    pub fn round_done(&self) {
        self.rounds.send_modify(|r| *r += 1);
    }

    fn replica(&self) -> MutexGuard<'_, Replica<LogStore>> {
        // A panic while holding the lock is a bug; the replica state is still the last
        // persisted-consistent one for everything but that request, so keep serving.
        self.replica.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn now_nanos() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

fn random32() -> [u8; 32] {
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed).expect("the OS random number generator is available");
    seed
}

pub async fn serve(settings: Settings) -> Result<(), String> {
    let Settings { bind, port, state_dir, www, memory_capacity } = settings;
    let store = LogStore::open(&state_dir)?;
    let mut config = SubnetConfig::for_subnet_size(SUBNET_SIZE);
    if let Some(capacity) = memory_capacity {
        config.subnet_memory_capacity = capacity;
    }
    let replica = tokio::task::spawn_blocking(move || Replica::open(store, random32(), config))
    .await
    .map_err(|e| format!("opening the state failed: {e}"))?
    .map_err(|e| format!("cannot open the state in {}: {e}", state_dir.display()))?;
    let node = Node::new(replica, None);
    let (stop_tx, stop_rx) = watch::channel(false);
    let executor = tokio::spawn(run_rounds(node.clone(), stop_rx));
    let result = serve_node(node, Settings { bind, port, state_dir, www, memory_capacity }).await;
    let _ = stop_tx.send(true);
    let _ = executor.await;
    result
}

/// Serves the HTTP interface of `node` until Ctrl-C or SIGTERM.
pub async fn serve_node(node: Arc<Node>, settings: Settings) -> Result<(), String> {
    let Settings { bind, port, state_dir, www, .. } = settings;
    let listener = tokio::net::TcpListener::bind((bind.as_str(), port)).await.map_err(|e| format!("cannot listen on {bind}:{port}: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    println!("tabnet listening on http://{addr} (state in {})", state_dir.display());
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let mut app = router(node);
    if let Some(dir) = www {
        app = app.fallback_service(ServeDir::new(dir));
    }
    axum::serve(listener, app).with_graceful_shutdown(shutdown_signal()).await.map_err(|e| format!("server error: {e}"))
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

/// The executor: one round at a time, never concurrently.
async fn run_rounds(node: Arc<Node>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = node.wake.notified() => {}
            _ = tokio::time::sleep(IDLE_ROUND) => {}
            _ = stop.changed() => return,
        }
        let n = node.clone();
        let result = tokio::task::spawn_blocking(move || n.replica().tick(now_nanos(), random32())).await;
        match result {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => eprintln!("tabnet: round failed: {e}"),
            Err(e) => eprintln!("tabnet: round panicked: {e}"),
        }
        node.rounds.send_modify(|r| *r += 1);
    }
}

pub fn router(node: Arc<Node>) -> Router {
    Router::new()
        .route("/api/v2/status", get(status))
        .route("/api/v2/canister/{ecid}/call", post(call_v2))
        .route("/api/v3/canister/{ecid}/call", post(call_sync))
        .route("/api/v4/canister/{ecid}/call", post(call_sync))
        .route("/api/v4/subnet/{subnet}/call", post(call_subnet_sync))
        .route("/api/v2/canister/{ecid}/query", post(query))
        .route("/api/v3/canister/{ecid}/query", post(query))
        .route("/api/v3/subnet/{subnet}/query", post(query_subnet))
        .route("/api/v2/canister/{ecid}/read_state", post(read_state))
        .route("/api/v3/canister/{ecid}/read_state", post(read_state))
        .route("/api/v2/subnet/{subnet}/read_state", post(read_state_subnet))
        .route("/api/v3/subnet/{subnet}/read_state", post(read_state_subnet))
        .route("/_/metrics", get(metrics))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn(cors))
        .with_state(node)
}

/// CORS, so a web page on another origin can talk to the node; preflights answer here.
async fn cors(request: Request, next: Next) -> Response {
    let mut response = if request.method() == Method::OPTIONS {
        StatusCode::NO_CONTENT.into_response()
    } else {
        next.run(request).await
    };
    let h = response.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, POST, OPTIONS"));
    h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("*"));
    h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("86400"));
    response
}

fn cbor(status: StatusCode, body: Vec<u8>) -> Response {
    (status, [(header::CONTENT_TYPE, "application/cbor")], body).into_response()
}

fn error(e: HttpError) -> Response {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], e.message).into_response()
}

fn principal(text: &str, what: &str) -> Result<Principal, HttpError> {
    Principal::from_text(text).map_err(|e| HttpError::bad_request(format!("Invalid {what} {text:?} in URL: {e}")))
}

/// Runs CPU work off the async threads. Handlers authenticate requests before they take the
/// replica and sign after, so that only the work that needs the state waits for rounds.
async fn blocking<T: Send + 'static>(node: &Arc<Node>, f: impl FnOnce(&Node) -> T + Send + 'static) -> Result<T, Response> {
    let node = node.clone();
    tokio::task::spawn_blocking(move || f(&node))
        .await
        .map_err(|e| error(HttpError::internal(format!("request handler failed: {e}"))))
}

async fn status(State(node): State<Arc<Node>>) -> Response {
    cbor(StatusCode::OK, node.replica().status())
}

async fn submit(node: &Arc<Node>, ecid: Principal, body: Bytes) -> Result<Result<RequestId, SubmitError>, Response> {
    if let Some(consensus) = &node.consensus {
        // A node of a subnet: checked here, then ordered by consensus like every node's calls.
        let checked = blocking(node, move |n| {
            let now = now_nanos();
            let call = authenticate_call(&body, &ecid, now)?;
            let id = n.replica().check_call(&call, now)?;
            Ok::<_, SubmitError>((id, crate::subnet::wrap_call(&body, &ecid)))
        })
        .await?;
        let (id, wrapped) = match checked {
            Ok(c) => c,
            Err(e) => return Ok(Err(e)),
        };
        let (reply, accepted) = oneshot::channel();
        let unavailable = |e: String| Ok(Err(SubmitError::Http(HttpError::unavailable(e))));
        if consensus.send(Input::Ingress(wrapped, reply)).await.is_err() {
            return unavailable("consensus is not running".into());
        }
        return match accepted.await {
            Ok(Ok(())) => Ok(Ok(id)),
            Ok(Err(e)) => unavailable(e),
            Err(_) => unavailable("consensus is not running".into()),
        };
    }
    let result = blocking(node, move |n| {
        let now = now_nanos();
        let call = authenticate_call(&body, &ecid, now)?;
        n.replica().accept_call(call, now)
    })
    .await?;
    if result.is_ok() {
        node.wake.notify_one();
    }
    Ok(result)
}

async fn call_v2(State(node): State<Arc<Node>>, UrlPath(ecid): UrlPath<String>, body: Bytes) -> Response {
    let ecid = match principal(&ecid, "effective canister id") {
        Ok(p) => p,
        Err(e) => return error(e),
    };
    match submit(&node, ecid, body).await {
        Err(r) => r,
        Ok(Ok(_)) => StatusCode::ACCEPTED.into_response(),
        Ok(Err(SubmitError::Http(e))) => error(e),
        Ok(Err(SubmitError::Rejected(e))) => cbor(StatusCode::OK, rejection_body(&e, false)),
    }
}

async fn call_sync(State(node): State<Arc<Node>>, UrlPath(ecid): UrlPath<String>, body: Bytes) -> Response {
    match principal(&ecid, "effective canister id") {
        Ok(ecid) => sync_call(node, ecid, body).await,
        Err(e) => error(e),
    }
}

/// `/api/v4/subnet/<id>/call`: only canister creation is addressed to a subnet; the created
/// canister's id is unknown, so the call's effective canister id is the management canister.
async fn call_subnet_sync(State(node): State<Arc<Node>>, UrlPath(subnet): UrlPath<String>, body: Bytes) -> Response {
    let subnet = match principal(&subnet, "subnet id") {
        Ok(p) => p,
        Err(e) => return error(e),
    };
    if subnet != node.replica().subnet_id() {
        return error(HttpError::not_found(format!("Subnet {} is not this subnet", subnet.to_text())));
    }
    sync_call(node, MANAGEMENT_CANISTER, body).await
}

/// v3/v4 calls: accept, wait for the outcome, answer with its certificate (or 202 on timeout).
async fn sync_call(node: Arc<Node>, ecid: Principal, body: Bytes) -> Response {
    let received = std::time::Instant::now();
    let id = match submit(&node, ecid, body).await {
        Err(r) => return r,
        Ok(Ok(id)) => id,
        Ok(Err(SubmitError::Http(e))) => return error(e),
        Ok(Err(SubmitError::Rejected(e))) => return cbor(StatusCode::OK, rejection_body(&e, true)),
    };
    let mut rounds = node.rounds.subscribe();
    let deadline = tokio::time::Instant::now() + SYNC_CALL_TIMEOUT;
    loop {
        {
            let replica = node.replica();
            // A lone node certifies each round as it executes it; a subnet's node answers from
            // the state consensus certified, which may lag the one it executed.
            let status = if node.consensus.is_some() { replica.certified_status(&id) } else { replica.request_status(&id) };
            match status {
                Some(status) if status.state.is_terminal() => {
                    let response = cbor(StatusCode::OK, replied_body(replica.call_certificate(&id)));
                    drop(replica);
                    node.update_latency.lock().unwrap_or_else(|e| e.into_inner()).record(received.elapsed());
                    return response;
                }
                Some(_) => {}
                // In a subnet a call is unknown until a block holding it executes.
                None if node.consensus.is_some() => {}
                None => return StatusCode::ACCEPTED.into_response(),
            }
        }
        match tokio::time::timeout_at(deadline, rounds.changed()).await {
            Ok(Ok(())) => continue,
            _ => return StatusCode::ACCEPTED.into_response(),
        }
    }
}

async fn query(State(node): State<Arc<Node>>, UrlPath(ecid): UrlPath<String>, body: Bytes) -> Response {
    let ecid = match principal(&ecid, "effective canister id") {
        Ok(p) => p,
        Err(e) => return error(e),
    };
    respond(run_query(&node, ReadStateScope::Canister(ecid), body).await)
}

async fn query_subnet(State(node): State<Arc<Node>>, UrlPath(subnet): UrlPath<String>, body: Bytes) -> Response {
    let subnet = match principal(&subnet, "subnet id") {
        Ok(p) => p,
        Err(e) => return error(e),
    };
    respond(run_query(&node, ReadStateScope::Subnet(subnet), body).await)
}

async fn run_query(node: &Arc<Node>, scope: ReadStateScope, body: Bytes) -> Result<Result<Vec<u8>, HttpError>, Response> {
    blocking(node, move |n| {
        let now = now_nanos();
        let request = authenticate(&body, RequestType::Query, scope, now)?;
        let result = n.replica().run_query(&request, scope)?;
        Ok(n.signer.sign(result, &request, now))
    })
    .await
}

async fn run_read_state(node: &Arc<Node>, scope: ReadStateScope, body: Bytes) -> Result<Result<Vec<u8>, HttpError>, Response> {
    blocking(node, move |n| {
        let request = authenticate(&body, RequestType::ReadState, scope, now_nanos())?;
        n.replica().answer_read_state(&request, scope)
    })
    .await
}

async fn read_state(State(node): State<Arc<Node>>, UrlPath(ecid): UrlPath<String>, body: Bytes) -> Response {
    let ecid = match principal(&ecid, "effective canister id") {
        Ok(p) => p,
        Err(e) => return error(e),
    };
    respond(run_read_state(&node, ReadStateScope::Canister(ecid), body).await)
}

async fn read_state_subnet(State(node): State<Arc<Node>>, UrlPath(subnet): UrlPath<String>, body: Bytes) -> Response {
    let subnet = match principal(&subnet, "subnet id") {
        Ok(p) => p,
        Err(e) => return error(e),
    };
    respond(run_read_state(&node, ReadStateScope::Subnet(subnet), body).await)
}

fn respond(result: Result<Result<Vec<u8>, HttpError>, Response>) -> Response {
    match result {
        Err(r) => r,
        Ok(Ok(body)) => cbor(StatusCode::OK, body),
        Ok(Err(e)) => error(e),
    }
}

/// The latencies of the last [`LatencyLog::CAPACITY`] synchronous calls.
#[derive(Default)]
struct LatencyLog {
    micros: std::collections::VecDeque<u64>,
    total: u64,
}

impl LatencyLog {
    const CAPACITY: usize = 100_000;

    fn record(&mut self, latency: Duration) {
        if self.micros.len() == Self::CAPACITY {
            self.micros.pop_front();
        }
        self.micros.push_back(latency.as_micros() as u64);
        self.total += 1;
    }

    /// "p50 X ms, p99 Y ms" over the recorded calls.
    fn summary(&self) -> String {
        let mut sorted: Vec<u64> = self.micros.iter().copied().collect();
        sorted.sort_unstable();
        let at = |p: f64| sorted.get(((sorted.len() as f64 - 1.0) * p).round() as usize).map_or(f64::NAN, |us| *us as f64 / 1e3);
        format!(
            "updates answered synchronously: {} (last {} measured)\nupdate latency in the node, request received to certified reply sent: p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms\n",
            self.total,
            sorted.len(),
            at(0.5),
            at(0.9),
            at(0.99)
        )
    }
}

/// `/_/metrics`: plain-text figures about this node, for benchmarks and the curious.
async fn metrics(State(node): State<Arc<Node>>) -> Response {
    let latency = node.update_latency.lock().unwrap_or_else(|e| e.into_inner()).summary();
    let height = node.replica().certified_height();
    (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], format!("{latency}certified height: {height}\n")).into_response()
}
