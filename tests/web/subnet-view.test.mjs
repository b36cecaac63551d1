// The subnet view as an educator meets it: `/` opens a subnet simulated in the tab (the real
// node core and replica in wasm), the finalized height rises; a crashed node shows in the view,
// the figures and the captions, and the subnet goes on; with two of four crashed finalization
// stops, and a restart brings it back. Screenshots at 1280×800 and phone width are kept in
// target/screenshots/.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

import { ROOT } from '../agent-js/helpers.mjs';
import { serveApp } from '../support/tab-subnet.mjs';

const SHOTS = join(ROOT, 'target', 'screenshots');
let app;
let page;
const errors = [];

before(async () => {
  mkdirSync(SHOTS, { recursive: true });
  app = await serveApp();
  page = await app.browser.newPage({ viewport: { width: 1280, height: 800 } });
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  await page.goto(app.server.url);
  await page.waitForFunction(() => window.tabnetSimView?.nodes?.length === 4, null, { timeout: 60_000 });
  // Real time: one virtual second per second.
  await page.selectOption('#sim-speed', '1');
});

after(async () => {
  await app?.close();
});

const view = () => page.evaluate(() => window.tabnetSimView);
const virtualNow = async () => (await view()).now;

/** Waits until the simulation's virtual time has passed `ms` more. */
async function runFor(ms) {
  const until = (await virtualNow()) + ms;
  await page.waitForFunction((t) => window.tabnetSimView.now >= t, until, { timeout: 120_000 });
}

const finalized = async () => Math.max(...(await view()).nodes.filter((n) => n.state === 'up').map((n) => n.finalized));

async function rowText(i, cls) {
  return page.textContent(`#sim-nodes-table tr[data-node="${i}"] .${cls}`);
}

test('the simulated subnet finalizes blocks and its replicas execute the same calls', async () => {
  await runFor(3_000);
  const h0 = await finalized();
  assert.ok(h0 >= 2, `finalized height ${h0} after 3 virtual seconds`);
  await runFor(3_000);
  const v = await view();
  assert.ok(Math.max(...v.nodes.map((n) => n.finalized)) > h0, 'the finalized height rises');
  assert.ok(v.stats.calls_executed > 0, 'the clients\' calls were executed');
  assert.equal(v.n, 4);
  assert.equal(v.f, 1);
  assert.match(await page.textContent('#sim-figures'), /n = 4 · f = 1/);
  assert.ok(Number(await rowText(0, 'finalized')) >= h0);
  await page.screenshot({ path: join(SHOTS, 'subnet-1280x800.png') });
});

test('a crashed node shows in the view and the others go on', async () => {
  await page.click('#sim-nodes-table tr[data-node="3"] .crash');
  await page.waitForFunction(() => window.tabnetSimView.nodes[3].state === 'crashed');
  assert.match(await rowText(3, 'state'), /crashed/);
  await page.waitForFunction(() => [...document.querySelectorAll('#sim-captions li')].some((li) => /node 3 crashed/.test(li.textContent)));
  const h = await finalized();
  await runFor(4_000);
  assert.ok((await finalized()) > h, 'three of four nodes still finalize');
  await page.screenshot({ path: join(SHOTS, 'subnet-one-crashed-1280x800.png') });
});

test('with two of four crashed finalization stops, and a restart resumes it', async () => {
  await page.click('#sim-nodes-table tr[data-node="2"] .crash');
  await page.waitForFunction(() => window.tabnetSimView.nodes[2].state === 'crashed');
  // What was under way may still finish; after that, nothing more.
  await runFor(2_000);
  const stopped = await finalized();
  await runFor(4_000);
  assert.equal(await finalized(), stopped, 'two of four cannot finalize');
  await page.click('#sim-nodes-table tr[data-node="2"] .crash'); // now labelled "restart"
  await page.waitForFunction(() => window.tabnetSimView.nodes[2].state === 'up');
  await page.waitForFunction((h) => Math.max(...window.tabnetSimView.nodes.map((n) => n.finalized)) > h + 2, stopped, { timeout: 120_000 });
});

test('a saved run replays exactly', async () => {
  // Stop the clock (step mode), save the run and note where every node is.
  await page.selectOption('#sim-speed', '0');
  const [saved, before] = await page.evaluate(() => [window.tabnetSim.sim.record(), window.tabnetSim.sim.view()]);
  const original = JSON.parse(before);
  await page.setInputFiles('#sim-replay', { name: 'run.json', mimeType: 'application/json', buffer: Buffer.from(saved) });
  await page.waitForFunction(() => window.tabnetSimView.now < 1000);
  // Run the replay to the same virtual time: the same crashes at the same times, the same blocks.
  const replayed = JSON.parse(await page.evaluate((t) => {
    const sim = window.tabnetSim.sim;
    sim.advance(t - sim.now());
    return sim.view();
  }, original.now));
  assert.equal(replayed.now, original.now);
  const summary = (v) => v.nodes.map((n) => [n.state, n.finalized, n.state_hash]);
  assert.deepEqual(summary(replayed), summary(original));
  assert.ok(original.nodes.some((n) => n.state === 'crashed'), 'the run being replayed had crashes in it');
  await page.selectOption('#sim-speed', '1');
});

test('on a phone the view fits the screen', async () => {
  await page.setViewportSize({ width: 390, height: 844 });
  await page.waitForTimeout(300);
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `the page is ${overflow} px wider than the phone's screen`);
  await page.screenshot({ path: join(SHOTS, 'subnet-390x844.png'), fullPage: true });
  await page.setViewportSize({ width: 1280, height: 800 });
});

test('13 nodes run in the view', async () => {
  await page.selectOption('#sim-nodes', '13');
  await page.waitForFunction(() => window.tabnetSimView?.nodes?.length === 13);
  await page.selectOption('#sim-speed', '1');
  await runFor(3_000);
  const v = await view();
  assert.equal(v.f, 4);
  assert.ok(Math.max(...v.nodes.map((n) => n.finalized)) >= 1, '13 nodes finalize');
  console.log(`13 nodes: ${await page.evaluate(() => window.tabnetFps)} frames/s in this headless run (figure, not asserted)`);
});

test('no errors on the console', () => {
  assert.deepEqual(errors, []);
});
