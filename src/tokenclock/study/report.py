"""The study report: reads STUDY_DIR/study.json, chinchilla.json, axes/*/spectrum/ and the T run's
spectrum/, and writes STUDY_DIR/report/index.html with PNGs beside it (T, D and M side by side).
matplotlib is imported inside the functions (importing tokenclock stays cheap).
"""
from __future__ import annotations

import html
import warnings
from pathlib import Path

import numpy as np

from tokenclock.artifacts import atomic_path, read_json, read_npy, read_parquet
from tokenclock.errors import RunDirError
from tokenclock.rundir import RunDir, StudyDir
from tokenclock.study.chinchilla import predict
from tokenclock.text import fmt, html_page


def _cell(v, spec: str | None = None) -> str:
    """A table cell: tokenclock.text.fmt, HTML-escaped (error messages and names are text)."""
    return html.escape(fmt(v, spec))


def _axis_dirs(sd: StudyDir, man: dict) -> dict[str, list[tuple[str, RunDir]]]:
    """{"T": [(label, rundir)], "D": [...], "M": [...]} of everything with a spectrum."""
    out: dict[str, list] = {"T": [], "D": [], "M": []}
    t = man.get("T", {})
    if t.get("status") == "done":
        out["T"].append((t["run"], sd.run(t["run"])))
    for name, a in sorted(man.get("axes", {}).items()):
        if a.get("status") == "done":
            out[a["axis"]].append((str(a["fixed"]), sd.axis(name)))
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
    with matplotlib.rc_context({"font.size": 8}), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        panels = _axes_figure(sd, _axis_dirs(sd, man))
        ch_fig = _chinchilla_figure(sd, man, ch)
    page = html_page(
        f"tokenclock study: {root.name}",
        "<h1>tokenclock study</h1>"
        f"<p>STUDY_DIR = <code>{html.escape(str(root))}</code>. Made by <code>tokenclock study CONFIG --out "
        f"{html.escape(str(root))}</code>; numbers from <code>study.json</code>, figures from each axis's "
        "<code>spectrum/curve.parquet</code>, <code>density.parquet</code> and <code>trace/loss.npy</code>.</p>"
        '<h2>Reconstruction along T, D and M</h2><table class="num"><tr><th>axis</th><th>matrices</th>'
        "<th>R^2 mean</th><th>R^2 min</th><th>held-out R^2 mean</th><th>replicate ceiling mean</th>"
        "<th>held-out / ceiling</th><th>alpha measured</th><th>alpha spectrum</th></tr>"
        f'{_summary_rows(man)}</table><img src="{panels}" alt="T, D and M panels"><h2>Axes</h2>'
        '<table class="num"><tr><th>axis</th><th>status</th><th>points</th><th>R^2</th><th>held-out R^2</th>'
        "<th>replicate ceiling</th><th>held-out / ceiling</th><th>alpha meas.</th><th>alpha spec.</th><th>event share</th><th>note</th>"
        f"</tr>{_axis_rows(man)}</table><h2>Classical baseline (Chinchilla approach 3)</h2>"
        f"{_chinchilla_html(ch, ch_fig)}{_branch_html(man)}"
        '<h2>Runs</h2><table class="num"><tr><th>run</th><th>model</th><th>params</th><th>steps</th>'
        "<th>tokens</th><th>kind</th><th>final loss</th><th>status</th><th>error</th></tr>"
        f"{_run_rows(man)}</table>")
    with atomic_path(sd.report_html) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return sd.report_html


def _figure(nrows: int, ncols: int, size):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=100, layout="constrained")
    FigureCanvasAgg(fig)  # Agg, set per figure: no global backend switch, no pyplot state
    return fig, fig.subplots(nrows, ncols, squeeze=False)


def _save(fig, sd: StudyDir, name: str) -> str:
    with atomic_path(sd.report_figure(name)) as tmp:
        fig.savefig(tmp, format="png")
    return name


def _axes_figure(sd: StudyDir, dirs: dict[str, list[tuple[str, RunDir]]]) -> str:
    """axes.png, one column per axis: row 0 measured vs reconstructed -dL/dln x, row 1 the
    spectrum density, row 2 example tokens."""
    from matplotlib.ticker import NullFormatter

    titles = {"T": "T: training steps", "D": "D: tokens seen (one curve per model)",
              "M": "M: non-embedding params (one curve per budget)"}
    fig, axs = _figure(3, 3, (13, 10))
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
    return _save(fig, sd, "axes.png")


def _chinchilla_figure(sd: StudyDir, man: dict, ch: dict) -> str | None:
    """chinchilla.png: each model's final losses against tokens seen, with the fitted L(N, D)."""
    runs = {n: s for n, s in man.get("runs", {}).items() if s.get("status") == "done" and s["kind"] != "compare"}
    if not runs or ch.get("alpha") is None:
        return None
    fig, axs = _figure(1, 1, (6, 4))
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
    return _save(fig, sd, "chinchilla.png")


def _summary_rows(man: dict) -> str:
    summ = man.get("summary", {})
    return "".join(
        f"<tr><th>{k}</th><td>{_cell(v.get('n_axes', 1 if k == 'T' else None))}</td>"
        f"<td>{_cell(v.get('reconstruction_r2_mean', v.get('reconstruction_r2')))}</td>"
        f"<td>{_cell(v.get('reconstruction_r2_min'))}</td>"
        f"<td>{_cell(v.get('reconstruction_r2_heldout_mean', v.get('reconstruction_r2_heldout')))}</td>"
        f"<td>{_cell(v.get('replicate_ceiling_r2_mean'))}</td><td>{_cell(v.get('heldout_ratio_to_ceiling_mean'))}</td>"
        f"<td>{_cell(v.get('alpha_measured_median', v.get('alpha_measured')))}</td>"
        f"<td>{_cell(v.get('alpha_spectrum_median', v.get('alpha_spectrum')))}</td></tr>"
        for k, v in ((k, summ.get(k, {})) for k in ("T", "D", "M")))


def _axis_rows(man: dict) -> str:
    return "".join(
        f"<tr><td>{html.escape(n)}</td><td>{_cell(a.get('status'))}</td><td>{_cell(a.get('n_ckpt'))}</td>"
        f"<td>{_cell(a.get('reconstruction_r2'))}</td><td>{_cell(a.get('reconstruction_r2_heldout'))}</td>"
        f"<td>{_cell(a.get('replicate_ceiling_r2'))}</td><td>{_cell(a.get('heldout_ratio_to_ceiling'))}</td>"
        f"<td>{_cell(a.get('alpha_measured'))}</td>"
        f"<td>{_cell(a.get('alpha_spectrum'))}</td><td>{_cell(a.get('event_share'))}</td>"
        f"<td style='text-align:left'>{_cell(a.get('error') or a.get('replicate_note'))}</td></tr>"
        for n, a in sorted(man.get("axes", {}).items()))


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
