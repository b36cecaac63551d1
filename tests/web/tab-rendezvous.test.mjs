// Tabs on different machines form one subnet through the rendezvous of the native node that
// serves the app: four tabs, each in its own browser profile (no shared IndexedDB, Web Locks or
// BroadcastChannel, as on four laptops), find each other only through
// `/_/rendezvous/<subnet>`, link over real WebRTC and run the subnet; agent-js in one installs a
// canister that another calls; with one closed it goes on, with two it stops; a fresh profile
// cannot take a slot (each belongs to its member's node key), and a member's profile opening
// the page again takes its own slot back and the subnet resumes with the canister's state.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { canisterWasm } from '../agent-js/helpers.mjs';
import { serveApp, openTab, status, finalizedAtLeast, withAgent } from '../support/tab-subnet.mjs';

const SUBNET = `r${Date.now()}`;
let app;
let server;
let browser;
const errors = [];
const tabs = [];

before(async () => {
  app = await serveApp();
  ({ server, browser } = app);
});

after(async () => {
  await app?.close();
});

/** A tab in a browser profile of its own. */
async function openMachine() {
  const context = await browser.newContext();
  return openTab(context, server.url, SUBNET, 4, errors);
}

async function close(page) {
  await page.context().close();
}

let canisterId;

test('four tabs in four separate profiles form a subnet through the rendezvous', async () => {
  for (let k = 0; k < 4; k++) tabs.push(await openMachine());
  const seen = await Promise.all(tabs.map(status));
  assert.deepEqual(seen.map((s) => s.index).sort(), [0, 1, 2, 3], 'the rendezvous gave each its own slot');
  for (const page of tabs) assert.match(await page.evaluate(() => window.tabnetSignaling), /rendezvous/);
  await finalizedAtLeast(tabs, 10, 90_000);
  for (const s of await Promise.all(tabs.map(status))) {
    assert.equal(s.links.filter((l) => l === 'up').length, 3, `node ${s.index} links to each other node: ${s.links}`);
  }
});

test('agent-js in one installs a canister that a tab elsewhere calls', async () => {
  canisterId = await withAgent(tabs[0], `
    const id = await createAndInstall(arg, IDL.encode([IDL.Opt(IDL.Nat64)], [[10n]]));
    await counter(id).inc();
    return id.toText();`, Array.from(canisterWasm('counter')));
  assert.equal(await withAgent(tabs[3], 'return String(await counter(arg).inc());', canisterId), '12');
});

test('a fifth tab is refused: the subnet has its four', async () => {
  const page = await (await browser.newContext()).newPage();
  await page.goto(`${server.url}/?subnet=${SUBNET}&nodes=4`);
  await page.waitForFunction(() => document.getElementById('subnet-status').textContent.startsWith('cannot join'), null, { timeout: 30_000 });
  assert.match(await page.textContent('#subnet-status'), /has all its 4 members/);
  await close(page);
});

test('one gone, it goes on; two gone, it stops; a stranger finds no slot; a member back on its machine resumes it', async () => {
  // One machine gone (its profile closed).
  await close(tabs.pop());
  const top = Math.max(...(await Promise.all(tabs.map(status))).map((s) => s.finalized));
  await finalizedAtLeast(tabs, top + 10, 60_000);
  // Another's tab closed; its profile, with its node key, stays.
  const returning = tabs.pop();
  const { index } = await status(returning);
  await returning.close();
  await new Promise((r) => setTimeout(r, 3_000));
  const stopped = (await Promise.all(tabs.map(status))).map((s) => s.finalized);
  await new Promise((r) => setTimeout(r, 4_000));
  assert.deepEqual((await Promise.all(tabs.map(status))).map((s) => s.finalized), stopped, 'two of four cannot finalize');
  // A fresh profile cannot take either free slot: they belong to their members' keys.
  const stranger = await (await browser.newContext()).newPage();
  await stranger.goto(`${server.url}/?subnet=${SUBNET}&nodes=4`);
  await stranger.waitForFunction(() => document.getElementById('subnet-status').textContent.startsWith('cannot join'), null, { timeout: 30_000 });
  assert.match(await stranger.textContent('#subnet-status'), /has all its 4 members/);
  await close(stranger);
  // The member's profile opens the page again: its key, its slot, its state; the subnet resumes.
  const back = await openTab(returning.context(), server.url, SUBNET, 4, errors);
  tabs.push(back);
  assert.equal((await status(back)).index, index, 'the member took its own slot back');
  await finalizedAtLeast(tabs, Math.max(...stopped) + 5, 120_000);
  assert.equal(await withAgent(back, 'return String(await counter(arg).get());', canisterId), '12',
    'the returning member serves the canister state');
  assert.deepEqual(errors, []);
});
