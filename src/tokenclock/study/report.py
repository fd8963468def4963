"""The study report: reads STUDY_DIR/study.json, chinchilla.json, axes/*/spectrum/ and the T run's
spectrum/, and writes STUDY_DIR/report/index.html with PNGs beside it (T, D and M side by side).
matplotlib is imported inside the functions (importing tokenclock stays cheap).
"""
from __future__ import annotations

import html
import warnings
from pathlib import Path

import numpy as np

from tokenclock.artifacts import read_json, read_npy, read_parquet
from tokenclock.errors import RunDirError
from tokenclock.formatting import fmt
from tokenclock.render import Figures, write_page
from tokenclock.rundir import RAW, WEIGHT_SERIES, RunDir, StudyDir, series_key
from tokenclock.study.chinchilla import predict


def _cell(v, spec: str | None = None) -> str:
    """A table cell: tokenclock.formatting.fmt, HTML-escaped (error messages and names are text)."""
    return html.escape(fmt(v, spec))


def _series(man: dict) -> list[str]:
    """The weight series whose axes study.json holds (raw first)."""
    return [w for w in WEIGHT_SERIES if man.get(series_key("axes", w))]


def _axes_of(man: dict, w: str) -> dict:
    return man.get(series_key("axes", w), {})


def _axis_dirs(sd: StudyDir, man: dict, w: str = RAW) -> dict[str, list[tuple[str, RunDir]]]:
    """{"T": [(label, rundir)], "D": [...], "M": [...]} of everything with a spectrum."""
    out: dict[str, list] = {"T": [], "D": [], "M": []}
    t = man.get("T", {})
    if t.get("status") == "done":
        out["T"].append((t["run"], sd.run(t["run"])))
    for name, a in sorted(_axes_of(man, w).items()):
        if a.get("status") == "done":
            out[a["axis"]].append((str(a["fixed"]), sd.axis(name, w)))
    return out


def study_report(study_dir: str | Path) -> Path:
    """Write STUDY_DIR/report/index.html; returns its path."""
    import matplotlib

    sd = StudyDir(study_dir)
    root = sd.root
    if not sd.manifest.is_file():
        raise RunDirError(f"{sd.manifest} does not exist", "run `tokenclock study CONFIG --out DIR` first")
    man = read_json(sd.manifest)
    ch = read_json(sd.chinchilla) if sd.chinchilla.is_file() else {}
    sd.report_dir.mkdir(parents=True, exist_ok=True)
    series = _series(man) or [RAW]
    with matplotlib.rc_context({"font.size": 8}), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        panels = _axes_figure(sd, _axis_dirs(sd, man, series[0]))
        ch_fig = _chinchilla_figure(sd, man, ch)
        per_axis = _per_axis_html(sd, man, series)
    ax = RunDir("AXIS")  # an axis folder's layout, to name its files
    page = (
        f"tokenclock study: {root.name}",
        "<h1>tokenclock study</h1>"
        f"<p>STUDY_DIR = <code>{html.escape(str(root))}</code>. Made by <code>tokenclock study CONFIG --out "
        f"{html.escape(str(root))}</code>; numbers from <code>{sd.rel(sd.manifest)}</code>, figures from each axis's "
        f"<code>{ax.rel(ax.spectrum_curve())}</code>, <code>{ax.rel(ax.spectrum_density())}</code> and "
        f"<code>{ax.rel(ax.trace_loss)}</code>.</p>"
        '<h2>Reconstruction along T, D and M</h2><p>Held-out: events fitted on every other axis point, '
        "scored on the others. Replicate ceiling: the R^2 between two data-order seeds' measured "
        "-dL/du on the same axis points (what a reconstruction can be expected to explain); the ratio "
        "is held-out R^2 / ceiling, shown beside both. raw: each run's final weights; avg: its averaged "
        'weights (train.avg).</p><table class="num"><tr><th>axis</th><th>weights</th><th>fit rule</th><th>matrices</th>'
        "<th>R^2 mean</th><th>R^2 min</th><th>held-out R^2 mean</th><th>held-out R^2 min</th>"
        "<th>leave-one-out R^2 mean</th><th>replicate ceiling mean</th><th>held-out / ceiling</th>"
        "<th>leave-one-out / ceiling</th><th>alpha measured</th><th>alpha spectrum</th></tr>"
        f'{_summary_rows(man, series)}</table>{_rules_html(man)}<img src="{panels}" alt="T, D and M panels">'
        f"<p>Panels: the {series[0]} series.</p><h2>Axes</h2>"
        '<table class="num"><tr><th>axis</th><th>weights</th><th>status</th><th>points</th><th>fit rule</th><th>R^2</th>'
        "<th>held-out R^2</th><th>leave-one-out R^2</th><th>discrete: in-sample / held-out / loo</th><th>block held-out</th><th>token split (ceiling)</th>"
        "<th>replicate ceiling</th><th>held-out / ceiling</th><th>alpha meas.</th><th>alpha spec.</th><th>event share</th><th>note</th>"
        f"</tr>{_axis_rows(man, series)}</table>{per_axis}<h2>Classical baseline (Chinchilla approach 3)</h2>"
        f"{_chinchilla_html(ch, ch_fig)}{_branch_html(man)}"
        '<h2>Runs</h2><table class="num"><tr><th>run</th><th>model</th><th>params</th><th>steps</th>'
        "<th>tokens</th><th>kind</th><th>final loss</th><th>status</th><th>error</th></tr>"
        f"{_run_rows(man)}</table>")
    return write_page(sd.report_html, *page)


def _figures(sd: StudyDir) -> Figures:
    return Figures(sd.report_dir, dpi=100)


def _axes_figure(sd: StudyDir, dirs: dict[str, list[tuple[str, RunDir]]]) -> str:
    """axes.png, one column per axis: row 0 measured vs reconstructed -dL/dln x, row 1 the
    spectrum density, row 2 example tokens."""
    from matplotlib.ticker import NullFormatter

    titles = {"T": "T: training steps", "D": "D: tokens seen (one curve per model)",
              "M": "M: non-embedding params (one curve per budget)"}
    fig, axs = _figures(sd).new(3, 3, (13, 10))
    for j, kind in enumerate(("T", "D", "M")):
        a0, a1, a2 = axs[0][j], axs[1][j], axs[2][j]
        for i, (label, rd) in enumerate(dirs[kind]):
            color = f"C{i % 10}"
            c = read_parquet(rd.spectrum_curve())
            a0.plot(c["x"], c["dldu_measured"], "o-", color=color, ms=3, lw=1, label=f"{label} measured")
            a0.plot(c["x"], c["dldu_reconstructed"], "--", color=color, lw=1.2)
            if rd.spectrum_replicate_curve.is_file():  # the seeds' spread: the replicate band
                rc = read_parquet(rd.spectrum_replicate_curve)
                seeds = np.stack([v for k, v in rc.items() if k.startswith("dldu_measured_seed")])
                a0.fill_between(rc["x"], seeds.min(axis=0), seeds.max(axis=0), color=color, alpha=0.15, lw=0)
            d = read_parquet(rd.spectrum_density())
            a1.plot(d["x"], d["rho"], color=color, lw=1, label=label)
            if i == len(dirs[kind]) - 1:  # examples from the last (largest) curve of the axis
                _examples(a2, rd)
        for ax in (a0, a1, a2):
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())  # minor labels overlap on short axes
        a0.set_title(titles[kind])
        a0.set_ylabel("-dL/dln x (solid: measured, dashed: spectrum, band: seeds)")
        a1.set_ylabel("rho(ln x)  (events' drop per token)")
        a2.set_ylabel("per-token loss (nats)")
        a2.set_xlabel({"T": "step", "D": "tokens seen", "M": "non-embedding params"}[kind])
        if dirs[kind]:
            a0.legend(fontsize=6)
    return _figures(sd).write(fig, "axes.png")


def _chinchilla_figure(sd: StudyDir, man: dict, ch: dict) -> str | None:
    """chinchilla.png: each model's final losses against tokens seen, with the fitted L(N, D)."""
    runs = {n: s for n, s in man.get("runs", {}).items() if s.get("status") == "done" and s["kind"] != "compare"}
    if not runs or ch.get("alpha") is None:
        return None
    fig, axs = _figures(sd).new(1, 1, (6, 4))
    ax = axs[0][0]
    models = sorted({s["model"] for s in runs.values()}, key=lambda m: min(
        s["n_params"] for s in runs.values() if s["model"] == m))
    for i, m in enumerate(models):
        pts = sorted((s["tokens_seen"], s["final_trace_loss"], s["n_params"]) for s in runs.values()
                     if s["model"] == m)
        D = np.array([p[0] for p in pts], float)
        ax.plot(D, [p[1] for p in pts], "o", color=f"C{i % 10}", ms=4, label=m)
        Dg = np.geomspace(D.min(), D.max(), 50)
        ax.plot(Dg, predict(ch, pts[0][2], Dg), "-", color=f"C{i % 10}", lw=1)
    ax.set_xscale("log")
    ax.set_xlabel("tokens seen")
    ax.set_ylabel("final loss on traced tokens (nats)")
    ax.legend(fontsize=6)
    return _figures(sd).write(fig, "chinchilla.png")


def _summary_rows(man: dict, series: list[str]) -> str:
    rows = [("T", RAW, man.get("summary", {}).get("T", {}))]
    for w in series:
        summ = man.get(series_key("summary", w), {})
        rows += [(k, w, summ.get(k, {})) for k in ("D", "M")]
    return "".join(
        f"<tr><th>{k}</th><td>{w}</td><td>{_cell(v.get('fit_rule', 'two_events' if k == 'T' else None))}</td>"
        f"<td>{_cell(v.get('n_axes', 1 if k == 'T' else None))}</td>"
        f"<td>{_cell(v.get('reconstruction_r2_mean', v.get('reconstruction_r2')))}</td>"
        f"<td>{_cell(v.get('reconstruction_r2_min'))}</td>"
        f"<td>{_cell(v.get('reconstruction_r2_heldout_mean', v.get('reconstruction_r2_heldout')))}</td>"
        f"<td>{_cell(v.get('reconstruction_r2_heldout_min'))}</td>"
        f"<td>{_cell(v.get('reconstruction_r2_loo_mean'))}</td>"
        f"<td>{_cell(v.get('replicate_ceiling_r2_mean'))}</td><td>{_cell(v.get('heldout_ratio_to_ceiling_mean'))}</td>"
        f"<td>{_cell(v.get('loo_ratio_to_ceiling_mean'))}</td>"
        f"<td>{_cell(v.get('alpha_measured_median', v.get('alpha_measured')))}</td>"
        f"<td>{_cell(v.get('alpha_spectrum_median', v.get('alpha_spectrum')))}</td></tr>"
        for k, w, v in rows)


def _rules_html(man: dict) -> str:
    """The fit rules tried on the sparse axes: mean leave-one-out and every-other held-out R^2 of
    each, per axis kind (chosen on the first weight series, kept for the others)."""
    tried = [(w, k, c) for w, kinds in (man.get("fit_rules") or {}).items() for k, c in (kinds or {}).items()
             if "score_mean" in c]
    if not tried:
        return ""
    rules = list(tried[0][2]["score_mean"])
    head = "".join(f"<th>{html.escape(r)}</th>" for r in rules)

    def row(w, k, c, key, label):
        return (f"<tr><th>{k}</th><td>{w}</td><td>{label}</td>" + "".join(
            f"<td>{'<b>' if r == c['chosen'] else ''}{_cell(c[key].get(r))}{'</b>' if r == c['chosen'] else ''}</td>"
            for r in rules) + "</tr>")
    body = "".join(row(w, k, c, "score_mean", "leave one out") + row(w, k, c, "heldout_every_other_r2_mean", "every other")
                   for w, k, c in tried)
    return (f"<h3>Fit rules for sparse axes</h3><p>Mean held-out R^2 of each rule (bold: chosen). "
            f"{html.escape(tried[0][2]['criterion'])}. two_events: up to two sigmoids per token (the T axis' rule); "
            "one_event: at most one; wide: no event narrower than one axis spacing; bic_small_k: the BIC "
            "penalty grows by K/(K-p-1). Every other: events fitted on every other axis point, which leaves "
            "too few points for two events on these axes.</p>"
            f'<table class="num"><tr><th>axis</th><th>weights</th><th>held out</th>{head}</tr>{body}</table>')


def _axis_rows(man: dict, series: list[str]) -> str:
    return "".join(
        f"<tr><td>{html.escape(n)}</td><td>{w}</td><td>{_cell(a.get('status'))}</td><td>{_cell(a.get('n_ckpt'))}</td>"
        f"<td>{_cell(a.get('fit_rule'))}</td>"
        f"<td>{_cell(a.get('reconstruction_r2'))}</td><td>{_cell(a.get('reconstruction_r2_heldout'))}</td>"
        f"<td>{_cell(a.get('reconstruction_r2_loo'))}</td><td>{_cell(a.get('reconstruction_r2_discrete'))} / "
        f"{_cell(a.get('reconstruction_r2_heldout_discrete'))} / {_cell(a.get('reconstruction_r2_loo_discrete'))}</td>"
        f"<td>{_cell(a.get('reconstruction_r2_block_heldout'))}</td>"
        f"<td>{_cell(a.get('token_split_r2'))} ({_cell(a.get('token_split_ceiling_r2'))})</td>"
        f"<td>{_cell(a.get('replicate_ceiling_r2'))}</td><td>{_cell(a.get('heldout_ratio_to_ceiling'))}</td>"
        f"<td>{_cell(a.get('alpha_measured'))}</td>"
        f"<td>{_cell(a.get('alpha_spectrum'))}</td><td>{_cell(a.get('event_share'))}</td>"
        f"<td style='text-align:left'>{_cell(a.get('error') or a.get('replicate_note'))}</td></tr>"
        for w in series for n, a in sorted(_axes_of(man, w).items()))


def _per_axis_html(sd: StudyDir, man: dict, series: list[str]) -> str:
    """One figure per axis and series (axis_<series>_<name>.png: measured vs reconstructed -dL/du
    with the held-out reconstruction and the seeds' band, the spectrum, example tokens), each under
    its numbers, in collapsible sections."""
    parts = []
    for w in series:
        for name, a in sorted(_axes_of(man, w).items()):
            if a.get("status") != "done":
                continue
            png = _axis_figure(sd, sd.axis(name, w), f"axis_{w}_{name}.png", name)
            parts.append(
                f"<details><summary>{html.escape(name)} ({w}): R^2 {_cell(a.get('reconstruction_r2'))}, held-out "
                f"{_cell(a.get('reconstruction_r2_heldout'))}, leave-one-out {_cell(a.get('reconstruction_r2_loo'))}, replicate ceiling {_cell(a.get('replicate_ceiling_r2'))}, "
                f"ratio {_cell(a.get('heldout_ratio_to_ceiling'))}, rule {_cell(a.get('fit_rule'))}</summary>"
                f'<img src="{png}" alt="{html.escape(name)}"></details>')
    return "<h2>Each axis</h2>" + "".join(parts) if parts else ""


def _axis_figure(sd: StudyDir, rd: RunDir, fname: str, title: str) -> str:
    from matplotlib.ticker import NullFormatter

    fig, axs = _figures(sd).new(1, 3, (13, 3.2))
    a0, a1, a2 = axs[0]
    c = read_parquet(rd.spectrum_curve())
    a0.plot(c["x"], c["dldu_measured"], "o-", color="C0", ms=3, lw=1, label="measured (seed mean)")
    a0.plot(c["x"], c["dldu_reconstructed"], "--", color="C1", lw=1.2, label="spectrum (all points)")
    if "dldu_heldout" in c and np.isfinite(np.asarray(c["dldu_heldout"], float)).any():
        held = np.asarray(c["heldout"], bool)
        a0.plot(np.asarray(c["x"])[held], np.asarray(c["dldu_heldout"])[held], "s", color="C2", ms=4,
                mfc="none", label="held-out points: reconstruction")
    if "dldu_loo" in c:
        a0.plot(c["x"], c["dldu_loo"], "x", color="C4", ms=5, label="each point left out: reconstruction")
    if rd.spectrum_replicate_curve.is_file():
        rc = read_parquet(rd.spectrum_replicate_curve)
        seeds = np.stack([v for k, v in rc.items() if k.startswith("dldu_measured_seed")])
        a0.fill_between(rc["x"], seeds.min(axis=0), seeds.max(axis=0), color="C0", alpha=0.15, lw=0,
                        label="seeds' range")
    a0.set_title(f"{title}: -dL/dln x")
    a0.legend(fontsize=6)
    d = read_parquet(rd.spectrum_density())
    a1.plot(d["x"], d["rho"], color="C3", lw=1)
    a1.set_title("spectrum rho(ln x)")
    _examples(a2, rd)
    a2.set_title("example tokens (largest events)")
    for ax in (a0, a1, a2):
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
    return _figures(sd).write(fig, fname)


def _run_rows(man: dict) -> str:
    return "".join(
        f"<tr><td style='text-align:left'>{html.escape(n)}</td><td>{html.escape(s['model'])}</td>"
        f"<td>{s['n_params']:,}</td><td>{s['steps']:,}</td><td>{s['tokens_seen']:,}</td>"
        f"<td>{html.escape(s['kind'])}</td><td>{_cell(s.get('final_trace_loss'), '.4g')}</td>"
        f"<td>{_cell(s.get('status'))}</td><td style='text-align:left'>{_cell(s.get('error'))}</td></tr>"
        for n, s in man.get("runs", {}).items())


def _branch_html(man: dict) -> str:
    bvf = man.get("branch_vs_full") or []
    return ("" if not bvf else "<h2>Cooldown branch vs full run</h2><table class='num'><tr><th>model</th>"
            "<th>steps</th><th>branch loss</th><th>full loss</th><th>branch - full (nats)</th></tr>" + "".join(
                f"<tr><td>{html.escape(r['model'])}</td><td>{r['steps']}</td><td>{_cell(r['branch_loss'], '.4g')}</td>"
                f"<td>{_cell(r['full_loss'], '.4g')}</td><td>{_cell(r['diff_nats'], '.3g')}</td></tr>" for r in bvf)
            + "</table>")


def _chinchilla_html(ch: dict, ch_fig: str | None) -> str:
    if ch.get("alpha") is None:
        return "<p>Chinchilla fit failed: " + _cell(ch.get("error")) + "</p>"
    boot = ch.get("bootstrap") or {}
    return (f"<p>L(N, D) = E + A N<sup>-alpha</sup> + B D<sup>-beta</sup> (Huber delta {ch.get('delta')}, "
            f"log-loss, {ch.get('n_runs')} runs): " + ", ".join(
                f"{k} = {_cell(ch[k], '.4g')} [{_cell(boot.get(k, [None] * 3)[0])}, "
                f"{_cell(boot.get(k, [None] * 3)[2])}]" for k in ("E", "A", "alpha", "B", "beta"))
            + f"; R^2 (log) {_cell(ch.get('r2_log'))}. From <code>chinchilla.json</code>."
            + (f" <b>Pinned at a bound (not determined by these runs): {_cell(', '.join(ch['at_bound']))}.</b>"
               if ch.get("at_bound") else "") + "</p>"
            + (f'<img src="{ch_fig}" alt="chinchilla">' if ch_fig else ""))


def _examples(ax, rd: RunDir, n: int = 4) -> None:
    """A few tokens with the largest fitted learning event along this axis."""
    loss = read_npy(rd.trace_loss, mmap=True)
    axis = read_parquet(rd.trace_axis)
    col = next(iter(axis))
    x = np.asarray(axis[col], float)
    keep = x > 0
    ev = read_parquet(rd.fit_events, columns=["tok_idx", "a"])
    if len(ev["a"]) == 0:
        return
    text = read_parquet(rd.trace_tokens, columns=["tok_idx", "token_text"])
    by = dict(zip(text["tok_idx"].tolist(), text["token_text"].tolist())) if "token_text" in text else {}
    top, seen = [], set()
    for t in np.asarray(ev["tok_idx"])[np.argsort(-np.asarray(ev["a"]))][:2000].tolist():
        if by.get(t, t) not in seen:  # distinct token texts
            seen.add(by.get(t, t))
            top.append(t)
        if len(top) == n:
            break
    for i, t in enumerate(top):
        ax.plot(x[keep], np.asarray(loss[:, t])[keep], "o-", ms=3, lw=1, color=f"C{i}",
                label=repr(by.get(t, t))[:16])
    ax.legend(fontsize=6)
