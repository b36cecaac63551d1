//! Binds every ic0 function of `imports.rs` to a wasmi host function, generic over the pointer
//! width `P` (i32 for 32-bit memory, i64 for 64-bit memory).
//!
//! Every host function goes through [`syscall`]: it checks the function is allowed in the
//! current context (IC0504 otherwise), charges instructions (a base cost plus one per byte
//! moved), and hands the body the Wasm heap, the System API state and the stable memory.

use super::imports::{spec, Ic0Function};
use super::{
    called_trap_error, instruction_limit_error, HostState, StableMemory, SystemApi, MAX_LOG_RECORD_BYTES,
    MAX_TRAP_MESSAGE_BYTES, WASM_PAGE_SIZE,
};
use crate::hypervisor::WasmClosure;
use std::fmt;
use std::ops::Range;
use tabnet_types::{ErrorCode, UserError};
use wasmi::errors::LinkerError;
use wasmi::{Caller, Engine, Error, Linker, WasmTy};

/// Instructions charged for every System API call, on top of one per byte moved.
const SYSCALL_BASE_COST: u64 = 20;
/// Extra instructions for queuing a call.
const CALL_PERFORM_COST: u64 = 5_000;
/// The legacy 32-bit stable memory API works on stable memories up to 4 GiB.
const MAX_LEGACY_STABLE_PAGES: u64 = (1 << 32) / WASM_PAGE_SIZE;

/// A failure raised by a host function; the embedder turns it back into the `UserError`.
#[derive(Debug)]
pub(crate) struct HostTrap(pub UserError);

impl fmt::Display for HostTrap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl wasmi::errors::HostError for HostTrap {}

fn trap(e: UserError) -> Error {
    Error::host(HostTrap(e))
}

/// A pointer or size of the module's width, read as unsigned (spec: "Interpretation of numbers").
pub(crate) trait Ptr: WasmTy + Copy + Send + Sync + 'static {
    fn to_u64(self) -> u64;
    fn from_u64(value: u64) -> Self;
}

impl Ptr for i32 {
    fn to_u64(self) -> u64 {
        self as u32 as u64
    }
    fn from_u64(value: u64) -> Self {
        value as u32 as i32
    }
}

impl Ptr for i64 {
    fn to_u64(self) -> u64 {
        self as u64
    }
    fn from_u64(value: u64) -> Self {
        value as i64
    }
}

/// A linker defining the whole ic0 API for modules of the given width.
pub(crate) fn new_linker(engine: &Engine, wasm64: bool) -> Result<Linker<HostState>, LinkerError> {
    let mut linker = Linker::new(engine);
    if wasm64 {
        define::<i64>(&mut linker)?;
    } else {
        define::<i32>(&mut linker)?;
        define_wasm32_only(&mut linker)?;
    }
    Ok(linker)
}

/// What a host function body works on.
struct Cx<'a> {
    heap: &'a mut [u8],
    api: &'a mut SystemApi,
    stable: &'a mut StableMemory,
    /// Instructions executed so far in this execution (`performance_counter`).
    instructions: u64,
}

fn syscall<R>(
    caller: &mut Caller<'_, HostState>,
    f: &'static Ic0Function,
    cost: u64,
    body: impl FnOnce(Cx<'_>) -> Result<R, UserError>,
) -> Result<R, Error> {
    let limit = {
        let Some(api) = caller.data().api.as_ref() else {
            return Err(trap(UserError::new(
                ErrorCode::CanisterWasmEngineError,
                format!("ic0.{} was called outside of an execution", f.name),
            )));
        };
        if !f.contexts.contains(api.context()) {
            return Err(trap(api.mode_error(f.name)));
        }
        api.params().instruction_limit
    };
    let fuel = caller.get_fuel()?;
    let reserve = caller.data().fuel_reserve;
    let cost = cost.saturating_add(SYSCALL_BASE_COST);
    if fuel.saturating_add(reserve) < cost {
        caller.set_fuel(0)?;
        caller.data_mut().fuel_reserve = 0;
        return Err(trap(instruction_limit_error(limit)));
    }
    // A call that costs more than the slice has left borrows from the rest of the message's
    // fuel; the slice then ends at the next instruction (the same one on every replica).
    let (fuel, reserve) = match fuel.checked_sub(cost) {
        Some(left) => (left, reserve),
        None => (0, reserve - (cost - fuel)),
    };
    caller.set_fuel(fuel)?;
    caller.data_mut().fuel_reserve = reserve;
    let instructions = limit.saturating_sub(fuel + reserve);
    let memory = caller.data().memory;
    let (heap, host): (&mut [u8], &mut HostState) = match memory {
        Some(memory) => memory.data_and_store_mut(&mut *caller),
        None => (&mut [], caller.data_mut()),
    };
    let HostState { api, stable, .. } = host;
    let api = api.as_mut().expect("checked above");
    body(Cx { heap, api, stable, instructions }).map_err(trap)
}

// ---- heap access ----

fn heap_range(heap_len: usize, ptr: u64, len: u64, f: &Ic0Function) -> Result<Range<usize>, UserError> {
    match ptr.checked_add(len) {
        Some(end) if end <= heap_len as u64 => Ok(ptr as usize..end as usize),
        _ => Err(UserError::new(
            ErrorCode::CanisterContractViolation,
            format!(
                "ic0.{}: the heap range [{ptr}, {ptr} + {len}) is outside the Wasm memory of {heap_len} bytes",
                f.name
            ),
        )),
    }
}

fn read<'h>(heap: &'h [u8], ptr: u64, len: u64, f: &Ic0Function) -> Result<&'h [u8], UserError> {
    Ok(&heap[heap_range(heap.len(), ptr, len, f)?])
}

fn write(heap: &mut [u8], ptr: u64, data: &[u8], f: &Ic0Function) -> Result<(), UserError> {
    let range = heap_range(heap.len(), ptr, data.len() as u64, f)?;
    heap[range].copy_from_slice(data);
    Ok(())
}

/// `*_copy(dst, offset, size)`: `blob[offset..offset + size]` to `heap[dst..dst + size]`.
fn copy_blob(heap: &mut [u8], dst: u64, offset: u64, size: u64, blob: &[u8], f: &Ic0Function) -> Result<(), UserError> {
    let src = match offset.checked_add(size) {
        Some(end) if end <= blob.len() as u64 => &blob[offset as usize..end as usize],
        _ => {
            return Err(UserError::new(
                ErrorCode::CanisterContractViolation,
                format!("ic0.{}: offset {offset} + size {size} exceeds the data size {}", f.name, blob.len()),
            ))
        }
    };
    write(heap, dst, src, f)
}

fn write_u128(heap: &mut [u8], dst: u64, value: u128, f: &Ic0Function) -> Result<(), UserError> {
    write(heap, dst, &value.to_le_bytes(), f)
}

fn u128_of(high: i64, low: i64) -> u128 {
    ((high as u64 as u128) << 64) | low as u64 as u128
}

fn closure<P: Ptr>(func: P, env: P) -> WasmClosure {
    WasmClosure { func: func.to_u64(), env: env.to_u64() }
}

fn violation(f: &Ic0Function, message: impl fmt::Display) -> UserError {
    UserError::new(ErrorCode::CanisterContractViolation, format!("ic0.{}: {message}", f.name))
}

fn fits_u64(f: &Ic0Function, value: u128, what: &str) -> Result<i64, UserError> {
    u64::try_from(value).map(|v| v as i64).map_err(|_| {
        trapped(format!("ic0.{}: {what} ({value}) does not fit into 64 bits; use ic0.{}128", f.name, f.name))
    })
}

// ---- blobs: `<name>_size` and `<name>_copy` ----

type Getter = for<'a> fn(&'a SystemApi, &Ic0Function) -> Result<&'a [u8], UserError>;

fn blob<P: Ptr>(l: &mut Linker<HostState>, name: &str, get: Getter) -> Result<(), LinkerError> {
    let size = spec(&format!("{name}_size"));
    let copy = spec(&format!("{name}_copy"));
    l.func_wrap("ic0", size.name, move |mut c: Caller<'_, HostState>| -> Result<P, Error> {
        syscall(&mut c, size, 0, |cx| Ok(P::from_u64(get(cx.api, size)?.len() as u64)))
    })?;
    l.func_wrap(
        "ic0",
        copy.name,
        move |mut c: Caller<'_, HostState>, dst: P, offset: P, len: P| -> Result<(), Error> {
            syscall(&mut c, copy, len.to_u64(), |cx| {
                copy_blob(cx.heap, dst.to_u64(), offset.to_u64(), len.to_u64(), get(cx.api, copy)?, copy)
            })
        },
    )?;
    Ok(())
}

fn arg<'a>(api: &'a SystemApi, _: &Ic0Function) -> Result<&'a [u8], UserError> {
    Ok(api.arg())
}
fn caller_id<'a>(api: &'a SystemApi, _: &Ic0Function) -> Result<&'a [u8], UserError> {
    Ok(api.caller())
}
/// Caller info exists only for callers authenticated by canister signatures with attached
/// info; this node's ingress carries none.
fn no_caller_info<'a>(_: &'a SystemApi, _: &Ic0Function) -> Result<&'a [u8], UserError> {
    Ok(&[])
}
fn reject_message<'a>(api: &'a SystemApi, _: &Ic0Function) -> Result<&'a [u8], UserError> {
    Ok(api.reject_message())
}
fn canister_self<'a>(api: &'a SystemApi, _: &Ic0Function) -> Result<&'a [u8], UserError> {
    Ok(api.canister_self())
}
fn subnet_self<'a>(api: &'a SystemApi, _: &Ic0Function) -> Result<&'a [u8], UserError> {
    Ok(api.subnet_self())
}
fn method_name<'a>(api: &'a SystemApi, _: &Ic0Function) -> Result<&'a [u8], UserError> {
    Ok(api.method_name())
}
fn root_key<'a>(api: &'a SystemApi, _: &Ic0Function) -> Result<&'a [u8], UserError> {
    Ok(api.root_key())
}
fn data_certificate<'a>(api: &'a SystemApi, f: &Ic0Function) -> Result<&'a [u8], UserError> {
    api.data_certificate().ok_or_else(|| violation(f, "no data certificate is present in this execution"))
}

// ---- the functions of both widths ----

fn define<P: Ptr>(l: &mut Linker<HostState>) -> Result<(), LinkerError> {
    blob::<P>(l, "msg_arg_data", arg)?;
    blob::<P>(l, "msg_caller", caller_id)?;
    blob::<P>(l, "msg_caller_info_data", no_caller_info)?;
    blob::<P>(l, "msg_caller_info_signer", no_caller_info)?;
    blob::<P>(l, "msg_reject_msg", reject_message)?;
    blob::<P>(l, "canister_self", canister_self)?;
    blob::<P>(l, "subnet_self", subnet_self)?;
    blob::<P>(l, "msg_method_name", method_name)?;
    blob::<P>(l, "root_key", root_key)?;
    blob::<P>(l, "data_certificate", data_certificate)?;
    define_messages::<P>(l)?;
    define_cycles::<P>(l)?;
    define_calls::<P>(l)?;
    define_stable64(l)?;
    define_misc::<P>(l)?;
    define_costs::<P>(l)?;
    define_env_vars::<P>(l)?;
    Ok(())
}

fn define_messages<P: Ptr>(l: &mut Linker<HostState>) -> Result<(), LinkerError> {
    let f = spec("msg_reject_code");
    l.func_wrap("ic0", f.name, move |mut c: Caller<'_, HostState>| -> Result<i32, Error> {
        syscall(&mut c, f, 0, |cx| Ok(cx.api.reject_code()))
    })?;
    let f = spec("msg_deadline");
    l.func_wrap("ic0", f.name, move |mut c: Caller<'_, HostState>| -> Result<i64, Error> {
        syscall(&mut c, f, 0, |cx| Ok(cx.api.deadline() as i64))
    })?;
    let f = spec("msg_reply_data_append");
    l.func_wrap("ic0", f.name, move |mut c: Caller<'_, HostState>, src: P, size: P| -> Result<(), Error> {
        syscall(&mut c, f, size.to_u64(), |cx| cx.api.reply_data_append(read(cx.heap, src.to_u64(), size.to_u64(), f)?))
    })?;
    let f = spec("msg_reply");
    l.func_wrap("ic0", f.name, move |mut c: Caller<'_, HostState>| -> Result<(), Error> {
        syscall(&mut c, f, 0, |cx| cx.api.reply())
    })?;
    let f = spec("msg_reject");
    l.func_wrap("ic0", f.name, move |mut c: Caller<'_, HostState>, src: P, size: P| -> Result<(), Error> {
        syscall(&mut c, f, size.to_u64(), |cx| cx.api.reject(read(cx.heap, src.to_u64(), size.to_u64(), f)?))
    })?;
    let f = spec("accept_message");
    l.func_wrap("ic0", f.name, move |mut c: Caller<'_, HostState>| -> Result<(), Error> {
        syscall(&mut c, f, 0, |cx| cx.api.accept_message())
    })?;
    Ok(())
}

fn define_cycles<P: Ptr>(l: &mut Linker<HostState>) -> Result<(), LinkerError> {
    let f = spec("msg_cycles_available128");
    l.func_wrap("ic0", f.name, move |mut c: Caller<'_, HostState>, dst: P| -> Result<(), Error> {
        syscall(&mut c, f, 16, |cx| write_u128(cx.heap, dst.to_u64(), cx.api.cycles_available(), f))
    })?;
    let f = spec("msg_cycles_refunded128");
    l.func_wrap("ic0", f.name, move |mut c: Caller<'_, HostState>, dst: P| -> Result<(), Error> {
        syscall(&mut c, f, 16, |cx| write_u128(cx.heap, dst.to_u64(), cx.api.cycles_refunded(), f))
    })?;
    let f = spec("msg_cycles_accept128");
    l.func_wrap(
        "ic0",
        f.name,
        move |mut c: Caller<'_, HostState>, high: i64, low: i64, dst: P| -> Result<(), Error> {
            syscall(&mut c, f, 16, |cx| {
                // Check the destination first: a trap must not leave cycles accepted.
                heap_range(cx.heap.len(), dst.to_u64(), 16, f)?;
                let amount = cx.api.accept_cycles(u128_of(high, low));
                write_u128(cx.heap, dst.to_u64(), amount, f)
            })
        },
    )?;
    let f = spec("cycles_burn128");
    l.func_wrap(
        "ic0",
        f.name,
        move |mut c: Caller<'_, HostState>, high: i64, low: i64, dst: P| -> Result<(), Error> {
            syscall(&mut c, f, 16, |cx| {
                heap_range(cx.heap.len(), dst.to_u64(), 16, f)?;
                let amount = cx.api.burn_cycles(u128_of(high, low));
                write_u128(cx.heap, dst.to_u64(), amount, f)
            })
        },
    )?;
    let f = spec("canister_cycle_balance128");
    l.func_wrap("ic0", f.name, move |mut c: Caller<'_, HostState>, dst: P| -> Result<(), Error> {
        syscall(&mut c, f, 16, |cx| write_u128(cx.heap, dst.to_u64(), cx.api.balance(), f))
    })?;
    let f = spec("canister_liquid_cycle_balance128");
    l.func_wrap("ic0", f.name, move |mut c: Caller<'_, HostState>, dst: P| -> Result<(), Error> {
        syscall(&mut c, f, 16, |cx| write_u128(cx.heap, dst.to_u64(), cx.api.liquid_balance(), f))
    })?;
    Ok(())
}

fn define_calls<P: Ptr>(l: &mut Linker<HostState>) -> Result<(), LinkerError> {
    let f = spec("call_new");
    l.func_wrap(
        "ic0",
        f.name,
        move |mut c: Caller<'_, HostState>,
              callee_src: P,
              callee_size: P,
              name_src: P,
              name_size: P,
              reply_fun: P,
              reply_env: P,
              reject_fun: P,
              reject_env: P|
              -> Result<(), Error> {
            let bytes = callee_size.to_u64().saturating_add(name_size.to_u64());
            syscall(&mut c, f, bytes, |cx| {
                let callee = read(cx.heap, callee_src.to_u64(), callee_size.to_u64(), f)?;
                let name = read(cx.heap, name_src.to_u64(), name_size.to_u64(), f)?;
                cx.api.call_new(callee, name, closure(reply_fun, reply_env), closure(reject_fun, reject_env))
            })
        },
    )?;
    let f = spec("call_on_cleanup");
    l.func_wrap("ic0", f.name, move |mut c: Caller<'_, HostState>, fun: P, env: P| -> Result<(), Error> {
        syscall(&mut c, f, 0, |cx| cx.api.call_on_cleanup(closure(fun, env)))
    })?;
    let f = spec("call_data_append");
    l.func_wrap("ic0", f.name, move |mut c: Caller<'_, HostState>, src: P, size: P| -> Result<(), Error> {
        syscall(&mut c, f, size.to_u64(), |cx| cx.api.call_data_append(read(cx.heap, src.to_u64(), size.to_u64(), f)?))
    })?;
    let f = spec("call_with_best_effort_response");
    l.func_wrap("ic0", f.name, move |mut c: Caller<'_, HostState>, timeout: i32| -> Result<(), Error> {
        syscall(&mut c, f, 0, |cx| cx.api.call_with_best_effort_response(timeout as u32))
    })?;
    let f = spec("call_cycles_add128");
    l.func_wrap("ic0", f.name, move |mut c: Caller<'_, HostState>, high: i64, low: i64| -> Result<(), Error> {
        syscall(&mut c, f, 0, |cx| cx.api.call_cycles_add(u128_of(high, low), f.name))
    })?;
    let f = spec("call_perform");
    l.func_wrap("ic0", f.name, move |mut c: Caller<'_, HostState>| -> Result<i32, Error> {
        syscall(&mut c, f, CALL_PERFORM_COST, |cx| cx.api.call_perform())
    })?;
    Ok(())
}

fn define_stable64(l: &mut Linker<HostState>) -> Result<(), LinkerError> {
    let f = spec("stable64_size");
    l.func_wrap("ic0", f.name, move |mut c: Caller<'_, HostState>| -> Result<i64, Error> {
        syscall(&mut c, f, 0, |cx| Ok(cx.stable.size_in_pages() as i64))
    })?;
    let f = spec("stable64_grow");
    l.func_wrap("ic0", f.name, move |mut c: Caller<'_, HostState>, pages: i64| -> Result<i64, Error> {
        syscall(&mut c, f, 0, |cx| {
            let limit = cx.api.params().stable_memory_limit;
            Ok(cx.stable.grow(pages as u64, limit).map_or(-1, |old| old as i64))
        })
    })?;
    let f = spec("stable64_write");
    l.func_wrap(
        "ic0",
        f.name,
        move |mut c: Caller<'_, HostState>, offset: i64, src: i64, size: i64| -> Result<(), Error> {
            syscall(&mut c, f, size as u64, |cx| stable_write(cx, offset as u64, src as u64, size as u64, f))
        },
    )?;
    let f = spec("stable64_read");
    l.func_wrap(
        "ic0",
        f.name,
        move |mut c: Caller<'_, HostState>, dst: i64, offset: i64, size: i64| -> Result<(), Error> {
            syscall(&mut c, f, size as u64, |cx| stable_read(cx, dst as u64, offset as u64, size as u64, f))
        },
    )?;
    Ok(())
}

fn stable_write(cx: Cx<'_>, offset: u64, src: u64, size: u64, f: &Ic0Function) -> Result<(), UserError> {
    let data = read(cx.heap, src, size, f)?;
    if !cx.stable.write(offset, data) {
        return Err(stable_out_of_bounds(f, offset, size, cx.stable));
    }
    Ok(())
}

fn stable_read(cx: Cx<'_>, dst: u64, offset: u64, size: u64, f: &Ic0Function) -> Result<(), UserError> {
    let Some(data) = cx.stable.read(offset, size) else {
        return Err(stable_out_of_bounds(f, offset, size, cx.stable));
    };
    write(cx.heap, dst, data, f)
}

/// Traps (IC0502) the way the replica reports them.
fn trapped(message: impl fmt::Display) -> UserError {
    UserError::new(ErrorCode::CanisterTrapped, format!("Canister trapped: {message}"))
}

fn stable_out_of_bounds(f: &Ic0Function, offset: u64, size: u64, stable: &StableMemory) -> UserError {
    trapped(format!(
        "stable memory out of bounds (ic0.{}: [{offset}, {offset} + {size}) with a stable memory of {} bytes)",
        f.name,
        stable.bytes().len()
    ))
}

fn define_misc<P: Ptr>(l: &mut Linker<HostState>) -> Result<(), LinkerError> {
    let f = spec("canister_status");
    l.func_wrap("ic0", f.name, move |mut c: Caller<'_, HostState>| -> Result<i32, Error> {
        syscall(&mut c, f, 0, |cx| Ok(cx.api.sys().status as i32))
    })?;
    let f = spec("canister_version");
    l.func_wrap("ic0", f.name, move |mut c: Caller<'_, HostState>| -> Result<i64, Error> {
        syscall(&mut c, f, 0, |cx| Ok(cx.api.sys().canister_version as i64))
    })?;
    let f = spec("certified_data_set");
    l.func_wrap("ic0", f.name, move |mut c: Caller<'_, HostState>, src: P, size: P| -> Result<(), Error> {
        syscall(&mut c, f, size.to_u64(), |cx| {
            cx.api.certified_data_set(read(cx.heap, src.to_u64(), size.to_u64(), f)?)
        })
    })?;
    let f = spec("data_certificate_present");
    l.func_wrap("ic0", f.name, move |mut c: Caller<'_, HostState>| -> Result<i32, Error> {
        syscall(&mut c, f, 0, |cx| Ok(cx.api.data_certificate().is_some() as i32))
    })?;
    let f = spec("time");
    l.func_wrap("ic0", f.name, move |mut c: Caller<'_, HostState>| -> Result<i64, Error> {
        syscall(&mut c, f, 0, |cx| Ok(cx.api.sys().time as i64))
    })?;
    let f = spec("global_timer_set");
    l.func_wrap("ic0", f.name, move |mut c: Caller<'_, HostState>, time: i64| -> Result<i64, Error> {
        syscall(&mut c, f, 0, |cx| Ok(cx.api.global_timer_set(time as u64) as i64))
    })?;
    let f = spec("performance_counter");
    l.func_wrap("ic0", f.name, move |mut c: Caller<'_, HostState>, kind: i32| -> Result<i64, Error> {
        syscall(&mut c, f, 0, |cx| match kind {
            0 => Ok(cx.instructions as i64),
            1 => Ok(cx.api.sys().call_context_instructions.saturating_add(cx.instructions) as i64),
            _ => Err(violation(f, format!("unknown performance counter type {kind}"))),
        })
    })?;
    let f = spec("is_controller");
    l.func_wrap("ic0", f.name, move |mut c: Caller<'_, HostState>, src: P, size: P| -> Result<i32, Error> {
        syscall(&mut c, f, size.to_u64(), |cx| {
            Ok(cx.api.is_controller(read(cx.heap, src.to_u64(), size.to_u64(), f)?)? as i32)
        })
    })?;
    let f = spec("in_replicated_execution");
    l.func_wrap("ic0", f.name, move |mut c: Caller<'_, HostState>| -> Result<i32, Error> {
        syscall(&mut c, f, 0, |cx| Ok(cx.api.sys().in_replicated_execution as i32))
    })?;
    let f = spec("debug_print");
    l.func_wrap("ic0", f.name, move |mut c: Caller<'_, HostState>, src: P, size: P| -> Result<(), Error> {
        let size = size.to_u64();
        syscall(&mut c, f, size.min(MAX_LOG_RECORD_BYTES as u64), |cx| {
            // Never traps: a range outside the heap prints a note instead.
            match read(cx.heap, src.to_u64(), size, f) {
                Ok(bytes) => cx.api.debug_print(bytes),
                Err(e) => cx.api.debug_print(format!("(debug_print: {})", e.message).as_bytes()),
            }
            Ok(())
        })
    })?;
    let f = spec("trap");
    l.func_wrap("ic0", f.name, move |mut c: Caller<'_, HostState>, src: P, size: P| -> Result<(), Error> {
        let size = size.to_u64();
        syscall(&mut c, f, size.min(MAX_TRAP_MESSAGE_BYTES as u64), |cx| {
            Err(match read(cx.heap, src.to_u64(), size, f) {
                Ok(bytes) => called_trap_error(bytes),
                Err(e) => called_trap_error(format!("(message outside the heap: {})", e.message).as_bytes()),
            })
        })
    })?;
    Ok(())
}

fn define_costs<P: Ptr>(l: &mut Linker<HostState>) -> Result<(), LinkerError> {
    let f = spec("cost_call");
    l.func_wrap(
        "ic0",
        f.name,
        move |mut c: Caller<'_, HostState>, name_size: i64, payload_size: i64, dst: P| -> Result<(), Error> {
            syscall(&mut c, f, 16, |cx| {
                let cost = cx.api.cost_call(name_size as u64, payload_size as u64);
                write_u128(cx.heap, dst.to_u64(), cost, f)
            })
        },
    )?;
    let f = spec("cost_create_canister");
    l.func_wrap("ic0", f.name, move |mut c: Caller<'_, HostState>, dst: P| -> Result<(), Error> {
        syscall(&mut c, f, 16, |cx| write_u128(cx.heap, dst.to_u64(), cx.api.cost_create_canister(), f))
    })?;
    let f = spec("cost_http_request");
    l.func_wrap(
        "ic0",
        f.name,
        move |mut c: Caller<'_, HostState>, request_size: i64, max_res: i64, dst: P| -> Result<(), Error> {
            syscall(&mut c, f, 16, |cx| {
                let cost = cx.api.cost_http_request(request_size as u64, max_res as u64);
                write_u128(cx.heap, dst.to_u64(), cost, f)
            })
        },
    )?;
    // ecdsa_curve 0 = secp256k1; schnorr algorithm 0 = bip340secp256k1, 1 = ed25519;
    // vetkd_curve 0 = bls12_381_g2.
    threshold_cost::<P>(l, "cost_sign_with_ecdsa", |curve| curve == 0)?;
    threshold_cost::<P>(l, "cost_sign_with_schnorr", |algorithm| algorithm == 0 || algorithm == 1)?;
    threshold_cost::<P>(l, "cost_vetkd_derive_key", |curve| curve == 0)?;
    Ok(())
}

fn threshold_cost<P: Ptr>(
    l: &mut Linker<HostState>,
    name: &str,
    valid_curve: fn(i32) -> bool,
) -> Result<(), LinkerError> {
    let f = spec(name);
    l.func_wrap(
        "ic0",
        f.name,
        move |mut c: Caller<'_, HostState>, src: P, size: P, curve: i32, dst: P| -> Result<i32, Error> {
            syscall(&mut c, f, size.to_u64().saturating_add(16), |cx| {
                heap_range(cx.heap.len(), dst.to_u64(), 16, f)?;
                let key_name = read(cx.heap, src.to_u64(), size.to_u64(), f)?;
                let (code, fee) = cx.api.cost_threshold_key(key_name, valid_curve(curve));
                if code == 0 {
                    write_u128(cx.heap, dst.to_u64(), fee, f)?;
                }
                Ok(code)
            })
        },
    )?;
    Ok(())
}

fn define_env_vars<P: Ptr>(l: &mut Linker<HostState>) -> Result<(), LinkerError> {
    let f = spec("env_var_count");
    l.func_wrap("ic0", f.name, move |mut c: Caller<'_, HostState>| -> Result<P, Error> {
        syscall(&mut c, f, 0, |cx| Ok(P::from_u64(cx.api.env_var_count() as u64)))
    })?;
    let f = spec("env_var_name_size");
    l.func_wrap("ic0", f.name, move |mut c: Caller<'_, HostState>, index: P| -> Result<P, Error> {
        syscall(&mut c, f, 0, |cx| Ok(P::from_u64(cx.api.env_var_name(index.to_u64(), f.name)?.len() as u64)))
    })?;
    let f = spec("env_var_name_copy");
    l.func_wrap(
        "ic0",
        f.name,
        move |mut c: Caller<'_, HostState>, index: P, dst: P, offset: P, size: P| -> Result<(), Error> {
            syscall(&mut c, f, size.to_u64(), |cx| {
                let name = cx.api.env_var_name(index.to_u64(), f.name)?;
                copy_blob(cx.heap, dst.to_u64(), offset.to_u64(), size.to_u64(), name, f)
            })
        },
    )?;
    let f = spec("env_var_name_exists");
    l.func_wrap("ic0", f.name, move |mut c: Caller<'_, HostState>, src: P, size: P| -> Result<i32, Error> {
        syscall(&mut c, f, size.to_u64(), |cx| {
            Ok(cx.api.env_var_name_exists(read(cx.heap, src.to_u64(), size.to_u64(), f)?)? as i32)
        })
    })?;
    let f = spec("env_var_value_size");
    l.func_wrap("ic0", f.name, move |mut c: Caller<'_, HostState>, src: P, size: P| -> Result<P, Error> {
        syscall(&mut c, f, size.to_u64(), |cx| {
            let name = read(cx.heap, src.to_u64(), size.to_u64(), f)?;
            Ok(P::from_u64(cx.api.env_var_value(name, f.name)?.len() as u64))
        })
    })?;
    let f = spec("env_var_value_copy");
    l.func_wrap(
        "ic0",
        f.name,
        move |mut c: Caller<'_, HostState>, src: P, size: P, dst: P, offset: P, len: P| -> Result<(), Error> {
            syscall(&mut c, f, size.to_u64().saturating_add(len.to_u64()), |cx| {
                let name = read(cx.heap, src.to_u64(), size.to_u64(), f)?;
                let value = cx.api.env_var_value(name, f.name)?;
                copy_blob(cx.heap, dst.to_u64(), offset.to_u64(), len.to_u64(), value, f)
            })
        },
    )?;
    Ok(())
}

// ---- 32-bit only: 64-bit cycles amounts and the 32-bit stable memory API ----

fn define_wasm32_only(l: &mut Linker<HostState>) -> Result<(), LinkerError> {
    let f = spec("msg_cycles_available");
    l.func_wrap("ic0", f.name, move |mut c: Caller<'_, HostState>| -> Result<i64, Error> {
        syscall(&mut c, f, 0, |cx| fits_u64(f, cx.api.cycles_available(), "the amount of cycles available"))
    })?;
    let f = spec("msg_cycles_refunded");
    l.func_wrap("ic0", f.name, move |mut c: Caller<'_, HostState>| -> Result<i64, Error> {
        syscall(&mut c, f, 0, |cx| fits_u64(f, cx.api.cycles_refunded(), "the amount of cycles refunded"))
    })?;
    let f = spec("msg_cycles_accept");
    l.func_wrap("ic0", f.name, move |mut c: Caller<'_, HostState>, max: i64| -> Result<i64, Error> {
        syscall(&mut c, f, 0, |cx| Ok(cx.api.accept_cycles(max as u64 as u128) as i64))
    })?;
    let f = spec("canister_cycle_balance");
    l.func_wrap("ic0", f.name, move |mut c: Caller<'_, HostState>| -> Result<i64, Error> {
        syscall(&mut c, f, 0, |cx| fits_u64(f, cx.api.balance(), "the cycle balance"))
    })?;
    let f = spec("call_cycles_add");
    l.func_wrap("ic0", f.name, move |mut c: Caller<'_, HostState>, amount: i64| -> Result<(), Error> {
        syscall(&mut c, f, 0, |cx| cx.api.call_cycles_add(amount as u64 as u128, f.name))
    })?;
    let f = spec("stable_size");
    l.func_wrap("ic0", f.name, move |mut c: Caller<'_, HostState>| -> Result<i32, Error> {
        syscall(&mut c, f, 0, |cx| {
            check_legacy_stable_size(f, cx.stable)?;
            Ok(cx.stable.size_in_pages() as i32)
        })
    })?;
    let f = spec("stable_grow");
    l.func_wrap("ic0", f.name, move |mut c: Caller<'_, HostState>, pages: i32| -> Result<i32, Error> {
        syscall(&mut c, f, 0, |cx| {
            check_legacy_stable_size(f, cx.stable)?;
            let limit = cx.api.params().stable_memory_limit.min(MAX_LEGACY_STABLE_PAGES * WASM_PAGE_SIZE);
            Ok(cx.stable.grow(pages as u32 as u64, limit).map_or(-1, |old| old as i32))
        })
    })?;
    let f = spec("stable_write");
    l.func_wrap(
        "ic0",
        f.name,
        move |mut c: Caller<'_, HostState>, offset: i32, src: i32, size: i32| -> Result<(), Error> {
            syscall(&mut c, f, size as u32 as u64, |cx| {
                check_legacy_stable_size(f, cx.stable)?;
                stable_write(cx, offset.to_u64(), src.to_u64(), size.to_u64(), f)
            })
        },
    )?;
    let f = spec("stable_read");
    l.func_wrap(
        "ic0",
        f.name,
        move |mut c: Caller<'_, HostState>, dst: i32, offset: i32, size: i32| -> Result<(), Error> {
            syscall(&mut c, f, size as u32 as u64, |cx| {
                check_legacy_stable_size(f, cx.stable)?;
                stable_read(cx, dst.to_u64(), offset.to_u64(), size.to_u64(), f)
            })
        },
    )?;
    Ok(())
}

fn check_legacy_stable_size(f: &Ic0Function, stable: &StableMemory) -> Result<(), UserError> {
    if stable.size_in_pages() > MAX_LEGACY_STABLE_PAGES {
        return Err(trapped(format!(
            "ic0.{}: 32-bit stable memory API used on a stable memory larger than 4 GiB",
            f.name
        )));
    }
    Ok(())
}
