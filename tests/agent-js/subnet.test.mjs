// A subnet of four `tabnet node` processes: any node takes calls and answers from the same
// certified state under the subnet's one key; one node killed (f = 1) and the rest go on; two
// killed and updates stop, until they come back and catch up.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { Actor, HttpAgent } from '@dfinity/agent';
import { IDL } from '@dfinity/candid';
import { Ed25519KeyIdentity } from '@dfinity/identity';

import { TabnetSubnet, createCanister, installCode, canisterWasm, eventually } from './helpers.mjs';
import { counterIdl, counterInitArg } from './idl.mjs';

let subnet;
const owner = Ed25519KeyIdentity.generate();
let canisterId;

/** An agent for node `k`, with every check on (root key from that node). */
function agentAt(k) {
  return HttpAgent.create({ host: subnet.nodeUrl(k), identity: owner, shouldFetchRootKey: true, verifyQuerySignatures: true });
}

/** The counter through node `k`. */
async function counterAt(k) {
  const agent = await agentAt(k);
  return { agent, counter: Actor.createActor(counterIdl, { agent, canisterId }) };
}

async function certifiedHeight(k) {
  const text = await (await fetch(`${subnet.nodeUrl(k)}/_/metrics`)).text();
  return Number(/certified height: (\d+)/.exec(text)[1]);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

before(async () => {
  subnet = await TabnetSubnet.start(4);
});

after(async () => {
  await subnet?.destroy();
});

test('every node has the same root key, and a canister made through one node is served by all', async () => {
  const agents = await Promise.all([0, 1, 2, 3].map((k) => HttpAgent.create({ host: subnet.nodeUrl(k), shouldFetchRootKey: true })));
  const keys = agents.map((a) => Buffer.from(a.rootKey).toString('hex'));
  assert.equal(new Set(keys).size, 1, 'one subnet key');
  const agent = await agentAt(1);
  canisterId = await createCanister(agent);
  await installCode(agent, canisterId, canisterWasm('counter'), { arg: counterInitArg(IDL, 5) });
  for (const k of [0, 1, 2, 3]) {
    const { counter } = await counterAt(k);
    await eventually(async () => (await counter.get()) === 5n, { what: `node ${k} serves the installed counter` });
  }
});

test('updates through different nodes all take effect, in one order', async () => {
  const counters = await Promise.all([0, 1, 2, 3].map(async (k) => (await counterAt(k)).counter));
  const results = await Promise.all(counters.map((c) => c.inc()));
  assert.deepEqual([...results].sort(), [6n, 7n, 8n, 9n], 'each update saw the ones before it');
  for (const c of counters) {
    await eventually(async () => (await c.get()) === 9n, { what: 'every node at 9' });
  }
});

test('with one node killed (f = 1) the others go on; restarted, it catches up', async () => {
  await subnet.killNode(3);
  const { counter } = await counterAt(0);
  assert.equal(await counter.inc(), 10n);
  assert.equal(await counter.inc(), 11n);
  await subnet.startNode(3);
  const at3 = (await counterAt(3)).counter;
  await eventually(async () => (await at3.get()) === 11n, { what: 'the restarted node catches up' });
  assert.equal(await at3.inc(), 12n, 'and takes calls again');
});

test('with two nodes killed (more than f) updates stop; they resume when the nodes return', async () => {
  await subnet.killNode(2);
  await subnet.killNode(3);
  const { counter } = await counterAt(0);
  const stuck = await certifiedHeight(0);
  const pending = counter.inc();
  let settled = false;
  pending.then(() => (settled = true), () => (settled = true));
  await sleep(3_000);
  assert.equal(settled, false, 'no update completes without n − f nodes');
  assert.ok((await certifiedHeight(0)) <= stuck + 1, 'and no new heights are certified');
  await Promise.all([subnet.startNode(2), subnet.startNode(3)]);
  assert.equal(await pending, 13n, 'the waiting update completes once enough nodes are back');
  for (const k of [0, 1, 2, 3]) {
    const { counter: c } = await counterAt(k);
    await eventually(async () => (await c.get()) === 13n, { what: `node ${k} agrees` });
  }
});

test('every node killed at once under load, again and again: the subnet comes back each time with every answered update', async () => {
  // The nodes die a few milliseconds apart, mid-round, at different heights: those behind must
  // catch up from those ahead, which hold the finalized blocks (and a finalization proving
  // them) only on disk.
  for (let round = 0; round < 4; round++) {
    const gone = new AbortController();
    const callers = await Promise.all(
      [0, 1, 2, 3].map(async (k) => {
        const agent = await HttpAgent.create({
          host: subnet.nodeUrl(k),
          identity: owner,
          shouldFetchRootKey: true,
          retryTimes: 0,
          fetch: (url, init) => fetch(url, { ...init, signal: gone.signal }),
        });
        return Actor.createActor(counterIdl, { agent, canisterId });
      }),
    );
    let highest = 0n;
    let answered = 0;
    const load = callers.flatMap((c) =>
      [0, 1].map(async () => {
        while (!gone.signal.aborted) {
          try {
            const value = await c.inc();
            answered += 1;
            if (value > highest) highest = value;
          } catch {
            return;
          }
        }
      }),
    );
    while (answered < 20 + 10 * round) await sleep(5);
    for (const k of [0, 1, 2, 3]) {
      await subnet.killNode(k);
      await sleep(3 * k);
    }
    gone.abort();
    await Promise.all(load);
    await subnet.start();
    // Nothing answered is lost. (A node that was behind when it died answers queries from the
    // state it certified until it has caught up with the others, as an IC replica does.)
    for (const k of [0, 1, 2, 3]) {
      const { counter } = await counterAt(k);
      let count = await counter.get();
      for (let tries = 0; count < highest && tries < 300; tries++) {
        await sleep(100);
        count = await counter.get();
      }
      assert.ok(count >= highest, `round ${round}, node ${k}: count ${count}, but ${highest} was answered`);
    }
    const { counter } = await counterAt(round % 4);
    assert.ok((await counter.inc()) > highest, `round ${round}: the subnet takes updates again`);
  }
});
