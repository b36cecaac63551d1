// Shared set-up for the agent-js tests: start a `tabnet` node, make agents, talk to the
// management canister, read the canisters built by scripts/build-canisters.sh, and pick apart
// the errors @dfinity/agent throws.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, existsSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';

import {
  Actor,
  HttpAgent,
  Cbor,
  CertifiedRejectErrorCode,
  UncertifiedRejectErrorCode,
  UncertifiedRejectUpdateErrorCode,
} from '@dfinity/agent';
import { Principal } from '@dfinity/principal';
import { IDL } from '@dfinity/candid';

import { managementIdl } from './idl.mjs';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const CANISTER_DIR = join(ROOT, 'target', 'canisters');
export const MANAGEMENT_ID = Principal.managementCanister();
/** Cycles every test canister starts with (the dev-instance provisional amount is 100T). */
export const CANISTER_CYCLES = 10_000_000_000_000n;

/** Path of the node binary: $TABNET_BIN, else the workspace's debug build. */
export function tabnetBin() {
  return process.env.TABNET_BIN ?? join(ROOT, 'target', 'debug', 'tabnet');
}

/** A wasm module from target/canisters/ (run scripts/build-canisters.sh first). */
export function canisterWasm(name) {
  const path = join(CANISTER_DIR, `${name}.wasm`);
  if (!existsSync(path)) {
    throw new Error(`${path} is missing: run scripts/build-canisters.sh`);
  }
  return new Uint8Array(readFileSync(path));
}

/** A TCP port that was free a moment ago (the node binds it right after). */
export async function freePort() {
  return freePorts(1);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** One `tabnet` process with its own state directory, restartable on the same directory. */
export class TabnetNode {
  constructor(stateDir, args = []) {
    this.stateDir = stateDir;
    this.args = args;
    this.process = null;
    this.port = null;
    this.log = '';
    this.stopping = false;
  }

  /**
   * Starts a node on a fresh temporary state directory (or `stateDir`), with extra flags.
   * With TABNET_NODES=N set, starts a subnet of N node processes instead and talks to node
   * TABNET_NODE_INDEX (default 1) — the same tests then run against a replicated subnet.
   */
  static async start(stateDir = mkdtempSync(join(tmpdir(), 'tabnet-agent-js-')), args = []) {
    if (process.env.TABNET_NODES) {
      return TabnetSubnet.start(Number(process.env.TABNET_NODES), stateDir, args, Number(process.env.TABNET_NODE_INDEX ?? 1));
    }
    const node = new TabnetNode(stateDir, args);
    await node.#spawn();
    return node;
  }

  get url() {
    return `http://127.0.0.1:${this.port}`;
  }

  async #spawn() {
    const bin = tabnetBin();
    if (!existsSync(bin)) {
      throw new Error(`tabnet binary not found at ${bin}: cargo build -p tabnet, or set TABNET_BIN`);
    }
    this.port = await freePort();
    this.log = '';
    const child = spawn(bin, ['--port', String(this.port), '--state-dir', this.stateDir, ...this.args], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.process = child;
    const keep = (chunk) => {
      this.log = (this.log + chunk.toString()).slice(-20_000);
    };
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    let exited = null;
    child.on('exit', (code, signal) => {
      exited = { code, signal };
      if (this.process === child && !this.stopping) {
        // Died under a test: say so loudly, with its last words.
        console.error(`tabnet exited unexpectedly (code ${code}, signal ${signal}):\n${this.log}`);
      }
    });
    const deadline = Date.now() + 60_000;
    while (Date.now() < deadline) {
      if (exited) {
        throw new Error(`tabnet exited during start-up (${JSON.stringify(exited)}):\n${this.log}`);
      }
      try {
        const res = await fetch(`${this.url}/api/v2/status`);
        if (res.status === 200) {
          // Ready once it has a certified state to answer from (its first block, on a new node).
          const status = Cbor.decode(new Uint8Array(await res.arrayBuffer()));
          if (status.replica_health_status === 'healthy') return;
        }
      } catch {
        // Not listening yet.
      }
      await sleep(100);
    }
    await this.stop();
    throw new Error(`tabnet did not answer /api/v2/status within 60 s:\n${this.log}`);
  }

  /** Stops the process (SIGTERM, then SIGKILL after 10 s); the state directory stays. */
  async stop() {
    await this.#end('SIGTERM');
  }

  /** Kills the process with SIGKILL, as a crash would: no chance to flush or clean up. */
  async kill() {
    await this.#end('SIGKILL');
  }

  async #end(signal) {
    const child = this.process;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    this.stopping = true;
    child.kill(signal);
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
    this.stopping = false;
    this.process = null;
  }

  /** Starts the process again on the same state directory (on a new port). */
  async start() {
    await this.#spawn();
  }

  /** Stops and starts again on the same state directory (on a new port). */
  async restart() {
    await this.stop();
    await this.#spawn();
  }

  /** Stops the node and deletes its state directory. */
  async destroy() {
    await this.stop();
    rmSync(this.stateDir, { recursive: true, force: true });
  }
}

/**
 * `count` consecutive TCP ports that were free a moment ago. They are below Linux's ephemeral
 * range (32768–60999): a port in it can be taken by any outgoing connection (the tests' own,
 * or gossip between nodes) between this check and the node's bind.
 */
export async function freePorts(count) {
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = 10_000 + Math.floor(Math.random() * (22_000 - count));
    const free = await Promise.all(
      Array.from({ length: count }, (_, k) =>
        new Promise((ok) => {
          const server = createServer();
          server.unref();
          server.once('error', () => ok(false));
          server.listen(base + k, '127.0.0.1', () => server.close(() => ok(true)));
        }),
      ),
    );
    if (free.every(Boolean)) return base;
  }
  throw new Error(`no ${count} consecutive free ports`);
}

/**
 * A subnet of `tabnet node` processes (made with `tabnet init-subnet`), with the interface of
 * TabnetNode: `url` is the node the tests talk to; stop/kill/start act on every node;
 * killNode/startNode on one.
 */
export class TabnetSubnet {
  constructor(nodes, dir, args, index) {
    this.nodes = nodes;
    this.stateDir = dir;
    this.args = args;
    this.index = index;
    this.processes = new Array(nodes).fill(null);
    this.logs = new Array(nodes).fill('');
    this.port = null;
  }

  /** `args` go to every `tabnet node`, `initArgs` to `tabnet init-subnet`. */
  static async start(nodes, dir = mkdtempSync(join(tmpdir(), 'tabnet-subnet-')), args = [], index = 0, initArgs = []) {
    const subnet = new TabnetSubnet(nodes, dir, args, index);
    subnet.port = await freePorts(2 * nodes);
    await run(tabnetBin(), ['init-subnet', '--nodes', String(nodes), '--port', String(subnet.port), '--dir', dir, ...initArgs]);
    await subnet.start();
    return subnet;
  }

  get url() {
    return this.nodeUrl(this.index);
  }
  nodeUrl(k) {
    return `http://127.0.0.1:${this.port + k}`;
  }
  get log() {
    return this.logs.map((l, k) => `--- node ${k}\n${l}`).join('\n');
  }

  async start() {
    await Promise.all(this.processes.map((_, k) => this.startNode(k)));
  }

  /** Starts node `k` (on its state directory) and waits until it answers /api/v2/status. */
  async startNode(k) {
    const child = spawn(tabnetBin(), ['node', '--dir', this.stateDir, '--index', String(k), ...this.args], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.processes[k] = child;
    const keep = (chunk) => {
      this.logs[k] = (this.logs[k] + chunk.toString()).slice(-20_000);
    };
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    let exited = null;
    child.on('exit', (code, signal) => {
      exited = { code, signal };
    });
    const deadline = Date.now() + 60_000;
    while (Date.now() < deadline) {
      if (exited) throw new Error(`node ${k} exited during start-up (${JSON.stringify(exited)}):\n${this.logs[k]}`);
      try {
        const res = await fetch(`${this.nodeUrl(k)}/api/v2/status`);
        if (res.status === 200) {
          // Ready once it has a certified state to answer from.
          const status = Cbor.decode(new Uint8Array(await res.arrayBuffer()));
          if (status.replica_health_status === 'healthy') return;
        }
      } catch {
        // Not listening yet.
      }
      await sleep(100);
    }
    throw new Error(`node ${k} did not answer within 60 s:\n${this.logs[k]}`);
  }

  async #end(k, signal) {
    const child = this.processes[k];
    this.processes[k] = null;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill(signal);
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
  }

  /** Kills node `k` with SIGKILL, as a crash would. */
  async killNode(k) {
    await this.#end(k, 'SIGKILL');
  }
  async stop() {
    await Promise.all(this.processes.map((_, k) => this.#end(k, 'SIGTERM')));
  }
  async kill() {
    await Promise.all(this.processes.map((_, k) => this.#end(k, 'SIGKILL')));
  }
  async restart() {
    await this.stop();
    await this.start();
  }
  async destroy() {
    await this.stop();
    rmSync(this.stateDir, { recursive: true, force: true });
  }
}

function run(bin, args) {
  return new Promise((ok, fail) => {
    const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (c) => (out += c));
    child.stderr.on('data', (c) => (out += c));
    child.on('exit', (code) => (code === 0 ? ok(out) : fail(new Error(`${bin} ${args.join(' ')} failed (${code}):\n${out}`))));
  });
}

/**
 * An agent that fetches the node's root key and keeps every check on: certificates are
 * verified against that key and query replies against the node keys (verifyQuerySignatures).
 */
export async function makeAgent(node, identity, options = {}) {
  return HttpAgent.create({
    host: node.url,
    identity,
    shouldFetchRootKey: true,
    verifyQuerySignatures: true,
    ...options,
  });
}

/**
 * The management canister as an actor. As the interface spec asks, calls are addressed to the
 * canister named in the argument (`canister_id`); creation, which names none, is addressed to
 * the first canister id of the subnet's range (any id in the range will do).
 */
export function managementCanister(agent, creationEffectiveId = canisterIdFromIndex(0)) {
  return Actor.createActor(managementIdl, {
    agent,
    canisterId: MANAGEMENT_ID,
    effectiveCanisterId: creationEffectiveId,
    callTransform: (_method, args) => effectiveIdOf(args, creationEffectiveId),
    queryTransform: (_method, args) => effectiveIdOf(args, creationEffectiveId),
  });
}

function effectiveIdOf(args, fallback) {
  const first = args[0];
  const id = first && typeof first === 'object' && 'canister_id' in first ? first.canister_id : fallback;
  return { effectiveCanisterId: Principal.from(id) };
}

/** Creates a canister with cycles through provisional_create_canister_with_cycles. */
export async function createCanister(agent, { cycles = CANISTER_CYCLES, controllers } = {}) {
  const settings = {
    controllers: controllers ? [controllers] : [],
    compute_allocation: [],
    memory_allocation: [],
    freezing_threshold: [],
    reserved_cycles_limit: [],
    wasm_memory_limit: [],
  };
  const { canister_id } = await managementCanister(agent).provisional_create_canister_with_cycles({
    amount: [cycles],
    settings: controllers ? [settings] : [],
    specified_id: [],
    sender_canister_version: [],
  });
  return canister_id;
}

/** Installs (mode "install", "reinstall" or "upgrade") `wasm` with a Candid-encoded `arg`. */
export async function installCode(agent, canisterId, wasm, { mode = 'install', arg = IDL.encode([], []), keepMemory = false } = {}) {
  const ic = managementCanister(agent);
  let installMode;
  if (mode === 'upgrade') {
    installMode = {
      upgrade: [{ skip_pre_upgrade: [], wasm_memory_persistence: keepMemory ? [{ keep: null }] : [] }],
    };
  } else {
    installMode = { [mode]: null };
  }
  await ic.install_code({
    mode: installMode,
    canister_id: canisterId,
    wasm_module: wasm,
    arg: new Uint8Array(arg),
    sender_canister_version: [],
  });
}

/** Creates a canister and installs `name` from target/canisters/ into it; returns an actor. */
export async function deploy(agent, name, idlFactory, { arg, cycles } = {}) {
  const canisterId = await createCanister(agent, { cycles });
  await installCode(agent, canisterId, canisterWasm(name), { arg });
  return { canisterId, actor: Actor.createActor(idlFactory, { agent, canisterId }) };
}

/**
 * The reject inside an error thrown by @dfinity/agent: `{ rejectCode, errorCode, message,
 * certified }`, or null if the error is not a reject (a transport or protocol failure).
 */
export function rejectOf(err) {
  const code = err?.cause?.code;
  if (
    code instanceof CertifiedRejectErrorCode ||
    code instanceof UncertifiedRejectErrorCode ||
    code instanceof UncertifiedRejectUpdateErrorCode
  ) {
    return {
      rejectCode: Number(code.rejectCode),
      errorCode: code.rejectErrorCode,
      message: code.rejectMessage,
      certified: code instanceof CertifiedRejectErrorCode,
    };
  }
  return null;
}

/** Awaits `promise`, which must fail with a reject matching `expected` (fields optional). */
export async function expectReject(promise, { rejectCode, errorCode, messageIncludes } = {}) {
  let err = null;
  try {
    await promise;
  } catch (e) {
    err = e;
  }
  assert.ok(err, 'expected a reject, but the call succeeded');
  const reject = rejectOf(err);
  assert.ok(reject, `expected a reject, got: ${err?.stack ?? err}`);
  if (rejectCode !== undefined) assert.equal(reject.rejectCode, rejectCode, reject.message);
  if (errorCode !== undefined) assert.equal(reject.errorCode, errorCode, reject.message);
  if (messageIncludes !== undefined) {
    assert.ok(reject.message.includes(messageIncludes), `reject message "${reject.message}" lacks "${messageIncludes}"`);
  }
  return reject;
}

/** Waits until `check()` is truthy, polling every `intervalMs`; fails after `timeoutMs`. */
export async function eventually(check, { timeoutMs = 30_000, intervalMs = 250, what = 'condition' } = {}) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    last = await check();
    if (last) return last;
    await sleep(intervalMs);
  }
  assert.fail(`timed out after ${timeoutMs} ms waiting for ${what} (last value: ${last})`);
}

/** Canister id with the given index (big-endian u64 ‖ 0x01 0x01, as the spec defines). */
export function canisterIdFromIndex(index) {
  const bytes = new Uint8Array(10);
  new DataView(bytes.buffer).setBigUint64(0, BigInt(index));
  bytes[8] = 1;
  bytes[9] = 1;
  return Principal.fromUint8Array(bytes);
}

/** Index of a canister id (inverse of canisterIdFromIndex). */
export function canisterIndex(principal) {
  const bytes = principal.toUint8Array();
  assert.equal(bytes.length, 10, `${principal.toText()} is not a canister id`);
  return new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0);
}

export { Cbor, Principal, IDL, Actor };
