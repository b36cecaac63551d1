//! tabnet-load: drives a node through its IC HTTP interface with many concurrent callers.
//!
//! Every update is real signed ingress (Ed25519, request id, envelope) sent to the synchronous
//! call endpoint; the caller counts it when the node answers `replied` with a certificate. It
//! does not verify each certificate's BLS signature (that would measure the client, not the
//! node), but it checks the first one, so a node that signs garbage fails the run.
//!
//! Usage: tabnet-load [--url URL] [--wasm FILE] [--callers N] [--seconds S] [--canister ID]
//!                    [--install-only] [--create N]
//! `--install-only` creates one canister with FILE and reports the install time;
//! `--create N` creates and installs N canisters (to measure the node's memory), then stops.

use bytes::Bytes;
use candid::{Decode, Encode, Nat, Principal};
use ciborium::Value;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tabnet_crypto::certificate::Certificate;
use tabnet_crypto::hash_tree::{lookup_path, LookupResult};
use tabnet_crypto::user_identity::{Request, UserIdentity};
use tabnet_execution::management::types::{
    CanisterInstallMode, CreateCanisterResult, InstallCodeArgs, ProvisionalCreateCanisterWithCyclesArgs,
};
use tabnet_types::canister_id_from_index;

type HttpClient = Client<HttpConnector, Full<Bytes>>;

struct Args {
    url: String,
    wasm: String,
    callers: usize,
    seconds: u64,
    canister: Option<Principal>,
    install_only: bool,
    create: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        url: "http://127.0.0.1:4943".into(),
        wasm: "target/canisters/counter.wasm".into(),
        callers: 64,
        seconds: 10,
        canister: None,
        install_only: false,
        create: 0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--url" => args.url = value()?,
            "--wasm" => args.wasm = value()?,
            "--callers" => args.callers = value()?.parse().map_err(|e| format!("--callers: {e}"))?,
            "--seconds" => args.seconds = value()?.parse().map_err(|e| format!("--seconds: {e}"))?,
            "--canister" => {
                args.canister = Some(Principal::from_text(value()?).map_err(|e| format!("--canister: {e}"))?)
            }
            "--install-only" => args.install_only = true,
            "--create" => args.create = value()?.parse().map_err(|e| format!("--create: {e}"))?,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(args)
}

/// The content of a request from `who`, expiring in 4 minutes.
fn content(who: &UserIdentity, request_type: &str, canister: &Principal, method: &str, arg: Vec<u8>, nonce: u64) -> Vec<(&'static str, Value)> {
    let ingress_expiry = now_nanos() + 4 * 60 * 1_000_000_000;
    who.content(Request { request_type, canister_id: canister, method, arg, nonce, ingress_expiry })
}

fn now_nanos() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64
}

async fn post(client: &HttpClient, url: &str, body: Vec<u8>) -> Result<(u16, Vec<u8>), String> {
    let request = hyper::Request::post(url)
        .header("content-type", "application/cbor")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let response = client.request(request).await.map_err(|e| format!("POST {url}: {e}"))?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok((status, body.to_vec()))
}

fn map_get<'a>(value: &'a Value, key: &str) -> Option<&'a Value> {
    let value = match value {
        Value::Tag(_, inner) => inner.as_ref(),
        v => v,
    };
    value.as_map()?.iter().find(|(k, _)| k.as_text() == Some(key)).map(|(_, v)| v)
}

/// A synchronous update call; returns the certificate bytes of a `replied` answer.
async fn call_sync(client: &HttpClient, base: &str, ecid: &Principal, envelope: Vec<u8>) -> Result<Vec<u8>, String> {
    let url = format!("{base}/api/v3/canister/{ecid}/call");
    let (status, body) = post(client, &url, envelope).await?;
    if status != 200 {
        return Err(format!("call answered HTTP {status}: {}", String::from_utf8_lossy(&body)));
    }
    let value: Value = ciborium::from_reader(body.as_slice()).map_err(|e| format!("reply is not CBOR: {e}"))?;
    match map_get(&value, "status").and_then(Value::as_text) {
        Some("replied") => map_get(&value, "certificate")
            .and_then(Value::as_bytes)
            .cloned()
            .ok_or_else(|| "replied without a certificate".into()),
        other => Err(format!("call not replied: status {other:?}: {value:?}")),
    }
}

/// The reply of a request, read from its certificate (checked against the root key).
fn reply_from_certificate(certificate: &[u8], id: &[u8; 32], root_key: &[u8]) -> Result<Vec<u8>, String> {
    let cert = Certificate::from_cbor(certificate).map_err(|e| format!("bad certificate: {e}"))?;
    cert.verify(root_key).map_err(|e| format!("certificate does not verify: {e}"))?;
    let path: [&[u8]; 3] = [b"request_status", id, b"reply"];
    match lookup_path(&cert.tree, &path) {
        LookupResult::Found(reply) => Ok(reply.to_vec()),
        other => {
            let message: [&[u8]; 3] = [b"request_status", id, b"reject_message"];
            let code = lookup_path(&cert.tree, &message);
            Err(format!("no reply in certificate ({other:?}); reject message: {code:?}"))
        }
    }
}

struct Node {
    client: HttpClient,
    base: String,
    root_key: Vec<u8>,
}

impl Node {
    async fn connect(base: &str) -> Result<Self, String> {
        let client: HttpClient = Client::builder(TokioExecutor::new()).pool_max_idle_per_host(1024).build_http();
        let url = format!("{base}/api/v2/status");
        let response = client
            .get(url.parse().map_err(|e| format!("{url}: {e}"))?)
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        let body = response.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
        let status: Value = ciborium::from_reader(body.as_ref()).map_err(|e| format!("status is not CBOR: {e}"))?;
        let root_key = map_get(&status, "root_key").and_then(Value::as_bytes).cloned().ok_or("status has no root_key")?;
        Ok(Self { client, base: base.to_string(), root_key })
    }

    /// Calls `method` of `canister` and returns the certified reply.
    async fn update(&self, who: &UserIdentity, canister: &Principal, ecid: &Principal, method: &str, arg: Vec<u8>) -> Result<Vec<u8>, String> {
        let (envelope, id) = who.envelope(content(who, "call", canister, method, arg, now_nanos()));
        let certificate = call_sync(&self.client, &self.base, ecid, envelope).await?;
        reply_from_certificate(&certificate, &id, &self.root_key)
    }

    async fn create_counter(&self, who: &UserIdentity, wasm: &[u8]) -> Result<Principal, String> {
        let mgmt = Principal::management_canister();
        let any_id = canister_id_from_index(0);
        let arg = Encode!(&ProvisionalCreateCanisterWithCyclesArgs {
            amount: Some(Nat::from(1_000_000_000_000_000u128)),
            ..Default::default()
        })
        .unwrap();
        let reply = self.update(who, &mgmt, &any_id, "provisional_create_canister_with_cycles", arg).await?;
        let created = Decode!(&reply, CreateCanisterResult).map_err(|e| format!("create reply: {e}"))?;
        let install = InstallCodeArgs {
            mode: CanisterInstallMode::Install,
            canister_id: created.canister_id,
            wasm_module: wasm.to_vec(),
            arg: Encode!().unwrap(),
            sender_canister_version: None,
        };
        let started = Instant::now();
        self.update(who, &mgmt, &created.canister_id, "install_code", Encode!(&install).unwrap()).await?;
        println!("install_code of {} bytes: {:.1} ms", wasm.len(), started.elapsed().as_secs_f64() * 1e3);
        Ok(created.canister_id)
    }
}

struct Totals {
    done: AtomicU64,
    failed: AtomicU64,
    stop: AtomicBool,
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

/// Runs `callers` loops of `one` for `seconds`; prints the rate and latency percentiles.
async fn drive<F, Fut>(label: &str, callers: usize, seconds: u64, one: F)
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), String>> + Send,
{
    let totals = Arc::new(Totals { done: AtomicU64::new(0), failed: AtomicU64::new(0), stop: AtomicBool::new(false) });
    let one = Arc::new(one);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for caller in 0..callers {
        let (totals, one) = (totals.clone(), one.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut n = 0u64;
            let mut first_error = None;
            while !totals.stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                match one(caller, n).await {
                    Ok(()) => {
                        latencies.push(t.elapsed());
                        totals.done.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        totals.failed.fetch_add(1, Ordering::Relaxed);
                        first_error.get_or_insert(e);
                    }
                }
                n += 1;
            }
            (latencies, first_error)
        }));
    }
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    totals.stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    let mut errors = Vec::new();
    for task in tasks {
        let (l, e) = task.await.expect("caller task");
        latencies.extend(l);
        errors.extend(e);
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort();
    let done = totals.done.load(Ordering::Relaxed);
    println!(
        "{label}: {:.0}/s ({done} in {elapsed:.1} s, {callers} callers, {} failed); latency p50 {:.1} ms, p99 {:.1} ms",
        done as f64 / elapsed,
        totals.failed.load(Ordering::Relaxed),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
    );
    if let Some(e) = errors.first() {
        println!("{label}: first error: {e}");
    }
}

async fn run(args: Args) -> Result<(), String> {
    let node = Arc::new(Node::connect(&args.url).await?);
    let admin = UserIdentity::from_seed([7; 32]);
    let read_wasm = || std::fs::read(&args.wasm).map_err(|e| format!("{}: {e}", args.wasm));
    if args.create > 0 {
        let wasm = read_wasm()?;
        let started = Instant::now();
        for _ in 0..args.create {
            node.create_counter(&admin, &wasm).await?;
        }
        println!("created and installed {} canisters in {:.1} s", args.create, started.elapsed().as_secs_f64());
        return Ok(());
    }
    let canister = match args.canister {
        Some(c) => c,
        None => node.create_counter(&admin, &read_wasm()?).await?,
    };
    if args.install_only {
        return Ok(());
    }
    println!("load on canister {canister} at {}", args.url);

    // Warm up and check that certified replies verify.
    node.update(&admin, &canister, &canister, "inc", Encode!().unwrap()).await?;

    let callers: Arc<Vec<UserIdentity>> = Arc::new((0..args.callers).map(|i| UserIdentity::from_seed([i as u8 ^ 0x5a; 32])).collect());
    let (n, c, ids) = (node.clone(), canister, callers.clone());
    drive("updates (v3 call, counter inc)", args.callers, args.seconds, move |caller, seq| {
        let (node, ids) = (n.clone(), ids.clone());
        async move {
            let who = &ids[caller];
            let nonce = ((caller as u64) << 40) | seq;
            let (envelope, _) = who.envelope(content(who, "call", &c, "inc", Encode!().unwrap(), nonce));
            call_sync(&node.client, &node.base, &c, envelope).await.map(|_| ())
        }
    })
    .await;

    let (n, c, ids) = (node.clone(), canister, callers.clone());
    drive("queries (v2 query, counter get)", args.callers, args.seconds, move |caller, seq| {
        let (node, ids) = (n.clone(), ids.clone());
        async move {
            let who = &ids[caller];
            let (envelope, _) = who.envelope(content(who, "query", &c, "get", Encode!().unwrap(), seq));
            let url = format!("{}/api/v2/canister/{c}/query", node.base);
            let (status, body) = post(&node.client, &url, envelope).await?;
            let value: Value = ciborium::from_reader(body.as_slice()).map_err(|e| format!("query reply: {e}"))?;
            match (status, map_get(&value, "status").and_then(Value::as_text)) {
                (200, Some("replied")) => Ok(()),
                _ => Err(format!("query answered HTTP {status}: {value:?}")),
            }
        }
    })
    .await;
    Ok(())
}

#[tokio::main]
async fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("tabnet-load: {e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(args).await {
        eprintln!("tabnet-load: {e}");
        std::process::exit(1);
    }
}
