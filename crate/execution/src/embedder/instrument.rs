//! Rewrites a canister module so that the embedder reaches everything it must persist or call,
//! as the IC replica's instrumentation does: memory 0, table 0, every mutable global and the
//! `(start)` function are exported under reserved names, and the start section is removed
//! (start runs once, at installation, as an ordinary entry point — never on restore).
//!
//! Only the export section is rebuilt; every other section is copied byte for byte.

use std::ops::Range;
use wasm_encoder::{ExportKind, ExportSection, RawSection};

/// Names starting with this are reserved; modules may not export them.
pub const RESERVED_PREFIX: &str = "__tabnet_";
pub const MEMORY_EXPORT: &str = "__tabnet_memory";
pub const TABLE_EXPORT: &str = "__tabnet_table";
pub const START_EXPORT: &str = "__tabnet_start";

pub fn global_export(index: usize) -> String {
    format!("__tabnet_global_{index}")
}

const EXPORT_SECTION: u8 = 7;
const START_SECTION: u8 = 8;
/// Sections that come after the export section (start, element, data count, code, data).
const AFTER_EXPORT: [u8; 5] = [8, 9, 12, 10, 11];

/// An export of the rewritten module.
pub struct Export {
    pub name: String,
    pub kind: ExportKind,
    pub index: u32,
}

/// The module `wasm` with `exports` as its export section and no start section.
pub fn rewrite(wasm: &[u8], exports: &[Export]) -> Result<Vec<u8>, String> {
    let mut export_section = ExportSection::new();
    for e in exports {
        export_section.export(&e.name, e.kind, e.index);
    }
    let mut out = wasm_encoder::Module::new();
    let mut exports_written = false;
    for (id, range) in sections(wasm)? {
        if !exports_written && (id == EXPORT_SECTION || AFTER_EXPORT.contains(&id)) {
            out.section(&export_section);
            exports_written = true;
        }
        if id == EXPORT_SECTION || id == START_SECTION {
            continue;
        }
        out.section(&RawSection { id, data: &wasm[range] });
    }
    if !exports_written {
        out.section(&export_section);
    }
    Ok(out.finish())
}

/// The sections of a binary module: id and content range.
fn sections(wasm: &[u8]) -> Result<Vec<(u8, Range<usize>)>, String> {
    if wasm.len() < 8 || &wasm[..4] != b"\0asm" {
        return Err("not a Wasm binary module".into());
    }
    let mut pos = 8;
    let mut out = Vec::new();
    while pos < wasm.len() {
        let id = wasm[pos];
        pos += 1;
        let (size, len) = read_var_u32(&wasm[pos..]).ok_or("malformed section size")?;
        pos += len;
        let end =
            pos.checked_add(size as usize).filter(|&end| end <= wasm.len()).ok_or("section extends past the end")?;
        out.push((id, pos..end));
        pos = end;
    }
    Ok(out)
}

/// An unsigned LEB128 number of at most 32 bits: value and bytes read.
fn read_var_u32(bytes: &[u8]) -> Option<(u32, usize)> {
    let mut value: u64 = 0;
    for (i, &b) in bytes.iter().take(5).enumerate() {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return u32::try_from(value).ok().map(|v| (v, i + 1));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leb128() {
        assert_eq!(read_var_u32(&[0x05]), Some((5, 1)));
        assert_eq!(read_var_u32(&[0xe5, 0x8e, 0x26]), Some((624_485, 3)));
        assert_eq!(read_var_u32(&[0x80, 0x80, 0x80, 0x80, 0x80]), None);
        assert_eq!(read_var_u32(&[0x80]), None);
    }

    #[test]
    fn truncated_modules_are_errors() {
        assert!(sections(b"\0asm\x01\0\0\0\x01\x10").is_err());
        assert!(sections(b"\0asm").is_err());
        assert!(sections(b"\0asm\x01\0\0\0").unwrap().is_empty());
    }
}
