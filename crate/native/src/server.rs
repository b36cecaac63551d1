//! The HTTP edge: axum routes onto the sans-IO replica. Calls go to the node core (consensus
//! orders them into blocks, on a lone node too: it is a subnet of one, see subnet.rs); queries,
//! read_state and call outcomes are answered from the certified state. Request handlers do
//! their CPU work (signature checks, queries) on the blocking pool; async threads never wait
//! for the replica, so `/api/v2/status` answers while a round or a query runs.
//!
//! Clients are not trusted: connections are capped and each must send its request head within
//! a timeout; bodies are read whole before a handler runs, within a size cap and a timeout, and
//! only so many are held in memory at once. A stop (Ctrl-C, SIGTERM) lets requests in flight
//! finish for a moment and then exits, whatever is still running.

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use tabnet_replica::{authenticate, HttpError, QuerySigner, QueryViews, ReadStateScope, Replica, RequestType};
use tabnet_node::http::{self, body_too_large, Checked, Endpoint, MAX_BODY_BYTES};
use tabnet_types::Principal;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch, OwnedSemaphorePermit, Semaphore};
use tower_http::services::ServeDir;

use crate::log_store::LogStore;
use crate::subnet::Input;

/// Rounds run at least this often, for heartbeats and timers.
/// A synchronous call answers 202 if it has not completed by then.
const SYNC_CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; further ones wait in the listen backlog until one closes.
const MAX_CONNECTIONS: usize = 512;
/// A request head must arrive within this; it also closes keep-alive connections left idle.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Request heads (and hyper's read buffer) are at most this; agents send a few hundred bytes.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// A request body must arrive within this (a whole 2 MiB message at 150 kB/s).
const BODY_READ_TIMEOUT: Duration = Duration::from_secs(15);
/// Request bodies held in memory at once (each at most `MAX_BODY_BYTES`: about 290 MiB in all);
/// further requests wait for a slot before their body is read.
const MAX_BODIES_IN_MEMORY: usize = 128;
/// A stopping node gives requests in flight and the round in progress this long, then exits.
pub const STOP_GRACE: Duration = Duration::from_secs(5);
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
    /// `/api/v2/status`'s body as of the last round or certification: status never waits for
    /// the replica.
    status: Mutex<Bytes>,
    /// The height of the last certified state, for `/_/metrics`.
    certified_height: AtomicU64,
    /// Slots for request bodies held in memory (see `MAX_BODIES_IN_MEMORY`).
    body_slots: Arc<Semaphore>,
    /// Where calls go: to consensus, which orders them into blocks.
    consensus: mpsc::Sender<Input>,
    /// Signs query responses without taking the replica.
    signer: QuerySigner,
    /// The certified state queries run on, published by the replica after each round: queries
    /// never take the replica, so they never hold up rounds.
    queries: QueryViews,
    /// Time from receiving a synchronous call to sending its certified reply.
    update_latency: Mutex<LatencyLog>,
    /// Wakes the executor when ingress arrives.
    /// Counts rounds; synchronous calls wait on it.
    rounds: watch::Sender<u64>,
}

impl Node {
    pub fn new(replica: Replica<LogStore>, consensus: mpsc::Sender<Input>) -> Arc<Self> {
        let (rounds, _) = watch::channel(0u64);
        Arc::new(Node {
            signer: replica.query_signer(),
            queries: replica.query_views(),
            status: Mutex::new(Bytes::from(replica.status())),
            certified_height: AtomicU64::new(replica.certified_height()),
            body_slots: Arc::new(Semaphore::new(MAX_BODIES_IN_MEMORY)),
            replica: Mutex::new(replica),
            consensus,
            update_latency: Mutex::new(LatencyLog::default()),
            rounds,
        })
    }

    /// Runs `f` on the replica (it waits for rounds: call it on the blocking pool, or in
    /// `block_in_place`) and publishes what async handlers read without the replica.
    pub fn with_replica<T>(&self, f: impl FnOnce(&mut Replica<LogStore>) -> T) -> T {
        let mut replica = self.replica();
        let out = f(&mut replica);
        *self.status.lock().unwrap_or_else(|e| e.into_inner()) = Bytes::from(replica.status());
        self.certified_height.store(replica.certified_height(), Ordering::Relaxed);
        out
    }

    /// Changes when a new state is certified.
    pub fn subscribe_rounds(&self) -> watch::Receiver<u64> {
        self.rounds.subscribe()
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

/// `tabnet`: a lone node, a subnet of one (see `subnet::run_lone`).
pub async fn serve(settings: Settings) -> Result<(), String> {
    crate::subnet::run_lone(settings, SUBNET_SIZE).await
}

/// Serves the HTTP interface of `node` until Ctrl-C or SIGTERM.
pub async fn serve_node(node: Arc<Node>, settings: Settings) -> Result<(), String> {
    let Settings { bind, port, state_dir, www, .. } = settings;
    let listener = TcpListener::bind((bind.as_str(), port)).await.map_err(|e| format!("cannot listen on {bind}:{port}: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    println!("tabnet listening on http://{addr} (state in {})", state_dir.display());
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let rendezvous = crate::rendezvous::Rendezvous::new(&state_dir).routes().layer(middleware::from_fn(check_host));
    let mut app = router(node).merge(rendezvous);
    if let Some(dir) = www {
        app = app.fallback_service(ServeDir::new(dir));
    }
    serve_connections(listener, app, stop_requested()).await;
    Ok(())
}

/// Serves `app` on the connections of `listener` until `stop` resolves: at most
/// `MAX_CONNECTIONS` at once, each closed if a request head takes longer than
/// `HEADER_READ_TIMEOUT`. Then requests in flight get `STOP_GRACE` to finish.
async fn serve_connections(listener: TcpListener, app: Router, stop: impl Future<Output = ()>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let (closing, _) = watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    tokio::pin!(stop);
    loop {
        let next = async {
            let slot = slots.clone().acquire_owned().await.expect("never closed");
            (slot, listener.accept().await)
        };
        let (slot, stream) = tokio::select! {
            _ = &mut stop => break,
            (slot, accepted) = next => match accepted {
                Ok((stream, _)) => (slot, stream),
                Err(e) => {
                    // Out of file descriptors, say: wait for some to close rather than spin.
                    eprintln!("tabnet: cannot accept a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        while connections.try_join_next().is_some() {}
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let mut closing = closing.subscribe();
        connections.spawn(async move {
            let _slot = slot;
            let _ = stream.set_nodelay(true);
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT).max_buf_size(MAX_HEAD_BYTES);
            // (Upgrades: the tab subnets' rendezvous is a WebSocket.)
            let connection = http.serve_connection(hyper_util::rt::TokioIo::new(stream), service).with_upgrades();
            tokio::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                _ = closing.changed() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
        });
    }
    let _ = closing.send(true);
    let _ = tokio::time::timeout(STOP_GRACE, async { while connections.join_next().await.is_some() {} }).await;
}

/// Resolves at the first Ctrl-C or SIGTERM. From then on the process ends within
/// `2 × STOP_GRACE` whatever it is doing, and at once on a second signal: a node must always
/// stop when asked, even with a request or a round stuck.
pub async fn stop_requested() {
    signal().await;
    eprintln!("tabnet: stopping");
    std::thread::spawn(|| {
        std::thread::sleep(2 * STOP_GRACE);
        eprintln!("tabnet: still busy {} s after the stop signal; exiting now", (2 * STOP_GRACE).as_secs());
        std::process::exit(1);
    });
    tokio::spawn(async {
        signal().await;
        eprintln!("tabnet: second stop signal; exiting now");
        std::process::exit(130);
    });
}

async fn signal() {
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

pub fn router(node: Arc<Node>) -> Router {
    // Which endpoint a request names is the sans-IO handler's to say (tabnet_node::http::route),
    // as in a tab; the content type is checked before the body is read, the body before the
    // handler runs.
    let api = Router::new()
        .route("/api/{*path}", any(api))
        // `read_body` enforces the limit; this raises the `Bytes` extractor's own (2 MB) to it.
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn_with_state(node.clone(), read_body))
        .layer(middleware::from_fn(require_cbor));
    Router::new()
        .route("/api/v2/status", get(status))
        .route("/_/metrics", get(metrics))
        .merge(api)
        .layer(middleware::from_fn(check_host))
        .layer(middleware::from_fn(cors))
        .with_state(node)
}

/// Refuses requests whose `Host` names anything but an IP address or `localhost`: a web page
/// whose domain an attacker points at 127.0.0.1 (DNS rebinding) could otherwise use the node
/// as if it were that page's own server. Agents on any origin still reach it (CORS is open).
async fn check_host(request: Request, next: Next) -> Response {
    let host = request.headers().get(header::HOST).map(|h| h.to_str().unwrap_or("\u{fffd}").to_string());
    match host {
        Some(host) if !is_local_host(&host) => (
            StatusCode::FORBIDDEN,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("Host {host:?} is not served here: use an IP address or localhost"),
        )
            .into_response(),
        _ => next.run(request).await,
    }
}

/// `host[:port]` names an IP address (v6 in brackets) or `localhost`.
fn is_local_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => return v6.split_once(']').is_some_and(|(ip, port)| ip.parse::<std::net::Ipv6Addr>().is_ok() && (port.is_empty() || port.starts_with(':'))),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost" || name.ends_with(".localhost") || name.parse::<std::net::Ipv4Addr>().is_ok()
}

/// Calls, queries and read_state carry CBOR and say so, as agents do (the IC answers the same
/// 400). A page on another origin cannot send such a request without a CORS preflight.
async fn require_cbor(request: Request, next: Next) -> Response {
    let cbor = http::is_cbor(request.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()));
    if request.method() == Method::POST && !cbor {
        return error(HttpError::bad_request("Unexpected content-type, expected application/cbor."));
    }
    next.run(request).await
}

/// Reads a request's body before its handler runs: at most `MAX_BODY_BYTES` (413), within
/// `BODY_READ_TIMEOUT` (408), and only once one of `MAX_BODIES_IN_MEMORY` slots is free; the
/// slot is released when the handler drops the last reference to the body.
async fn read_body(State(node): State<Arc<Node>>, request: Request, next: Next) -> Response {
    let too_large = || error(body_too_large());
    let declared = request.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_DRAINED_BYTES as u64) {
        return too_large();
    }
    let slot = node.body_slots.clone().acquire_owned().await.expect("never closed");
    let (parts, body) = request.into_parts();
    let bytes = match tokio::time::timeout(BODY_READ_TIMEOUT, collect_body(body)).await {
        Err(_) => {
            return error(HttpError { status: 408, message: format!("Request body not received within {} s", BODY_READ_TIMEOUT.as_secs()) })
        }
        Ok(Err(e)) => return error(HttpError::bad_request(format!("Could not read the request body: {e}"))),
        Ok(Ok(None)) => return too_large(),
        Ok(Ok(Some(bytes))) => bytes,
    };
    let held = Bytes::from_owner(HeldBody { bytes: Bytes::from(bytes), _slot: slot });
    next.run(Request::from_parts(parts, Body::from(held))).await
}

/// A body a little over the limit is read to its end (and dropped) before the 413, so that a
/// client still sending it sees the answer instead of a reset connection.
const MAX_DRAINED_BYTES: usize = 4 * MAX_BODY_BYTES;

/// The body's bytes, or `None` if it is larger than `MAX_BODY_BYTES` (then read on and
/// dropped up to `MAX_DRAINED_BYTES`). The buffer grows only as bytes arrive.
async fn collect_body(mut body: Body) -> Result<Option<Vec<u8>>, axum::Error> {
    use axum::body::HttpBody;
    let mut bytes = Vec::new();
    let mut received = 0usize;
    while let Some(frame) = std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await {
        let Ok(data) = frame?.into_data() else { continue };
        received += data.len();
        if received <= MAX_BODY_BYTES {
            bytes.extend_from_slice(&data);
        } else if received > MAX_DRAINED_BYTES {
            return Ok(None);
        } else {
            bytes = Vec::new();
        }
    }
    Ok((received <= MAX_BODY_BYTES).then_some(bytes))
}

/// A request body with the slot it occupies.
struct HeldBody {
    bytes: Bytes,
    _slot: OwnedSemaphorePermit,
}

impl AsRef<[u8]> for HeldBody {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
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

/// Runs CPU work off the async threads. Handlers authenticate requests before they take the
/// replica and sign after, so that only the work that needs the state waits for rounds.
async fn blocking<T: Send + 'static>(node: &Arc<Node>, f: impl FnOnce(&Node) -> T + Send + 'static) -> Result<T, Response> {
    let node = node.clone();
    tokio::task::spawn_blocking(move || f(&node))
        .await
        .map_err(|e| error(HttpError::internal(format!("request handler failed: {e}"))))
}

async fn status(State(node): State<Arc<Node>>) -> Response {
    let body = node.status.lock().unwrap_or_else(|e| e.into_inner()).clone();
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/cbor")], body).into_response()
}

/// `/api/*` but status: calls, queries and read_state, as the sans-IO handler routes them.
async fn api(State(node): State<Arc<Node>>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    match http::route(method.as_str(), uri.path(), content_type) {
        Err(e) => error(e),
        Ok(Endpoint::Status) => status(State(node)).await,
        Ok(Endpoint::Call { ecid, sync, subnet }) => call(node, ecid, sync, subnet, body).await,
        Ok(Endpoint::Query(scope)) => respond(run_query(&node, scope, body).await),
        Ok(Endpoint::ReadState(scope)) => respond(run_read_state(&node, scope, body).await),
    }
}

/// A call: checked (http::check_call), ordered by consensus like every node's calls; v2 is
/// answered at once (202), v3/v4 with the certified outcome, or 202 if it takes too long.
async fn call(node: Arc<Node>, ecid: Principal, sync: bool, subnet: Option<Principal>, body: Bytes) -> Response {
    let received = std::time::Instant::now();
    let checked = blocking(&node, move |n| http::check_call(&mut n.replica(), ecid, subnet, sync, &body, now_nanos())).await;
    let (id, ingress) = match checked {
        Err(r) => return r,
        Ok(Checked::Answer { status, body, cbor: true }) => return cbor(StatusCode::from_u16(status).unwrap_or(StatusCode::OK), body),
        Ok(Checked::Answer { status, body, cbor: false }) => {
            return error(HttpError { status, message: String::from_utf8_lossy(&body).into_owned() })
        }
        Ok(Checked::Submit { id, ingress }) => (id, ingress),
    };
    let (reply, accepted) = oneshot::channel();
    if node.consensus.send(Input::Ingress(ingress, reply)).await.is_err() {
        return error(HttpError::unavailable("consensus is not running"));
    }
    match accepted.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return error(HttpError::unavailable(e)),
        Err(_) => return error(HttpError::unavailable("consensus is not running")),
    }
    if !sync {
        return StatusCode::ACCEPTED.into_response();
    }
    let mut rounds = node.rounds.subscribe();
    let deadline = tokio::time::Instant::now() + SYNC_CALL_TIMEOUT;
    loop {
        // Answered from the state consensus certified, which may lag the one executed; a call
        // is unknown until a block holding it executes.
        match blocking(&node, move |n| http::call_outcome(&n.replica(), &id)).await {
            Err(r) => return r,
            Ok(Some(body)) => {
                node.update_latency.lock().unwrap_or_else(|e| e.into_inner()).record(received.elapsed());
                return cbor(StatusCode::OK, body);
            }
            Ok(None) => {}
        }
        match tokio::time::timeout_at(deadline, rounds.changed()).await {
            Ok(Ok(())) => continue,
            _ => return StatusCode::ACCEPTED.into_response(),
        }
    }
}

async fn run_query(node: &Arc<Node>, scope: ReadStateScope, body: Bytes) -> Result<Result<Vec<u8>, HttpError>, Response> {
    blocking(node, move |n| {
        let now = now_nanos();
        let request = authenticate(&body, RequestType::Query, scope, now)?;
        let result = n.queries.run_query(&request, scope)?;
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
    let height = node.certified_height.load(Ordering::Relaxed);
    let bodies = MAX_BODIES_IN_MEMORY - node.body_slots.available_permits();
    let (hits, runs) = node.queries.cache_stats();
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!(
            "{latency}certified height: {height}\nrequest bodies in memory: {bodies} (at most {MAX_BODIES_IN_MEMORY})\nqueries answered from the query cache: {hits}, run: {runs}\n"
        ),
    )
        .into_response()
}
