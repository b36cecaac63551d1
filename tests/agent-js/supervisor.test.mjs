// `tabnet --nodes 4`: a whole subnet in one command. Every node answers under one key and takes
// updates; a node killed is reported with the command that starts it again while the rest go
// on; Ctrl-C (SIGINT to the process group) stops them all.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { Actor, HttpAgent } from '@dfinity/agent';
import { IDL } from '@dfinity/candid';
import { Ed25519KeyIdentity } from '@dfinity/identity';

import { tabnetBin, freePorts, createCanister, installCode, canisterWasm, eventually } from './helpers.mjs';
import { counterIdl, counterInitArg } from './idl.mjs';

/** Pids of the `tabnet node` processes of the subnet in `dir`. */
function nodePids(dir, index = null) {
  const pattern = `tabnet node --dir ${dir} --index ${index ?? ''}`;
  try {
    return execFileSync('pgrep', ['-f', '--', pattern]).toString().trim().split('\n').filter(Boolean).map(Number);
  } catch {
    return []; // pgrep exits 1 when nothing matches
  }
}

test('tabnet --nodes 4 runs a subnet; a killed node is reported and the rest go on; Ctrl-C stops all', { skip: process.env.TABNET_NODES ? 'runs once, without the subnet harness' : false }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tabnet-supervisor-'));
  const port = await freePorts(8);
  const supervisor = spawn(tabnetBin(), ['--nodes', '4', '--port', String(port), '--dir', dir], { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let out = '';
  supervisor.stdout.on('data', (c) => (out += c));
  supervisor.stderr.on('data', (c) => (out += c));
  const exited = new Promise((r) => supervisor.once('exit', (code, signal) => r({ code, signal })));
  try {
    const owner = Ed25519KeyIdentity.generate();
    const agentAt = (k) => HttpAgent.create({ host: `http://127.0.0.1:${port + k}`, identity: owner, shouldFetchRootKey: true, verifyQuerySignatures: true });
    const agents = [];
    for (const k of [0, 1, 2, 3]) {
      await eventually(async () => {
        try {
          agents[k] = await agentAt(k);
          return true;
        } catch {
          return false;
        }
      }, { timeoutMs: 60_000, what: `node ${k} answers (${out})` });
    }
    assert.equal(new Set(agents.map((a) => Buffer.from(a.rootKey).toString('hex'))).size, 1, 'one subnet key');
    assert.match(out, /a subnet of 4 nodes/);
    assert.equal(nodePids(dir).length, 4, 'one process per node');

    const canisterId = await createCanister(agents[2]);
    await installCode(agents[2], canisterId, canisterWasm('counter'), { arg: counterInitArg(IDL, 1) });
    const counter = (k) => Actor.createActor(counterIdl, { agent: agents[k], canisterId });
    assert.equal(await counter(0).inc(), 2n);

    const [pid3] = nodePids(dir, 3);
    process.kill(pid3, 'SIGKILL');
    await eventually(async () => out.includes('node 3 stopped'), { what: `the supervisor reports node 3 (${out})` });
    assert.ok(out.includes(`node --dir ${dir} --index 3`), `it says how to start node 3 again:\n${out}`);
    assert.equal(supervisor.exitCode, null, 'the supervisor goes on');
    assert.equal(await counter(1).inc(), 3n, 'three of four nodes still take updates');

    process.kill(-supervisor.pid, 'SIGINT');
    const { code, signal } = await exited;
    assert.ok(code === 0 || signal === 'SIGINT', `the supervisor ends on Ctrl-C (${code}, ${signal}):\n${out}`);
    await eventually(async () => nodePids(dir).length === 0, { what: 'every node process ended' });
  } finally {
    try {
      process.kill(-supervisor.pid, 'SIGKILL');
    } catch {
      // already gone
    }
    rmSync(dir, { recursive: true, force: true });
  }
});
