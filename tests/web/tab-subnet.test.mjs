// Browser tabs are the nodes of a subnet: four tabs of the served app (Debian's Chromium, real
// WebRTC between them, real IndexedDB) form a subnet, run consensus and keep going with one tab
// closed; with two closed they stop, and resume when a tab comes back; reloaded, every tab
// resumes from what it kept.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

import { TabnetNode, ROOT, canisterWasm } from '../agent-js/helpers.mjs';
import { chromiumArgs } from '../support/browser.mjs';

const DIST = join(ROOT, 'www', 'dist');
const SUBNET = `t${Date.now()}`;
let server;
let browser;
let context;
const errors = [];

before(async () => {
  assert.ok(existsSync(join(DIST, 'index.html')), `${DIST} is missing: run scripts/build-web.sh`);
  server = await TabnetNode.start(undefined, ['--www', DIST]);
  browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: chromiumArgs });
  // One profile: the tabs share IndexedDB, Web Locks and BroadcastChannel, as tabs of one browser do.
  context = await browser.newContext();
});

after(async () => {
  await browser?.close();
  await server?.destroy();
});

async function openTab() {
  const page = await context.newPage();
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(`${server.url}/?subnet=${SUBNET}&nodes=4`);
  await page.waitForFunction(() => window.tabnetSubnet !== undefined, null, { timeout: 60_000 });
  return page;
}

const status = (page) => page.evaluate(() => JSON.parse(window.tabnetSubnet.status()));

/** Waits until every page in `pages` has finalized at least `height`. */
async function finalizedAtLeast(pages, height, timeout = 60_000) {
  await Promise.all(pages.map((p) => p.waitForFunction(
    (h) => JSON.parse(window.tabnetSubnet.status()).finalized >= h, height, { timeout, polling: 100 })));
}

let tabs = [];
let canisterId;

test('four tabs form a subnet over WebRTC and finalize blocks', async () => {
  for (let k = 0; k < 4; k++) tabs.push(await openTab());
  const indices = (await Promise.all(tabs.map(status))).map((s) => s.index).sort();
  assert.deepEqual(indices, [0, 1, 2, 3], 'each tab took its own member slot');
  await finalizedAtLeast(tabs, 10);
  for (const s of await Promise.all(tabs.map(status))) {
    assert.equal(s.failed, null);
    assert.equal(s.links.filter((l) => l === 'up').length, 3, `node ${s.index} has a link to each other node: ${s.links}`);
  }
  assert.deepEqual(errors, []);
});

/** Runs `body(agentJs, arg)` in `page` once its service worker controls it: an agent there
 * (host = location.origin) talks to the tab subnet through it. */
async function inPage(page, body, arg) {
  await page.waitForFunction(() => navigator.serviceWorker.controller !== null, null, { timeout: 30_000 });
  return page.evaluate(async ([source, arg]) => {
    const run = new Function('agentJs', 'arg', `return (${source})(agentJs, arg);`);
    return run(window.tabnetAgentJs, arg);
  }, [body.toString(), arg]);
}

/** In a page: an agent on this origin, and the counter canister's and the management canister's interfaces. */
const pageSetup = `
  const { HttpAgent, Actor, IDL, Principal } = agentJs;
  const agent = await HttpAgent.create({ host: location.origin, shouldFetchRootKey: true, retryTimes: 0 });
  const counter = (canisterId) => Actor.createActor(({ IDL }) => IDL.Service({
    get: IDL.Func([], [IDL.Nat64], ['query']),
    inc: IDL.Func([], [IDL.Nat64], []),
  }), { agent, canisterId });
`;

test('agent-js in a tab installs an ic-cdk canister through the service worker; another tab calls it', async () => {
  const wasm = Array.from(canisterWasm('counter'));
  const created = await inPage(tabs[0], new Function('agentJs', 'arg', `return (async () => {
    ${pageSetup}
    const first = Principal.fromText('rwlgt-iiaaa-aaaaa-aaaaa-cai');
    const ic = Actor.createActor(({ IDL }) => IDL.Service({
      provisional_create_canister_with_cycles: IDL.Func([IDL.Record({
        amount: IDL.Opt(IDL.Nat), settings: IDL.Opt(IDL.Record({ controllers: IDL.Opt(IDL.Vec(IDL.Principal)) })),
        specified_id: IDL.Opt(IDL.Principal), sender_canister_version: IDL.Opt(IDL.Nat64) })],
        [IDL.Record({ canister_id: IDL.Principal })], []),
      install_code: IDL.Func([IDL.Record({ mode: IDL.Variant({ install: IDL.Null }), canister_id: IDL.Principal,
        wasm_module: IDL.Vec(IDL.Nat8), arg: IDL.Vec(IDL.Nat8), sender_canister_version: IDL.Opt(IDL.Nat64) })], [], []),
    }), { agent, canisterId: Principal.fromText('aaaaa-aa'), effectiveCanisterId: first,
          callTransform: (_m, args) => ({ effectiveCanisterId: args[0].canister_id ?? first }) });
    const { canister_id } = await ic.provisional_create_canister_with_cycles({ amount: [10_000_000_000_000n], settings: [], specified_id: [], sender_canister_version: [] });
    const init = IDL.encode([IDL.Opt(IDL.Nat64)], [[41n]]);
    await ic.install_code({ mode: { install: null }, canister_id, wasm_module: new Uint8Array(arg), arg: new Uint8Array(init), sender_canister_version: [] });
    const value = await counter(canister_id).inc();
    return [canister_id.toText(), String(value)];
  })();`), wasm);
  const [id, value] = created;
  canisterId = id;
  assert.equal(value, '42', 'the update was answered with its certified reply');
  // Another tab, another node: the same canister, the same state.
  const seen = await inPage(tabs[1], new Function('agentJs', 'arg', `return (async () => {
    ${pageSetup}
    const c = counter(arg);
    const before = await c.get();
    const after = await c.inc();
    return [String(before), String(after)];
  })();`), canisterId);
  assert.deepEqual(seen, ['42', '43']);
});

test('a fifth tab finds no free slot', async () => {
  const page = await context.newPage();
  await page.goto(`${server.url}/?subnet=${SUBNET}&nodes=4`);
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
  const count = await inPage(tabs[3], new Function('agentJs', 'arg', `return (async () => {
    ${pageSetup}
    return String(await counter(arg).inc());
  })();`), canisterId);
  assert.equal(count, '44', 'the counter kept its count (43) across every tab reloading');
  assert.deepEqual(errors, []);
});
