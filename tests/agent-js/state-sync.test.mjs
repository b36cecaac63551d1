// State sync: a node of a 4-process subnet is down while the others go on for several
// catch-up intervals and drop the blocks it missed; started again, it fetches the state of the
// latest catch-up package from its peers (checked chunk by chunk against the package), resumes
// from there, and serves the canister's current state.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

import { Actor, HttpAgent } from '@dfinity/agent';
import { IDL } from '@dfinity/candid';
import { Ed25519KeyIdentity } from '@dfinity/identity';

import { TabnetSubnet, createCanister, installCode, canisterWasm, eventually } from './helpers.mjs';
import { counterIdl, counterInitArg } from './idl.mjs';

const INTERVAL = 10;
let subnet;
const owner = Ed25519KeyIdentity.generate();
let canisterId;

async function counterAt(k) {
  const agent = await HttpAgent.create({ host: subnet.nodeUrl(k), identity: owner, shouldFetchRootKey: true, verifyQuerySignatures: true });
  return Actor.createActor(counterIdl, { agent, canisterId });
}

async function certifiedHeight(k) {
  const text = await (await fetch(`${subnet.nodeUrl(k)}/_/metrics`)).text();
  return Number(/certified height: (\d+)/.exec(text)[1]);
}

before(async () => {
  subnet = await TabnetSubnet.start(4, undefined, [], 0, ['--dkg-interval', String(INTERVAL)]);
});

after(async () => {
  await subnet?.destroy();
});

test('a node down for many catch-up intervals comes back by state sync', { timeout: 120_000 }, async () => {
  const agent = await HttpAgent.create({ host: subnet.nodeUrl(0), identity: owner, shouldFetchRootKey: true });
  canisterId = await createCanister(agent);
  await installCode(agent, canisterId, canisterWasm('counter'), { arg: counterInitArg(IDL, 100) });
  const at0 = await counterAt(0);
  assert.equal(await at0.inc(), 101n);

  await subnet.killNode(3);
  const down = await certifiedHeight(0);
  // Updates while it is down, and enough heights that the others purge what it missed.
  for (let i = 0; i < 5; i++) await at0.inc();
  await eventually(async () => (await certifiedHeight(0)) > down + 4 * INTERVAL, { what: 'four intervals pass', timeoutMs: 60_000 });
  assert.equal(await at0.inc(), 107n);

  await subnet.startNode(3);
  await eventually(async () => subnet.logs[3].includes('state sync brought this node to height'), { what: 'node 3 syncs state', timeoutMs: 60_000 });
  const at3 = await counterAt(3);
  await eventually(async () => (await at3.get()) === 107n, { what: 'node 3 serves the current counter', timeoutMs: 60_000 });
  assert.equal(await at3.inc(), 108n, 'and takes calls again');
  for (const k of [0, 1, 2]) {
    const c = await counterAt(k);
    await eventually(async () => (await c.get()) === 108n, { what: `node ${k} agrees` });
  }
  // Every node keeps its latest checkpoints on disk, to serve peers that sync.
  const dir = join(subnet.stateDir, 'node-0', 'checkpoints');
  assert.ok(existsSync(dir) && readdirSync(dir).length >= 1, 'checkpoints kept');
});
