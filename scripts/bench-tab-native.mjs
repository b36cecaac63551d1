// The figures of a mixed subnet (three tabs and one native node, `tabnet node --join`) next to
// an all-tab subnet (four tabs), on this machine: blocks/s idle, update latency with one caller
// (submission → certified reply, p50/p99) and updates/s with CALLERS callers (default 300),
// loaded by the project's load generator in tab 1 (TabSubnet.load_updates), as bench-tabs does.
// Then the data channel's throughput each way, as state sync uses it: a member that fell more
// than a catch-up interval behind syncs the state (64 MiB of canister heap and the rest) with
// only one peer up, the native node (native -> tab) or one tab (tab -> native); the time is the
// syncing node's own, from the catch-up package it adopted to the state checked and restored.
// That waits twice for the subnet to make up to 1,000 heights (about ten minutes); SYNC=0 skips it,
// SYNC=only measures only it.
// Prints numbers, asserts nothing: these machines are shared and noisy.
//
//   node scripts/bench-tab-native.mjs     (after scripts/build-web.sh and a built target/*/tabnet)
import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { canisterWasm, tabnetBin, freePort } from '../tests/agent-js/helpers.mjs';
import { serveApp, openTab, status, finalizedAtLeast, withAgent } from '../tests/support/tab-subnet.mjs';

const CALLERS = Number(process.env.CALLERS ?? 300);
const SYNC = process.env.SYNC !== '0';
/** Heights between catch-up packages in a tab subnet (crate/native/src/rendezvous.rs). */
const CUP_INTERVAL = 500;
const EMPTY_ARG = [0x44, 0x49, 0x44, 0x4c, 0x00, 0x00];
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const report = (name, value, note = '') => console.log(`${name.padEnd(62)} ${String(value).padStart(10)}  ${note}`);

/** `tabnet node --join` for the subnet `subnet` of `nodes` (on `stateDir` and `port`, if given):
 * the process, its address, its state directory and what it says. */
async function nativeMember(app, subnet, nodes, stateDir = mkdtempSync(join(tmpdir(), 'tabnet-bench-member-')), port) {
  port ??= await freePort();
  const member = { url: `http://127.0.0.1:${port}`, stateDir, port, log: '' };
  member.process = spawn(tabnetBin(), ['node', '--join', `${app.server.url}/?subnet=${subnet}&nodes=${nodes}`, '--port', String(port),
    '--state-dir', stateDir], { stdio: ['ignore', 'ignore', 'pipe'] });
  member.process.stderr.on('data', (c) => { member.log += c; });
  member.exited = new Promise((r) => member.process.on('exit', r));
  return member;
}

async function measure(app, label, withNative) {
  const subnet = `bench${withNative ? 'mixed' : 'tabs'}${Date.now()}`;
  const native = withNative ? (await nativeMember(app, subnet, 4)).process : undefined;
  const tabs = [];
  try {
    for (let k = 0; k < (withNative ? 3 : 4); k++) tabs.push(await openTab(await app.browser.newContext(), app.server.url, subnet, 4, []));
    await finalizedAtLeast(tabs, 5, 120_000);
    const finalized = async () => (await status(tabs[0])).finalized;
    const before = await finalized();
    await sleep(10_000);
    report(`${label}: blocks/s, idle`, ((await finalized() - before) / 10).toFixed(1), 'finalized heights per second, 10 s');
    const counter = await withAgent(tabs[0], `
      const id = await createAndInstall(arg, IDL.encode([IDL.Opt(IDL.Nat64)], [[0n]]));
      return id.toText();`, Array.from(canisterWasm('counter')));
    const load = (count, concurrency) => tabs[1].evaluate(async ([id, arg, count, concurrency]) =>
      JSON.parse(await window.tabnetSubnet.load_updates(id, 'inc', new Uint8Array(arg), count, concurrency)), [counter, EMPTY_ARG, count, concurrency]);
    const one = await load(200, 1);
    report(`${label}: update latency, one caller, p50 / p99 (ms)`, `${one.p50_ms.toFixed(0)} / ${one.p99_ms.toFixed(0)}`, `${one.ok} of ${one.count} replied`);
    const h0 = await finalized();
    const sat = await load(CALLERS * 10, CALLERS);
    report(`${label}: updates/s, ${CALLERS} callers`, sat.per_second.toFixed(0), `p50 ${sat.p50_ms.toFixed(0)} ms; ${((await finalized() - h0) / sat.seconds).toFixed(1)} blocks/s meanwhile`);
  } finally {
    for (const t of tabs) await t.context().close();
    native?.kill('SIGTERM');
  }
}

/** The height from which a member that stopped at `left` can no longer catch up by blocks:
 * its peers keep blocks from one interval below their newest catch-up package. */
const syncPoint = (left) => (Math.floor(left / CUP_INTERVAL) + 2) * CUP_INTERVAL + 10;

const mbPerSecond = (bytes, ms) => (bytes / 1e6 / (ms / 1000)).toFixed(1);

async function measureSync(app) {
  const subnet = `benchsync${Date.now()}`;
  let native = await nativeMember(app, subnet, 4);
  const contexts = [];
  const tabs = [];
  const heightOf = async (tab) => (await status(tab)).finalized;
  try {
    for (let k = 0; k < 3; k++) {
      contexts.push(await app.browser.newContext());
      tabs.push(await openTab(contexts[k], app.server.url, subnet, 4, []));
    }
    await finalizedAtLeast(tabs, 5, 120_000);
    // 64 MiB of canister heap: membomb's fill(64) writes every byte of 64 new MiB.
    await withAgent(tabs[0], `
      const id = await createAndInstall(arg, IDL.encode([], []));
      const actor = Actor.createActor(({ IDL }) => IDL.Service({ fill: IDL.Func([IDL.Nat32], [IDL.Nat64], []) }), { agent, canisterId: id });
      await actor.fill(64);
      return id.toText();`, Array.from(canisterWasm('membomb')));

    // Native -> tab: tab 2 closed while the native node and two tabs go on; then those two tabs
    // closed and tab 2 reopened, so that the native node is its only peer.
    const left = await heightOf(tabs[2]);
    await tabs[2].close();
    await finalizedAtLeast(tabs.slice(0, 2), syncPoint(left), 1_800_000);
    for (const t of tabs.slice(0, 2)) await t.close();
    tabs[2] = await openTab(contexts[2], app.server.url, subnet, 4, []);
    const synced = await tabs[2].waitForFunction(() => {
      const events = JSON.parse(window.tabnetSubnet?.events(0) ?? '[]');
      const start = events.find((e) => e.text.includes('syncing the state'));
      const done = events.find((e) => e.text.startsWith('state sync brought'));
      return start && done && { ms: done.at - start.at, bytes: Number(/\((\d+) bytes\)/.exec(done.text)[1]), text: done.text };
    }, null, { timeout: 600_000, polling: 100 }).then((h) => h.jsonValue());
    report('data channel, native -> tab: state sync from the native node (MB/s)', mbPerSecond(synced.bytes, synced.ms),
      `${(synced.bytes / 1e6).toFixed(1)} MB in ${synced.ms} ms (${synced.text})`);

    // Tab -> native: the native node stopped while the three tabs go on; then two of them closed
    // and the native node restarted on its state, so that tab 2 is its only peer.
    await finalizedAtLeast([tabs[2]], (await heightOf(tabs[2])) + 5, 300_000).catch(() => {});
    const { stateDir, port } = native;
    native.process.kill('SIGTERM');
    await native.exited;
    const stoppedAt = await heightOf(tabs[2]);
    for (const k of [0, 1]) tabs[k] = await openTab(contexts[k], app.server.url, subnet, 4, []);
    await finalizedAtLeast(tabs, syncPoint(stoppedAt), 1_800_000);
    for (const t of tabs.slice(0, 2)) await t.close();
    native = await nativeMember(app, subnet, 4, stateDir, port);
    const deadline = Date.now() + 600_000;
    let said;
    while (!(said = /state sync brought this node to height (\d+) \((\d+) bytes of state\) in (\d+) ms/.exec(native.log)) && Date.now() < deadline) await sleep(200);
    if (!said) throw new Error(`the native node did not sync; it said:\n${native.log.slice(-3000)}`);
    report('data channel, tab -> native: state sync from one tab (MB/s)', mbPerSecond(Number(said[2]), Number(said[3])),
      `${(Number(said[2]) / 1e6).toFixed(1)} MB in ${said[3]} ms (height ${said[1]})`);
  } finally {
    for (const c of contexts) await c.close();
    native.process.kill('SIGTERM');
  }
}

const app = await serveApp();
try {
  if (process.env.SYNC !== 'only') {
    await measure(app, 'all tabs (4)', false);
    await measure(app, 'mixed (3 tabs + native)', true);
  }
  if (SYNC) await measureSync(app);
} finally {
  await app.close();
}
