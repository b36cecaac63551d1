//! The replica's [`Store`] on the file system: key `a/b/c` is the file `<dir>/a/b/c`.
//! Writes are atomic and durable: write a temporary file, fsync it, rename it over the old one,
//! fsync the directory. A crash leaves either the old or the new value, never half of one.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use tabnet_replica::Store;

pub struct FileStore {
    dir: PathBuf,
}

impl FileStore {
    pub fn open(dir: &Path) -> Result<Self, String> {
        fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        Ok(Self { dir: dir.to_path_buf() })
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

fn sync_dir(dir: &Path) -> Result<(), String> {
    fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| format!("cannot sync {}: {e}", dir.display()))
}

impl Store for FileStore {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, String> {
        match fs::read(self.path(key)?) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("cannot read {key}: {e}")),
        }
    }

    fn put(&mut self, key: &str, value: &[u8]) -> Result<(), String> {
        let path = self.path(key)?;
        let parent = path.parent().expect("keys are inside the directory").to_path_buf();
        fs::create_dir_all(&parent).map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        let tmp = parent.join(format!(".{}.tmp", path.file_name().unwrap().to_string_lossy()));
        let write = || -> std::io::Result<()> {
            let mut f = fs::File::create(&tmp)?;
            f.write_all(value)?;
            f.sync_all()?;
            fs::rename(&tmp, &path)
        };
        write().map_err(|e| format!("cannot write {key}: {e}"))?;
        sync_dir(&parent)
    }

    fn delete(&mut self, key: &str) -> Result<(), String> {
        let path = self.path(key)?;
        match fs::remove_file(&path) {
            Ok(()) => sync_dir(path.parent().expect("keys are inside the directory")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(format!("cannot delete {key}: {e}")),
        }
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
        keys.sort();
        Ok(keys)
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
        let s2 = FileStore::open(&dir).unwrap();
        assert_eq!(s2.get("state/metadata").unwrap(), Some(b"m".to_vec()));
        fs::remove_dir_all(&dir).unwrap();
    }
}
