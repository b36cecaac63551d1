// Where one caller's update latency goes on a tab subnet of four tabs: 40 calls one after
// another from tab 1's load generator, each split by tab 1's own events into submission →
// its height finalized → that height's state certified → the reply. Prints the medians (of the
// last 35), the first calls' splits and how often heights finalized meanwhile. Asserts nothing.
//
//   node scripts/trace-update-latency.mjs     (after scripts/build-web.sh and a built target/*/tabnet)
import { canisterWasm } from '../tests/agent-js/helpers.mjs';
import { serveApp, openTab, finalizedAtLeast, withAgent } from '../tests/support/tab-subnet.mjs';
const app = await serveApp();
const context = await app.browser.newContext();
const tabs = []; const NAME = `trace${Date.now()}`;
for (let k = 0; k < 4; k++) tabs.push(await openTab(context, app.server.url, NAME, 4, []));
await finalizedAtLeast(tabs, 3, 120000);
const counter = await withAgent(tabs[0], `const id = await createAndInstall(arg, IDL.encode([IDL.Opt(IDL.Nat64)], [[0n]])); return id.toText();`, Array.from(canisterWasm('counter')));
await new Promise((r) => setTimeout(r, 2000));
const out = await tabs[1].evaluate(async (id) => {
  const calls = [];
  for (let k = 0; k < 40; k++) {
    const start = Date.now();
    await window.tabnetSubnet.load_updates(id, 'inc', new Uint8Array([0x44,0x49,0x44,0x4c,0,0]), 1, 1);
    calls.push([start, Date.now()]);
  }
  return { calls, events: JSON.parse(window.tabnetSubnet.events(0)) };
}, counter);
const fin = out.events.filter((e) => e.text.startsWith('finalized height')).map((e) => [Number(e.text.split(' ')[2]), e.at]);
const cert = out.events.filter((e) => e.text.startsWith('certified the state')).map((e) => [Number(e.text.split(' ')[5]), e.at]);
const rows = [];
for (const [s, e] of out.calls.slice(5)) {
  // The height certified last before the reply is the call's.
  const c = cert.filter(([, at]) => at <= e).pop();
  const f = fin.find(([h]) => h === c[0]);
  const prevFin = fin.filter(([, at]) => at <= s).pop();
  rows.push({ total: e - s, toFinal: f[1] - s, finalToCert: c[1] - f[1], certToReply: e - c[1], heightsWaited: c[0] - prevFin[0] });
}
const med = (k) => rows.map((r) => r[k]).sort((a, b) => a - b)[rows.length >> 1];
console.log('median ms: total', med('total'), 'submit→finalized', med('toFinal'), 'finalized→certified', med('finalToCert'), 'certified→reply', med('certToReply'), 'heights', med('heightsWaited'));
console.log(rows.slice(0, 12).map((r) => JSON.stringify(r)).join('\n'));
const fins = fin.slice(-40); const gaps = fins.slice(1).map((x, i) => x[1] - fins[i][1]).sort((a, b) => a - b);
console.log('finalization interval under this load, median', gaps[gaps.length >> 1]);
await app.close();
