//! How a tab becomes a member of a tab subnet: its slot, its node key and what the dealer gives
//! it.
//!
//! - Node keys: each member makes its own Ed25519 node key once and keeps it in the IndexedDB
//!   database `tabnet-keys`; a Web Lock per key keeps two tabs of one browser from being the
//!   same node.
//! - Tabs of one browser (no rendezvous): under the Web Lock `tabnet:NAME:genesis` the first tab
//!   writes the dealer's record (size, dealer seed) in the database `tabnet-subnets`; each tab
//!   takes the first free slot (the Web Lock `tabnet:NAME:K`, held while the tab lives and
//!   released by the browser when it closes or crashes) and registers its slot's node key in the
//!   record. The subnet forms once every slot has a key; every tab deals the BLS keys from the
//!   record's seed (the tabs of one browser are one trust domain, as the native subnet's
//!   processes are).
//! - Tabs on different machines: the rendezvous is the dealer; see `signaling.rs`.

use std::cell::RefCell;

use tabnet_consensus::handshake::SigningKey;
use js_sys::{Function, Object, Promise, Reflect};
use tabnet_node::tab_signal::{Genesis, Membership, MAX_TAB_NODES};
use tabnet_replica::{Store, WriteBatch};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

use crate::idb::IdbStorage;

/// Heights between catch-up packages (state checkpoints) of a tab subnet.
pub const DKG_INTERVAL: u64 = 500;
/// A forming subnet's record is looked at again this often (ms).
const FORMING_POLL_MS: i32 = 250;

fn js_error(e: impl std::fmt::Display) -> JsValue {
    JsValue::from_str(&e.to_string())
}

pub(crate) fn random32() -> [u8; 32] {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes).expect("the browser's crypto.getRandomValues");
    bytes
}

/// Tells the page how joining goes (the callback it passed, if any).
pub(crate) fn progress(on_progress: Option<&Function>, text: &str) {
    if let Some(f) = on_progress {
        let _ = f.call1(&JsValue::NULL, &JsValue::from_str(text));
    }
}

/// A Web Lock this tab holds until it releases it or the tab goes (the browser lets go of a
/// closed or crashed tab's locks); dropped, it is let go soon after.
pub(crate) struct HeldLock {
    /// Settles the promise the lock is held by.
    release: Option<Function>,
    /// The lock request's promise: settles once the lock manager has let the lock go.
    released: Promise,
}

impl HeldLock {
    /// Lets the lock go; resolves once another request may take it.
    pub(crate) async fn release(mut self) {
        if let Some(release) = self.release.take() {
            let _ = release.call0(&JsValue::NULL);
        }
        let _ = JsFuture::from(self.released.clone()).await;
    }
}

impl Drop for HeldLock {
    fn drop(&mut self) {
        if let Some(release) = self.release.take() {
            let _ = release.call0(&JsValue::NULL);
        }
    }
}

/// Takes the Web Lock `name`: at once if it is free (`wait_ms` 0), or once it is within
/// `wait_ms`; `None` if it did not.
pub(crate) async fn hold_lock(name: &str, wait_ms: u32) -> Result<Option<HeldLock>, JsValue> {
    let global = js_sys::global();
    let navigator = Reflect::get(&global, &"navigator".into())?;
    let locks = Reflect::get(&navigator, &"locks".into())?;
    let request: Function = Reflect::get(&locks, &"request".into())?.dyn_into()?;
    let options = Object::new();
    if wait_ms == 0 {
        Reflect::set(&options, &"ifAvailable".into(), &JsValue::TRUE)?;
    } else {
        let abort_signal = Reflect::get(&global, &"AbortSignal".into())?;
        let timeout: Function = Reflect::get(&abort_signal, &"timeout".into())?.dyn_into()?;
        Reflect::set(&options, &"signal".into(), &timeout.call1(&abort_signal, &JsValue::from(wait_ms))?)?;
    }
    let mut answer: Option<Function> = None;
    let taken = Promise::new(&mut |resolve, _| answer = Some(resolve));
    let answer = answer.expect("the executor ran");
    let on_abort = answer.clone();
    let callback = Closure::once_into_js(move |lock: JsValue| -> JsValue {
        if lock.is_null() {
            let _ = answer.call1(&JsValue::NULL, &JsValue::NULL);
            return JsValue::UNDEFINED;
        }
        // The lock is held until this promise settles: its resolve function is the release.
        let mut release = None;
        let held = Promise::new(&mut |resolve, _| release = Some(resolve));
        let _ = answer.call1(&JsValue::NULL, &release.expect("the executor ran"));
        held.into()
    });
    let requested: Promise = request.call3(&locks, &name.into(), &options, &callback)?.dyn_into()?;
    // A wait that timed out rejects the request: not taken. Otherwise the request settles once
    // the lock is let go.
    let not_taken = Closure::<dyn FnMut(JsValue)>::new(move |_: JsValue| {
        let _ = on_abort.call1(&JsValue::NULL, &JsValue::NULL);
    });
    let released = requested.catch(&not_taken);
    // (Called at most once, by the browser, whenever the request settles.)
    not_taken.forget();
    let release = JsFuture::from(taken).await?.dyn_into::<Function>().ok();
    Ok(release.map(|release| HeldLock { release: Some(release), released }))
}

/// Runs `body` holding the Web Lock `name` (waiting for it).
async fn with_lock<F: std::future::Future<Output = Result<JsValue, JsValue>> + 'static>(name: &str, body: F) -> Result<JsValue, JsValue> {
    let navigator = Reflect::get(&js_sys::global(), &"navigator".into())?;
    let locks = Reflect::get(&navigator, &"locks".into())?;
    let request: Function = Reflect::get(&locks, &"request".into())?.dyn_into()?;
    let body = RefCell::new(Some(body));
    let callback = Closure::once_into_js(move |_lock: JsValue| -> JsValue {
        let body = body.borrow_mut().take().expect("called once");
        wasm_bindgen_futures::future_to_promise(body).into()
    });
    let promise: Promise = request.call2(&locks, &name.into(), &callback)?.dyn_into()?;
    JsFuture::from(promise).await
}

/// The node key kept as `record` in `tabnet-keys`, made and kept now if there is none. The caller
/// holds the Web Lock that makes `record` its own.
async fn node_key(record: &str) -> Result<SigningKey, JsValue> {
    let db = IdbStorage::open("tabnet-keys").await.map_err(js_error)?;
    let kept = db.load().await.map_err(js_error)?.get(record).map_err(js_error)?;
    let key = match kept {
        Some(bytes) => {
            let seed = <[u8; 32]>::try_from(&bytes[..]).map_err(|_| js_error(format!("the node key {record} is damaged")))?;
            SigningKey::from_bytes(&seed)
        }
        None => {
            let key = SigningKey::from_bytes(&random32());
            let batch = WriteBatch { seq: 1, puts: vec![(record.to_string(), key.to_bytes().to_vec().into())], deletes: Vec::new() };
            db.commit(&batch).await.map_err(js_error)?;
            key
        }
    };
    db.close();
    Ok(key)
}

/// This tab's node key for the subnet `name` at a rendezvous: the one it had before a reload
/// (remembered in the tab's session storage; its lock, let go by the page being replaced, is
/// taken again within a moment), or the first of this browser's keys for the subnet that no
/// other tab holds (a new one if all are held). The lock on it is this tab's while it holds it.
pub(crate) async fn rendezvous_key(name: &str) -> Result<(SigningKey, HeldLock), JsValue> {
    let lock = |j: usize| format!("tabnet:{name}:key:{j}");
    let remembered = format!("tabnet:{name}:key");
    let session = web_sys::window().and_then(|w| w.session_storage().ok().flatten());
    let before = session.as_ref().and_then(|s| s.get_item(&remembered).ok().flatten()).and_then(|j| j.parse::<usize>().ok());
    let mut chosen = None;
    if let Some(j) = before.filter(|j| *j < MAX_TAB_NODES) {
        chosen = hold_lock(&lock(j), 5_000).await?.map(|held| (j, held));
    }
    for j in 0..MAX_TAB_NODES {
        if chosen.is_some() {
            break;
        }
        chosen = hold_lock(&lock(j), 0).await?.map(|held| (j, held));
    }
    let (j, held) = chosen.ok_or_else(|| js_error(format!("this browser already has {MAX_TAB_NODES} tabs in the subnet {name}")))?;
    if let Some(s) = &session {
        let _ = s.set_item(&remembered, &j.to_string());
    }
    Ok((node_key(&format!("rendezvous/{name}/{j}")).await?, held))
}

/// Makes this tab a member of the subnet `name` of the tabs of this browser: its slot, its node
/// key, its membership once the subnet has formed (`on_progress` hears of the wait), and the
/// slot's lock.
pub(crate) async fn local_membership(name: &str, nodes: usize, on_progress: Option<&Function>) -> Result<(SigningKey, Membership, HeldLock), JsValue> {
    let mut slot = None;
    for k in 0..nodes {
        slot = hold_lock(&format!("tabnet:{name}:{k}"), 0).await?.map(|held| (k, held));
        if slot.is_some() {
            break;
        }
    }
    let (index, held) = slot.ok_or_else(|| js_error(format!("the subnet {name} has all its {nodes} members already")))?;
    let key = node_key(&format!("local/{name}/{index}")).await?;
    let mut genesis = update_genesis(name, nodes, Some((index, key.verifying_key().to_bytes()))).await?;
    while !genesis.formed() {
        progress(on_progress, &format!("node {index}: waiting for the others, {} of {nodes} have joined", genesis.joined()));
        crate::rtc::sleep(FORMING_POLL_MS).await;
        genesis = update_genesis(name, nodes, None).await?;
    }
    let membership = genesis.deal().map_err(js_error)?.swap_remove(index);
    Ok((key, membership, held))
}

/// The subnet's record in `tabnet-subnets`, written by the first tab; `register`: this slot's
/// node key, entered if the slot has none.
async fn update_genesis(name: &str, nodes: usize, register: Option<(usize, [u8; 32])>) -> Result<Genesis, JsValue> {
    let record = format!("genesis/{name}");
    let (key, subnet) = (record.clone(), name.to_string());
    let bytes = with_lock(&format!("tabnet:{name}:genesis"), async move {
        let db = IdbStorage::open("tabnet-subnets").await.map_err(js_error)?;
        let store = db.load().await.map_err(js_error)?;
        let kept = store.get(&key).map_err(js_error)?;
        let mut genesis = match &kept {
            Some(bytes) => ciborium::from_reader::<Genesis, _>(bytes.as_slice())
                .map_err(|e| js_error(format!("bad genesis record {key} (from an older tabnet? clearing this site's data starts afresh): {e}")))?,
            None => Genesis::new(nodes, random32(), DKG_INTERVAL),
        };
        if let Some((slot, node_key)) = register {
            match genesis.node_keys.get(slot).copied().flatten() {
                Some(k) if k == node_key => {}
                Some(_) => return Err(js_error(format!("node {slot} of {key} has another node key (this browser lost the one it made)"))),
                None if slot < genesis.node_keys.len() => genesis.node_keys[slot] = Some(node_key),
                None => return Err(js_error(format!("the subnet {subnet} has {} nodes, not {nodes}", genesis.nodes))),
            }
        }
        let mut bytes = Vec::new();
        ciborium::into_writer(&genesis, &mut bytes).map_err(js_error)?;
        if kept.as_deref() != Some(&bytes[..]) {
            let batch = WriteBatch { seq: 1, puts: vec![(key.clone(), bytes.clone().into())], deletes: Vec::new() };
            db.commit(&batch).await.map_err(js_error)?;
        }
        db.close();
        Ok(js_sys::Uint8Array::from(&bytes[..]).into())
    })
    .await?;
    let bytes = js_sys::Uint8Array::new(&bytes).to_vec();
    let genesis: Genesis = ciborium::from_reader(bytes.as_slice()).map_err(|e| js_error(format!("bad genesis record {record}: {e}")))?;
    if genesis.nodes != nodes {
        return Err(js_error(format!("the subnet {name} has {} nodes, not {nodes}", genesis.nodes)));
    }
    Ok(genesis)
}
