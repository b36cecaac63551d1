//! The load generator in a tab: real signed calls and queries handed to this tab's node the way
//! its service worker hands them over (the same sans-IO HTTP handler), many at once, timed from
//! submission to the certified reply. It does not check each reply's BLS signature (agent-js
//! spends about 28 ms per reply on that, which would measure the client, not the subnet); the
//! first reply's certificate is verified against the subnet's key, so a subnet that signs
//! garbage fails the run. Envelopes are signed before the clock starts.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use ciborium::Value;
use serde::Serialize;
use tabnet_crypto::user_identity::{anonymous_envelope, Request, UserIdentity};
use tabnet_crypto::Certificate;
use tabnet_types::Principal;
use wasm_bindgen::prelude::*;

use crate::tab_subnet::{performance_now, serve, Member, TabSubnet};

/// What a run measured (milliseconds, requests per second).
#[derive(Serialize, Default)]
struct Figures {
    count: usize,
    ok: usize,
    failed: usize,
    first_error: Option<String>,
    seconds: f64,
    per_second: f64,
    p50_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

fn figures(mut latencies: Vec<f64>, count: usize, errors: Vec<String>, seconds: f64) -> Result<JsValue, JsValue> {
    latencies.sort_by(f64::total_cmp);
    let f = Figures {
        count,
        ok: latencies.len(),
        failed: errors.len(),
        first_error: errors.into_iter().next(),
        seconds,
        per_second: latencies.len() as f64 / seconds.max(1e-9),
        p50_ms: percentile(&latencies, 0.50),
        p90_ms: percentile(&latencies, 0.90),
        p99_ms: percentile(&latencies, 0.99),
        max_ms: latencies.last().copied().unwrap_or(0.0),
    };
    Ok(JsValue::from_str(&serde_json::to_string(&f).map_err(|e| JsValue::from_str(&e.to_string()))?))
}

fn field<'a>(value: &'a Value, key: &str) -> Option<&'a Value> {
    let value = match value {
        Value::Tag(_, inner) => inner.as_ref(),
        v => v,
    };
    value.as_map()?.iter().find(|(k, _)| k.as_text() == Some(key)).map(|(_, v)| v)
}

/// Envelopes for `count` requests of `kind` (`call` or `query`), from `senders` identities (0:
/// the anonymous principal, unsigned).
fn envelopes(kind: &str, canister: &Principal, method: &str, arg: &[u8], count: usize, senders: usize) -> Vec<Vec<u8>> {
    let who: Vec<UserIdentity> = (0..senders as u64)
        .map(|k| {
            let mut seed = [0xa5; 32];
            seed[..8].copy_from_slice(&k.to_be_bytes());
            UserIdentity::from_seed(seed)
        })
        .collect();
    let expiry = (js_sys::Date::now() as u64 + 4 * 60 * 1_000) * 1_000_000;
    // Nonces differ from run to run, so a second run's calls are new calls.
    let base = js_sys::Date::now() as u64 * 1_000_000;
    (0..count)
        .map(|k| {
            let request = Request { request_type: kind, canister_id: canister, method, arg: arg.to_vec(), nonce: base + k as u64, ingress_expiry: expiry };
            match who.len() {
                0 => anonymous_envelope(request).0,
                n => who[k % n].sign(request).0,
            }
        })
        .collect()
}

/// The replica's root key (the subnet's public key), as `/api/v2/status` gives it.
fn root_key(member: &Rc<RefCell<Member>>) -> Vec<u8> {
    member.borrow().root_key().to_vec()
}

/// Whether a v3 call's answer is `replied`; the certificate, to check the first.
fn replied(status: u16, body: &[u8]) -> Result<Vec<u8>, String> {
    if status != 200 {
        return Err(format!("HTTP {status}: {}", String::from_utf8_lossy(body)));
    }
    let value: Value = ciborium::from_reader(body).map_err(|e| format!("answer is not CBOR: {e}"))?;
    match field(&value, "status").and_then(Value::as_text) {
        Some("replied") => field(&value, "certificate").and_then(Value::as_bytes).cloned().ok_or_else(|| "replied without a certificate".into()),
        other => Err(format!("status {other:?}: {value:?}")),
    }
}

#[wasm_bindgen]
impl TabSubnet {
    /// Sends `count` update calls of `method(arg)` to `canister_id`, `concurrency` at a time,
    /// and waits for each certified reply. Resolves to JSON figures: `{count, ok, failed,
    /// first_error, seconds, per_second, p50_ms, p90_ms, p99_ms, max_ms}`.
    pub async fn load_updates(&self, canister_id: String, method: String, arg: Vec<u8>, count: u32, concurrency: u32) -> Result<JsValue, JsValue> {
        let canister = Principal::from_text(&canister_id).map_err(|e| JsValue::from_str(&e.to_string()))?;
        let count = count as usize;
        let concurrency = (concurrency as usize).clamp(1, count.max(1));
        let path = format!("/api/v3/canister/{canister_id}/call");
        let queue: Rc<RefCell<Vec<Vec<u8>>>> = Rc::new(RefCell::new(envelopes("call", &canister, &method, &arg, count, concurrency)));
        queue.borrow_mut().reverse();
        let latencies = Rc::new(RefCell::new(Vec::with_capacity(count)));
        let errors = Rc::new(RefCell::new(Vec::new()));
        let checked = Rc::new(Cell::new(false));
        let root_key = root_key(self.member());
        let started = performance_now();
        let workers = (0..concurrency).map(|_| {
            let (member, queue, latencies, errors, checked, path, root_key) =
                (self.member().clone(), queue.clone(), latencies.clone(), errors.clone(), checked.clone(), path.clone(), root_key.clone());
            async move {
                loop {
                    let Some(envelope) = queue.borrow_mut().pop() else { break };
                    let sent = performance_now();
                    let r = serve(&member, "POST", &path, Some("application/cbor"), &envelope).await;
                    let took = performance_now() - sent;
                    match replied(r.status, &r.body) {
                        Ok(certificate) => {
                            if !checked.replace(true) {
                                if let Err(e) = Certificate::from_cbor(&certificate).and_then(|c| c.verify(&root_key)) {
                                    errors.borrow_mut().push(format!("the first reply's certificate does not verify: {e}"));
                                    continue;
                                }
                            }
                            latencies.borrow_mut().push(took);
                        }
                        Err(e) => errors.borrow_mut().push(e),
                    }
                }
            }
        });
        futures_util::future::join_all(workers).await;
        let seconds = (performance_now() - started) / 1_000.0;
        figures(latencies.take(), count, errors.take(), seconds)
    }

    /// Sends `count` queries of `method(arg)` to `canister_id`, one after another (the node
    /// answers each at once), signed by `senders` identities in turn or (0) unsigned; resolves
    /// to the same JSON figures as `load_updates`. The node's query cache answers a query the
    /// same sender asked on the same state: as many senders as queries make each one run.
    pub async fn load_queries(&self, canister_id: String, method: String, arg: Vec<u8>, count: u32, senders: u32) -> Result<JsValue, JsValue> {
        let canister = Principal::from_text(&canister_id).map_err(|e| JsValue::from_str(&e.to_string()))?;
        let path = format!("/api/v2/canister/{canister_id}/query");
        let all = envelopes("query", &canister, &method, &arg, count as usize, senders as usize);
        let (mut latencies, mut errors) = (Vec::with_capacity(all.len()), Vec::new());
        let started = performance_now();
        for (k, envelope) in all.iter().enumerate() {
            let sent = performance_now();
            let r = serve(self.member(), "POST", &path, Some("application/cbor"), envelope).await;
            let took = performance_now() - sent;
            let value: Option<Value> = ciborium::from_reader(r.body.as_slice()).ok();
            match value.as_ref().and_then(|v| field(v, "status")).and_then(Value::as_text) {
                Some("replied") if r.status == 200 => latencies.push(took),
                _ => errors.push(format!("HTTP {}: {}", r.status, String::from_utf8_lossy(&r.body))),
            }
            // Let the page's node loop run now and then.
            if k % 500 == 499 {
                crate::rtc::sleep(0).await;
            }
        }
        let seconds = (performance_now() - started) / 1_000.0;
        figures(latencies, all.len(), errors, seconds)
    }
}
