import { TabnetNode, makeAgent, deploy, canisterIdFromIndex, canisterIndex } from './helpers.mjs';
import { callerIdl, counterIdl, trapIdl } from './idl.mjs';
import { Ed25519KeyIdentity } from '@dfinity/identity';
import { IDL } from '@dfinity/candid';
const E = new Uint8Array(IDL.encode([], []));
const node = await TabnetNode.start();
const steps = process.argv.slice(2);
try {
  const agent = await makeAgent(node, Ed25519KeyIdentity.generate());
  const { actor: caller } = await deploy(agent, 'caller', callerIdl);
  const { canisterId: counterId } = await deploy(agent, 'counter', counterIdl);
  const { canisterId: trapId } = await deploy(agent, 'trap', trapIdl);
  const all = {
    inc: () => caller.call_inc(counterId),
    get: () => caller.call_get(counterId),
    trap: () => caller.call_trap(trapId),
    nomethod: () => caller.call_raw(counterId, 'no_such_method', E, 0n),
    nocan: () => caller.call_raw(canisterIdFromIndex(canisterIndex(counterId) + 1000n), 'inc', E, 0n),
    bounded: () => caller.call_bounded(counterId, 'get', E, 30),
    rand: () => caller.raw_rand(),
    deploy: async () => (await deploy(agent, 'caller', callerIdl)).canisterId.toText(),
    cycles: async () => { const { canisterId } = await deploy(agent, 'caller', callerIdl); return caller.send_cycles(canisterId, 1_000_000_000n, 400_000_000n); },
  };
  for (const s of steps) { console.log(s, JSON.stringify(await all[s](), (_, v) => typeof v === 'bigint' ? String(v) : v).slice(0, 150)); }
} catch (e) { console.log('ERR', e.message.slice(0, 200)); }
await node.destroy();
