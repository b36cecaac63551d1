// A native node joins a tab subnet over WebRTC (`tabnet node --join URL`): three tabs, each in
// its own browser profile, and one native process form a 4-node subnet through the rendezvous
// of the native node that serves the app. agent-js in Node, through the native member's HTTP
// port, installs a canister that a tab then calls; with every tab closed the native member alone
// cannot finalize (and says so); two tabs reopened, the subnet resumes with the canister's state.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { canisterWasm, tabnetBin, freePort, makeAgent, createCanister, installCode, eventually, IDL, Actor } from '../agent-js/helpers.mjs';
import { serveApp, openTab, status, finalizedAtLeast, withAgent } from '../support/tab-subnet.mjs';

const SUBNET = `n${Date.now()}`;
let app;
let native;
const errors = [];
const tabs = [];

/** `tabnet node --join`: its HTTP address, what it said, and how far it certified. */
class NativeMember {
  static async start(appUrl) {
    const m = new NativeMember();
    m.appUrl = appUrl;
    m.port = await freePort();
    m.stateDir = mkdtempSync(join(tmpdir(), 'tabnet-native-member-'));
    m.spawn();
    return m;
  }

  /** Starts the process (again, on the same state directory and port). */
  spawn() {
    this.log = '';
    this.exited = undefined;
    this.process = spawn(tabnetBin(), ['node', '--join', `${this.appUrl}/?subnet=${SUBNET}&nodes=4`, '--port', String(this.port),
      '--state-dir', this.stateDir], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, TABNET_TRACE: '1' } });
    const keep = (chunk) => { this.log += chunk.toString(); };
    this.process.stdout.on('data', keep);
    this.process.stderr.on('data', keep);
    this.process.on('exit', (code, signal) => { this.exited = { code, signal }; });
  }

  get url() { return `http://127.0.0.1:${this.port}`; }

  async certifiedHeight() {
    const text = await (await fetch(`${this.url}/_/metrics`)).text();
    return Number(/certified height: (\d+)/.exec(text)[1]);
  }

  async said(pattern, what, timeoutMs = 60_000) {
    await eventually(() => { assert.equal(this.exited, undefined, `the native member exited:\n${this.log}`); return pattern.test(this.log); },
      { timeoutMs, what: `${what}; it said:\n${this.log.slice(-3000)}` });
  }

  stop() { this.process.kill('SIGTERM'); }

  async stopped() {
    this.stop();
    await eventually(() => this.exited !== undefined, { what: 'the native node to stop on SIGTERM' });
  }
}

const counterIdl = ({ IDL }) => IDL.Service({ get: IDL.Func([], [IDL.Nat64], ['query']), inc: IDL.Func([], [IDL.Nat64], []) });

before(async () => {
  app = await serveApp();
});

after(async () => {
  native?.stop();
  await app?.close();
});

let canisterId;

test('three tabs and a native node form one subnet over WebRTC', async () => {
  native = await NativeMember.start(app.server.url);
  for (let k = 0; k < 3; k++) tabs.push(await openTab(await app.browser.newContext(), app.server.url, SUBNET, 4, errors));
  await native.said(/node \d of the tab subnet/, 'the native node was welcomed');
  const nativeIndex = Number(/node (\d) of the tab subnet/.exec(native.log)[1]);
  const seen = await Promise.all(tabs.map(status));
  assert.deepEqual([...seen.map((s) => s.index), nativeIndex].sort(), [0, 1, 2, 3], 'four members, four slots');
  await finalizedAtLeast(tabs, 10, 120_000);
  for (const s of await Promise.all(tabs.map(status))) {
    assert.equal(s.links.filter((l) => l === 'up').length, 3, `node ${s.index} links to each other node, the native one too: ${s.links}`);
  }
  await native.said(/4 of the subnet's 4 nodes are linked/, 'the native node linked to every tab');
  await eventually(async () => (await native.certifiedHeight()) >= 10, { what: 'the native node certifies as the tabs do' });
});

/** What the native member said and the tabs' last events, for a failure's message. */
async function whereEveryoneIs() {
  const events = await Promise.all(tabs.map((t) => t.evaluate(() => {
    const s = JSON.parse(window.tabnetSubnet.status());
    return `node ${s.index}: finalized ${s.finalized}, links ${JSON.stringify(s.links)}; ${JSON.parse(window.tabnetSubnet.events(0)).slice(-8).map((e) => e.text).join(' | ')}`;
  }).catch((e) => String(e))));
  return `native member:\n${native.log.slice(-3000)}\ntabs:\n${events.join('\n')}`;
}

test('agent-js through the native node installs a canister that a tab calls', { timeout: 180_000 }, async () => {
  const agent = await makeAgent(native, undefined, { ingressExpiryInMinutes: 2 });
  const id = await createCanister(agent);
  await installCode(agent, id, canisterWasm('counter'), { arg: IDL.encode([IDL.Opt(IDL.Nat64)], [[10n]]) })
    .catch(async (e) => { throw new Error(`${e.message}\n${await whereEveryoneIs()}`); });
  const counter = Actor.createActor(counterIdl, { agent, canisterId: id });
  assert.equal(await counter.inc(), 11n);
  canisterId = id.toText();
  assert.equal(await withAgent(tabs[1], 'return String(await counter(arg).inc());', canisterId), '12');
  // (It answers from its latest certified state, which may be a height behind the tab's.)
  await eventually(async () => (await counter.get()) === 12n, { what: 'the native node to answer from the state the tabs made too' });
});

let contexts;

test('every tab closed: the native node alone cannot finalize and says so; two tabs back, it resumes', async () => {
  contexts = tabs.map((t) => t.context());
  for (const t of tabs.splice(0)) await t.close();
  await native.said(/1 of the subnet's 4 nodes are linked \(this one included\); it cannot finalize without 3/, 'the native node says it cannot finalize');
  const stopped = await native.certifiedHeight();
  await new Promise((r) => setTimeout(r, 4_000));
  assert.ok((await native.certifiedHeight()) <= stopped + 1, 'one node of four certifies nothing new');

  // Two members' profiles open the page again: their keys, their slots, their state.
  for (const context of contexts.slice(0, 2)) tabs.push(await openTab(context, app.server.url, SUBNET, 4, errors));
  await native.said(/3 of the subnet's 4 nodes are linked: the subnet can finalize/, 'the native node sees the subnet back');
  await finalizedAtLeast(tabs, stopped + 5, 120_000).catch((e) => { throw new Error(`${e.message}\nnative member:\n${native.log.slice(-6000)}`); });
  await eventually(async () => (await native.certifiedHeight()) >= stopped + 5, { what: 'the native node certifies again' });
  const agent = await makeAgent(native);
  assert.equal(await Actor.createActor(counterIdl, { agent, canisterId }).inc(), 13n, 'the canister state is intact');
  assert.equal(await withAgent(tabs[0], 'return String(await counter(arg).get());', canisterId), '13');
  assert.deepEqual(errors, []);
});

test('the native node restarted on its state directory is the same member and catches up', async () => {
  // The third tab back: three tabs finalize while the native node is down.
  tabs.push(await openTab(contexts[2], app.server.url, SUBNET, 4, errors));
  const index = Number(/node (\d) of the tab subnet/.exec(native.log)[1]);
  await native.stopped();
  const top = Math.max(...(await Promise.all(tabs.map(status))).map((s) => s.finalized));
  await finalizedAtLeast(tabs, top + 20, 120_000);
  native.spawn();
  await native.said(new RegExp(`node ${index} of the tab subnet`), 'the native node took its own slot back');
  await native.said(/4 of the subnet's 4 nodes are linked/, 'the native node linked to every tab again');
  const ahead = Math.max(...(await Promise.all(tabs.map(status))).map((s) => s.finalized));
  await eventually(async () => (await native.certifiedHeight().catch(() => 0)) >= ahead, { timeoutMs: 120_000, what: `the native node to catch up to ${ahead}` });
  const agent = await makeAgent(native);
  assert.equal(await Actor.createActor(counterIdl, { agent, canisterId }).get(), 13n, 'it serves the state it caught up to');
  assert.deepEqual(errors, []);
});
