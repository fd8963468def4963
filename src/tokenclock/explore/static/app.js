// tokenclock explore, the page (3 of 3): the text window, the filter table, the artifact links, one
// run's setup and the page's wiring; starts the page.
"use strict";

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
