// The subnet view of a real tab subnet: on `/?subnet=NAME&nodes=4` each tab draws its subnet
// as its own node sees it (`TabSubnet.view()`, the simulated view's JSON): itself with a rising
// finalized height, its peers with the heights their shares showed, its rounds and block tree,
// its own messages in flight; only the controls a real node has (its own pause and shares, its
// links). A tab that leaves shows as not up in the others' views. Four tabs of one browser
// (`&signal=local`); the screenshot goes to target/screenshots/tab-subnet-1280x800.png.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

import { ROOT } from '../agent-js/helpers.mjs';
import { serveApp, openTab as openTabOf, status, finalizedAtLeast } from '../support/tab-subnet.mjs';

const SHOTS = join(ROOT, 'target', 'screenshots');
const SUBNET = `v${Date.now()}`;
let app;
let context;
const errors = [];
const tabs = [];

before(async () => {
  mkdirSync(SHOTS, { recursive: true });
  app = await serveApp();
  context = await app.browser.newContext({ viewport: { width: 1280, height: 800 } });
  context.on('page', (page) => page.on('console', (m) => {
    if (m.type() === 'error') errors.push(`console: ${m.text()}`);
  }));
});

after(async () => {
  await app?.close();
});

const view = (page) => page.evaluate(() => window.tabnetSubnetView);
const viewReady = (page) => page.waitForFunction(() => window.tabnetSubnetView?.n === 4, null, { timeout: 60_000 });

test("each tab's view shows the real subnet from its node", async () => {
  for (let k = 0; k < 4; k++) tabs.push(await openTabOf(context, app.server.url, SUBNET, 4, errors, '&signal=local'));
  await finalizedAtLeast(tabs, 5);
  await Promise.all(tabs.map(viewReady));
  const page = tabs[0];
  const me = (await status(page)).index;
  // Peers' heights are known from their shares; the view's own node goes on finalizing.
  await page.waitForFunction((me) => {
    const v = window.tabnetSubnetView;
    return v.nodes.every((n) => n.state === 'up' && n.finalized > 0) && v.rounds.length > 0 && v.blocks.length > 0 && v.nodes[me].rank != null;
  }, me, { timeout: 30_000, polling: 100 });
  const first = await view(page);
  assert.equal(first.n, 4);
  assert.equal(first.f, 1);
  assert.equal(first.nodes.length, 4);
  assert.equal(first.links.length, 4);
  assert.equal(first.nodes[me].state, 'up');
  assert.equal(first.nodes[me].byzantine, '');
  assert.ok(first.blocks.some((b) => b.finalized), 'the block tree has finalized blocks');
  assert.ok(first.rounds.some((r) => r.finalized != null && r.proposals.length > 0), 'a round shows its proposal and finalization');
  assert.equal(first.stats.bytes_per_s.length, 4);
  await page.waitForFunction((h) => window.tabnetSubnetView.nodes.every((n) => n.finalized > h), first.nodes[me].finalized, { timeout: 30_000, polling: 100 });
  // Its own messages are drawn travelling, to and from it.
  await page.waitForFunction((me) => window.tabnetSubnetView.in_flight.some((m) => m.from === me)
    && window.tabnetSubnetView.in_flight.some((m) => m.to === me), me, { timeout: 10_000, polling: 20 });
  const s = (await view(page)).stats;
  assert.ok(s.blocks_per_s > 0 && s.messages_per_s > 0 && s.bytes_per_s[me] > 0, JSON.stringify(s));
  // Captions come from the node's events.
  await page.waitForFunction(() => [...document.querySelectorAll('#sim-captions li')].some((li) => /finalized height \d+/.test(li.textContent)), null, { timeout: 10_000 });
  // The status text is still there, under the view.
  assert.match(await page.textContent('#subnet-status'), /finalized \d+/);
  await page.screenshot({ path: join(SHOTS, 'tab-subnet-1280x800.png'), fullPage: true });
});

test('only the controls a real node has are shown, and they work', async () => {
  const page = tabs[0];
  const me = (await status(page)).index;
  // No simulation controls (size, seed, speed, step, load, replay), no crash or restart.
  assert.equal(await page.isVisible('#sim-step'), false);
  assert.equal(await page.isVisible('#sim-speed'), false);
  assert.equal(await page.locator('#subnet-view .crash:visible').count(), 0);
  assert.equal(await page.locator('#subnet-view .pause:visible').count(), 1, 'pause: this node only');
  assert.equal(await page.locator('#subnet-view .byzantine:visible').count(), 1, 'Byzantine: this node only');
  const own = page.locator(`#subnet-view tr[data-node="${me}"]`);
  assert.deepEqual(await own.locator('.byzantine option').evaluateAll((os) => os.map((o) => o.value)), ['', 'bad-shares']);
  // Invalid shares, then honest again.
  await own.locator('.byzantine').selectOption('bad-shares');
  await page.waitForFunction((me) => window.tabnetSubnetView.nodes[me].byzantine === 'bad-shares', me);
  assert.equal((await status(page)).corrupt_shares, true);
  await own.locator('.byzantine').selectOption('');
  await page.waitForFunction((me) => window.tabnetSubnetView.nodes[me].byzantine === '', me);
  // Paused, then resumed.
  await own.locator('.pause').click();
  await page.waitForFunction((me) => window.tabnetSubnetView.nodes[me].state === 'paused', me);
  await own.locator('.pause').click();
  await page.waitForFunction((me) => window.tabnetSubnetView.nodes[me].state === 'up', me);
  // Its link to a peer cut: the peer is unreachable from here; restored, up again.
  const peer = Number(await page.locator('#link-b').inputValue());
  assert.notEqual(peer, me);
  await page.click('#link-cut');
  await page.waitForFunction(([me, peer]) => {
    const v = window.tabnetSubnetView;
    return v.links[me][peer].cut && v.links[peer][me].cut && v.nodes[peer].state === 'unreachable';
  }, [me, peer]);
  await page.click('#link-restore');
  await page.waitForFunction(([me, peer]) => !window.tabnetSubnetView.links[me][peer].cut && window.tabnetSubnetView.nodes[peer].state === 'up', [me, peer]);
  await page.selectOption('#link-delay', '200');
  await page.waitForFunction(([me, peer]) => window.tabnetSubnetView.links[me][peer].delay === 200, [me, peer]);
  await page.selectOption('#link-delay', '0');
  assert.deepEqual((await status(page)).delay.filter((d) => d > 0), []);
});

test('a tab that leaves shows as not up in the others', async () => {
  const gone = tabs.pop();
  const index = (await status(gone)).index;
  await gone.evaluate(() => window.tabnetSubnet.leave());
  for (const page of tabs) {
    await page.waitForFunction((k) => window.tabnetSubnetView.nodes[k].state !== 'up', index, { timeout: 30_000, polling: 100 });
    const v = await view(page);
    assert.equal(v.nodes[index].state, 'unreachable');
  }
  // The other three go on, and their views show it.
  const h = Math.max(...(await Promise.all(tabs.map(view))).map((v) => Math.max(...v.nodes.map((n) => n.finalized))));
  await Promise.all(tabs.map((p) => p.waitForFunction((h) => {
    const v = window.tabnetSubnetView;
    return v.nodes.filter((n) => n.state === 'up' && n.finalized > h).length === 3;
  }, h, { timeout: 30_000, polling: 100 })));
  await gone.close();
  assert.deepEqual(errors, []);
});
