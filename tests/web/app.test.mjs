// The web app as a user meets it: the native node serves www/dist (scripts/build-web.sh), a
// headless Chromium (Debian's) opens it, and the node in the tab creates, installs, calls and
// upgrades real canisters through the page's own buttons.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, writeFileSync, mkdtempSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { chromium } from 'playwright-core';

import { TabnetNode, ROOT, canisterWasm } from '../agent-js/helpers.mjs';
import { chromiumArgs } from '../support/browser.mjs';

const DIST = join(ROOT, 'www', 'dist');
let node;
let browser;
let page;
const files = mkdtempSync(join(tmpdir(), 'tabnet-web-'));

/** Writes a canister module to a file the page's file input can take. */
function moduleFile(name) {
  const path = join(files, `${name}.wasm`);
  writeFileSync(path, canisterWasm(name));
  return path;
}

before(async () => {
  assert.ok(existsSync(join(DIST, 'index.html')), `${DIST} is missing: run scripts/build-web.sh`);
  node = await TabnetNode.start(undefined, ['--www', DIST]);
  browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: chromiumArgs });
  page = await browser.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e));
  await page.goto(node.url);
  await page.waitForFunction(() => !document.getElementById('native-status').textContent.startsWith('asking'));
  assert.deepEqual(errors, []);
});

after(async () => {
  await browser?.close();
  await node?.destroy();
});

/** Clicks `button` and returns what the result box then shows. */
async function click(button) {
  await page.evaluate(() => { document.getElementById('result').textContent = ''; });
  await page.click(`#${button}`);
  await page.waitForFunction(() => document.getElementById('result').textContent !== '');
  return page.textContent('#result');
}

/** Calls `method` with the Candid text `arg` by the "call (update)" or "query" button. */
async function call(kind, method, arg) {
  await page.fill('#method', method);
  await page.fill('#arg', arg);
  return click(kind);
}

test('the page describes the native node that served it', async () => {
  const status = await page.textContent('#native-status');
  assert.match(status, /root_key: 133 bytes/);
  assert.match(status, /impl_version:/);
});

test('a Rust canister is created, installed, called and upgraded in the tab', async () => {
  assert.match(await click('create'), /^created [a-z0-9-]+-cai$/);
  await page.setInputFiles('#wasm-file', moduleFile('counter'));
  assert.equal(await click('install'), '()');
  assert.equal(await call('update', 'inc', '()'), '(1 : nat64)');
  assert.equal(await call('update', 'inc', '()'), '(2 : nat64)');
  assert.equal(await call('query', 'get', '()'), '(2 : nat64)');
  assert.equal(await click('upgrade'), '()');
  assert.equal(await call('query', 'get', '()'), '(2 : nat64)');
  const status = await page.textContent('#canister');
  assert.match(status, /status = variant \{ running \}/);
  assert.match(status, /module_hash = opt blob/);
});

test('a trap and a bad module show the IC error codes, and the log keeps the trap', async () => {
  await click('create');
  await page.setInputFiles('#wasm-file', moduleFile('invalid'));
  assert.match(await click('install'), /^IC0505 \(reject 5\)/);
  await page.setInputFiles('#wasm-file', moduleFile('trap'));
  assert.equal(await click('install'), '()');
  assert.match(await call('update', 'boom', '()'), /^IC0503 \(reject 5\): .*boom/);
  await page.waitForFunction(() => document.getElementById('logs').textContent.includes('boom'));
});
