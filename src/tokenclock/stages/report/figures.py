"""The report's figure sections along the axis (the token population's sections: population.py):
each reads the loaded run (load.RunView), writes its PNG into the report folder (matplotlib, Agg,
no pyplot) and returns its HTML: the figure, its caption naming the artifacts, and the numbers it
measured (added to the `numbers` dict that becomes summary.json)."""
from __future__ import annotations

import html

import numpy as np

from tokenclock.curves import curve
from tokenclock.formatting import fmt, pct
from tokenclock.render import Figures, not_computed, sources
from tokenclock.scores import r2_score
from tokenclock.stages.fit.models import CLASSES
from tokenclock.stages.report.load import RunView
from tokenclock.stages.report.token_text import token_label, visible

# Example-grid quota per class (4x4 = 16 panels); unused slots go to whatever classes exist.
GRID_QUOTA = {"learned": 5, "rise-then-fall": 3, "forgotten": 2, "flat": 2, "irregular": 2,
              "early": 1, "late": 1}
GRID_SHAPE = (4, 4)


def section_loss_curve(r: RunView, figs: Figures) -> str:
    axis = (r.spec_summary or {}).get("axis", r.axis)
    if axis not in r.axis_table:
        axis = r.axis
    x_all = np.asarray(r.axis_table[axis], dtype=np.float64)
    mean_loss = r.mean_loss
    fig, ax = figs.new()
    ax = ax[0, 0]
    srcs = [r.run.trace_loss]
    if r.ckpt is not None and axis in r.ckpt:
        xc = np.asarray(r.ckpt[axis], dtype=np.float64)
        for col, style in (("val_loss", "-o"), ("train_loss", "-")):
            if col in r.ckpt and np.isfinite(r.ckpt[col]).any():
                ok = xc > 0
                ax.plot(xc[ok], r.ckpt[col][ok], style, ms=3, label=f"{col} ({r.run.rel(r.run.ckpt_index)})")
        srcs.append(r.run.ckpt_index)
    ok = x_all > 0
    ax.plot(x_all[ok], mean_loss[ok], "s", ms=3, color="k", label="mean traced-token loss")
    text = ""
    if r.spec_summary:
        xs = np.geomspace(x_all[ok].min(), x_all[ok].max(), 200) if ok.sum() > 1 else None
        for key, color in (("alpha_measured", "tab:red"), ("alpha_spectrum", "tab:purple")):
            pl = r.power_law(key, x_all, mean_loss) if xs is not None else None
            if pl:
                e, a, alpha, how = pl
                ax.plot(xs, e + a * xs ** -alpha, "--", color=color,
                        label=f"E + A x^-α, α = {alpha:.3g} ({key})")
                text += (f"<li>{key} = {alpha:.3g}: E = {e:.3g}, A = {a:.3g} ({html.escape(how)})</li>")
        srcs.append(r.run.spectrum_summary)
    ax.set_xscale("log")
    ax.set_xlabel(axis)
    ax.set_ylabel("loss (nats)")
    ax.legend(fontsize=7)
    cap = sources(r.run, *srcs)
    body = figs.save(fig, "loss_curve.png", cap)
    if text:
        body += f"<ul>{text}</ul>"
    elif r.spec_summary is None:
        body += not_computed(r.run, "spectrum", "power-law overlay")
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


def _choose_examples(r: RunView, n: int) -> list[tuple[int, str]]:
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
    for name in sorted(GRID_QUOTA, key=lambda c: CLASSES.index(c)):
        idx = np.flatnonzero(cls == name)
        if len(idx):
            rows += sorted(rng.choice(idx, size=min(GRID_QUOTA[name], len(idx)), replace=False))
    rest = np.setdiff1d(np.arange(len(tok)), rows)
    if len(rows) < n and len(rest):
        rows += sorted(rng.choice(rest, size=min(n - len(rows), len(rest)), replace=False))
    return [(int(tok[i]), str(cls[i])) for i in rows[:n]]


def section_examples(r: RunView, figs: Figures) -> str:
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
            ax.plot(np.exp(uu), curve(uu, b_of[t], a, mu, w, c_of.get(t, 0.0), u.max()),
                    color="tab:red", lw=1.2)
        i = cols[j]
        label = token_label(_text(r, "context", i), _text(r, "token_text", i))
        # parse_math=False: token text may hold '$'; it is plain text here, never mathtext
        ax.set_title(f"{label}\n{name}" if name else label, fontsize=7, parse_math=False)
        ax.set_xscale("log")
        ax.tick_params(labelsize=6)
        rows.append(f"<tr><td>{t}</td><td>{html.escape(name)}</td>"
                    f"<td>{token_html(r, i)}</td></tr>")
    for ax in list(axes.flat)[len(examples):]:
        ax.set_axis_off()
    fig.supxlabel(r.axis, fontsize=8)
    fig.supylabel("loss (nats)", fontsize=8)
    srcs = [r.run.trace_loss, r.run.trace_tokens] + (
        [r.run.fit_events, r.run.fit_tokens] if r.fit_tokens is not None else [])
    body = figs.save(fig, "examples.png", sources(r.run, *srcs) +
                     ": dots measured, red line the fitted sigmoid(s); title = context[token]")
    note = "" if r.fit_tokens is not None else not_computed(r.run, "fit", "fitted curves")
    return ("<h2>Example token trajectories</h2>" + body + note +
            "<details><summary>the tokens shown</summary><table><tr><th>tok_idx</th><th>class</th>"
            "<th>context + <b>token</b></th></tr>" + "".join(rows) + "</table></details>")


def _text(r: RunView, column: str, i: int) -> str:
    return str(r.tokens[column][i]) if column in r.tokens else ""


def token_html(r: RunView, i: int) -> str:
    """Escaped '<code>context<b>token</b></code>' with newlines and control characters visible."""
    return (f"<code>{html.escape(visible(_text(r, 'context', i), 60))}"
            f"<b>{html.escape(visible(_text(r, 'token_text', i)))}</b></code>")


def section_spectrum(r: RunView, figs: Figures) -> str:
    if r.events is None and r.density is None:
        return "<h2>Learning-time spectrum</h2>" + not_computed(r.run, "fit", "events")
    fig, ax = figs.new()
    ax = ax[0, 0]
    N = r.loss.shape[1]
    srcs = []
    cens_note = ""
    if r.events is not None and len(r.events["mu"]):
        mu, a = r.events["mu"], r.events["a"]
        side = r.censored_sides()
        lo, hi = float(mu.min()), float(mu.max())
        if hi - lo < 1e-6:  # all events at one time: a bin of width 1 around it
            lo, hi = lo - 0.5, hi + 0.5
        edges = np.linspace(lo, hi + 1e-9, 41)
        width = np.diff(edges)
        for sign, color, lab in ((1, "tab:blue", "learning events (a > 0)"),
                                 (-1, "tab:orange", "rises (a < 0)")):
            for cens in (False, True):  # censored events apart: hatched, no fill
                m = (np.sign(a) == sign) & ((side != "none") == cens)
                if cens and not m.any():
                    continue
                h, _ = np.histogram(mu[m], bins=edges, weights=a[m] / N)
                ax.bar(np.exp(edges[:-1]), h / width, width=np.exp(edges[1:]) - np.exp(edges[:-1]),
                       align="edge", color=color, alpha=0.15 if cens else 0.5,
                       hatch="//" if cens else None, edgecolor=color if cens else None,
                       label=f"{lab}, censored" if cens else lab)
        n_l, n_r = int((side == "left").sum()), int((side == "right").sum())
        cens_note = (f"; hatched: the {n_l + n_r:,} censored events ({n_l:,} left, {n_r:,} right: "
                     "midpoint outside or at the edge of the checkpoints, time and amplitude "
                     "extrapolated)")
        srcs.append(r.run.fit_events)
    if r.density is not None:
        ax.plot(np.exp(r.density["u"]), r.density["rho"], color="k", label=f"ρ(u) ({r.run.rel(r.run.spectrum_density())})")
        srcs.append(r.run.spectrum_density())
    ax.axhline(0, color="0.6", lw=0.5)
    ax.set_xscale("log")
    observed_range(ax, r)
    ax.set_xlabel(f"learning time ({r.axis})")
    ax.set_ylabel("amplitude density (nats per unit ln x, per token)")
    ax.legend(fontsize=7)
    body = figs.save(fig, "spectrum.png", sources(r.run, *srcs) +
                     ": histogram of event midpoints mu weighted by a/N; shaded: the traced "
                     "checkpoints, dashed: the last one" + cens_note)
    if r.density is None:
        body += not_computed(r.run, "spectrum", "density ρ(u)")
    return "<h2>Learning-time spectrum</h2>" + body


def observed_range(ax, r: RunView, vertical: bool = True) -> None:
    """Shade the traced checkpoints' range of the axis and mark the last checkpoint (the end of
    training on a step axis) on a log axis: along x (vertical) or along y."""
    x = r.x
    x = x[x > 0]
    if not len(x):
        return
    end = "end of training" if r.axis == "step" else "last checkpoint"
    span, line = (ax.axvspan, ax.axvline) if vertical else (ax.axhspan, ax.axhline)
    span(x.min(), x.max(), color="0.92", zorder=0, label="observed checkpoints")
    last = f"{x.max():,.0f}" if float(x.max()).is_integer() else fmt(x.max())
    line(x.max(), color="0.3", ls="--", lw=1, label=f"{end} ({r.axis} {last})")


def section_resolution(r: RunView, figs: Figures, numbers: dict) -> str:
    """Unresolved share (events, |a|) per ln-time bin beside the widths of the resolved events."""
    head = "<h2>Resolved and unresolved learning events</h2>"
    if r.events is None:
        return head + not_computed(r.run, "fit", "event widths")
    res = (r.fit_summary or {}).get("resolution")
    if "resolved" not in r.events or not res:
        return head + (f'<p class="note">{r.run.rel(r.run.fit_events)} has no <code>resolved</code> column '
                       "(fitted by an older tokenclock): rerun "
                       f"<code>{html.escape(r.run.command('fit'))}</code></p>")
    bins = res["bins"]
    edges = np.asarray(bins["u_edges"], float)
    share = {k: np.array([np.nan if v is None else v for v in bins[k]], float)
             for k in ("unresolved_event_share", "unresolved_amplitude_share")}
    fig, axes = figs.new(1, 2, size=(10.0, 3.6))
    ax1, ax2 = axes[0]
    for key, color, lab in (("unresolved_event_share", "tab:red", "share of events"),
                            ("unresolved_amplitude_share", "tab:purple", "share of |a|")):
        ax1.stairs(share[key], np.exp(edges), baseline=None, color=color, lw=1.5, label=lab)
    tw = ax1.twinx()
    tw.stairs(np.asarray(bins["spacing"], float), np.exp(edges), baseline=None, color="0.5", ls="--",
              label="local spacing Δu (right axis)")
    tw.set_ylabel("checkpoint spacing Δu (ln x)")
    ax1.set_xscale("log")
    ax1.set_ylim(0, 1)
    ax1.set_xlabel(f"event midpoint mu ({r.axis})")
    ax1.set_ylabel("unresolved (width < Δu)")
    ax1.legend(fontsize=7, loc="upper left")
    tw.legend(fontsize=7, loc="upper right")
    w = np.asarray(r.events["width"], float)[np.asarray(r.events["resolved"], bool)]
    w = w[np.isfinite(w) & (w > 0)]
    if len(w):
        ax2.hist(w, bins=np.geomspace(w.min(), w.max() * 1.001 + 1e-12, 41), color="tab:blue")
    wf = (r.fit_summary or {}).get("width_floor") or {}
    if wf.get("spacing_min") is not None:
        ax2.axvspan(wf["spacing_min"], wf["spacing_max"], color="0.85", zorder=0,
                    label="checkpoint spacing range")
        ax2.legend(fontsize=7)
    ax2.set_xscale("log")
    ax2.set_xlabel("width of resolved events (ln x)")
    ax2.set_ylabel("events")
    q = res.get("resolved_width_quantiles") or {}
    qs = res.get("resolved_width_over_spacing_quantiles") or {}
    numbers.update(unresolved_event_share=res.get("unresolved_event_share"),
                   unresolved_amplitude_share=res.get("unresolved_amplitude_share"),
                   resolved_width_median=q.get("q50"), width_floor_rule=wf.get("rule"))
    fsum = r.run.rel(r.run.fit_summary)
    body = figs.save(fig, "resolution.png", sources(r.run, r.run.fit_events, r.run.fit_summary) +
                     ": left, per ln-time bin of mu, the share of events (and of |a|) with "
                     f"resolved = false, i.e. width below the local checkpoint spacing ({fsum} "
                     "resolution.bins: unresolved_event_share, unresolved_amplitude_share, spacing); "
                     "right, histogram of the column width over events with resolved = true")
    factor = ("w_min_spacing", "w_min_frac")[wf.get("rule") == "span"]
    floor = (f"Width floor: rule {wf.get('rule')}, {factor} = {fmt(wf.get(factor))}; "
             f"{pct(wf.get('share_at_floor'))} of events sit at it" if wf else "Width floor: not recorded")
    text = (f"{pct(res.get('unresolved_event_share'))} of {fmt(res.get('n_events'))} events, carrying "
            f"{pct(res.get('unresolved_amplitude_share'))} of the event amplitude |a|, are sharper "
            f"than the checkpoints around their midpoint (width < Δu): for those the width is a "
            f"bound, not a measurement. Resolved events: median width {fmt(q.get('q50'))} ln-units "
            f"({fmt(qs.get('q50'))} x the local spacing; 5-95%: {fmt(q.get('q05'))}-"
            f"{fmt(q.get('q95'))}). {floor} ({fsum} width_floor).")
    return head + body + f"<p>{html.escape(text)}</p>"


def section_reconstruction(r: RunView, figs: Figures, numbers: dict) -> str:
    if not r.curves:
        return "<h2>Reconstruction of −dL/d ln x</h2>" + not_computed(r.run, "spectrum")
    clocks = (r.spec_summary or {}).get("clocks") or {}
    fig, axes = figs.new(1, len(r.curves), size=(5.0 * len(r.curves), 3.8))
    for ax, (axis, c) in zip(axes.flat, r.curves.items()):
        x, meas, rec = c["x"], c["dldu_measured"], c["dldu_reconstructed"]
        held = c["heldout"].astype(bool) if "heldout" in c else np.zeros(len(x), bool)
        r2 = (clocks.get(axis) or {}).get("reconstruction_r2")
        if r2 is None and axis == (r.spec_summary or {}).get("axis"):
            r2 = (r.spec_summary or {}).get("reconstruction_r2")
        if r2 is None:
            r2 = r2_score(rec[~held], meas[~held])
        numbers.setdefault("clock_r2", {})[axis] = r2
        ax.plot(x[~held], meas[~held], "o", ms=3, color="k", label="measured")
        if held.any():
            ax.plot(x[held], meas[held], "o", ms=4, mfc="none", color="tab:green", label="measured, held out")
        ax.plot(x, rec, "-", color="tab:red", label=f"reconstructed, R² = {fmt(r2)}")
        ax.set_xscale("log")
        ax.set_xlabel(axis)
        ax.set_ylabel("−dL/d ln x (nats)")
        ax.set_title(f"clock: {axis}", fontsize=9)
        ax.legend(fontsize=7)
    paths = [r.run.spectrum_curve(a) for a in r.run.spectrum_clocks()]
    if r.run.spectrum_curve().is_file():
        paths.append(r.run.spectrum_curve())
    ssum = r.run.rel(r.run.spectrum_summary)
    return "<h2>Reconstruction of −dL/d ln x</h2>" + figs.save(
        fig, "reconstruction.png", sources(r.run, *sorted(paths), r.run.spectrum_summary)
        + f"; open circles: held-out checkpoints; R² from {ssum} (in-sample), "
          "or computed here on the in-sample checkpoints where the summary has none")


