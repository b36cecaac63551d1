//! The state checkpoints a subnet node keeps on disk for syncing peers: the replicated state at
//! the last catch-up heights, in the node's directory as `checkpoints/<height>`.
//!
//! A checkpoint file is a header — a magic and the manifest hash, which catch-up packages commit
//! to — then the state's bytes. It is written to `<height>.tmp`, synced, renamed into place and
//! the directory synced, so a crash leaves either no checkpoint or a whole one (`*.tmp` files
//! left by a crash are removed on opening). Opening computes the manifest anyway (it is needed
//! to serve peers) and drops a file whose hash is not its header's, so a checkpoint damaged on
//! disk is noticed here before peers do. Files without the header, written by an earlier version,
//! are kept as they are: peers check every chunk against the catch-up package.

use std::path::{Path, PathBuf};

use tabnet_consensus::{Checkpoint, Height};

use crate::log_store::{create_private_dir, write_durably};

/// How many checkpoints are kept (the newest).
const CHECKPOINTS_KEPT: usize = 2;

/// Starts a checkpoint file; the manifest hash follows.
const MAGIC: &[u8; 8] = b"tabnetC1";
const HEADER_BYTES: usize = 8 + 32;

/// The checkpoints this node keeps on disk for syncing peers (the newest few).
pub struct Checkpoints {
    dir: PathBuf,
    pub kept: Vec<Checkpoint>,
}

impl Checkpoints {
    pub fn open(node_dir: &Path) -> Result<Self, String> {
        let dir = node_dir.join("checkpoints");
        create_private_dir(&dir)?;
        let mut heights = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))? {
            let path = entry.map_err(|e| format!("cannot read {}: {e}", dir.display()))?.path();
            if path.extension().is_some_and(|e| e == "tmp") {
                // Left by a crash before its rename: never a checkpoint.
                std::fs::remove_file(&path).map_err(|e| format!("cannot remove {}: {e}", path.display()))?;
            } else if let Some(height) = path.file_name().and_then(|n| n.to_str()).and_then(|n| n.parse::<Height>().ok()) {
                heights.push(height);
            }
        }
        heights.sort_unstable();
        let newest = heights.split_off(heights.len().saturating_sub(CHECKPOINTS_KEPT));
        for height in heights {
            // Older ones whose removal a crash undid.
            let path = dir.join(height.to_string());
            std::fs::remove_file(&path).map_err(|e| format!("cannot remove {}: {e}", path.display()))?;
        }
        let mut kept = Vec::new();
        for height in newest {
            let path = dir.join(height.to_string());
            let bytes = std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            match checkpoint_of_file(height, bytes) {
                Some(checkpoint) => kept.push(checkpoint),
                None => {
                    eprintln!("tabnet: {} is damaged (its manifest hash is not the one written with it); removed", path.display());
                    std::fs::remove_file(&path).map_err(|e| format!("cannot remove {}: {e}", path.display()))?;
                }
            }
        }
        Ok(Checkpoints { dir, kept })
    }

    /// Keeps `checkpoint` (written whole and synced before it takes its name) and drops the oldest.
    pub fn add(&mut self, checkpoint: Checkpoint) -> Result<(), String> {
        let height = checkpoint.height();
        write_durably(&self.dir.join(height.to_string()), &[MAGIC, &checkpoint.hash(), checkpoint.bytes()])
            .map_err(|e| format!("cannot write checkpoint {height}: {e}"))?;
        self.kept.retain(|c| c.height() != height);
        self.kept.push(checkpoint);
        while self.kept.len() > CHECKPOINTS_KEPT {
            let old = self.kept.remove(0);
            let path = self.dir.join(old.height().to_string());
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(format!("cannot remove {}: {e}", path.display())),
                _ => {}
            }
        }
        Ok(())
    }
}

/// The checkpoint a file holds, or `None` if it is not what was written.
fn checkpoint_of_file(height: Height, mut bytes: Vec<u8>) -> Option<Checkpoint> {
    if !bytes.starts_with(MAGIC) {
        // An earlier version's file, with no header.
        return Some(Checkpoint::new(height, bytes));
    }
    let written_hash: Vec<u8> = bytes.drain(..HEADER_BYTES.min(bytes.len())).skip(MAGIC.len()).collect();
    let checkpoint = Checkpoint::new(height, bytes);
    (checkpoint.hash()[..] == written_hash[..]).then_some(checkpoint)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("tabnet-checkpoints-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn state(height: Height) -> Vec<u8> {
        (0..3000u32).map(|i| (i as u64 * 31 + height) as u8).collect()
    }

    #[test]
    fn the_newest_two_come_back_whole_after_a_reopen() {
        let dir = temp_dir("reopen");
        let mut checkpoints = Checkpoints::open(&dir).unwrap();
        for height in [100, 200, 300] {
            checkpoints.add(Checkpoint::new(height, state(height))).unwrap();
        }
        let hashes: Vec<_> = checkpoints.kept.iter().map(Checkpoint::hash).collect();
        drop(checkpoints);
        let checkpoints = Checkpoints::open(&dir).unwrap();
        assert_eq!(checkpoints.kept.iter().map(Checkpoint::height).collect::<Vec<_>>(), vec![200, 300]);
        assert_eq!(checkpoints.kept.iter().map(Checkpoint::hash).collect::<Vec<_>>(), hashes);
        assert_eq!(checkpoints.kept[1].bytes(), state(300));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_leftover_temporary_file_is_removed_and_never_served() {
        let dir = temp_dir("tmp");
        let mut checkpoints = Checkpoints::open(&dir).unwrap();
        checkpoints.add(Checkpoint::new(100, state(100))).unwrap();
        // A crash before the rename of checkpoint 200: half its bytes under the temporary name.
        let tmp = dir.join("checkpoints").join("200.tmp");
        std::fs::write(&tmp, &state(200)[..1000]).unwrap();
        let checkpoints = Checkpoints::open(&dir).unwrap();
        assert_eq!(checkpoints.kept.iter().map(Checkpoint::height).collect::<Vec<_>>(), vec![100]);
        assert!(!tmp.exists(), "the leftover temporary file is still there");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_checkpoint_damaged_on_disk_is_not_served() {
        let dir = temp_dir("damaged");
        let mut checkpoints = Checkpoints::open(&dir).unwrap();
        checkpoints.add(Checkpoint::new(100, state(100))).unwrap();
        checkpoints.add(Checkpoint::new(200, state(200))).unwrap();
        let path = dir.join("checkpoints").join("200");
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[1500] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        // Cut short, as a file written without a sync before its rename can be after a crash.
        let path = dir.join("checkpoints").join("100");
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        let checkpoints = Checkpoints::open(&dir).unwrap();
        assert!(checkpoints.kept.is_empty(), "served a damaged checkpoint at {:?}", checkpoints.kept.iter().map(Checkpoint::height).collect::<Vec<_>>());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_file_of_the_earlier_format_is_still_served_and_older_files_are_removed() {
        let dir = temp_dir("legacy");
        let checkpoints_dir = dir.join("checkpoints");
        std::fs::create_dir_all(&checkpoints_dir).unwrap();
        for height in [100, 200, 300] {
            std::fs::write(checkpoints_dir.join(height.to_string()), state(height)).unwrap();
        }
        let checkpoints = Checkpoints::open(&dir).unwrap();
        assert_eq!(checkpoints.kept.iter().map(Checkpoint::height).collect::<Vec<_>>(), vec![200, 300]);
        assert_eq!(checkpoints.kept[1].hash(), Checkpoint::new(300, state(300)).hash());
        assert!(!checkpoints_dir.join("100").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn checkpoints_are_private() {
        let dir = temp_dir("modes");
        let mut checkpoints = Checkpoints::open(&dir).unwrap();
        checkpoints.add(Checkpoint::new(100, state(100))).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir.join("checkpoints")), 0o700);
        assert_eq!(mode(&dir.join("checkpoints").join("100")), 0o600);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
