// The web app: shows the native node that served the page, and runs a node in this tab.
import { TabNode, TabSubnet } from '../pkg/tabnet_web.js';
import { HttpAgent, Actor } from '@dfinity/agent';
import { IDL } from '@dfinity/candid';
import { Principal } from '@dfinity/principal';

const $ = (id) => document.getElementById(id);

async function showNativeNode() {
  $('api-url').textContent = `${location.origin}/api/v2/status`;
  try {
    const response = await fetch('/api/v2/status');
    const bytes = new Uint8Array(await response.arrayBuffer());
    $('native-status').textContent = TabNode.describe_status(bytes);
  } catch (e) {
    $('native-status').textContent = `no node answers here (${e})`;
  }
}

const node = new TabNode(BigInt(Date.now()) * 1_000_000n);
let canisterId = null;

function show(outcome) {
  const el = $('result');
  el.className = outcome.ok ? '' : 'err';
  el.textContent = outcome.ok ? outcome.reply : `${outcome.error_code} (reject ${outcome.reject_code}): ${outcome.message}`;
  refresh();
}

function refresh() {
  if (!canisterId) return;
  $('canister').textContent = node.canister_status(canisterId, now());
  $('logs').textContent = node.logs(canisterId, now()).join('\n');
}

function now() { return BigInt(Date.now()) * 1_000_000n; }

async function moduleBytes() {
  const file = $('wasm-file').files[0];
  if (!file) throw new Error('choose a .wasm file first');
  return new Uint8Array(await file.arrayBuffer());
}

async function install(mode) {
  try {
    show(node.install_code(canisterId, mode, await moduleBytes(), '()', now()));
  } catch (e) {
    show({ ok: false, error_code: '', reject_code: '', message: String(e) });
  }
}

$('create').onclick = () => {
  canisterId = node.create_canister(now());
  for (const id of ['install', 'upgrade', 'reinstall', 'update', 'query']) $(id).disabled = false;
  show({ ok: true, reply: `created ${canisterId}` });
};
$('install').onclick = () => install('install');
$('upgrade').onclick = () => install('upgrade');
$('reinstall').onclick = () => install('reinstall');
$('update').onclick = () => show(node.update(canisterId, $('method').value, $('arg').value, now()));
$('query').onclick = () => show(node.query(canisterId, $('method').value, $('arg').value, now()));

// Timers and heartbeats run in rounds, as on the IC.
setInterval(() => { node.tick(now()); refresh(); }, 500);
showNativeNode();

// `/?subnet=NAME&nodes=N`: this tab is a node of the tab subnet NAME (N nodes, default 4).
async function runSubnet(name, nodes) {
  $('subnet').hidden = false;
  $('subnet-name').textContent = name;
  let subnet;
  try {
    subnet = await TabSubnet.join(name, nodes);
  } catch (e) {
    $('subnet-status').textContent = `cannot join: ${e}`;
    return;
  }
  window.tabnetSubnet = subnet;
  // The service worker hands this page's /api/* requests to its node.
  navigator.serviceWorker?.addEventListener('message', async (event) => {
    if (event.data?.type !== 'tabnet-http') return;
    const { method, path, contentType, body } = event.data;
    let r;
    try {
      r = await subnet.http(method, path, contentType ?? undefined, body);
    } catch (e) {
      r = { status: 500, cbor: false, body: new TextEncoder().encode(String(e)) };
    }
    event.ports[0].postMessage(r, [r.body.buffer]);
  });
  let shown = 0;
  for (;;) {
    let wait;
    try {
      wait = await subnet.step();
    } catch (e) {
      $('subnet-status').textContent = `this node stopped: ${e}`;
      return;
    }
    if (Date.now() - shown > 250) {
      shown = Date.now();
      const s = JSON.parse(subnet.status());
      $('subnet-index').textContent = s.index;
      $('subnet-status').textContent =
        `finalized ${s.finalized} · notarized ${s.notarized} · certified ${s.certified}\n` +
        `links: ${s.links.map((l, k) => `${k} ${l}`).join(', ')}\n` + s.events.slice(-8).join('\n');
    }
    await new Promise((resolve) => setTimeout(resolve, Math.max(1, Math.min(wait, 10))));
  }
}

const params = new URLSearchParams(location.search);
if (params.get('subnet')) {
  // DFINITY's agent, for this page's own use against its subnet (host = location.origin).
  window.tabnetAgentJs = { HttpAgent, Actor, IDL, Principal };
  navigator.serviceWorker?.register('/sw.js');
  runSubnet(params.get('subnet'), Number(params.get('nodes') || 4));
}
