//! The replica's [`Store`] on disk: a snapshot file plus an append-only log, the whole map
//! also kept in memory.
//!
//! `flush` appends the writes since the last flush as one frame and `fdatasync`s the log: one
//! sequential write and one sync per round, however many keys the round touched. When the log
//! outgrows the live data, the map is written to a new snapshot (temporary file, sync, rename)
//! and a new, empty log replaces the old one the same way. A crash between the two renames is
//! harmless: the old log then replays over a snapshot that already holds its effects, and ends
//! in the same state.
//!
//! The log starts with a header holding a random salt, made new for every log. Each frame is
//! `[salt's first 8 bytes][sequence number][body length][SHA-256 of body][check]`, then the
//! body; `check` is SHA-256 of the salt and the header's other fields. Frames are synced one at
//! a time, so a crash can tear only the last one. Opening replays frames until one fails; what
//! follows is a torn tail and is cut if no later frame header of this log verifies after it;
//! if one does, acknowledged rounds would be lost, and opening refuses with the file and the
//! offset. A canister's bytes inside a frame cannot pass for a frame header: they would need
//! the salt, which never leaves the node.
//!
//! After a failed write or sync what reached the disk is unknown, so the store refuses every
//! later write and flush: the node must stop and replay the log on the next start.
//!
//! The directory is made 0700 and the files 0600 (the log holds the node's key seed).
//!
//! Logs of the first format (frames `[body length][SHA-256 of body][body]` with no log header)
//! are replayed and then compacted into a snapshot and a new log.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tabnet_replica::Store;

/// The log is compacted into a snapshot once it is this long and longer than the live data.
const COMPACT_AFTER_BYTES: u64 = 64 * 1024 * 1024;

const PUT: u8 = 1;
const DELETE: u8 = 0;

/// The log's header: magic, salt, first 8 bytes of SHA-256 of both.
const LOG_MAGIC: &[u8; 8] = b"tabnetL2";
const SALT_BYTES: usize = 16;
const LOG_HEADER_BYTES: usize = 8 + SALT_BYTES + 8;
/// A frame's header: salt marker, sequence number, body length, SHA-256 of body, check.
const FRAME_HEADER_BYTES: usize = 8 + 8 + 8 + 32 + 8;
/// A first-format frame's header (and the snapshot's): body length, SHA-256 of body.
const V1_HEADER_BYTES: usize = 40;

/// Creates `dir` (and missing parents) readable by the owner only, and tightens it if it exists.
pub fn create_private_dir(dir: &Path) -> Result<(), String> {
    fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(|e| format!("cannot make {} private: {e}", dir.display()))
}

/// Writes `parts`, one after the other, to `path` (0600) by way of a synced temporary file
/// (`path` + `.tmp`) renamed into place, then syncs the directory, so that after a crash `path`
/// is either whole or as it was.
pub fn write_durably(path: &Path, parts: &[&[u8]]) -> Result<(), String> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    let mut file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)
        .map_err(|e| format!("cannot create {}: {e}", temporary.display()))?;
    for part in parts {
        file.write_all(part).map_err(|e| format!("cannot write {}: {e}", temporary.display()))?;
    }
    file.sync_all().map_err(|e| format!("cannot sync {}: {e}", temporary.display()))?;
    fs::rename(&temporary, path).map_err(|e| format!("cannot rename {} to {}: {e}", temporary.display(), path.display()))?;
    sync_dir(path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")))
}

/// Makes renames and new files in `dir` durable.
pub fn sync_dir(dir: &Path) -> Result<(), String> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| format!("cannot sync {}: {e}", dir.display()))
}

fn make_private(path: &Path) -> Result<(), String> {
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).map_err(|e| format!("cannot make {} private: {e}", path.display()))
}

pub struct LogStore {
    dir: PathBuf,
    map: BTreeMap<String, Vec<u8>>,
    /// Keys written since the last flush, in order of first write (the frame takes their
    /// current values, so a key written twice is logged once).
    staged: Vec<String>,
    staged_set: std::collections::HashSet<String>,
    log: File,
    salt: [u8; SALT_BYTES],
    /// The sequence number of the next frame.
    next_seq: u64,
    log_len: u64,
    live_bytes: u64,
    /// Why the store stopped taking writes (a write or sync failed).
    failed: Option<String>,
}

/// What replaying a log found.
struct Replayed {
    salt: [u8; SALT_BYTES],
    next_seq: u64,
    /// Where the last whole frame ends.
    end: usize,
}

impl LogStore {
    pub fn open(dir: &Path) -> Result<Self, String> {
        create_private_dir(dir)?;
        let mut map = BTreeMap::new();
        let snapshot = dir.join("snapshot");
        match fs::read(&snapshot) {
            Ok(bytes) => {
                make_private(&snapshot)?;
                let body = match read_v1_frame(&bytes) {
                    Some((body, len)) if len == bytes.len() => body,
                    _ => return Err(format!("{} is corrupt (checksum or length wrong); refusing to open", snapshot.display())),
                };
                apply(&mut map, body).map_err(|e| format!("{}: {e}", snapshot.display()))?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("cannot read {}: {e}", snapshot.display())),
        }
        let log_path = dir.join("log");
        let bytes = match File::open(&log_path) {
            Ok(mut file) => {
                make_private(&log_path)?;
                let mut bytes = Vec::new();
                file.read_to_end(&mut bytes).map_err(|e| format!("cannot read {}: {e}", log_path.display()))?;
                bytes
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(format!("cannot open {}: {e}", log_path.display())),
        };
        let (log, salt, next_seq, log_len) = if bytes.starts_with(LOG_MAGIC) {
            let replayed = replay(&mut map, &bytes, &log_path)?;
            let log = OpenOptions::new().append(true).open(&log_path).map_err(|e| format!("cannot open {}: {e}", log_path.display()))?;
            if replayed.end < bytes.len() {
                // The frame the last crash tore: it was never acknowledged, drop it.
                log.set_len(replayed.end as u64).map_err(|e| format!("cannot truncate {}: {e}", log_path.display()))?;
                log.sync_data().map_err(|e| format!("cannot sync {}: {e}", log_path.display()))?;
            }
            (log, replayed.salt, replayed.next_seq, replayed.end as u64)
        } else {
            if !bytes.is_empty() {
                // A log of the first format: into the current one, the map as a snapshot first.
                replay_v1(&mut map, &bytes, &log_path)?;
                write_snapshot(dir, &map)?;
            }
            let (log, salt) = new_log(dir)?;
            (log, salt, 0, LOG_HEADER_BYTES as u64)
        };
        let live_bytes = map.iter().map(|(k, v)| (k.len() + v.len()) as u64).sum();
        Ok(Self {
            dir: dir.to_path_buf(),
            map,
            staged: Vec::new(),
            staged_set: Default::default(),
            log,
            salt,
            next_seq,
            log_len,
            live_bytes,
            failed: None,
        })
    }

    fn stage(&mut self, key: &str) {
        if self.staged_set.insert(key.to_string()) {
            self.staged.push(key.to_string());
        }
    }

    fn check_usable(&self) -> Result<(), String> {
        match &self.failed {
            Some(e) => Err(format!("the store in {} failed earlier and takes no more writes ({e}); restart the node", self.dir.display())),
            None => Ok(()),
        }
    }

    /// Writes the whole map as the new snapshot and starts a new log.
    fn compact(&mut self) -> Result<(), String> {
        write_snapshot(&self.dir, &self.map)?;
        (self.log, self.salt) = new_log(&self.dir)?;
        (self.next_seq, self.log_len) = (0, LOG_HEADER_BYTES as u64);
        Ok(())
    }

    fn append_frame(&mut self, body: &[u8]) -> Result<(), String> {
        let header = frame_header(&self.salt, self.next_seq, body);
        self.log.write_all(&header).and_then(|_| self.log.write_all(body)).map_err(|e| format!("cannot append to the log: {e}"))?;
        self.log.sync_data().map_err(|e| format!("cannot sync the log: {e}"))?;
        self.next_seq += 1;
        self.log_len += (FRAME_HEADER_BYTES + body.len()) as u64;
        Ok(())
    }
}

/// Writes `map` as the snapshot (one first-format frame), durably.
fn write_snapshot(dir: &Path, map: &BTreeMap<String, Vec<u8>>) -> Result<(), String> {
    let mut body = Vec::with_capacity(map.iter().map(|(k, v)| 13 + k.len() + v.len()).sum());
    for (key, value) in map {
        encode_op(&mut body, key, Some(value));
    }
    let (len, checksum) = ((body.len() as u64).to_le_bytes(), tabnet_crypto::sha256(&body));
    write_durably(&dir.join("snapshot"), &[&len, &checksum, &body])
}

/// Replaces the log in `dir` by an empty one with a new salt (so no frame of an older log, nor
/// any stale block of one on disk, can pass for a frame of this one); returns it for appending.
fn new_log(dir: &Path) -> Result<(File, [u8; SALT_BYTES]), String> {
    let mut salt = [0u8; SALT_BYTES];
    getrandom::getrandom(&mut salt).map_err(|e| format!("no OS randomness: {e}"))?;
    let mut header = Vec::with_capacity(LOG_HEADER_BYTES);
    header.extend_from_slice(LOG_MAGIC);
    header.extend_from_slice(&salt);
    header.extend_from_slice(&tabnet_crypto::sha256(&header)[..8]);
    let path = dir.join("log");
    write_durably(&path, &[&header])?;
    let log = OpenOptions::new().append(true).open(&path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    Ok((log, salt))
}

fn frame_check(salt: &[u8; SALT_BYTES], header_fields: &[u8]) -> [u8; 8] {
    tabnet_crypto::sha256(&[salt.as_slice(), header_fields].concat())[..8].try_into().expect("8 bytes")
}

fn frame_header(salt: &[u8; SALT_BYTES], seq: u64, body: &[u8]) -> Vec<u8> {
    let mut header = Vec::with_capacity(FRAME_HEADER_BYTES);
    header.extend_from_slice(&salt[..8]);
    header.extend_from_slice(&seq.to_le_bytes());
    header.extend_from_slice(&(body.len() as u64).to_le_bytes());
    header.extend_from_slice(&tabnet_crypto::sha256(body));
    let check = frame_check(salt, &header[8..]);
    header.extend_from_slice(&check);
    header
}

/// The sequence number, body length and body checksum of the frame header at the start of
/// `bytes`, if there is one of this log (salt) whose check verifies.
fn read_frame_header<'a>(salt: &[u8; SALT_BYTES], bytes: &'a [u8]) -> Option<(u64, u64, &'a [u8])> {
    let header = bytes.get(..FRAME_HEADER_BYTES)?;
    if header[..8] != salt[..8] || header[56..] != frame_check(salt, &header[8..56]) {
        return None;
    }
    let seq = u64::from_le_bytes(header[8..16].try_into().expect("8 bytes"));
    let len = u64::from_le_bytes(header[16..24].try_into().expect("8 bytes"));
    Some((seq, len, &header[24..56]))
}

/// Replays a log of the current format into `map`: every whole frame, in sequence. A tail
/// after them is a torn frame unless a later frame header of this log follows it; then the log
/// is corrupt and this fails, naming the file and the offset.
fn replay(map: &mut BTreeMap<String, Vec<u8>>, bytes: &[u8], path: &Path) -> Result<Replayed, String> {
    let corrupt = |what: String| format!("{} is corrupt: {what}; refusing to open (the file is left as it is)", path.display());
    let header = bytes.get(..LOG_HEADER_BYTES).ok_or_else(|| corrupt("its header (offset 0) is cut short".into()))?;
    if header[24..] != tabnet_crypto::sha256(&header[..24])[..8] {
        return Err(corrupt("its header (offset 0) fails its checksum".into()));
    }
    let salt: [u8; SALT_BYTES] = header[8..24].try_into().expect("16 bytes");
    let (mut at, mut seq) = (LOG_HEADER_BYTES, 0u64);
    while at < bytes.len() {
        let Some((frame_seq, len, checksum)) = read_frame_header(&salt, &bytes[at..]) else { break };
        if frame_seq != seq {
            return Err(corrupt(format!("the frame at offset {at} is number {frame_seq}, not {seq}")));
        }
        let body = match (at + FRAME_HEADER_BYTES).checked_add(len as usize).and_then(|end| bytes.get(at + FRAME_HEADER_BYTES..end)) {
            Some(body) if tabnet_crypto::sha256(body)[..] == *checksum => body,
            _ => break,
        };
        apply(map, body).map_err(|e| corrupt(format!("frame {seq} at offset {at}: {e}")))?;
        at += FRAME_HEADER_BYTES + body.len();
        seq += 1;
    }
    // Only the last frame can be torn: any later frame header means rounds after this one were
    // acknowledged. Searching for the salt's marker first keeps this linear.
    let marker = &salt[..8];
    if let Some(later) = (at + 1..bytes.len())
        .filter(|&p| bytes[p..].starts_with(marker))
        .find(|&p| read_frame_header(&salt, &bytes[p..]).is_some_and(|(later_seq, ..)| later_seq >= seq))
    {
        return Err(corrupt(format!("frame {seq} at offset {at} fails its checksum but another frame follows at offset {later}")));
    }
    Ok(Replayed { salt, next_seq: seq, end: at })
}

/// Replays a log of the first format. It has no sequence numbers and its lengths are not
/// checked, so it is trusted only as far as this: a frame that fails is a torn tail if it
/// reaches the end of the file, and corruption if whole frames' worth of bytes follow it.
fn replay_v1(map: &mut BTreeMap<String, Vec<u8>>, bytes: &[u8], path: &Path) -> Result<(), String> {
    let mut at = 0usize;
    while let Some((body, len)) = read_v1_frame(&bytes[at..]) {
        apply(map, body).map_err(|e| format!("{}: {e}", path.display()))?;
        at += len;
    }
    if at == bytes.len() {
        return Ok(());
    }
    let rest = &bytes[at..];
    let reaches_the_end = rest.len() < V1_HEADER_BYTES
        || (V1_HEADER_BYTES as u64).saturating_add(u64::from_le_bytes(rest[..8].try_into().expect("8 bytes"))) >= rest.len() as u64;
    if at == 0 || !reaches_the_end {
        return Err(format!(
            "{} is corrupt: the frame at offset {at} fails its checksum and is not the torn end of the log; refusing to open (the file is left as it is)",
            path.display()
        ));
    }
    // A torn last frame: it is dropped when the log is rewritten in the current format.
    Ok(())
}

/// The body of the first-format frame at the start of `bytes` and the frame's length; `None`
/// if it is incomplete or its checksum is wrong. Slices only: a huge length allocates nothing.
fn read_v1_frame(bytes: &[u8]) -> Option<(&[u8], usize)> {
    let len = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?);
    let end = (V1_HEADER_BYTES as u64).checked_add(len)?;
    let body = bytes.get(V1_HEADER_BYTES..usize::try_from(end).ok()?)?;
    (tabnet_crypto::sha256(body)[..] == bytes[8..V1_HEADER_BYTES]).then_some((body, end as usize))
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
                let len = u64::from_le_bytes(take(&mut body, 8)?.try_into().expect("8 bytes"));
                let len = usize::try_from(len).map_err(|_| "a record runs past its frame".to_string())?;
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
        self.check_usable()?;
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
        self.check_usable()?;
        if self.map.get(key).is_some_and(|old| old.as_slice() == value) {
            return Ok(false);
        }
        self.put(key, value)?;
        Ok(true)
    }

    fn delete(&mut self, key: &str) -> Result<(), String> {
        self.check_usable()?;
        if let Some(old) = self.map.remove(key) {
            self.live_bytes -= (key.len() + old.len()) as u64;
            self.stage(key);
        }
        Ok(())
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, String> {
        Ok(self.map.range(prefix.to_string()..).take_while(|(k, _)| k.starts_with(prefix)).map(|(k, _)| k.clone()).collect())
    }

    /// Appends and syncs one frame. If that fails, the store takes no more writes: the frame may
    /// be on disk in part, and after a failed sync the page cache's state is unknown.
    fn flush(&mut self) -> Result<(), String> {
        self.check_usable()?;
        if self.staged.is_empty() {
            return Ok(());
        }
        let mut body = Vec::new();
        for key in std::mem::take(&mut self.staged) {
            encode_op(&mut body, &key, self.map.get(&key).map(Vec::as_slice));
        }
        self.staged_set.clear();
        let mut result = self.append_frame(&body);
        if result.is_ok() && self.log_len > COMPACT_AFTER_BYTES && self.log_len > self.live_bytes {
            result = self.compact();
        }
        if let Err(e) = &result {
            self.failed = Some(e.clone());
        }
        result
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
        assert_eq!(fs::metadata(dir.join("log")).unwrap().len(), LOG_HEADER_BYTES as u64);
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

    /// A store with three flushed frames (`a` = 1, 2, 3); returns the log's length after each.
    fn three_frames(dir: &Path) -> Vec<usize> {
        let mut s = LogStore::open(dir).unwrap();
        let mut ends = vec![fs::metadata(dir.join("log")).unwrap().len() as usize];
        for v in [b"1", b"2", b"3"] {
            s.put("a", v).unwrap();
            s.put("padding", &[7; 50]).unwrap();
            s.flush().unwrap();
            ends.push(fs::metadata(dir.join("log")).unwrap().len() as usize);
        }
        ends
    }

    #[test]
    fn any_corrupt_byte_in_a_middle_frame_refuses_to_open_and_leaves_the_log_as_is() {
        let dir = temp_dir("corrupt-middle");
        let ends = three_frames(&dir);
        let log = dir.join("log");
        let pristine = fs::read(&log).unwrap();
        // Every byte of the log's header and of the second frame, header (length, checksum)
        // and body alike.
        for at in (0..ends[0]).chain(ends[1]..ends[2]) {
            let mut bytes = pristine.clone();
            bytes[at] ^= 0x40;
            fs::write(&log, &bytes).unwrap();
            let error = LogStore::open(&dir).err().unwrap_or_else(|| panic!("a flip at offset {at} opened"));
            assert!(error.contains(&log.display().to_string()) && error.contains("offset"), "{error}");
            assert_eq!(fs::read(&log).unwrap(), bytes, "the log changed after a refused open (flip at {at})");
        }
        fs::write(&log, &pristine).unwrap();
        assert_eq!(LogStore::open(&dir).unwrap().get("a").unwrap(), Some(b"3".to_vec()));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_torn_last_frame_is_cut_however_it_was_torn() {
        let dir = temp_dir("torn-any");
        let ends = three_frames(&dir);
        let log = dir.join("log");
        let pristine = fs::read(&log).unwrap();
        let last = ends[2]..ends[3];
        let mut torn: Vec<Vec<u8>> = Vec::new();
        // Cut anywhere inside the last frame.
        for cut in last.clone() {
            torn.push(pristine[..cut].to_vec());
        }
        // Written up to some point and zeros after (a filesystem that grew the file first).
        for written in last.clone().step_by(7) {
            let mut bytes = pristine.clone();
            bytes[written..].fill(0);
            torn.push(bytes);
        }
        // The header's page never reached the disk but the body's did.
        let mut bytes = pristine.clone();
        bytes[last.start..last.start + 20].fill(0);
        torn.push(bytes);
        // A zero-filled tail longer than the frame.
        let mut bytes = pristine[..ends[2] + 10].to_vec();
        bytes.resize(ends[3] + 4096, 0);
        torn.push(bytes);
        for bytes in torn {
            fs::write(&log, &bytes).unwrap();
            let mut s = LogStore::open(&dir).unwrap_or_else(|e| panic!("a torn tail of {} bytes refused: {e}", bytes.len() - ends[2]));
            assert_eq!(s.get("a").unwrap(), Some(b"2".to_vec()));
            assert_eq!(fs::metadata(&log).unwrap().len() as usize, ends[2], "the torn frame was not cut");
            // And the log goes on after the cut.
            s.put("b", b"x").unwrap();
            s.flush().unwrap();
            drop(s);
            assert_eq!(LogStore::open(&dir).unwrap().get("b").unwrap(), Some(b"x".to_vec()));
        }
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_huge_length_in_a_torn_tail_allocates_nothing_and_is_cut() {
        let dir = temp_dir("huge-length");
        let ends = three_frames(&dir);
        let log = dir.join("log");
        let mut bytes = fs::read(&log).unwrap();
        bytes.extend_from_slice(&[0xff; 64]);
        fs::write(&log, &bytes).unwrap();
        let s = LogStore::open(&dir).unwrap();
        assert_eq!(s.get("a").unwrap(), Some(b"3".to_vec()));
        assert_eq!(fs::metadata(&log).unwrap().len() as usize, ends[3]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_frame_forged_inside_a_value_does_not_make_a_torn_tail_look_corrupt() {
        // A canister controls bytes that reach the log (its memory). It must not be able to make
        // a torn tail look like mid-log corruption (which would keep the node from starting).
        let dir = temp_dir("forged");
        three_frames(&dir);
        let log = dir.join("log");
        let good = fs::read(&log).unwrap();
        let mut forged = good[good.len() / 2..].to_vec();
        forged.extend_from_slice(&good);
        let mut s = LogStore::open(&dir).unwrap();
        s.put("canister/memory", &forged).unwrap();
        s.flush().unwrap();
        drop(s);
        let full = fs::read(&log).unwrap();
        fs::write(&log, &full[..full.len() - 5]).unwrap();
        let s = LogStore::open(&dir).unwrap();
        assert_eq!(s.get("canister/memory").unwrap(), None);
        assert_eq!(s.get("a").unwrap(), Some(b"3".to_vec()));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_snapshot_with_bytes_after_its_frame_refuses_to_open() {
        let dir = temp_dir("snapshot-tail");
        let mut s = LogStore::open(&dir).unwrap();
        s.put("a", b"1").unwrap();
        s.flush().unwrap();
        s.compact().unwrap();
        drop(s);
        let snapshot = dir.join("snapshot");
        let mut bytes = fs::read(&snapshot).unwrap();
        bytes.extend_from_slice(b"junk");
        fs::write(&snapshot, &bytes).unwrap();
        let error = LogStore::open(&dir).err().expect("opened");
        assert!(error.contains(&snapshot.display().to_string()), "{error}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn after_a_failed_write_the_store_refuses_everything() {
        let dir = temp_dir("fsync-gate");
        let mut s = LogStore::open(&dir).unwrap();
        s.put("a", b"1").unwrap();
        s.flush().unwrap();
        // The disk fails (ENOSPC from /dev/full) in the middle of a round's flush.
        let real = std::mem::replace(&mut s.log, OpenOptions::new().append(true).open("/dev/full").unwrap());
        s.put("a", b"2").unwrap();
        assert!(s.flush().is_err());
        // Even if the disk comes back, what reached it is unknown: no more writes, no flush
        // that claims "a" = 2 is durable.
        s.log = real;
        assert!(s.put("b", b"3").is_err(), "a put after a failed flush was accepted");
        assert!(s.delete("a").is_err());
        assert!(s.flush().is_err(), "a flush after a failed flush claimed success");
        drop(s);
        assert_eq!(LogStore::open(&dir).unwrap().get("a").unwrap(), Some(b"1".to_vec()));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_state_directory_is_private_and_its_files_too() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let dir = temp_dir("modes");
        let mut s = LogStore::open(&dir).unwrap();
        s.put("seed", &[1; 32]).unwrap();
        s.flush().unwrap();
        s.compact().unwrap();
        drop(s);
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("log")), 0o600);
        assert_eq!(mode(&dir.join("snapshot")), 0o600);
        // A directory and files left readable by an older version are tightened on open.
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        fs::set_permissions(dir.join("log"), fs::Permissions::from_mode(0o644)).unwrap();
        fs::set_permissions(dir.join("snapshot"), fs::Permissions::from_mode(0o644)).unwrap();
        drop(LogStore::open(&dir).unwrap());
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("log")), 0o600);
        assert_eq!(mode(&dir.join("snapshot")), 0o600);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_log_of_the_first_format_opens_and_is_rewritten_in_the_current_one() {
        let dir = temp_dir("v1");
        create_private_dir(&dir).unwrap();
        let v1_frame = |ops: &[(&str, Option<&[u8]>)]| {
            let mut body = Vec::new();
            for (key, value) in ops {
                encode_op(&mut body, key, *value);
            }
            [(body.len() as u64).to_le_bytes().as_slice(), &tabnet_crypto::sha256(&body), &body].concat()
        };
        let mut log = v1_frame(&[("a", Some(b"1")), ("b", Some(b"2"))]);
        log.extend(v1_frame(&[("a", None), ("c", Some(b"3"))]));
        let whole = log.len();
        // And a torn third frame.
        log.extend(&v1_frame(&[("d", Some(b"4"))])[..30]);
        fs::write(dir.join("log"), &log).unwrap();
        let mut s = LogStore::open(&dir).unwrap();
        assert_eq!((s.get("a").unwrap(), s.get("b").unwrap(), s.get("c").unwrap(), s.get("d").unwrap()), (None, Some(b"2".to_vec()), Some(b"3".to_vec()), None));
        assert!(fs::read(dir.join("log")).unwrap().starts_with(LOG_MAGIC));
        s.put("e", b"5").unwrap();
        s.flush().unwrap();
        drop(s);
        let s = LogStore::open(&dir).unwrap();
        assert_eq!((s.get("c").unwrap(), s.get("e").unwrap()), (Some(b"3".to_vec()), Some(b"5".to_vec())));
        drop(s);

        // A first-format log with a bad frame in the middle refuses to open, unchanged.
        fs::remove_file(dir.join("snapshot")).unwrap();
        let mut bad = log[..whole].to_vec();
        bad[50] ^= 1;
        fs::write(dir.join("log"), &bad).unwrap();
        assert!(LogStore::open(&dir).err().unwrap().contains("offset"));
        assert_eq!(fs::read(dir.join("log")).unwrap(), bad);
        fs::remove_dir_all(&dir).unwrap();
    }
}
