// tokenclock explore, the page (2 of 4): the plots (uPlot, vendored): one token's trajectory with its
// fitted curve and events, the spectrum with its brush (the range outside the checkpoints shaded) and the
// list of the brushed events.
"use strict";

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
      ctx.setLineDash(e.censored ? [4 * devicePixelRatio, 3 * devicePixelRatio] : []);
      ctx.beginPath(); ctx.moveTo(mid, top); ctx.lineTo(mid, top + h); ctx.stroke();
      ctx.fillStyle = "#333"; ctx.font = `${11 * devicePixelRatio}px system-ui`;
      ctx.fillText(`a=${fmt(e.a)}${e.censored ? " (censored)" : ""}`, mid + 3, top + 12 * devicePixelRatio);
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
    ["event", `midpoint (${run().axis})`, "mu = ln x", "width (ln x)", "amplitude a (nats)", "resolved", "censored"].forEach((h) => head.append(el("th", {}, h)));
    ev.append(head);
    d.events.forEach((e, k) => {
      const tr = el("tr", {class: e.censored ? "censored" : ""});
      const cens = e.censored === "left" ? "before the first checkpoint: not measured" : e.censored === "right" ? "after the last checkpoint: not measured" : "no";
      [k + 1, fmt(e.x_mid), fmt(e.mu), fmt(e.width), fmt(e.a), e.resolved === null || e.resolved === undefined ? "–" : (e.resolved ? "yes" : "no"), cens].forEach((v) => tr.append(el("td", {class: "num"}, v)));
      ev.append(tr);
    });
  }
}

function clearToken() {
  if (S.plots["#traj-plot"]) { S.plots["#traj-plot"].destroy(); delete S.plots["#traj-plot"]; }
  $("#traj-plot").replaceChildren();
  $("#traj-title").textContent = "Token: click one in the text or a table";
  delete $("#traj-title").dataset.i;
  $("#token-meta").replaceChildren(); $("#token-events").replaceChildren();
}

function centreInText(i) {  // scroll the text box (not the page) to token i
  const s = document.querySelector(`#text .t[data-i="${i}"]`), box = $("#text");
  if (s) box.scrollTop = Math.max(0, s.offsetTop - box.offsetTop - box.clientHeight / 2);
}

// opts: reveal (move the text window to the token), scroll (bring the token panel into view),
// history ("push", "replace" or "none": how the URL follows)
const select = guard("#token-err", async (i, opts = {}) => {
  S.sel = i;
  if (opts.reveal && (i < S.start || i >= S.start + S.n)) { S.start = i - 64; await loadWindow(); }
  document.querySelectorAll("#text .t.sel").forEach((s) => s.classList.remove("sel"));
  const s = document.querySelector(`#text .t[data-i="${i}"]`);
  if (s) s.classList.add("sel");
  if (opts.reveal) centreInText(i);
  if (opts.scroll) $("#token-view").scrollIntoView({block: "start"});
  writeURL(opts.history || "push");
  const d = await getJSON(api(`token/${i}`));
  $("#traj-title").textContent = `Token ${fmt(d.tok_idx)}: “${visible(d.text)}”`;
  $("#traj-title").dataset.i = i;
  metaTable(d);
  await drawTrajectory(i, d);
}, clearToken);

// ----------------------------------------------------------------------------- spectrum and brush

function clearBrush() {
  $("#brush-table").replaceChildren();
  $("#brush-info").textContent = "no range selected";
  $("#brush-info").dataset.total = 0;
}

function brushParams() {
  const p = new URLSearchParams({x_min: S.brush[0], x_max: S.brush[1], sign: $("#brush-sign").value});
  if (S.cens) p.set("censored", 1);
  return p;
}

const loadBrush = guard("#spectrum-err", async () => {
  if (!S.brush) return;
  const p = brushParams();
  downloads("#brush-downloads", "events", p);
  p.set("sort", $("#brush-sort").value); p.set("offset", S.brushOffset); p.set("limit", S.limit);
  const res = await getJSON(api(`events?${p}`));
  const cols = [...COMMON, {label: "event a", get: (r) => fmt(r.event_a)},
    {label: `learning time (${run().axis})`, get: (r) => fmt(r.event_x) + censoredMark(r.event_censored)},
    {label: "r2", get: (r) => fmt(r.r2)}, {label: "tok_idx", get: (r) => fmt(r.tok_idx)}];
  renderRows("#brush-table", cols, res.rows, false);
  $("#brush-info").textContent = `${run().axis} ${fmt(S.brush[0])}–${fmt(S.brush[1])}: ${fmt(res.total)} events, ` +
    `${fmt(res.share_of_spectrum)} nats per token of the spectrum; rows ${fmt(res.total ? S.brushOffset + 1 : 0)}–${fmt(S.brushOffset + res.rows.length)}` +
    (res.censored_left_out ? `; ${fmt(res.censored_left_out)} censored events left out` : "") + (res.censored ? `; the last ${fmt(res.censored)} are censored` : "");
  $("#brush-info").dataset.total = res.total;
  if ($("#curves-of").value === "brush") loadCurves();
}, clearBrush);

function observedRange(u) {  // shade the learning times outside the checkpoints and mark the end of training
  const R = run(), xs = R.x.filter((x) => x > 0), ctx = u.ctx, {left, top, width, height} = u.bbox;
  if (!xs.length) return;
  const a = u.valToPos(xs[0], "x", true), b = u.valToPos(xs[xs.length - 1], "x", true);
  ctx.save();
  ctx.fillStyle = "rgba(0,0,0,0.06)";
  if (a > left) ctx.fillRect(left, top, a - left, height);
  if (b < left + width) ctx.fillRect(b, top, left + width - b, height);
  ctx.strokeStyle = "#555"; ctx.setLineDash([3 * devicePixelRatio, 3 * devicePixelRatio]);
  ctx.beginPath(); ctx.moveTo(b, top); ctx.lineTo(b, top + height); ctx.stroke();
  ctx.fillStyle = "#555"; ctx.font = `${10 * devicePixelRatio}px system-ui`;
  ctx.fillText("end of training", Math.min(b + 3, left + width - 70 * devicePixelRatio), top + 11 * devicePixelRatio);
  ctx.restore();
}

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
    hooks: {drawClear: [observedRange], setSelect: [(u) => {
      if (u.select.width < 2) return;
      const at = (px) => Number(u.posToVal(px, "x").toPrecision(4));  // 4 digits: a readable URL and file name
      S.brush = [at(u.select.left), at(u.select.left + u.select.width)];
      S.brushOffset = 0; $("#curves-of").value = "brush"; loadBrush();
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
    const left = sp.summary.n_censored_left_out ? `; ${fmt(sp.summary.n_censored_left_out)} censored events left out` : "";
    $("#recon-plot").textContent = `histogram of fit/events.parquet (the spectrum stage has not run: \`tokenclock spectrum ${run().root}\`)${left}`;
  }
});
