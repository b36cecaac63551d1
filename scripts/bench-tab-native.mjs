// The figures of a mixed subnet (three tabs and one native node, `tabnet node --join`) next to
// an all-tab subnet (four tabs), on this machine: blocks/s idle, update latency with one caller
// (submission → certified reply, p50/p99) and updates/s with CALLERS callers (default 300),
// loaded by the project's load generator in tab 1 (TabSubnet.load_updates), as bench-tabs does;
// and what a data channel carries from the native node to a tab: a subnet of one tab and the
// native node holds STATE_MIB (default 32) MiB of canister state; past its first checkpoint
// (height 500) the tab's state is wiped (its node key kept) and it catches up by state sync
// from the native node alone: the bytes synced over the time taken.
// Prints numbers, asserts nothing: these machines are shared and noisy.
//
//   node scripts/bench-tab-native.mjs     (after scripts/build-web.sh and a built target/*/tabnet)
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { canisterWasm, tabnetBin, freePort, makeAgent, createCanister, installCode, Actor } from '../tests/agent-js/helpers.mjs';
import { serveApp, openTab, status, finalizedAtLeast, withAgent } from '../tests/support/tab-subnet.mjs';

const CALLERS = Number(process.env.CALLERS ?? 300);
const STATE_MIB = Number(process.env.STATE_MIB ?? 32);
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

async function throughput(app) {
  const subnet = `benchsync${Date.now()}`;
  const native = await nativeMember(app, subnet, 2);
  const context = await app.browser.newContext();
  try {
    let tab = await openTab(context, app.server.url, subnet, 2, []);
    await finalizedAtLeast([tab], 3, 120_000);
    const agent = await makeAgent(native);
    const bomb = await createCanister(agent);
    await installCode(agent, bomb, canisterWasm('membomb'));
    await Actor.createActor(({ IDL }) => IDL.Service({ fill: IDL.Func([IDL.Nat32], [IDL.Nat64], []) }), { agent, canisterId: bomb }).fill(STATE_MIB);
    await tab.waitForFunction(() => JSON.parse(window.tabnetSubnet.status()).storage.checkpoint_height >= 500, null, { timeout: 900_000, polling: 500 });
    await sleep(2_000);
    // The tab's state wiped, its node key kept: it is the same member, at genesis.
    await tab.evaluate(async (name) => {
      await window.tabnetSubnet.leave();
      for (const db of await indexedDB.databases()) {
        if (db.name.startsWith(`tabnet-${name}-`)) await new Promise((done) => { const r = indexedDB.deleteDatabase(db.name); r.onsuccess = r.onerror = r.onblocked = done; });
      }
    }, subnet);
    await tab.close();
    const started = Date.now();
    tab = await openTab(context, app.server.url, subnet, 2, []);
    const sync = () => JSON.parse(window.tabnetSubnet.events(0)).find((e) => e.text.includes('state sync brought'));
    await tab.waitForFunction(`window.tabnetSubnet !== undefined && (${sync.toString()})() !== undefined`, null, { timeout: 600_000, polling: 250 });
    const { at, text: synced } = await tab.evaluate(sync);
    const began = await tab.evaluate(() => JSON.parse(window.tabnetSubnet.events(0)).find((e) => e.text.includes('syncing the state of height')).at);
    const ms = at - began;
    const bytes = Number(/\((\d+) bytes\)/.exec(synced)[1]);
    report('native -> tab over one data channel: state sync (MB/s)', (bytes / 1e6 / (ms / 1000)).toFixed(1),
      `${(bytes / 1e6).toFixed(1)} MB in ${ms} ms, sync start to synced (page open to synced ${at - started} ms; ${synced})`);

    // The other way: the native node's state wiped (its node key kept), it syncs from the tab.
    await finalizedAtLeast([tab], (await status(tab)).finalized + 5, 120_000);
    native.process.kill('SIGTERM');
    await native.exited;
    for (const f of readdirSync(native.stateDir)) if (f !== 'node-key') rmSync(join(native.stateDir, f), { recursive: true, force: true });
    const again = await nativeMember(app, subnet, 2, native.stateDir, native.port);
    native.process = again.process;
    const pattern = /state sync brought this node to height (\d+) \((\d+) bytes of state\) in (\d+) ms/;
    for (let waited = 0; !pattern.test(again.log); waited += 250) {
      if (waited > 600_000) throw new Error(`the native node did not sync: ${again.log}`);
      await sleep(250);
    }
    const [, height, back, backMs] = pattern.exec(again.log).map(Number);
    report('tab -> native over one data channel: state sync (MB/s)', (back / 1e6 / (backMs / 1000)).toFixed(1),
      `${(back / 1e6).toFixed(1)} MB of height ${height} in ${backMs} ms (the native node's own measure: sync start to synced)`);
  } finally {
    await context.close();
    native.process.kill('SIGTERM');
  }
}

const app = await serveApp();
try {
  await measure(app, 'all tabs (4)', false);
  await measure(app, 'mixed (3 tabs + native)', true);
  await throughput(app);
} finally {
  await app.close();
}
