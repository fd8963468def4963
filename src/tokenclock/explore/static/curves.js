// tokenclock explore, the page (3 of 4): the curves of a selection (the filter's tokens or the brushed
// events' tokens): up to 200 trajectories and their fitted curves drawn thin, the selection's mean and
// 10-90% band, the mean fitted curve, and the other weight series' mean and band on the same tokens.
"use strict";

function parseCurves(buf) {  // /curves: uint32 n, n bytes of JSON, then float32 blocks in the JSON's order
  const n = new DataView(buf).getUint32(0, true);
  const meta = JSON.parse(new TextDecoder().decode(new Uint8Array(buf, 4, n)));
  const blocks = {};
  let off = 4 + n;
  for (const [name, rows, cols] of meta.blocks) {
    const a = new Float32Array(buf, off, rows * cols);
    off += rows * cols * 4;
    blocks[name] = name === "loss" || name === "fit" ? Array.from({length: rows}, (_, k) => a.subarray(k * cols, (k + 1) * cols)) : a;
  }
  return {meta, blocks};
}

function clearCurves(why) {
  if (S.plots["#curves-plot"]) { S.plots["#curves-plot"].destroy(); delete S.plots["#curves-plot"]; }
  $("#curves-plot").replaceChildren();
  $("#curves-info").textContent = why || "";
  $("#curves-info").dataset.drawn = 0;
}

function thinLines(rows, xs, keep, colour) {  // a uPlot drawClear hook: each row a thin line, under the series
  return (u) => {
    const ctx = u.ctx, {left, top, width, height} = u.bbox;
    ctx.save();
    ctx.beginPath(); ctx.rect(left, top, width, height); ctx.clip();
    ctx.strokeStyle = colour; ctx.lineWidth = devicePixelRatio;
    ctx.beginPath();
    for (const row of rows) {
      let on = false;
      keep.forEach((k, j) => {
        const y = row[k];
        if (!Number.isFinite(y)) { on = false; return; }
        const px = u.valToPos(xs[j], "x", true), py = u.valToPos(y, "y", true);
        if (on) ctx.lineTo(px, py); else ctx.moveTo(px, py);
        on = true;
      });
    }
    ctx.stroke();
    ctx.restore();
  };
}

function kept(xs) { const keep = []; xs.forEach((x, k) => { if (x > 0) keep.push(k); }); return keep; }

const loadCurves = guard("#curves-err", async () => {
  const R = run(), of = $("#curves-of").value;
  let p;
  if (of === "brush") {
    if (!S.brush) { clearCurves("brush a range of the spectrum to see the curves of its events' tokens"); return; }
    p = brushParams();
  } else p = filterParams();
  p.set("of", of);
  const t0 = performance.now();
  const {meta, blocks} = parseCurves(await (await get(api(`curves?${p}`))).arrayBuffer());
  const keep = kept(R.x), xs = keep.map((k) => R.x[k]), at = (a) => keep.map((k) => a[k]);
  const tables = [[xs, at(blocks.mean), at(blocks.q10), at(blocks.q50), at(blocks.q90)]];
  const series = [{}, {label: `${R.name}: mean`, stroke: "#111", width: 2, spanGaps: true},
    {label: "10%", stroke: "rgba(0,0,0,0.35)", width: 1, spanGaps: true},
    {label: "median", stroke: "#555", dash: [4, 3], width: 1, spanGaps: true},
    {label: "90%", stroke: "rgba(0,0,0,0.35)", width: 1, spanGaps: true}];
  const bands = [{series: [4, 2], fill: "rgba(0,0,0,0.08)"}];
  if (R.has_fit) {
    tables.push([R.x_fit, Array.from(blocks.fit_mean)]);
    series.push({label: "mean fitted curve", stroke: "#d7301f", width: 1.5, spanGaps: true});
  }
  for (const s of meta.series) {  // the run's other weight series on the same tokens
    const O = S.runs[s.run], ko = kept(O.x), f = (a) => ko.map((k) => a[k]), base = series.length;
    tables.push([ko.map((k) => O.x[k]), f(blocks[`${s.run}:mean`]), f(blocks[`${s.run}:q10`]), f(blocks[`${s.run}:q90`])]);
    series.push({label: `${runLabel(O)}: mean`, stroke: "#1b9e77", width: 2, spanGaps: true},
      {label: "10%", stroke: "rgba(27,158,119,0.4)", width: 1, spanGaps: true},
      {label: "90%", stroke: "rgba(27,158,119,0.4)", width: 1, spanGaps: true});
    bands.push({series: [base + 2, base + 1], fill: "rgba(27,158,119,0.10)"});
  }
  const ys = [...blocks.loss.flatMap((row) => keep.map((k) => row[k])), ...at(blocks.q10), ...at(blocks.q90)].filter(Number.isFinite);
  const lo = ys.reduce((m, y) => Math.min(m, y), ys.length ? Infinity : 0), hi = ys.reduce((m, y) => Math.max(m, y), ys.length ? -Infinity : 1);
  const opts = {height: 260, series, bands, scales: {x: {time: false, distr: 3}, y: {range: [Math.max(0, lo - 0.1), hi + 0.1]}},
    axes: [{label: R.axis, size: 40}, {label: "loss (nats)", size: 50}],
    hooks: {drawClear: [thinLines(blocks.loss, xs, keep, "rgba(43,140,190,0.16)"),
      thinLines(blocks.fit, R.x_fit, R.x_fit.map((_, k) => k), "rgba(215,48,31,0.12)")]}};
  plot("#curves-plot", opts, tables.length > 1 ? uPlot.join(tables) : tables[0]);
  const what = of === "brush" ? `${fmt(meta.n_events)} events, ${meta.n_tokens === null ? "tokens of a sample of them" : `${fmt(meta.n_tokens)} tokens`}`
    : `${fmt(meta.n_tokens)} tokens`;
  const band = meta.n_tokens !== null && meta.n_sample === meta.n_tokens ? "all of them" : `a random sample of ${fmt(meta.n_sample)}`;
  $("#curves-info").textContent = `${what}; ${fmt(meta.n_drawn)} drawn (blue; fitted: red); mean and 10–90% band of ${band}` +
    (meta.censored_left_out ? `; ${fmt(meta.censored_left_out)} censored events left out` : "") + ` (${Math.round(performance.now() - t0)} ms)`;
  $("#curves-info").dataset.drawn = meta.n_drawn;
  $("#curves-info").dataset.sample = meta.n_sample;
  $("#curves-info").dataset.series = meta.series.map((s) => s.series).join(",");
}, () => clearCurves());
