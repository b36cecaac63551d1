// Execution speed, native against headless Chromium (Debian's), on the compute-bound canister of
// crate/web/src/bench.rs: fuel (= wasmi instructions charged) per second.
//
//   node scripts/bench-browser.mjs [--pairs P] [--warmup W] [--n N] [-v]
//
// Needs www/dist (scripts/build-web.sh) and target/release/examples/bench_fuel
// (cargo build --release -p tabnet-web --example bench_fuel).
//
// The page is loaded once and warmed up with W calls (default 20), reported but not counted:
// V8 runs wasm in Liftoff first and tiers hot functions up to TurboFan in the background, a call
// stays in the tier it entered (no on-stack replacement for wasm), and wasmi's dispatch loop is
// one very large function that takes a second or more to optimise. Then P pairs (default 60) of
// one native call (`bench_fuel --serve`, a process kept running and warmed up too) and one
// browser call of N loop turns (default 5000000), in alternating order: the two calls of a pair
// share the machine's load of the moment, which on a shared machine changes by tens of percent
// from one second to the next. Prints medians and ranges of both, the ratio of the medians and the
// median (with quartiles) of the per-pair ratios. -v prints every call.
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { serveDirectory, chromiumArgs } from '../tests/support/browser.mjs';

const option = (name, fallback) => {
  const i = process.argv.indexOf(`--${name}`);
  return i < 0 ? fallback : Number(process.argv[i + 1]);
};
const pairs = option('pairs', 60);
const warmup = option('warmup', 20);
const n = option('n', 5_000_000);
const verbose = process.argv.includes('-v');

const rate = (r) => r.fuel / (r.millis / 1000) / 1e6; // M fuel/s
const sorted = (xs) => [...xs].sort((a, b) => a - b);
const quantile = (xs, q) => sorted(xs)[Math.min(xs.length - 1, Math.floor(q * xs.length))];
const median = (xs) => quantile(xs, 0.5);
const fmt = (x) => x.toFixed(1);
const range = (xs) => `${fmt(Math.min(...xs))}–${fmt(Math.max(...xs))}`;

// The native side: one process, one run per line asked.
const nativeProcess = spawn(fileURLToPath(new URL('../target/release/examples/bench_fuel', import.meta.url)),
  ['--serve'], { stdio: ['pipe', 'pipe', 'inherit'] });
const nativeLines = createInterface({ input: nativeProcess.stdout })[Symbol.asyncIterator]();
const nativeRun = async () => {
  nativeProcess.stdin.write(`${n}\n`);
  const { value, done } = await nativeLines.next();
  if (done) throw new Error('bench_fuel --serve stopped');
  return JSON.parse(value);
};

const server = await serveDirectory(fileURLToPath(new URL('../www/dist/', import.meta.url)));
const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: chromiumArgs });
try {
  const page = await browser.newPage();
  await page.goto(`${server.url}/bench.html?runs=0`);
  await page.waitForFunction(() => window.benchRun && window.benchResult, null, { timeout: 60_000 });
  const browserRun = () => page.evaluate(async (n) => {
    const run = window.benchRun(n);
    await new Promise((resolve) => setTimeout(resolve, 0)); // lets finished TurboFan code in
    return run;
  }, String(n));

  const expected = (await nativeRun()).fuel;
  const check = (r, where) => {
    if (r.fuel !== expected) throw new Error(`fuel differs: ${r.fuel} ${where}, ${expected} natively`);
    return r;
  };
  const started = Date.now();
  const warm = [];
  for (let i = 0; i < warmup; i++) {
    warm.push(check(await browserRun(), 'in the browser'));
    await nativeRun();
  }
  if (verbose) warm.forEach((r, i) => console.error(`browser warm-up ${i}: ${fmt(r.millis)} ms = ${fmt(rate(r))} M fuel/s`));
  console.log(`browser warm-up: ${warmup} calls of ${expected} fuel in ${((Date.now() - started) / 1000).toFixed(1)} s; ` +
    `first call ${fmt(rate(warm[0]))} M fuel/s, last ${fmt(rate(warm[warm.length - 1]))}`);

  const nat = [];
  const brw = [];
  for (let i = 0; i < pairs; i++) {
    let b;
    let a;
    if (i % 2 === 0) {
      a = rate(await nativeRun());
      b = rate(check(await browserRun(), 'in the browser'));
    } else {
      b = rate(check(await browserRun(), 'in the browser'));
      a = rate(await nativeRun());
    }
    nat.push(a);
    brw.push(b);
    if (verbose) console.error(`pair ${i}: native ${fmt(a)}, browser ${fmt(b)} M fuel/s, ratio ${(a / b).toFixed(2)}`);
  }
  const ratios = nat.map((a, i) => a / brw[i]);
  console.log(`native:  median ${fmt(median(nat))} M fuel/s (range ${range(nat)}, ${pairs} calls)`);
  console.log(`browser: median ${fmt(median(brw))} M fuel/s (range ${range(brw)}, ${pairs} calls, headless Chromium)`);
  console.log(`native / browser: ${(median(nat) / median(brw)).toFixed(2)}x by medians; per pair median ` +
    `${median(ratios).toFixed(2)}x (quartiles ${quantile(ratios, 0.25).toFixed(2)}–${quantile(ratios, 0.75).toFixed(2)})`);
} finally {
  nativeProcess.stdin.end();
  await browser.close();
  server.close();
}
