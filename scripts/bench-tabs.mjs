// The figures of a tab subnet: four tabs of the served app in Debian's Chromium (real WebRTC,
// real IndexedDB) on this machine, loaded by the project's load generator running in a tab
// (TabSubnet.load_updates / load_queries, crate/web/src/load.rs). Prints numbers, asserts
// nothing: these machines are shared and noisy.
//
//   node scripts/bench-tabs.mjs           (after scripts/build-web.sh and a built target/*/tabnet)
//
// Environment: TABNET_BIN (the native node that serves the app), CATCH_UP (heights a closed
// tab falls behind before it is reopened; default 1000), SATURATION (concurrent callers; default
// 2000: each waits for its certified reply, so fewer leave the tabs idle between blocks; at 300
// they carried 248/s with a quarter of the CPU idle), UPDATES (calls in that run; default 20000).
import { existsSync, readFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

import { TabnetNode, ROOT, canisterWasm } from '../tests/agent-js/helpers.mjs';
import { chromiumArgs } from '../tests/support/browser.mjs';
import { openTab, status, finalizedAtLeast, withAgent } from '../tests/support/tab-subnet.mjs';

const DIST = join(ROOT, 'www', 'dist');
const WASM = join(ROOT, 'pkg', 'tabnet_web_bg.wasm');
const CATCH_UP = Number(process.env.CATCH_UP ?? 1000);
const SATURATION = Number(process.env.SATURATION ?? 2000);
const UPDATES = Number(process.env.UPDATES ?? 20000);
const SUBNET = `bench${Date.now()}`;
const EMPTY_ARG = [0x44, 0x49, 0x44, 0x4c, 0x00, 0x00]; // Candid `()`

if (!existsSync(join(DIST, 'index.html'))) throw new Error(`${DIST} is missing: run scripts/build-web.sh`);
const figures = [];
const report = (name, value, note = '') => {
  figures.push({ name, value, note });
  console.log(`${name.padEnd(58)} ${String(value).padStart(12)}  ${note}`);
};
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const ms = (x) => Math.round(x);
const finalized = async (page) => (await status(page)).finalized;

const raw = readFileSync(WASM);
report('wasm size raw (MB)', (raw.length / 1e6).toFixed(2), 'pkg/tabnet_web_bg.wasm');
report('wasm size gzipped -9 (MB)', (gzipSync(raw, { level: 9 }).length / 1e6).toFixed(2), 'goal <= 2 MiB (2.10 MB)');

const server = await TabnetNode.start(undefined, ['--www', DIST]);
const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: chromiumArgs });
const context = await browser.newContext();
const errors = [];
try {
  const url = server.url;
  const tabs = [];
  // The subnet forms when the fourth tab joins: that tab's page load includes forming it.
  for (let k = 0; k < 4; k++) tabs.push(await openTab(context, url, SUBNET, 4, errors));
  await status(tabs[3]);
  report('page load to node ready, the tab that forms the subnet (ms)', ms(await tabs[3].evaluate(() => window.tabnetReadyMs)),
    'navigation start → node opened (wasm fetched, compiled, node key made, keys dealt, IndexedDB read)');
  const formed = Date.now();
  await finalizedAtLeast(tabs, 1, 120_000);
  report('fourth tab ready to first finalized block (ms)', Date.now() - formed, 'links made, handshakes, first round');

  const blocksPerSecond = async (seconds) => {
    const before = await finalized(tabs[0]);
    await sleep(seconds * 1000);
    return ((await finalized(tabs[0])) - before) / seconds;
  };
  report('blocks/s, idle', (await blocksPerSecond(10)).toFixed(1), 'finalized heights per second, 10 s');

  const counter = await withAgent(tabs[0], `
    const id = await createAndInstall(arg, IDL.encode([IDL.Opt(IDL.Nat64)], [[0n]]));
    return id.toText();`, Array.from(canisterWasm('counter')));

  const load = (page, kind, count, concurrency = 1) => page.evaluate(
    async ([kind, id, arg, count, concurrency]) => JSON.parse(kind === 'update'
      ? await window.tabnetSubnet.load_updates(id, 'inc', new Uint8Array(arg), count, concurrency)
      : await window.tabnetSubnet.load_queries(id, 'get', new Uint8Array(arg), count, { 'query, every sender new': count, 'query, one sender': 1, 'anonymous query': 0 }[kind])),
    [kind, counter, EMPTY_ARG, count, concurrency]);
  const check = (r, what) => { if (r.failed) console.log(`  ${what}: ${r.failed} of ${r.count} failed, first: ${r.first_error}`); return r; };

  const one = check(await load(tabs[1], 'update', 200, 1), 'one caller');
  report('update latency, one caller at a time, p50 (ms)', one.p50_ms.toFixed(1), 'submission → certified reply; goal p50 <= 100 ms');
  report('update latency, one caller at a time, p99 (ms)', one.p99_ms.toFixed(1), `${one.ok} calls`);

  const heightBefore = await finalized(tabs[0]);
  const sat = check(await load(tabs[1], 'update', UPDATES, SATURATION), 'saturation');
  const heightAfter = await finalized(tabs[0]);
  report(`updates/s at saturation (${SATURATION} callers)`, sat.per_second.toFixed(0), `goal >= 500/s; ${sat.ok} of ${sat.count} replied in ${sat.seconds.toFixed(1)} s`);
  report('update latency at saturation, p50 (ms)', sat.p50_ms.toFixed(1));
  report('update latency at saturation, p99 (ms)', sat.p99_ms.toFixed(1));
  report('blocks/s under that load', ((heightAfter - heightBefore) / sat.seconds).toFixed(1));

  // Each query run: 10,000 signed queries from 10,000 identities, so the query cache never
  // has the answer. Then the same query again and again, which the cache answers (after the
  // first on each certified state), signed by one identity and unsigned.
  const q = check(await load(tabs[2], 'query, every sender new', 10_000), 'queries');
  report('queries/s in one tab, signed, each run', q.per_second.toFixed(0), `goal >= 5,000/s; one after another; p50 ${q.p50_ms.toFixed(3)} ms`);
  const qc = check(await load(tabs[2], 'query, one sender', 10_000), 'repeated queries');
  report('queries/s in one tab, signed, the same query (query cache)', qc.per_second.toFixed(0), `p50 ${qc.p50_ms.toFixed(3)} ms`);
  const qa = check(await load(tabs[2], 'anonymous query', 10_000), 'anonymous queries');
  report('queries/s in one tab, anonymous, the same query (query cache)', qa.per_second.toFixed(0), `no sender signature to check; p50 ${qa.p50_ms.toFixed(3)} ms`);
  const work = (await status(tabs[1])).storage;
  report('IndexedDB commits so far, tab 1: mean (ms)', (work.commit_ms_total / work.commits).toFixed(1), `${work.commits} commits, ${(work.committed_bytes / 1048576).toFixed(1)} MiB`);
  report('node turns so far, tab 1: mean computing time (ms)', (work.step_ms_total / work.steps).toFixed(2), `${work.steps} turns`);
  if (process.env.QUICK) process.exit(0);

  // 64 MiB of dirty heap: membomb's fill(64) writes every byte of 64 new MiB in one update.
  const bomb = await withAgent(tabs[0], `
    const id = await createAndInstall(arg, IDL.encode([], []));
    const actor = Actor.createActor(({ IDL }) => IDL.Service({ fill: IDL.Func([IDL.Nat32], [IDL.Nat64], []) }), { agent, canisterId: id });
    await actor.fill(64);
    return id.toText();`, Array.from(canisterWasm('membomb')));
  await sleep(2000);
  const commits = await Promise.all(tabs.map(status));
  const largest = commits.map((s) => s.storage).sort((a, b) => b.largest_commit_ms - a.largest_commit_ms)[0];
  report('write of the height that dirtied 64 MiB, slowest tab (ms)', ms(largest.largest_commit_ms),
    `${(largest.largest_commit_bytes / 1048576).toFixed(1)} MiB in one IndexedDB transaction (membomb ${bomb})`);
  // The next checkpoint (every 500 heights) holds the whole state, those 64 MiB included.
  const top = await finalized(tabs[0]);
  const next = Math.ceil((top + 1) / 500) * 500;
  await Promise.all(tabs.map((p) => p.waitForFunction(
    (h) => JSON.parse(window.tabnetSubnet.status()).storage.checkpoint_height >= h, next, { timeout: 600_000, polling: 250 })));
  const cps = (await Promise.all(tabs.map(status))).map((s) => s.storage);
  const cp = cps.sort((a, b) => b.checkpoint_ms - a.checkpoint_ms)[0];
  const mib = (n) => (n / 1048576).toFixed(1);
  const checkpointNote = (c) => `height ${c.checkpoint_height}: ${mib(c.checkpoint_bytes)} MiB of state, ${mib(c.checkpoint_written_bytes)} MiB written (chunks the kept checkpoints lacked)`;
  report('checkpoint write to IndexedDB, slowest tab (ms)', ms(cp.checkpoint_ms), checkpointNote(cp));

  // Restore: a tab reloaded reads everything back from IndexedDB and goes on.
  const reloaded = tabs[3];
  const reloadStart = Date.now();
  await reloaded.reload();
  await reloaded.waitForFunction(() => window.tabnetSubnet !== undefined, null, { timeout: 120_000 });
  const restored = (await status(reloaded)).storage;
  report('restore after reload: IndexedDB read + node open (ms)', ms(restored.open_ms), `${(restored.open_bytes / 1048576).toFixed(1)} MiB read`);
  report('restore after reload: page load to node ready (ms)', ms(await reloaded.evaluate(() => window.tabnetReadyMs)));
  const goal = await finalized(tabs[0]);
  await finalizedAtLeast([reloaded], goal, 300_000);
  report('reload to caught up with the subnet (ms)', Date.now() - reloadStart);

  // Catch-up: one tab closed while the others finalize CATCH_UP heights, then reopened.
  const gone = tabs.pop();
  const left = await finalized(gone);
  await gone.close();
  const behindStart = Date.now();
  await finalizedAtLeast(tabs, left + CATCH_UP, 3_600_000);
  const ahead = await finalized(tabs[0]);
  report(`blocks/s while one tab is closed`, ((ahead - left) / ((Date.now() - behindStart) / 1000)).toFixed(1));
  // Checkpoints since then: the 64 MiB did not change, so they write only what did.
  const later = (await status(tabs[0])).storage;
  report('a later checkpoint, same state mostly (ms)', ms(later.checkpoint_ms), checkpointNote(later));
  const reopenStart = Date.now();
  const back = await openTab(context, url, SUBNET, 4, errors);
  const fromHeight = await finalized(back);
  const target = await finalized(tabs[0]);
  await finalizedAtLeast([back], target, 600_000);
  report(`catch-up of a reopened tab ${target - fromHeight} heights behind (ms)`, Date.now() - reopenStart,
    `page open → finalized the others' height at reopening; ${(await status(back)).events.filter((e) => e.includes('sync')).join('; ') || 'no state sync'}`);
  if (errors.length) console.log(`page errors: ${errors.join('\n')}`);
} finally {
  await browser.close();
  await server.destroy();
}
