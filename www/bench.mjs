// Runs the compute-bound canister benchmark in this tab and shows fuel per second.
// bench.html?runs=K&n=N runs K calls (default 30) of N loop turns (default 5000000) and reports
// the median of the last two thirds; bench.html?runs=0 only exposes `window.benchRun(n)` for
// scripts/bench-browser.mjs, which alternates browser and native runs itself.
import { bench_fuel } from '../pkg/tabnet_web.js';

const params = new URLSearchParams(window.location.search);
const runCount = Number(params.get('runs') ?? 30);
const iterations = String(params.get('n') ?? 5_000_000);
const out = document.getElementById('out');
const rate = (r) => r.fuel / (r.millis / 1000) / 1e6;

/** One call of the compute canister: `{ fuel, millis, result }`. */
window.benchRun = (n = iterations) => bench_fuel(BigInt(n), () => performance.now());

// V8 runs wasm in Liftoff first and compiles hot functions with TurboFan in the background; a
// call stays in the tier it entered (no on-stack replacement for wasm), so wasmi's dispatch loop,
// one very large function, only runs at full speed from the first call after TurboFan finished
// it (about a second or more after the first call). Hence many runs, and a yield between runs.
const runs = [];
for (let i = 0; i < runCount; i++) {
  runs.push(window.benchRun());
  out.textContent = runs.map((r, k) => `run ${k}: ${r.fuel} fuel in ${r.millis.toFixed(1)} ms = ${rate(r).toFixed(1)} M fuel/s`).join('\n');
  await new Promise((resolve) => setTimeout(resolve, 0));
}
if (runCount > 0) {
  const steady = runs.slice(Math.ceil(runCount / 3)).map(rate).sort((a, b) => a - b);
  out.textContent += `\nruns ${Math.ceil(runCount / 3)}..${runCount - 1}: median ${steady[Math.floor(steady.length / 2)].toFixed(1)} M fuel/s`;
}
window.benchResult = runs;
