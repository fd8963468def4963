"""The report stage: reads the artifacts of one run directory (never logs) and writes
RUN/report/index.html (one self-contained page, no JS, no CDN), one PNG per figure beside it, and
RUN/report/summary.json with the headline numbers. Missing stages become "not computed" notes.
"""
from __future__ import annotations

import html
import json
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import RunDirError
from .rundir import (RunDir, atomic_path, load_manifest, read_json, read_npy, read_parquet,
                     run_lock, update_stage, write_json)

CLASS_ORDER = ("learned", "rise-then-fall", "forgotten", "flat", "early", "late", "irregular")
# Example-grid quota per class (4x4 = 16 panels); unused slots go to whatever classes exist.
GRID_QUOTA = {"learned": 5, "rise-then-fall": 3, "forgotten": 2, "flat": 2, "irregular": 2,
              "early": 1, "late": 1}
GRID_SHAPE = (4, 4)
UNIGRAM_TOL_NATS = 0.1  # "mean loss within 0.1 nats of the mean unigram loss"


# ----------------------------------------------------------------------------- loading


@dataclass
class _Run:
    """Every artifact the report may use; None (or empty) where its stage has not run."""

    run: RunDir
    meta: dict
    loss: np.ndarray                      # (K, N) memory-mapped
    axis_table: dict[str, np.ndarray]     # trace/axis.parquet
    tokens: dict[str, np.ndarray]         # trace/tokens.parquet
    axis: str                             # the fitted axis
    fit_summary: dict | None = None
    fit_tokens: dict[str, np.ndarray] | None = None
    events: dict[str, np.ndarray] | None = None
    spec_summary: dict | None = None
    curves: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # axis -> curve table
    density: dict[str, np.ndarray] | None = None
    ckpt: dict[str, np.ndarray] | None = None
    manifest: dict | None = None

    _mean_loss: np.ndarray | None = None

    @property
    def mean_loss(self) -> np.ndarray:
        """(K,) mean loss over tokens per checkpoint, computed once."""
        if self._mean_loss is None:
            self._mean_loss = _mean_loss_per_ckpt(self.loss)
        return self._mean_loss

    def columns(self, tok_idx: Any) -> np.ndarray:
        """Column of loss.npy / row of trace/tokens.parquet for each tok_idx (vectorized)."""
        tok_idx = np.asarray(tok_idx, dtype=np.int64)
        ids = self.tokens.get("tok_idx")
        if ids is None or np.array_equal(ids, np.arange(len(ids))):
            return tok_idx
        order = np.argsort(ids, kind="stable")
        return order[np.searchsorted(ids, tok_idx, sorter=order)]

    @property
    def x(self) -> np.ndarray:
        """Axis values of all K checkpoints along the fitted axis."""
        return np.asarray(self.axis_table[self.axis], dtype=np.float64)


def _optional(reader, path: Path, *args):
    return reader(path, *args) if Path(path).is_file() else None


def _load(run: RunDir) -> _Run:
    if not run.trace_loss.is_file() or not run.trace_tokens.is_file():
        raise RunDirError(f"{run.trace_dir} has no loss matrix (loss.npy + tokens.parquet)",
                          f"run `tokenclock trace {run.root}` first")
    meta = read_json(run.trace_dir / "meta.json") if (run.trace_dir / "meta.json").is_file() else {}
    loss = read_npy(run.trace_loss, mmap=True)
    axis_table = read_parquet(run.trace_axis)
    fit_summary = _optional(read_json, run.fit_summary)
    spec_summary = _optional(read_json, run.spectrum_summary)
    axis = ((fit_summary or {}).get("axis") or (spec_summary or {}).get("axis")
            or ("step" if "step" in axis_table else next(iter(axis_table))))
    if axis not in axis_table:
        raise RunDirError(f"{run.trace_axis} has no column '{axis}' (fit/summary.json axis)",
                          f"rerun `tokenclock fit {run.root}` on one of: {', '.join(axis_table)}")
    r = _Run(run=run, meta=meta, loss=loss, axis_table=axis_table,
             tokens=read_parquet(run.trace_tokens), axis=axis, fit_summary=fit_summary,
             spec_summary=spec_summary)
    r.fit_tokens = _optional(read_parquet, run.fit_tokens)
    r.events = _optional(read_parquet, run.fit_events)
    spec = run.spectrum_dir
    if r.run.spectrum_curve().is_file():
        r.curves[(spec_summary or {}).get("axis", axis)] = read_parquet(r.run.spectrum_curve())
    for p in sorted(spec.glob("*_curve.parquet")) if spec.is_dir() else []:
        r.curves.setdefault(p.name[: -len("_curve.parquet")], read_parquet(p))
    r.density = _optional(read_parquet, r.run.spectrum_density())
    r.ckpt = _optional(read_parquet, run.ckpt_index)
    r.manifest = load_manifest(run) if run.manifest.is_file() else None
    return r


# ----------------------------------------------------------------------------- small math


def _logistic(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # overflow-free logistic


def fitted_curve(u: np.ndarray, b: float, a: np.ndarray, mu: np.ndarray, w: np.ndarray,
                 c: float = 0.0, u_end: float | None = None) -> np.ndarray:
    """l(u) = b + sum_j a_j * s((mu_j - u) / w_j)  (DESIGN.md); a token whose best model is
    linear in ln x has c != 0: l(u) = b + c (u - u_end)."""
    u = np.asarray(u, dtype=np.float64)
    lin = c * (u - (u[-1] if u_end is None else u_end)) if c else 0.0
    return b + lin + (np.asarray(a) * _logistic((np.asarray(mu) - u[:, None]) / np.asarray(w))).sum(axis=1)


def _ranks(x: np.ndarray) -> np.ndarray:
    """Ranks with ties averaged (as Spearman needs)."""
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = np.arange(len(x), dtype=np.float64)
    _, inv, counts = np.unique(x, return_inverse=True, return_counts=True)
    sums = np.bincount(inv, weights=ranks)
    return sums[inv] / counts[inv]


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    rx, ry = _ranks(np.asarray(x, float)), _ranks(np.asarray(y, float))
    if len(rx) < 3 or rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


def _r2(measured: np.ndarray, predicted: np.ndarray) -> float:
    ok = np.isfinite(measured) & np.isfinite(predicted)
    m, p = measured[ok], predicted[ok]
    ss = ((m - m.mean()) ** 2).sum() if len(m) else 0.0
    return float(1.0 - ((m - p) ** 2).sum() / ss) if ss > 0 else float("nan")


def _mean_loss_per_ckpt(loss: np.ndarray) -> np.ndarray:
    """(K,) mean over tokens, one contiguous row at a time (never the whole matrix in memory)."""
    return np.array([float(np.nanmean(np.asarray(loss[k], dtype=np.float64)))
                     for k in range(loss.shape[0])])


def _largest_positive_event(events: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(tok_idx, mu) of each token's largest learning (a > 0) event."""
    pos = events["a"] > 0
    tok, a, mu = events["tok_idx"][pos], events["a"][pos], events["mu"][pos]
    order = np.lexsort((a, tok))
    tok, mu = tok[order], mu[order]
    last = np.r_[tok[1:] != tok[:-1], True] if len(tok) else np.zeros(0, bool)
    return tok[last], mu[last]


def _power_law(summary: dict, alpha_key: str, x: np.ndarray, y: np.ndarray):
    """(E, A, alpha) for L = E + A x^-alpha: E and A from the summary when it has them, else
    least squares of the traced mean loss for that alpha (linear in E, A)."""
    alpha = summary.get(alpha_key)
    if not isinstance(alpha, (int, float)) or not math.isfinite(alpha):
        return None
    pl = summary.get("power_law" if alpha_key == "alpha_measured" else "power_law_spectrum")
    if isinstance(pl, dict) and all(isinstance(pl.get(k), (int, float)) and math.isfinite(pl[k])
                                    for k in ("E", "A")):
        return float(pl["E"]), float(pl["A"]), float(alpha), "spectrum/summary.json"
    ok = (x > 0) & np.isfinite(y)
    if ok.sum() < 3:
        return None
    design = np.stack([np.ones(ok.sum()), x[ok] ** -alpha], axis=1)
    (e, a), *_ = np.linalg.lstsq(design, y[ok], rcond=None)
    return float(e), float(a), float(alpha), "least squares here"


# ----------------------------------------------------------------------------- text helpers


def _visible(text: Any, limit: int | None = None, keep: str = "end") -> str:
    """Show whitespace and control characters (newline -> \\n) and cut to `limit` characters."""
    s = "" if text is None else str(text)
    out = []
    for ch in s:
        if ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif not ch.isprintable() and ch != " ":
            out.append(ch.encode("unicode_escape").decode("ascii"))
        else:
            out.append(ch)
    s = "".join(out)
    if limit is not None and len(s) > limit:
        s = ("…" + s[-(limit - 1):]) if keep == "end" else (s[: limit - 1] + "…")
    return s


def _token_label(context: Any, token: Any) -> str:
    return f"{_visible(context, 22)}[{_visible(token, 12, keep='start')}]"


def _fmt(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, (int, np.integer)):
        return f"{int(v):,}"
    if isinstance(v, (float, np.floating)):
        if not math.isfinite(v):
            return "n/a"
        return f"{v:.3g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.2e}"
    return str(v)


def _pct(v: float) -> str:
    return "n/a" if v is None or not math.isfinite(v) else f"{100 * v:.1f}%"


def _not_computed(stage: str, run: RunDir, what: str = "") -> str:
    return (f'<p class="note">{html.escape(what or stage)} not computed: run '
            f"<code>tokenclock {stage} {html.escape(str(run.root))}</code></p>")


# ----------------------------------------------------------------------------- figures


class _Figures:
    """Writes PNGs (atomically) into the report folder and returns HTML <figure> blocks."""

    def __init__(self, out: Path):
        self.out = out
        self.written: list[str] = []

    def new(self, nrows: int = 1, ncols: int = 1, size=(6.4, 4.0)):
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        fig = Figure(figsize=size, dpi=110, layout="constrained")
        FigureCanvasAgg(fig)  # Agg, set per figure: no global backend switch, no pyplot state
        axes = fig.subplots(nrows, ncols, squeeze=False)
        return fig, axes

    def save(self, fig, name: str, caption: str) -> str:
        with atomic_path(self.out / name) as tmp:
            fig.savefig(tmp, format="png")
        self.written.append(name)
        return (f'<figure><img src="{html.escape(name)}" alt="{html.escape(name)}">'
                f"<figcaption>{caption}</figcaption></figure>")


_STAGE_OF = {"trace": "trace", "fit": "fit", "spectrum": "spectrum", "ckpt": "train"}


def _from(*artifacts: str) -> str:
    """'from trace/loss.npy (`tokenclock trace RUN`), fit/events.parquet (`tokenclock fit RUN`)'."""
    groups: dict[str, list[str]] = {}
    for a in artifacts:
        groups.setdefault(_STAGE_OF.get(a.split("/")[0], a.split("/")[0]), []).append(a)
    return "from " + "; ".join(f"{html.escape(', '.join(arts))} (<code>tokenclock {st} RUN</code>)"
                               for st, arts in groups.items())


# ----------------------------------------------------------------------------- sections


def _section_headline(r: _Run, numbers: dict) -> str:
    rows = []

    def add(label: str, value: Any, source: str) -> None:
        rows.append(f"<tr><th>{html.escape(label)}</th><td>{html.escape(value)}</td>"
                    f'<td class="src">{html.escape(source)}</td></tr>')

    K, N = r.loss.shape
    numbers.update(n_tok=int(N), n_ckpt=int(K), axis=r.axis)
    add("tokens traced", _fmt(N), "trace/loss.npy")
    add("checkpoints", _fmt(K), "trace/loss.npy")
    add("fitted axis (clock)", r.axis, "fit/summary.json" if r.fit_summary else "trace/axis.parquet")
    notes = []
    if r.fit_tokens is not None:
        model = r.fit_tokens.get("model")
        fallback = {k: v for k, v in (r.fit_summary or {}).items()
                    if "sigmoid" in k and isinstance(v, (int, float)) and 0 <= v <= 1}
        if model is None and fallback:
            k, v = next(iter(fallback.items()))
            numbers["sigmoid_share"] = v
            add("tokens whose best model is a sigmoid", _pct(v), f"fit/summary.json {k}")
        if model is not None:
            share = float(np.char.startswith(model.astype(str), "sigmoid").mean()) if len(model) \
                else float("nan")
            numbers["sigmoid_share"] = share
            add("tokens whose best model is a sigmoid", _pct(share), "fit/tokens.parquet")
        cls = r.fit_tokens.get("class")
        if cls is not None and len(cls):
            names, counts = np.unique(cls.astype(str), return_counts=True)
            shares = {str(n): float(c) / len(cls) for n, c in zip(names, counts)}
            numbers["class_shares"] = shares
            add("class shares", ", ".join(f"{k} {_pct(v)}" for k, v in _ordered(shares)),
                "fit/tokens.parquet")
    else:
        notes.append(_not_computed("fit", r.run, "token fits"))
    s = r.spec_summary
    if s is not None:
        for key, label in (("reconstruction_r2", "reconstruction R² (in-sample)"),
                           ("reconstruction_r2_heldout", "reconstruction R² (held-out checkpoints)"),
                           ("reconstruction_r2_after_warmup", "reconstruction R² (after warmup)"),
                           ("event_share", "share of the loss drop carried by events"),
                           ("best_clock", f"best clock (by {s.get('best_clock_by', 'R²')})"),
                           ("alpha_measured", "alpha measured (power law of the loss)"),
                           ("alpha_spectrum", "alpha from the spectrum")):
            if key in s and s[key] is not None:
                numbers[key] = s[key]
                add(label, _fmt(s[key]), "spectrum/summary.json")
        for key, v in s.items():  # any other R² the spectrum stage reports (e.g. after warmup)
            if key.startswith("reconstruction_r2") and key not in numbers and isinstance(v, (int, float)):
                numbers[key] = v
                add(key.replace("_", " ").replace("r2", "R²"), _fmt(v), "spectrum/summary.json")
    else:
        notes.append(_not_computed("spectrum", r.run, "learning-time spectrum"))
    extra = _all_numbers(r)
    return ('<div class="box"><h2>Headline</h2><table class="kv">' + "".join(rows) + "</table>"
            + "".join(notes) + extra + "</div>")


def _ordered(d: dict) -> list:
    return sorted(d.items(), key=lambda kv: (CLASS_ORDER.index(kv[0]) if kv[0] in CLASS_ORDER
                                             else len(CLASS_ORDER), kv[0]))


def _all_numbers(r: _Run) -> str:
    """Every number in the stage summaries, so nothing a stage measured is hidden."""
    parts = []
    for name, d in (("fit/summary.json", r.fit_summary), ("spectrum/summary.json", r.spec_summary)):
        if d:
            parts.append(f"<details><summary>all of {name}</summary><pre>"
                         f"{html.escape(json.dumps(d, indent=2, default=str))}</pre></details>")
    return "".join(parts)


def _section_loss_curve(r: _Run, figs: _Figures) -> str:
    axis = (r.spec_summary or {}).get("axis", r.axis)
    if axis not in r.axis_table:
        axis = r.axis
    x_all = np.asarray(r.axis_table[axis], dtype=np.float64)
    mean_loss = r.mean_loss
    fig, ax = figs.new()
    ax = ax[0, 0]
    srcs = ["trace/loss.npy"]
    if r.ckpt is not None and axis in r.ckpt:
        xc = np.asarray(r.ckpt[axis], dtype=np.float64)
        for col, style in (("val_loss", "-o"), ("train_loss", "-")):
            if col in r.ckpt and np.isfinite(r.ckpt[col]).any():
                ok = xc > 0
                ax.plot(xc[ok], r.ckpt[col][ok], style, ms=3, label=f"{col} (ckpt/index.parquet)")
        srcs.append("ckpt/index.parquet")
    ok = x_all > 0
    ax.plot(x_all[ok], mean_loss[ok], "s", ms=3, color="k", label="mean traced-token loss")
    text = ""
    if r.spec_summary:
        xs = np.geomspace(x_all[ok].min(), x_all[ok].max(), 200) if ok.sum() > 1 else None
        for key, color in (("alpha_measured", "tab:red"), ("alpha_spectrum", "tab:purple")):
            pl = _power_law(r.spec_summary, key, x_all, mean_loss) if xs is not None else None
            if pl:
                e, a, alpha, how = pl
                ax.plot(xs, e + a * xs ** -alpha, "--", color=color,
                        label=f"E + A x^-α, α = {alpha:.3g} ({key})")
                text += (f"<li>{key} = {alpha:.3g}: E = {e:.3g}, A = {a:.3g} ({html.escape(how)})</li>")
        srcs.append("spectrum/summary.json")
    ax.set_xscale("log")
    ax.set_xlabel(axis)
    ax.set_ylabel("loss (nats)")
    ax.legend(fontsize=7)
    cap = _from(*srcs)
    body = figs.save(fig, "loss_curve.png", cap)
    if text:
        body += f"<ul>{text}</ul>"
    elif r.spec_summary is None:
        body += _not_computed("spectrum", r.run, "power-law overlay")
    return "<h2>Loss curve</h2>" + body


def _events_by_token(events: dict | None, toks: np.ndarray) -> dict[int, tuple]:
    if events is None:
        return {}
    sel = np.isin(events["tok_idx"], toks)
    out: dict[int, list] = {}
    for t, a, mu, w in zip(events["tok_idx"][sel], events["a"][sel], events["mu"][sel],
                           events["width"][sel]):
        out.setdefault(int(t), []).append((a, mu, w))
    return {t: tuple(np.array(v) for v in zip(*rows)) for t, rows in out.items()}


def _choose_examples(r: _Run, n: int) -> list[tuple[int, str]]:
    """Deterministic (seed 0) examples covering the classes; (tok_idx, class) pairs."""
    rng = np.random.default_rng(0)
    if r.fit_tokens is None or "class" not in r.fit_tokens:
        # No fits: spread over the total drop (first minus last checkpoint loss).
        drop = np.asarray(r.loss[0], float) - np.asarray(r.loss[-1], float)
        order = np.argsort(drop, kind="stable")
        pick = order[np.unique(np.linspace(0, len(order) - 1, n).round().astype(int))]
        return [(int(r.tokens["tok_idx"][i]) if "tok_idx" in r.tokens else int(i), "") for i in pick]
    cls = r.fit_tokens["class"].astype(str)
    tok = r.fit_tokens["tok_idx"]
    rows: list[int] = []  # rows of fit/tokens.parquet
    for name in sorted(GRID_QUOTA, key=lambda c: CLASS_ORDER.index(c)):
        idx = np.flatnonzero(cls == name)
        if len(idx):
            rows += sorted(rng.choice(idx, size=min(GRID_QUOTA[name], len(idx)), replace=False))
    rest = np.setdiff1d(np.arange(len(tok)), rows)
    if len(rows) < n and len(rest):
        rows += sorted(rng.choice(rest, size=min(n - len(rows), len(rest)), replace=False))
    return [(int(tok[i]), str(cls[i])) for i in rows[:n]]


def _section_examples(r: _Run, figs: _Figures) -> str:
    nr, nc = GRID_SHAPE
    examples = _choose_examples(r, nr * nc)
    x = r.x
    keep = x > 0
    u = np.log(x[keep])
    cols = r.columns([t for t, _ in examples]).tolist()
    traj = np.asarray(r.loss[:, cols], dtype=np.float64)[keep] if cols else np.zeros((0, 0))  # (K', n)
    ev = _events_by_token(r.events, np.array([t for t, _ in examples]))
    b_of = {}
    if r.fit_tokens is not None and "b" in r.fit_tokens:
        sel = np.isin(r.fit_tokens["tok_idx"], [t for t, _ in examples])
        b_of = dict(zip(r.fit_tokens["tok_idx"][sel].tolist(), r.fit_tokens["b"][sel].tolist()))
        c_of = dict(zip(r.fit_tokens["tok_idx"][sel].tolist(),
                        (r.fit_tokens["c"][sel] if "c" in r.fit_tokens else np.zeros(sel.sum())).tolist()))
    fig, axes = figs.new(nr, nc, size=(11, 9))
    uu = np.linspace(u.min(), u.max(), 200) if len(u) else u
    rows = []
    for j, (ax, (t, name)) in enumerate(zip(axes.flat, examples)):
        ax.plot(x[keep], traj[:, j], ".", ms=3, color="0.3")
        if t in b_of:
            a, mu, w = ev.get(t, (np.zeros(0), np.zeros(0), np.ones(0)))
            ax.plot(np.exp(uu), fitted_curve(uu, b_of[t], a, mu, w, c_of.get(t, 0.0), u.max()),
                    color="tab:red", lw=1.2)
        i = cols[j]
        label = _token_label(_text(r, "context", i), _text(r, "token_text", i))
        # parse_math=False: token text may hold '$'; it is plain text here, never mathtext
        ax.set_title(f"{label}\n{name}" if name else label, fontsize=7, parse_math=False)
        ax.set_xscale("log")
        ax.tick_params(labelsize=6)
        rows.append(f"<tr><td>{t}</td><td>{html.escape(name)}</td>"
                    f"<td>{_token_html(r, i)}</td></tr>")
    for ax in list(axes.flat)[len(examples):]:
        ax.set_axis_off()
    fig.supxlabel(r.axis, fontsize=8)
    fig.supylabel("loss (nats)", fontsize=8)
    srcs = ["trace/loss.npy", "trace/tokens.parquet"] + (
        ["fit/events.parquet", "fit/tokens.parquet"] if r.fit_tokens is not None else [])
    body = figs.save(fig, "examples.png", _from(*srcs) +
                     ": dots measured, red line the fitted sigmoid(s); title = context[token]")
    note = "" if r.fit_tokens is not None else _not_computed("fit", r.run, "fitted curves")
    return ("<h2>Example token trajectories</h2>" + body + note +
            "<details><summary>the tokens shown</summary><table><tr><th>tok_idx</th><th>class</th>"
            "<th>context + <b>token</b></th></tr>" + "".join(rows) + "</table></details>")


def _text(r: _Run, column: str, i: int) -> str:
    return str(r.tokens[column][i]) if column in r.tokens else ""


def _token_html(r: _Run, i: int) -> str:
    """Escaped '<code>context<b>token</b></code>' with newlines and control characters visible."""
    return (f"<code>{html.escape(_visible(_text(r, 'context', i), 60))}"
            f"<b>{html.escape(_visible(_text(r, 'token_text', i)))}</b></code>")


def _section_spectrum(r: _Run, figs: _Figures) -> str:
    if r.events is None and r.density is None:
        return "<h2>Learning-time spectrum</h2>" + _not_computed("fit", r.run, "events")
    fig, ax = figs.new()
    ax = ax[0, 0]
    N = r.loss.shape[1]
    srcs = []
    if r.events is not None and len(r.events["mu"]):
        mu, a = r.events["mu"], r.events["a"]
        lo, hi = float(mu.min()), float(mu.max())
        if hi - lo < 1e-6:  # all events at one time: a bin of width 1 around it
            lo, hi = lo - 0.5, hi + 0.5
        edges = np.linspace(lo, hi + 1e-9, 41)
        width = np.diff(edges)
        for sign, color, lab in ((1, "tab:blue", "learning events (a > 0)"),
                                 (-1, "tab:orange", "rises (a < 0)")):
            m = np.sign(a) == sign
            h, _ = np.histogram(mu[m], bins=edges, weights=a[m] / N)
            ax.bar(np.exp(edges[:-1]), h / width, width=np.exp(edges[1:]) - np.exp(edges[:-1]),
                   align="edge", color=color, alpha=0.5, label=lab)
        srcs.append("fit/events.parquet")
    if r.density is not None:
        ax.plot(np.exp(r.density["u"]), r.density["rho"], color="k", label="ρ(u) (spectrum/density.parquet)")
        srcs.append("spectrum/density.parquet")
    ax.axhline(0, color="0.6", lw=0.5)
    ax.set_xscale("log")
    ax.set_xlabel(f"learning time ({r.axis})")
    ax.set_ylabel("amplitude density (nats per unit ln x, per token)")
    ax.legend(fontsize=7)
    body = figs.save(fig, "spectrum.png", _from(*srcs) +
                     ": histogram of event midpoints mu weighted by a/N")
    if r.density is None:
        body += _not_computed("spectrum", r.run, "density ρ(u)")
    return "<h2>Learning-time spectrum</h2>" + body


def _section_reconstruction(r: _Run, figs: _Figures, numbers: dict) -> str:
    if not r.curves:
        return "<h2>Reconstruction of −dL/d ln x</h2>" + _not_computed("spectrum", r.run)
    clocks = (r.spec_summary or {}).get("clocks") or {}
    fig, axes = figs.new(1, len(r.curves), size=(5.0 * len(r.curves), 3.8))
    for ax, (axis, c) in zip(axes.flat, r.curves.items()):
        x, meas, rec = c["x"], c["dldu_measured"], c["dldu_reconstructed"]
        held = c["heldout"].astype(bool) if "heldout" in c else np.zeros(len(x), bool)
        r2 = (clocks.get(axis) or {}).get("reconstruction_r2")
        if r2 is None and axis == (r.spec_summary or {}).get("axis"):
            r2 = (r.spec_summary or {}).get("reconstruction_r2")
        if r2 is None:
            r2 = _r2(meas[~held], rec[~held])
        numbers.setdefault("clock_r2", {})[axis] = r2
        ax.plot(x[~held], meas[~held], "o", ms=3, color="k", label="measured")
        if held.any():
            ax.plot(x[held], meas[held], "o", ms=4, mfc="none", color="tab:green", label="measured, held out")
        ax.plot(x, rec, "-", color="tab:red", label=f"reconstructed, R² = {_fmt(r2)}")
        ax.set_xscale("log")
        ax.set_xlabel(axis)
        ax.set_ylabel("−dL/d ln x (nats)")
        ax.set_title(f"clock: {axis}", fontsize=9)
        ax.legend(fontsize=7)
    names = [p.relative_to(r.run.root).as_posix() for p in sorted(r.run.spectrum_dir.glob("*curve.parquet"))]
    return "<h2>Reconstruction of −dL/d ln x</h2>" + figs.save(
        fig, "reconstruction.png", _from(*names, "spectrum/summary.json")
        + "; open circles: held-out checkpoints; R² from spectrum/summary.json (in-sample), "
          "or computed here on the in-sample checkpoints where the summary has none")


def _section_classes(r: _Run, figs: _Figures, numbers: dict) -> str:
    head = "<h2>Token classes, and how much of the drop is unigram learning</h2>"
    parts = []
    if r.fit_tokens is not None and "class" in r.fit_tokens:
        names, counts = np.unique(r.fit_tokens["class"].astype(str), return_counts=True)
        pairs = _ordered(dict(zip(names.tolist(), counts.tolist())))
        fig, ax = figs.new(size=(6.4, 3.2))
        ax = ax[0, 0]
        ax.bar([p[0] for p in pairs], [p[1] for p in pairs], color="tab:blue")
        ax.set_ylabel("tokens")
        ax.tick_params(axis="x", labelsize=8)
        parts.append(figs.save(fig, "classes.png", _from("fit/tokens.parquet")))
    else:
        parts.append(_not_computed("fit", r.run, "token classes"))
    if "unigram_loss" not in r.tokens or not r.meta.get("vocab_size") \
            or not np.isfinite(np.asarray(r.tokens["unigram_loss"], float)).any():
        return head + "".join(parts)
    uni = np.asarray(r.tokens["unigram_loss"], float)
    ln_v = math.log(float(r.meta["vocab_size"]))
    if r.fit_tokens is not None and "b" in r.fit_tokens:
        final = np.full(len(uni), np.nan)
        final[r.columns(r.fit_tokens["tok_idx"])] = r.fit_tokens["b"]
        final_src = "the fitted final level b (fit/tokens.parquet)"
    else:
        final = np.asarray(r.loss[-1], float)
        final_src = "the loss at the last checkpoint (no fit yet)"
    unigram_drop = float(np.nanmean(ln_v - uni))
    contextual_drop = float(np.nanmean(uni - final))
    numbers.update(unigram_drop_nats=unigram_drop, contextual_drop_nats=contextual_drop)
    x = r.x
    keep = x > 0
    mean_loss = r.mean_loss[keep]
    near = np.flatnonzero(np.abs(mean_loss - float(np.nanmean(uni))) <= UNIGRAM_TOL_NATS)
    sent = [f"Averaged over tokens, the loss falls {_fmt(unigram_drop + contextual_drop)} nats from "
            f"uniform predictions (ln V = {ln_v:.3g}) to {final_src}: {_fmt(unigram_drop)} nats "
            f"of that is the shared collapse to unigram predictions (ln V minus the token's unigram "
            f"loss, trace/tokens.parquet) and {_fmt(contextual_drop)} nats is contextual (unigram "
            f"loss minus the final loss)."]
    if r.fit_tokens is not None and "model" in r.fit_tokens and len(r.fit_tokens["model"]):
        names, counts = np.unique(r.fit_tokens["model"].astype(str), return_counts=True)
        share = dict(zip(names.tolist(), (counts / counts.sum()).tolist()))
        sig = sum(v for k, v in share.items() if k.startswith("sigmoid"))
        sent.insert(0, f"{_pct(sig)} of {counts.sum():,} tokens are best described (BIC) by a sigmoid "
                       f"model (" + ", ".join(f"{k} {_pct(v)}" for k, v in share.items()) + ").")
    if len(near) and r.events is not None and len(r.events["mu"]):
        k = near[0]
        u_k = math.log(x[keep][k])
        mu, a = r.events["mu"], r.events["a"]
        share = float(np.mean(mu < u_k))
        pos = a > 0
        share_a = float(a[pos & (mu < u_k)].sum() / a[pos].sum()) if pos.any() else float("nan")
        numbers.update(unigram_checkpoint_x=float(x[keep][k]), early_event_share=share,
                       early_event_amplitude_share=share_a)
        sent.append(f"The mean loss first comes within {UNIGRAM_TOL_NATS} nats of the mean unigram "
                    f"loss at {r.axis} = {_fmt(x[keep][k])}; {_pct(share)} of all events (and "
                    f"{_pct(share_a)} of the learning amplitude) have their midpoint before then: "
                    f"by timing alone those events cannot be told apart from the shared unigram "
                    f"phase.")
    elif not len(near):
        sent.append(f"The mean loss never comes within {UNIGRAM_TOL_NATS} nats of the mean unigram "
                    f"loss in the traced checkpoints.")
    return head + "".join(parts) + "<p>" + " ".join(html.escape(s) for s in sent) + "</p>"


def _section_frequency(r: _Run, figs: _Figures, numbers: dict) -> str:
    head = "<h2>Learning time vs training-set frequency</h2>"
    if r.events is None:
        return head + _not_computed("fit", r.run, "learning times")
    if "train_count" not in r.tokens or not (np.asarray(r.tokens["train_count"]) >= 0).any():
        return head + '<p class="note">trace/tokens.parquet has no training-split frequencies (an imported matrix or a checkpoint series without a training split).</p>'
    tok, mu = _largest_positive_event(r.events)
    if len(tok) < 3:
        return head + '<p class="note">fewer than 3 tokens with a learning event.</p>'
    count = np.asarray(r.tokens["train_count"], float)[r.columns(tok)]
    rho = spearman(count, mu)
    numbers["spearman_mu_train_count"] = rho
    fig, ax = figs.new()
    ax = ax[0, 0]
    xs = np.exp(mu)
    if len(tok) > 2000:
        hb = ax.hexbin(count + 1, xs, xscale="log", yscale="log", gridsize=40, mincnt=1, bins="log")
        fig.colorbar(hb, ax=ax, label="tokens")
    else:
        ax.scatter(count + 1, xs, s=6, alpha=0.5)
        ax.set_xscale("log")
        ax.set_yscale("log")
    ax.set_xlabel("train_count + 1 (occurrences of the token id in the training split)")
    ax.set_ylabel(f"learning time mu ({r.axis})")
    body = figs.save(fig, "frequency.png", _from("fit/events.parquet", "trace/tokens.parquet") +
                     ": mu of each token's largest learning event")
    text = (f"Spearman rank correlation between training-set frequency and learning time: "
            f"ρ = {rho:+.2f} over {len(tok):,} tokens with a learning event"
            + (" (frequent tokens are learned earlier). " if rho < 0 else ". "))
    if math.isfinite(rho):
        text += (f"Frequency accounts for ρ² = {_pct(rho * rho)} of the rank variance of learning "
                 f"times; a heavy-tailed difficulty (frequency) explanation covers that much, and the "
                 f"remaining {_pct(1 - rho * rho)} depends on something else (context, position, "
                 f"what the token's context needs to have been learned first).")
    return head + body + f"<p>{html.escape(text)}</p>" + _extremes_table(r, tok, mu, count)


def _extremes_table(r: _Run, tok: np.ndarray, mu: np.ndarray, count: np.ndarray, n: int = 8) -> str:
    """The n earliest- and n latest-learned tokens, with their text (escaped) and frequency."""
    order = np.argsort(mu, kind="stable")
    rows = []
    for label, idx in (("earliest", order[:n]), ("latest", order[::-1][:n])):
        for j in idx:
            i = int(r.columns([tok[j]])[0])
            rows.append(f"<tr><td>{label}</td><td>{_fmt(float(np.exp(mu[j])))}</td>"
                        f"<td>{_fmt(int(count[j]))}</td><td>{_token_html(r, i)}</td></tr>")
    return (f"<details><summary>the {n} earliest and latest learned tokens</summary><table>"
            f"<tr><th></th><th>mu ({html.escape(r.axis)})</th><th>train_count</th>"
            "<th>context + <b>token</b></th></tr>" + "".join(rows) + "</table></details>")


def _section_provenance(r: _Run) -> str:
    m = r.manifest
    if not m:
        return "<h2>Runs and provenance</h2><p class=\"note\">no manifest.json in this run directory.</p>"
    rows = []
    for name, st in m.get("stages", {}).items():
        cfg = st.get("config")
        cfg_html = ("<details><summary>config</summary><pre>"
                    f"{html.escape(json.dumps(cfg, indent=2, default=str))}</pre></details>") if cfg else ""
        rows.append(f"<tr><td>{html.escape(name)}</td><td>{html.escape(str(st.get('status')))}</td>"
                    f"<td>{_fmt(st.get('seconds')) if st.get('seconds') is not None else ''}</td>"
                    f"<td>{html.escape(str(st.get('updated', '')))}</td><td>{cfg_html}</td></tr>")
    vers = ", ".join(f"{html.escape(k)} {html.escape(str(v))}" for k, v in (m.get("versions") or {}).items())
    return ("<h2>Runs and provenance</h2><table><tr><th>stage</th><th>status</th><th>seconds</th>"
            "<th>updated</th><th>resolved config</th></tr>" + "".join(rows) + "</table>"
            f"<p>versions: {vers}<br>git commit: <code>{html.escape(str(m.get('git_commit')))}</code>"
            f"<br>from manifest.json</p>")


# ----------------------------------------------------------------------------- page


CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
h1{margin-bottom:.2em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
.box{background:#f6f8fa;border:1px solid #d0d7de;border-radius:6px;padding:0 1em 1em}
table{border-collapse:collapse;font-size:.9em}td,th{padding:.25em .6em;border-bottom:1px solid #eee;
text-align:left;vertical-align:top}.src{color:#777;font-size:.85em}
figure{margin:1em 0}img{max-width:100%}figcaption{color:#555;font-size:.9em}
.note{color:#8a5300;background:#fff8e6;padding:.3em .6em;border-radius:4px}
code,pre{background:#f0f0f0;border-radius:3px;padding:0 .2em;white-space:pre-wrap}
"""


def report(run_dir: str | Path, *, out: str | Path | None = None) -> Path:
    """Write the report of one run directory; returns the path of index.html.

    out: folder for index.html, the PNGs and summary.json (default RUN/report/).
    Raises RunDirError when RUN/trace has no loss matrix; every later stage is optional.
    """
    import matplotlib

    run = RunDir(run_dir)
    if not run.trace_loss.is_file():  # checked before the lock: no manifest in a non-run folder
        raise RunDirError(f"{run.trace_loss} does not exist", f"run `tokenclock trace {run.root}` first")
    out_dir = Path(out) if out is not None else run.report_dir
    with run_lock(run, "report"):
        update_stage(run, "report", "running")
        t0 = time.perf_counter()
        try:
            r = _load(run)
            figs = _Figures(out_dir)
            numbers: dict[str, Any] = {}
            # Missing glyphs in token text only warn; silence them, not real errors.
            with matplotlib.rc_context({"font.size": 9}), \
                    warnings.catch_warnings():
                warnings.simplefilter("ignore")
                sections = [_section_headline(r, numbers), _section_loss_curve(r, figs),
                            _section_examples(r, figs), _section_spectrum(r, figs),
                            _section_reconstruction(r, figs, numbers),
                            _section_classes(r, figs, numbers), _section_frequency(r, figs, numbers),
                            _section_provenance(r)]
            page = ("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
                    f"<title>tokenclock report: {html.escape(run.root.name)}</title>"
                    f"<style>{CSS}</style></head><body><h1>tokenclock report</h1>"
                    f"<p>RUN = <code>{html.escape(str(run.root))}</code>; every number below comes "
                    f"from an artifact in RUN, named under each figure.</p>"
                    + "".join(sections) + "</body></html>\n")
            html_path = out_dir / "index.html"
            with atomic_path(html_path) as tmp:
                tmp.write_text(page, encoding="utf-8")
            write_json(out_dir / "summary.json", {"run": str(run.root), **numbers,
                                                  "figures": figs.written})
        except BaseException:
            update_stage(run, "report", "failed")
            raise
        update_stage(run, "report", "done", seconds=time.perf_counter() - t0,
                     inputs={"run": str(run.root)}, outputs=[str(html_path)])
    return html_path
