//! The replica's [`Store`] on the file system: key `a/b/c` is the file `<dir>/a/b/c`.
//!
//! Writes are staged and committed as a group by `flush`: each `put` writes a temporary file;
//! `flush` makes them all durable with one `syncfs`, renames them over the old files, removes
//! deleted ones and syncs again. A crash leaves each file either old or new, never half written,
//! and costs two syncs per round instead of two per file.

use std::fs;
use std::collections::BTreeMap;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use tabnet_replica::Store;

pub struct FileStore {
    dir: PathBuf,
    /// Writes since the last flush: key → new value (`None`: deleted). Reads see them.
    staged: BTreeMap<String, Option<Vec<u8>>>,
}

impl FileStore {
    pub fn open(dir: &Path) -> Result<Self, String> {
        fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        Ok(Self { dir: dir.to_path_buf(), staged: BTreeMap::new() })
    }

    fn temporary(path: &Path) -> PathBuf {
        path.with_file_name(format!(".{}.tmp", path.file_name().expect("keys name files").to_string_lossy()))
    }

    fn path(&self, key: &str) -> Result<PathBuf, String> {
        // Keys are made by the replica; refuse anything that could leave the directory.
        let ok = !key.is_empty()
            && key.split('/').all(|part| {
                !part.is_empty() && part != "." && part != ".." && part.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
            });
        if !ok {
            return Err(format!("invalid store key {key:?}"));
        }
        Ok(self.dir.join(key))
    }
}

/// Flushes the whole file system holding `dir` to disk: one call for all staged files.
fn sync_filesystem(dir: &Path) -> Result<(), String> {
    let d = fs::File::open(dir).map_err(|e| format!("cannot open {}: {e}", dir.display()))?;
    // SAFETY: syncfs takes a file descriptor we own for the duration of the call.
    if unsafe { libc::syncfs(d.as_raw_fd()) } == 0 {
        Ok(())
    } else {
        Err(format!("cannot sync {}: {}", dir.display(), std::io::Error::last_os_error()))
    }
}

impl Store for FileStore {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, String> {
        if let Some(staged) = self.staged.get(key) {
            return Ok(staged.clone());
        }
        match fs::read(self.path(key)?) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("cannot read {key}: {e}")),
        }
    }

    fn put(&mut self, key: &str, value: &[u8]) -> Result<(), String> {
        let path = self.path(key)?;
        let parent = path.parent().expect("keys are inside the directory");
        fs::create_dir_all(parent).map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        fs::write(Self::temporary(&path), value).map_err(|e| format!("cannot write {key}: {e}"))?;
        self.staged.insert(key.to_string(), Some(value.to_vec()));
        Ok(())
    }

    fn delete(&mut self, key: &str) -> Result<(), String> {
        let path = self.path(key)?;
        let _ = fs::remove_file(Self::temporary(&path));
        self.staged.insert(key.to_string(), None);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), String> {
        if self.staged.is_empty() {
            return Ok(());
        }
        sync_filesystem(&self.dir)?;
        for (key, value) in std::mem::take(&mut self.staged) {
            let path = self.path(&key)?;
            let result = match value {
                Some(_) => fs::rename(Self::temporary(&path), &path),
                None => match fs::remove_file(&path) {
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                    other => other,
                },
            };
            result.map_err(|e| format!("cannot commit {key}: {e}"))?;
        }
        sync_filesystem(&self.dir)
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, String> {
        // `dir/part` prefixes: list the directory, keep names that start with `part`.
        let (dir_key, name_prefix) = match prefix.rfind('/') {
            Some(i) => (&prefix[..i], &prefix[i + 1..]),
            None => ("", prefix),
        };
        let dir = if dir_key.is_empty() { self.dir.clone() } else { self.path(dir_key)? };
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(format!("cannot list {}: {e}", dir.display())),
        };
        let mut keys = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let is_file = entry.file_type().map(|t| t.is_file()).unwrap_or(false);
            if is_file && !name.starts_with('.') && name.starts_with(name_prefix) {
                keys.push(if dir_key.is_empty() { name } else { format!("{dir_key}/{name}") });
            }
        }
        // Staged writes count already.
        let mut keys: std::collections::BTreeSet<String> = keys.into_iter().collect();
        for (key, value) in self.staged.range(prefix.to_string()..).take_while(|(k, _)| k.starts_with(prefix)) {
            match value {
                Some(_) => keys.insert(key.clone()),
                None => keys.remove(key),
            };
        }
        Ok(keys.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_store_round_trips_and_lists() {
        let dir = std::env::temp_dir().join(format!("tabnet-store-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let mut s = FileStore::open(&dir).unwrap();
        s.put("state/canister/00", b"a").unwrap();
        s.put("state/canister/01", b"b").unwrap();
        s.put("state/metadata", b"m").unwrap();
        s.put("state/canister/01", b"c").unwrap();
        assert_eq!(s.get("state/canister/01").unwrap(), Some(b"c".to_vec()));
        assert_eq!(s.list("state/canister/").unwrap(), vec!["state/canister/00", "state/canister/01"]);
        s.delete("state/canister/00").unwrap();
        assert_eq!(s.get("state/canister/00").unwrap(), None);
        assert!(s.put("../escape", b"x").is_err());
        s.flush().unwrap();
        let s2 = FileStore::open(&dir).unwrap();
        assert_eq!(s2.get("state/metadata").unwrap(), Some(b"m".to_vec()));
        assert_eq!(s2.get("state/canister/00").unwrap(), None);
        assert_eq!(s2.list("state/canister/").unwrap(), vec!["state/canister/01"]);

        // A crash before the flush: the old values stand, the staged ones are gone.
        s.put("state/metadata", b"new").unwrap();
        s.put("state/canister/02", b"d").unwrap();
        drop(s);
        let s3 = FileStore::open(&dir).unwrap();
        assert_eq!(s3.get("state/metadata").unwrap(), Some(b"m".to_vec()));
        assert_eq!(s3.list("state/canister/").unwrap(), vec!["state/canister/01"]);
        fs::remove_dir_all(&dir).unwrap();
    }
}
