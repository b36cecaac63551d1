import { TabnetNode, makeAgent, deploy, installCode, canisterWasm } from './helpers.mjs';
import { stableIdl, timerIdl } from './idl.mjs';
import { Ed25519KeyIdentity } from '@dfinity/identity';
const node = await TabnetNode.start();
try {
  const agent = await makeAgent(node, Ed25519KeyIdentity.generate());
  const { actor: store, canisterId } = await deploy(agent, 'stable', stableIdl);
  console.log('deployed');
  console.log(await store.put('alpha', 'one'));
  console.log(await store.stable_pages(), await store.upgrades());
  await installCode(agent, canisterId, canisterWasm('stable'), { mode: 'upgrade' });
  console.log(await store.get('alpha'), await store.upgrades(), JSON.stringify(await store.get_heap()));
  const { actor: timer } = await deploy(agent, 'timer', timerIdl);
  await new Promise(r => setTimeout(r, 3000));
  console.log('timer', await timer.count(), await timer.beats(), await timer.now(), BigInt(Date.now())*1000000n);
} catch (e) { console.log('ERR', e.message.slice(0, 300)); }
await node.destroy();
