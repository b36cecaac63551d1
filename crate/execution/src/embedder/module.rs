//! A canister's Wasm module: decompressed, checked against the IC's rules for canister modules
//! (interface spec, "WebAssembly module requirements"), instrumented and compiled once.

use super::instrument::{self, Export, MEMORY_EXPORT, RESERVED_PREFIX, START_EXPORT, TABLE_EXPORT};
use crate::system_api::{lookup_ic0_function, new_linker, HostState};
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Read;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use tabnet_types::{ErrorCode, UserError};
use wasm_encoder::ExportKind;
use wasmi::{CompilationMode, Config, Engine, Linker};
use wasmparser::{CompositeInnerType, ExternalKind, FuncType, Operator, Parser, Payload, TypeRef, ValType};

/// Largest module accepted, after decompression (guards against gzip bombs).
pub const MAX_MODULE_BYTES: usize = 100 * 1024 * 1024;
const MAX_FUNCTIONS: usize = 50_000;
const MAX_GLOBALS: usize = 1_000;
const MAX_EXPORTED_METHODS: usize = 1_000;
const MAX_EXPORTED_METHOD_NAME_BYTES: usize = 20_000;
const MAX_CUSTOM_SECTIONS: usize = 16;
const MAX_CUSTOM_SECTIONS_BYTES: usize = 1024 * 1024;
/// Call depth and value-stack cells a guest may use (wasmi's defaults are too small for
/// recursive canister code).
const MAX_RECURSION_DEPTH: usize = 20_000;
const MAX_STACK_CELLS: usize = 4 * 1024 * 1024;

/// The system entry points a canister may export besides its methods.
pub const SYSTEM_EXPORTS: [&str; 7] = [
    "canister_init",
    "canister_pre_upgrade",
    "canister_post_upgrade",
    "canister_inspect_message",
    "canister_heartbeat",
    "canister_global_timer",
    "canister_on_low_wasm_memory",
];
const METHOD_PREFIXES: [&str; 3] = ["canister_update ", "canister_query ", "canister_composite_query "];

pub struct CanisterModule {
    /// The module as installed (possibly gzipped).
    bytes: Vec<u8>,
    wasm_hash: [u8; 32],
    engine: Engine,
    compiled: wasmi::Module,
    linker: Linker<HostState>,
    is_wasm64: bool,
    has_memory: bool,
    has_table: bool,
    has_start: bool,
    /// Types of the module's mutable globals, in index order: the globals a state persists.
    persisted_globals: Vec<ValType>,
    exported_functions: BTreeSet<String>,
    metadata: BTreeMap<String, (bool, Vec<u8>)>,
    /// The module drops data segments (`data.drop`), which the IC does not carry from one
    /// message to the next: each execution then gets a fresh instance.
    fresh_instance_per_execution: bool,
}

impl std::fmt::Debug for CanisterModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CanisterModule")
            .field("wasm_hash", &hex_string(&self.wasm_hash))
            .field("bytes", &self.bytes.len())
            .field("is_wasm64", &self.is_wasm64)
            .finish_non_exhaustive()
    }
}

fn hex_string(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn invalid_wasm(detail: impl std::fmt::Display) -> UserError {
    UserError::new(ErrorCode::CanisterInvalidWasm, format!("Canister's Wasm module is not valid: {detail}"))
}

/// Parses and validates the whole module, with every proposal enabled, with a wasmparser whose
/// length checks cannot overflow on 32-bit targets. wasmi's own (older) wasmparser then only
/// sees modules whose every length fits the buffer; wasmi decides which features are allowed.
fn check_structure(wasm: &[u8]) -> Result<(), UserError> {
    let features = wasmparser_checked::WasmFeatures::all();
    wasmparser_checked::Validator::new_with_features(features).validate_all(wasm).map(|_| ()).map_err(invalid_wasm)
}

/// Compiled modules by hash, shared by every canister that runs the same Wasm: a hundred
/// canisters of one module compile it once and hold one copy. Weak, so a module no canister
/// runs any more is freed. Compilation is a pure function of the bytes, so sharing cannot
/// change any result.
fn compiled_modules() -> &'static Mutex<HashMap<[u8; 32], Weak<CanisterModule>>> {
    static MODULES: OnceLock<Mutex<HashMap<[u8; 32], Weak<CanisterModule>>>> = OnceLock::new();
    MODULES.get_or_init(Default::default)
}

impl CanisterModule {
    /// Decodes (raw `\0asm` or gzip), validates, instruments and compiles a canister module,
    /// or returns the one already compiled from the same bytes.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<Arc<Self>, UserError> {
        let bytes = bytes.into();
        let wasm_hash: [u8; 32] = Sha256::digest(&bytes).into();
        let cached = compiled_modules().lock().unwrap_or_else(|e| e.into_inner()).get(&wasm_hash).and_then(Weak::upgrade);
        if let Some(module) = cached.filter(|m| m.bytes == bytes) {
            return Ok(module);
        }
        let module = Self::compile(bytes, wasm_hash)?;
        let mut modules = compiled_modules().lock().unwrap_or_else(|e| e.into_inner());
        modules.retain(|_, m| m.strong_count() > 0);
        modules.insert(wasm_hash, Arc::downgrade(&module));
        Ok(module)
    }

    fn compile(bytes: Vec<u8>, wasm_hash: [u8; 32]) -> Result<Arc<Self>, UserError> {
        let wasm = decode(&bytes)?;
        check_structure(&wasm)?;
        let engine = new_engine();
        wasmi::Module::validate(&engine, &wasm).map_err(invalid_wasm)?;
        let info = analyse(&wasm).map_err(invalid_wasm)?;
        let instrumented = instrument::rewrite(&wasm, &info.instrumented_exports()).map_err(invalid_wasm)?;
        let compiled = wasmi::Module::new(&engine, &instrumented[..]).map_err(invalid_wasm)?;
        let linker = new_linker(&engine, info.wasm64).map_err(|e| {
            UserError::new(ErrorCode::CanisterWasmEngineError, format!("cannot define the System API: {e}"))
        })?;
        Ok(Arc::new(Self {
            bytes,
            wasm_hash,
            engine,
            compiled,
            linker,
            is_wasm64: info.wasm64,
            has_memory: info.has_memory,
            has_table: info.has_table,
            has_start: info.start.is_some(),
            persisted_globals: info.mutable_globals.iter().map(|(_, ty)| *ty).collect(),
            exported_functions: info.exported_functions,
            metadata: info.metadata,
            fresh_instance_per_execution: info.drops_data_segments,
        }))
    }

    /// The module as installed.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// SHA-256 of the module as installed: what `module_hash` reports.
    pub fn wasm_hash(&self) -> [u8; 32] {
        self.wasm_hash
    }

    /// Whether the module's memory is 64-bit (its ic0 pointers are then i64).
    pub fn is_wasm64(&self) -> bool {
        self.is_wasm64
    }

    /// Whether the module exports a function of this name, e.g. `canister_update inc`.
    pub fn exports_function(&self, name: &str) -> bool {
        !name.starts_with(RESERVED_PREFIX) && self.exported_functions.contains(name)
    }

    /// All exported function names, sorted.
    pub fn exported_functions(&self) -> impl Iterator<Item = &str> {
        self.exported_functions.iter().map(String::as_str)
    }

    /// Names of the methods exported with `prefix` (`canister_update`, `canister_query`,
    /// `canister_composite_query`).
    pub fn methods<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.exported_functions
            .iter()
            .filter_map(move |f| f.strip_prefix(prefix).and_then(|rest| rest.strip_prefix(' ')))
    }

    /// Custom section `icp:public <name>` or `icp:private <name>`: `(is_public, content)`.
    pub fn metadata(&self, name: &str) -> Option<(bool, &[u8])> {
        self.metadata.get(name).map(|(public, content)| (*public, content.as_slice()))
    }

    /// Names of the metadata sections with their visibility (`true` = public), sorted.
    pub fn metadata_sections(&self) -> impl Iterator<Item = (&str, bool)> {
        self.metadata.iter().map(|(name, (public, _))| (name.as_str(), *public))
    }

    pub(crate) fn engine(&self) -> &Engine {
        &self.engine
    }
    pub(crate) fn compiled(&self) -> &wasmi::Module {
        &self.compiled
    }
    pub(crate) fn linker(&self) -> &Linker<HostState> {
        &self.linker
    }
    pub(crate) fn has_memory(&self) -> bool {
        self.has_memory
    }
    pub(crate) fn has_table(&self) -> bool {
        self.has_table
    }
    pub(crate) fn has_start(&self) -> bool {
        self.has_start
    }
    pub(crate) fn persisted_globals(&self) -> &[ValType] {
        &self.persisted_globals
    }
    pub(crate) fn fresh_instance_per_execution(&self) -> bool {
        self.fresh_instance_per_execution
    }
}

/// One engine per module: compiled code lives as long as its module. Fuel is on and
/// compilation eager, so instruction counts never depend on what was translated before.
fn new_engine() -> Engine {
    let mut config = Config::default();
    config
        .consume_fuel(true)
        .compilation_mode(CompilationMode::Eager)
        .wasm_multi_memory(false)
        .ignore_custom_sections(true)
        .set_max_recursion_depth(MAX_RECURSION_DEPTH)
        .set_max_stack_height(MAX_STACK_CELLS);
    Engine::new(&config)
}

/// The Wasm binary inside `bytes`: as is, or gunzipped (at most [`MAX_MODULE_BYTES`]).
fn decode(bytes: &[u8]) -> Result<Cow<'_, [u8]>, UserError> {
    if bytes.starts_with(&[0x1f, 0x8b, 0x08]) {
        let mut wasm = Vec::new();
        flate2::read::GzDecoder::new(bytes)
            .take(MAX_MODULE_BYTES as u64 + 1)
            .read_to_end(&mut wasm)
            .map_err(|e| invalid_wasm(format!("failed to decompress the gzipped module: {e}")))?;
        if wasm.len() > MAX_MODULE_BYTES {
            return Err(invalid_wasm(format!("the decompressed module is larger than {MAX_MODULE_BYTES} bytes")));
        }
        if !wasm.starts_with(b"\0asm") {
            return Err(invalid_wasm("the gzipped data is not a Wasm binary module"));
        }
        Ok(Cow::Owned(wasm))
    } else if bytes.starts_with(b"\0asm") {
        if bytes.len() > MAX_MODULE_BYTES {
            return Err(invalid_wasm(format!("the module is larger than {MAX_MODULE_BYTES} bytes")));
        }
        Ok(Cow::Borrowed(bytes))
    } else {
        Err(invalid_wasm(
            "expected a Wasm binary module (starting with \\0asm) or a gzipped one (starting with 1f 8b 08)",
        ))
    }
}

/// What the embedder needs to know about a (wasmi-validated) module.
#[derive(Default)]
struct ModuleInfo {
    wasm64: bool,
    has_memory: bool,
    has_table: bool,
    start: Option<u32>,
    exports: Vec<(String, ExternalKind, u32)>,
    mutable_globals: Vec<(u32, ValType)>,
    exported_functions: BTreeSet<String>,
    metadata: BTreeMap<String, (bool, Vec<u8>)>,
    drops_data_segments: bool,
}

impl ModuleInfo {
    /// The module's own exports plus the reserved ones the embedder uses.
    fn instrumented_exports(&self) -> Vec<Export> {
        let mut exports: Vec<Export> = self
            .exports
            .iter()
            .map(|(name, kind, index)| Export { name: name.clone(), kind: export_kind(*kind), index: *index })
            .collect();
        if self.has_memory {
            exports.push(Export { name: MEMORY_EXPORT.into(), kind: ExportKind::Memory, index: 0 });
        }
        if self.has_table {
            exports.push(Export { name: TABLE_EXPORT.into(), kind: ExportKind::Table, index: 0 });
        }
        for (i, (global, _)) in self.mutable_globals.iter().enumerate() {
            exports.push(Export { name: instrument::global_export(i), kind: ExportKind::Global, index: *global });
        }
        if let Some(start) = self.start {
            exports.push(Export { name: START_EXPORT.into(), kind: ExportKind::Func, index: start });
        }
        exports
    }
}

fn export_kind(kind: ExternalKind) -> ExportKind {
    match kind {
        ExternalKind::Func => ExportKind::Func,
        ExternalKind::Table => ExportKind::Table,
        ExternalKind::Memory => ExportKind::Memory,
        ExternalKind::Global => ExportKind::Global,
        ExternalKind::Tag => ExportKind::Tag,
    }
}

fn analyse(wasm: &[u8]) -> Result<ModuleInfo, String> {
    let mut info = ModuleInfo::default();
    let mut types: Vec<Option<FuncType>> = Vec::new();
    // Type index of every function, imported ones first.
    let mut function_types: Vec<u32> = Vec::new();
    let mut imports: Vec<(String, String, u32)> = Vec::new();
    let mut memories = 0;
    let mut globals = 0u32;
    let mut custom_sections = CustomSections::default();
    let mut function_index = 0usize;
    for payload in Parser::new(0).parse_all(wasm) {
        match payload.map_err(|e| e.to_string())? {
            Payload::TypeSection(reader) => {
                for group in reader {
                    for sub in group.map_err(|e| e.to_string())?.into_types() {
                        types.push(match sub.composite_type.inner {
                            CompositeInnerType::Func(f) => Some(f),
                            _ => None,
                        });
                    }
                }
            }
            Payload::ImportSection(reader) => {
                for import in reader {
                    let import = import.map_err(|e| e.to_string())?;
                    let TypeRef::Func(ty) = import.ty else {
                        return Err(format!(
                            "the module imports \"{}\" \"{}\", which is not a function; canisters may only import \
                             ic0 functions",
                            import.module, import.name
                        ));
                    };
                    function_types.push(ty);
                    imports.push((import.module.to_string(), import.name.to_string(), ty));
                }
            }
            Payload::FunctionSection(reader) => {
                if reader.count() as usize > MAX_FUNCTIONS {
                    return Err(format!("the module defines {} functions, more than {MAX_FUNCTIONS}", reader.count()));
                }
                for ty in reader {
                    function_types.push(ty.map_err(|e| e.to_string())?);
                }
            }
            Payload::TableSection(reader) => info.has_table = reader.count() > 0,
            Payload::MemorySection(reader) => {
                for memory in reader {
                    let memory = memory.map_err(|e| e.to_string())?;
                    memories += 1;
                    info.wasm64 = memory.memory64;
                    info.has_memory = true;
                }
                if memories > 1 {
                    return Err("the module declares more than one memory".into());
                }
            }
            Payload::GlobalSection(reader) => {
                if reader.count() as usize > MAX_GLOBALS {
                    return Err(format!("the module defines {} globals, more than {MAX_GLOBALS}", reader.count()));
                }
                for global in reader {
                    let ty = global.map_err(|e| e.to_string())?.ty;
                    if !matches!(ty.content_type, ValType::I32 | ValType::I64 | ValType::F32 | ValType::F64) {
                        return Err(format!("unsupported global type {}", ty.content_type));
                    }
                    if ty.mutable {
                        info.mutable_globals.push((globals, ty.content_type));
                    }
                    globals += 1;
                }
            }
            Payload::ExportSection(reader) => {
                for export in reader {
                    let export = export.map_err(|e| e.to_string())?;
                    info.exports.push((export.name.to_string(), export.kind, export.index));
                }
            }
            Payload::StartSection { func, .. } => info.start = Some(func),
            Payload::CodeSectionEntry(body) => {
                let mut ops = body.get_operators_reader().map_err(|e| e.to_string())?;
                while !ops.eof() {
                    let unsupported = match ops.read().map_err(|e| e.to_string())? {
                        Operator::TableGrow { .. } => "table.grow",
                        Operator::TableSet { .. } => "table.set",
                        Operator::TableFill { .. } => "table.fill",
                        Operator::TableCopy { .. } => "table.copy",
                        Operator::TableInit { .. } => "table.init",
                        Operator::DataDrop { .. } => {
                            info.drops_data_segments = true;
                            continue;
                        }
                        _ => continue,
                    };
                    return Err(format!("function {function_index} uses the unsupported instruction {unsupported}"));
                }
                function_index += 1;
            }
            Payload::CustomSection(reader) => custom_sections.add(reader.name(), reader.data())?,
            _ => {}
        }
    }
    info.metadata = custom_sections.sections;
    check_imports(&imports, &types, info.wasm64)?;
    info.exported_functions = check_exports(&info.exports, &types, &function_types)?;
    Ok(info)
}

fn check_imports(imports: &[(String, String, u32)], types: &[Option<FuncType>], wasm64: bool) -> Result<(), String> {
    for (module, name, ty) in imports {
        let Some(function) = lookup_ic0_function(name, wasm64).filter(|_| module == "ic0") else {
            let width = if wasm64 { " to a module with 64-bit memory" } else { "" };
            return Err(format!(
                "the module imports function \"{module}\" \"{name}\", which the System API does not provide{width}"
            ));
        };
        let expected_params: Vec<ValType> = function.params.iter().map(|t| t.resolve(wasm64)).collect();
        let expected_results: Vec<ValType> = function.results.iter().map(|t| t.resolve(wasm64)).collect();
        let actual = types.get(*ty as usize).and_then(Option::as_ref).ok_or("an import refers to a missing type")?;
        if actual.params() != expected_params.as_slice() || actual.results() != expected_results.as_slice() {
            return Err(format!(
                "the module imports ic0.{name} with type {}, but it has type {}",
                signature(actual),
                signature(&FuncType::new(expected_params, expected_results))
            ));
        }
    }
    Ok(())
}

/// Checks the exports against the IC's rules; returns the names of the exported functions.
fn check_exports(
    exports: &[(String, ExternalKind, u32)],
    types: &[Option<FuncType>],
    function_types: &[u32],
) -> Result<BTreeSet<String>, String> {
    let mut functions = BTreeSet::new();
    let mut method_names = BTreeSet::new();
    let mut method_name_bytes = 0;
    for (name, kind, index) in exports {
        if name.starts_with(RESERVED_PREFIX) {
            return Err(format!("exporting the reserved symbol \"{name}\" is not allowed"));
        }
        if *kind != ExternalKind::Func {
            continue;
        }
        functions.insert(name.clone());
        let method = METHOD_PREFIXES.iter().find_map(|p| name.strip_prefix(p));
        if let Some(method) = method {
            if !method_names.insert(method) {
                return Err(format!(
                    "duplicate function '{method}' exported multiple times with different call types: update, query, \
                     or composite_query"
                ));
            }
            method_name_bytes += method.len();
        } else if name.starts_with("canister_") && !SYSTEM_EXPORTS.contains(&name.as_str()) {
            return Err(format!("exporting reserved function '{name}' with \"canister_\" prefix"));
        }
        if name.starts_with("canister_") {
            let ty = function_types
                .get(*index as usize)
                .and_then(|t| types.get(*t as usize))
                .and_then(Option::as_ref)
                .ok_or("an export refers to a missing function")?;
            if !ty.params().is_empty() || !ty.results().is_empty() {
                return Err(format!("the exported function '{name}' must have type [] -> [], not {}", signature(ty)));
            }
        }
    }
    if method_names.len() > MAX_EXPORTED_METHODS {
        return Err(format!("the module exports {} methods, more than {MAX_EXPORTED_METHODS}", method_names.len()));
    }
    if method_name_bytes > MAX_EXPORTED_METHOD_NAME_BYTES {
        return Err(format!(
            "the exported method names are {method_name_bytes} bytes long in total, more than \
             {MAX_EXPORTED_METHOD_NAME_BYTES}"
        ));
    }
    Ok(functions)
}

/// The `icp:public <name>` / `icp:private <name>` sections, checked as the IC does.
#[derive(Default)]
struct CustomSections {
    sections: BTreeMap<String, (bool, Vec<u8>)>,
    total_bytes: usize,
}

impl CustomSections {
    fn add(&mut self, section: &str, data: &[u8]) -> Result<(), String> {
        if !section.starts_with("icp:") {
            return Ok(());
        }
        let (name, public) = if let Some(name) = section.strip_prefix("icp:public ") {
            (name, true)
        } else if let Some(name) = section.strip_prefix("icp:private ") {
            (name, false)
        } else if section == "icp:public" || section == "icp:private" {
            return Err("'icp:' section names must have a space after the public/private scope".into());
        } else {
            return Err(format!("custom section '{section}' has no public/private scope defined"));
        };
        if self.sections.contains_key(name) {
            return Err(format!("the custom section name '{name}' is used twice"));
        }
        self.total_bytes += name.len() + data.len();
        if self.total_bytes > MAX_CUSTOM_SECTIONS_BYTES {
            return Err(format!("the custom sections are larger than {MAX_CUSTOM_SECTIONS_BYTES} bytes in total"));
        }
        self.sections.insert(name.to_string(), (public, data.to_vec()));
        if self.sections.len() > MAX_CUSTOM_SECTIONS {
            return Err(format!("the module has more than {MAX_CUSTOM_SECTIONS} icp: custom sections"));
        }
        Ok(())
    }
}

/// `[i32 i64] -> [i32]`
fn signature(ty: &FuncType) -> String {
    let list = |types: &[ValType]| types.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(" ");
    format!("[{}] -> [{}]", list(ty.params()), list(ty.results()))
}
