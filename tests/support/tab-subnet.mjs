// Shared by the tab-subnet tests and benchmark: tabs of the served app as nodes of a tab
// subnet, and DFINITY's agent-js run inside a tab (through its service worker, to its node).

import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

import { TabnetNode, ROOT } from '../agent-js/helpers.mjs';
import { chromiumArgs } from './browser.mjs';

/** The built web app served by a native node (which is also the tabs' rendezvous), and a
 * headless Chromium: `{ server, browser, close() }`. */
export async function serveApp() {
  const dist = join(ROOT, 'www', 'dist');
  if (!existsSync(join(dist, 'index.html'))) throw new Error(`${dist} is missing: run scripts/build-web.sh`);
  const server = await TabnetNode.start(undefined, ['--www', dist]);
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: chromiumArgs });
  return { server, browser, close: async () => { await browser.close(); await server.destroy(); } };
}

/** Opens a tab that joins the tab subnet `subnet` of `nodes` nodes; resolves once it joined,
 * or waits for the subnet to form (every member joined once).
 * `query`: more of the address (`&signal=local`: only with the tabs of this browser). */
export async function openTab(context, url, subnet, nodes = 4, errors = [], query = '') {
  const page = await context.newPage();
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(`${url}/?subnet=${subnet}&nodes=${nodes}${query}`);
  await page.waitForFunction(() => window.tabnetSubnet !== undefined || window.tabnetWaiting !== undefined, null, { timeout: 60_000 });
  return page;
}

/** A tab's node status (height, links, storage figures...), once it is a node. */
export async function status(page) {
  await page.waitForFunction(() => window.tabnetSubnet !== undefined, null, { timeout: 60_000 });
  return page.evaluate(() => JSON.parse(window.tabnetSubnet.status()));
}

/** Waits until every page in `pages` has finalized at least `height`. If they do not, the
 * error says where each node is, its links and its last events. */
export async function finalizedAtLeast(pages, height, timeout = 60_000) {
  try {
    await Promise.all(pages.map((p) => p.waitForFunction(
      (h) => window.tabnetSubnet !== undefined && JSON.parse(window.tabnetSubnet.status()).finalized >= h, height, { timeout, polling: 100 })));
  } catch (e) {
    const seen = await Promise.all(pages.map((p) => p.evaluate(() => {
      if (window.tabnetSubnet === undefined) return `not a node: ${window.tabnetWaiting ?? document.getElementById('subnet-status')?.textContent}`;
      const s = JSON.parse(window.tabnetSubnet.status());
      const events = JSON.parse(window.tabnetSubnet.events(0)).slice(-12).map((e) => e.text);
      return `node ${s.index}: finalized ${s.finalized}, links ${JSON.stringify(s.links)}, failed ${s.failed ?? 'no'}; last events: ${events.join(' | ')}`;
    }).catch((err) => `(no status: ${err})`)));
    throw new Error(`not every node finalized ${height}: ${e.message}\n${seen.join('\n')}`);
  }
}

/** Runs `body(agentJs, arg)` in `page` once its service worker controls it: an agent there
 * (host = location.origin) talks to the tab subnet through it. */
export async function inPage(page, body, arg) {
  await page.waitForFunction(() => navigator.serviceWorker.controller !== null, null, { timeout: 30_000 });
  return page.evaluate(async ([source, arg]) => {
    const run = new Function('agentJs', 'arg', `return (${source})(agentJs, arg);`);
    return run(window.tabnetAgentJs, arg);
  }, [body.toString(), arg]);
}

/** In a page: an agent on this origin, the counter canister's interface, and the management
 * canister's create and install. */
export const pageSetup = `
  const { HttpAgent, Actor, IDL, Principal } = agentJs;
  const agent = await HttpAgent.create({ host: location.origin, shouldFetchRootKey: true, retryTimes: 0 });
  const counter = (canisterId) => Actor.createActor(({ IDL }) => IDL.Service({
    get: IDL.Func([], [IDL.Nat64], ['query']),
    inc: IDL.Func([], [IDL.Nat64], []),
  }), { agent, canisterId });
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
  const createAndInstall = async (wasm, init) => {
    const { canister_id } = await ic.provisional_create_canister_with_cycles({ amount: [100_000_000_000_000n], settings: [], specified_id: [], sender_canister_version: [] });
    await ic.install_code({ mode: { install: null }, canister_id, wasm_module: new Uint8Array(wasm), arg: new Uint8Array(init), sender_canister_version: [] });
    return canister_id;
  };
`;

/** Runs `source` (the body of an async function that may use what `pageSetup` defines and
 * `arg`) in `page`. */
export function withAgent(page, source, arg) {
  return inPage(page, new Function('agentJs', 'arg', `return (async () => { ${pageSetup}\n${source} })();`), arg);
}
