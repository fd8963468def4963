// tokenclock explore: the page. Asks the server (same origin, /api/...) only for what is on screen:
// JSON for small answers, little-endian float32 bytes for arrays. Plots: uPlot (vendored).
"use strict";

const $ = (s) => document.querySelector(s);
const el = (tag, attrs = {}, text) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
};
const S = {runs: [], r: 0, start: 0, n: 2048, colour: "learning_time", sel: null, plots: {},
  brush: null, brushOffset: 0, refused: [], filterOffset: 0, sort: "tok_idx", desc: false, limit: 50};
const run = () => S.runs[S.r];
const api = (path) => `/api/run/${S.r}/${path}`;

class ApiError extends Error {}

async function get(path) {
  const res = await fetch(path);
  if (!res.ok) {
    let msg = `${res.status} ${res.statusText}`;
    try { const j = await res.json(); msg = j.error + (j.fix ? ` (${j.fix})` : ""); } catch (e) { /* not JSON */ }
    throw new ApiError(msg);
  }
  return res;
}
const getJSON = async (path) => (await get(path)).json();
const getF32 = async (path) => new Float32Array(await (await get(path)).arrayBuffer());

function guard(errId, fn) {  // errors show in the panel, never as an uncaught error
  return async (...args) => {
    const box = $(errId);
    try { box.textContent = ""; await fn(...args); } catch (e) { box.textContent = e.message; }
  };
}

function fmt(v, digits = 3) {
  if (v === null || v === undefined || (typeof v === "number" && !isFinite(v))) return "–";
  if (typeof v !== "number") return String(v);
  if (Number.isInteger(v) || Math.abs(v) >= 1000) return Math.round(v).toLocaleString("en-US");
  return Number(v.toPrecision(digits)).toString();
}
function visible(s) {  // newlines, tabs and a token of only spaces made visible
  if (s === null || s === undefined) return "";
  s = String(s).replace(/\n/g, "⏎").replace(/\t/g, "→");
  return /^ +$/.test(s) ? s.replace(/ /g, "␣") : s;
}

function tail(s, n) { return s.length > n ? "…" + s.slice(s.length - n + 1) : s; }

// ----------------------------------------------------------------------------- colours

const VIRIDIS = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
const CLASS_COLOURS = {"learned": "#2b8cbe", "rise-then-fall": "#fdae61", "forgotten": "#d7191c", "flat": "#bdbdbd",
  "early": "#80cdc1", "late": "#8073ac", "irregular": "#f1b6da"};
const EVENT_COLOURS = ["#eeeeee", "#9ecae1", "#3182bd"];

function ramp(t, stops = VIRIDIS) {
  t = Math.min(1, Math.max(0, t)) * (stops.length - 1);
  const i = Math.min(stops.length - 2, Math.floor(t)), f = t - i;
  const c = stops[i].map((a, k) => Math.round(a + f * (stops[i + 1][k] - a)));
  return `rgba(${c[0]},${c[1]},${c[2]},0.75)`;
}
function scaleOf(by) {
  const R = run();
  if (by === "learning_time") return {lo: R.u_range[0], hi: R.u_range[1], label: (v) => fmt(Math.exp(v))};
  if (by === "final_loss") return {lo: R.final_range[0], hi: R.final_range[1], label: (v) => fmt(v)};
  const m = Math.max(Math.abs(R.drop_range[0]), Math.abs(R.drop_range[1])) || 1;
  return {lo: -m, hi: m, label: (v) => fmt(v)};
}
function colourOf(by, v) {
  if (v === null || Number.isNaN(v)) return "transparent";
  if (by === "class") return CLASS_COLOURS[run().classes[v]] || "#999";
  if (by === "n_events") return EVENT_COLOURS[Math.min(2, v)];
  const s = scaleOf(by), t = (v - s.lo) / ((s.hi - s.lo) || 1);
  if (by === "total_drop") return t >= 0.5 ? `rgba(33,102,172,${(t - 0.5) * 1.6})` : `rgba(178,24,43,${(0.5 - t) * 1.6})`;
  return ramp(t);
}
function legend(by) {
  const box = $("#legend");
  box.replaceChildren();
  const swatch = (c, label) => { const s = el("span"); s.append(el("span", {class: "sw", style: `background:${c}`}), ` ${label} `); box.append(s); };
  if (by === "class") run().classes.forEach((c, k) => swatch(colourOf("class", k), c));
  else if (by === "n_events") EVENT_COLOURS.forEach((c, k) => swatch(c, `${k} event${k === 1 ? "" : "s"}`));
  else {
    const s = scaleOf(by), stops = [0, 0.25, 0.5, 0.75, 1].map((t) => colourOf(by, s.lo + t * (s.hi - s.lo)));
    const what = {learning_time: `learning time (${run().axis})`, final_loss: "final loss (nats)", total_drop: "total drop (nats; red: loss rose)"}[by];
    box.append(`${what}: ${s.label(s.lo)} `, el("span", {class: "bar-grad", style: `background:linear-gradient(90deg,${stops.join(",")})`}), ` ${s.label(s.hi)}`);
  }
  swatch("transparent", "none");
}

// ----------------------------------------------------------------------------- text window

const loadWindow = guard("#text-err", async () => {
  const R = run();
  S.start = Math.max(0, Math.min(S.start, R.n_tok - 1));
  const q = `start=${S.start}&n=${S.n}`;
  const [win, vals] = await Promise.all([getJSON(api(`window?${q}`)), getF32(api(`colours?${q}&by=${S.colour}`))]);
  const box = $("#text"), frag = document.createDocumentFragment();
  const breaks = new Set(win.breaks);
  let seq = win.first_sequence;
  frag.append(el("span", {class: "seq"}, `sequence ${seq}`));
  for (let i = win.start; i < win.stop; i++) {
    if (breaks.has(i)) frag.append(el("span", {class: "seq"}, `sequence ${++seq}`));
    const text = win.texts ? win.texts[i - win.start] : "·";
    const s = el("span", {class: "t", "data-i": i}, text === "" ? "∅" : text.replace(/\t/g, "→"));
    if (text.includes("\n")) s.prepend(el("span", {class: "nl"}, "⏎"));
    s.style.background = colourOf(S.colour, vals[i - win.start]);
    if (i === S.sel) s.classList.add("sel");
    frag.append(s);
  }
  box.replaceChildren(frag);
  $("#start").value = S.start;
  $("#range").textContent = `tokens ${fmt(win.start)}–${fmt(win.stop - 1)} of ${fmt(R.n_tok)}`;
  legend(S.colour);
});

async function find(backward) {
  const q = $("#find").value;
  if (!q) return;
  const from = S.sel !== null ? S.sel : S.start;
  const res = await getJSON(api(`search?q=${encodeURIComponent(q)}&regex=${$("#find-regex").checked ? 1 : 0}&from=${from}${backward ? "&dir=back" : ""}`));
  $("#find-info").textContent = res.total ? `${fmt(res.total)} tokens match` : "no token matches";
  if (res.i === null) return;
  if (res.i < S.start || res.i >= S.start + S.n) { S.start = Math.max(0, res.i - 64); await loadWindow(); }
  await select(res.i);
  const s = document.querySelector(`#text .t[data-i="${res.i}"]`);
  if (s) s.scrollIntoView({block: "center"});
}

// ----------------------------------------------------------------------------- one token

function axisOpts(label, log) {
  return {scales: {x: {time: false, distr: log ? 3 : 1}}, axes: [{label, size: 40}, {label: "loss (nats)", size: 50}]};
}

function eventHook(events) {
  return (u) => {
    const ctx = u.ctx, top = u.bbox.top, h = u.bbox.height;
    ctx.save();
    for (const e of events) {
      if (e.mu === null || e.width === null) continue;
      const px = (x) => u.valToPos(x, "x", true);
      const lo = px(Math.exp(e.mu - e.width)), hi = px(Math.exp(e.mu + e.width)), mid = px(Math.exp(e.mu));
      ctx.fillStyle = e.a > 0 ? "rgba(43,140,190,0.12)" : "rgba(215,25,28,0.12)";
      ctx.fillRect(lo, top, hi - lo, h);
      ctx.strokeStyle = e.a > 0 ? "#2b8cbe" : "#d7191c";
      ctx.beginPath(); ctx.moveTo(mid, top); ctx.lineTo(mid, top + h); ctx.stroke();
      ctx.fillStyle = "#333"; ctx.font = `${11 * devicePixelRatio}px system-ui`;
      ctx.fillText(`a=${fmt(e.a)}`, mid + 3, top + 12 * devicePixelRatio);
    }
    ctx.restore();
  };
}

function plot(id, opts, data) {
  if (S.plots[id]) S.plots[id].destroy();
  const box = $(id);
  box.replaceChildren();
  opts.width = Math.max(300, box.clientWidth || box.parentElement.clientWidth - 20);
  opts.height = opts.height || 260;
  S.plots[id] = new uPlot(opts, data, box);
  return S.plots[id];
}

async function trajectoryOf(r, i) {
  const R = S.runs[r], v = await getF32(`/api/run/${r}/trajectory/${i}`);
  const K = R.x.length, keep = R.x.map((x) => x > 0);
  const xs = R.x.filter((x, k) => keep[k]), loss = Array.from(v.slice(0, K)).filter((y, k) => keep[k]);
  return {xs, loss, fit: Array.from(v.slice(K)), xf: R.x_fit};
}

function normalized(R, xs) {  // position along a run's own log axis, 0 = first kept checkpoint, 1 = last
  const [a, b] = R.u_range;
  return xs.map((x) => (Math.log(x) - a) / ((b - a) || 1));
}

async function drawTrajectory(i, detail) {
  const tr = await trajectoryOf(S.r, i);
  const others = $("#compare").checked ? Object.keys(run().compare).filter((o) => run().compare[o] === null).map(Number) : [];
  const shared = others.every((o) => S.runs[o].axis === run().axis);
  const X = (R, xs) => (shared ? xs : normalized(R, xs));
  const tables = [[X(run(), tr.xs), tr.loss]];
  const series = [{}, {label: `${run().name} measured`, stroke: "#333", paths: () => null, points: {show: true, size: 5, fill: "#333"}}];
  if (detail.fit) { tables.push([X(run(), tr.xf), tr.fit]); series.push({label: "fitted curve", stroke: "#d00", width: 1.5, spanGaps: true, points: {show: false}}); }
  const palette = ["#1b9e77", "#7570b3", "#e7298a", "#66a61e"];
  for (const [k, o] of others.entries()) {
    const t = await trajectoryOf(o, i);
    tables.push([X(S.runs[o], t.xs), t.loss]);
    series.push({label: `${S.runs[o].name} measured`, stroke: palette[k % 4], width: 1, spanGaps: true, points: {show: true, size: 3}});
  }
  const data = tables.length > 1 ? uPlot.join(tables) : tables[0];
  const label = shared ? run().axis : "position along each run's ln axis (0 first, 1 last checkpoint)";
  const opts = {...axisOpts(label, shared), series, hooks: {draw: shared ? [eventHook(detail.events)] : []}};
  plot("#traj-plot", opts, data);
  const overlaid = others.length ? [`overlaid: ${others.map((o) => S.runs[o].name).join(", ")}`] : [];
  $("#compare-msg").textContent = [...overlaid, ...S.refused].join("; ");
}

function metaTable(d) {
  const f = d.fit || {};
  const rows = [["token", `“${visible(d.text)}” (id ${fmt(d.token_id)})`], ["context", `${visible(d.context)}[${visible(d.text)}]`],
    ["tok_idx / sequence / position", `${fmt(d.tok_idx)} / ${fmt(d.sequence)} / ${fmt(d.position)}`],
    ["class", f.class ?? "– (no fit)"], ["r2", fmt(f.r2)], ["BIC winner (model)", `${f.model ?? "–"} (BIC gap ${fmt(f.bic_gap)})`],
    ["final level b / slope c", `${fmt(f.b)} / ${fmt(f.c)}`], ["training-set count", fmt(d.train_count)],
    ["final loss / total drop (nats)", `${fmt(d.final_loss)} / ${fmt(d.total_drop)}`]];
  const t = $("#token-meta");
  t.replaceChildren(...rows.map(([k, v]) => { const tr = el("tr"); tr.append(el("th", {}, k), el("td", {class: "tok"}, v)); return tr; }));
  const ev = $("#token-events");
  ev.replaceChildren();
  if (d.events.length) {
    const head = el("tr");
    ["event", `midpoint (${run().axis})`, "mu = ln x", "width (ln x)", "amplitude a (nats)", "resolved"].forEach((h) => head.append(el("th", {}, h)));
    ev.append(head);
    d.events.forEach((e, k) => {
      const tr = el("tr");
      [k + 1, fmt(e.x_mid), fmt(e.mu), fmt(e.width), fmt(e.a), e.resolved === null || e.resolved === undefined ? "–" : (e.resolved ? "yes" : "no")].forEach((v) => tr.append(el("td", {class: "num"}, v)));
      ev.append(tr);
    });
  }
}

const select = guard("#token-err", async (i) => {
  S.sel = i;
  document.querySelectorAll("#text .t.sel").forEach((s) => s.classList.remove("sel"));
  const s = document.querySelector(`#text .t[data-i="${i}"]`);
  if (s) s.classList.add("sel");
  const d = await getJSON(api(`token/${i}`));
  $("#traj-title").textContent = `Token ${fmt(d.tok_idx)}: “${visible(d.text)}”`;
  $("#traj-title").dataset.i = i;
  metaTable(d);
  await drawTrajectory(i, d);
  history.replaceState(null, "", `#run=${S.r}&tok=${i}`);
});

// ----------------------------------------------------------------------------- tables

function renderRows(tableId, columns, rows, sorting) {
  const t = $(tableId);
  const head = el("tr");
  for (const c of columns) {
    const th = el("th", {}, c.label);
    if (sorting && c.sort) {
      if (S.sort === c.sort) th.className = S.desc ? "sorted" : "sorted asc";
      th.addEventListener("click", () => { S.desc = S.sort === c.sort ? !S.desc : c.sort !== "tok_idx"; S.sort = c.sort; S.filterOffset = 0; loadTable(); });
    }
    head.append(th);
  }
  const body = el("tbody");
  for (const r of rows) {
    const tr = el("tr", {"data-i": r.i});
    for (const c of columns) tr.append(el("td", {class: c.cls || "num"}, c.get(r)));
    tr.addEventListener("click", () => select(r.i));
    body.append(tr);
  }
  const thead = el("thead");
  thead.append(head);
  t.replaceChildren(thead, body);
}

const COMMON = [
  {label: "token", cls: "tok", get: (r) => visible(r.text ?? "·")},
  {label: "context", cls: "ctx", get: (r) => tail(visible(r.context), 28)},
  {label: "class", cls: "", get: (r) => r.class ?? "–"},
];

function filterParams() {
  const p = new URLSearchParams();
  for (const inp of document.querySelectorAll("#filters input[name]")) {
    if (inp.type === "checkbox") { if (inp.checked) p.set(inp.name, "1"); } else if (inp.value.trim()) p.set(inp.name, inp.value.trim());
  }
  const classes = [...document.querySelectorAll("#f-classes input:checked")].map((c) => c.value);
  if (classes.length) p.set("class", classes.join(","));
  return p;
}

function downloads(id, what, params) {
  const box = $(id);
  box.replaceChildren("download:");
  for (const f of ["csv", "parquet"]) box.append(el("a", {href: api(`download/${what}.${f}?${params}`), download: ""}, f));
}

const loadTable = guard("#filter-err", async () => {
  const p = filterParams();
  downloads("#filter-downloads", "tokens", p);
  p.set("sort", S.sort); p.set("desc", S.desc ? 1 : 0); p.set("offset", S.filterOffset); p.set("limit", S.limit);
  const res = await getJSON(api(`tokens?${p}`));
  const cols = [{label: "tok_idx", sort: "tok_idx", get: (r) => fmt(r.tok_idx)}, ...COMMON,
    {label: `learning time (${run().axis})`, sort: "learning_time", get: (r) => fmt(r.learning_time)},
    {label: "a", sort: "a", get: (r) => fmt(r.a)}, {label: "r2", sort: "r2", get: (r) => fmt(r.r2)},
    {label: "events", sort: "n_events", get: (r) => fmt(r.n_events)}, {label: "count", sort: "count", get: (r) => fmt(r.count)},
    {label: "final loss", sort: "final_loss", get: (r) => fmt(r.final_loss)}, {label: "drop", sort: "total_drop", get: (r) => fmt(r.total_drop)}];
  renderRows("#filter-table", cols, res.rows, true);
  const stop = Math.min(res.total, S.filterOffset + res.rows.length);
  $("#filter-info").textContent = `${fmt(res.total)} tokens match; rows ${fmt(res.total ? S.filterOffset + 1 : 0)}–${fmt(stop)}`;
  $("#filter-info").dataset.total = res.total;
});

// ----------------------------------------------------------------------------- spectrum and brush

const loadBrush = guard("#spectrum-err", async () => {
  if (!S.brush) return;
  const p = new URLSearchParams({x_min: S.brush[0], x_max: S.brush[1], sign: $("#brush-sign").value});
  downloads("#brush-downloads", "events", p);
  p.set("sort", $("#brush-sort").value); p.set("offset", S.brushOffset); p.set("limit", S.limit);
  const res = await getJSON(api(`events?${p}`));
  const cols = [...COMMON, {label: "event a", get: (r) => fmt(r.event_a)}, {label: `learning time (${run().axis})`, get: (r) => fmt(r.event_x)},
    {label: "r2", get: (r) => fmt(r.r2)}, {label: "tok_idx", get: (r) => fmt(r.tok_idx)}];
  renderRows("#brush-table", cols, res.rows, false);
  $("#brush-info").textContent = `${run().axis} ${fmt(S.brush[0])}–${fmt(S.brush[1])}: ${fmt(res.total)} events, ` +
    `${fmt(res.share_of_spectrum)} nats per token of the spectrum; rows ${fmt(res.total ? S.brushOffset + 1 : 0)}–${fmt(S.brushOffset + res.rows.length)}`;
  $("#brush-info").dataset.total = res.total;
});

const loadSpectrum = guard("#spectrum-err", async () => {
  ["#spec-plot", "#recon-plot"].forEach((id) => { if (S.plots[id]) { S.plots[id].destroy(); delete S.plots[id]; } $(id).replaceChildren(); });
  if (!run().has_fit) { $("#spectrum-err").textContent = `the spectrum needs a fit: run \`tokenclock fit ${run().root}\``; return; }
  const sp = await getJSON(api("spectrum"));
  const d = sp.density, keep = d.x.map((x) => x > 0);
  const xs = d.x.filter((x, k) => keep[k]);
  const pick = (ys) => (ys || []).filter((y, k) => keep[k]);
  const opts = {height: 220, scales: {x: {time: false, distr: 3}}, cursor: {drag: {x: true, y: false, setScale: false}},
    axes: [{label: `learning time (${run().axis})`}, {label: "ρ (nats per ln x)", size: 60}],
    series: [{}, {label: "learning ρ (a > 0)", stroke: "#2b8cbe", fill: "rgba(43,140,190,0.15)"},
      {label: "rises ρ (a < 0)", stroke: "#d7191c"}],
    hooks: {setSelect: [(u) => {
      if (u.select.width < 2) return;
      S.brush = [u.posToVal(u.select.left, "x"), u.posToVal(u.select.left + u.select.width, "x")];
      S.brushOffset = 0; loadBrush();
    }]}};
  plot("#spec-plot", opts, [xs, pick(d.rho_learn), pick(d.rho_rise)]);
  if (sp.curve) {
    const c = sp.curve, ck = c.x.map((x) => x > 0), f = (ys) => ys.filter((y, k) => ck[k]);
    const r2 = sp.summary.reconstruction_r2;
    plot("#recon-plot", {height: 200, scales: {x: {time: false, distr: 3}},
      axes: [{label: `${run().axis}${r2 !== undefined ? ` (reconstruction R² ${fmt(r2)})` : ""}`}, {label: "-dL/d ln x", size: 60}],
      series: [{}, {label: "measured", stroke: "#333", width: 1.5}, {label: "reconstructed from events", stroke: "#d00", dash: [5, 3]}]},
    [f(c.x), f(c.dldu_measured), f(c.dldu_reconstructed)]);
  } else {
    $("#recon-plot").textContent = `histogram of fit/events.parquet (the spectrum stage has not run: \`tokenclock spectrum ${run().root}\`)`;
  }
});

// ----------------------------------------------------------------------------- sources, run

function sources() {
  for (const p of document.querySelectorAll(".src[data-view]")) {
    p.replaceChildren("reads: ");
    (run().sources[p.dataset.view] || []).forEach((s, k) => {
      if (k) p.append(" · ");
      const a = el("a", {href: "#", "data-file": s.file, title: s.exists ? "describe this artifact" : "not written yet"}, s.file);
      a.addEventListener("click", guard("#text-err", async (ev) => {
        ev.preventDefault();
        const info = await getJSON(api(`artifact?file=${encodeURIComponent(s.file)}`));
        $("#artifact-body").textContent = JSON.stringify(info, null, 1);
        $("#artifact").showModal();
      }));
      p.append(a, ` (${s.columns.join(", ")})${s.exists ? "" : " [missing]"}`);
    });
  }
}

function setupRun() {
  const R = run();
  $("#run-info").textContent = `${R.root}: ${fmt(R.n_tok)} tokens × ${R.n_ckpt} checkpoints, axis ${R.axis}`;
  $("#notes").replaceChildren(...R.notes.map((n) => el("p", {}, n)));
  for (const o of $("#colour").options) o.disabled = !R.has_fit && !["final_loss", "total_drop"].includes(o.value);
  if (!R.has_fit && !["final_loss", "total_drop"].includes(S.colour)) S.colour = "final_loss";
  $("#colour").value = S.colour;
  document.querySelectorAll(".axis-name").forEach((s) => { s.textContent = R.axis; });
  const fs = $("#f-classes");
  fs.replaceChildren(el("legend", {}, "class"));
  for (const c of R.classes) { const l = el("label"); l.append(el("input", {type: "checkbox", value: c}), ` ${c}`); fs.append(l); }
  fs.hidden = !R.has_fit;
  const sib = Object.entries(R.siblings || {});
  $("#series-box").hidden = sib.length < 2;
  $("#series").replaceChildren(...sib.map(([name, k]) => el("option", {value: k}, name === "avg" ? "averaged (avg)" : name)));
  $("#series").value = S.r;
  $("#run").value = S.r;
  const others = Object.entries(R.compare);
  $("#compare-box").hidden = !others.length;
  $("#compare").disabled = !others.some(([, why]) => why === null);
  S.refused = others.filter(([, why]) => why).map(([, why]) => `compare refused: ${why}`);
  $("#compare-msg").textContent = S.refused.join("; ");
  sources();
}

async function loadRun(r, tok) {
  S.r = r; S.sel = null; S.brush = null; S.filterOffset = 0; S.brushOffset = 0; S.sort = "tok_idx"; S.desc = false;
  S.n = Math.min(2048, run().window_max);
  $("#brush-table").replaceChildren(); $("#brush-info").textContent = "no range selected";
  setupRun();
  if (tok !== undefined) S.start = Math.max(0, tok - 64);
  await Promise.all([loadWindow(), loadSpectrum(), loadTable()]);
  if (tok !== undefined) await select(tok);
}

function wire() {
  let timer = null;
  const debounce = (fn) => () => { clearTimeout(timer); timer = setTimeout(fn, 250); };
  $("#run").addEventListener("change", () => loadRun(Number($("#run").value)));
  $("#series").addEventListener("change", () => loadRun(Number($("#series").value), S.sel === null ? undefined : S.sel));
  $("#colour").addEventListener("change", () => { S.colour = $("#colour").value; loadWindow(); });
  $("#prev").addEventListener("click", () => { S.start = Math.max(0, S.start - S.n); loadWindow(); });
  $("#next").addEventListener("click", () => { if (S.start + S.n < run().n_tok) { S.start += S.n; loadWindow(); } });
  $("#start").addEventListener("change", () => { S.start = Math.max(0, Number($("#start").value) || 0); loadWindow(); });
  $("#text").addEventListener("click", (e) => { const t = e.target.closest(".t"); if (t) select(Number(t.dataset.i)); });
  const findGuarded = guard("#text-err", find);
  $("#find").addEventListener("keydown", (e) => { if (e.key === "Enter") findGuarded(e.shiftKey); });
  $("#find-next").addEventListener("click", () => findGuarded(false));
  $("#find-prev").addEventListener("click", () => findGuarded(true));
  $("#compare").addEventListener("change", () => { if (S.sel !== null) select(S.sel); });
  $("#filters").addEventListener("input", debounce(() => { S.filterOffset = 0; loadTable(); }));
  $("#filters").addEventListener("submit", (e) => e.preventDefault());
  $("#filter-prev").addEventListener("click", () => { S.filterOffset = Math.max(0, S.filterOffset - S.limit); loadTable(); });
  $("#filter-next").addEventListener("click", () => {
    if (S.filterOffset + S.limit < Number($("#filter-info").dataset.total || 0)) { S.filterOffset += S.limit; loadTable(); }
  });
  $("#brush-sign").addEventListener("change", () => { S.brushOffset = 0; loadBrush(); });
  $("#brush-sort").addEventListener("change", () => { S.brushOffset = 0; loadBrush(); });
  $("#brush-prev").addEventListener("click", () => { S.brushOffset = Math.max(0, S.brushOffset - S.limit); loadBrush(); });
  $("#brush-next").addEventListener("click", () => {
    if (S.brushOffset + S.limit < Number($("#brush-info").dataset.total || 0)) { S.brushOffset += S.limit; loadBrush(); }
  });
}

const start = guard("#text-err", async () => {
  wire();
  S.runs = await getJSON("/api/runs");
  $("#run").replaceChildren(...S.runs.map((R, k) => el("option", {value: k}, R.name)));
  const h = new URLSearchParams(location.hash.slice(1));
  const r = Math.min(S.runs.length - 1, Number(h.get("run")) || 0), tok = h.has("tok") ? Number(h.get("tok")) : undefined;
  $("#run").value = r;
  await loadRun(r, tok);
  document.body.dataset.ready = "1";
});
start();
