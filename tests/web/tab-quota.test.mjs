// A tab whose site reaches the browser's storage quota: the node says so plainly and stops
// rather than write half of a height; with room again, the reloaded tab goes on from what it
// had committed, its canister's state whole. (Real Chromium, real IndexedDB; the quota is
// lowered through the DevTools protocol, as Chromium's own storage tests do.)
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { canisterWasm } from '../agent-js/helpers.mjs';
import { serveApp, openTab, status, finalizedAtLeast, withAgent } from '../support/tab-subnet.mjs';

const SUBNET = `q${Date.now()}`;
let app;
let server;
let browser;

before(async () => {
  app = await serveApp();
  ({ server, browser } = app);
});

after(async () => {
  await app?.close();
});

test('a full storage quota stops the node plainly, corrupting nothing; with room it goes on', async () => {
  const context = await browser.newContext();
  const errors = [];
  const page = await openTab(context, server.url, SUBNET, 1, errors, '&signal=local');
  await finalizedAtLeast([page], 3);
  const [counterId, bombId] = await withAgent(page, `
    const counterId = await createAndInstall(arg[0], IDL.encode([IDL.Opt(IDL.Nat64)], [[6n]]));
    await counter(counterId).inc();
    const bombId = await createAndInstall(arg[1], IDL.encode([], []));
    return [counterId.toText(), bombId.toText()];`, [Array.from(canisterWasm('counter')), Array.from(canisterWasm('membomb'))]);

  // Leave the site 4 MB more than it uses; then a call dirties 16 MiB of heap in one height.
  const cdp = await context.newCDPSession(page);
  const { usage } = await page.evaluate(() => navigator.storage.estimate());
  await cdp.send('Storage.overrideQuotaForOrigin', { origin: server.url, quotaSize: usage + 4e6 });
  const before = await status(page);
  await withAgent(page, `
    const bomb = Actor.createActor(({ IDL }) => IDL.Service({ fill: IDL.Func([IDL.Nat32], [IDL.Nat64], []) }), { agent, canisterId: arg });
    bomb.fill(16).catch(() => {});  // never answered: the node stops first
    return null;`, bombId);
  await page.waitForFunction(() => JSON.parse(window.tabnetSubnet.status()).failed !== null, null, { timeout: 60_000 });
  const failed = await status(page);
  assert.match(failed.failed, /quota/i, `the node says why it stopped: ${failed.failed}`);
  assert.match(failed.failed, /nothing was written/);
  await page.waitForFunction(() => /this node stopped: .*quota/i.test(document.getElementById('subnet-status').textContent), null, { timeout: 10_000 });
  const stoppedAt = failed.finalized;
  assert.ok(stoppedAt >= before.finalized);

  // Room again: reloaded, the node opens on what it had committed and goes on.
  await cdp.send('Storage.overrideQuotaForOrigin', { origin: server.url });
  await page.reload();
  const back = await status(page);
  assert.equal(back.failed, null);
  assert.ok(back.finalized > 0 && back.finalized <= stoppedAt, `resumed at ${back.finalized}, had stopped at ${stoppedAt}`);
  await finalizedAtLeast([page], stoppedAt + 3);
  const count = await withAgent(page, 'return String(await counter(arg).inc());', counterId);
  assert.equal(count, '8', 'the counter kept its state (7) through the failed write');
  assert.deepEqual(errors, []);
  await context.close();
});
