// The IC HTTP interface in the page: a request for /api/v2|v3|v4/* from a page that is a node
// of a tab subnet (its address has ?subnet=) is answered by that page's node, so @dfinity/agent
// in the page, with host = location.origin, talks to the tab subnet. Other pages' requests go
// to the network (the native node that serves the app).
self.addEventListener('install', () => self.skipWaiting());
// Control the pages already open at once (from their first load on).
self.addEventListener('activate', (event) => event.waitUntil(self.clients.claim()));

self.addEventListener('fetch', (event) => {
  const url = new URL(event.request.url);
  if (url.origin !== self.location.origin || !/^\/api\/v[234]\//.test(url.pathname) || !event.clientId) return;
  event.respondWith(answer(event, url));
});

// A request body is read up to one byte past the node's cap (MAX_BODY_BYTES in
// crate/node/src/http.rs, 2.25 MiB), never whole: the node answers 413 for a longer one.
const READ_CAP = 2 * 1024 * 1024 + 256 * 1024 + 1;

async function readCapped(request) {
  if (!request.body) return new Uint8Array(0);
  const reader = request.body.getReader();
  const chunks = [];
  let length = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    const room = READ_CAP - length;
    chunks.push(value.length > room ? value.subarray(0, room) : value);
    length += Math.min(value.length, room);
    if (length >= READ_CAP) { reader.cancel(); break; }
  }
  const body = new Uint8Array(length);
  let at = 0;
  for (const c of chunks) { body.set(c, at); at += c.length; }
  return body;
}

async function answer(event, url) {
  const client = await self.clients.get(event.clientId);
  if (!client || !new URL(client.url).searchParams.get('subnet')) return fetch(event.request);
  const body = await readCapped(event.request);
  const channel = new MessageChannel();
  const reply = new Promise((resolve) => { channel.port1.onmessage = (m) => resolve(m.data); });
  client.postMessage(
    { type: 'tabnet-http', method: event.request.method, path: url.pathname, contentType: event.request.headers.get('content-type'), body },
    [channel.port2, body.buffer],
  );
  const r = await reply;
  return new Response(r.status === 202 || r.body.length === 0 ? null : r.body, {
    status: r.status,
    headers: { 'content-type': r.cbor ? 'application/cbor' : 'text/plain; charset=utf-8' },
  });
}
