// Canisters that misbehave without bound: the node must stop them at its limits with a reject,
// roll their state back, and go on serving. These can take a while (a whole instruction budget
// is burnt per call), hence the long timeouts.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { Ed25519KeyIdentity } from '@dfinity/identity';

import { TabnetNode, makeAgent, deploy, expectReject } from './helpers.mjs';
import { loopIdl, membombIdl } from './idl.mjs';

const LONG = { timeout: 600_000 };
let node;
let agent;
let loop;
let bomb;

before(async () => {
  node = await TabnetNode.start();
  agent = await makeAgent(node, Ed25519KeyIdentity.generate());
  ({ actor: loop } = await deploy(agent, 'loop', loopIdl));
  ({ actor: bomb } = await deploy(agent, 'membomb', membombIdl));
});

after(async () => {
  await node?.destroy();
});

test('spin counts instructions', async () => {
  const few = await loop.spin(1_000n);
  const many = await loop.spin(1_000_000n);
  assert.ok(few > 1_000n, `spin(1000) used ${few} instructions`);
  // At least one instruction per loop iteration.
  assert.ok(many > few + 999_000n, `spin(1e6) used ${many}, spin(1e3) ${few}`);
});

test('an update that loops forever hits the instruction limit (IC0522)', LONG, async () => {
  await expectReject(loop.forever(), { rejectCode: 5, errorCode: 'IC0522' });
  assert.ok((await loop.spin(10n)) > 0n);
});

test('a query that loops forever hits the instruction limit (IC0522)', LONG, async () => {
  await expectReject(loop.forever_query(), { rejectCode: 5, errorCode: 'IC0522' });
  assert.ok((await loop.spin(10n)) > 0n);
});

test('unbounded heap growth traps and is rolled back', LONG, async () => {
  const before = await bomb.heap_pages();
  await expectReject(bomb.grow(), { rejectCode: 5 });
  assert.equal(await bomb.heap_pages(), before);
});

test('unbounded stable memory growth traps and is rolled back', LONG, async () => {
  const before = await bomb.stable_pages();
  await expectReject(bomb.grow_stable(), { rejectCode: 5 });
  assert.equal(await bomb.stable_pages(), before);
});
