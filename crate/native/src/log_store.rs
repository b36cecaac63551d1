//! The replica's [`Store`] on disk: a snapshot file plus an append-only log, the whole map
//! also kept in memory.
//!
//! `flush` appends the writes since the last flush as one frame — length, SHA-256, body — and
//! `fdatasync`s the log: one sequential write and one sync per round, however many keys the
//! round touched. Opening reads the snapshot and replays the log; a frame torn by a crash fails
//! its checksum and is cut off, so the store comes back exactly as of the last completed flush.
//! When the log outgrows the live data, the map is written to a new snapshot (temporary file,
//! sync, rename, sync) and the log restarts. A crash between the rename and the log's
//! truncation is harmless: the log then replays over a snapshot that already holds its effects,
//! and ends in the same state.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use tabnet_replica::Store;

/// The log is compacted into a snapshot once it is this long and longer than the live data.
const COMPACT_AFTER_BYTES: u64 = 64 * 1024 * 1024;

const PUT: u8 = 1;
const DELETE: u8 = 0;

pub struct LogStore {
    dir: PathBuf,
    map: BTreeMap<String, Vec<u8>>,
    /// Keys written since the last flush, in order of first write (the frame takes their
    /// current values, so a key written twice is logged once).
    staged: Vec<String>,
    staged_set: std::collections::HashSet<String>,
    log: File,
    log_len: u64,
    live_bytes: u64,
}

impl LogStore {
    pub fn open(dir: &Path) -> Result<Self, String> {
        fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let mut map = BTreeMap::new();
        let snapshot = dir.join("snapshot");
        match fs::read(&snapshot) {
            Ok(bytes) => {
                let (body, _) = read_frame(&bytes)
                    .ok_or_else(|| format!("{} is corrupt (checksum or length wrong)", snapshot.display()))?;
                apply(&mut map, body).map_err(|e| format!("{}: {e}", snapshot.display()))?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("cannot read {}: {e}", snapshot.display())),
        }
        let log_path = dir.join("log");
        let mut log = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| format!("cannot open {}: {e}", log_path.display()))?;
        let mut bytes = Vec::new();
        log.read_to_end(&mut bytes).map_err(|e| format!("cannot read {}: {e}", log_path.display()))?;
        let mut at = 0usize;
        while let Some((body, len)) = read_frame(&bytes[at..]) {
            apply(&mut map, body).map_err(|e| format!("{}: {e}", log_path.display()))?;
            at += len;
        }
        if at < bytes.len() {
            // A frame the last crash tore: it was never acknowledged, drop it.
            log.set_len(at as u64).map_err(|e| format!("cannot truncate {}: {e}", log_path.display()))?;
            log.sync_data().map_err(|e| format!("cannot sync {}: {e}", log_path.display()))?;
        }
        let live_bytes = map.iter().map(|(k, v)| (k.len() + v.len()) as u64).sum();
        Ok(Self {
            dir: dir.to_path_buf(),
            map,
            staged: Vec::new(),
            staged_set: Default::default(),
            log,
            log_len: at as u64,
            live_bytes,
        })
    }

    fn stage(&mut self, key: &str) {
        if self.staged_set.insert(key.to_string()) {
            self.staged.push(key.to_string());
        }
    }

    /// Writes the whole map as the new snapshot and empties the log.
    fn compact(&mut self) -> Result<(), String> {
        let mut body = Vec::with_capacity(self.live_bytes as usize + 16 * self.map.len());
        for (key, value) in &self.map {
            encode_op(&mut body, key, Some(value));
        }
        let temporary = self.dir.join("snapshot.tmp");
        let mut file = File::create(&temporary).map_err(|e| format!("cannot create {}: {e}", temporary.display()))?;
        write_frame(&mut file, &body).map_err(|e| format!("cannot write {}: {e}", temporary.display()))?;
        file.sync_all().map_err(|e| format!("cannot sync {}: {e}", temporary.display()))?;
        fs::rename(&temporary, self.dir.join("snapshot")).map_err(|e| format!("cannot install the snapshot: {e}"))?;
        File::open(&self.dir).and_then(|d| d.sync_all()).map_err(|e| format!("cannot sync {}: {e}", self.dir.display()))?;
        self.log.set_len(0).and_then(|_| self.log.sync_data()).map_err(|e| format!("cannot empty the log: {e}"))?;
        self.log_len = 0;
        Ok(())
    }
}

/// `[body length: u64 LE][SHA-256 of body][body]`. A crash between the two writes leaves a
/// frame whose checksum fails, which opening cuts off.
fn write_frame(out: &mut impl Write, body: &[u8]) -> std::io::Result<()> {
    let mut header = [0u8; 40];
    header[..8].copy_from_slice(&(body.len() as u64).to_le_bytes());
    header[8..].copy_from_slice(&tabnet_crypto::sha256(body));
    out.write_all(&header)?;
    out.write_all(body)
}

/// The body of the frame at the start of `bytes` and the frame's length; `None` if it is
/// incomplete or its checksum is wrong.
fn read_frame(bytes: &[u8]) -> Option<(&[u8], usize)> {
    let len = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?) as usize;
    let end = 40usize.checked_add(len)?;
    let body = bytes.get(40..end)?;
    (tabnet_crypto::sha256(body)[..] == bytes[8..40]).then_some((body, end))
}

/// `[op][key length: u32 LE][key]` then, for a put, `[value length: u64 LE][value]`.
fn encode_op(out: &mut Vec<u8>, key: &str, value: Option<&[u8]>) {
    out.push(if value.is_some() { PUT } else { DELETE });
    out.extend_from_slice(&(key.len() as u32).to_le_bytes());
    out.extend_from_slice(key.as_bytes());
    if let Some(v) = value {
        out.extend_from_slice(&(v.len() as u64).to_le_bytes());
        out.extend_from_slice(v);
    }
}

fn apply(map: &mut BTreeMap<String, Vec<u8>>, mut body: &[u8]) -> Result<(), String> {
    fn take<'a>(body: &mut &'a [u8], n: usize) -> Result<&'a [u8], String> {
        if body.len() < n {
            return Err("a record runs past its frame".into());
        }
        let (head, rest) = body.split_at(n);
        *body = rest;
        Ok(head)
    }
    while !body.is_empty() {
        let op = take(&mut body, 1)?[0];
        let key_len = u32::from_le_bytes(take(&mut body, 4)?.try_into().expect("4 bytes")) as usize;
        let key = String::from_utf8(take(&mut body, key_len)?.to_vec()).map_err(|_| "a key is not UTF-8".to_string())?;
        match op {
            PUT => {
                let len = u64::from_le_bytes(take(&mut body, 8)?.try_into().expect("8 bytes")) as usize;
                map.insert(key, take(&mut body, len)?.to_vec());
            }
            DELETE => {
                map.remove(&key);
            }
            other => return Err(format!("unknown record type {other}")),
        }
    }
    Ok(())
}

impl Store for LogStore {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, String> {
        Ok(self.map.get(key).cloned())
    }

    fn put(&mut self, key: &str, value: &[u8]) -> Result<(), String> {
        let added = (key.len() + value.len()) as u64;
        match self.map.insert(key.to_string(), value.to_vec()) {
            Some(old) => self.live_bytes = self.live_bytes + added - (key.len() + old.len()) as u64,
            None => self.live_bytes += added,
        }
        self.stage(key);
        Ok(())
    }

    fn contains(&self, key: &str) -> Result<bool, String> {
        Ok(self.map.contains_key(key))
    }

    fn put_if_changed(&mut self, key: &str, value: &[u8]) -> Result<bool, String> {
        if self.map.get(key).is_some_and(|old| old.as_slice() == value) {
            return Ok(false);
        }
        self.put(key, value)?;
        Ok(true)
    }

    fn delete(&mut self, key: &str) -> Result<(), String> {
        if let Some(old) = self.map.remove(key) {
            self.live_bytes -= (key.len() + old.len()) as u64;
            self.stage(key);
        }
        Ok(())
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, String> {
        Ok(self.map.range(prefix.to_string()..).take_while(|(k, _)| k.starts_with(prefix)).map(|(k, _)| k.clone()).collect())
    }

    fn flush(&mut self) -> Result<(), String> {
        if self.staged.is_empty() {
            return Ok(());
        }
        let mut body = Vec::new();
        for key in std::mem::take(&mut self.staged) {
            encode_op(&mut body, &key, self.map.get(&key).map(Vec::as_slice));
        }
        self.staged_set.clear();
        write_frame(&mut self.log, &body).map_err(|e| format!("cannot append to the log: {e}"))?;
        self.log.sync_data().map_err(|e| format!("cannot sync the log: {e}"))?;
        self.log_len += 40 + body.len() as u64;
        if self.log_len > COMPACT_AFTER_BYTES && self.log_len > self.live_bytes {
            self.compact()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("tabnet-log-store-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn writes_survive_a_reopen_and_unflushed_ones_do_not() {
        let dir = temp_dir("reopen");
        let mut s = LogStore::open(&dir).unwrap();
        s.put("state/canister/00", b"a").unwrap();
        s.put("state/canister/01", b"b").unwrap();
        s.put("state/metadata", b"m").unwrap();
        s.put("state/canister/01", b"c").unwrap();
        assert_eq!(s.get("state/canister/01").unwrap(), Some(b"c".to_vec()));
        assert_eq!(s.list("state/canister/").unwrap(), vec!["state/canister/00", "state/canister/01"]);
        s.delete("state/canister/00").unwrap();
        s.flush().unwrap();
        assert!(!s.put_if_changed("state/metadata", b"m").unwrap());
        assert!(s.put_if_changed("state/metadata", b"m2").unwrap());
        s.flush().unwrap();

        // Not flushed: lost, as a crash would lose it.
        s.put("state/metadata", b"lost").unwrap();
        s.put("state/canister/02", b"d").unwrap();
        drop(s);
        let s = LogStore::open(&dir).unwrap();
        assert_eq!(s.get("state/metadata").unwrap(), Some(b"m2".to_vec()));
        assert_eq!(s.list("state/canister/").unwrap(), vec!["state/canister/01"]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_torn_frame_is_cut_off_and_the_log_goes_on() {
        let dir = temp_dir("torn");
        let mut s = LogStore::open(&dir).unwrap();
        s.put("a", b"1").unwrap();
        s.flush().unwrap();
        s.put("a", b"2").unwrap();
        s.flush().unwrap();
        drop(s);
        // A crash in the middle of the second frame.
        let log = dir.join("log");
        let len = fs::metadata(&log).unwrap().len();
        OpenOptions::new().write(true).open(&log).unwrap().set_len(len - 3).unwrap();
        let mut s = LogStore::open(&dir).unwrap();
        assert_eq!(s.get("a").unwrap(), Some(b"1".to_vec()));
        s.put("b", b"3").unwrap();
        s.flush().unwrap();
        drop(s);
        let s = LogStore::open(&dir).unwrap();
        assert_eq!(s.get("a").unwrap(), Some(b"1".to_vec()));
        assert_eq!(s.get("b").unwrap(), Some(b"3".to_vec()));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn compaction_keeps_everything_and_a_stale_log_replays_harmlessly() {
        let dir = temp_dir("compact");
        let mut s = LogStore::open(&dir).unwrap();
        for i in 0..10u8 {
            s.put(&format!("k{i}"), &[i; 100]).unwrap();
            s.flush().unwrap();
        }
        s.delete("k3").unwrap();
        s.flush().unwrap();
        let log_before = fs::read(dir.join("log")).unwrap();
        s.compact().unwrap();
        assert_eq!(fs::metadata(dir.join("log")).unwrap().len(), 0);
        drop(s);
        let s = LogStore::open(&dir).unwrap();
        assert_eq!(s.list("k").unwrap().len(), 9);
        assert_eq!(s.get("k3").unwrap(), None);
        drop(s);
        // A crash after the snapshot's rename, before the log was emptied.
        fs::write(dir.join("log"), log_before).unwrap();
        let s = LogStore::open(&dir).unwrap();
        assert_eq!(s.list("k").unwrap().len(), 9);
        assert_eq!(s.get("k9").unwrap(), Some(vec![9; 100]));
        fs::remove_dir_all(&dir).unwrap();
    }
}
