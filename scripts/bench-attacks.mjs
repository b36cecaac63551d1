// The hostile-input figures: each attack of issue 10 runs for a while against a real node
// (release build) while a prober asks /api/v2/status every 100 ms; prints, per attack, how
// long status took (p50 and the slowest) and the node's peak resident memory. Goals: status
// under 1 s, memory under 1 GiB. Numbers, not assertions: machines are noisy.
//
//   node scripts/bench-attacks.mjs            (TABNET_BIN defaults to target/release/tabnet)
//   ATTACK_SECONDS=30 node scripts/bench-attacks.mjs
//   ONLY=queries node scripts/bench-attacks.mjs   (the attacks whose name has that word, lone node)
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { spawn } from 'node:child_process';

import { Cbor } from '@dfinity/agent';
import { Ed25519KeyIdentity } from '@dfinity/identity';

import { TabnetNode, TabnetSubnet, makeAgent, deploy, MANAGEMENT_ID, ROOT } from '../tests/agent-js/helpers.mjs';
import { counterIdl, loopIdl } from '../tests/agent-js/idl.mjs';

process.env.TABNET_BIN ??= `${ROOT}/target/release/tabnet`;
const SECONDS = Number(process.env.ATTACK_SECONDS ?? 10);
const ONLY = process.env.ONLY;
const CANDID_BOMB = Uint8Array.from(Buffer.from('4449444c026c0100016d7f0100808080808080808001', 'hex'));
const expiry = () => (BigInt(Date.now()) + 120_000n) * 1_000_000n;

const residentMiB = (pid) => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]) / 1024;

/** Asks `url`/api/v2/status every 100 ms for SECONDS, from a process of its own (so the
 * attack's own work does not delay the measurement); resolves to the sorted times (ms). */
function probeStatus(url) {
  const code = `
    const times = [];
    const until = Date.now() + ${SECONDS * 1000};
    while (Date.now() < until) {
      const t = performance.now();
      try { await (await fetch('${url}/api/v2/status', { signal: AbortSignal.timeout(30000) })).arrayBuffer(); times.push(performance.now() - t); }
      catch { times.push(30000); }
      await new Promise((r) => setTimeout(r, 100));
    }
    console.log(JSON.stringify(times));`;
  return new Promise((ok, fail) => {
    const child = spawn(process.execPath, ['--input-type=module', '-e', code], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (c) => (out += c));
    child.on('exit', (code) => (code === 0 ? ok(JSON.parse(out).sort((a, b) => a - b)) : fail(new Error(`prober failed (${code})`))));
  });
}

/** Runs `attack(stopped)` while probing status; returns the figures. */
async function measure(name, url, pid, attack) {
  let stop = false;
  const running = attack(() => stop);
  const probe = probeStatus(url);
  let rss = residentMiB(pid);
  const sampling = setInterval(() => (rss = Math.max(rss, residentMiB(pid))), 100);
  const times = await probe;
  clearInterval(sampling);
  stop = true;
  await running;
  rss = Math.max(rss, residentMiB(pid));
  const row = { attack: name, 'status p50 ms': times[times.length >> 1].toFixed(1), 'status max ms': times.at(-1).toFixed(1), 'peak RSS MiB': rss.toFixed(0) };
  console.log(JSON.stringify(row));
  return row;
}

/** `n` loops that each repeat `once()` until stopped. */
const loops = (n, once) => (stopped) => Promise.all(Array.from({ length: n }, async () => {
  while (!stopped()) await once().catch(() => {});
}));

const post = (url, path, body, type = 'application/cbor') =>
  fetch(`${url}${path}`, { method: 'POST', headers: { 'Content-Type': type }, body }).then((r) => r.arrayBuffer());

function contentMap(keys) {
  const head = [0xd9, 0xd9, 0xf7, 0xa1, 0x67, ...new TextEncoder().encode('content'), 0xba, keys >>> 24, (keys >>> 16) & 0xff, (keys >>> 8) & 0xff, keys & 0xff];
  const body = new Uint8Array(head.length + keys * 7);
  body.set(head);
  for (let i = 0; i < keys; i++) body.set([0x65, ...new TextEncoder().encode(i.toString(16).padStart(5, '0')), 0xf6], head.length + i * 7);
  return body;
}

/** Keeps `count` connections open to `port`, each having sent `prefix` and nothing more. */
const stalled = (port, count, prefix) => async (stopped) => {
  const open = new Set();
  while (!stopped()) {
    while (open.size < count && !stopped()) {
      const s = net.connect({ host: '127.0.0.1', port });
      s.on('error', () => {});
      s.on('connect', () => s.write(prefix));
      s.resume();
      s.once('close', () => open.delete(s));
      open.add(s);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  for (const s of open) s.destroy();
};

async function attacksOn(node, pid, label) {
  const url = node.url;
  const { port } = new URL(url);
  const identity = Ed25519KeyIdentity.generate();
  const agent = await makeAgent(node, identity);
  const { canisterId, actor: counter } = await deploy(agent, 'counter', counterIdl);
  const call = `/api/v2/canister/${canisterId.toText()}/call`;
  const rows = [];
  const run = async (name, attack) => {
    if (!ONLY || name.includes(ONLY)) rows.push(await measure(`${label}: ${name}`, url, pid, attack));
  };

  // Update latency (synchronous calls, one after another) without and with clients that keep
  // 5-billion-instruction queries running: queries must not hold up rounds.
  const { actor: loop } = await deploy(agent, 'loop', loopIdl);
  for (const clients of [0, 4]) {
    const latencies = [];
    const updates = async (stopped) => {
      while (!stopped()) {
        const t = performance.now();
        await counter.inc();
        latencies.push(performance.now() - t);
      }
    };
    const name = `updates with ${clients} clients looping 5B-instruction queries`;
    await run(name, (stopped) => Promise.all([updates(stopped), loops(clients, () => loop.forever_query())(stopped)]));
    if (latencies.length) {
      latencies.sort((a, b) => a - b);
      const at = (q) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))].toFixed(1);
      console.log(JSON.stringify({ attack: `${label}: ${name}`, updates: latencies.length, 'update p50 ms': at(0.5), 'update p99 ms': at(0.99) }));
    }
  }

  await run('none (baseline)', async () => {});
  const bombQuery = Cbor.encode({ content: { request_type: 'query', canister_id: new Uint8Array(), method_name: 'canister_status', arg: CANDID_BOMB, sender: new Uint8Array([4]), ingress_expiry: expiry() } });
  await run('Candid bomb queries (141 bytes, 8 clients)', loops(8, () => post(url, '/api/v2/canister/aaaaa-aa/query', bombQuery)));
  const signed = async (method, arg) => {
    const content = { request_type: 'call', canister_id: MANAGEMENT_ID.toUint8Array(), method_name: method, arg, sender: identity.getPrincipal().toUint8Array(), ingress_expiry: expiry(), nonce: crypto.getRandomValues(new Uint8Array(16)) };
    return Cbor.encode((await identity.transformRequest({ body: content, request: {}, endpoint: 'call' })).body);
  };
  await run('Candid bomb calls (executed, 4 clients)', loops(4, async () => post(url, call, await signed('provisional_create_canister_with_cycles', CANDID_BOMB))));
  const bigMap = contentMap(300_000);
  await run('2 MB content maps of 300,000 keys (8 clients)', loops(8, () => post(url, call, bigMap)));
  const junk = new Uint8Array(2 * 1024 * 1024).fill(0x41);
  await run('2 MiB junk bodies (64 clients)', loops(64, () => post(url, call, junk)));
  await run('300 clients stalled mid-head, 100 mid-body', async (stopped) => {
    await Promise.all([
      stalled(port, 300, `POST ${call} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/cbor\r\n`)(stopped),
      stalled(port, 100, `POST ${call} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/cbor\r\nContent-Length: 2000000\r\n\r\nxx`)(stopped),
    ]);
  });
  return rows;
}

const rows = [];
const lone = await TabnetNode.start();
try {
  rows.push(...(await attacksOn(lone, lone.process.pid, 'lone node')));
} finally {
  await lone.destroy();
}

if (ONLY) {
  console.table(rows);
  process.exit(0);
}
const subnet = await TabnetSubnet.start(4, undefined, [], 1);
try {
  const pid = subnet.processes[1].pid;
  rows.push(...(await attacksOn(subnet, pid, '4-node subnet, node 1')));
  // Node 1's gossip port: P + N + 1.
  const header = Buffer.alloc(8);
  header.writeUInt32BE(0, 0);
  header.writeUInt32BE(16 << 20, 4);
  rows.push(await measure('4-node subnet, node 1: 300 gossip connections announcing 16 MiB frames', subnet.url, pid, stalled(subnet.port + 4 + 1, 300, header)));
} finally {
  await subnet.destroy();
}
console.table(rows);
