// Browser tabs are the nodes of a subnet: four tabs of the served app in one browser (Debian's
// Chromium, real WebRTC between them, real IndexedDB), signalling among themselves
// (`&signal=local`: BroadcastChannel, Web Locks), form a subnet, run consensus and keep going
// with one tab closed; with two closed they stop, and resume when a tab comes back; reloaded,
// every tab resumes from what it kept. (tab-rendezvous.test.mjs: tabs in separate browsers.)
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { canisterWasm } from '../agent-js/helpers.mjs';
import { serveApp, openTab as openTabOf, status, finalizedAtLeast, withAgent } from '../support/tab-subnet.mjs';

const SUBNET = `t${Date.now()}`;
let app;
let server;
let browser;
let context;
const errors = [];

before(async () => {
  app = await serveApp();
  ({ server, browser } = app);
  // One profile: the tabs share IndexedDB, Web Locks and BroadcastChannel, as tabs of one browser do.
  context = await browser.newContext();
});

after(async () => {
  await app?.close();
});

const openTab = () => openTabOf(context, server.url, SUBNET, 4, errors, '&signal=local');

let tabs = [];
let canisterId;

test('four tabs form a subnet over WebRTC and finalize blocks', async () => {
  for (let k = 0; k < 3; k++) tabs.push(await openTab());
  // Three of four have joined: the subnet has not formed yet, and the page says so.
  await tabs[2].waitForFunction(() => /3 of 4 have joined/.test(window.tabnetWaiting ?? ''), null, { timeout: 10_000 });
  assert.equal(await tabs[2].evaluate(() => window.tabnetSubnet), undefined);
  tabs.push(await openTab());
  const indices = (await Promise.all(tabs.map(status))).map((s) => s.index).sort();
  assert.deepEqual(indices, [0, 1, 2, 3], 'each tab took its own member slot');
  await finalizedAtLeast(tabs, 10);
  for (const s of await Promise.all(tabs.map(status))) {
    assert.equal(s.failed, null);
    assert.equal(s.links.filter((l) => l === 'up').length, 3, `node ${s.index} has a link to each other node: ${s.links}`);
  }
  assert.deepEqual(errors, []);
});

let motokoId;
test('agent-js in a tab installs an ic-cdk and a Motoko canister through the service worker; another tab calls them', async () => {
  const wasm = Array.from(canisterWasm('counter'));
  const created = await withAgent(tabs[0], `
    const canister_id = await createAndInstall(arg, IDL.encode([IDL.Opt(IDL.Nat64)], [[41n]]));
    const value = await counter(canister_id).inc();
    return [canister_id.toText(), String(value)];`, wasm);
  const [id, value] = created;
  canisterId = id;
  assert.equal(value, '42', 'the update was answered with its certified reply');
  // Another tab, another node: the same canister, the same state.
  const seen = await withAgent(tabs[1], `
    const c = counter(arg);
    const before = await c.get();
    const after = await c.inc();
    return [String(before), String(after)];`, canisterId);
  assert.deepEqual(seen, ['42', '43']);
  // The Motoko twin (moc-compiled, same interface), installed from one tab, called from another.
  motokoId = await withAgent(tabs[0], `
    const id = await createAndInstall(arg, IDL.encode([], []));
    await counter(id).inc();
    return id.toText();`, Array.from(canisterWasm('motoko_counter')));
  const motoko = await withAgent(tabs[2], 'const c = counter(arg); await c.inc(); return String(await c.get());', motokoId);
  assert.equal(motoko, '2', 'the Motoko counter counted a call from each tab');
});

test('a request body over the cap is refused with 413, unread, and the node goes on', async () => {
  await tabs[2].waitForFunction(() => navigator.serviceWorker.controller !== null, null, { timeout: 30_000 });
  const statuses = await tabs[2].evaluate(async (id) => {
    const post = (bytes) => fetch(`/api/v2/canister/${id}/call`, {
      method: 'POST', headers: { 'content-type': 'application/cbor' }, body: new Uint8Array(bytes) });
    const huge = await post(64 * 1024 * 1024);
    const junk = await post(1024);
    return [huge.status, await huge.text(), junk.status];
  }, canisterId);
  assert.equal(statuses[0], 413);
  assert.match(statuses[1], /larger than 2359296 bytes/);
  assert.equal(statuses[2], 400, 'a body within the cap is decoded (and this one is not CBOR)');
  const { finalized } = await status(tabs[2]);
  await finalizedAtLeast([tabs[2]], finalized + 3);
});

const top = async (pages) => Math.max(...(await Promise.all(pages.map(status))).map((s) => s.finalized));

test('fault controls: a lying node, a paused node, cut and slow links; the subnet goes on', async () => {
  // Events stream with numbers and times; the status names this round's rank.
  const events = JSON.parse(await tabs[0].evaluate(() => window.tabnetSubnet.events(0)));
  assert.ok(events.some((e) => /^finalized height \d+$/.test(e.text)), 'finality shows as events');
  assert.ok(events.every((e, k) => e.at > 0 && (k === 0 || e.seq > events[k - 1].seq)));
  // (Its rank this round is known once the round's random beacon is.)
  await tabs[0].waitForFunction(() => Number.isInteger(JSON.parse(window.tabnetSubnet.status()).rank), null, { timeout: 10_000, polling: 20 });
  // One Byzantine node of four (f = 1): its garbled shares are dropped; the others go on.
  await tabs[0].evaluate(() => window.tabnetSubnet.corrupt_shares(true));
  await finalizedAtLeast(tabs, (await top(tabs)) + 10);
  await tabs[0].evaluate(() => window.tabnetSubnet.corrupt_shares(false));
  // One paused: the other three go on; resumed, it catches up.
  await tabs[1].evaluate(() => window.tabnetSubnet.pause(true));
  const others = [tabs[0], tabs[2], tabs[3]];
  await finalizedAtLeast(others, (await top(others)) + 10);
  assert.equal((await status(tabs[1])).paused, true);
  await tabs[1].evaluate(() => window.tabnetSubnet.pause(false));
  await finalizedAtLeast(tabs, await top(tabs));
  // The link between nodes 0 and 1 cut both ways, and frames from 2 to 3 slowed by 200 ms: every
  // node still hears enough of the others.
  const index = await Promise.all(tabs.map(async (p) => (await status(p)).index));
  const byIndex = (k) => tabs[index.indexOf(k)];
  await byIndex(0).evaluate(() => window.tabnetSubnet.cut_link(1, true));
  await byIndex(1).evaluate(() => window.tabnetSubnet.cut_link(0, true));
  await byIndex(2).evaluate(() => window.tabnetSubnet.delay_link(3, 200));
  await finalizedAtLeast(tabs, (await top(tabs)) + 10);
  await byIndex(0).evaluate(() => window.tabnetSubnet.cut_link(1, false));
  await byIndex(1).evaluate(() => window.tabnetSubnet.cut_link(0, false));
  await byIndex(2).evaluate(() => window.tabnetSubnet.delay_link(3, 0));
  await assert.rejects(byIndex(2).evaluate(() => window.tabnetSubnet.cut_link(2, true)), /not a peer/);
});

test('a fifth tab finds no free slot', async () => {
  const page = await context.newPage();
  await page.goto(`${server.url}/?subnet=${SUBNET}&nodes=4&signal=local`);
  await page.waitForFunction(() => document.getElementById('subnet-status').textContent.startsWith('cannot join'), null, { timeout: 30_000 });
  assert.match(await page.textContent('#subnet-status'), /has all its 4 members/);
  await page.close();
});

let closedIndex;
test('with one tab closed the others go on finalizing', async () => {
  const gone = tabs.pop();
  closedIndex = (await status(gone)).index;
  await gone.close();
  const before = Math.max(...(await Promise.all(tabs.map(status))).map((s) => s.finalized));
  await finalizedAtLeast(tabs, before + 10);
});

test('with two closed the subnet stops, and resumes when a tab returns', async () => {
  await tabs.pop().close();
  // Let what was in flight settle, then watch: no new height for a while (n − f = 3 are needed).
  await new Promise((r) => setTimeout(r, 3_000));
  const stopped = (await Promise.all(tabs.map(status))).map((s) => s.finalized);
  await new Promise((r) => setTimeout(r, 4_000));
  const still = (await Promise.all(tabs.map(status))).map((s) => s.finalized);
  assert.deepEqual(still, stopped, 'two of four nodes cannot finalize');
  // A new tab takes over a free slot (the closed tabs' locks were released) with its database.
  tabs.push(await openTab());
  const back = await status(tabs[2]);
  assert.ok(back.index === closedIndex || back.index !== undefined);
  await finalizedAtLeast(tabs, Math.max(...stopped) + 10, 90_000);
});

test('a tab killed while it writes 64 MiB to IndexedDB reopens on the state it had finalized', async () => {
  // membomb's fill(64) makes one height dirty 64 MiB of heap; every node writes it in one
  // IndexedDB transaction. Kill one tab's renderer while that write is under way.
  const victim = tabs[1];
  const watching = victim.waitForFunction(() => JSON.parse(window.tabnetSubnet.status()).storage.writing_bytes > 32 << 20,
    null, { timeout: 120_000, polling: 5 });
  const bomb = await withAgent(tabs[0], `
    const id = await createAndInstall(arg, IDL.encode([], []));
    const actor = Actor.createActor(({ IDL }) => IDL.Service({ fill: IDL.Func([IDL.Nat32], [IDL.Nat64], []) }), { agent, canisterId: id });
    actor.fill(64);  // not awaited: the victim dies while it writes
    return id.toText();`, Array.from(canisterWasm('membomb')));
  await watching;
  const before = await status(victim);
  const cdp = await victim.context().newCDPSession(victim);
  // (A crashed page answers nothing more: don't wait for it.)
  const settle = (promise) => Promise.race([promise.catch(() => {}), new Promise((r) => setTimeout(r, 2_000))]);
  await settle(cdp.send('Page.crash'));
  await settle(victim.close());
  tabs.splice(tabs.indexOf(victim), 1);
  // Reopened, it takes the dead tab's slot and database: the cut-off write left nothing of
  // itself, what came before is whole, and it catches up.
  const reopened = await openTab();
  tabs.push(reopened);
  const back = await status(reopened);
  assert.equal(back.index, before.index, 'the reopened tab is the killed node');
  assert.ok(back.finalized > 0 && back.finalized <= before.finalized + 1, `it resumed from what it had kept (${back.finalized}, was ${before.finalized})`);
  await finalizedAtLeast(tabs, (await top(tabs)) + 5, 120_000);
  const pages = await withAgent(reopened, `
    const actor = Actor.createActor(({ IDL }) => IDL.Service({ heap_pages: IDL.Func([], [IDL.Nat64], ['query']) }), { agent, canisterId: arg });
    return String(await actor.heap_pages());`, bomb);
  assert.ok(Number(pages) >= 1024, `the 64 MiB the canister filled are there (${pages} pages of 64 KiB)`);
});

test('every tab reloaded resumes from what it kept in IndexedDB', async () => {
  tabs.push(await openTab());
  await finalizedAtLeast(tabs, 1);
  const before = await Promise.all(tabs.map(status));
  const top = Math.max(...before.map((s) => s.finalized));
  await Promise.all(tabs.map((p) => p.reload()));
  await Promise.all(tabs.map((p) => p.waitForFunction(() => window.tabnetSubnet !== undefined, null, { timeout: 60_000 })));
  // Right after the reload each node is where it was (not back at genesis) ...
  for (const s of await Promise.all(tabs.map(status))) {
    assert.ok(s.finalized > 0, `node ${s.index} restarted from genesis`);
  }
  // ... and the subnet goes on from there, with the canister's state.
  await finalizedAtLeast(tabs, top + 5, 90_000);
  const count = await withAgent(tabs[3], 'return String(await counter(arg).inc());', canisterId);
  assert.equal(count, '44', 'the counter kept its count (43) across every tab reloading');
  assert.equal(await withAgent(tabs[1], 'return String(await counter(arg).get());', motokoId), '2', 'and so did the Motoko counter');
  assert.deepEqual(errors, []);
});
