// Where a tab's CPU goes under load: four tabs of the served app form a subnet, tab 1's load
// generator runs (KIND=update: 10 calls from each of CALLERS callers, default 300; KIND=query: 10,000
// signed queries; KIND=anon: 10,000 anonymous queries), and Chrome's sampling profiler records
// tab 1 and a peer (tab 2). Prints the throughput and each tab's functions by self time.
//
//   TABNET_WASM_NAMES=1 scripts/build-web.sh && node scripts/profile-tabs.mjs
//
// (Without TABNET_WASM_NAMES the wasm's functions show as numbers.) Asserts nothing.
import { canisterWasm } from '../tests/agent-js/helpers.mjs';
import { serveApp, openTab, status, finalizedAtLeast, withAgent } from '../tests/support/tab-subnet.mjs';
const app = await serveApp();
const context = await app.browser.newContext();
const tabs = []; const NAME = `prof${Date.now()}`;
for (let k = 0; k < 4; k++) tabs.push(await openTab(context, app.server.url, NAME, 4, []));
await finalizedAtLeast(tabs, 3, 120000);
const counter = await withAgent(tabs[0], `const id = await createAndInstall(arg, IDL.encode([IDL.Opt(IDL.Nat64)], [[0n]])); return id.toText();`, Array.from(canisterWasm('counter')));
const kind = process.env.KIND ?? 'update';
const CALLERS = Number(process.env.CALLERS ?? 300);
const prof = async (page) => { const c = await context.newCDPSession(page); await c.send('Profiler.enable'); await c.send('Profiler.setSamplingInterval', { interval: 200 }); await c.send('Profiler.start'); return c; };
const sessions = [await prof(tabs[1]), await prof(tabs[2])];
const r = await tabs[1].evaluate(async ([kind, id, callers]) => JSON.parse(kind === 'update'
  ? await window.tabnetSubnet.load_updates(id, 'inc', new Uint8Array([0x44,0x49,0x44,0x4c,0,0]), callers * 10, callers)
  : await window.tabnetSubnet.load_queries(id, 'get', new Uint8Array([0x44,0x49,0x44,0x4c,0,0]), 10000, kind === 'anon' ? 0 : 10000)), [kind, counter, CALLERS]);
console.log(kind, r.per_second, r.p50_ms);
for (const [k, c] of sessions.entries()) {
  const { profile } = await c.send('Profiler.stop');
  const self = new Map(); const total = profile.samples.length;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const counts = new Map(); for (const s of profile.samples) counts.set(s, (counts.get(s) ?? 0) + 1);
  for (const [id, n] of counts) { const f = byId.get(id).callFrame.functionName || '(anon)'; self.set(f, (self.get(f) ?? 0) + n); }
  console.log(`--- tab ${k + 1} (${k === 0 ? 'the loaded tab' : 'a peer'}), ${total} samples, self time top 40`);
  for (const [f, n] of [...self].sort((a, b) => b[1] - a[1]).slice(0, 40)) console.log((100 * n / total).toFixed(1).padStart(5), f.slice(0, 140));
}
await app.close();
