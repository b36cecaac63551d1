//! A tab node's durable storage: one IndexedDB database per node, holding what its store holds
//! (`records`: key → bytes) and the checkpoints it serves to syncing peers (`checkpoints`:
//! height → bytes).
//!
//! The node keeps its store in memory ([`BatchStore`]); this commits each [`WriteBatch`] the
//! store sealed in one IndexedDB transaction, in order. IndexedDB transactions are atomic and
//! durable once complete, so a tab killed at any moment leaves every batch either whole or
//! absent, and the batches before it whole. Everything a transaction writes is prepared before
//! it starts: awaiting anything but IndexedDB requests inside one closes it.

use rexie::{ObjectStore, Rexie, TransactionMode};
use tabnet_replica::{BatchStore, WriteBatch};
use wasm_bindgen::{JsCast, JsValue};

const RECORDS: &str = "records";
const CHECKPOINTS: &str = "checkpoints";
const VERSION: u32 = 1;

/// One node's database.
pub struct IdbStorage {
    db: Rexie,
}

fn idb_error(what: &str, e: rexie::Error) -> String {
    // A full disk or an exhausted quota surfaces as a failed transaction; say so plainly.
    let text = e.to_string();
    if text.contains("Quota") || text.contains("quota") {
        format!("{what}: the browser's storage quota for this site is used up ({text}); nothing was written")
    } else {
        format!("{what}: {text}")
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
        let db = Rexie::builder(name)
            .version(VERSION)
            .add_object_store(ObjectStore::new(RECORDS))
            .add_object_store(ObjectStore::new(CHECKPOINTS))
            .build()
            .await
            .map_err(|e| idb_error(&format!("cannot open the database {name}"), e))?;
        Ok(Self { db })
    }

    /// Deletes the database `name` (a node that leaves its subnet for good).
    pub async fn delete(name: &str) -> Result<(), String> {
        Rexie::delete(name).await.map_err(|e| idb_error(&format!("cannot delete the database {name}"), e))
    }

    pub fn close(self) {
        self.db.close();
    }

    /// Everything committed, as a store to run the node on.
    pub async fn load(&self) -> Result<BatchStore, String> {
        Ok(BatchStore::from_entries(self.read_all(RECORDS).await?.into_iter().map(|(k, v)| Ok((key_of(&k)?, v))).collect::<Result<Vec<_>, String>>()?))
    }

    /// The checkpoints kept, by height.
    pub async fn load_checkpoints(&self) -> Result<Vec<(u64, Vec<u8>)>, String> {
        self.read_all(CHECKPOINTS)
            .await?
            .into_iter()
            .map(|(k, v)| Ok((k.as_f64().ok_or("a checkpoint height is not a number")? as u64, v)))
            .collect()
    }

    async fn read_all(&self, store: &str) -> Result<Vec<(JsValue, Vec<u8>)>, String> {
        let tx = self.db.transaction(&[store], TransactionMode::ReadOnly).map_err(|e| idb_error("cannot read", e))?;
        let s = tx.store(store).map_err(|e| idb_error("cannot read", e))?;
        // Both come in key order from one snapshot (the transaction's).
        let keys = s.get_all_keys(None, None).await.map_err(|e| idb_error("cannot read the keys", e))?;
        let values = s.get_all(None, None).await.map_err(|e| idb_error("cannot read the values", e))?;
        tx.done().await.map_err(|e| idb_error("cannot read", e))?;
        if keys.len() != values.len() {
            return Err(format!("{store}: {} keys but {} values", keys.len(), values.len()));
        }
        keys.into_iter().zip(values).map(|(k, v)| Ok((k, bytes_of(&v)?))).collect()
    }

    /// Commits `batch` in one transaction; returns once it is durable. On an error nothing of
    /// it was written.
    pub async fn commit(&self, batch: &WriteBatch) -> Result<(), String> {
        let what = format!("cannot commit write {}", batch.seq);
        let puts: Vec<(JsValue, Option<JsValue>)> =
            batch.puts.iter().map(|(k, v)| (js_sys::Uint8Array::from(&v[..]).into(), Some(JsValue::from_str(k)))).collect();
        let tx = self.db.transaction(&[RECORDS], TransactionMode::ReadWrite).map_err(|e| idb_error(&what, e))?;
        let store = tx.store(RECORDS).map_err(|e| idb_error(&what, e))?;
        for key in &batch.deletes {
            store.delete(JsValue::from_str(key)).await.map_err(|e| idb_error(&what, e))?;
        }
        store.put_all(puts.into_iter()).await.map_err(|e| idb_error(&what, e))?;
        tx.commit().await.map_err(|e| idb_error(&what, e))
    }

    /// Keeps a checkpoint, and drops those not in `keep` (heights), in one transaction.
    pub async fn put_checkpoint(&self, height: u64, bytes: &[u8], keep: &[u64]) -> Result<(), String> {
        let what = format!("cannot keep the checkpoint of height {height}");
        let value: JsValue = js_sys::Uint8Array::from(bytes).into();
        let tx = self.db.transaction(&[CHECKPOINTS], TransactionMode::ReadWrite).map_err(|e| idb_error(&what, e))?;
        let store = tx.store(CHECKPOINTS).map_err(|e| idb_error(&what, e))?;
        for old in store.get_all_keys(None, None).await.map_err(|e| idb_error(&what, e))? {
            if old.as_f64().is_some_and(|h| !keep.contains(&(h as u64)) && h as u64 != height) {
                store.delete(old).await.map_err(|e| idb_error(&what, e))?;
            }
        }
        store.put(&value, Some(&JsValue::from_f64(height as f64))).await.map_err(|e| idb_error(&what, e))?;
        tx.commit().await.map_err(|e| idb_error(&what, e))
    }

    /// Starts writing `batch` and aborts before committing: what a tab killed mid-write leaves
    /// (for tests).
    pub async fn write_and_abort(&self, batch: &WriteBatch) -> Result<(), String> {
        let tx = self.db.transaction(&[RECORDS], TransactionMode::ReadWrite).map_err(|e| idb_error("abort test", e))?;
        let store = tx.store(RECORDS).map_err(|e| idb_error("abort test", e))?;
        for (k, v) in &batch.puts {
            store.put(&js_sys::Uint8Array::from(&v[..]).into(), Some(&JsValue::from_str(k))).await.map_err(|e| idb_error("abort test", e))?;
        }
        tx.abort().await.map_err(|e| idb_error("abort test", e))
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
