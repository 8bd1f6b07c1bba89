// svertka explorer: one page, five views (#zoo, #model/NAME, #conv, #playground, #runs).
// Every number shown comes from the server's JSON API (svertka's own analysis and engines);
// this file only draws. No libraries: tables are HTML, charts SVG, images <canvas>.
"use strict";

const $ = (id) => document.getElementById(id);
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;",
  '"': "&quot;", "'": "&#39;"}[c]));
window.svertkaTimings = {};  // measured times (ms), read by the end-to-end tests

async function api(path, options) {
  const r = await fetch(path, options);
  let body = null;
  try { body = await r.json(); } catch (e) { body = null; }
  if (!r.ok) throw new Error((body && body.error) || `${r.status} ${r.statusText}`);
  return body;
}

// a run's name is its path under --runs: each part encoded, the slashes kept
const runPath = (name) => name.split("/").map(encodeURIComponent).join("/");

function showError(id, err) { $(id).textContent = err ? String(err.message || err) : ""; }

// 12,345,678 (a regex: toLocaleString is slow over a thousand table cells)
const fmtInt = (n) => (n === null || n === undefined) ? "" : String(n).replace(/\B(?=(\d{3})+(?!\d))/g, ",");
function fmtBig(n) {
  if (n === null || n === undefined) return "";
  if (n >= 1e9) return (n / 1e9).toFixed(2) + " G";
  if (n >= 1e6) return (n / 1e6).toFixed(2) + " M";
  if (n >= 1e3) return (n / 1e3).toFixed(1) + " k";
  return String(n);
}
const pct = (v) => (v === null || v === undefined) ? "" : (100 * v).toFixed(2) + "%";
const rfSize = (rf) => Array.isArray(rf.size) ? rf.size.join("x") : String(rf.size);
const shape = (s) => s.join("x");

// colour maps for heat maps: a few stops of matplotlib's viridis and inferno, interpolated
const VIRIDIS = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
const INFERNO = [[0, 0, 4], [87, 16, 110], [188, 55, 84], [249, 142, 9], [252, 255, 164]];
function colour(map, v) {  // v in 0..255
  const x = (v / 255) * (map.length - 1), i = Math.min(Math.floor(x), map.length - 2), f = x - i;
  return map[i].map((c, k) => Math.round(c + f * (map[i + 1][k] - c)));
}

// draw a flat array of uint8 (h x w), grey or through a colour map, onto a canvas of that size, or
// scaled up to ``side`` px with square pixels (so that lines drawn over it stay sharp)
function paint(canvas, pixels, h, w, map, side) {
  const small = side ? document.createElement("canvas") : canvas;
  small.width = w; small.height = h;
  const ctx = small.getContext("2d"), img = ctx.createImageData(w, h);
  for (let i = 0; i < h * w; i++) {
    const rgb = map ? colour(map, pixels[i]) : [pixels[i], pixels[i], pixels[i]];
    img.data.set([rgb[0], rgb[1], rgb[2], 255], 4 * i);
  }
  ctx.putImageData(img, 0, 0);
  if (side) {
    canvas.width = side; canvas.height = Math.round(side * h / w);
    const big = canvas.getContext("2d");
    big.imageSmoothingEnabled = false;
    big.drawImage(small, 0, 0, canvas.width, canvas.height);
  }
}

// --------------------------------------------------------------------------- routing

const pages = {zoo: showZoo, model: showModel, conv: showConv, playground: showPlayground, runs: showRuns};
let leaving = [];  // timers and listeners of the current view, undone when the view changes

function route() {
  leaving.forEach((undo) => undo());
  leaving = [];
  const [page, arg] = (location.hash.slice(1) || "zoo").split("/");
  const name = pages[page] ? page : "zoo";
  document.querySelectorAll(".page").forEach((p) => { p.hidden = p.id !== "page-" + name; });
  document.querySelectorAll("nav a").forEach((a) => a.classList.toggle("active", a.dataset.page === name));
  pages[name](arg ? decodeURIComponent(arg) : undefined);
}
window.addEventListener("hashchange", route);
window.addEventListener("DOMContentLoaded", route);

// --------------------------------------------------------------------------- zoo

let zooData = null;
const ZOO_COLUMNS = [
  ["model", (m) => m.name, "text"], ["family", (m) => m.family, "text"],
  ["params", (m) => m.params], ["MACs", (m) => m.macs],
  ["RF (px)", (m) => Array.isArray(m.rf.size) ? m.rf.size[0] : m.rf.size],
  ["input", (m) => m.input.join("x"), "text"],
  ["top-1 (%)", (m) => m.reference.top1], ["published params", (m) => m.reference.params],
  ["published MACs", (m) => m.reference.macs], ["source", (m) => m.reference.source, "text"],
];
let zooSort = {col: -1, dir: "asc"};

async function showZoo() {
  showError("zoo-error", null);
  try {
    zooData = zooData || await api("/api/zoo");
  } catch (e) { showError("zoo-error", e); return; }
  const thead = $("zoo-table").tHead;
  thead.innerHTML = "<tr>" + ZOO_COLUMNS.map((c, i) => `<th data-col="${i}">${esc(c[0])}</th>`).join("") + "</tr>";
  thead.querySelectorAll("th").forEach((th) => th.addEventListener("click", () => {
    const col = Number(th.dataset.col);
    zooSort = {col, dir: zooSort.col === col && zooSort.dir === "asc" ? "desc" : "asc"};
    zooRows();
  }));
  zooRows();
  zooChart(zooData.chart);
}

function zooRows() {
  const rows = zooData.models.slice();
  if (zooSort.col >= 0) {
    const get = ZOO_COLUMNS[zooSort.col][1], sign = zooSort.dir === "asc" ? 1 : -1;
    rows.sort((a, b) => {
      const x = get(a), y = get(b);
      if (x === null || x === undefined) return 1;   // blanks last, either way
      if (y === null || y === undefined) return -1;
      if (typeof x === "number") return sign * (x - y);
      return sign * (x < y ? -1 : x > y ? 1 : 0);  // code-point order, as Python's sorted
    });
  }
  $("zoo-table").tHead.querySelectorAll("th").forEach((th) => {
    th.dataset.dir = Number(th.dataset.col) === zooSort.col ? zooSort.dir : "";
  });
  $("zoo-table").tBodies[0].innerHTML = rows.map((m) => "<tr>" + ZOO_COLUMNS.map(([, get, kind], i) => {
    const v = get(m);
    if (i === 0) return `<td><a href="#model/${encodeURIComponent(v)}" title="${esc(m.description)}">${esc(v)}</a></td>`;
    if (kind === "text") return `<td class="text">${esc(v ?? "")}</td>`;
    return `<td data-value="${v ?? ""}">${(i === 3 || i === 8) ? fmtBig(v) : fmtInt(v)}</td>`;
  }).join("") + "</tr>").join("");
}

function zooChart(points) {  // top-1 against GMACs (log), bubble area = parameters (Canziani et al. 2016)
  const W = 900, H = 440, L = 60, R = 20, T = 20, B = 50;
  const lx = points.map((p) => Math.log10(p.macs / 1e9)), ys = points.map((p) => p.top1);
  const x0 = Math.floor(Math.min(...lx) * 2) / 2, x1 = Math.ceil(Math.max(...lx) * 2) / 2;
  const y0 = Math.floor(Math.min(...ys) - 2), y1 = Math.ceil(Math.max(...ys) + 1);
  const X = (v) => L + (v - x0) / (x1 - x0) * (W - L - R), Y = (v) => H - B - (v - y0) / (y1 - y0) * (H - T - B);
  const biggest = Math.max(...points.map((p) => p.params));
  const families = [...new Set(points.map((p) => p.family))].sort();
  const hue = (f) => `hsl(${Math.round(360 * families.indexOf(f) / families.length)}, 65%, 50%)`;
  let s = `<svg width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" role="img">`;
  for (let e = Math.ceil(x0); e <= x1; e++) {
    s += `<line x1="${X(e)}" x2="${X(e)}" y1="${T}" y2="${H - B}" stroke="#ddd"/>` +
         `<text x="${X(e)}" y="${H - B + 15}" text-anchor="middle">${Math.pow(10, e)}</text>`;
  }
  for (let v = Math.ceil(y0 / 5) * 5; v <= y1; v += 5) {
    s += `<line x1="${L}" x2="${W - R}" y1="${Y(v)}" y2="${Y(v)}" stroke="#ddd"/>` +
         `<text x="${L - 6}" y="${Y(v) + 4}" text-anchor="end">${v}</text>`;
  }
  points.slice().sort((a, b) => b.params - a.params).forEach((p) => {
    const cx = X(Math.log10(p.macs / 1e9)), cy = Y(p.top1), r = 3 + 28 * Math.sqrt(p.params / biggest);
    s += `<circle cx="${cx}" cy="${cy}" r="${r}" fill="${hue(p.family)}" fill-opacity="0.45" stroke="#333">` +
         `<title>${esc(p.name)}: ${p.top1}% top-1, ${fmtBig(p.macs)}MACs, ${fmtBig(p.params)} params (${esc(p.source)})</title></circle>` +
         `<text x="${cx + 4}" y="${cy - 4}" font-size="9">${esc(p.name)}</text>`;
  });
  families.forEach((f, i) => {
    s += `<circle cx="${W - R - 120}" cy="${H - B - 14 * (families.length - i)}" r="5" fill="${hue(f)}"/>` +
         `<text x="${W - R - 110}" y="${H - B - 14 * (families.length - i) + 4}">${esc(f)}</text>`;
  });
  s += `<text x="${(L + W - R) / 2}" y="${H - 10}" text-anchor="middle">GMACs per image (log scale; FLOPs = 2 x MACs)</text>` +
       `<text transform="translate(14 ${(T + H - B) / 2}) rotate(-90)" text-anchor="middle">ImageNet-1k top-1 (%)</text></svg>`;
  $("zoo-chart").innerHTML = "<h2>Accuracy against cost (bubble area = parameters)</h2>" + s;
}

// --------------------------------------------------------------------------- model

let modelNames = null, samplesList = null;

async function showModel(name) {
  name = name || "lenet5";
  const t0 = performance.now();
  showError("model-error", null);
  showError("rf-error", null);
  $("model-time").textContent = "";
  let m;
  try {
    m = await api("/api/models/" + encodeURIComponent(name));
  } catch (e) { showError("model-error", e); return; }
  const tFetch = performance.now() - t0;
  $("model-head").innerHTML = `<b>${esc(m.name)}</b>: ${esc(m.description)}. Input ${shape(m.input)}, ` +
    `${fmtInt(m.total.params)} parameters, ${fmtInt(m.total.macs)} MACs, receptive field ${rfSize(m.rf)} px, ` +
    `${fmtBig(m.total.activation_bytes)}B of activations at batch 1.`;
  folded = [];
  $("model-diagram").innerHTML = block(m.tree, 0);
  $("model-diagram").addEventListener("toggle", unfold, true);  // toggle does not bubble: capture it
  // rows of a CSS grid rather than a <table>: each row skips layout until it scrolls into view
  // (content-visibility), which a table's rows cannot do; efficientnet_b7 has 713
  $("model-table").innerHTML = '<div class="row head"><span>layer</span><span>type</span><span>output</span>' +
    "<span>params</span><span>MACs</span><span>RF (px)</span><span>RF stride</span></div>" + m.layers.map((l) =>
    `<div class="row layer"><span>${esc(l.name)}</span><span>${esc(l.type)}</span><span>${shape(l.output_shape)}</span>` +
    `<span>${fmtInt(l.params)}</span><span>${fmtInt(l.macs)}</span><span>${l.rf.global ? "global" : rfSize(l.rf)}</span>` +
    `<span>${Array.isArray(l.rf.stride) ? l.rf.stride.join("x") : l.rf.stride}</span></div>`).join("");
  const tBuild = performance.now() - t0;
  document.body.offsetHeight;  // style and layout now, to time them
  const tLayout = performance.now() - t0;
  // rendered: after the browser has painted the page once
  await new Promise((ok) => requestAnimationFrame(() => setTimeout(ok, 0)));
  const ms = performance.now() - t0;
  window.svertkaTimings.model = {name: m.name, ms, layers: m.layers.length, fetch_ms: tFetch, build_ms: tBuild,
                                 layout_ms: tLayout};
  $("model-time").textContent = `page rendered in ${ms.toFixed(0)} ms (${m.layers.length} layers)`;
  fillModelSelect(m.name);
  rfSetup(m);
}

async function fillModelSelect(current) {
  try {
    modelNames = modelNames || await api("/api/models");
  } catch (e) { showError("model-error", e); return; }
  const sel = $("model-select");
  sel.innerHTML = modelNames.map((n) => `<option${n.name === current ? " selected" : ""}>${esc(n.name)}</option>`).join("");
  sel.onchange = () => { location.hash = "model/" + encodeURIComponent(sel.value); };
}

let folded = [];  // the folded Sequentials of the diagram, built on first opening

function unfold(ev) {
  const d = ev.target;
  if (d.tagName !== "DETAILS" || !d.open || d.dataset.folded === undefined) return;
  const n = folded[Number(d.dataset.folded)];
  delete d.dataset.folded;
  d.insertAdjacentHTML("beforeend", n.children.map((k) => block(k, 2)).join('<div class="arrow">&darr;</div>'));
}

function block(n, depth) {  // the spec tree as nested boxes
  const head = `<span class="t">${esc(n.type)}</span> ${esc(n.path)} <span class="shape">${shape(n.out)}</span>`;
  const list = (kids) => kids.map((k) => block(k, depth + 1)).join('<div class="arrow">&darr;</div>');
  if (n.kind === "leaf") return `<div class="leaf" title="${esc(n.args)}">${head}</div>`;
  if (n.kind === "residual") {
    const shortcut = n.shortcut.length ? list(n.shortcut) : '<div class="muted">identity</div>';
    return `<div class="block residual"><div class="kind">Residual ${esc(n.path)}</div>` +
      `<div class="paths"><div class="path">${list(n.body)}</div><div class="side"><div class="muted">shortcut</div>${shortcut}</div></div>` +
      `<div class="join">&oplus; add &rarr; ${shape(n.out)}</div>${n.post.length ? list(n.post) : ""}</div>`;
  }
  if (n.kind === "concat") {
    return `<div class="block concat"><div class="kind">Concat ${esc(n.path)}</div><div class="paths">` +
      n.branches.map((b) => `<div class="path side">${block(b, depth + 1)}</div>`).join("") +
      `</div><div class="join">&#8214; concatenate channels &rarr; ${shape(n.out)}</div></div>`;
  }
  if (n.kind === "gate") {
    return `<div class="block gate"><div class="kind">Gate ${esc(n.path)} (squeeze-and-excitation)</div>` +
      `<div class="paths"><div class="path">${list(n.branch)}</div><div class="side muted">x</div></div>` +
      `<div class="join">&otimes; x &middot; branch(x) &rarr; ${shape(n.out)}</div></div>`;
  }
  // two levels open; deeper, a Sequential starts folded and its blocks are built when it is opened
  if (depth >= 2) {
    folded.push(n);
    return `<details data-folded="${folded.length - 1}"><summary>${head}</summary></details>`;
  }
  return `<details open><summary>${head}</summary>${list(n.children)}</details>`;
}

// receptive-field explorer: click a pixel of a sample image
let rfState = null;

async function rfSetup(m) {
  rfState = {model: m.name, size: m.input.slice(1), y: Math.floor(m.input[1] / 2), x: Math.floor(m.input[2] / 2),
             seq: 0};
  const panel = $("rf-panel");
  panel.hidden = !m.rf_ok || !m.rf_layers.length;
  $("rf-note").textContent = !m.rf_layers.length ? `${m.name} has no local feature map to explore.`
    : !m.rf_ok ? `${m.name} is too large to backpropagate through the NumPy engine at each click here; ` +
      `\`svertka plot rf ${m.name} --layer ${m.rf_layers[0]}\` draws any layer.` : "";
  if (panel.hidden) return;
  const layer = $("rf-layer");
  const mid = m.rf_layers[Math.floor((m.rf_layers.length - 1) * 2 / 3)];  // deep enough to see a field
  layer.innerHTML = m.rf_layers.map((l) => `<option${l === mid ? " selected" : ""}>${esc(l)}</option>`).join("");
  try {
    samplesList = samplesList || await api("/api/samples");
    const runs = (await api("/api/runs")).runs.filter((r) => r.model === m.name && r.weights);
    $("rf-run").innerHTML = '<option value="">random</option>' +
      runs.map((r) => `<option value="${esc(r.name)}">${esc(r.name)}</option>`).join("");
  } catch (e) { showError("rf-error", e); return; }
  $("rf-sample").innerHTML = samplesList.map((s) => `<option value="${s.index}">${esc(s.class)}</option>`).join("");
  [layer, $("rf-sample"), $("rf-run")].forEach((el) => { el.onchange = () => rfQuery(); });
  $("rf-image").onclick = (ev) => {
    const c = $("rf-image"), box = c.getBoundingClientRect();
    rfState.x = Math.min(rfState.size[1] - 1, Math.floor((ev.clientX - box.left) / box.width * rfState.size[1]));
    rfState.y = Math.min(rfState.size[0] - 1, Math.floor((ev.clientY - box.top) / box.height * rfState.size[0]));
    rfQuery();
  };
  rfQuery();
}

async function rfQuery() {
  const q = new URLSearchParams({layer: $("rf-layer").value, y: rfState.y, x: rfState.x,
                                 sample: $("rf-sample").value});
  if ($("rf-run").value) q.set("run", $("rf-run").value);
  showError("rf-error", null);
  $("rf-info").textContent = "computing the gradient ...";
  const mine = ++rfState.seq;  // only the answer to the last click is drawn
  let r;
  try {
    r = await api(`/api/models/${encodeURIComponent(rfState.model)}/rf?` + q);
  } catch (e) {
    if (mine === rfState.seq) { showError("rf-error", e); $("rf-info").textContent = ""; }
    return;
  }
  if (mine !== rfState.seq) return;
  const [h, w] = r.size;
  paint($("rf-image"), r.image, h, w, null, 280);
  paint($("rf-erf"), r.erf, h, w, INFERNO, 280);
  const k = 280 / w;  // canvas px per input px
  for (const c of [$("rf-image"), $("rf-erf")]) {  // the theoretical box (unclipped: the canvas clips it)
    const ctx = c.getContext("2d"), [y0, y1, x0, x1] = r.box;
    ctx.strokeStyle = "#22c55e"; ctx.lineWidth = 2;
    ctx.strokeRect(x0 * k, y0 * k, (x1 - x0 + 1) * k, (y1 - y0 + 1) * k);
    ctx.fillStyle = "#ef4444";  // the clicked pixel
    ctx.fillRect((rfState.x + 0.5) * k - 3, (rfState.y + 0.5) * k - 3, 6, 6);
  }
  const side = r.global ? "global" : `${r.box[1] - r.box[0] + 1}x${r.box[3] - r.box[2] + 1} px`;
  $("rf-info").textContent = `${r.model} ${r.layer}, unit (row ${r.unit[0]}, column ${r.unit[1]}) nearest to ` +
    `pixel (${rfState.y}, ${rfState.x}): theoretical field ${side}; 95% of the gradient lies within ` +
    `${r.erf95}x${r.erf95} px. Weights: ${r.weights}. Image: ${r.sample.class}.`;
}

// --------------------------------------------------------------------------- conv playground

const CONV_KEYS = ["in", "kernel", "stride", "padding", "dilation"];
let convTimer = null, convSeq = 0;

function showConv() {
  CONV_KEYS.forEach((k) => {
    const input = $("conv-" + k);
    input.nextElementSibling.textContent = input.value;
    input.oninput = () => { input.nextElementSibling.textContent = input.value; convUpdate(); };
  });
  leaving.push(() => clearInterval(convTimer));
  convUpdate();
}

async function convUpdate() {
  const q = new URLSearchParams(CONV_KEYS.map((k) => [k, $("conv-" + k).value]));
  const mine = ++convSeq;  // a slow answer to an old slider position must not overwrite a newer one
  let g;
  try {
    g = await api("/api/conv?" + q);
  } catch (e) {
    if (mine !== convSeq) return;
    clearInterval(convTimer);
    showError("conv-error", e); $("conv-out").textContent = "none"; $("conv-formula").textContent = "";
    return;
  }
  if (mine !== convSeq) return;
  showError("conv-error", null);
  $("conv-out").textContent = `${g.out}x${g.out}`;
  $("conv-out").dataset.out = g.out;
  $("conv-formula").textContent = g.formula;
  clearInterval(convTimer);
  let frame = 0;
  const draw = () => { convFrame(g, frame); frame = (frame + 1) % (g.out * g.out); };
  draw();
  convTimer = setInterval(draw, 450);
}

function convFrame(g, frame) {  // Dumoulin & Visin's picture: padded input, kernel taps, output grid
  const c = $("conv-canvas"), ctx = c.getContext("2d");
  const n = g.in + 2 * g.padding, o = g.out;
  const cell = Math.min(24, Math.floor(340 / Math.max(n, o)));
  const ox = 20, oy = 30, px = ox + n * cell + 80;
  ctx.clearRect(0, 0, c.width, c.height);
  ctx.font = "13px sans-serif"; ctx.fillStyle = "#1f2328";
  ctx.fillText(`input ${g.in}x${g.in}` + (g.padding ? ` + padding ${g.padding}` : ""), ox, 18);
  ctx.fillText(`output ${o}x${o}`, px, 18);
  const i = Math.floor(frame / o), j = frame % o;
  const taps = new Set();
  for (let a = 0; a < g.kernel; a++) for (let b = 0; b < g.kernel; b++) {
    taps.add((i * g.stride + a * g.dilation) * n + (j * g.stride + b * g.dilation));
  }
  for (let y = 0; y < n; y++) for (let x = 0; x < n; x++) {
    const inside = y >= g.padding && y < g.padding + g.in && x >= g.padding && x < g.padding + g.in;
    const hit = taps.has(y * n + x);
    ctx.fillStyle = hit ? (inside ? "#08519c" : "#969696") : (inside ? "#9ecae1" : "#ffffff");
    ctx.fillRect(ox + x * cell, oy + y * cell, cell, cell);
    ctx.strokeStyle = "#525252"; ctx.strokeRect(ox + x * cell, oy + y * cell, cell, cell);
  }
  for (let y = 0; y < o; y++) for (let x = 0; x < o; x++) {
    const k = y * o + x;
    ctx.fillStyle = k === frame ? "#006d2c" : (k < frame ? "#a1d99b" : "#ffffff");
    ctx.fillRect(px + x * cell, oy + y * cell, cell, cell);
    ctx.strokeStyle = "#525252"; ctx.strokeRect(px + x * cell, oy + y * cell, cell, cell);
  }
}

// --------------------------------------------------------------------------- playground

let pgReady = false, pgSeq = 0, pgLast = null;  // pgLast: the image last sent (drawing or upload)

async function showPlayground() {
  showError("pg-error", null);
  let runs;
  try {
    runs = (await api("/api/runs")).runs.filter((r) => r.weights);
  } catch (e) { showError("pg-error", e); return; }
  const sel = $("pg-run"), keep = sel.value;
  sel.innerHTML = runs.map((r) => `<option value="${esc(r.name)}">${esc(r.name)} (${esc(r.model)}, ` +
    `${pct(r.best_acc)})</option>`).join("");
  if (runs.some((r) => r.name === keep)) sel.value = keep;
  if (!runs.length) showError("pg-error", "no run with weights under --runs; train one (svertka train ...)");
  if (pgReady) return;
  pgReady = true;
  const c = $("pg-canvas"), ctx = c.getContext("2d");
  const clear = () => { ctx.fillStyle = "#000"; ctx.fillRect(0, 0, 28, 28); };
  clear();
  let drawing = false, last = null;
  const at = (ev) => { const b = c.getBoundingClientRect();
    return [(ev.clientX - b.left) / b.width * 28, (ev.clientY - b.top) / b.height * 28]; };
  c.addEventListener("pointerdown", (ev) => { drawing = true; last = at(ev); stroke(last, last); });
  c.addEventListener("pointermove", (ev) => { if (drawing) { const p = at(ev); stroke(last, p); last = p; } });
  const end = () => { if (drawing) { drawing = false; pgPredictCanvas(); } };
  c.addEventListener("pointerup", end);
  c.addEventListener("pointerleave", end);
  function stroke(a, b) {
    ctx.strokeStyle = "#fff"; ctx.lineWidth = 2.6; ctx.lineCap = "round"; ctx.lineJoin = "round";
    ctx.beginPath(); ctx.moveTo(a[0], a[1]); ctx.lineTo(b[0], b[1]); ctx.stroke();
  }
  $("pg-clear").onclick = () => {
    clear(); pgLast = null; $("pg-bars").innerHTML = ""; $("pg-features").innerHTML = ""; $("pg-time").textContent = "";
  };
  $("pg-run").onchange = () => { if (pgLast) pgPredict(pgLast); };
  $("pg-file").onchange = () => { const f = $("pg-file").files[0]; if (f) pgPredict(f); };
  $("pg-invert").onchange = () => { if (pgLast) pgPredict(pgLast); };  // the same image, inverted or not
}

function pgPredictCanvas() { $("pg-canvas").toBlob((blob) => pgPredict(blob), "image/png"); }

async function pgPredict(blob) {
  const run = $("pg-run").value;
  pgLast = blob;
  if (!run) return;
  showError("pg-error", null);
  const t0 = performance.now(), mine = ++pgSeq;
  let r;
  try {
    r = await api(`/api/runs/${runPath(run)}/predict?` + new URLSearchParams({invert: $("pg-invert").value, k: 5}),
                  {method: "POST", body: blob, headers: {"Content-Type": "application/octet-stream"}});
  } catch (e) { if (mine === pgSeq) showError("pg-error", e); return; }
  if (mine !== pgSeq) return;  // a newer drawing's answer is on its way
  $("pg-bars").innerHTML = `<div class="muted">${esc(r.model)}: top ${r.top.length}` +
    (r.invert_reason ? ` (${esc(r.invert_reason)})` : "") + "</div>" + r.top.map((t) =>
    `<div class="bar"><span class="name">${esc(t.class)}</span><span class="fill" style="width:${Math.max(1, 220 * t.prob)}px">` +
    `</span><span>${(100 * t.prob).toFixed(1)}%</span></div>`).join("");
  paint($("pg-input"), r.input, r.input_size[0], r.input_size[1], null);
  $("pg-features").innerHTML = "<h2>Feature maps (conv outputs; per stage the most active channels)</h2>" +
    r.features.map((s, k) => `<div class="stage"><div class="muted">${esc(s.layer)}: ${shape(s.shape)}</div>` +
      s.channels.map((ch, j) => `<canvas id="fm-${k}-${j}" title="channel ${ch.channel}, mean ${ch.mean.toPrecision(3)}"></canvas>`).join("") +
      "</div>").join("");
  r.features.forEach((s, k) => s.channels.forEach((ch, j) => paint($(`fm-${k}-${j}`), ch.pixels, s.shape[1], s.shape[2], VIRIDIS)));
  const ms = performance.now() - t0;
  window.svertkaTimings.predict = {ms, server_ms: r.server_ms, top: r.top[0].class};
  $("pg-time").textContent = `round trip ${ms.toFixed(0)} ms (the server's share: ${r.server_ms.toFixed(1)} ms)`;
}

// --------------------------------------------------------------------------- runs

let runSel = null;

function showRuns() {
  const poll = async () => {
    let d;
    try {
      d = await api("/api/runs");
    } catch (e) { showError("runs-error", e); return; }
    showError("runs-error", null);
    $("runs-root").textContent = `runs under ${d.root} (refreshed every 2 s)`;
    $("runs-table").tHead.innerHTML = "<tr><th>run</th><th>model</th><th>data</th><th>backend</th><th>epochs</th>" +
      "<th>best test acc</th><th>status</th></tr>";
    $("runs-table").tBodies[0].innerHTML = d.runs.map((r) =>
      `<tr data-run="${esc(r.name)}"${runSel && runSel.name === r.name ? ' class="selected"' : ""}>` +
      `<td>${esc(r.name)}</td><td class="text">${esc(r.model ?? "")}</td><td class="text">${esc(r.data ?? "")}</td>` +
      `<td class="text">${esc(r.backend ?? "")}</td><td>${r.done} / ${r.epochs ?? "?"}</td><td>${pct(r.best_acc)}</td>` +
      `<td class="text">${r.training ? "training" : (r.done ? "done" : "no epochs yet")}</td></tr>`).join("");
    $("runs-table").tBodies[0].querySelectorAll("tr").forEach((tr) => {
      tr.onclick = () => selectRun(tr.dataset.run);
    });
  };
  poll();
  const timer = setInterval(poll, 2000);
  leaving.push(() => clearInterval(timer), () => { if (runSel) clearInterval(runSel.timer); runSel = null; });
  $("run-detail").hidden = true;
}

function selectRun(name) {
  if (runSel) clearInterval(runSel.timer);
  runSel = {name, rows: [], offset: 0, timer: null};
  document.querySelectorAll("#runs-table tr").forEach((tr) => tr.classList.toggle("selected", tr.dataset.run === name));
  $("run-detail").hidden = false;
  $("run-title").textContent = name;
  $("run-confusion").innerHTML = "";
  showError("confusion-error", null);
  $("run-confusion-btn").onclick = () => showConfusion(name);
  const tail = async () => {  // new epochs only: metrics.jsonl from the last byte offset on
    const me = runSel;
    if (!me || me.name !== name) return;
    let d;
    try {
      d = await api(`/api/runs/${runPath(name)}/metrics?since=${me.offset}`);
    } catch (e) { showError("runs-error", e); return; }
    if (runSel !== me) return;
    if (d.reset) me.rows = [];
    me.rows.push(...d.rows);
    me.offset = d.offset;
    const r = d.run;
    $("run-status").textContent = `${r.model} on ${r.data} (${r.backend}): epoch ${r.done} of ${r.epochs ?? "?"}` +
      (r.training ? ", training (curves update live)" : "") + (r.best_acc !== null ? `, best test accuracy ${pct(r.best_acc)}` : "");
    if (d.rows.length || d.reset || !$("run-curves").innerHTML) curves(me.rows);
  };
  tail();
  runSel.timer = setInterval(tail, 1000);
}

function curves(rows) {  // loss and accuracy per epoch, as `svertka plot curves`
  const W = 420, H = 260, L = 50, R = 12, T = 24, B = 36;
  const epochs = rows.map((r) => r.epoch), maxE = Math.max(1, ...epochs);
  const panel = (title, series, yLabel) => {
    const vals = series.flatMap((s) => rows.map((r) => r[s.key]).filter((v) => typeof v === "number"));
    if (!vals.length) return `<svg width="${W}" height="${H}"><text x="${L}" y="${H / 2}">no ${esc(title)} yet</text></svg>`;
    let lo = Math.min(...vals), hi = Math.max(...vals);
    if (hi - lo < 1e-9) { lo -= 0.5; hi += 0.5; }
    const X = (e) => L + (maxE === 1 ? 0.5 : (e - 1) / (maxE - 1)) * (W - L - R);
    const Y = (v) => H - B - (v - lo) / (hi - lo) * (H - T - B);
    let s = `<svg width="${W}" height="${H}" data-points="${rows.length}"><text x="${L}" y="14" font-weight="bold">${esc(title)}</text>`;
    for (let k = 0; k <= 4; k++) {
      const v = lo + k * (hi - lo) / 4;
      s += `<line x1="${L}" x2="${W - R}" y1="${Y(v)}" y2="${Y(v)}" stroke="#eee"/>` +
           `<text x="${L - 4}" y="${Y(v) + 4}" text-anchor="end">${v.toPrecision(3)}</text>`;
    }
    s += `<text x="${(L + W) / 2}" y="${H - 6}" text-anchor="middle">epoch (1 to ${maxE})</text>` +
         `<text transform="translate(12 ${(T + H - B) / 2}) rotate(-90)" text-anchor="middle">${esc(yLabel)}</text>`;
    series.forEach((sr, i) => {
      const pts = rows.filter((r) => typeof r[sr.key] === "number").map((r) => [X(r.epoch), Y(r[sr.key])]);
      if (!pts.length) return;
      s += `<polyline class="curve" fill="none" stroke="${sr.colour}" stroke-width="2" stroke-dasharray="${sr.dash || ""}" ` +
           `points="${pts.map((p) => p.join(",")).join(" ")}"/>` +
           pts.map((p) => `<circle cx="${p[0]}" cy="${p[1]}" r="2.5" fill="${sr.colour}"/>`).join("") +
           `<text x="${W - R - 90}" y="${T + 14 * i + 10}" fill="${sr.colour}">${esc(sr.label)}</text>`;
    });
    return s + "</svg>";
  };
  const accuracy = [{key: "train_acc", label: "train", colour: "#0969da", dash: "4 3"},
                    {key: "val_acc", label: "validation", colour: "#bc4c00"},
                    {key: "test_acc", label: "test", colour: "#1a7f37"}];
  const has = (key) => rows.some((r) => typeof r[key] === "number");
  // a task other than classification records val_<metric> / test_<metric>: draw those instead
  const other = [...new Set(rows.flatMap((r) => Object.keys(r)))]
    .filter((k) => /^(val|test)_/.test(k) && !k.endsWith("_acc") && has(k)).slice(0, 6)
    .map((key, i) => ({key, label: key, colour: ["#1a7f37", "#bc4c00", "#8250df", "#cf222e", "#0969da", "#59636e"][i]}));
  const metrics = accuracy.some((s) => has(s.key)) || !other.length
    ? panel("accuracy", accuracy, "top-1 (fraction)") : panel("metrics", other, "value");
  $("run-curves").innerHTML = panel("training loss", [{key: "train_loss", label: "train", colour: "#0969da"}],
                                    "loss") + metrics;
  $("run-curves").dataset.epochs = rows.length;
}

async function showConfusion(name) {
  showError("confusion-error", null);
  $("run-confusion").textContent = "evaluating on the test split ...";
  let d;
  try {
    d = await api(`/api/runs/${runPath(name)}/confusion`);
  } catch (e) { showError("confusion-error", e); $("run-confusion").textContent = ""; return; }
  const n = d.confusion.length;
  const total = d.confusion.flat().reduce((a, b) => a + b, 0);
  let s = `<p>${esc(d.data)} test split, ${fmtInt(d.n)} images, top-1 ${pct(d.top1)} (weights ${esc(d.weights)}); ` +
    "rows: true class, columns: predicted; colour: share of the true class</p><table class=\"grid\"><tr><th></th>" +
    d.classes.map((c) => `<th>${esc(c)}</th>`).join("") + "</tr>";
  for (let i = 0; i < n; i++) {
    const rowSum = Math.max(1, d.confusion[i].reduce((a, b) => a + b, 0));
    s += `<tr><th>${esc(d.classes[i])}</th>` + d.confusion[i].map((v) => {
      const share = v / rowSum;
      return `<td style="background: rgba(9,105,218,${share.toFixed(3)}); color: ${share > 0.6 ? "#fff" : "#000"}">${v}</td>`;
    }).join("") + "</tr>";
  }
  $("run-confusion").innerHTML = s + `</table><p class="muted">${fmtInt(total)} images in all</p>`;
}
