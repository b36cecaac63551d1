//! Where the replica keeps what must survive a restart: a flat key → bytes store.
//!
//! The replica writes through this trait only, so the same code persists to files (native),
//! IndexedDB (browser) or memory (tests). Keys are short ASCII paths like `canister/<id>`.

use std::collections::BTreeMap;
use std::sync::Arc;

/// A key-value store. `put` and `delete` are seen by `get` and `list` at once and become
/// durable together at the next `flush` (a round's writes are one group commit; the replica
/// certifies and acknowledges a round's results only after flushing it).
pub trait Store {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, String>;
    fn put(&mut self, key: &str, value: &[u8]) -> Result<(), String>;
    fn delete(&mut self, key: &str) -> Result<(), String>;
    fn contains(&self, key: &str) -> Result<bool, String> {
        Ok(self.get(key)?.is_some())
    }
    /// Puts `value` unless `key` already holds exactly it; says whether it wrote. Rounds write
    /// canister memory chunk by chunk through this, so only changed chunks reach the disk.
    fn put_if_changed(&mut self, key: &str, value: &[u8]) -> Result<bool, String> {
        if self.get(key)?.as_deref() == Some(value) {
            return Ok(false);
        }
        self.put(key, value)?;
        Ok(true)
    }
    /// All keys that start with `prefix`, in ascending order.
    fn list(&self, prefix: &str) -> Result<Vec<String>, String>;
    /// Makes every earlier `put` and `delete` durable. An error is final: what reached the
    /// disk is unknown, so a store may refuse every later write and flush, and the caller must
    /// stop (the next start replays what is durable) rather than go on from memory.
    fn flush(&mut self) -> Result<(), String> {
        Ok(())
    }
}

/// A store in memory, for tests and for nodes that need no persistence.
#[derive(Clone, Debug, Default)]
pub struct MemoryStore {
    entries: BTreeMap<String, Vec<u8>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn len(&self) -> usize {
        self.entries.len()
    }
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl Store for MemoryStore {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, String> {
        Ok(self.entries.get(key).cloned())
    }
    fn put(&mut self, key: &str, value: &[u8]) -> Result<(), String> {
        self.entries.insert(key.to_string(), value.to_vec());
        Ok(())
    }
    fn delete(&mut self, key: &str) -> Result<(), String> {
        self.entries.remove(key);
        Ok(())
    }
    fn contains(&self, key: &str) -> Result<bool, String> {
        Ok(self.entries.contains_key(key))
    }
    fn put_if_changed(&mut self, key: &str, value: &[u8]) -> Result<bool, String> {
        if self.entries.get(key).is_some_and(|old| tabnet_types::same_bytes(old, value)) {
            return Ok(false);
        }
        self.entries.insert(key.to_string(), value.to_vec());
        Ok(true)
    }
    fn list(&self, prefix: &str) -> Result<Vec<String>, String> {
        Ok(self.entries.range(prefix.to_string()..).take_while(|(k, _)| k.starts_with(prefix)).map(|(k, _)| k.clone()).collect())
    }
}

/// Writes a [`BatchStore`] sealed at one `flush`: to be committed in one transaction.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteBatch {
    /// Batches are numbered from 1, in the order they must be committed.
    pub seq: u64,
    pub puts: Vec<(String, Arc<[u8]>)>,
    pub deletes: Vec<String>,
}

/// A store held in memory whose writes the platform commits elsewhere, asynchronously — to
/// IndexedDB in a tab, where every read must be answered at once but no write completes at
/// once. It opens from everything the platform has committed; each `flush` seals the writes
/// since the last one into a [`WriteBatch`]. The driver takes the batches
/// ([`BatchStore::take_batches`]) and commits each in one transaction, in order, before it
/// performs anything the node asked for after them: so what the node promised durable is
/// durable before anyone hears of it, and a crash leaves the batches committed so far.
#[derive(Clone, Debug, Default)]
pub struct BatchStore {
    entries: BTreeMap<String, Arc<[u8]>>,
    /// Writes since the last flush: `None` deletes.
    pending: BTreeMap<String, Option<Arc<[u8]>>>,
    sealed: Vec<WriteBatch>,
    next_seq: u64,
}

impl BatchStore {
    /// A store holding what the platform committed.
    pub fn from_entries(entries: impl IntoIterator<Item = (String, Vec<u8>)>) -> Self {
        Self { entries: entries.into_iter().map(|(k, v)| (k, v.into())).collect(), next_seq: 1, ..Self::default() }
    }

    /// The batches sealed since the last call, oldest first.
    pub fn take_batches(&mut self) -> Vec<WriteBatch> {
        std::mem::take(&mut self.sealed)
    }

    /// Bytes held (keys and values).
    pub fn bytes(&self) -> u64 {
        self.entries.iter().map(|(k, v)| (k.len() + v.len()) as u64).sum()
    }

    /// Whether writes wait for a flush or batches for the driver.
    pub fn has_unsealed_writes(&self) -> bool {
        !self.pending.is_empty()
    }
}

impl Store for BatchStore {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, String> {
        Ok(self.entries.get(key).map(|v| v.to_vec()))
    }
    fn put(&mut self, key: &str, value: &[u8]) -> Result<(), String> {
        let value: Arc<[u8]> = value.into();
        self.entries.insert(key.to_string(), value.clone());
        self.pending.insert(key.to_string(), Some(value));
        Ok(())
    }
    fn delete(&mut self, key: &str) -> Result<(), String> {
        if self.entries.remove(key).is_some() || self.pending.contains_key(key) {
            self.pending.insert(key.to_string(), None);
        }
        Ok(())
    }
    fn contains(&self, key: &str) -> Result<bool, String> {
        Ok(self.entries.contains_key(key))
    }
    fn put_if_changed(&mut self, key: &str, value: &[u8]) -> Result<bool, String> {
        if self.entries.get(key).is_some_and(|old| tabnet_types::same_bytes(old, value)) {
            return Ok(false);
        }
        self.put(key, value)?;
        Ok(true)
    }
    fn list(&self, prefix: &str) -> Result<Vec<String>, String> {
        Ok(self.entries.range(prefix.to_string()..).take_while(|(k, _)| k.starts_with(prefix)).map(|(k, _)| k.clone()).collect())
    }
    fn flush(&mut self) -> Result<(), String> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let mut batch = WriteBatch { seq: self.next_seq, ..WriteBatch::default() };
        for (key, value) in std::mem::take(&mut self.pending) {
            match value {
                Some(value) => batch.puts.push((key, value)),
                None => batch.deletes.push(key),
            }
        }
        self.next_seq += 1;
        self.sealed.push(batch);
        Ok(())
    }
}

impl<S: Store + ?Sized> Store for Box<S> {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, String> {
        (**self).get(key)
    }
    fn put(&mut self, key: &str, value: &[u8]) -> Result<(), String> {
        (**self).put(key, value)
    }
    fn delete(&mut self, key: &str) -> Result<(), String> {
        (**self).delete(key)
    }
    fn contains(&self, key: &str) -> Result<bool, String> {
        (**self).contains(key)
    }
    fn put_if_changed(&mut self, key: &str, value: &[u8]) -> Result<bool, String> {
        (**self).put_if_changed(key, value)
    }
    fn flush(&mut self) -> Result<(), String> {
        (**self).flush()
    }
    fn list(&self, prefix: &str) -> Result<Vec<String>, String> {
        (**self).list(prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_store_seals_each_flush_into_one_batch_in_order() {
        let mut store = BatchStore::from_entries([("a".to_string(), b"1".to_vec()), ("b".to_string(), b"2".to_vec())]);
        assert_eq!(store.get("a").unwrap().as_deref(), Some(&b"1"[..]));
        store.put("c", b"3").unwrap();
        store.delete("a").unwrap();
        store.put("c", b"4").unwrap();
        // Reads see writes at once, before any flush.
        assert_eq!(store.list("").unwrap(), ["b", "c"]);
        assert_eq!(store.get("c").unwrap().as_deref(), Some(&b"4"[..]));
        assert!(store.take_batches().is_empty(), "nothing is sealed before a flush");
        store.flush().unwrap();
        assert!(!store.put_if_changed("b", b"2").unwrap(), "an unchanged value writes nothing");
        store.put("d", b"5").unwrap();
        store.delete("d").unwrap();
        store.delete("never-was").unwrap();
        store.flush().unwrap();
        store.flush().unwrap();
        let batches = store.take_batches();
        assert_eq!(batches.len(), 2, "an empty flush seals nothing");
        assert_eq!(batches[0].seq, 1);
        assert_eq!(batches[0].puts, vec![("c".to_string(), Arc::from(&b"4"[..]))], "the last write of a key wins");
        assert_eq!(batches[0].deletes, ["a"]);
        // A key put and deleted before the flush is deleted: an earlier batch may hold it.
        assert_eq!((batches[1].seq, batches[1].puts.len(), batches[1].deletes.clone()), (2, 0, vec!["d".to_string()]));
    }
}
