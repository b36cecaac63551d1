// The web app's figures, in Debian's Chromium on this machine: first paint and time to
// interactive of `/` (the simulated subnet view), the bundle's sizes, and the subnet view's frame
// rate while a 13-node simulated subnet runs in real time. Prints numbers, asserts nothing: these
// machines are shared and noisy.
//
//   node scripts/bench-app.mjs        (after scripts/build-web.sh and a built target/*/tabnet)
//
// Environment: TABNET_BIN (the native node that serves the app), RUNS (page loads to take the
// median of; default 5), FPS_SECONDS (how long to count frames; default 10).
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { join } from 'node:path';

import { ROOT } from '../tests/agent-js/helpers.mjs';
import { serveApp } from '../tests/support/tab-subnet.mjs';

const DIST = join(ROOT, 'www', 'dist');
const RUNS = Number(process.env.RUNS ?? 5);
const FPS_SECONDS = Number(process.env.FPS_SECONDS ?? 10);
const report = (name, value, note = '') => console.log(`${name.padEnd(52)} ${String(value).padStart(12)}  ${note}`);
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const kb = (n) => (n / 1000).toFixed(0);

// What the browser fetches, by file: raw and gzipped (-9) kilobytes; each wasm named by the
// package it is (webpack names them by hash).
const WASMS = { 'pkg/tabnet_web_bg.wasm': 'the tab node (?subnet= pages)', 'pkg-sim/tabnet_web_bg.wasm': 'the simulator (/)',
  'pkg-candid/tabnet_candid_ui_bg.wasm': 'the playground\'s Candid tooling' };
const wasmOf = Object.fromEntries(Object.entries(WASMS).map(([path, what]) => [readFileSync(join(ROOT, path)).toString('base64').slice(0, 4096) + statSync(join(ROOT, path)).size, `${path}: ${what}`]));
for (const file of readdirSync(DIST).sort()) {
  const path = join(DIST, file);
  if (!statSync(path).isFile() || file.endsWith('.txt')) continue;
  const raw = readFileSync(path);
  const what = file.endsWith('.wasm') ? wasmOf[raw.toString('base64').slice(0, 4096) + raw.length] ?? '' : '';
  report(`bundle ${file} (kB, gzipped)`, `${kb(raw.length)} (${kb(gzipSync(raw, { level: 9 }).length)})`, what);
}

const app = await serveApp();
try {
  const paints = [];
  const interactive = [];
  for (let k = 0; k < RUNS; k++) {
    const context = await app.browser.newContext({ viewport: { width: 1280, height: 800 } });
    const page = await context.newPage();
    await page.goto(app.server.url);
    await page.waitForFunction(() => window.tabnetInteractiveMs !== undefined, null, { timeout: 60_000 });
    paints.push(await page.evaluate(() => performance.getEntriesByName('first-contentful-paint')[0]?.startTime ?? NaN));
    interactive.push(await page.evaluate(() => window.tabnetInteractiveMs));
    await context.close();
  }
  report('first contentful paint of / (ms, median)', Math.round(median(paints)), `of ${RUNS} loads: ${paints.map(Math.round).join(', ')}`);
  report('time to interactive of / (ms, median)', Math.round(median(interactive)),
    'navigation start → simulator running, controls live (wasm fetched and compiled)');

  for (const nodes of [4, 13]) {
    const page = await app.browser.newPage({ viewport: { width: 1280, height: 800 } });
    await page.goto(`${app.server.url}/?nodes=${nodes}`);
    await page.waitForFunction((n) => window.tabnetSimView?.nodes?.length === n, nodes, { timeout: 60_000 });
    await page.selectOption('#sim-speed', '1');
    await page.waitForTimeout(2_000);
    const start = await page.evaluate(() => ({ frames: window.tabnetFrames, now: window.tabnetSimView.now, at: performance.now() }));
    await page.waitForTimeout(FPS_SECONDS * 1000);
    const end = await page.evaluate(() => ({ frames: window.tabnetFrames, now: window.tabnetSimView.now, at: performance.now(),
      finalized: Math.max(...window.tabnetSimView.nodes.map((n) => n.finalized)) }));
    const seconds = (end.at - start.at) / 1000;
    report(`subnet view, ${nodes} nodes: frames/s`, ((end.frames - start.frames) / seconds).toFixed(1), nodes === 13 ? 'goal >= 50' : '');
    report(`subnet view, ${nodes} nodes: virtual s per wall s`, ((end.now - start.now) / 1000 / seconds).toFixed(2),
      `at real-time speed (1.00 = keeping up); finalized ${end.finalized}`);
    await page.close();
  }
} finally {
  await app.close();
}
