// tokenclock explore, the page (4 of 4): the text window and its find, the filter table, the artifact
// links, the run-and-series selector, the URL state (#run=R&tok=I&colour=C&cens=1, which back and forward
// follow) and the page's wiring; starts the page.
"use strict";

// ----------------------------------------------------------------------------- text window

const loadWindow = guard("#text-err", async () => {
  const R = run();
  S.start = Math.max(0, Math.min(S.start, R.n_tok - S.n));  // a full window, at the end too
  const q = `start=${S.start}&n=${S.n}`;
  const [win, vals] = await Promise.all([getJSON(api(`window?${q}`)),
    getF32(api(`colours?${q}&by=${S.colour}&censored=${S.cens ? 1 : 0}`))]);
  S.start = win.start; S.win = win; S.vals = vals;
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
    if (S.hit && i >= S.hit.i && i < S.hit.i + S.hit.n) s.classList.add("hit");
    frag.append(s);
  }
  box.replaceChildren(frag);
  $("#start").value = S.start;
  $("#range").textContent = `tokens ${fmt(win.start)}–${fmt(win.stop - 1)} of ${fmt(R.n_tok)}`;
  legend(S.colour);
}, () => { $("#text").replaceChildren(); $("#range").textContent = ""; S.win = null; });

function hover(e) {  // the value behind a token's colour, in the line above the text and as its title
  const t = e.target.closest ? e.target.closest("#text .t") : null;
  if (!t || !S.win) return;
  const i = Number(t.dataset.i), k = i - S.win.start;
  const text = S.win.texts ? ` “${visible(S.win.texts[k])}”` : "";
  t.title = $("#hover").textContent = `token ${fmt(i)}${text}: ${valueText(S.colour, S.vals[k])}`;
}

async function find(backward) {
  const q = $("#find").value;
  if (!q) return;
  const from = S.sel !== null ? S.sel : S.start;
  const res = await getJSON(api(`search?q=${encodeURIComponent(q)}&regex=${$("#find-regex").checked ? 1 : 0}&from=${from}${backward ? "&dir=back" : ""}`));
  $("#find-info").textContent = res.total ? `${fmt(res.total)} matches in the text` : "no match";
  $("#find-info").dataset.total = res.total;
  if (res.i === null) return;
  S.hit = {i: res.i, n: res.n};
  document.querySelectorAll("#text .t.hit").forEach((s) => s.classList.remove("hit"));
  for (let k = res.i; k < res.i + res.n; k++) { const s = document.querySelector(`#text .t[data-i="${k}"]`); if (s) s.classList.add("hit"); }
  await select(res.i, {reveal: true});
}

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
    tr.addEventListener("click", () => select(r.i, {reveal: true, scroll: true}));
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

function censoredMark(side) { return side === "left" ? " ◀ censored" : side === "right" ? " ▶ censored" : ""; }

function filterParams() {
  const p = new URLSearchParams();
  for (const inp of document.querySelectorAll("#filters input[name]")) {
    if (inp.type === "checkbox") { if (inp.checked) p.set(inp.name, "1"); } else if (inp.value.trim()) p.set(inp.name, inp.value.trim());
  }
  const classes = [...document.querySelectorAll("#f-classes input:checked")].map((c) => c.value);
  if (classes.length) p.set("class", classes.join(","));
  if (S.cens) p.set("censored", "1");
  return p;
}

function downloads(id, what, params) {
  const box = $(id);
  box.replaceChildren("download:");
  for (const f of ["csv", "parquet"]) box.append(el("a", {href: api(`download/${what}.${f}?${params}`), download: ""}, f));
}

function clearTable() {
  $("#filter-table").replaceChildren();
  $("#filter-info").textContent = "";
  $("#filter-info").dataset.total = 0;
}

const loadTable = guard("#filter-err", async () => {
  const p = filterParams();
  downloads("#filter-downloads", "tokens", p);
  p.set("sort", S.sort); p.set("desc", S.desc ? 1 : 0); p.set("offset", S.filterOffset); p.set("limit", S.limit);
  const res = await getJSON(api(`tokens?${p}`));
  const cols = [{label: "tok_idx", sort: "tok_idx", get: (r) => fmt(r.tok_idx)}, ...COMMON,
    {label: `learning time (${run().axis})`, sort: "learning_time", get: (r) => fmt(r.learning_time) + censoredMark(r.censored)},
    {label: "a", sort: "a", get: (r) => fmt(r.a)}, {label: "r2", sort: "r2", get: (r) => fmt(r.r2)},
    {label: "events", sort: "n_events", get: (r) => fmt(r.n_events)}, {label: "count", sort: "count", get: (r) => fmt(r.count)},
    {label: "final loss", sort: "final_loss", get: (r) => fmt(r.final_loss)}, {label: "drop", sort: "total_drop", get: (r) => fmt(r.total_drop)}];
  renderRows("#filter-table", cols, res.rows, true);
  const stop = Math.min(res.total, S.filterOffset + res.rows.length);
  $("#filter-info").textContent = `${fmt(res.total)} tokens match; rows ${fmt(res.total ? S.filterOffset + 1 : 0)}–${fmt(stop)}`;
  $("#filter-info").dataset.total = res.total;
  if ($("#curves-of").value === "filter") loadCurves();
}, () => { clearTable(); if ($("#curves-of").value === "filter") clearCurves("the filter has an error: no selection"); });

// ----------------------------------------------------------------------------- sources, artifacts

function showArtifact(info) {
  $("#artifact-title").textContent = `${info.file}: ${fmt(info.bytes)} bytes`;
  const rows = [];
  if (info.kind === "json") {
    for (const [k, v] of Object.entries(info.values)) rows.push([k, typeof v === "number" ? fmt(v, 4) : JSON.stringify(v)]);
  } else if (info.kind === "npy") {
    rows.push(["shape", info.shape.map(fmt).join(" × ")], ["dtype", info.dtype]);
  } else {
    rows.push(["rows", fmt(info.rows)], ["row groups", fmt(info.row_groups)]);
    info.columns.forEach((c) => rows.push([c.name, c.type]));
  }
  rows.push(["path", info.path]);
  const t = el("table", {class: "meta"});
  t.append(...rows.map(([k, v]) => { const tr = el("tr"); tr.append(el("th", {}, k), el("td", {class: "tok"}, v)); return tr; }));
  $("#artifact-body").replaceChildren(t);
  $("#artifact").showModal();
}

function sources() {
  for (const p of document.querySelectorAll(".src[data-view]")) {
    p.replaceChildren("reads: ");
    (run().sources[p.dataset.view] || []).forEach((s, k) => {
      if (k) p.append(" · ");
      const a = el("a", {href: "#", "data-file": s.file, title: s.exists ? "describe this artifact" : "not written yet"}, s.file);
      a.addEventListener("click", guard("#page-err", async (ev) => {
        ev.preventDefault();
        showArtifact(await getJSON(api(`artifact?file=${encodeURIComponent(s.file)}`)));
      }));
      p.append(a, ` (${s.columns.join(", ")})${s.exists ? "" : " [missing]"}`);
    });
  }
}

// ----------------------------------------------------------------------------- run, URL state

function runLabel(R) {  // one menu for runs and their weight series
  const many = Object.keys(R.siblings || {}).length > 1;
  const base = R.series === "avg" ? R.name.replace(/ \(avg\)$/, "") : R.name;
  return many ? `${base} · ${R.series === "avg" ? "averaged" : "raw"} weights` : R.name;
}

function setupRun() {
  const R = run();
  $("#run-info").textContent = `${R.root}: ${fmt(R.n_tok)} tokens × ${R.n_ckpt} checkpoints, axis ${R.axis}` +
    (R.has_fit ? `; ${R.censored ? fmt(R.n_censored) : "no"} censored events` : "");
  $("#notes").replaceChildren(...R.notes.map((n) => el("p", {}, n)));
  for (const o of $("#colour").options) o.disabled = !R.has_fit && !["final_loss", "total_drop"].includes(o.value);
  if (!R.has_fit && !["final_loss", "total_drop"].includes(S.colour)) S.colour = "final_loss";
  $("#colour").value = S.colour;
  $("#censored").checked = S.cens;
  document.querySelectorAll(".axis-name").forEach((s) => { s.textContent = R.axis; });
  const fs = $("#f-classes");
  fs.replaceChildren(el("legend", {}, "class"));
  for (const c of R.classes) { const l = el("label"); l.append(el("input", {type: "checkbox", value: c}), ` ${c}`); fs.append(l); }
  fs.hidden = !R.has_fit;
  $("#run").value = S.r;
  const others = Object.entries(R.compare);
  $("#compare-box").hidden = !others.length;
  $("#compare").disabled = !others.some(([, why]) => why === null);
  S.refused = others.filter(([, why]) => why).map(([, why]) => `compare refused: ${why}`);
  $("#compare-msg").textContent = S.refused.join("; ");
  sources();
}

async function loadRun(r, tok) {  // every panel redrawn for run r; the token kept where the runs share tokens
  const shares = S.sel !== null && S.r !== r && run() && run().compare[String(r)] === null;
  const keep = tok !== undefined ? tok : (shares ? S.sel : undefined);
  S.r = r; S.sel = null; S.brush = null; S.hit = null; S.filterOffset = 0; S.brushOffset = 0; S.sort = "tok_idx"; S.desc = false;
  S.n = Math.min(2048, run().window_max);
  clearBrush(); clearToken(); $("#curves-of").value = "filter";
  setupRun();
  if (keep !== undefined) S.start = keep - 64;
  await Promise.all([loadWindow(), loadSpectrum(), loadTable()]);
  if (keep !== undefined) await select(keep, {reveal: true, history: "none"});
}

function urlState() {
  const p = new URLSearchParams({run: S.r});
  if (S.sel !== null) p.set("tok", S.sel);
  if (S.colour !== "learning_time") p.set("colour", S.colour);
  if (S.cens) p.set("cens", "1");
  return `#${p}`;
}

function writeURL(mode) {  // "push": a new history entry (back returns here), "replace", "none"
  if (S.applying || mode === "none" || urlState() === location.hash) return;
  if (mode === "push") history.pushState(null, "", urlState()); else history.replaceState(null, "", urlState());
}

const COLOUR_NAMES = ["learning_time", "class", "final_loss", "total_drop", "n_events"];

const applyURL = guard("#page-err", async (first) => {  // the page follows the URL (first load, back, forward)
  const h = new URLSearchParams(location.hash.slice(1)), problems = [];
  let r = first ? 0 : S.r, tok;
  if (h.has("run")) {
    const v = h.get("run");
    if (/^\d+$/.test(v) && Number(v) < S.runs.length) r = Number(v);
    else { r = 0; problems.push(`run ${v} does not exist (${S.runs.length} open: 0..${S.runs.length - 1}): showing run 0`); }
  }
  if (h.has("tok")) {
    const v = h.get("tok");
    if (/^\d+$/.test(v)) tok = Number(v); else problems.push(`tok=${v} is not a token index (0, 1, 2 ...)`);
  }
  const colour = h.get("colour") || "learning_time";
  if (COLOUR_NAMES.includes(colour)) S.colour = colour; else problems.push(`unknown colour ${colour}: one of ${COLOUR_NAMES.join(", ")}`);
  const cens = h.get("cens") === "1", censChanged = cens !== S.cens;
  S.cens = cens; $("#censored").checked = cens; $("#colour").value = S.colour;
  S.applying = true;
  try {
    if (first || r !== S.r) await loadRun(r, tok);
    else {
      S.start = tok !== undefined ? tok - 64 : S.start;
      await Promise.all([loadWindow(), ...(censChanged ? [loadTable(), loadBrush()] : [])]);
      if (tok !== undefined) await select(tok, {reveal: true, history: "none"}); else { S.sel = null; clearToken(); }
    }
  } finally { S.applying = false; }
  $("#page-err").textContent = problems.join("; ");
});

function wire() {
  let timer = null;
  const debounce = (fn) => () => { clearTimeout(timer); timer = setTimeout(fn, 250); };
  $("#run").addEventListener("change", async () => { await loadRun(Number($("#run").value)); writeURL("push"); });
  $("#censored").addEventListener("change", () => {
    S.cens = $("#censored").checked; S.filterOffset = 0; S.brushOffset = 0;
    loadWindow(); loadTable(); loadBrush(); writeURL("replace");
  });
  $("#colour").addEventListener("change", () => { S.colour = $("#colour").value; loadWindow(); writeURL("replace"); });
  $("#prev").addEventListener("click", () => { S.start = Math.max(0, S.start - S.n); loadWindow(); });
  $("#next").addEventListener("click", () => { if (S.start + S.n < run().n_tok) { S.start += S.n; loadWindow(); } });
  $("#start").addEventListener("change", () => { S.start = Math.max(0, Math.floor(Number($("#start").value)) || 0); loadWindow(); });
  $("#text").addEventListener("click", (e) => { const t = e.target.closest(".t"); if (t) select(Number(t.dataset.i)); });
  $("#text").addEventListener("mouseover", hover);
  const findGuarded = guard("#text-err", find, () => { $("#find-info").textContent = ""; $("#find-info").dataset.total = 0; });
  $("#find").addEventListener("keydown", (e) => { if (e.key === "Enter") findGuarded(e.shiftKey); });
  $("#find-next").addEventListener("click", () => findGuarded(false));
  $("#find-prev").addEventListener("click", () => findGuarded(true));
  $("#compare").addEventListener("change", () => { if (S.sel !== null) select(S.sel, {history: "none"}); });
  $("#filters").addEventListener("input", debounce(() => { S.filterOffset = 0; $("#curves-of").value = "filter"; loadTable(); }));
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
  $("#curves-of").addEventListener("change", () => loadCurves());
  window.addEventListener("popstate", () => applyURL(false));
}

const start = guard("#page-err", async () => {
  wire();
  S.runs = await getJSON("/api/runs");
  $("#run").replaceChildren(...S.runs.map((R, k) => el("option", {value: k}, runLabel(R))));
  await applyURL(true);
  document.body.dataset.ready = "1";
});
start();
