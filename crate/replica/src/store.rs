//! Where the replica keeps what must survive a restart: a flat key → bytes store.
//!
//! The replica writes through this trait only, so the same code persists to files (native),
//! IndexedDB (browser) or memory (tests). Keys are short ASCII paths like `canister/<id>`.

use std::collections::BTreeMap;

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
        if self.entries.get(key).is_some_and(|old| old.as_slice() == value) {
            return Ok(false);
        }
        self.entries.insert(key.to_string(), value.to_vec());
        Ok(true)
    }
    fn list(&self, prefix: &str) -> Result<Vec<String>, String> {
        Ok(self.entries.range(prefix.to_string()..).take_while(|(k, _)| k.starts_with(prefix)).map(|(k, _)| k.clone()).collect())
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
