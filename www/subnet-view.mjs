// The subnet view: a whole subnet simulated in this tab (the deterministic simulator driving
// the real node core and replica, compiled to wasm: `SimSubnet` from pkg-sim/), drawn as it
// runs: nodes and links with messages in flight, the rounds (beacon, proposals by rank, shares,
// notarization, finalization), the block tree, figures and captions; every fault a control.
//
// The page's loop: each animation frame advances the simulation by the wall time since the last
// frame times the speed (capped, so a slow frame cannot snowball), then draws `sim.view()`.
//
// The same view draws a real tab subnet (`{ live: true }`): the source is then this tab's node
// (`TabSubnet.view()`, the same JSON, from what this node knows), nothing is advanced here (the
// page's own loop steps the node), and only the controls a real node has are shown — pause
// this node, cut or slow its links, make it send invalid shares.

const KIND_COLOURS = {
  proposal: '#2f6fdf',
  'beacon-share': '#9b59b6', beacon: '#6c3483',
  'notarization-share': '#e08a00', notarization: '#b35c00',
  'finalization-share': '#1f9d55', finalization: '#116b39',
  'certification-share': '#7f8c8d', ingress: '#c0392b', 'catch-up': '#34495e', sync: '#34495e', other: '#95a5a6',
};
const SPEEDS = [['step', 0], ['1/20', 0.05], ['1/10', 0.1], ['1/4', 0.25], ['1/2', 0.5], ['real time', 1]];
/** At most this much virtual time per frame (ms): a slow frame slows the run rather than jumping. */
const MAX_FRAME_ADVANCE = 100;
const CHART_POINTS = 60;
/** Wall time a frame may spend simulating (ms; a frame at 60 fps lasts 16.7), in slices of SLICE_MS virtual ms. */
const FRAME_BUDGET_MS = 9;
const SLICE_MS = 4;
/** How often the view of a real tab subnet is drawn (ms). */
const LIVE_FRAME_MS = 100;

const el = (tag, { dataset, style, ...props } = {}, ...children) => {
  const e = Object.assign(document.createElement(tag), props);
  Object.assign(e.dataset, dataset ?? {});
  if (style) e.style.cssText = style;
  for (const c of children) e.append(c);
  return e;
};

/** A canvas drawn at the device's pixel ratio; `draw(ctx, width, height)` in CSS pixels. */
function hiDpiCanvas(className, height) {
  const canvas = el('canvas', { className });
  canvas.style.height = `${height}px`;
  const fit = () => {
    const ratio = window.devicePixelRatio || 1;
    const width = canvas.clientWidth;
    if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(height * ratio)) {
      canvas.width = Math.round(width * ratio);
      canvas.height = Math.round(height * ratio);
    }
    const ctx = canvas.getContext('2d');
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    return [ctx, width, height];
  };
  return { canvas, fit };
}

/** A small line chart of the last CHART_POINTS samples of one or more series. */
class Sparkline {
  constructor(title, unit) {
    this.title = title;
    this.unit = unit;
    this.series = [];
    this.value = el('span', { className: 'figure' });
    const { canvas, fit } = hiDpiCanvas('spark', 44);
    this.fit = fit;
    this.root = el('div', { className: 'chart' }, el('div', { className: 'chart-title' }, title, ' ', this.value), canvas);
  }
  push(values) {
    values.forEach((v, i) => {
      this.series[i] ??= [];
      this.series[i].push(v);
      if (this.series[i].length > CHART_POINTS) this.series[i].shift();
    });
    this.series.length = values.length;
  }
  draw(text) {
    this.value.textContent = text;
    const [ctx, w, h] = this.fit();
    ctx.clearRect(0, 0, w, h);
    const all = this.series.flat().filter((v) => v != null);
    const max = Math.max(1e-9, ...all);
    this.series.forEach((s, i) => {
      ctx.strokeStyle = this.series.length > 1 ? nodeColour(i) : '#2f6fdf';
      ctx.lineWidth = 1.5;
      ctx.beginPath();
      s.forEach((v, k) => {
        const x = (k / (CHART_POINTS - 1)) * (w - 2) + 1;
        const y = h - 2 - ((v ?? 0) / max) * (h - 6);
        if (k === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
      });
      ctx.stroke();
    });
  }
}

const nodeColour = (i) => `hsl(${(i * 360) / 13 + 200}, 55%, 45%)`;

function nodePositions(n, w, h) {
  const cx = w / 2, cy = h / 2, r = Math.max(10, Math.min(w, h) / 2 - 46);
  if (n === 1) return [[cx, cy]];
  return Array.from({ length: n }, (_, i) => {
    const a = -Math.PI / 2 + (2 * Math.PI * i) / n;
    return [cx + r * Math.cos(a), cy + r * Math.sin(a)];
  });
}

/** Nodes on a ring with their links and the messages on their way. */
function drawNetwork(ctx, w, h, view, selected) {
  ctx.clearRect(0, 0, w, h);
  const pos = nodePositions(view.n, w, h);
  ctx.lineWidth = 1.2;
  for (let a = 0; a < view.n; a++) {
    for (let b = a + 1; b < view.n; b++) {
      const link = view.links[a][b];
      ctx.strokeStyle = link.cut ? '#d64545' : link.delay > 0 ? '#e0a100' : '#c9d1dc';
      ctx.setLineDash(link.cut ? [4, 4] : []);
      ctx.beginPath();
      ctx.moveTo(...pos[a]);
      ctx.lineTo(...pos[b]);
      ctx.stroke();
      if (link.delay > 0 && !link.cut) {
        ctx.fillStyle = '#8a6d00';
        ctx.font = '11px system-ui, sans-serif';
        ctx.fillText(`+${link.delay} ms`, (pos[a][0] + pos[b][0]) / 2 + 3, (pos[a][1] + pos[b][1]) / 2 - 3);
      }
    }
  }
  ctx.setLineDash([]);
  for (const m of view.in_flight) {
    const span = Math.max(1, m.arrives - m.sent);
    const t = Math.min(1, Math.max(0, (view.now - m.sent) / span));
    const [x0, y0] = pos[m.from], [x1, y1] = pos[m.to];
    ctx.fillStyle = KIND_COLOURS[m.kind] ?? KIND_COLOURS.other;
    ctx.beginPath();
    ctx.arc(x0 + (x1 - x0) * t, y0 + (y1 - y0) * t, m.kind === 'proposal' ? 5 : 3.2, 0, 2 * Math.PI);
    ctx.fill();
  }
  const radius = view.n > 7 ? 22 : 28;
  for (const node of view.nodes) {
    const [x, y] = pos[node.index];
    const down = node.state !== 'up';
    ctx.fillStyle = down ? '#eef0f3' : '#ffffff';
    ctx.strokeStyle = node.byzantine ? '#c0392b' : node.index === selected ? '#1d2330' : nodeColour(node.index);
    ctx.lineWidth = node.byzantine || node.index === selected ? 3.5 : 2.5;
    ctx.beginPath();
    ctx.arc(x, y, radius, 0, 2 * Math.PI);
    ctx.fill();
    ctx.stroke();
    ctx.textAlign = 'center';
    ctx.fillStyle = down ? '#8a93a3' : '#1d2330';
    ctx.font = `bold ${view.n > 7 ? 13 : 15}px system-ui, sans-serif`;
    ctx.fillText(String(node.index), x, y - 2);
    ctx.font = '11px system-ui, sans-serif';
    // Any state but 'up' is down, shown by its name ('crashed', 'paused', 'unreachable' ...).
    ctx.fillText(down ? node.state : `f ${node.finalized}`, x, y + 12);
    if (node.rank != null && !down) {
      // The block-maker rank from this round's random beacon: rank 0 makes the block first.
      ctx.fillStyle = node.rank === 0 ? '#2f6fdf' : '#5a6475';
      ctx.font = 'bold 11px system-ui, sans-serif';
      ctx.fillText(`rank ${node.rank}`, x, y - radius - 6);
    }
    if (node.byzantine) {
      ctx.fillStyle = '#c0392b';
      ctx.font = 'bold 11px system-ui, sans-serif';
      ctx.fillText(node.byzantine, x, y + radius + 13);
    }
    ctx.textAlign = 'start';
  }
  return pos.map(([x, y]) => ({ x, y, r: radius }));
}

/** The last rounds, one row per height: what happened when, from the beacon to finalization. */
function drawRounds(ctx, w, h, view) {
  ctx.clearRect(0, 0, w, h);
  const rounds = view.rounds.slice(-6);
  if (!rounds.length) return;
  const rowH = Math.min(26, h / rounds.length);
  const label = 64;
  let span = 1;
  for (const r of rounds) {
    const start = roundStart(r);
    const end = Math.max(r.finalized ?? 0, r.notarized ?? 0, ...r.finalization_shares.map((s) => s.at), ...r.notarization_shares.map((s) => s.at), ...r.proposals.map((p) => p.at));
    if (start != null) span = Math.max(span, end - start);
  }
  const x = (t, start) => label + ((t - start) / span) * (w - label - 12);
  ctx.font = '11px system-ui, sans-serif';
  rounds.forEach((r, i) => {
    const y = i * rowH + rowH / 2;
    const start = roundStart(r);
    ctx.fillStyle = r.finalized != null ? '#116b39' : r.notarized != null ? '#b35c00' : '#5a6475';
    ctx.fillText(`h ${r.height}`, 4, y + 4);
    if (start == null) return;
    const dot = (t, colour, size) => {
      ctx.fillStyle = colour;
      ctx.beginPath();
      ctx.arc(x(t, start), y, size, 0, 2 * Math.PI);
      ctx.fill();
    };
    ctx.strokeStyle = '#e3e7ee';
    ctx.beginPath();
    ctx.moveTo(label, y);
    ctx.lineTo(w - 8, y);
    ctx.stroke();
    if (r.beacon != null) dot(r.beacon, KIND_COLOURS.beacon, 4);
    for (const p of r.proposals) {
      dot(p.at, KIND_COLOURS.proposal, 5);
      ctx.fillStyle = KIND_COLOURS.proposal;
      ctx.fillText(`r${p.rank}`, x(p.at, start) - 6, y - 7);
    }
    for (const s of r.notarization_shares) dot(s.at, KIND_COLOURS['notarization-share'], 2.5);
    if (r.notarized != null) dot(r.notarized, KIND_COLOURS.notarization, 5);
    for (const s of r.finalization_shares) dot(s.at, KIND_COLOURS['finalization-share'], 2.5);
    if (r.finalized != null) dot(r.finalized, KIND_COLOURS.finalization, 5);
  });
}

const roundStart = (r) => r.beacon ?? r.proposals[0]?.at ?? null;

/** The block tree of the last heights: a column per height, a box per block, finalized ones filled. */
function drawBlocks(ctx, w, h, view) {
  ctx.clearRect(0, 0, w, h);
  const blocks = view.blocks;
  if (!blocks.length) return;
  const heights = [...new Set(blocks.map((b) => b.height))].sort((a, b) => a - b).slice(-12);
  const colW = w / heights.length;
  const where = new Map();
  ctx.font = '10px system-ui, sans-serif';
  heights.forEach((height, c) => {
    const here = blocks.filter((b) => b.height === height).sort((a, b) => a.rank - b.rank);
    here.forEach((b, k) => {
      const bx = c * colW + 4, by = 8 + k * 30, bw = Math.max(18, colW - 10), bh = 22;
      where.set(b.id, [bx, by, bw, bh]);
      ctx.fillStyle = b.finalized ? '#1f9d55' : b.notarized ? '#f3c27a' : '#ffffff';
      ctx.strokeStyle = b.finalized ? '#116b39' : '#8a93a3';
      ctx.lineWidth = 1.2;
      ctx.fillRect(bx, by, bw, bh);
      ctx.strokeRect(bx, by, bw, bh);
      ctx.fillStyle = b.finalized ? '#fff' : '#1d2330';
      if (colW > 34) ctx.fillText(`${b.height}·r${b.rank}`, bx + 3, by + 14);
    });
  });
  ctx.strokeStyle = '#8a93a3';
  for (const b of blocks) {
    const me = where.get(b.id), parent = where.get(b.parent);
    if (!me || !parent) continue;
    ctx.beginPath();
    ctx.moveTo(parent[0] + parent[2], parent[1] + parent[3] / 2);
    ctx.lineTo(me[0], me[1] + me[3] / 2);
    ctx.stroke();
  }
}

/**
 * Mounts the view of a simulated subnet in `root`: `SimSubnet` is the simulator's class (its
 * wasm, loaded after first paint). With `{ live: true }`, `SimSubnet` is instead a real node's
 * source — `{ me, view(), events(after), pause(i, paused), cut_link(a, b, cut),
 * delay_link(a, b, ms), byzantine(i, mode) }`, controls of node `me` and its links only.
 */
export async function mountSubnetView(root, SimSubnet, params, { live = false } = {}) {
  let nodes = Math.min(13, Math.max(1, Number(params.get('nodes')) || 4));
  let seed = Number(params.get('seed')) || 1;
  let sim = live ? SimSubnet : new SimSubnet(seed, nodes);
  const me = live ? SimSubnet.me : null;
  let speed = 0.25;
  let selected = null;
  let shownEvents = 0;

  const nodesSelect = el('select', { id: 'sim-nodes', ariaLabel: 'nodes' });
  for (let k = 1; k <= 13; k++) nodesSelect.append(el('option', { value: k, textContent: `${k} node${k > 1 ? 's' : ''}`, selected: k === nodes }));
  const seedInput = el('input', { id: 'sim-seed', type: 'number', value: seed, min: 0, ariaLabel: 'seed' });
  const speedSelect = el('select', { id: 'sim-speed', ariaLabel: 'speed' });
  for (const [name, s] of SPEEDS) speedSelect.append(el('option', { value: s, textContent: name, selected: s === speed }));
  const stepButton = el('button', { id: 'sim-step', textContent: 'step one event' });
  const loadSelect = el('select', { id: 'sim-load', ariaLabel: 'calls per second' });
  for (const l of [0, 1, 5, 20, 100]) loadSelect.append(el('option', { value: l, textContent: `${l} calls/s`, selected: l === 5 }));
  const saveButton = el('button', { id: 'sim-save', textContent: 'save run' });
  const replayInput = el('input', { id: 'sim-replay', type: 'file', accept: '.json' });
  const replayLabel = el('label', { className: 'button' }, 'replay a run', replayInput);
  const toolbar = el('div', { className: 'toolbar' },
    nodesSelect, el('label', {}, 'seed ', seedInput), el('label', {}, 'speed ', speedSelect), stepButton, loadSelect, saveButton, replayLabel);
  // A real subnet is not a simulation: no size, seed, speed, stepping, load or replay.
  // (`display`, not `hidden`: the toolbar's class sets its display.)
  if (live) toolbar.style.display = 'none';

  const net = hiDpiCanvas('network', 340);
  const rounds = hiDpiCanvas('rounds', 160);
  const tree = hiDpiCanvas('tree', 130);
  const legend = el('div', { className: 'legend' },
    ...Object.entries({ proposal: 'block proposal', beacon: 'beacon', 'notarization-share': 'notarization share', notarization: 'notarized',
      'finalization-share': 'finalization share', finalization: 'finalized' })
      .map(([k, text]) => el('span', {}, el('i', { style: `background:${KIND_COLOURS[k]}` }), text)));
  const figures = el('p', { id: 'sim-figures', className: 'figures' });
  const charts = {
    finality: new Sparkline('finality latency', 'ms'),
    blocks: new Sparkline('blocks/s', ''),
    messages: new Sparkline('messages/s', ''),
    bytes: new Sparkline('bytes/s per node', ''),
  };
  const captions = el('ul', { id: 'sim-captions', className: 'captions' });
  const table = el('table', { id: 'sim-nodes-table', className: 'nodes' });
  const linkA = el('select', { id: 'link-a', ariaLabel: 'link from' });
  const linkB = el('select', { id: 'link-b', ariaLabel: 'link to' });
  const linkCut = el('button', { id: 'link-cut', textContent: 'cut link' });
  const linkRestore = el('button', { id: 'link-restore', textContent: 'restore link' });
  const linkDelay = el('select', { id: 'link-delay', ariaLabel: 'added latency' });
  for (const ms of [0, 50, 200, 500, 1000]) linkDelay.append(el('option', { value: ms, textContent: ms ? `+${ms} ms` : 'no added latency' }));
  const links = el('div', { className: 'toolbar' }, 'link ', linkA, '–', linkB, linkCut, linkRestore, linkDelay);

  root.replaceChildren(
    toolbar,
    el('div', { className: 'sim-grid' },
      el('div', { className: 'panel' }, net.canvas, legend),
      el('div', { className: 'panel' }, el('h3', {}, 'Rounds'), rounds.canvas, el('h3', {}, 'Block tree'), tree.canvas)),
    figures,
    el('div', { className: 'charts' }, ...Object.values(charts).map((c) => c.root)),
    el('div', { className: 'sim-grid' },
      el('div', { className: 'panel' }, el('h3', {}, 'Nodes'), el('div', { className: 'scroll' }, table), links),
      el('div', { className: 'panel' }, el('h3', {}, 'What just happened'), captions)),
  );

  function fillLinkSelects() {
    if (live) {
      // This node's links only.
      linkA.replaceChildren(el('option', { value: me, textContent: `node ${me} (this tab)` }));
      linkA.disabled = true;
      const peers = Array.from({ length: nodes }, (_, k) => k).filter((k) => k !== me);
      linkB.replaceChildren(...peers.map((k) => el('option', { value: k, textContent: `node ${k}` })));
      return;
    }
    for (const [s, v] of [[linkA, 0], [linkB, Math.min(1, nodes - 1)]]) {
      s.replaceChildren(...Array.from({ length: nodes }, (_, k) => el('option', { value: k, textContent: `node ${k}`, selected: k === v })));
    }
  }

  /** Shows `newSim`; a replayed run keeps its recorded load (`replayed`), a new one takes the chosen load. */
  function rebuild(newSim, replayed = false) {
    sim = newSim;
    shownEvents = 0;
    captions.replaceChildren();
    for (const c of Object.values(charts)) c.series = [];
    const view = JSON.parse(sim.view());
    nodes = view.n;
    nodesSelect.value = nodes;
    fillLinkSelects();
    buildTable(view);
    if (!replayed && !live) sim.set_load(Number(loadSelect.value));
  }

  function buildTable(view) {
    table.replaceChildren(el('tr', {}, ...['node', 'state', 'notarized', 'finalized', 'rank', 'counter', ''].map((t) => el('th', { textContent: t }))));
    for (const node of view.nodes) {
      const i = node.index;
      const crash = el('button', { className: 'crash', textContent: 'crash' });
      crash.onclick = () => (JSON.parse(sim.view()).nodes[i].state === 'crashed' ? sim.restart(i) : sim.crash(i));
      const pause = el('button', { className: 'pause', textContent: 'pause' });
      pause.onclick = () => sim.pause(i, JSON.parse(sim.view()).nodes[i].state !== 'paused');
      const byz = el('select', { className: 'byzantine', ariaLabel: `node ${i} behaviour` });
      const modes = live ? [['', 'honest'], ['bad-shares', 'sends invalid shares']]
        : [['', 'honest'], ['equivocate', 'equivocates'], ['withhold', 'withholds'], ['bad-shares', 'sends invalid shares']];
      for (const [v, t] of modes) byz.append(el('option', { value: v, textContent: t }));
      byz.onchange = () => sim.byzantine(i, byz.value);
      // A real node has no crash and restart; and this tab controls only its own node.
      crash.hidden = live;
      pause.hidden = live && i !== me;
      byz.hidden = live && i !== me;
      const row = el('tr', { dataset: { node: i } },
        el('td', { textContent: live && i === me ? `${i} (this tab)` : i }), el('td', { className: 'state' }), el('td', { className: 'notarized' }), el('td', { className: 'finalized' }),
        el('td', { className: 'rank' }), el('td', { className: 'counter' }), el('td', { className: 'actions' }, crash, pause, byz));
      row.onclick = (e) => { if (e.target === row || e.target.tagName === 'TD') selected = selected === i ? null : i; };
      table.append(row);
    }
  }

  function updateTable(view) {
    for (const node of view.nodes) {
      const row = table.querySelector(`tr[data-node="${node.index}"]`);
      if (!row) continue;
      row.querySelector('.state').textContent = node.state + (node.byzantine ? ` (${node.byzantine})` : '');
      row.querySelector('.notarized').textContent = node.notarized;
      row.querySelector('.finalized').textContent = node.finalized;
      row.querySelector('.rank').textContent = node.state === 'up' ? (node.rank ?? '–') : '–';
      row.querySelector('.counter').textContent = node.counter ?? '–';
      row.querySelector('.crash').textContent = node.state === 'crashed' ? 'restart' : 'crash';
      row.querySelector('.pause').textContent = node.state === 'paused' ? 'resume' : 'pause';
      row.querySelector('.pause').disabled = node.state === 'crashed';
      for (const st of ['up', 'crashed', 'paused']) row.classList.toggle(st, node.state === st);
      row.classList.toggle('down', node.state !== 'up');
    }
  }

  const restart = () => {
    seed = Number(seedInput.value) || 0;
    rebuild(new SimSubnet(seed, Number(nodesSelect.value)));
  };
  nodesSelect.onchange = restart;
  seedInput.onchange = restart;
  speedSelect.onchange = () => { speed = Number(speedSelect.value); };
  stepButton.onclick = () => {
    speed = 0;
    speedSelect.value = 0;
    addCaption({ at: sim.now(), text: sim.step_event() }, 'step');
  };
  loadSelect.onchange = () => sim.set_load(Number(loadSelect.value));
  linkCut.onclick = () => sim.cut_link(Number(linkA.value), Number(linkB.value), true);
  linkRestore.onclick = () => sim.cut_link(Number(linkA.value), Number(linkB.value), false);
  linkDelay.onchange = () => sim.delay_link(Number(linkA.value), Number(linkB.value), Number(linkDelay.value));
  saveButton.onclick = () => {
    const blob = new Blob([sim.record()], { type: 'application/json' });
    const a = el('a', { href: URL.createObjectURL(blob), download: `tabnet-run-seed${seed}-${nodes}nodes.json` });
    a.click();
    URL.revokeObjectURL(a.href);
  };
  replayInput.onchange = async () => {
    const file = replayInput.files[0];
    if (!file) return;
    try {
      rebuild(SimSubnet.replay(await file.text()), true);
      addCaption({ at: 0, text: `replaying ${file.name}` }, 'step');
    } catch (e) {
      addCaption({ at: sim.now(), text: `cannot replay ${file.name}: ${e}` }, 'error');
    }
  };

  // A real node's times are the clock's (ms since the epoch), a simulation's virtual ms.
  const timeText = (at) => (live ? new Date(at).toLocaleTimeString() : `${(at / 1000).toFixed(2)} s`);
  function addCaption(event, className = '') {
    captions.prepend(el('li', { className }, el('time', { textContent: timeText(event.at) }), ' ', event.text));
    while (captions.children.length > 40) captions.lastChild.remove();
  }

  rebuild(sim);

  // The frame loop, and its own frame rate (the figure the benchmark reads).
  let last = performance.now();
  let frames = [];
  let carry = 0;
  let lastSample = 0;
  let lastDraw = -Infinity;
  function frame(t) {
    const dt = Math.min(250, t - last);
    last = t;
    frames.push(t);
    while (frames.length && frames[0] < t - 1000) frames.shift();
    window.tabnetFps = frames.length;
    window.tabnetFrames = (window.tabnetFrames ?? 0) + 1;
    requestAnimationFrame(frame);
    // Hidden (another part of the app shown): nothing to draw, and the run waits.
    if (root.offsetParent === null) return;
    // A real node shares this thread with the view: drawn ten times a second, it keeps its
    // throughput (at 60 frames/s, four tabs on two cores lost half their blocks and queries).
    if (live && t - lastDraw < LIVE_FRAME_MS) return;
    lastDraw = t;
    // Advance in slices while this frame's budget lasts: when the tab cannot simulate the subnet
    // in real time, the run slows down rather than the frames.
    // (The simulator counts whole ms; slow motion carries the fractions over.)
    let due = speed > 0 && !live ? Math.min(MAX_FRAME_ADVANCE, dt * speed + carry) : 0;
    while (due >= 1 && performance.now() - t < FRAME_BUDGET_MS) {
      const slice = Math.min(Math.floor(due), SLICE_MS);
      sim.advance(slice);
      due -= slice;
    }
    carry = due < 1 ? due : 0;
    const view = JSON.parse(sim.view());
    if (live) window.tabnetSubnetView = view; else window.tabnetSimView = view;
    const positions = drawNetwork(...net.fit(), view, selected);
    net.positions = positions;
    drawRounds(...rounds.fit(), view);
    drawBlocks(...tree.fit(), view);
    updateTable(view);
    for (const event of JSON.parse(sim.events(shownEvents))) {
      shownEvents = event.seq;
      addCaption(event);
    }
    const s = view.stats;
    const th = view.thresholds;
    figures.textContent = `n = ${view.n} · f = ${view.f} (tolerates ${view.f} faulty) · notarization and finalization need ${th.notarization} shares,` +
      ` the beacon ${th.beacon}, certification ${th.certification} · ` +
      (live ? `as node ${me} (this tab) sees it: its messages, its rounds, its rates · ${s.calls_executed} calls executed here`
        : `virtual time ${(view.now / 1000).toFixed(1)} s · ${s.calls_executed} calls executed`);
    if (view.now - lastSample >= 500 || view.now < lastSample) {
      lastSample = view.now;
      charts.finality.push([s.finality_ms]);
      charts.blocks.push([s.blocks_per_s]);
      charts.messages.push([s.messages_per_s]);
      charts.bytes.push(s.bytes_per_s);
    }
    charts.finality.draw(s.finality_ms == null ? '–' : `${Math.round(s.finality_ms)} ms`);
    charts.blocks.draw(s.blocks_per_s.toFixed(1));
    charts.messages.draw(Math.round(s.messages_per_s).toString());
    charts.bytes.draw(`${(Math.max(0, ...s.bytes_per_s) / 1000).toFixed(1)} kB max`);
  }
  requestAnimationFrame(frame);

  // Clicking a node on the drawing selects its row.
  net.canvas.onclick = (e) => {
    const r = net.canvas.getBoundingClientRect();
    const hit = (net.positions ?? []).findIndex((p) => Math.hypot(p.x - (e.clientX - r.left), p.y - (e.clientY - r.top)) <= p.r);
    selected = hit >= 0 && hit !== selected ? hit : null;
    table.querySelectorAll('tr').forEach((row) => row.classList.toggle('selected', Number(row.dataset.node) === selected && row.dataset.node != null));
  };
  if (live) {
    selected = me;
    table.querySelector(`tr[data-node="${me}"]`)?.classList.add('selected');
  }
  return { get sim() { return sim; } };
}
