// The figures of a mixed subnet (three tabs and one native node, `tabnet node --join`) next to
// an all-tab subnet (four tabs), on this machine: blocks/s idle, update latency with one caller
// (submission → certified reply, p50/p99) and updates/s with CALLERS callers (default 300),
// loaded by the project's load generator in tab 1 (TabSubnet.load_updates), as bench-tabs does.
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

const app = await serveApp();
try {
  await measure(app, 'all tabs (4)', false);
  await measure(app, 'mixed (3 tabs + native)', true);
} finally {
  await app.close();
}
