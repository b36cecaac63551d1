// The web app. `/`: a subnet simulated in this tab (www/subnet-view.mjs) and, at #playground,
// the playground (www/playground.mjs) with the node that served the page. `/?subnet=NAME`: this
// tab is a node of a tab subnet, with the playground on it. Each part fetches its own wasm:
// the simulator (pkg-sim), the tab node (pkg), the playground's Candid tooling (pkg-candid).
import { HttpAgent, Actor } from '@dfinity/agent';
import { IDL } from '@dfinity/candid';
import { Principal } from '@dfinity/principal';

const $ = (id) => document.getElementById(id);

async function showNativeNode() {
  $('api-url').textContent = `${location.origin}/api/v2/status`;
  try {
    const [{ describe_status }, response] = await Promise.all([import('../pkg-candid/tabnet_candid_ui.js'), fetch('/api/v2/status')]);
    const bytes = new Uint8Array(await response.arrayBuffer());
    $('native-status').textContent = describe_status(bytes);
  } catch (e) {
    $('native-status').textContent = `no node answers here (${e})`;
  }
}

let playground = null;
/** Mounts the playground the first time it is shown. */
function showPlayground() {
  playground ??= Promise.all([import('./playground.mjs'), showNativeNode()]).then(([{ mountPlayground }]) => mountPlayground($('playground')));
  return playground;
}

// `/?subnet=NAME&nodes=N`: this tab is a node of the tab subnet NAME (N nodes, default 4).
// Through the rendezvous of the native node that served the page, tabs on any machine that
// open this address join one subnet; without one (or with `&signal=local`) the tabs of this
// browser form it among themselves. The subnet forms once N tabs have joined; meanwhile the page
// says how many have.
async function joinSubnet(TabSubnet, name, nodes) {
  const waiting = (text) => {
    window.tabnetWaiting = text;
    $('subnet-status').textContent = text;
  };
  if (new URLSearchParams(location.search).get('signal') !== 'local') {
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    const url = `${scheme}://${location.host}/_/rendezvous/${encodeURIComponent(name)}?nodes=${nodes}`;
    try {
      return [await TabSubnet.join(name, nodes, url, waiting), 'through this server\'s rendezvous'];
    } catch (e) {
      // A refusal (full, another size) is final; no rendezvous at all means a static host.
      if (!String(e).startsWith('no rendezvous answers')) throw e;
    }
  }
  return [await TabSubnet.join(name, nodes, undefined, waiting), 'among the tabs of this browser'];
}

async function runSubnet(name, nodes) {
  $('subnet').hidden = false;
  $('subnet-name').textContent = name;
  let subnet;
  let how;
  let TabSubnet;
  try {
    ({ TabSubnet } = await import('../pkg/tabnet_web.js'));
    [subnet, how] = await joinSubnet(TabSubnet, name, nodes);
  } catch (e) {
    $('subnet-status').textContent = `cannot join: ${e}`;
    return;
  }
  window.tabnetSignaling = how;
  // When the node was ready, in ms since navigation began (the benchmark's page load figure).
  window.tabnetReadyMs = performance.now();
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
  // What this site keeps in the browser, and whether the browser may evict it.
  let storage = 'asking the browser …';
  const showStorage = async () => {
    try {
      const [{ usage, quota }, persisted] = await Promise.all([navigator.storage.estimate(), navigator.storage.persisted()]);
      const mb = (n) => (n / 1e6).toFixed(1);
      storage = `${mb(usage)} MB used of ${mb(quota)} MB allowed (${persisted ? 'persistent' : 'the browser may evict it under pressure'})`;
    } catch (e) {
      storage = `unknown (${e})`;
    }
  };
  showStorage();
  setInterval(showStorage, 5_000);
  // Leaving lets go of this tab's slot: another tab (or this one, reloaded) can take it and go
  // on from what this one kept.
  mountTabView(subnet);
  $('subnet-leave').hidden = false;
  $('subnet-leave').onclick = async () => {
    $('subnet-leave').disabled = true;
    await subnet.leave();
  };
  let shown = 0;
  for (;;) {
    let wait;
    try {
      wait = await subnet.step();
    } catch (e) {
      $('subnet-status').textContent = `this node stopped: ${e}${String(e).includes('left') ? ' (reload to join again)' : ''}`;
      $('subnet-leave').hidden = true;
      return;
    }
    if (Date.now() - shown > 250) {
      shown = Date.now();
      const s = JSON.parse(subnet.status());
      $('subnet-index').textContent = s.index;
      $('subnet-status').textContent =
        `finalized ${s.finalized} · notarized ${s.notarized} · certified ${s.certified}` +
        ` · block-maker rank this round ${s.rank ?? '–'}${s.paused ? ' · PAUSED' : ''}\n` +
        `links: ${s.links.map((l, k) => `${k} ${s.cut[k] ? 'cut' : l}`).join(', ')}\n` +
        `storage: ${storage}\n` + s.events.join('\n');
    }
    // (Sooner when a frame or a call arrives for the node.)
    await subnet.wait(Math.max(1, Math.min(wait, 10)));
  }
}

// The subnet view (as on `/`) of the real tab subnet, from this tab's node: what it knows of
// its peers, its own messages, rounds and rates; the controls of this node and its links only.
// Drawing only: the loop in runSubnet steps the node.
async function mountTabView(subnet) {
  try {
    const { mountSubnetView } = await import('./subnet-view.mjs');
    const me = JSON.parse(subnet.status()).index;
    const peer = (a, b) => (a === me ? b : a);
    const source = {
      me,
      view: () => subnet.view(),
      events: (after) => subnet.events(after),
      pause: (_i, paused) => subnet.pause(paused),
      cut_link: (a, b, cut) => subnet.cut_link(peer(a, b), cut),
      delay_link: (a, b, ms) => subnet.delay_link(peer(a, b), ms),
      byzantine: (_i, mode) => subnet.corrupt_shares(mode === 'bad-shares'),
    };
    window.tabnetSubnetView = null;
    window.tabnetTabView = await mountSubnetView($('subnet-view'), source, new URLSearchParams(location.search), { live: true });
  } catch (e) {
    $('subnet-view').textContent = `the subnet view did not start: ${e}`;
    throw e;
  }
}

// `/`: a whole subnet simulated in this tab (the simulator's own wasm, loaded after first paint).
async function runSimulatedSubnet(params) {
  try {
    const [{ SimSubnet }, { mountSubnetView }] = await Promise.all([import('../pkg-sim/tabnet_web.js'), import('./subnet-view.mjs')]);
    window.tabnetSimView = null;
    window.tabnetSim = await mountSubnetView($('sim-view'), SimSubnet, params);
    // When the view was interactive, in ms since navigation began (the app benchmark's figure).
    window.tabnetInteractiveMs = performance.now();
  } catch (e) {
    $('sim-view').textContent = `the simulator did not start: ${e}`;
    throw e;
  }
}

const params = new URLSearchParams(location.search);
if (!params.get('subnet')) {
  runSimulatedSubnet(params);
} else {
  // DFINITY's agent, for this page's own use against its subnet (host = location.origin).
  window.tabnetAgentJs = { HttpAgent, Actor, IDL, Principal };
  navigator.serviceWorker?.register('/sw.js');
  runSubnet(params.get('subnet'), Number(params.get('nodes') || 4));
}

// On `/` the app has two parts, one shown at a time (#playground or the subnet view): the
// simulation waits while it is not shown.
function showPart() {
  const subnetPage = Boolean(params.get('subnet'));
  const playground = subnetPage || location.hash === '#playground';
  $('sim').hidden = playground;
  $('playground').hidden = !playground;
  $('native').hidden = !playground;
  if (playground) showPlayground();
}
window.addEventListener('hashchange', showPart);
showPart();
