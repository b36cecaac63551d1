//! The `tabnet` binary against damaged state on disk: a log corrupt in the middle keeps the node
//! from starting (and is left as it is), a torn last frame is cut, the state is private.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The log's layout (see log_store.rs): a 32-byte header (magic, 16-byte salt, check), then
/// frames of a 64-byte header (salt's first 8 bytes, sequence number, body length, SHA-256 of
/// body, first 8 bytes of SHA-256 of salt and those fields) and the body.
const LOG_HEADER_BYTES: usize = 32;
const FRAME_HEADER_BYTES: usize = 64;

fn state_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tabnet-persistence-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn spawn(state_dir: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_tabnet"))
        .args(["serve", "--port", "0", "--state-dir"])
        .arg(state_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tabnet starts")
}

/// Starts a node on `state_dir`, waits until it serves, and stops it with SIGTERM.
fn run_once(state_dir: &Path) {
    let mut child = spawn(state_dir);
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert!(line.starts_with("tabnet listening on"), "the node did not start: {line:?}");
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "tabnet did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Starts a node that must refuse to start; returns what it said.
fn refused(state_dir: &Path) -> String {
    let output = spawn(state_dir).wait_with_output().unwrap();
    assert!(!output.status.success(), "the node started: {}", String::from_utf8_lossy(&output.stdout));
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A frame of the log with sequence number `seq` and `body`, as the node writes it.
fn frame(log: &[u8], seq: u64, body: &[u8]) -> Vec<u8> {
    let salt = &log[8..24];
    let mut header = salt[..8].to_vec();
    header.extend_from_slice(&seq.to_le_bytes());
    header.extend_from_slice(&(body.len() as u64).to_le_bytes());
    header.extend_from_slice(&tabnet_crypto::sha256(body));
    let check = tabnet_crypto::sha256(&[salt, &header[8..]].concat());
    header.extend_from_slice(&check[..8]);
    [header.as_slice(), body].concat()
}

/// The offsets at which the log's frames start (the log must end with a whole frame).
fn frame_starts(log: &[u8]) -> Vec<usize> {
    let mut starts = Vec::new();
    let mut at = LOG_HEADER_BYTES;
    while at < log.len() {
        starts.push(at);
        let len = u64::from_le_bytes(log[at + 16..at + 24].try_into().unwrap()) as usize;
        at += FRAME_HEADER_BYTES + len;
    }
    assert_eq!(at, log.len(), "the log does not end with a whole frame");
    starts
}

#[test]
fn a_log_corrupt_in_the_middle_keeps_the_node_from_starting_and_a_torn_tail_does_not() {
    let dir = state_dir("corrupt");
    run_once(&dir);
    let log_path = dir.join("log");
    let mut log = std::fs::read(&log_path).unwrap();
    assert!(log.starts_with(b"tabnetL2"));
    let starts = frame_starts(&log);
    assert!(!starts.is_empty(), "the node wrote no frame (its key seed)");
    // A later round (an empty frame), so that the node's first frame is in the middle.
    log.extend(frame(&log, starts.len() as u64, b""));
    std::fs::write(&log_path, &log).unwrap();
    run_once(&dir);
    let log = std::fs::read(&log_path).unwrap();

    // The first frame (the node's key seed) damaged: the node must not start, nor cut the log.
    let mut damaged = log.clone();
    damaged[starts[0] + FRAME_HEADER_BYTES] ^= 1;
    std::fs::write(&log_path, &damaged).unwrap();
    let said = refused(&dir);
    assert!(said.contains(&log_path.display().to_string()) && said.contains(&format!("offset {}", starts[0])), "{said}");
    assert_eq!(std::fs::read(&log_path).unwrap(), damaged, "the refused log was changed");

    // A torn last frame (a crash in the middle of an append) is cut and the node starts.
    let mut torn = log.clone();
    let partial = frame(&log, frame_starts(&log).len() as u64, &[9; 100]);
    torn.extend_from_slice(&partial[..partial.len() - 30]);
    std::fs::write(&log_path, &torn).unwrap();
    run_once(&dir);
    let after = std::fs::read(&log_path).unwrap();
    assert!(after.starts_with(&log), "the node lost whole frames");
    // Whole frames only: the torn one was cut (frames the node wrote since may follow).
    frame_starts(&after);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_state_directory_and_its_files_are_private() {
    let dir = state_dir("modes");
    std::fs::create_dir_all(&dir).unwrap();
    // Left readable by an earlier version: tightened.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    run_once(&dir);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            assert_eq!(mode(&path), 0o600, "{}", path.display());
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A tmpfs of `mib` MiB mounted at a fresh directory for the life of the value (needs root).
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(name: &str, mib: u32) -> Option<SmallDisk> {
        let dir = state_dir(name);
        std::fs::create_dir_all(&dir).unwrap();
        let mounted = Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"]).arg(&dir).status();
        if mounted.map(|s| s.success()).unwrap_or(false) {
            Some(SmallDisk(dir))
        } else {
            let _ = std::fs::remove_dir(&dir);
            None
        }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn a_node_whose_disk_fills_up_stops_instead_of_serving_state_it_cannot_keep() {
    let Some(disk) = SmallDisk::mount("full-disk", 8) else {
        eprintln!("skipped: mounting a small tmpfs needs root");
        return;
    };
    let state = disk.0.join("state");
    let mut child = spawn(&state);
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert!(line.starts_with("tabnet listening on"), "the node did not start: {line:?}");
    // Take every byte left; the node's next round cannot be stored.
    let filler = std::fs::File::create(disk.0.join("filler")).unwrap();
    let mut filler = std::io::BufWriter::new(filler);
    let chunk = vec![0u8; 64 * 1024];
    while std::io::Write::write_all(&mut filler, &chunk).is_ok() {}
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the node kept running on a full disk");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success(), "{stderr}");
    // It says why: what it had to store did not fit.
    assert!(stderr.contains("No space left on device"), "{stderr}");
}
