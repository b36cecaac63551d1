//! A tab node's durable storage: one IndexedDB database per node, holding what its store holds
//! (`records`: key → bytes) and the checkpoints it serves to syncing peers.
//!
//! A checkpoint is the whole replicated state, but most of it is what the previous checkpoint
//! held already (a canister's heap pages that did not change): it is cut into content-defined
//! chunks (FastCDC, so a record that grows does not shift every cut after it), kept once each
//! by their SHA-256 (`checkpoint_chunks`), and a checkpoint is the list of its chunks' hashes
//! (`checkpoints`: height → manifest). Keeping one writes only the chunks no kept checkpoint
//! has, and drops the manifests and chunks no longer kept, in one transaction.
//!
//! The node keeps its store in memory ([`BatchStore`]); this commits each [`WriteBatch`] the
//! store sealed in one IndexedDB transaction, in order. IndexedDB transactions are atomic and
//! durable once complete, so a tab killed at any moment leaves every batch either whole or
//! absent, and the batches before it whole. Everything a transaction writes is prepared before
//! it starts: awaiting anything but IndexedDB requests inside one closes it.

use idb::builder::{DatabaseBuilder, ObjectStoreBuilder};
use idb::{Database, Factory, Query, TransactionMode};
use tabnet_replica::{BatchStore, WriteBatch};
use wasm_bindgen::prelude::Closure;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

const RECORDS: &str = "records";
const CHECKPOINTS: &str = "checkpoint_manifests";
const CHECKPOINT_CHUNKS: &str = "checkpoint_chunks";
/// 2: checkpoints as manifests of chunks (1 kept them whole, in a store "checkpoints").
const VERSION: u32 = 2;
/// FastCDC's sizes for checkpoint chunks: a changed 64 KiB page rewrites about one chunk.
const CHUNK_MIN: u32 = 16 << 10;
const CHUNK_AVG: u32 = 64 << 10;
const CHUNK_MAX: u32 = 256 << 10;

/// A checkpoint's content-defined chunks, with their hashes.
fn checkpoint_chunks(bytes: &[u8]) -> Vec<([u8; 32], &[u8])> {
    use sha2::Digest;
    fastcdc::v2020::FastCDC::new(bytes, CHUNK_MIN, CHUNK_AVG, CHUNK_MAX)
        .map(|c| {
            let chunk = &bytes[c.offset..c.offset + c.length];
            (sha2::Sha256::digest(chunk).into(), chunk)
        })
        .collect()
}

fn chunk_key(hash: &[u8; 32]) -> JsValue {
    JsValue::from_str(&hex(hash))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The hashes a manifest lists (32 bytes each).
fn manifest_hashes(manifest: &[u8]) -> Result<Vec<[u8; 32]>, String> {
    if manifest.len() % 32 != 0 {
        return Err(format!("a checkpoint manifest of {} bytes is damaged", manifest.len()));
    }
    Ok(manifest.chunks(32).map(|h| h.try_into().expect("32 bytes")).collect())
}

/// One node's database.
pub struct IdbStorage {
    db: Database,
}

fn idb_error(what: &str, e: idb::Error) -> String {
    let text = e.to_string();
    if text.contains("QuotaExceeded") {
        format!("{what}: the browser's storage quota for this site is used up ({text}); nothing was written")
    } else {
        format!("{what}: {text}")
    }
}

/// A write transaction, and the browser's own handle on it: whether it committed, and an
/// aborted one's reason (a `QuotaExceededError`, say), are read from the latter (the idb
/// crate's transaction future takes the requests' error events, which bubble to it, for its
/// own).
struct Writing {
    tx: idb::Transaction,
    raw: web_sys::IdbTransaction,
}

impl Writing {
    fn start(db: &Database, stores: &[&str], what: &str) -> Result<Self, String> {
        let tx = db.transaction(stores, TransactionMode::ReadWrite).map_err(|e| idb_error(what, e))?;
        let raw: web_sys::IdbTransaction = tx.into();
        Ok(Writing { tx: idb::Transaction::from(raw.clone()), raw })
    }

    fn store(&self, name: &str, what: &str) -> Result<idb::ObjectStore, String> {
        self.tx.object_store(name).map_err(|e| idb_error(what, e))
    }

    /// Commits (`true`) or aborts; resolves to whether the transaction committed.
    async fn finish(self, commit: bool) -> bool {
        let mut resolve = None;
        let outcome = js_sys::Promise::new(&mut |r, _| resolve = Some(r));
        let resolve = resolve.expect("the executor ran");
        let on_abort_resolve = resolve.clone();
        let on_complete = Closure::<dyn FnMut(web_sys::Event)>::new(move |_| {
            let _ = resolve.call1(&JsValue::NULL, &JsValue::TRUE);
        });
        let on_abort = Closure::<dyn FnMut(web_sys::Event)>::new(move |_| {
            let _ = on_abort_resolve.call1(&JsValue::NULL, &JsValue::FALSE);
        });
        self.raw.set_oncomplete(Some(on_complete.as_ref().unchecked_ref()));
        self.raw.set_onabort(Some(on_abort.as_ref().unchecked_ref()));
        // (Either may throw if the transaction is finishing already; its outcome still comes.)
        #[allow(deprecated)]
        let _ = if commit { self.raw.commit() } else { self.raw.abort() };
        let committed = JsFuture::from(outcome).await.ok().and_then(|v| v.as_bool()) == Some(true);
        self.raw.set_oncomplete(None);
        self.raw.set_onabort(None);
        committed
    }

    /// Commits; returns once durable, or says plainly why the browser aborted it.
    async fn commit(self, what: &str) -> Result<(), String> {
        let raw = self.raw.clone();
        if self.finish(true).await {
            return Ok(());
        }
        Err(match raw.error().map(|e| (e.name(), e.message())) {
            Some((name, message)) if name == "QuotaExceededError" => {
                format!("{what}: the browser's storage quota for this site is used up ({message}); nothing was written")
            }
            Some((name, message)) => format!("{what}: {name}: {message}; nothing was written"),
            None => format!("{what}: the browser aborted the transaction; nothing was written"),
        })
    }
}

fn bytes_of(value: &JsValue) -> Result<Vec<u8>, String> {
    value.dyn_ref::<js_sys::Uint8Array>().map(|a| a.to_vec()).ok_or_else(|| "a stored value is not bytes".to_string())
}

fn key_of(value: &JsValue) -> Result<String, String> {
    value.as_string().ok_or_else(|| "a stored key is not text".to_string())
}

impl IdbStorage {
    /// Opens (or creates) the database `name`.
    pub async fn open(name: &str) -> Result<Self, String> {
        let what = format!("cannot open the database {name}");
        // (Upgrading a version 1 database drops its whole checkpoints, a store not named here.)
        let db = DatabaseBuilder::new(name)
            .version(VERSION)
            .add_object_store(ObjectStoreBuilder::new(RECORDS))
            .add_object_store(ObjectStoreBuilder::new(CHECKPOINTS))
            .add_object_store(ObjectStoreBuilder::new(CHECKPOINT_CHUNKS))
            .build()
            .await
            .map_err(|e| idb_error(&what, e))?;
        Ok(Self { db })
    }

    /// Deletes the database `name` (a node that leaves its subnet for good).
    pub async fn delete(name: &str) -> Result<(), String> {
        let what = format!("cannot delete the database {name}");
        let factory = Factory::new().map_err(|e| idb_error(&what, e))?;
        factory.delete(name).map_err(|e| idb_error(&what, e))?.await.map_err(|e| idb_error(&what, e))
    }

    pub fn close(self) {
        self.db.close();
    }

    /// Everything committed, as a store to run the node on.
    pub async fn load(&self) -> Result<BatchStore, String> {
        Ok(BatchStore::from_entries(self.read_all(RECORDS).await?.into_iter().map(|(k, v)| Ok((key_of(&k)?, v))).collect::<Result<Vec<_>, String>>()?))
    }

    /// The checkpoints kept, by height, each assembled from its chunks.
    pub async fn load_checkpoints(&self) -> Result<Vec<(u64, Vec<u8>)>, String> {
        let manifests = self.read_all(CHECKPOINTS).await?;
        if manifests.is_empty() {
            return Ok(Vec::new());
        }
        let chunks: std::collections::HashMap<String, Vec<u8>> =
            self.read_all(CHECKPOINT_CHUNKS).await?.into_iter().map(|(k, v)| Ok((key_of(&k)?, v))).collect::<Result<_, String>>()?;
        let mut checkpoints = Vec::new();
        for (height, manifest) in manifests {
            let height = height.as_f64().ok_or("a checkpoint height is not a number")? as u64;
            let mut bytes = Vec::new();
            for hash in manifest_hashes(&manifest)? {
                let chunk = chunks.get(&hex(&hash)).ok_or_else(|| format!("the checkpoint of height {height} lacks a chunk"))?;
                bytes.extend_from_slice(chunk);
            }
            checkpoints.push((height, bytes));
        }
        Ok(checkpoints)
    }

    async fn read_all(&self, store: &str) -> Result<Vec<(JsValue, Vec<u8>)>, String> {
        let tx = self.db.transaction(&[store], TransactionMode::ReadOnly).map_err(|e| idb_error("cannot read", e))?;
        let s = tx.object_store(store).map_err(|e| idb_error("cannot read", e))?;
        // Both come in key order from one snapshot (the transaction's).
        let keys = s.get_all_keys(None, None).map_err(|e| idb_error("cannot read the keys", e))?.await.map_err(|e| idb_error("cannot read the keys", e))?;
        let values = s.get_all(None, None).map_err(|e| idb_error("cannot read the values", e))?.await.map_err(|e| idb_error("cannot read the values", e))?;
        tx.await.map_err(|e| idb_error("cannot read", e))?;
        if keys.len() != values.len() {
            return Err(format!("{store}: {} keys but {} values", keys.len(), values.len()));
        }
        keys.into_iter().zip(values).map(|(k, v)| Ok((k, bytes_of(&v)?))).collect()
    }

    /// Commits `batch` in one transaction; returns once it is durable. On an error nothing of
    /// it was written.
    pub async fn commit(&self, batch: &WriteBatch) -> Result<(), String> {
        let what = format!("cannot commit write {}", batch.seq);
        let writing = Writing::start(&self.db, &[RECORDS], &what)?;
        let store = writing.store(RECORDS, &what)?;
        for key in &batch.deletes {
            store.delete(Query::from(JsValue::from_str(key))).map_err(|e| idb_error(&what, e))?;
        }
        for (key, value) in &batch.puts {
            store.put(&js_sys::Uint8Array::from(&value[..]).into(), Some(&JsValue::from_str(key))).map_err(|e| idb_error(&what, e))?;
        }
        // (The requests need not be awaited one by one: the commit completes after all of them,
        // or aborts if any fails.)
        writing.commit(&what).await
    }

    /// Keeps a checkpoint, and drops those not in `keep` (heights), in one transaction: writes
    /// only the chunks no checkpoint it keeps has already. Returns the bytes it wrote.
    pub async fn put_checkpoint(&self, height: u64, bytes: &[u8], keep: &[u64]) -> Result<u64, String> {
        let what = format!("cannot keep the checkpoint of height {height}");
        // (Hashed and cut before the transaction: awaiting anything else would close it.)
        let chunks = checkpoint_chunks(bytes);
        let manifest: Vec<u8> = chunks.iter().flat_map(|(hash, _)| *hash).collect();
        let writing = Writing::start(&self.db, &[CHECKPOINTS, CHECKPOINT_CHUNKS], &what)?;
        let manifests = writing.store(CHECKPOINTS, &what)?;
        let chunk_store = writing.store(CHECKPOINT_CHUNKS, &what)?;
        // What the checkpoints kept (this one too) need, and what is stored.
        let mut needed: std::collections::HashSet<String> = chunks.iter().map(|(hash, _)| hex(hash)).collect();
        let kept_heights = manifests.get_all_keys(None, None).map_err(|e| idb_error(&what, e))?.await.map_err(|e| idb_error(&what, e))?;
        let kept_manifests = manifests.get_all(None, None).map_err(|e| idb_error(&what, e))?.await.map_err(|e| idb_error(&what, e))?;
        for (old, old_manifest) in kept_heights.into_iter().zip(kept_manifests) {
            let old_height = old.as_f64().map(|h| h as u64);
            if old_height.is_some_and(|h| keep.contains(&h) && h != height) {
                needed.extend(manifest_hashes(&bytes_of(&old_manifest)?)?.iter().map(|h| hex(h)));
            } else {
                manifests.delete(Query::from(old)).map_err(|e| idb_error(&what, e))?;
            }
        }
        let mut stored = std::collections::HashSet::new();
        let chunk_keys = chunk_store.get_all_keys(None, None).map_err(|e| idb_error(&what, e))?.await.map_err(|e| idb_error(&what, e))?;
        for key in chunk_keys {
            let key = key_of(&key)?;
            if needed.contains(&key) {
                stored.insert(key);
            } else {
                chunk_store.delete(Query::from(JsValue::from_str(&key))).map_err(|e| idb_error(&what, e))?;
            }
        }
        let mut written = manifest.len() as u64;
        for (hash, chunk) in &chunks {
            if stored.insert(hex(hash)) {
                written += chunk.len() as u64;
                chunk_store.put(&js_sys::Uint8Array::from(*chunk).into(), Some(&chunk_key(hash))).map_err(|e| idb_error(&what, e))?;
            }
        }
        let manifest: JsValue = js_sys::Uint8Array::from(&manifest[..]).into();
        manifests.put(&manifest, Some(&JsValue::from_f64(height as f64))).map_err(|e| idb_error(&what, e))?;
        writing.commit(&what).await?;
        Ok(written)
    }

    /// Starts writing `batch` and aborts before committing: what a tab killed mid-write leaves
    /// (for tests).
    pub async fn write_and_abort(&self, batch: &WriteBatch) -> Result<(), String> {
        let writing = Writing::start(&self.db, &[RECORDS], "abort test")?;
        let store = writing.store(RECORDS, "abort test")?;
        for (k, v) in &batch.puts {
            store.put(&js_sys::Uint8Array::from(&v[..]).into(), Some(&JsValue::from_str(k))).map_err(|e| idb_error("abort test", e))?;
        }
        match writing.finish(false).await {
            false => Ok(()),
            true => Err("abort test: the transaction committed".into()),
        }
    }
}

/// Asks the browser to keep this site's storage under pressure (it may refuse); says whether it
/// is persistent.
pub async fn persist() -> bool {
    let Some(storage) = storage_manager() else { return false };
    let Ok(promise) = storage.persist() else { return false };
    wasm_bindgen_futures::JsFuture::from(promise).await.ok().and_then(|v| v.as_bool()).unwrap_or(false)
}

/// Bytes this site stores and may store: `(usage, quota)`.
pub async fn estimate() -> Option<(f64, f64)> {
    let storage = storage_manager()?;
    let estimate: web_sys::StorageEstimate = wasm_bindgen_futures::JsFuture::from(storage.estimate().ok()?).await.ok()?.unchecked_into();
    Some((estimate.get_usage()?, estimate.get_quota()?))
}

fn storage_manager() -> Option<web_sys::StorageManager> {
    let global = js_sys::global();
    if let Some(window) = global.dyn_ref::<web_sys::Window>() {
        return Some(window.navigator().storage());
    }
    global.dyn_ref::<web_sys::WorkerGlobalScope>().map(|w| w.navigator().storage())
}
