//! The log store's reader: `LogStore::open` over a state directory whose `snapshot` and `log`
//! an attacker (or a disk) wrote. The store lives in the `tabnet` binary crate, which is not a
//! library, so its source file is compiled into this crate as it is (`#[path]`); it depends
//! only on `tabnet_replica::Store` and `tabnet_crypto`.
//!
//! An input is `[mode][rest]`. Mode bit 0 clear: `rest` is `[snapshot length: u16 LE]
//! [snapshot][log]`, raw bytes (framing, checksums, torn tails). Bit 0 set: `rest` is a list
//! of `[length: u16 LE][body]` records that become frames with correct checksums — the first
//! the snapshot if bit 1 is set, the others the log — so the fuzzer reaches the record
//! decoder behind the SHA-256; bit 2 then tears the last frame (cuts its last bytes off).
//!
//! Beyond not crashing, the reader must be consistent: a store that opens opens again with
//! the same contents (the repair it made on the first open is stable), and a write flushed
//! after it is there on the next open, next to everything that was.

#[path = "../../crate/native/src/log_store.rs"]
#[allow(dead_code)]
mod log_store;

use crate::Seed;
use log_store::LogStore;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::OnceLock;
use tabnet_replica::Store;

/// A directory of this process on tmpfs when there is one (the store syncs every flush).
fn dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = if std::path::Path::new("/dev/shm").is_dir() { PathBuf::from("/dev/shm") } else { std::env::temp_dir() };
        // libFuzzer ends the process without a hook to clean up: remove what earlier runs
        // (processes no longer alive) left behind.
        if let Ok(entries) = std::fs::read_dir(&base) {
            for entry in entries.flatten() {
                let name = entry.file_name();
                let Some(pid) = name.to_str().and_then(|n| n.strip_prefix("tabnet-fuzz-log-reader-")) else { continue };
                if !std::path::Path::new("/proc").join(pid).exists() {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
        base.join(format!("tabnet-fuzz-log-reader-{}", std::process::id()))
    })
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = (body.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&tabnet_crypto::sha256(body));
    out.extend_from_slice(body);
    out
}

fn u16_at(data: &[u8]) -> Option<(usize, &[u8])> {
    let n = u16::from_le_bytes(data.get(..2)?.try_into().ok()?) as usize;
    Some((n, &data[2..]))
}

/// The snapshot (if any) and the log an input stands for.
fn files(data: &[u8]) -> (Option<Vec<u8>>, Vec<u8>) {
    let Some((&mode, mut rest)) = data.split_first() else { return (None, Vec::new()) };
    if mode & 1 == 0 {
        let Some((n, rest)) = u16_at(rest) else { return (None, rest.to_vec()) };
        let n = n.min(rest.len());
        let snapshot = (mode & 2 != 0).then(|| rest[..n].to_vec());
        return (snapshot, rest[n..].to_vec());
    }
    let mut bodies = Vec::new();
    while let Some((n, tail)) = u16_at(rest) {
        let n = n.min(tail.len());
        bodies.push(&tail[..n]);
        rest = &tail[n..];
    }
    let mut bodies = bodies.into_iter();
    let snapshot = if mode & 2 != 0 { bodies.next().map(frame) } else { None };
    let mut log: Vec<u8> = bodies.flat_map(|b| frame(b)).collect();
    if mode & 4 != 0 {
        let cut = (mode >> 3) as usize + 1;
        log.truncate(log.len().saturating_sub(cut));
    }
    (snapshot, log)
}

fn contents(store: &LogStore) -> BTreeMap<String, Vec<u8>> {
    let keys = store.list("").expect("list of an open store");
    keys.into_iter().map(|k| {
        let v = store.get(&k).expect("get of an open store").unwrap_or_else(|| panic!("listed key {k:?} has no value"));
        (k, v)
    }).collect()
}

/// Writes the input's files into the directory and opens the store over them.
fn open_input(data: &[u8]) -> Result<LogStore, String> {
    let dir = dir();
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).expect("create the fuzz directory");
    let (snapshot, log) = files(data);
    if let Some(snapshot) = snapshot {
        std::fs::write(dir.join("snapshot"), snapshot).expect("write snapshot");
    }
    std::fs::write(dir.join("log"), log).expect("write log");
    LogStore::open(dir)
}

pub fn run(data: &[u8]) {
    let Ok(store) = open_input(data) else { return };
    let first = contents(&store);
    drop(store);
    let mut store = LogStore::open(dir()).unwrap_or_else(|e| panic!("a store that opened does not open again: {e}"));
    assert_eq!(contents(&store), first, "a second open of the same directory reads other contents");
    store.put("fuzz/after", b"written after opening").expect("put");
    store.delete("fuzz/deleted").expect("delete");
    store.flush().unwrap_or_else(|e| panic!("flush after opening fails: {e}"));
    drop(store);
    let store = LogStore::open(dir()).unwrap_or_else(|e| panic!("a store does not open after a flush: {e}"));
    let mut expected = first;
    expected.insert("fuzz/after".into(), b"written after opening".to_vec());
    expected.remove("fuzz/deleted");
    assert_eq!(contents(&store), expected, "a flushed write is lost or the old contents changed");
}

/// Seeds must open, and (except the empty store) hold something.
pub fn check(seed: &Seed) -> Result<(), String> {
    let store = open_input(&seed.bytes)?;
    if seed.name != "empty" && contents(&store).is_empty() {
        return Err("the store opened empty".into());
    }
    Ok(())
}

fn put(key: &str, value: &[u8]) -> Vec<u8> {
    let mut out = vec![1];
    out.extend_from_slice(&(key.len() as u32).to_le_bytes());
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(&(value.len() as u64).to_le_bytes());
    out.extend_from_slice(value);
    out
}

fn delete(key: &str) -> Vec<u8> {
    let mut out = vec![0];
    out.extend_from_slice(&(key.len() as u32).to_le_bytes());
    out.extend_from_slice(key.as_bytes());
    out
}

fn framed(mode: u8, bodies: &[Vec<u8>]) -> Vec<u8> {
    let mut out = vec![mode];
    for b in bodies {
        out.extend_from_slice(&(b.len() as u16).to_le_bytes());
        out.extend_from_slice(b);
    }
    out
}

pub fn seeds() -> Vec<Seed> {
    let round1 = [put("canister/a/system", b"controllers"), put("canister/a/memory/0", &[7; 100])].concat();
    let round2 = [put("canister/a/memory/0", &[8; 100]), delete("canister/b/system"), put("meta", b"height 2")].concat();
    let snapshot = [put("canister/b/system", b"old"), put("meta", b"height 0")].concat();
    // The same store as raw bytes, with real frames.
    let mut raw = vec![2u8];
    let snapshot_frame = frame(&snapshot);
    raw.extend_from_slice(&(snapshot_frame.len() as u16).to_le_bytes());
    raw.extend_from_slice(&snapshot_frame);
    raw.extend_from_slice(&frame(&round1));
    raw.extend_from_slice(&frame(&round2));
    vec![
        Seed::new("empty", vec![0]),
        Seed::new("raw-snapshot-and-log", raw),
        Seed::new("log-only", framed(1, &[round1.clone(), round2.clone()])),
        Seed::new("snapshot-and-log", framed(3, &[snapshot.clone(), round1.clone(), round2.clone()])),
        Seed::new("torn-last-frame", framed(3 | 4 | (5 << 3), &[snapshot, round1, round2])),
    ]
}
