// tokenclock explore, the page (1 of 3): shared state, requests to the server (same origin, /api/...:
// JSON for small answers, little-endian float32 bytes for arrays), number and text formats, colours.
"use strict";

const $ = (s) => document.querySelector(s);
const el = (tag, attrs = {}, text) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
};
const S = {runs: [], r: 0, start: 0, n: 2048, colour: "learning_time", sel: null, plots: {}, cens: false,
  brush: null, brushOffset: 0, refused: [], filterOffset: 0, sort: "tok_idx", desc: false, limit: 50,
  win: null, vals: null};
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

function guard(errId, fn, clear) {  // errors show in the panel (after clear() empties what is stale), never uncaught
  return async (...args) => {
    const box = $(errId);
    try { box.textContent = ""; return await fn(...args); } catch (e) {
      box.textContent = e.message;
      if (clear) clear();
    }
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
const EVENT_COLOURS = ["#eeeeee", "#9ecae1", "#3182bd", "#08306b"];  // 0-3 events (3 with fit.max_events: 3)
// a learning time outside the checkpoints (censored, or past the range): hatched, never a colour of the ramp
const BEFORE = "repeating-linear-gradient(135deg,#444 0 2px,#ddd 2px 5px)";
const AFTER = "repeating-linear-gradient(45deg,#c51b7d 0 2px,#fde0ef 2px 5px)";

function ramp(t, stops = VIRIDIS) {
  t = Math.min(1, Math.max(0, t)) * (stops.length - 1);
  const i = Math.min(stops.length - 2, Math.floor(t)), f = t - i;
  const c = stops[i].map((a, k) => Math.round(a + f * (stops[i + 1][k] - a)));
  return `rgba(${c[0]},${c[1]},${c[2]},0.75)`;
}
function scaleOf(by) {
  const R = run();
  if (by === "learning_time") return {lo: R.u_range[0], hi: R.u_range[1], label: (v) => fmt(Math.exp(v)), past: true};
  if (by === "final_loss") return {lo: R.final_range[0], hi: R.final_range[1], label: (v) => fmt(v)};
  const m = Math.max(Math.abs(R.drop_range[0]), Math.abs(R.drop_range[1])) || 1;
  return {lo: -m, hi: m, label: (v) => fmt(v)};
}
function colourOf(by, v) {  // a CSS background
  if (v === null || Number.isNaN(v)) return "transparent";
  if (by === "class") return CLASS_COLOURS[run().classes[v]] || "#999";
  if (by === "n_events") return EVENT_COLOURS[Math.min(EVENT_COLOURS.length - 1, v)];
  const s = scaleOf(by);
  if (s.past && v < s.lo - 1e-6) return BEFORE;
  if (s.past && v > s.hi + 1e-6) return AFTER;
  const t = (v - s.lo) / ((s.hi - s.lo) || 1);
  if (by === "total_drop") return t >= 0.5 ? `rgba(33,102,172,${(t - 0.5) * 1.6})` : `rgba(178,24,43,${(0.5 - t) * 1.6})`;
  return ramp(t);
}
function valueText(by, v) {  // the hover text of one token's value
  if (v === null || v === undefined || Number.isNaN(v)) return by === "learning_time" ? "no learning event" : "none";
  const R = run();
  if (by === "class") return `class ${R.classes[v]}`;
  if (by === "n_events") return `${v} event${v === 1 ? "" : "s"}`;
  if (by === "final_loss") return `final loss ${fmt(v)} nats`;
  if (by === "total_drop") return `total drop ${fmt(v)} nats`;
  if (v === -Infinity) return `learning time before the first checkpoint (censored: not measured)`;
  if (v === Infinity) return `learning time after the last checkpoint (censored: not measured)`;
  const s = scaleOf(by), where = v < s.lo - 1e-6 ? " (before the first checkpoint)" : v > s.hi + 1e-6 ? " (after the last checkpoint)" : "";
  return `learning time ${fmt(Math.exp(v))} ${R.axis}${where}`;
}
function legend(by) {
  const box = $("#legend");
  box.replaceChildren();
  const swatch = (c, label) => { const s = el("span"); s.append(el("span", {class: "sw", style: `background:${c}`}), ` ${label} `); box.append(s); };
  if (by === "class") run().classes.forEach((c, k) => swatch(colourOf("class", k), c));
  else if (by === "n_events") EVENT_COLOURS.forEach((c, k) => swatch(c, `${k} event${k === 1 ? "" : "s"}`));
  else {
    const s = scaleOf(by), at = [0, 0.25, 0.5, 0.75, 1], stops = at.map((t) => colourOf(by, s.lo + t * (s.hi - s.lo)));
    const what = {learning_time: `learning time (${run().axis})`, final_loss: "final loss (nats)", total_drop: "total drop (nats; red: loss rose)"}[by];
    const scale = el("span", {class: "scale"});
    scale.append(el("span", {class: "bar-grad", style: `background:linear-gradient(90deg,${stops.join(",")})`}));
    const ticks = el("span", {class: "ticks"});
    at.forEach((t) => ticks.append(el("span", {class: "tick", style: `left:${t * 100}%`}, s.label(s.lo + t * (s.hi - s.lo)))));
    scale.append(ticks);
    if (s.past) swatch(BEFORE, `before ${s.label(s.lo)}`);
    box.append(`${what}: `, scale);
    if (s.past) swatch(AFTER, `after ${s.label(s.hi)} (past the last checkpoint)`);
  }
  swatch("transparent", "none");
}
