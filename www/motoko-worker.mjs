// The Motoko compiler (moc, from the `motoko` npm package, compiled to JavaScript) in a Web
// Worker, so the page stays responsive while it loads (megabytes) and compiles. The `core`
// package comes from the bundle: nothing is fetched from the network.
//
// Messages in: { id, source }  (the program, Main.mo)
// Messages out: { ready: true, loadMs } once, then { id, ok, wasm, candid, diagnostics, ms }.
// A diagnostic: { line, column, severity ('error' | 'warning'), message, code }.
import { Motoko } from 'motoko/versions/latest/moc.min.js';
import core from 'motoko/packages/latest/core.json';

const started = performance.now();
const directory = `.node-motoko/${core.name}/${core.version}`;
for (const [path, file] of Object.entries(core.files)) Motoko.saveFile(`${directory}/${path}`, file.content);
Motoko.addPackage(core.name, directory);
self.postMessage({ ready: true, loadMs: Math.round(performance.now() - started), version: Motoko.version ?? '' });

const diagnostic = (d) => ({
  line: (d.range?.start?.line ?? 0) + 1,
  column: (d.range?.start?.character ?? 0) + 1,
  severity: d.severity === 1 ? 'error' : d.severity === 2 ? 'warning' : String(d.severity),
  message: d.message,
  code: d.code ?? '',
});

self.onmessage = ({ data: { id, source } }) => {
  const t = performance.now();
  try {
    Motoko.saveFile('Main.mo', source);
    const result = Motoko.compileWasm('ic', 'Main.mo');
    const diagnostics = (result.diagnostics ?? []).map(diagnostic);
    const ms = Math.round(performance.now() - t);
    if (!result.code) {
      self.postMessage({ id, ok: false, diagnostics, ms });
      return;
    }
    const wasm = result.code.wasm.slice();
    self.postMessage({ id, ok: true, wasm, candid: result.code.candid, diagnostics, ms }, [wasm.buffer]);
  } catch (e) {
    self.postMessage({ id, ok: false, diagnostics: [{ line: 0, column: 0, severity: 'error', message: String(e?.message ?? e), code: '' }], ms: 0 });
  }
};
