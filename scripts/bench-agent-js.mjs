// One update call as unmodified @dfinity/agent sees it end to end (v3 call, certificate
// verified with BLS against the fetched root key), against the node at TABNET_URL.
import fs from 'node:fs';
import { HttpAgent, Actor } from '@dfinity/agent';
import { IDL } from '@dfinity/candid';
import { Ed25519KeyIdentity } from '@dfinity/identity';

const host = process.env.TABNET_URL ?? 'http://127.0.0.1:4943';
const wasm = fs.readFileSync(new URL('../target/canisters/counter.wasm', import.meta.url));
const agent = await HttpAgent.create({ host, shouldFetchRootKey: true, identity: Ed25519KeyIdentity.generate() });

const mgmtIdl = ({ IDL }) => IDL.Service({
  provisional_create_canister_with_cycles: IDL.Func(
    [IDL.Record({ amount: IDL.Opt(IDL.Nat), settings: IDL.Opt(IDL.Null) })],
    [IDL.Record({ canister_id: IDL.Principal })], []),
  install_code: IDL.Func([IDL.Record({
    mode: IDL.Variant({ install: IDL.Null }), canister_id: IDL.Principal,
    wasm_module: IDL.Vec(IDL.Nat8), arg: IDL.Vec(IDL.Nat8),
  })], [], []),
});
const mgmt = Actor.createActor(mgmtIdl, {
  agent, canisterId: 'aaaaa-aa',
  callTransform: (_m, args) => ({ effectiveCanisterId: args[0].canister_id ?? 'rwlgt-iiaaa-aaaaa-aaaaa-cai' }),
});
const { canister_id } = await mgmt.provisional_create_canister_with_cycles({ amount: [1_000_000_000_000n], settings: [] });
await mgmt.install_code({ mode: { install: null }, canister_id, wasm_module: [...wasm], arg: [...IDL.encode([], [])] });

const counter = Actor.createActor(({ IDL }) => IDL.Service({ inc: IDL.Func([], [], []) }), { agent, canisterId: canister_id });
const times = [];
for (let i = 0; i < 30; i++) {
  const t = performance.now();
  await counter.inc();
  times.push(performance.now() - t);
}
times.sort((a, b) => a - b);
console.log(`agent-js update (inc), end to end with certificate verification: ` +
  `p50 ${times[15].toFixed(1)} ms, p90 ${times[27].toFixed(1)} ms over ${times.length} calls`);
