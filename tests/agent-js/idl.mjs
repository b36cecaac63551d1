// Candid interfaces (IDL factories) of the management canister and of the test canisters.
// They mirror canisters/*/<name>.did (checked against the code by `cargo test` in canisters/)
// and the .did files build.mjs writes for the Motoko canisters.

/** The parts of the management canister (ic.did of the interface spec) the tests use. */
export const managementIdl = ({ IDL }) => {
  const canisterSettings = IDL.Record({
    controllers: IDL.Opt(IDL.Vec(IDL.Principal)),
    compute_allocation: IDL.Opt(IDL.Nat),
    memory_allocation: IDL.Opt(IDL.Nat),
    freezing_threshold: IDL.Opt(IDL.Nat),
    reserved_cycles_limit: IDL.Opt(IDL.Nat),
    wasm_memory_limit: IDL.Opt(IDL.Nat),
  });
  const definiteSettings = IDL.Record({
    controllers: IDL.Vec(IDL.Principal),
    compute_allocation: IDL.Nat,
    memory_allocation: IDL.Nat,
    freezing_threshold: IDL.Nat,
    reserved_cycles_limit: IDL.Nat,
    wasm_memory_limit: IDL.Nat,
  });
  const installMode = IDL.Variant({
    install: IDL.Null,
    reinstall: IDL.Null,
    upgrade: IDL.Opt(
      IDL.Record({
        skip_pre_upgrade: IDL.Opt(IDL.Bool),
        wasm_memory_persistence: IDL.Opt(IDL.Variant({ keep: IDL.Null, replace: IDL.Null })),
      }),
    ),
  });
  const canisterIdArg = IDL.Record({ canister_id: IDL.Principal });
  return IDL.Service({
    provisional_create_canister_with_cycles: IDL.Func(
      [
        IDL.Record({
          amount: IDL.Opt(IDL.Nat),
          settings: IDL.Opt(canisterSettings),
          specified_id: IDL.Opt(IDL.Principal),
          sender_canister_version: IDL.Opt(IDL.Nat64),
        }),
      ],
      [IDL.Record({ canister_id: IDL.Principal })],
      [],
    ),
    provisional_top_up_canister: IDL.Func([IDL.Record({ canister_id: IDL.Principal, amount: IDL.Nat })], [], []),
    install_code: IDL.Func(
      [
        IDL.Record({
          mode: installMode,
          canister_id: IDL.Principal,
          wasm_module: IDL.Vec(IDL.Nat8),
          arg: IDL.Vec(IDL.Nat8),
          sender_canister_version: IDL.Opt(IDL.Nat64),
        }),
      ],
      [],
      [],
    ),
    uninstall_code: IDL.Func([IDL.Record({ canister_id: IDL.Principal, sender_canister_version: IDL.Opt(IDL.Nat64) })], [], []),
    update_settings: IDL.Func(
      [IDL.Record({ canister_id: IDL.Principal, settings: canisterSettings, sender_canister_version: IDL.Opt(IDL.Nat64) })],
      [],
      [],
    ),
    start_canister: IDL.Func([canisterIdArg], [], []),
    stop_canister: IDL.Func([canisterIdArg], [], []),
    delete_canister: IDL.Func([canisterIdArg], [], []),
    canister_status: IDL.Func(
      [canisterIdArg],
      [
        IDL.Record({
          status: IDL.Variant({ running: IDL.Null, stopping: IDL.Null, stopped: IDL.Null }),
          settings: definiteSettings,
          module_hash: IDL.Opt(IDL.Vec(IDL.Nat8)),
          memory_size: IDL.Nat,
          cycles: IDL.Nat,
          idle_cycles_burned_per_day: IDL.Nat,
        }),
      ],
      [],
    ),
  });
};

/** canisters/counter/counter.did */
export const counterIdl = ({ IDL }) =>
  IDL.Service({
    get: IDL.Func([], [IDL.Nat64], ['query']),
    get_certified: IDL.Func(
      [],
      [IDL.Record({ certificate: IDL.Opt(IDL.Vec(IDL.Nat8)), count: IDL.Nat64 })],
      ['query'],
    ),
    inc: IDL.Func([], [IDL.Nat64], []),
    set_certified: IDL.Func([], [IDL.Nat64], []),
    whoami: IDL.Func([], [IDL.Principal], ['query']),
  });

/** counter's install argument: `opt nat64`. */
export const counterInitArg = (IDL, start) => IDL.encode([IDL.Opt(IDL.Nat64)], [start === undefined ? [] : [BigInt(start)]]);

/** The counter interface plus methods it does not have, to provoke "method not found". */
export const counterWithMissingMethodsIdl = ({ IDL }) =>
  IDL.Service({
    get: IDL.Func([], [IDL.Nat64], ['query']),
    no_such_update: IDL.Func([], [], []),
    no_such_query: IDL.Func([], [], ['query']),
  });

const callError = (IDL) => IDL.Record({ reject_code: IDL.Nat32, message: IDL.Text });
const result = (IDL, ok) => IDL.Variant({ Ok: ok, Err: callError(IDL) });

/** canisters/caller/caller.did */
export const callerIdl = ({ IDL }) => {
  const bytes = result(IDL, IDL.Vec(IDL.Nat8));
  const nat64 = result(IDL, IDL.Nat64);
  return IDL.Service({
    balance: IDL.Func([], [IDL.Nat], ['query']),
    call_bounded: IDL.Func([IDL.Principal, IDL.Text, IDL.Vec(IDL.Nat8), IDL.Nat32], [bytes], []),
    call_get: IDL.Func([IDL.Principal], [nat64], []),
    call_inc: IDL.Func([IDL.Principal], [nat64], []),
    call_raw: IDL.Func([IDL.Principal, IDL.Text, IDL.Vec(IDL.Nat8), IDL.Nat], [bytes], []),
    call_trap: IDL.Func([IDL.Principal], [bytes], []),
    create_canister: IDL.Func([IDL.Nat], [result(IDL, IDL.Principal)], []),
    raw_rand: IDL.Func([], [bytes], []),
    receive: IDL.Func([IDL.Nat], [IDL.Nat], []),
    send_cycles: IDL.Func(
      [IDL.Principal, IDL.Nat, IDL.Nat],
      [result(IDL, IDL.Record({ refunded: IDL.Nat, accepted: IDL.Nat }))],
      [],
    ),
  });
};

/** canisters/trap/trap.did */
export const trapIdl = ({ IDL }) =>
  IDL.Service({
    boom: IDL.Func([], [], []),
    boom_query: IDL.Func([], [], ['query']),
    get: IDL.Func([], [IDL.Nat64], ['query']),
    maybe: IDL.Func([IDL.Bool], [IDL.Nat64], []),
    panic: IDL.Func([], [], []),
    reject: IDL.Func([IDL.Text], [], []),
  });

/** canisters/stable/stable.did */
export const stableIdl = ({ IDL }) =>
  IDL.Service({
    get: IDL.Func([IDL.Text], [IDL.Opt(IDL.Text)], ['query']),
    get_heap: IDL.Func([], [IDL.Text], ['query']),
    len: IDL.Func([], [IDL.Nat64], ['query']),
    put: IDL.Func([IDL.Text, IDL.Text], [IDL.Opt(IDL.Text)], []),
    set_heap: IDL.Func([IDL.Text], [], []),
    stable_pages: IDL.Func([], [IDL.Nat64], ['query']),
    upgrades: IDL.Func([], [IDL.Nat64, IDL.Nat64], ['query']),
  });

/** canisters/timer/timer.did */
export const timerIdl = ({ IDL }) =>
  IDL.Service({
    beats: IDL.Func([], [IDL.Nat64], ['query']),
    count: IDL.Func([], [IDL.Nat64], ['query']),
    now: IDL.Func([], [IDL.Nat64], ['query']),
    schedule: IDL.Func([IDL.Nat64], [], []),
    start_interval: IDL.Func([IDL.Nat64], [], []),
  });

/** canisters/loop/loop.did */
export const loopIdl = ({ IDL }) =>
  IDL.Service({
    forever: IDL.Func([], [], []),
    forever_query: IDL.Func([], [], ['query']),
    forever_composite: IDL.Func([IDL.Principal, IDL.Nat32], [IDL.Nat32], ['composite_query']),
    spin: IDL.Func([IDL.Nat64], [IDL.Nat64], []),
  });

/** canisters/membomb/membomb.did */
export const membombIdl = ({ IDL }) =>
  IDL.Service({
    grow: IDL.Func([], [], []),
    grow_stable: IDL.Func([], [], []),
    heap_pages: IDL.Func([], [IDL.Nat64], ['query']),
    stable_pages: IDL.Func([], [IDL.Nat64], ['query']),
  });

/** target/canisters/motoko_counter.did */
export const motokoCounterIdl = ({ IDL }) =>
  IDL.Service({
    get: IDL.Func([], [IDL.Nat64], ['query']),
    inc: IDL.Func([], [IDL.Nat64], []),
    self_id: IDL.Func([], [IDL.Text], ['query']),
    transient_calls: IDL.Func([], [IDL.Nat64], ['query']),
    whoami: IDL.Func([], [IDL.Principal], ['query']),
  });

/** target/canisters/motoko_caller.did */
export const motokoCallerIdl = ({ IDL }) =>
  IDL.Service({
    call_get: IDL.Func([IDL.Principal], [IDL.Nat64], []),
    call_inc: IDL.Func([IDL.Principal], [IDL.Nat64], []),
    call_trap: IDL.Func([IDL.Principal], [IDL.Text], []),
  });
