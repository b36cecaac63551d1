// The web app as a user meets it: the native node serves www/dist (scripts/build-web.sh), a
// headless Chromium (Debian's) opens it, and the playground deploys Motoko compiled in the tab
// and Rust modules from the file input to that node through @dfinity/agent, calls them through
// the forms made from their Candid, upgrades them, shows their cycles and logs, and remembers
// them across a reload. Screenshots go to target/screenshots/.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, writeFileSync, mkdtempSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { gzipSync } from 'node:zlib';
import { chromium } from 'playwright-core';

import { TabnetNode, ROOT, CANISTER_DIR, canisterWasm } from '../agent-js/helpers.mjs';
import { chromiumArgs } from '../support/browser.mjs';

const DIST = join(ROOT, 'www', 'dist');
const SHOTS = join(ROOT, 'target', 'screenshots');
let node;
let browser;
let page;
const errors = [];
const files = mkdtempSync(join(tmpdir(), 'tabnet-web-'));

/** Writes a canister module (gzipped if asked) to a file the page's file input can take. */
function moduleFile(name, { gzip = false } = {}) {
  const path = join(files, `${name}.wasm${gzip ? '.gz' : ''}`);
  writeFileSync(path, gzip ? gzipSync(canisterWasm(name)) : canisterWasm(name));
  return path;
}
const didOf = (name) => readFileSync(join(CANISTER_DIR, `${name}.did`), 'utf8');

before(async () => {
  assert.ok(existsSync(join(DIST, 'index.html')), `${DIST} is missing: run scripts/build-web.sh`);
  mkdirSync(SHOTS, { recursive: true });
  node = await TabnetNode.start(undefined, ['--www', DIST]);
  browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: chromiumArgs });
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  page = await context.newPage();
  page.on('pageerror', (e) => errors.push(`pageerror: ${e.stack ?? e}`));
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(`console: ${m.text()}`);
  });
  await page.goto(`${node.url}/#playground`);
  await page.waitForFunction(() => !document.getElementById('native-status').textContent.startsWith('asking'));
});

after(async () => {
  await browser?.close();
  await node?.destroy();
});

/** Clicks a deploy/upgrade/reinstall button and waits for its section's outcome line. */
async function deploy(button, out) {
  await page.evaluate((id) => { document.getElementById(id).className = 'pg-out'; }, out);
  await page.click(`#${button}`);
  await page.waitForFunction((id) => /\b(ok|err)\b/.test(document.getElementById(id).className), out, { timeout: 180_000 });
  return page.textContent(`#${out}`);
}

/** Fills the text inputs of `method`'s form with `values`, submits it, returns the result. */
async function callMethod(method, values = []) {
  const form = page.locator(`#pg-methods .pg-method[data-method="${method}"]`);
  const inputs = form.locator('input[type=text]');
  for (let k = 0; k < values.length; k++) await inputs.nth(k).fill(values[k]);
  await form.locator('.pg-result').evaluate((el) => { el.textContent = ''; el.className = 'pg-result'; });
  await form.locator('button.pg-call').click();
  await page.waitForFunction((m) => {
    const r = document.querySelector(`#pg-methods .pg-method[data-method="${m}"] .pg-result`);
    return /\b(ok|err)\b/.test(r.className);
  }, method, { timeout: 60_000 });
  return form.locator('.pg-result').textContent();
}

const selectedId = () => page.$eval('#pg-canisters li.pg-on', (li) => li.dataset.id);
const select = (id) => page.click(`#pg-canisters li[data-id="${id}"] .pg-pick`);

test('the page describes the native node that served it', async () => {
  const status = await page.textContent('#native-status');
  assert.match(status, /root_key: 133 bytes/);
  assert.match(status, /impl_version:/);
});

let motokoId;

test('a Motoko program that does not compile shows its errors with line numbers', async () => {
  const good = await page.inputValue('#pg-source');
  await page.fill('#pg-source', 'persistent actor {\n  public func f() : async Nat { "x" };\n};\n');
  const out = await deploy('pg-mo-deploy', 'pg-mo-out');
  assert.match(out, /does not compile/);
  assert.match(out, /Main\.mo:2:\d+: error M0050/);
  assert.equal(await page.$$eval('#pg-canisters li[data-id]', (l) => l.length), 0, 'no canister was created');
  await page.fill('#pg-source', good);
});

test('the default Motoko program deploys from the editor and answers through its Candid form', async () => {
  const out = await deploy('pg-mo-deploy', 'pg-mo-out');
  assert.match(out, /^Deployed [a-z0-9-]+-cai/);
  motokoId = await selectedId();
  const timing = await page.evaluate(() => window.tabnetPlayground);
  console.log(`Motoko compiler loaded in ${timing.compilerLoadMs} ms; compiles took ${timing.compileMs.join(', ')} ms`);
  // The form knows the modes from the compiler's Candid.
  assert.match(await page.textContent('.pg-method[data-method="greet"] .pg-mode'), /query/);
  assert.match(await page.textContent('.pg-method[data-method="inc"] .pg-mode'), /update/);
  assert.equal(await callMethod('greet', ['world']), '("Hello, world!")');
  assert.equal(await callMethod('inc'), '(1 : nat)');
  assert.equal(await callMethod('inc'), '(2 : nat)');
  assert.equal(await callMethod('get'), '(2 : nat)');
  // An upgrade keeps the persistent actor's state (enhanced orthogonal persistence).
  assert.match(await deploy('pg-mo-upgrade', 'pg-mo-out'), /^Upgraded /);
  assert.equal(await callMethod('get'), '(2 : nat)');
});

test('the Candid interface is read back from the canister\'s candid:service metadata', async () => {
  await page.click('#pg-panel summary:has-text("Candid interface")');
  await page.fill('#pg-did-edit', '');
  await page.click('#pg-did-apply');
  assert.equal(await page.locator('#pg-methods .pg-method').count(), 0);
  await page.click('#pg-did-fetch');
  await page.waitForFunction(() => /\b(ok|err)\b/.test(document.getElementById('pg-did-out').className) && document.getElementById('pg-did-out').textContent);
  assert.match(await page.textContent('#pg-did-out'), /candid:service/);
  assert.match(await page.inputValue('#pg-did-edit'), /greet: \(name: text\) -> \(text\) query/);
  assert.equal(await callMethod('greet', ['metadata']), '("Hello, metadata!")');
});

test('the canister panel shows status, cycles, burn, module hash and the Debug.print log', async () => {
  await page.waitForFunction(() => document.getElementById('pg-logs').textContent.includes('count is now 2'), null, { timeout: 30_000 });
  const status = await page.textContent('#pg-status');
  assert.match(status, /running/);
  assert.match(await page.textContent('#pg-cycles'), /^\d+\.\d{3} T \(/);
  assert.match(status, /module hash[0-9a-f]{64}/);
  assert.match(status, /controllers2vxsx-fae/); // the anonymous principal controls it
  // Burn is the balance sampled over time.
  await page.waitForFunction(() => /cycles\/min/.test(document.getElementById('pg-burn').textContent), null, { timeout: 30_000 });
  const before = BigInt((await page.textContent('#pg-cycles')).match(/\(([\d,]+)\)/)[1].replaceAll(',', ''));
  await page.fill('#pg-topup-amount', '5000000000000');
  await page.click('#pg-topup');
  await page.waitForFunction((b) => {
    const m = document.getElementById('pg-cycles')?.textContent.match(/\(([\d,]+)\)/);
    return m && BigInt(m[1].replaceAll(',', '')) > BigInt(b) + 4_000_000_000_000n;
  }, String(before), { timeout: 30_000 });
  await page.screenshot({ path: join(SHOTS, 'playground-1280x800.png'), fullPage: true });
});

test('the Candid form makes variants, records, opts and vecs, and shows the typed record it gets back', async () => {
  const counter = await page.inputValue('#pg-source');
  // An actor class: its argument, checked against the compiler's Candid.
  await page.click('#pg-motoko summary:has-text("Arguments of an actor class")');
  await page.fill('#pg-mo-init-arg', '(10)');
  await page.fill('#pg-source', `persistent actor class Shapes(unit : Nat) {
  public type Shape = { #circle : Nat; #rect : { w : Nat; h : Nat } };
  public query func area(s : Shape, scale : ?Nat, tags : [Text]) : async { area : Nat; tags : [Text] } {
    let a = switch s { case (#circle r) 3 * r * r; case (#rect { w; h }) w * h };
    { area = unit * a * (switch scale { case null 1; case (?k) k }); tags }
  };
};
`);
  assert.match(await deploy('pg-mo-deploy', 'pg-mo-out'), /^Deployed /);
  const form = page.locator('.pg-method[data-method="area"]');
  await form.locator('select[aria-label="argument 1"]').selectOption({ label: 'rect' });
  await form.locator('input[aria-label="w"]').fill('3');
  await form.locator('input[aria-label="h"]').fill('4');
  await form.locator('input[aria-label="argument 2: some"]').check();
  await form.locator('input[aria-label="argument 2"]').fill('5');
  await form.locator('button', { hasText: '+ item' }).click();
  await form.locator('button', { hasText: '+ item' }).click();
  await form.locator('input[aria-label="argument 3[0]"]').fill('a "quoted" tag');
  await form.locator('input[aria-label="argument 3[1]"]').fill('b');
  const result = await callMethod('area');
  assert.match(result, /area = 600 : nat/);
  assert.match(result, /tags = vec \{\s*"a \\"quoted\\" tag";\s*"b";?\s*\}/);
  // A number that is not one is refused in the page, before anything is sent.
  await form.locator('input[aria-label="w"]').fill('three');
  assert.match(await callMethod('area'), /w: "three" is not a nat/);
  await page.fill('#pg-source', counter);
  await page.fill('#pg-mo-init-arg', '()');
  await select(motokoId);
});

let rustId;

test('a gzipped Rust module deploys from the file input, is called and upgraded, state kept', async () => {
  await page.setInputFiles('#pg-wasm-file', moduleFile('counter', { gzip: true }));
  await page.fill('#pg-did', didOf('counter'));
  await page.fill('#pg-init-arg', '(opt 41)');
  assert.match(await deploy('pg-wasm-deploy', 'pg-wasm-out'), /^Deployed counter in [a-z0-9-]+-cai/);
  rustId = await selectedId();
  assert.notEqual(rustId, motokoId);
  assert.equal(await callMethod('inc'), '(42 : nat64)');
  assert.equal(await callMethod('get'), '(42 : nat64)');
  // A record, with its field names from the .did.
  assert.match(await callMethod('get_certified'), /record \{\s+certificate = opt blob "[^"]*";\s+count = 42 : nat64;\s+\}/);
  // The counter's post_upgrade takes the same argument: none keeps the saved count.
  await page.setInputFiles('#pg-wasm-file', moduleFile('counter'));
  await page.fill('#pg-init-arg', '()');
  assert.match(await deploy('pg-wasm-upgrade', 'pg-wasm-out'), /^Upgraded counter/);
  assert.equal(await callMethod('get'), '(42 : nat64)');
  assert.equal(await callMethod('inc'), '(43 : nat64)');
  // A reinstall starts over, from the init argument.
  await page.fill('#pg-init-arg', '(opt 100)');
  assert.match(await deploy('pg-wasm-reinstall', 'pg-wasm-out'), /^Reinstalled counter/);
  assert.equal(await callMethod('get'), '(100 : nat64)');
  await page.fill('#pg-init-arg', '()');
});

test('a trap and a bad module show the IC error codes, and the log keeps the trap', async () => {
  await page.setInputFiles('#pg-wasm-file', moduleFile('invalid'));
  await page.fill('#pg-did', '');
  await page.fill('#pg-init-arg', '()');
  assert.match(await deploy('pg-wasm-deploy', 'pg-wasm-out'), /^IC0505 \(reject 5\): /);
  await page.setInputFiles('#pg-wasm-file', moduleFile('trap'));
  await page.fill('#pg-did', didOf('trap'));
  assert.match(await deploy('pg-wasm-deploy', 'pg-wasm-out'), /^Deployed trap/);
  assert.match(await callMethod('boom'), /^IC0503 \(reject 5\): .*boom/);
  assert.match(await callMethod('reject', ['no thanks']), /^IC0406 \(reject 4\): .*no thanks/);
  // A bool argument: the checkbox left unticked is false, no trap.
  assert.match(await callMethod('maybe'), /^\(\d+ : nat64\)$/);
  await page.waitForFunction(() => document.getElementById('pg-logs').textContent.includes('boom'), null, { timeout: 30_000 });
});

test('identities: calls go out as a new Ed25519 identity, kept across reloads', async () => {
  await select(rustId);
  await page.click('#pg-new-identity');
  const principal = await page.inputValue('#pg-identity');
  assert.match(principal, /^[a-z0-9-]{63}$/);
  assert.equal(await callMethod('whoami'), `(principal "${principal}")`);
  await page.selectOption('#pg-identity', 'anonymous');
  assert.equal(await callMethod('whoami'), '(principal "2vxsx-fae")');
  await page.selectOption('#pg-identity', principal);
});

test('after a reload the canisters, the source, the identity and the state are still there', async () => {
  const source = `${await page.inputValue('#pg-source')}// kept across reloads\n`;
  await page.fill('#pg-source', source);
  const identity = await page.inputValue('#pg-identity');
  await page.waitForTimeout(500); // the editor saves after a pause in typing
  await page.reload();
  await page.waitForSelector('#pg-canisters li[data-id]');
  const ids = await page.$$eval('#pg-canisters li[data-id]', (l) => l.map((li) => li.dataset.id));
  assert.ok(ids.includes(motokoId) && ids.includes(rustId), `${ids}`);
  assert.equal(await page.inputValue('#pg-source'), source);
  assert.equal(await page.inputValue('#pg-identity'), identity);
  await select(motokoId);
  assert.equal(await callMethod('get'), '(2 : nat)');
  await select(rustId);
  assert.equal(await callMethod('get'), '(100 : nat64)');
});

test('on a 390 px wide phone nothing overflows sideways', async () => {
  await page.setViewportSize({ width: 390, height: 844 });
  await page.waitForTimeout(300);
  const { scrollWidth, innerWidth } = await page.evaluate(() => ({ scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth }));
  await page.screenshot({ path: join(SHOTS, 'playground-390x844.png'), fullPage: true });
  assert.ok(scrollWidth <= innerWidth, `the page is ${scrollWidth} px wide in a ${innerWidth} px viewport`);
  await page.setViewportSize({ width: 1280, height: 800 });
});

test('on a ?subnet= page the same playground deploys to the tab subnet (the service worker hands it /api/*)', async () => {
  // The same browser profile as the native page: its canisters are the native node's, not
  // listed here.
  const tab = await page.context().newPage();
  tab.on('pageerror', (e) => errors.push(`subnet tab pageerror: ${e.stack ?? e}`));
  tab.on('console', (m) => {
    if (m.type() === 'error') errors.push(`subnet tab console: ${m.text()}`);
  });
  try {
    await tab.goto(`${node.url}/?subnet=playground&nodes=1&signal=local`);
    await tab.waitForSelector('#pg-canisters li');
    assert.equal(await tab.locator('#pg-canisters li[data-id]').count(), 0);
    assert.match(await tab.textContent('#playground'), /deploy it to the tab subnet playground/);
    // Deploy at once: the playground waits for this tab's node to join.
    const outcome = async (id) => {
      try {
        await tab.waitForFunction((i) => /\b(ok|err)\b/.test(document.querySelector(i).className), id, { timeout: 120_000 });
      } catch (e) {
        const state = await tab.evaluate((i) => ({
          outcome: document.querySelector(i).textContent,
          subnet: document.getElementById('subnet-status').textContent,
          controlled: Boolean(navigator.serviceWorker.controller),
          joined: Boolean(window.tabnetSubnet),
        }), id);
        throw new Error(`${e.message}\n${JSON.stringify(state, null, 1)}`);
      }
    };
    await tab.click('#pg-mo-deploy');
    await outcome('#pg-mo-out');
    assert.match(await tab.textContent('#pg-mo-out'), /^Deployed /);
    const greet = tab.locator('.pg-method[data-method="greet"]');
    await greet.locator('input').fill('subnet');
    await greet.locator('button.pg-call').click();
    await outcome('.pg-method[data-method="greet"] .pg-result');
    assert.equal(await greet.locator('.pg-result').textContent(), '("Hello, subnet!")');
    await tab.locator('.pg-method[data-method="inc"] button.pg-call').click();
    await outcome('.pg-method[data-method="inc"] .pg-result');
    assert.equal(await tab.textContent('.pg-method[data-method="inc"] .pg-result'), '(1 : nat)');
    // fetch_canister_logs, a management query, from the tab's node too.
    await tab.waitForFunction(() => document.getElementById('pg-logs').textContent.includes('count is now 1'), null, { timeout: 30_000 });
    assert.equal(await tab.locator('#pg-canisters li[data-id]').count(), 1);
  } finally {
    await tab.close();
  }
});

test('no console errors and no uncaught exceptions', () => {
  assert.deepEqual(errors, []);
});
