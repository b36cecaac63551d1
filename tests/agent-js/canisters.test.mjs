// The Rust test canisters (canisters/) through @dfinity/agent: traps roll back, rejects carry
// the right codes, inter-canister calls and cycles work, stable memory survives upgrades and
// timers fire.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';

import { Actor } from '@dfinity/agent';
import { IDL } from '@dfinity/candid';
import { Ed25519KeyIdentity } from '@dfinity/identity';

import {
  TabnetNode,
  makeAgent,
  deploy,
  installCode,
  canisterWasm,
  managementCanister,
  expectReject,
  eventually,
  canisterIdFromIndex,
  canisterIndex,
  CANISTER_CYCLES,
} from './helpers.mjs';
import { counterIdl, callerIdl, trapIdl, stableIdl, timerIdl } from './idl.mjs';

const owner = Ed25519KeyIdentity.generate();
let node;
let agent;

before(async () => {
  node = await TabnetNode.start();
  agent = await makeAgent(node, owner);
});

after(async () => {
  await node?.destroy();
});

const EMPTY_ARG = new Uint8Array(IDL.encode([], []));
const decodeNat64 = (bytes) => IDL.decode([IDL.Nat64], new Uint8Array(bytes))[0];

describe('trap', () => {
  let trap;
  before(async () => {
    ({ actor: trap } = await deploy(agent, 'trap', trapIdl));
  });

  test('ic0.trap in an update is reject 5 / IC0503 with the message', async () => {
    await expectReject(trap.boom(), { rejectCode: 5, errorCode: 'IC0503', messageIncludes: 'boom: this canister trapped on purpose' });
  });

  test('ic0.trap in a query is reject 5 / IC0503', async () => {
    await expectReject(trap.boom_query(), { rejectCode: 5, errorCode: 'IC0503', messageIncludes: 'boom_query' });
  });

  test('a Rust panic is a trap carrying the panic message', async () => {
    await expectReject(trap.panic(), { rejectCode: 5, messageIncludes: 'panicked on purpose' });
  });

  test('a trap rolls back every write of the message', async () => {
    const before = await trap.get();
    assert.equal(await trap.maybe(false), before + 1n);
    await expectReject(trap.maybe(true), { rejectCode: 5, errorCode: 'IC0503', messageIncludes: `write number ${before + 2n}` });
    assert.equal(await trap.get(), before + 1n);
    assert.equal(await trap.maybe(false), before + 2n);
  });

  test('msg_reject is reject 4 / IC0406 with the canister message', async () => {
    await expectReject(trap.reject('not today'), { rejectCode: 4, errorCode: 'IC0406', messageIncludes: 'not today' });
  });
});

describe('caller', () => {
  let caller;
  let callerId;
  let counter;
  let counterId;
  let trapId;
  before(async () => {
    ({ actor: caller, canisterId: callerId } = await deploy(agent, 'caller', callerIdl));
    ({ actor: counter, canisterId: counterId } = await deploy(agent, 'counter', counterIdl));
    ({ canisterId: trapId } = await deploy(agent, 'trap', trapIdl));
  });

  test('calls an update method of another canister', async () => {
    const before = await counter.get();
    assert.deepEqual(await caller.call_inc(counterId), { Ok: before + 1n });
    assert.equal(await counter.get(), before + 1n);
  });

  test('calls a query method of another canister', async () => {
    assert.deepEqual(await caller.call_get(counterId), { Ok: await counter.get() });
  });

  test('a trapping callee comes back as reject 5 and the caller goes on', async () => {
    const reply = await caller.call_trap(trapId);
    assert.ok('Err' in reply, JSON.stringify(reply, (_, v) => (typeof v === 'bigint' ? String(v) : v)));
    assert.equal(reply.Err.reject_code, 5);
    assert.match(reply.Err.message, /boom: this canister trapped on purpose/);
  });

  test('a call to a missing method is reject 5; to a missing canister reject 3', async () => {
    const noMethod = await caller.call_raw(counterId, 'no_such_method', EMPTY_ARG, 0n);
    assert.equal(noMethod.Err?.reject_code, 5);
    const missing = canisterIdFromIndex(canisterIndex(counterId) + 1000n);
    const noCanister = await caller.call_raw(missing, 'inc', EMPTY_ARG, 0n);
    assert.equal(noCanister.Err?.reject_code, 3);
  });

  test('a best-effort call with a timeout gets its reply', async () => {
    const reply = await caller.call_bounded(counterId, 'get', EMPTY_ARG, 30);
    assert.ok('Ok' in reply, JSON.stringify(reply.Err));
    assert.equal(decodeNat64(reply.Ok), await counter.get());
  });

  test('cycles sent with a call: the callee keeps what it accepts, the rest is refunded', async () => {
    const { actor: other, canisterId: otherId } = await deploy(agent, 'caller', callerIdl);
    const before = await other.balance();
    const reply = await caller.send_cycles(otherId, 1_000_000_000n, 400_000_000n);
    assert.deepEqual(reply, { Ok: { accepted: 400_000_000n, refunded: 600_000_000n } });
    const after = await other.balance();
    // The callee also paid for running `receive`, which is far less than 100M cycles.
    assert.ok(after > before + 300_000_000n, `balance went from ${before} to ${after}`);
  });

  test('raw_rand from the management canister gives 32 fresh bytes each time', async () => {
    const a = await caller.raw_rand();
    const b = await caller.raw_rand();
    assert.equal(a.Ok.length, 32);
    assert.equal(b.Ok.length, 32);
    assert.notDeepEqual(a.Ok, b.Ok);
  });

  test('create_canister from a canister, paid with attached cycles', async () => {
    const reply = await caller.create_canister(1_000_000_000_000n);
    assert.ok('Ok' in reply, JSON.stringify(reply.Err));
    const child = reply.Ok;
    // The user who asked is a controller too, so the agent can install into the new canister.
    const status = await managementCanister(agent).canister_status({ canister_id: child });
    const controllers = status.settings.controllers.map((p) => p.toText()).sort();
    assert.deepEqual(controllers, [callerId.toText(), owner.getPrincipal().toText()].sort());
    assert.ok(status.cycles > 0n && status.cycles <= 1_000_000_000_000n);
    await installCode(agent, child, canisterWasm('counter'));
    assert.equal(await Actor.createActor(counterIdl, { agent, canisterId: child }).inc(), 1n);
    // The caller paid: its balance is below what it started with minus the cycles it sent.
    assert.ok((await caller.balance()) < CANISTER_CYCLES - 1_000_000_000_000n);
  });
});

describe('stable', () => {
  let store;
  let storeId;
  before(async () => {
    ({ actor: store, canisterId: storeId } = await deploy(agent, 'stable', stableIdl));
  });

  test('stable entries survive an upgrade; the heap value does not', async () => {
    assert.deepEqual(await store.put('alpha', 'one'), []);
    assert.deepEqual(await store.put('beta', 'two'), []);
    assert.deepEqual(await store.put('alpha', 'uno'), ['one']);
    await store.set_heap('on the heap');
    assert.equal(await store.get_heap(), 'on the heap');
    assert.ok((await store.stable_pages()) > 0n);
    assert.deepEqual(await store.upgrades(), [0n, 0n]);

    await installCode(agent, storeId, canisterWasm('stable'), { mode: 'upgrade' });

    assert.deepEqual(await store.get('alpha'), ['uno']);
    assert.deepEqual(await store.get('beta'), ['two']);
    assert.deepEqual(await store.get('gamma'), []);
    assert.equal(await store.len(), 2n);
    assert.equal(await store.get_heap(), '');
    // pre_upgrade ran in the old code and post_upgrade in the new; both writes are kept.
    assert.deepEqual(await store.upgrades(), [1n, 1n]);
  });

  test('reinstall clears stable memory', async () => {
    await installCode(agent, storeId, canisterWasm('stable'), { mode: 'reinstall' });
    assert.equal(await store.len(), 0n);
    assert.deepEqual(await store.upgrades(), [0n, 0n]);
  });
});

describe('timer', () => {
  let timer;
  before(async () => {
    ({ actor: timer } = await deploy(agent, 'timer', timerIdl));
  });

  test('the timer set in init fires', async () => {
    await eventually(async () => (await timer.count()) >= 1n, { what: 'the init timer' });
  });

  test('a timer set in an update fires', async () => {
    const before = await timer.count();
    await timer.schedule(100n);
    await eventually(async () => (await timer.count()) > before, { what: 'the scheduled timer' });
  });

  test('an interval timer fires repeatedly', async () => {
    const before = await timer.count();
    await timer.start_interval(300n);
    await eventually(async () => (await timer.count()) >= before + 3n, { what: 'three interval firings' });
  });

  test('the heartbeat runs', async () => {
    const first = await eventually(
      async () => {
        const beats = await timer.beats();
        return beats >= 1n ? beats : null;
      },
      { what: 'a heartbeat' },
    );
    await eventually(async () => (await timer.beats()) > first, { what: 'another heartbeat' });
  });

  test('canister time is close to the wall clock', async () => {
    const nowNs = await timer.now();
    const wallNs = BigInt(Date.now()) * 1_000_000n;
    const skew = nowNs > wallNs ? nowNs - wallNs : wallNs - nowNs;
    assert.ok(skew < 60n * 1_000_000_000n, `canister time is ${skew} ns off`);
  });
});
