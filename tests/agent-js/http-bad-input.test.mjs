// Bad input over raw HTTP. The interface spec says client errors get a 4xx status ("4xx HTTP
// status for client errors (e.g. malformed request)") and pre-processing rejects (like an
// unknown canister) a 200 with a reject body; the node must answer each and keep serving.
// Statuses asserted here are the ones the replica uses: 400 for a malformed, badly signed or
// expired request, 413 for a body over the 2 MiB ingress limit.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { Actor, Cbor, requestIdOf, IC_REQUEST_DOMAIN_SEPARATOR } from '@dfinity/agent';
import { IDL } from '@dfinity/candid';
import { Ed25519KeyIdentity } from '@dfinity/identity';

import { TabnetNode, makeAgent, deploy, canisterIdFromIndex, canisterIndex } from './helpers.mjs';
import { counterIdl } from './idl.mjs';

let node;
let agent;
let counter;
let canisterId;
const identity = Ed25519KeyIdentity.generate();
const NS_PER_MS = 1_000_000n;

before(async () => {
  node = await TabnetNode.start();
  agent = await makeAgent(node, identity);
  ({ canisterId, actor: counter } = await deploy(agent, 'counter', counterIdl));
});

after(async () => {
  await node?.destroy();
});

/** Expiry `deltaMs` from now, in nanoseconds. */
const expiryIn = (deltaMs) => (BigInt(Date.now()) + BigInt(deltaMs)) * NS_PER_MS;

/** A call to counter.inc signed by `identity`, as the content map and the signed envelope. */
async function signedCall({ expiry = expiryIn(2 * 60_000), method = 'inc', arg = IDL.encode([], []), target = canisterId } = {}) {
  const content = {
    request_type: 'call',
    canister_id: target.toUint8Array(),
    method_name: method,
    arg: new Uint8Array(arg),
    sender: identity.getPrincipal().toUint8Array(),
    ingress_expiry: expiry,
    nonce: crypto.getRandomValues(new Uint8Array(16)),
  };
  const { body } = await identity.transformRequest({ body: content, request: {}, endpoint: 'call' });
  return { content, envelope: body };
}

async function post(kind, body, target = canisterId, version = 'v2') {
  const res = await fetch(`${node.url}/api/${version}/canister/${target.toText()}/${kind}`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/cbor' },
    body,
  });
  return { status: res.status, body: new Uint8Array(await res.arrayBuffer()) };
}

/** The node still answers status and a signature-verified query. */
async function assertStillServing() {
  const res = await fetch(`${node.url}/api/v2/status`);
  assert.equal(res.status, 200);
  await res.arrayBuffer();
  assert.equal(typeof (await counter.get()), 'bigint');
}

test('a well-formed signed call built by hand is accepted (control case)', async () => {
  const before = await counter.get();
  const { envelope } = await signedCall();
  const res = await post('call', Cbor.encode(envelope));
  assert.equal(res.status, 202);
  // The v2 call is asynchronous; the update lands shortly after.
  const deadline = Date.now() + 20_000;
  while ((await counter.get()) === before) {
    assert.ok(Date.now() < deadline, 'the accepted call was never executed');
    await new Promise((r) => setTimeout(r, 200));
  }
});

test('malformed CBOR is a 400', async () => {
  for (const kind of ['call', 'query', 'read_state']) {
    const res = await post(kind, new Uint8Array([0xd9, 0xd9, 0xf7, 0xa1, 0xff, 0x00, 0x13, 0x37]));
    assert.equal(res.status, 400, `${kind}: malformed CBOR`);
  }
  const notCbor = await post('call', new TextEncoder().encode('{"this": "is json"}'));
  assert.equal(notCbor.status, 400);
  const empty = await post('call', new Uint8Array());
  assert.equal(empty.status, 400);
  await assertStillServing();
});

test('well-formed CBOR that is not an envelope is a 400', async () => {
  const res = await post('call', Cbor.encode({ content: { request_type: 'call' } }));
  assert.equal(res.status, 400);
  const wrongType = await post('call', Cbor.encode(['not', 'a', 'map']));
  assert.equal(wrongType.status, 400);
  await assertStillServing();
});

test('a wrong signature is refused with 400 (or 403), never executed', async () => {
  const before = await counter.get();
  const { envelope } = await signedCall();
  const sig = new Uint8Array(envelope.sender_sig);
  sig[0] ^= 0xff;
  const res = await post('call', Cbor.encode({ ...envelope, sender_sig: sig }));
  assert.ok([400, 403].includes(res.status), `status ${res.status}`);
  await assertStillServing();
  assert.equal(await counter.get(), before);
});

test('a sender that does not match the public key is refused', async () => {
  const { content } = await signedCall();
  const other = Ed25519KeyIdentity.generate();
  // Signed correctly by `other`, but the content names `identity` as the sender.
  const sig = await other.sign(new Uint8Array([...IC_REQUEST_DOMAIN_SEPARATOR, ...requestIdOf(content)]));
  const res = await post(
    'call',
    Cbor.encode({ content, sender_pubkey: other.getPublicKey().toDer(), sender_sig: sig }),
  );
  assert.ok([400, 403].includes(res.status), `status ${res.status}`);
  await assertStillServing();
});

test('a non-anonymous sender without a signature is refused', async () => {
  const { content } = await signedCall();
  const res = await post('call', Cbor.encode({ content }));
  assert.ok([400, 403].includes(res.status), `status ${res.status}`);
});

test('an expired ingress_expiry is a 400', async () => {
  const { envelope } = await signedCall({ expiry: expiryIn(-10 * 60_000) });
  const res = await post('call', Cbor.encode(envelope));
  assert.equal(res.status, 400);
  await assertStillServing();
});

test('an ingress_expiry too far in the future is a 400', async () => {
  const { envelope } = await signedCall({ expiry: expiryIn(60 * 60_000) });
  const res = await post('call', Cbor.encode(envelope));
  assert.equal(res.status, 400);
  const v3 = await post('call', Cbor.encode((await signedCall({ expiry: expiryIn(60 * 60_000) })).envelope), canisterId, 'v3');
  assert.equal(v3.status, 400);
  await assertStillServing();
});

test('a body over 2 MiB is a 413', async () => {
  const big = new Uint8Array(2 * 1024 * 1024 + 512 * 1024);
  const { envelope } = await signedCall({ arg: big });
  const res = await post('call', Cbor.encode(envelope));
  assert.equal(res.status, 413);
  await assertStillServing();
});

test('a call to an unknown canister is rejected with reject code 3 and IC0301', async () => {
  const missing = canisterIdFromIndex(canisterIndex(canisterId) + 1000n);
  // v2: "200 HTTP status with non-empty body" carrying the reject.
  const { envelope } = await signedCall({ target: missing });
  const v2 = await post('call', Cbor.encode(envelope), missing);
  assert.equal(v2.status, 200);
  const reject = Cbor.decode(v2.body);
  assert.equal(Number(reject.reject_code), 3);
  assert.equal(reject.error_code, 'IC0301');
  // v3: 200 with status "non_replicated_rejection".
  const v3 = await post('call', Cbor.encode((await signedCall({ target: missing })).envelope), missing, 'v3');
  assert.equal(v3.status, 200);
  const v3Reply = Cbor.decode(v3.body);
  assert.equal(v3Reply.status, 'non_replicated_rejection');
  assert.equal(Number(v3Reply.reject_code), 3);
  assert.equal(v3Reply.error_code, 'IC0301');
  await assertStillServing();
});

test('after all that, agent-js calls still work', async () => {
  const before = await counter.get();
  assert.equal(await counter.inc(), before + 1n);
  const fresh = Actor.createActor(counterIdl, { agent: await makeAgent(node, Ed25519KeyIdentity.generate()), canisterId });
  assert.equal(await fresh.get(), before + 1n);
});
