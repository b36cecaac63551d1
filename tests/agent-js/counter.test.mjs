// The everyday flow through unmodified @dfinity/agent, with every check on: fetch the root key,
// create a canister through the management canister, install the Rust `counter`, call and
// query it, upgrade it, see rejects with the right codes, and restart the node on its state.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { Actor, Certificate, LookupPathStatus } from '@dfinity/agent';
import { IDL } from '@dfinity/candid';
import { Ed25519KeyIdentity, ECDSAKeyIdentity, DelegationChain, DelegationIdentity } from '@dfinity/identity';
import { Secp256k1KeyIdentity } from '@dfinity/identity-secp256k1';

import {
  TabnetNode,
  makeAgent,
  createCanister,
  installCode,
  canisterWasm,
  managementCanister,
  expectReject,
  canisterIdFromIndex,
  canisterIndex,
} from './helpers.mjs';
import { counterIdl, counterInitArg, counterWithMissingMethodsIdl } from './idl.mjs';

let node;
const owner = Ed25519KeyIdentity.generate();
let agent;
let canisterId;
let counter;

before(async () => {
  node = await TabnetNode.start();
  agent = await makeAgent(node, owner);
});

after(async () => {
  await node?.destroy();
});

test('the status endpoint gives a root key and the agent fetched it', async () => {
  assert.ok(agent.rootKey instanceof Uint8Array);
  // DER-wrapped BLS12-381 G2 key: 37-byte prefix + 96-byte key.
  assert.equal(agent.rootKey.length, 133);
  const status = await agent.status();
  assert.equal(status.replica_health_status, 'healthy');
});

test('create a canister and install counter with a start value', async () => {
  canisterId = await createCanister(agent);
  await installCode(agent, canisterId, canisterWasm('counter'), { arg: counterInitArg(IDL, 10) });
  counter = Actor.createActor(counterIdl, { agent, canisterId });
  assert.equal(await counter.get(), 10n);
});

test('update calls change state; queries (signature-verified) read it', async () => {
  assert.equal(await counter.inc(), 11n);
  assert.equal(await counter.inc(), 12n);
  assert.equal(await counter.get(), 12n);
});

test('the caller principal is the identity of the agent', async () => {
  assert.equal((await counter.whoami()).toText(), owner.getPrincipal().toText());
});

test('canister_status shows the module hash and the controller', async () => {
  const status = await managementCanister(agent).canister_status({ canister_id: canisterId });
  assert.ok('running' in status.status);
  assert.equal(status.module_hash[0]?.length, 32);
  assert.deepEqual(
    status.settings.controllers.map((p) => p.toText()),
    [owner.getPrincipal().toText()],
  );
  assert.ok(status.cycles > 0n);
});

test('certified data: the query certificate verifies and holds the count', async () => {
  const count = await counter.set_certified();
  const reply = await counter.get_certified();
  assert.equal(reply.count, count);
  assert.equal(reply.certificate.length, 1, 'a non-replicated query must get a data certificate');
  const cert = await Certificate.create({
    certificate: new Uint8Array(reply.certificate[0]),
    rootKey: agent.rootKey,
    canisterId,
  });
  const found = cert.lookup_path(['canister', canisterId.toUint8Array(), 'certified_data']);
  assert.equal(found.status, LookupPathStatus.Found);
  const expected = new Uint8Array(8);
  new DataView(expected.buffer).setBigUint64(0, count);
  assert.deepEqual(new Uint8Array(found.value), expected);
});

test('upgrade keeps the count (pre_upgrade/post_upgrade through stable memory)', async () => {
  const before = await counter.get();
  await installCode(agent, canisterId, canisterWasm('counter'), { mode: 'upgrade' });
  assert.equal(await counter.get(), before);
  assert.equal(await counter.inc(), before + 1n);
});

test('upgrade with an argument replaces the count', async () => {
  await installCode(agent, canisterId, canisterWasm('counter'), { mode: 'upgrade', arg: counterInitArg(IDL, 500) });
  assert.equal(await counter.get(), 500n);
});

test('reinstall wipes the state', async () => {
  await installCode(agent, canisterId, canisterWasm('counter'), { mode: 'reinstall' });
  assert.equal(await counter.get(), 0n);
  assert.equal(await counter.inc(), 1n);
});

test('installing into a canister that already has code is rejected', async () => {
  await expectReject(installCode(agent, canisterId, canisterWasm('counter')), { rejectCode: 5 });
});

test('an unknown update method is rejected with IC0536', async () => {
  const wrong = Actor.createActor(counterWithMissingMethodsIdl, { agent, canisterId });
  await expectReject(wrong.no_such_update(), { rejectCode: 5, errorCode: 'IC0536' });
});

test('an unknown query method is rejected with IC0536', async () => {
  const wrong = Actor.createActor(counterWithMissingMethodsIdl, { agent, canisterId });
  await expectReject(wrong.no_such_query(), { rejectCode: 5, errorCode: 'IC0536' });
});

test('installing invalid wasm is rejected and the canister keeps its code', async () => {
  const before = await counter.get();
  await expectReject(
    installCode(agent, canisterId, canisterWasm('invalid'), { mode: 'upgrade' }),
    { rejectCode: 5, errorCode: 'IC0505' },
  );
  assert.equal(await counter.get(), before);
});

test('a non-controller may not install code (IC0512) nor read canister_status', async () => {
  const stranger = await makeAgent(node, Ed25519KeyIdentity.generate());
  await expectReject(
    installCode(stranger, canisterId, canisterWasm('counter'), { mode: 'reinstall' }),
    { rejectCode: 5, errorCode: 'IC0512' },
  );
  await expectReject(managementCanister(stranger).canister_status({ canister_id: canisterId }), {
    rejectCode: 5,
    errorCode: 'IC0512',
  });
  // Anyone may call the canister itself.
  const theirs = Actor.createActor(counterIdl, { agent: stranger, canisterId });
  assert.ok((await theirs.get()) >= 1n);
});

test('a second controller added by update_settings may install', async () => {
  const other = Ed25519KeyIdentity.generate();
  const id = await createCanister(agent);
  await managementCanister(agent).update_settings({
    canister_id: id,
    settings: {
      controllers: [[owner.getPrincipal(), other.getPrincipal()]],
      compute_allocation: [],
      memory_allocation: [],
      freezing_threshold: [],
      reserved_cycles_limit: [],
      wasm_memory_limit: [],
    },
    sender_canister_version: [],
  });
  const otherAgent = await makeAgent(node, other);
  await installCode(otherAgent, id, canisterWasm('counter'), { arg: counterInitArg(IDL, 3) });
  assert.equal(await Actor.createActor(counterIdl, { agent: otherAgent, canisterId: id }).get(), 3n);
});

test('calls to a canister that does not exist are rejected with IC0301', async () => {
  const missing = canisterIdFromIndex(canisterIndex(canisterId) + 1000n);
  const ghost = Actor.createActor(counterIdl, { agent, canisterId: missing });
  await expectReject(ghost.get(), { rejectCode: 3, errorCode: 'IC0301' });
  await expectReject(ghost.inc(), { rejectCode: 3, errorCode: 'IC0301' });
});

test('every key type signs requests the node accepts: Ed25519, secp256k1, P-256, delegation', async () => {
  const identities = {
    ed25519: Ed25519KeyIdentity.generate(),
    secp256k1: Secp256k1KeyIdentity.generate(),
    p256: await ECDSAKeyIdentity.generate(),
  };
  const root = Ed25519KeyIdentity.generate();
  const session = Ed25519KeyIdentity.generate();
  const chain = await DelegationChain.create(root, session.getPublicKey(), new Date(Date.now() + 10 * 60 * 1000));
  identities.delegation = DelegationIdentity.fromDelegation(session, chain);

  for (const [kind, identity] of Object.entries(identities)) {
    const a = await makeAgent(node, identity);
    const c = Actor.createActor(counterIdl, { agent: a, canisterId });
    assert.equal((await c.whoami()).toText(), identity.getPrincipal().toText(), `${kind} query`);
    const before = await c.get();
    assert.equal(await c.inc(), before + 1n, `${kind} update`);
  }
  // A delegation acts for the key that signed it.
  assert.equal(identities.delegation.getPrincipal().toText(), root.getPrincipal().toText());
});

test('restart on the same state directory keeps canisters and their state', async () => {
  const count = await counter.inc();
  await node.restart();
  const again = await makeAgent(node, owner);
  const c = Actor.createActor(counterIdl, { agent: again, canisterId });
  assert.equal(await c.get(), count);
  assert.equal(await c.inc(), count + 1n);
  const status = await managementCanister(again).canister_status({ canister_id: canisterId });
  assert.equal(status.settings.controllers[0].toText(), owner.getPrincipal().toText());
  // Fresh canisters after a restart get new ids, not ones already taken.
  const next = await createCanister(again);
  assert.notEqual(next.toText(), canisterId.toText());
});

test('a node killed with SIGKILL under load keeps every update it answered', async () => {
  // The load's agent gives up at once when the node is gone (no retries, no polling).
  const gone = new AbortController();
  const loadAgent = await makeAgent(node, owner, {
    retryTimes: 0,
    fetch: (url, init) => fetch(url, { ...init, signal: gone.signal }),
  });
  const load = Actor.createActor(counterIdl, { agent: loadAgent, canisterId });
  let highest = 0n;
  let answered = 0;
  const callers = Array.from({ length: 8 }, async () => {
    while (!gone.signal.aborted) {
      try {
        const value = await load.inc();
        answered += 1;
        if (value > highest) highest = value;
      } catch {
        return; // the node is gone
      }
    }
  });
  while (answered < 40) await new Promise((r) => setTimeout(r, 5));
  await node.kill();
  gone.abort();
  await Promise.all(callers);
  await node.start();
  const again = await makeAgent(node, owner);
  const c = Actor.createActor(counterIdl, { agent: again, canisterId });
  const count = await c.get();
  // Every certified reply survived; calls in flight at the crash may or may not have.
  assert.ok(count >= highest, `count ${count} after the crash, but ${highest} was answered`);
  assert.ok(count <= highest + 8n, `count ${count}: at most the 8 calls in flight beyond ${highest}`);
  // The node takes calls again. (A call that was in flight may still land after the restart —
  // in a subnet it may sit in a block that other nodes finalize later — so not exactly count + 1.)
  const next = await c.inc();
  assert.ok(next > count && next <= highest + 9n, `inc gave ${next} after ${count}`);
});
