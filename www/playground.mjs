// The playground: write Motoko (compiled in the browser) or drop in a .wasm, deploy it to the
// IC node serving this page, and call it through a form made from its Candid. Everything goes
// through DFINITY's unmodified @dfinity/agent with host = location.origin: on the page served
// by `tabnet` that is the native node; on a `?subnet=NAME` page the service worker hands
// /api/* to the tab subnet. The list of canisters, the editor's source, the pasted .did and
// the identities are kept in localStorage; the canisters' state is kept by the node.
import {
  Actor,
  AnonymousIdentity,
  Certificate,
  CanisterStatus,
  HttpAgent,
  isV2ResponseBody,
  isV3ResponseBody,
  lookupResultToBuffer,
  pollForResponse,
  QueryResponseStatus,
} from '@dfinity/agent';
import { IDL } from '@dfinity/candid';
import { Ed25519KeyIdentity } from '@dfinity/identity';
import { Principal } from '@dfinity/principal';
// The Candid tooling is its own small wasm (crate/candid-ui), fetched with this module.
import { describe_service, encode_args, encode_init, decode_reply } from '../pkg-candid/tabnet_candid_ui.js';
// The styles, as text (webpack's asset/source rule for .css): injected as one <style>.
import CSS from './playground.css';

const DEFAULT_SOURCE = `import Debug "mo:core/Debug";

// A counter that greets. Deploy it, then call it below.
persistent actor Counter {
  var count : Nat = 0;

  public func inc() : async Nat {
    count += 1;
    Debug.print("count is now " # debug_show count);
    count
  };

  public query func get() : async Nat {
    count
  };

  public query func greet(name : Text) : async Text {
    "Hello, " # name # "!"
  };
};
`;

// On a `?subnet=NAME` page the playground talks to the tab subnet NAME, whose canisters are not
// the native node's: the list of canisters is kept per network (source, .did and identities
// are shared).
const SUBNET = new URLSearchParams(location.search).get('subnet');
const NETWORK = SUBNET ? `@subnet:${SUBNET}` : '';

const KEY = {
  canisters: `tabnet.playground.canisters${NETWORK}`,
  selected: `tabnet.playground.selected${NETWORK}`,
  source: 'tabnet.playground.source',
  did: 'tabnet.playground.did',
  initArg: 'tabnet.playground.init-arg',
  moInitArg: 'tabnet.playground.motoko-init-arg',
  identities: 'tabnet.playground.identities',
  caller: 'tabnet.playground.caller',
};

const load = (key, fallback) => {
  try {
    const v = localStorage.getItem(key);
    return v === null ? fallback : JSON.parse(v);
  } catch {
    return fallback;
  }
};
const save = (key, value) => {
  try {
    localStorage.setItem(key, JSON.stringify(value));
  } catch {
    // Storage full or refused: the page goes on without remembering.
  }
};

/** An element: h('button', { id, onclick }, 'text', child…). */
function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (v === undefined || v === null) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k in el && typeof v !== 'string') el[k] = v;
    else el.setAttribute(k, v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined && c !== false) el.append(c);
  return el;
}

const hex = (bytes) => [...bytes].map((b) => b.toString(16).padStart(2, '0')).join('');
const fmtCycles = (n) => {
  const v = Number(n);
  if (v >= 1e12) return `${(v / 1e12).toFixed(3)} T`;
  if (v >= 1e9) return `${(v / 1e9).toFixed(3)} B`;
  if (v >= 1e6) return `${(v / 1e6).toFixed(3)} M`;
  return String(n);
};
const fmtBytes = (n) => {
  const v = Number(n);
  if (v >= 1 << 20) return `${(v / (1 << 20)).toFixed(2)} MiB`;
  if (v >= 1 << 10) return `${(v / (1 << 10)).toFixed(1)} KiB`;
  return `${v} bytes`;
};

/** The reject an agent-js error carries: "IC0503 (reject 5): message", or the error's text. */
export function describeError(e) {
  const code = e?.cause?.code;
  if (code && code.rejectCode !== undefined) {
    const errorCode = code.rejectErrorCode ?? code.error_code ?? '';
    return `${errorCode ? `${errorCode} ` : ''}(reject ${Number(code.rejectCode)}): ${code.rejectMessage}`;
  }
  return String(e?.message ?? e);
}

// ---- The management canister, through an agent-js actor ----

const managementIdl = ({ IDL }) => {
  const settings = IDL.Record({
    controllers: IDL.Opt(IDL.Vec(IDL.Principal)),
    compute_allocation: IDL.Opt(IDL.Nat),
    memory_allocation: IDL.Opt(IDL.Nat),
    freezing_threshold: IDL.Opt(IDL.Nat),
  });
  const canisterIdArg = IDL.Record({ canister_id: IDL.Principal });
  return IDL.Service({
    provisional_create_canister_with_cycles: IDL.Func(
      [IDL.Record({ amount: IDL.Opt(IDL.Nat), settings: IDL.Opt(settings), specified_id: IDL.Opt(IDL.Principal), sender_canister_version: IDL.Opt(IDL.Nat64) })],
      [IDL.Record({ canister_id: IDL.Principal })],
      [],
    ),
    provisional_top_up_canister: IDL.Func([IDL.Record({ canister_id: IDL.Principal, amount: IDL.Nat })], [], []),
    install_code: IDL.Func(
      [
        IDL.Record({
          mode: IDL.Variant({
            install: IDL.Null,
            reinstall: IDL.Null,
            upgrade: IDL.Opt(IDL.Record({ skip_pre_upgrade: IDL.Opt(IDL.Bool), wasm_memory_persistence: IDL.Opt(IDL.Variant({ keep: IDL.Null, replace: IDL.Null })) })),
          }),
          canister_id: IDL.Principal,
          wasm_module: IDL.Vec(IDL.Nat8),
          arg: IDL.Vec(IDL.Nat8),
          sender_canister_version: IDL.Opt(IDL.Nat64),
        }),
      ],
      [],
      [],
    ),
    canister_status: IDL.Func(
      [canisterIdArg],
      [
        IDL.Record({
          status: IDL.Variant({ running: IDL.Null, stopping: IDL.Null, stopped: IDL.Null }),
          settings: IDL.Record({ controllers: IDL.Vec(IDL.Principal), freezing_threshold: IDL.Nat }),
          module_hash: IDL.Opt(IDL.Vec(IDL.Nat8)),
          memory_size: IDL.Nat,
          cycles: IDL.Nat,
          idle_cycles_burned_per_day: IDL.Nat,
        }),
      ],
      [],
    ),
    fetch_canister_logs: IDL.Func(
      [canisterIdArg],
      [IDL.Record({ canister_log_records: IDL.Vec(IDL.Record({ idx: IDL.Nat64, timestamp_nanos: IDL.Nat64, content: IDL.Vec(IDL.Nat8) })) })],
      ['query'],
    ),
  });
};

/** The first canister id of the subnet's range: where a creation (which names none) goes. */
const FIRST_CANISTER = Principal.fromUint8Array(new Uint8Array([0, 0, 0, 0, 0, 0, 0, 0, 1, 1]));

function management(agent) {
  // As the interface spec asks: a call is addressed to the canister its argument names.
  const effective = (_method, args) => ({ effectiveCanisterId: args[0]?.canister_id ?? FIRST_CANISTER });
  return Actor.createActor(managementIdl, {
    agent,
    canisterId: Principal.managementCanister(),
    effectiveCanisterId: FIRST_CANISTER,
    callTransform: effective,
    queryTransform: effective,
  });
}

// ---- Raw calls with Candid bytes (the form encodes them in Rust) ----

/** An update call with raw argument bytes; the reply's bytes, or throws agent-js's reject. */
async function rawUpdate(agent, canisterId, methodName, arg) {
  const cid = Principal.from(canisterId);
  const { requestId, response } = await agent.call(cid, { methodName, arg, effectiveCanisterId: cid });
  if (isV3ResponseBody(response.body)) {
    const certificate = await Certificate.create({ certificate: response.body.certificate, rootKey: agent.rootKey, canisterId: cid, agent });
    const path = [new TextEncoder().encode('request_status'), requestId];
    const status = new TextDecoder().decode(lookupResultToBuffer(certificate.lookup_path([...path, 'status'])));
    if (status === 'replied') return new Uint8Array(lookupResultToBuffer(certificate.lookup_path([...path, 'reply'])));
    if (status === 'rejected') {
      const code = new Uint8Array(lookupResultToBuffer(certificate.lookup_path([...path, 'reject_code'])))[0];
      const message = new TextDecoder().decode(lookupResultToBuffer(certificate.lookup_path([...path, 'reject_message'])));
      const errorBytes = lookupResultToBuffer(certificate.lookup_path([...path, 'error_code']));
      throw Object.assign(new Error(message), { reject: { rejectCode: code, errorCode: errorBytes ? new TextDecoder().decode(errorBytes) : '', message } });
    }
  } else if (isV2ResponseBody(response.body)) {
    const { reject_code, reject_message, error_code } = response.body;
    throw Object.assign(new Error(reject_message), { reject: { rejectCode: reject_code, errorCode: error_code ?? '', message: reject_message } });
  }
  const { reply } = await pollForResponse(agent, cid, requestId);
  return new Uint8Array(reply);
}

/** A query with raw argument bytes; the reply's bytes, or throws the reject. */
async function rawQuery(agent, canisterId, methodName, arg) {
  const result = await agent.query(Principal.from(canisterId), { methodName, arg });
  if (result.status === QueryResponseStatus.Replied) return new Uint8Array(result.reply.arg);
  throw Object.assign(new Error(result.reject_message), {
    reject: { rejectCode: result.reject_code, errorCode: result.error_code ?? '', message: result.reject_message },
  });
}

const rejectText = (e) => (e?.reject ? `${e.reject.errorCode ? `${e.reject.errorCode} ` : ''}(reject ${Number(e.reject.rejectCode)}): ${e.reject.message}` : describeError(e));

// ---- Candid values from form inputs ----

function candidString(s) {
  let out = '"';
  for (const c of s) {
    const n = c.codePointAt(0);
    if (c === '"' || c === '\\') out += `\\${c}`;
    else if (n < 0x20 || n === 0x7f) out += `\\u{${n.toString(16)}}`;
    else out += c;
  }
  return `${out}"`;
}

function candidBlob(s) {
  const compact = s.replace(/^0x/i, '').replace(/[\s_]/g, '');
  const bytes = /^([0-9a-f]{2})*$/i.test(compact)
    ? compact.match(/../g) ?? []
    : [...new TextEncoder().encode(s)].map((b) => b.toString(16).padStart(2, '0'));
  return `blob "${bytes.map((b) => `\\${b}`).join('')}"`;
}

const INTEGER = /^[+-]?[0-9][0-9_]*$/;
const FLOAT = /^[+-]?([0-9][0-9_]*)(\.[0-9_]*)?([eE][+-]?[0-9]+)?$/;

/** A form widget for a type tree node: { el, value() → Candid text (throws if incomplete) }. */
function widget(ty, label) {
  const kind = ty.kind;
  const named = (input) => input;
  switch (kind) {
    case 'null':
      return { el: h('span', { class: 'pg-muted' }, 'null'), value: () => 'null' };
    case 'bool': {
      const input = h('input', { type: 'checkbox', 'aria-label': label });
      return { el: h('label', { class: 'pg-check' }, input, ' true'), value: () => String(input.checked) };
    }
    case 'text': {
      const input = named(h('input', { type: 'text', placeholder: 'text', 'aria-label': label }));
      return { el: input, value: () => candidString(input.value) };
    }
    case 'principal': {
      const input = h('input', { type: 'text', placeholder: 'principal, e.g. aaaaa-aa', 'aria-label': label });
      return {
        el: input,
        value: () => {
          const v = input.value.trim();
          try {
            Principal.fromText(v);
          } catch {
            throw new Error(`${label}: "${v}" is not a principal`);
          }
          return `principal ${candidString(v)}`;
        },
      };
    }
    case 'blob': {
      const input = h('input', { type: 'text', placeholder: 'blob: hex (00ff…) or text', 'aria-label': label });
      return { el: input, value: () => candidBlob(input.value) };
    }
    case 'float32':
    case 'float64':
    case 'nat':
    case 'int':
    case 'nat8':
    case 'nat16':
    case 'nat32':
    case 'nat64':
    case 'int8':
    case 'int16':
    case 'int32':
    case 'int64': {
      const float = kind.startsWith('float');
      const input = h('input', { type: 'text', inputmode: float || kind.startsWith('int') ? 'text' : 'numeric', placeholder: kind, 'aria-label': label, class: 'pg-num' });
      return {
        el: input,
        value: () => {
          const v = input.value.trim();
          if (!(float ? FLOAT : INTEGER).test(v)) throw new Error(`${label}: "${v}" is not a ${kind}`);
          if (kind.startsWith('nat') && v.startsWith('-')) throw new Error(`${label}: a ${kind} cannot be negative`);
          return v;
        },
      };
    }
    case 'opt': {
      const some = h('input', { type: 'checkbox', 'aria-label': `${label}: some` });
      const inner = widget(ty.of, label);
      const box = h('div', { class: 'pg-nested', hidden: true }, inner.el);
      some.addEventListener('change', () => { box.hidden = !some.checked; });
      return { el: h('div', {}, h('label', { class: 'pg-check' }, some, ' some (else null)'), box), value: () => (some.checked ? `opt ${inner.value()}` : 'null') };
    }
    case 'vec': {
      const items = [];
      const list = h('div', { class: 'pg-nested' });
      const add = h('button', { type: 'button', class: 'pg-small' }, '+ item');
      add.addEventListener('click', () => {
        const item = widget(ty.of, `${label}[${items.length}]`);
        const row = h('div', { class: 'pg-item' });
        const remove = h('button', { type: 'button', class: 'pg-small', 'aria-label': 'remove item' }, '×');
        remove.addEventListener('click', () => {
          items.splice(items.indexOf(item), 1);
          row.remove();
        });
        row.append(item.el, remove);
        items.push(item);
        list.append(row);
      });
      return { el: h('div', {}, list, add), value: () => `vec { ${items.map((i) => i.value()).join('; ')} }` };
    }
    case 'record': {
      const fields = ty.fields.map((f) => ({ f, w: widget(f.ty, f.name) }));
      const el = h('div', { class: 'pg-nested pg-record' }, fields.map(({ f, w }) => h('div', { class: 'pg-field' }, h('span', { class: 'pg-label' }, f.name), w.el)));
      return { el, value: () => `record { ${fields.map(({ f, w }) => `${f.label} = ${w.value()}`).join('; ')} }` };
    }
    case 'variant': {
      const select = h('select', { 'aria-label': label }, ty.fields.map((f, k) => h('option', { value: String(k) }, f.name)));
      const box = h('div', { class: 'pg-nested' });
      let current = null;
      const pick = () => {
        const f = ty.fields[Number(select.value)];
        current = f.ty.kind === 'null' ? null : widget(f.ty, f.name);
        box.replaceChildren(...(current ? [current.el] : []));
      };
      select.addEventListener('change', pick);
      pick();
      return {
        el: h('div', {}, select, box),
        value: () => {
          const f = ty.fields[Number(select.value)];
          return current ? `variant { ${f.label} = ${current.value()} }` : `variant { ${f.label} }`;
        },
      };
    }
    default: {
      // Recursive types met again, func and service references, reserved, empty: Candid text.
      const input = h('input', { type: 'text', placeholder: `Candid text: ${ty.text}`, 'aria-label': label, value: kind === 'reserved' ? 'null' : '' });
      return { el: input, value: () => input.value.trim() };
    }
  }
}

// ---- The playground ----

export function mountPlayground(container) {
  if (!document.getElementById('pg-style')) document.head.append(h('style', { id: 'pg-style' }, CSS));
  const state = {
    canisters: load(KEY.canisters, []),
    selected: load(KEY.selected, null),
    identities: load(KEY.identities, []),
    caller: load(KEY.caller, 'anonymous'),
    samples: new Map(),
  };
  const agents = new Map();
  const timing = { compilerLoadMs: null, compileMs: [] };
  window.tabnetPlayground = timing;

  // ---- Identities ----
  const identityOf = (key) => {
    if (key === 'anonymous') return new AnonymousIdentity();
    const entry = state.identities.find((i) => i.principal === key);
    return entry ? Ed25519KeyIdentity.fromJSON(entry.json) : new AnonymousIdentity();
  };
  // A tab subnet answers once this tab's node has joined and the service worker controls the
  // page (before that, /api/* would go to the native node, or to no one).
  const nodeReady = async () => {
    while (SUBNET && !(window.tabnetSubnet && navigator.serviceWorker?.controller)) await new Promise((r) => setTimeout(r, 200));
  };
  const agentFor = (key) => {
    if (!agents.has(key)) {
      agents.set(key, nodeReady().then(() => HttpAgent.create({ host: location.origin, identity: identityOf(key), shouldFetchRootKey: true })).catch((e) => {
        agents.delete(key);
        throw e;
      }));
    }
    return agents.get(key);
  };
  const identityName = (key) => (key === 'anonymous' ? 'anonymous' : `${state.identities.find((i) => i.principal === key)?.name ?? 'identity'} (${key.slice(0, 11)}…)`);

  // ---- DOM ----
  const source = h('textarea', { id: 'pg-source', spellcheck: false, wrap: 'off', rows: 18, 'aria-label': 'Motoko source (Main.mo)' });
  source.value = load(KEY.source, DEFAULT_SOURCE);
  const compilerStatus = h('span', { id: 'pg-compiler', class: 'pg-muted' }, 'compiler: loads when you use the editor');
  const moOut = h('div', { id: 'pg-mo-out', class: 'pg-out', 'aria-live': 'polite' });
  const moDeploy = h('button', { id: 'pg-mo-deploy', type: 'button', class: 'pg-primary' }, 'Deploy as a new canister');
  const moUpgrade = h('button', { id: 'pg-mo-upgrade', type: 'button' }, 'Upgrade selected');
  const moReinstall = h('button', { id: 'pg-mo-reinstall', type: 'button' }, 'Reinstall selected');
  const moReset = h('button', { id: 'pg-mo-reset', type: 'button', class: 'pg-small' }, 'Default program');
  const moInitArg = h('input', { id: 'pg-mo-init-arg', type: 'text', 'aria-label': 'actor class arguments (Candid text)' });
  moInitArg.value = load(KEY.moInitArg, '()');

  const wasmFile = h('input', { id: 'pg-wasm-file', type: 'file', accept: '.wasm,.gz,application/wasm,application/gzip' });
  const didInput = h('textarea', { id: 'pg-did', rows: 5, spellcheck: false, placeholder: 'service : {\n  greet : (text) -> (text) query;\n}', 'aria-label': 'Candid interface (.did) of the module' });
  didInput.value = load(KEY.did, '');
  const initArg = h('input', { id: 'pg-init-arg', type: 'text', 'aria-label': 'init argument (Candid text)' });
  initArg.value = load(KEY.initArg, '()');
  const wasmOut = h('div', { id: 'pg-wasm-out', class: 'pg-out', 'aria-live': 'polite' });
  const wasmDeploy = h('button', { id: 'pg-wasm-deploy', type: 'button', class: 'pg-primary' }, 'Deploy as a new canister');
  const wasmUpgrade = h('button', { id: 'pg-wasm-upgrade', type: 'button' }, 'Upgrade selected');
  const wasmReinstall = h('button', { id: 'pg-wasm-reinstall', type: 'button' }, 'Reinstall selected');

  const identitySelect = h('select', { id: 'pg-identity', 'aria-label': 'call as' });
  const newIdentity = h('button', { id: 'pg-new-identity', type: 'button', class: 'pg-small' }, 'New identity');

  const canisterList = h('ul', { id: 'pg-canisters', class: 'pg-list' });
  const panel = h('div', { id: 'pg-panel', hidden: true });
  const panelTitle = h('h4', { id: 'pg-selected' });
  const statusBox = h('dl', { id: 'pg-status', class: 'pg-status' });
  const topUpAmount = h('input', { id: 'pg-topup-amount', type: 'text', value: '1000000000000', class: 'pg-num', 'aria-label': 'cycles to add' });
  const topUp = h('button', { id: 'pg-topup', type: 'button' }, 'Top up');
  const logs = h('pre', { id: 'pg-logs', class: 'pg-logs' });
  const didEdit = h('textarea', { id: 'pg-did-edit', rows: 6, spellcheck: false, 'aria-label': 'Candid interface of the selected canister' });
  const didApply = h('button', { id: 'pg-did-apply', type: 'button', class: 'pg-small' }, 'Use this .did');
  const didFetch = h('button', { id: 'pg-did-fetch', type: 'button', class: 'pg-small' }, 'Read candid:service from the canister');
  const didOut = h('div', { id: 'pg-did-out', class: 'pg-out' });
  const methods = h('div', { id: 'pg-methods' });
  const rawMethod = h('input', { id: 'pg-raw-method', type: 'text', placeholder: 'method', 'aria-label': 'method name' });
  const rawArg = h('input', { id: 'pg-raw-arg', type: 'text', value: '()', 'aria-label': 'arguments (Candid text)' });
  const rawQueryBtn = h('button', { id: 'pg-raw-query', type: 'button' }, 'Query');
  const rawUpdateBtn = h('button', { id: 'pg-raw-update', type: 'button' }, 'Update');
  const rawOut = h('pre', { id: 'pg-raw-out', class: 'pg-result' });

  container.replaceChildren(
    h('h2', {}, 'Playground'),
    h('p', {}, 'Write Motoko or drop in a ', h('code', {}, '.wasm'), ', deploy it to ',
      SUBNET ? h('span', {}, 'the tab subnet ', h('b', {}, SUBNET), ' (this tab is one of its nodes)') : 'the IC node serving this page',
      ', and call it from a form made from its Candid. ',
      'Nothing to install: the Motoko compiler runs in this tab, and calls go through ', h('code', {}, '@dfinity/agent'), '.'),
    h('div', { class: 'pg-bar' }, h('label', { for: 'pg-identity' }, 'Call as '), identitySelect, newIdentity),
    h('div', { class: 'pg-grid' },
      h('div', { class: 'pg-col' },
        h('details', { id: 'pg-motoko', open: true, class: 'pg-box' },
          h('summary', {}, h('h3', {}, 'Motoko')),
          h('div', { class: 'pg-row' }, compilerStatus, moReset),
          source,
          h('details', { class: 'pg-sub' }, h('summary', {}, 'Arguments of an actor class (Candid text)'), moInitArg),
          h('div', { class: 'pg-row' }, moDeploy, moUpgrade, moReinstall),
          moOut),
        h('details', { id: 'pg-wasm', open: true, class: 'pg-box' },
          h('summary', {}, h('h3', {}, 'A .wasm module')),
          h('p', { class: 'pg-muted' }, 'Built with ic-cdk (or any canister module), gzipped or not. Paste its .did for the call form.'),
          h('div', { class: 'pg-drop', id: 'pg-drop' }, wasmFile),
          h('label', { class: 'pg-block', for: 'pg-did' }, 'Candid interface (.did)'), didInput,
          h('label', { class: 'pg-block', for: 'pg-init-arg' }, 'Init argument (Candid text)'), initArg,
          h('div', { class: 'pg-row' }, wasmDeploy, wasmUpgrade, wasmReinstall),
          wasmOut)),
      h('div', { class: 'pg-col' },
        h('div', { class: 'pg-box' },
          h('h3', {}, 'Canisters'),
          canisterList,
          panel)),
    ),
  );
  panel.append(
    panelTitle,
    statusBox,
    h('div', { class: 'pg-row' }, topUpAmount, topUp),
    h('h4', {}, 'Methods'),
    methods,
    h('details', { class: 'pg-sub' }, h('summary', {}, 'Call any method with Candid text'),
      h('div', { class: 'pg-row' }, rawMethod, rawArg),
      h('div', { class: 'pg-row' }, rawQueryBtn, rawUpdateBtn),
      rawOut),
    h('details', { class: 'pg-sub' }, h('summary', {}, 'Candid interface'), didEdit, h('div', { class: 'pg-row' }, didApply, didFetch), didOut),
    h('h4', {}, 'Log'),
    logs,
  );

  // ---- Storage helpers ----
  const persistCanisters = () => save(KEY.canisters, state.canisters);
  const selected = () => state.canisters.find((c) => c.id === state.selected) ?? null;

  const say = (el, text, kind = '') => {
    el.className = `pg-out ${kind}`;
    el.textContent = text;
  };

  // ---- Identities UI ----
  function renderIdentities() {
    identitySelect.replaceChildren(
      h('option', { value: 'anonymous' }, 'anonymous'),
      ...state.identities.map((i) => h('option', { value: i.principal }, `${i.name}: ${i.principal}`)),
    );
    if (state.caller !== 'anonymous' && !state.identities.some((i) => i.principal === state.caller)) state.caller = 'anonymous';
    identitySelect.value = state.caller;
  }
  identitySelect.addEventListener('change', () => {
    state.caller = identitySelect.value;
    save(KEY.caller, state.caller);
  });
  newIdentity.addEventListener('click', () => {
    const identity = Ed25519KeyIdentity.generate();
    const principal = identity.getPrincipal().toText();
    state.identities.push({ name: `identity ${state.identities.length + 1}`, principal, json: JSON.stringify(identity.toJSON()) });
    save(KEY.identities, state.identities);
    state.caller = principal;
    save(KEY.caller, principal);
    renderIdentities();
  });

  // ---- The Motoko compiler, in a worker, loaded on first use ----
  let worker = null;
  let ready = null;
  let nextId = 0;
  const pending = new Map();
  function compiler() {
    if (worker) return ready;
    compilerStatus.textContent = 'compiler: loading…';
    const t0 = performance.now();
    worker = new Worker(new URL('./motoko-worker.mjs', import.meta.url));
    ready = new Promise((resolve, reject) => {
      worker.onmessage = ({ data }) => {
        if (data.ready) {
          timing.compilerLoadMs = Math.round(performance.now() - t0);
          compilerStatus.textContent = `compiler: ready (loaded in ${(timing.compilerLoadMs / 1000).toFixed(1)} s)`;
          resolve();
          return;
        }
        pending.get(data.id)?.(data);
        pending.delete(data.id);
      };
      worker.onerror = (e) => {
        compilerStatus.textContent = `compiler: failed to load (${e.message})`;
        reject(new Error(`the Motoko compiler failed to load: ${e.message}`));
      };
    });
    return ready;
  }
  const compile = async (text) => {
    await compiler();
    const id = ++nextId;
    return new Promise((resolve) => {
      pending.set(id, resolve);
      worker.postMessage({ id, source: text });
    });
  };
  const motokoBox = container.querySelector('#pg-motoko');
  motokoBox.addEventListener('focusin', () => compiler().catch(() => {}));
  motokoBox.addEventListener('pointerdown', () => compiler().catch(() => {}));

  let saveTimer = null;
  source.addEventListener('input', () => {
    clearTimeout(saveTimer);
    saveTimer = setTimeout(() => save(KEY.source, source.value), 300);
  });
  moReset.addEventListener('click', () => {
    source.value = DEFAULT_SOURCE;
    save(KEY.source, source.value);
  });
  didInput.addEventListener('input', () => save(KEY.did, didInput.value));
  initArg.addEventListener('input', () => save(KEY.initArg, initArg.value));
  moInitArg.addEventListener('input', () => save(KEY.moInitArg, moInitArg.value));

  function showDiagnostics(diagnostics) {
    return diagnostics.map((d) => {
      const line = h('button', { type: 'button', class: `pg-diag ${d.severity === 'error' ? 'err' : 'warn'}` },
        `Main.mo:${d.line}:${d.column}: ${d.severity}${d.code ? ` ${d.code}` : ''}: ${d.message}`);
      line.addEventListener('click', () => {
        const lines = source.value.split('\n');
        const at = lines.slice(0, d.line - 1).reduce((n, l) => n + l.length + 1, 0) + d.column - 1;
        source.focus();
        source.setSelectionRange(at, at);
      });
      return line;
    });
  }

  // ---- Deploying ----
  async function withBusy(buttons, out, work) {
    for (const b of buttons) b.disabled = true;
    try {
      await work();
    } catch (e) {
      say(out, rejectText(e), 'err');
    } finally {
      for (const b of buttons) b.disabled = false;
      updateButtons();
    }
  }

  async function createCanister(controller) {
    const agent = await agentFor(controller);
    const { canister_id } = await management(agent).provisional_create_canister_with_cycles({
      amount: [],
      settings: [],
      specified_id: [],
      sender_canister_version: [],
    });
    return canister_id.toText();
  }

  async function install(entry, mode, wasm, arg, keepMemory) {
    const agent = await agentFor(entry.controller);
    const installMode = mode === 'upgrade'
      ? { upgrade: [{ skip_pre_upgrade: [], wasm_memory_persistence: keepMemory ? [{ keep: null }] : [] }] }
      : { [mode]: null };
    await management(agent).install_code({
      mode: installMode,
      canister_id: Principal.fromText(entry.id),
      wasm_module: wasm,
      arg,
      sender_canister_version: [],
    });
  }

  const motokoButtons = [moDeploy, moUpgrade, moReinstall];
  async function deployMotoko(mode) {
    await withBusy(motokoButtons, moOut, async () => {
      save(KEY.source, source.value);
      say(moOut, compilerStatus.textContent.includes('ready') ? 'compiling…' : 'loading the compiler, then compiling…');
      const result = await compile(source.value);
      timing.compileMs.push(result.ms);
      if (!result.ok) {
        moOut.className = 'pg-out err';
        moOut.replaceChildren(h('div', {}, 'The program does not compile:'), ...showDiagnostics(result.diagnostics));
        return;
      }
      const warnings = showDiagnostics(result.diagnostics);
      // Checked against the compiler's Candid before anything is created.
      const arg = new Uint8Array(encode_init(result.candid, moInitArg.value.trim() || '()'));
      let entry;
      if (mode === 'install') {
        say(moOut, `compiled in ${(result.ms / 1000).toFixed(1)} s (${fmtBytes(result.wasm.length)}); creating a canister…`);
        const controller = state.caller;
        entry = { id: await createCanister(controller), name: 'Motoko canister', kind: 'motoko', did: result.candid, controller, created: Date.now() };
        entry.name = `${source.value.match(/actor\s+(?:class\s+)?([A-Za-z_][A-Za-z0-9_]*)/)?.[1] ?? 'Motoko'}`;
        state.canisters.push(entry);
        persistCanisters();
        select(entry.id);
      } else {
        entry = selected();
      }
      say(moOut, `${mode === 'install' ? 'installing' : mode === 'upgrade' ? 'upgrading' : 'reinstalling'} ${entry.id}…`);
      // Motoko's enhanced orthogonal persistence keeps the heap across upgrades.
      await install(entry, mode, result.wasm, arg, true);
      entry.did = result.candid;
      entry.kind = 'motoko';
      persistCanisters();
      say(moOut, `${mode === 'install' ? 'Deployed' : mode === 'upgrade' ? 'Upgraded' : 'Reinstalled'} ${entry.id} (compiled in ${(result.ms / 1000).toFixed(1)} s, ${fmtBytes(result.wasm.length)}).`, 'ok');
      if (warnings.length) moOut.append(...warnings);
      renderList();
      renderPanel();
    });
  }
  moDeploy.addEventListener('click', () => deployMotoko('install'));
  moUpgrade.addEventListener('click', () => deployMotoko('upgrade'));
  moReinstall.addEventListener('click', () => deployMotoko('reinstall'));

  /** The module's bytes, and whether it asks for its heap to be kept (enhanced orthogonal persistence). */
  async function readModule() {
    const file = wasmFile.files[0];
    if (!file) throw new Error('choose a .wasm (or .wasm.gz) file first');
    const bytes = new Uint8Array(await file.arrayBuffer());
    let plain = bytes;
    if (bytes[0] === 0x1f && bytes[1] === 0x8b) {
      plain = new Uint8Array(await new Response(new Blob([bytes]).stream().pipeThrough(new DecompressionStream('gzip'))).arrayBuffer());
    }
    if (!(plain[0] === 0 && plain[1] === 0x61 && plain[2] === 0x73 && plain[3] === 0x6d)) throw new Error(`${file.name} is not a Wasm module (nor a gzipped one)`);
    return { name: file.name.replace(/(\.wasm)?(\.gz)?$/, ''), bytes, keep: customSections(plain).some((n) => n.endsWith('enhanced-orthogonal-persistence')) };
  }

  const wasmButtons = [wasmDeploy, wasmUpgrade, wasmReinstall];
  async function deployWasm(mode) {
    await withBusy(wasmButtons, wasmOut, async () => {
      const module = await readModule();
      const did = didInput.value.trim();
      if (did) describe_service(did); // throws if the .did does not parse
      const arg = new Uint8Array(encode_init(did, initArg.value.trim() || '()'));
      let entry;
      if (mode === 'install') {
        say(wasmOut, 'creating a canister…');
        const controller = state.caller;
        entry = { id: await createCanister(controller), name: module.name, kind: 'wasm', did, controller, created: Date.now() };
        state.canisters.push(entry);
        persistCanisters();
        select(entry.id);
      } else {
        entry = selected();
      }
      say(wasmOut, `${mode === 'install' ? 'installing' : mode === 'upgrade' ? 'upgrading' : 'reinstalling'} ${module.name} (${fmtBytes(module.bytes.length)}) in ${entry.id}…`);
      await install(entry, mode, module.bytes, arg, module.keep);
      if (did) entry.did = did;
      persistCanisters();
      say(wasmOut, `${mode === 'install' ? 'Deployed' : mode === 'upgrade' ? 'Upgraded' : 'Reinstalled'} ${module.name} in ${entry.id}.`, 'ok');
      renderList();
      renderPanel();
    });
  }
  wasmDeploy.addEventListener('click', () => deployWasm('install'));
  wasmUpgrade.addEventListener('click', () => deployWasm('upgrade'));
  wasmReinstall.addEventListener('click', () => deployWasm('reinstall'));

  const drop = container.querySelector('#pg-drop');
  drop.addEventListener('dragover', (e) => {
    e.preventDefault();
    drop.classList.add('pg-over');
  });
  drop.addEventListener('dragleave', () => drop.classList.remove('pg-over'));
  drop.addEventListener('drop', (e) => {
    e.preventDefault();
    drop.classList.remove('pg-over');
    if (e.dataTransfer?.files?.length) wasmFile.files = e.dataTransfer.files;
  });

  function updateButtons() {
    const has = !!selected();
    for (const b of [moUpgrade, moReinstall, wasmUpgrade, wasmReinstall]) {
      b.disabled = !has;
    }
  }

  // ---- The canister list ----
  function renderList() {
    canisterList.replaceChildren(
      ...(state.canisters.length ? [] : [h('li', { class: 'pg-muted' }, 'None yet: deploy one.')]),
      ...state.canisters.map((c) => {
        const pick = h('button', { type: 'button', class: 'pg-pick', 'aria-pressed': String(c.id === state.selected) },
          h('b', {}, c.name), ' ', h('code', {}, c.id), ' ', h('span', { class: 'pg-muted' }, c.kind === 'motoko' ? 'Motoko' : 'wasm'));
        pick.addEventListener('click', () => select(c.id));
        const forget = h('button', { type: 'button', class: 'pg-small', title: 'Forget (the canister stays on the node)', 'aria-label': `forget ${c.id}` }, '×');
        forget.addEventListener('click', () => {
          state.canisters = state.canisters.filter((x) => x.id !== c.id);
          persistCanisters();
          if (state.selected === c.id) select(state.canisters[0]?.id ?? null);
          renderList();
        });
        return h('li', { dataset: { id: c.id }, class: c.id === state.selected ? 'pg-on' : '' }, pick, forget);
      }),
    );
    updateButtons();
  }

  function select(id) {
    state.selected = id;
    save(KEY.selected, id);
    renderList();
    renderPanel();
  }

  // ---- The selected canister: status, cycles, logs, methods ----
  function renderPanel() {
    const entry = selected();
    panel.hidden = !entry;
    if (!entry) return;
    panelTitle.replaceChildren(`${entry.name} `, h('code', {}, entry.id));
    didEdit.value = entry.did ?? '';
    say(didOut, '');
    renderMethods(entry);
    refreshPanel();
  }

  function renderMethods(entry) {
    methods.replaceChildren();
    if (!entry.did) {
      methods.append(h('p', { class: 'pg-muted' }, 'No Candid interface known: paste one under "Candid interface" (or read it from the canister), or call with Candid text.'));
      return;
    }
    let service;
    try {
      service = JSON.parse(describe_service(entry.did));
    } catch (e) {
      methods.append(h('p', { class: 'err' }, `The .did: ${e}`));
      return;
    }
    for (const m of service.methods) methods.append(methodForm(entry, m));
  }

  function methodForm(entry, m) {
    const args = m.args.map((ty, k) => widget(ty, m.args.length > 1 ? `argument ${k + 1}` : 'argument'));
    const isQuery = m.mode === 'query' || m.mode === 'composite_query';
    const button = h('button', { type: 'submit', class: 'pg-call' }, isQuery ? 'Query' : 'Call');
    const result = h('pre', { class: 'pg-result', 'aria-live': 'polite' });
    const sig = `(${m.args.map((a) => a.text).join(', ')}) → (${m.results.map((r) => r.text).join(', ')})`;
    const form = h('form', { class: 'pg-method', dataset: { method: m.name } },
      h('div', { class: 'pg-method-head' }, h('b', {}, m.name), ' ', h('span', { class: `pg-mode pg-${isQuery ? 'query' : 'update'}` }, m.mode.replace('_', ' ')), ' ', h('code', { class: 'pg-sig' }, sig)),
      ...args.map((a, k) => h('div', { class: 'pg-arg' }, m.args.length > 1 ? h('span', { class: 'pg-label' }, `#${k + 1}`) : null, a.el)),
      h('div', { class: 'pg-row' }, button),
      result);
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      button.disabled = true;
      result.className = 'pg-result pg-pending';
      result.textContent = '…';
      const t0 = performance.now();
      try {
        const text = `(${args.map((a) => a.value()).join(', ')})`;
        const arg = new Uint8Array(encode_args(entry.did, m.name, text));
        const agent = await agentFor(state.caller);
        const reply = isQuery ? await rawQuery(agent, entry.id, m.name, arg) : await rawUpdate(agent, entry.id, m.name, arg);
        result.className = 'pg-result ok';
        result.textContent = decode_reply(entry.did, m.name, reply);
        result.title = `${isQuery ? 'query' : 'update'} in ${Math.round(performance.now() - t0)} ms as ${identityName(state.caller)}`;
      } catch (err) {
        result.className = 'pg-result err';
        result.textContent = rejectText(err);
      } finally {
        button.disabled = false;
        refreshPanel();
      }
    });
    return form;
  }

  async function rawCall(kind) {
    const entry = selected();
    if (!entry) return;
    rawOut.className = 'pg-result pg-pending';
    rawOut.textContent = '…';
    try {
      const method = rawMethod.value.trim();
      const knows = entry.did && JSON.parse(describe_service(entry.did)).methods.some((x) => x.name === method);
      const arg = new Uint8Array(knows ? encode_args(entry.did, method, rawArg.value) : encode_init('', rawArg.value));
      const agent = await agentFor(state.caller);
      const reply = kind === 'query' ? await rawQuery(agent, entry.id, method, arg) : await rawUpdate(agent, entry.id, method, arg);
      rawOut.className = 'pg-result ok';
      rawOut.textContent = decode_reply(knows ? entry.did : '', method, reply);
    } catch (err) {
      rawOut.className = 'pg-result err';
      rawOut.textContent = rejectText(err);
    }
    refreshPanel();
  }
  rawQueryBtn.addEventListener('click', () => rawCall('query'));
  rawUpdateBtn.addEventListener('click', () => rawCall('update'));

  didApply.addEventListener('click', () => {
    const entry = selected();
    if (!entry) return;
    const did = didEdit.value.trim();
    try {
      if (did) describe_service(did);
    } catch (e) {
      say(didOut, String(e), 'err');
      return;
    }
    entry.did = did;
    persistCanisters();
    renderMethods(entry);
    say(didOut, did ? 'Methods updated from this .did.' : 'Interface cleared.', 'ok');
  });
  didFetch.addEventListener('click', async () => {
    const entry = selected();
    if (!entry) return;
    say(didOut, 'reading candid:service …');
    try {
      const agent = await agentFor(state.caller);
      const status = await CanisterStatus.request({ canisterId: Principal.fromText(entry.id), agent, paths: ['candid'] });
      const did = status.get('candid');
      if (!did) throw new Error('the canister has no candid:service metadata');
      didEdit.value = did;
      entry.did = did;
      persistCanisters();
      renderMethods(entry);
      say(didOut, 'Read from the canister\'s candid:service metadata.', 'ok');
    } catch (e) {
      say(didOut, rejectText(e), 'err');
    }
  });

  topUp.addEventListener('click', async () => {
    const entry = selected();
    if (!entry) return;
    topUp.disabled = true;
    try {
      const amount = BigInt(topUpAmount.value.replace(/[_\s]/g, ''));
      await management(await agentFor(entry.controller)).provisional_top_up_canister({ canister_id: Principal.fromText(entry.id), amount });
      state.samples.delete(entry.id);
    } catch (e) {
      statusBox.replaceChildren(h('dt', {}, 'top up'), h('dd', { class: 'err' }, rejectText(e)));
    } finally {
      topUp.disabled = false;
      refreshPanel();
    }
  });

  let refreshing = false;
  async function refreshPanel() {
    const entry = selected();
    if (!entry || refreshing) return;
    refreshing = true;
    try {
      const agent = await agentFor(entry.controller);
      const ic = management(agent);
      const cid = Principal.fromText(entry.id);
      const [status, log] = await Promise.allSettled([ic.canister_status({ canister_id: cid }), ic.fetch_canister_logs({ canister_id: cid })]);
      if (selected()?.id !== entry.id) return;
      const rows = [];
      if (status.status === 'fulfilled') {
        const s = status.value;
        const samples = state.samples.get(entry.id) ?? [];
        const now = Date.now();
        if (samples.length && s.cycles > samples[samples.length - 1].cycles) samples.length = 0; // topped up
        samples.push({ t: now, cycles: s.cycles });
        while (samples.length > 2 && now - samples[0].t > 10 * 60_000) samples.shift();
        state.samples.set(entry.id, samples);
        let burn = 'measuring…';
        if (samples.length >= 2 && now - samples[0].t >= 3000) {
          const perMin = (Number(samples[0].cycles - s.cycles) * 60_000) / (now - samples[0].t);
          burn = `${fmtCycles(Math.round(perMin))} cycles/min (over ${Math.round((now - samples[0].t) / 1000)} s)`;
        }
        rows.push(
          ['status', Object.keys(s.status)[0]],
          ['cycles', h('span', { id: 'pg-cycles' }, `${fmtCycles(s.cycles)} (${s.cycles.toLocaleString('en-US')})`)],
          ['burn', h('span', { id: 'pg-burn' }, burn)],
          ['idle burn', `${fmtCycles(s.idle_cycles_burned_per_day)} cycles/day`],
          ['memory', fmtBytes(s.memory_size)],
          ['module hash', h('code', { class: 'pg-hash' }, s.module_hash.length ? hex(s.module_hash[0]) : 'none (empty canister)')],
          ['controllers', h('span', {}, ...s.settings.controllers.map((p) => h('code', { class: 'pg-principal' }, p.toText())))],
          ['managed as', identityName(entry.controller)],
        );
      } else {
        rows.push(['status', h('span', { class: 'err' }, rejectText(status.reason))]);
      }
      statusBox.replaceChildren(...rows.flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
      if (log.status === 'fulfilled') {
        const records = log.value.canister_log_records;
        logs.textContent = records.length
          ? records.map((r) => `${new Date(Number(r.timestamp_nanos / 1_000_000n)).toISOString().slice(11, 23)}  ${new TextDecoder().decode(r.content)}`).join('\n')
          : '(empty: Debug.print / ic_cdk::println! and traps show here)';
        logs.scrollTop = logs.scrollHeight;
      } else {
        logs.textContent = `cannot read the log: ${rejectText(log.reason)}`;
      }
    } catch (e) {
      statusBox.replaceChildren(h('dt', {}, 'node'), h('dd', { class: 'err' }, rejectText(e)));
    } finally {
      refreshing = false;
    }
  }
  setInterval(() => {
    if (!document.hidden) refreshPanel();
  }, 4000);

  renderIdentities();
  renderList();
  renderPanel();
  return { compiler };
}

/** The names of a Wasm module's custom sections. */
function customSections(wasm) {
  const names = [];
  let at = 8;
  const leb = () => {
    let value = 0;
    let shift = 0;
    for (;;) {
      const byte = wasm[at++];
      value += (byte & 0x7f) * 2 ** shift;
      shift += 7;
      if (!(byte & 0x80) || at >= wasm.length) return value;
    }
  };
  while (at < wasm.length) {
    const id = wasm[at++];
    const size = leb();
    const end = at + size;
    if (id === 0) {
      const len = leb();
      names.push(new TextDecoder().decode(wasm.subarray(at, at + len)));
    }
    at = end;
  }
  return names;
}
