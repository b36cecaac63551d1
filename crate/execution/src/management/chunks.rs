//! The Wasm chunk store: large modules are uploaded in chunks (`upload_chunk`) and installed
//! from their hashes (`install_chunked_code`), as dfx and ic-agent do for modules over ~2 MiB.

use super::types::{ChunkHash, InstallChunkedCodeArgs, InstallCodeArgs, UploadChunkArgs};
use super::{controlled_canister, empty_reply, encode, install, CanisterIdRecord};
use crate::embedder::MAX_MODULE_BYTES;
use crate::scheduler::ExecutionEnvironment;
use crate::state::CallOrigin;
use sha2::{Digest, Sha256};
use tabnet_types::{ErrorCode, Principal, UserError};

/// The IC's limits: chunks of at most 1 MiB, at most 100 chunks per store. A module assembled
/// from chunks may be as large as any module (the IC's 100 MiB, `MAX_MODULE_BYTES`).
pub(super) const MAX_CHUNK_BYTES: usize = 1 << 20;
pub(super) const MAX_CHUNKS: usize = 100;

fn store_error(message: String) -> UserError {
    UserError::new(ErrorCode::CanisterContractViolation, message)
}

pub(super) fn upload_chunk(env: &mut ExecutionEnvironment, sender: Principal, args: UploadChunkArgs) -> Result<Vec<u8>, UserError> {
    controlled_or_self(env, sender, &args.canister_id)?;
    if args.chunk.len() > MAX_CHUNK_BYTES {
        return Err(store_error(format!(
            "Error from Wasm chunk store: Wasm chunk size {} exceeds the maximum chunk size of {MAX_CHUNK_BYTES}",
            args.chunk.len()
        )));
    }
    let hash: [u8; 32] = Sha256::digest(&args.chunk).into();
    let c = env.state.canister(&args.canister_id).expect("checked");
    let store = &c.system.wasm_chunk_store;
    if !store.contains_key(&hash) {
        if store.len() >= MAX_CHUNKS {
            return Err(store_error("Error from Wasm chunk store: Wasm chunk store has no space left".into()));
        }
        // The store is the canister's memory: it must fit in what the subnet has left.
        env.check_subnet_memory(args.chunk.len() as u64)?;
    }
    let c = env.state.canister_mut(&args.canister_id).expect("checked");
    c.system.wasm_chunk_store.insert(hash, serde_bytes::ByteBuf::from(args.chunk));
    Ok(encode(&ChunkHash { hash: hash.to_vec() }))
}

pub(super) fn stored_chunks(env: &ExecutionEnvironment, sender: Principal, args: CanisterIdRecord) -> Result<Vec<u8>, UserError> {
    controlled_or_self(env, sender, &args.canister_id)?;
    let c = env.state.canister(&args.canister_id).expect("checked");
    let hashes: Vec<ChunkHash> = c.system.wasm_chunk_store.keys().map(|h| ChunkHash { hash: h.to_vec() }).collect();
    Ok(encode(&hashes))
}

pub(super) fn clear_chunk_store(env: &mut ExecutionEnvironment, sender: Principal, args: CanisterIdRecord) -> Result<Vec<u8>, UserError> {
    controlled_or_self(env, sender, &args.canister_id)?;
    env.state.canister_mut(&args.canister_id).expect("checked").system.wasm_chunk_store.clear();
    Ok(empty_reply())
}

/// Assembles the module from the store canister's chunks, checks its hash, installs it.
pub(super) fn install_chunked_code(
    env: &mut ExecutionEnvironment,
    origin: &CallOrigin,
    refund: u128,
    sender: Principal,
    args: InstallChunkedCodeArgs,
) -> Result<(), UserError> {
    let store_id = args.store_canister.unwrap_or(args.target_canister);
    let store = &controlled_or_self(env, sender, &store_id)?.system.wasm_chunk_store;
    let chunks = args
        .chunk_hashes_list
        .iter()
        .map(|ChunkHash { hash }| {
            <[u8; 32]>::try_from(hash.as_slice()).ok().and_then(|h| store.get(&h)).ok_or_else(|| {
                store_error(format!("Error from Wasm chunk store: Chunk {} not found in the store", hex(hash)))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    // A chunk may be named many times: the size is checked before anything is copied.
    let size = chunks.iter().fold(0usize, |sum, chunk| sum.saturating_add(chunk.len()));
    if size > MAX_MODULE_BYTES {
        return Err(store_error(format!(
            "Error from Wasm chunk store: Wasm module size {size} exceeds the maximum of {MAX_MODULE_BYTES} bytes"
        )));
    }
    let mut module = Vec::with_capacity(size);
    for chunk in chunks {
        module.extend_from_slice(chunk);
    }
    let actual: [u8; 32] = Sha256::digest(&module).into();
    if actual.as_slice() != args.wasm_module_hash.as_slice() {
        return Err(store_error(format!(
            "Error from Wasm chunk store: Wasm module hash {} does not match given hash {}",
            hex(&actual),
            hex(&args.wasm_module_hash)
        )));
    }
    install::install_code(
        env,
        origin,
        refund,
        sender,
        InstallCodeArgs {
            mode: args.mode,
            canister_id: args.target_canister,
            wasm_module: module,
            arg: args.arg,
            sender_canister_version: args.sender_canister_version,
        },
    )
}

/// Controllers may use a canister's chunk store, and so may the canister itself.
fn controlled_or_self<'a>(
    env: &'a ExecutionEnvironment,
    sender: Principal,
    id: &Principal,
) -> Result<&'a crate::state::CanisterState, UserError> {
    match env.state.canister(id) {
        Some(c) if sender == *id => Ok(c),
        _ => controlled_canister(env, sender, id),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
