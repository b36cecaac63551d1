//! Stable memory: a byte vector grown in 64 KiB pages, with an undo log so that a trapping
//! execution can be rolled back without copying the whole memory first.

use std::collections::BTreeMap;
use std::ops::Range;

pub const WASM_PAGE_SIZE: u64 = 64 * 1024;
/// Granularity of the undo log: the IC's (and the OS's) 4 KiB page.
const UNDO_PAGE_SIZE: usize = 4096;

#[derive(Clone, Debug, Default)]
pub struct StableMemory {
    bytes: Vec<u8>,
    /// Present while an execution runs: the size before it and the bytes each write replaced.
    undo: Option<UndoLog>,
    /// The running execution is paused (see [`Self::swap_undo`]): the memory shows the
    /// contents before it, the undo log holds the execution's.
    parked: bool,
}

/// Each page's contents before its first write in the execution, kept once however often the
/// page is written: the log never holds more than the memory it can restore.
#[derive(Clone, Debug)]
struct UndoLog {
    len_before: usize,
    pages: BTreeMap<usize, Box<[u8]>>,
}

impl StableMemory {
    /// `bytes.len()` must be a multiple of the page size (checked by the callers that restore).
    pub fn new(bytes: Vec<u8>) -> Self {
        Self { bytes, undo: None, parked: false }
    }

    /// The contents; while an execution is parked, as they were before it.
    pub fn bytes(&self) -> &[u8] {
        match (&self.undo, self.parked) {
            (Some(undo), true) => &self.bytes[..undo.len_before],
            _ => &self.bytes,
        }
    }

    /// Bytes held, a parked execution's growth included.
    pub fn held_len(&self) -> usize {
        self.bytes.len()
    }

    /// Parks (or, called again, unparks) the running execution's changes: swaps each page it
    /// wrote with its undo copy, so that the memory reads as before the execution while the
    /// execution waits for its next slice. Costs the pages written, not the memory's size.
    pub fn swap_undo(&mut self) {
        let Some(undo) = &mut self.undo else { return };
        for (page, other) in undo.pages.iter_mut() {
            let start = page * UNDO_PAGE_SIZE;
            self.bytes[start..start + other.len()].swap_with_slice(other);
        }
        self.parked = !self.parked;
    }

    /// Drops a parked execution's changes: the memory stays as it was before the execution.
    pub fn discard_parked(&mut self) {
        if let (Some(undo), true) = (self.undo.take(), self.parked) {
            self.bytes.truncate(undo.len_before);
        }
        self.parked = false;
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    pub fn size_in_pages(&self) -> u64 {
        self.bytes.len() as u64 / WASM_PAGE_SIZE
    }

    /// Grows by `pages` zeroed pages unless the result would exceed `limit_bytes` (or the host
    /// cannot allocate it). Returns the previous size in pages.
    pub fn grow(&mut self, pages: u64, limit_bytes: u64) -> Option<u64> {
        let old = self.size_in_pages();
        let new_len = old.checked_add(pages)?.checked_mul(WASM_PAGE_SIZE)?;
        if new_len > limit_bytes {
            return None;
        }
        let new_len = usize::try_from(new_len).ok()?;
        let additional = new_len - self.bytes.len();
        self.bytes.try_reserve_exact(additional).ok()?;
        self.bytes.resize(new_len, 0);
        Some(old)
    }

    /// The byte range `[offset, offset + len)` if it lies inside the memory.
    pub fn range(&self, offset: u64, len: u64) -> Option<Range<usize>> {
        let end = offset.checked_add(len)?;
        if end > self.bytes.len() as u64 {
            return None;
        }
        Some(offset as usize..end as usize)
    }

    pub fn read(&self, offset: u64, len: u64) -> Option<&[u8]> {
        self.range(offset, len).map(|r| &self.bytes[r])
    }

    /// Writes `data` at `offset`; `false` (and nothing written) if it does not fit.
    pub fn write(&mut self, offset: u64, data: &[u8]) -> bool {
        let Some(range) = self.range(offset, data.len() as u64) else { return false };
        if let Some(undo) = &mut self.undo {
            // Bytes beyond the size before the execution disappear on rollback anyway.
            let logged_end = range.end.min(undo.len_before);
            if range.start < logged_end {
                for page in range.start / UNDO_PAGE_SIZE..=(logged_end - 1) / UNDO_PAGE_SIZE {
                    let start = page * UNDO_PAGE_SIZE;
                    let end = (start + UNDO_PAGE_SIZE).min(undo.len_before);
                    undo.pages.entry(page).or_insert_with(|| self.bytes[start..end].into());
                }
            }
        }
        self.bytes[range].copy_from_slice(data);
        true
    }

    /// Starts recording changes (one execution).
    pub fn begin(&mut self) {
        self.parked = false;
        self.undo = Some(UndoLog { len_before: self.bytes.len(), pages: BTreeMap::new() });
    }

    /// Keeps the changes since `begin`.
    pub fn commit(&mut self) {
        self.undo = None;
    }

    /// Undoes the changes since `begin`.
    pub fn rollback(&mut self) {
        if let Some(undo) = self.undo.take() {
            self.bytes.truncate(undo.len_before);
            for (page, old) in undo.pages {
                let start = page * UNDO_PAGE_SIZE;
                self.bytes[start..start + old.len()].copy_from_slice(&old);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rollback_restores_size_and_contents() {
        let mut m = StableMemory::new(vec![0; WASM_PAGE_SIZE as usize]);
        assert!(m.write(10, b"keep"));
        m.begin();
        assert!(m.write(10, b"gone"));
        assert_eq!(m.grow(2, u64::MAX), Some(1));
        assert!(m.write(WASM_PAGE_SIZE - 2, b"span"));
        m.rollback();
        assert_eq!(m.size_in_pages(), 1);
        assert_eq!(m.read(10, 4), Some(&b"keep"[..]));
        assert_eq!(m.read(WASM_PAGE_SIZE - 2, 2), Some(&[0u8, 0][..]));
    }

    #[test]
    fn a_parked_execution_shows_the_memory_before_it() {
        let mut m = StableMemory::new(vec![1; WASM_PAGE_SIZE as usize]);
        m.begin();
        assert!(m.write(10, b"new"));
        assert_eq!(m.grow(1, u64::MAX), Some(1));
        assert!(m.write(WASM_PAGE_SIZE + 5, b"grown"));
        m.swap_undo();
        assert_eq!(m.bytes(), &vec![1; WASM_PAGE_SIZE as usize][..]);
        m.swap_undo();
        assert_eq!(m.read(10, 3), Some(&b"new"[..]));
        assert_eq!(m.read(WASM_PAGE_SIZE + 5, 5), Some(&b"grown"[..]));
        m.swap_undo();
        m.discard_parked();
        assert_eq!(m.bytes(), &vec![1; WASM_PAGE_SIZE as usize][..]);
    }

    /// Bytes the undo log holds.
    fn undo_bytes(m: &StableMemory) -> usize {
        m.undo.as_ref().map_or(0, |u| u.pages.values().map(|p| p.len()).sum())
    }

    #[test]
    fn writing_one_page_again_and_again_keeps_one_undo_copy() {
        let mut m = StableMemory::new(vec![7; 4 * WASM_PAGE_SIZE as usize]);
        m.begin();
        for i in 0..1_000_000u64 {
            assert!(m.write(i % 100, &i.to_le_bytes()));
        }
        assert_eq!(undo_bytes(&m), UNDO_PAGE_SIZE, "one copy of the one page written");
        // A write over everything records each page once; a second one adds nothing.
        for _ in 0..2 {
            assert!(m.write(0, &vec![1; 4 * WASM_PAGE_SIZE as usize]));
            assert_eq!(undo_bytes(&m), 4 * WASM_PAGE_SIZE as usize);
        }
        // Unaligned writes across page boundaries roll back exactly.
        assert!(m.write(UNDO_PAGE_SIZE as u64 - 3, b"across"));
        assert_eq!(m.grow(1, u64::MAX), Some(4));
        assert!(m.write(4 * WASM_PAGE_SIZE - 2, b"grown"));
        m.rollback();
        assert_eq!(m.bytes(), vec![7; 4 * WASM_PAGE_SIZE as usize].as_slice());
    }

    #[test]
    fn grow_respects_the_limit_and_bounds_are_checked() {
        let mut m = StableMemory::default();
        assert_eq!(m.grow(2, WASM_PAGE_SIZE), None);
        assert_eq!(m.grow(1, WASM_PAGE_SIZE), Some(0));
        assert_eq!(m.grow(u64::MAX, u64::MAX), None);
        assert!(!m.write(WASM_PAGE_SIZE - 1, b"xy"));
        assert_eq!(m.read(u64::MAX, 2), None);
    }
}
