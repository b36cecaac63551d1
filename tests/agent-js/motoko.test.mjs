// Motoko canisters (compiled by the `motoko` npm package to wasm64 with enhanced orthogonal
// persistence) through @dfinity/agent, and a Motoko canister calling Rust ones.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { IDL } from '@dfinity/candid';
import { Ed25519KeyIdentity } from '@dfinity/identity';

import { TabnetNode, makeAgent, deploy, installCode, canisterWasm, expectReject } from './helpers.mjs';
import { counterIdl, trapIdl, motokoCounterIdl, motokoCallerIdl } from './idl.mjs';

const owner = Ed25519KeyIdentity.generate();
let node;
let agent;
let moCounter;
let moCounterId;

before(async () => {
  node = await TabnetNode.start();
  agent = await makeAgent(node, owner);
  ({ actor: moCounter, canisterId: moCounterId } = await deploy(agent, 'motoko_counter', motokoCounterIdl));
});

after(async () => {
  await node?.destroy();
});

test('the Motoko module is wasm64 (its memory has the memory64 limits flag)', () => {
  const wasm = canisterWasm('motoko_counter');
  assert.deepEqual([...wasm.slice(0, 8)], [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00]);
  const leb = (at) => {
    let value = 0;
    let shift = 0;
    for (;;) {
      const byte = wasm[at.pos++];
      value += (byte & 0x7f) * 2 ** shift;
      shift += 7;
      if (!(byte & 0x80)) return value;
    }
  };
  const at = { pos: 8 };
  let memoryFlags = null;
  while (at.pos < wasm.length) {
    const id = wasm[at.pos++];
    const size = leb(at);
    const end = at.pos + size;
    if (id === 5) {
      assert.equal(leb(at), 1, 'one memory');
      memoryFlags = wasm[at.pos];
    }
    at.pos = end;
  }
  assert.notEqual(memoryFlags, null, 'the module defines a memory');
  assert.ok(memoryFlags & 0x04, `memory limits flags 0x${memoryFlags.toString(16)} lack memory64`);
});

test('motoko_counter answers updates and queries', async () => {
  assert.equal(await moCounter.get(), 0n);
  assert.equal(await moCounter.inc(), 1n);
  assert.equal(await moCounter.inc(), 2n);
  assert.equal(await moCounter.get(), 2n);
  assert.equal(await moCounter.transient_calls(), 2n);
  assert.equal((await moCounter.whoami()).toText(), owner.getPrincipal().toText());
  assert.equal(await moCounter.self_id(), moCounterId.toText());
});

test('an upgrade that keeps main memory keeps the persistent var, resets the transient one', async () => {
  await installCode(agent, moCounterId, canisterWasm('motoko_counter'), { mode: 'upgrade', keepMemory: true });
  assert.equal(await moCounter.get(), 2n);
  assert.equal(await moCounter.transient_calls(), 0n);
  assert.equal(await moCounter.inc(), 3n);
});

test('an upgrade without wasm_memory_persistence = keep is refused and changes nothing', async () => {
  await expectReject(
    installCode(agent, moCounterId, canisterWasm('motoko_counter'), { mode: 'upgrade' }),
    // The replica's words: "Missing upgrade option: Enhanced orthogonal persistence requires
    // the `wasm_memory_persistence` upgrade option."
    { rejectCode: 5, errorCode: 'IC0504', messageIncludes: 'wasm_memory_persistence' },
  );
  assert.equal(await moCounter.get(), 3n);
});

test('motoko_caller calls the Rust counter, the Motoko counter, and catches a Rust trap', async () => {
  const { actor: moCaller } = await deploy(agent, 'motoko_caller', motokoCallerIdl);
  const { actor: rustCounter, canisterId: rustCounterId } = await deploy(agent, 'counter', counterIdl, {
    arg: IDL.encode([IDL.Opt(IDL.Nat64)], [[41n]]),
  });
  assert.equal(await moCaller.call_inc(rustCounterId), 42n);
  assert.equal(await moCaller.call_get(rustCounterId), 42n);
  assert.equal(await rustCounter.get(), 42n);

  const before = await moCounter.get();
  assert.equal(await moCaller.call_inc(moCounterId), before + 1n);

  const { canisterId: trapId } = await deploy(agent, 'trap', trapIdl);
  const caught = await moCaller.call_trap(trapId);
  assert.match(caught, /^#canister_error: .*boom: this canister trapped on purpose/);
});
