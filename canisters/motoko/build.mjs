// Compiles the Motoko test canisters with the `motoko` npm package (no dfx, no network) and
// writes target/canisters/motoko_<name>.wasm and .did, plus target/canisters/invalid.wasm.
// Usage: node canisters/motoko/build.mjs   (from anywhere; paths are relative to the repo)
import { createRequire } from 'node:module';
import { readFileSync, writeFileSync, mkdirSync, statSync, readdirSync } from 'node:fs';
import { dirname, join, basename } from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..');
const outDir = join(root, 'target', 'canisters');
mkdirSync(outDir, { recursive: true });

const mtime = (path) => {
  try {
    return statSync(path).mtimeMs;
  } catch {
    return -Infinity;
  }
};

// A module that starts like Wasm (magic and version) but whose first section claims a length
// running far past the end of the file: every validator must reject it.
const INVALID_WASM = Buffer.from([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, 0x01, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x60,
]);
writeFileSync(join(outDir, 'invalid.wasm'), INVALID_WASM);
console.log(`invalid.wasm ${INVALID_WASM.length} bytes`);

const sources = readdirSync(here).filter((f) => f.endsWith('.mo')).sort();
const compilerFiles = [require.resolve('motoko'), require.resolve('motoko/packages/latest/core.json')];
const compilerTime = Math.max(mtime(join(here, 'build.mjs')), ...compilerFiles.map(mtime));

let mo = null;
for (const file of sources) {
  const name = `motoko_${basename(file, '.mo')}`;
  const wasmPath = join(outDir, `${name}.wasm`);
  const didPath = join(outDir, `${name}.did`);
  const src = join(here, file);
  const fresh = Math.min(mtime(wasmPath), mtime(didPath)) > Math.max(mtime(src), compilerTime);
  if (!fresh) {
    if (!mo) {
      mo = require('motoko');
      mo.loadPackage(require('motoko/packages/latest/core.json'));
    }
    mo.write('Main.mo', readFileSync(src, 'utf8'));
    const { wasm, candid } = mo.wasm('Main.mo', 'ic');
    writeFileSync(wasmPath, wasm);
    writeFileSync(didPath, candid);
  }
  console.log(`${name}.wasm ${statSync(wasmPath).size} bytes${fresh ? ' (up to date)' : ''}`);
}
