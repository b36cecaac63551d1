//! The state checkpoints a subnet node keeps on disk for syncing peers: the replicated state at
//! the last catch-up heights, in the node's directory as `checkpoints/<height>`.

use std::path::{Path, PathBuf};

use tabnet_consensus::{Checkpoint, Height};

/// How many checkpoints are kept (the newest).
const CHECKPOINTS_KEPT: usize = 2;

/// The checkpoints this node keeps on disk for syncing peers (the newest few).
pub struct Checkpoints {
    dir: PathBuf,
    pub kept: Vec<Checkpoint>,
}

impl Checkpoints {
    pub fn open(node_dir: &Path) -> Result<Self, String> {
        let dir = node_dir.join("checkpoints");
        std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let mut heights: Vec<Height> = std::fs::read_dir(&dir)
            .map_err(|e| format!("cannot read {}: {e}", dir.display()))?
            .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
            .collect();
        heights.sort_unstable();
        let mut kept = Vec::new();
        for height in heights.iter().rev().take(CHECKPOINTS_KEPT).rev() {
            let bytes = std::fs::read(dir.join(height.to_string())).map_err(|e| format!("cannot read checkpoint {height}: {e}"))?;
            kept.push(Checkpoint::new(*height, bytes));
        }
        Ok(Checkpoints { dir, kept })
    }

    /// Keeps `checkpoint` (written whole, then renamed into place) and drops the oldest.
    pub fn add(&mut self, checkpoint: Checkpoint) -> Result<(), String> {
        let height = checkpoint.height();
        let tmp = self.dir.join(format!("{height}.tmp"));
        std::fs::write(&tmp, checkpoint.bytes()).and_then(|_| std::fs::rename(&tmp, self.dir.join(height.to_string()))).map_err(|e| format!("cannot write checkpoint {height}: {e}"))?;
        self.kept.retain(|c| c.height() != height);
        self.kept.push(checkpoint);
        while self.kept.len() > CHECKPOINTS_KEPT {
            let old = self.kept.remove(0);
            let _ = std::fs::remove_file(self.dir.join(old.height().to_string()));
        }
        Ok(())
    }
}
