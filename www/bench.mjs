// Runs the compute-bound canister benchmark in this tab and shows fuel per second.
import { bench_fuel } from '../pkg/tabnet_web.js';

const out = document.getElementById('out');
const runs = [];
// The first call is slow while V8 optimises wasmi's dispatch loop: report it apart.
for (let i = 0; i < 6; i++) {
  const run = bench_fuel(5_000_000n, () => performance.now());
  runs.push(run);
  out.textContent = runs.map((r, k) => `run ${k}: ${r.fuel} fuel in ${r.millis.toFixed(1)} ms`).join('\n');
}
window.benchResult = runs;
