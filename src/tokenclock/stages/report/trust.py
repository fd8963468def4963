"""The report's section on how far the reconstruction can be trusted: every score beside what bounds
it, for each weight series the run holds (raw, and averaged when traced with trace.weights=avg),
side by side: in-sample, alternate and block held-out checkpoints, the token split and its ceiling,
and the replicate ceiling of `tokenclock spectrum RUN --replicate RUN2`, with one figure of the
measured and reconstructed -dL/du of each series (and of the replicate).
"""
from __future__ import annotations

import html

import numpy as np

from tokenclock.artifacts import read_json, read_parquet
from tokenclock.formatting import fmt
from tokenclock.render import Figures
from tokenclock.rundir import AVG, RAW, SERIES_LABELS, WEIGHT_SERIES, RunDir
from tokenclock.stages.report.load import RunView

# (label, spectrum/summary.json key, what bounds it)
ROWS = (
    ("in-sample R²", "reconstruction_r2", "fits every checkpoint it scores"),
    ("held-out R² (every other checkpoint)", "reconstruction_r2_heldout", "leaks through the smoothing of the derivative"),
    ("held-out R², after warmup", "reconstruction_r2_heldout_after_warmup", "the recommended score (headline)"),
    ("held-out R² (blocks of checkpoints)", "reconstruction_r2_block_heldout", "no fitted neighbour inside a block"),
    ("held-out R² (blocks), after warmup", "reconstruction_r2_block_heldout_after_warmup", ""),
    ("token split: half A's events vs half B, after warmup", "token_split_r2_after_warmup",
     "bounded by the token-split ceiling below"),
    ("token-split ceiling (A's vs B's measured), after warmup", "token_split_ceiling_r2_after_warmup",
     "blind to noise every token shares"),
)


def _series(run: RunDir) -> dict[str, RunDir]:
    """The weight series of this run with a spectrum: raw first."""
    out = {}
    for w in WEIGHT_SERIES:
        s = run.series(w)
        if s.spectrum_summary.is_file():
            out[w] = s
    return out


def _replicate_rows(reps: dict[str, dict], summaries: dict[str, dict]) -> list[tuple[str, dict, str]]:
    rows = []
    rows.append(("replicate ceiling (run A's measured vs B's), after warmup",
                 {w: (r.get("ceiling_r2") or {}).get("mean", {}).get("after_warmup") for w, r in reps.items()},
                 "what replicates across data orders"))
    rows.append(("held-out R² after warmup / replicate ceiling",
                 {w: _ratio(summaries[w].get("reconstruction_r2_heldout_after_warmup"),
                            (r.get("ceiling_r2") or {}).get("mean", {}).get("after_warmup")) for w, r in reps.items()},
                 "goal >= 0.95"))
    rows.append(("run A's events vs run B's measured, after warmup",
                 {w: (r.get("cross_reconstruction_r2") or {}).get("a_events_predict_b", {}).get("after_warmup")
                  for w, r in reps.items()}, "one run's spectrum predicting another run"))
    return rows


def _ratio(a, b):
    return a / b if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b > 0 else None


def section_validation(r: RunView, figs: Figures, numbers: dict) -> str:
    series = _series(r.run)
    head = "<h2>How far the reconstruction can be trusted</h2>"
    if not series:
        return ""
    summaries = {w: read_json(s.spectrum_summary) for w, s in series.items()}
    reps = {w: read_json(s.spectrum_replicate) for w, s in series.items() if s.spectrum_replicate.is_file()}
    cols = list(series)
    rows = [(label, {w: summaries[w].get(key) for w in cols}, bound) for label, key, bound in ROWS]
    if reps:
        rows += _replicate_rows(reps, summaries)
    trs = "".join(f"<tr><th>{html.escape(label)}</th>" + "".join(f"<td>{fmt(vals.get(w))}</td>" for w in cols)
                  + f'<td class="src">{html.escape(bound)}</td></tr>' for label, vals, bound in rows)
    table = ("<table><tr><th>score of −dL/d ln step</th>" + "".join(f"<th>{SERIES_LABELS[w]}</th>" for w in cols)
             + "<th>what bounds it</th></tr>" + trs + "</table>")
    numbers["series"] = {w: {key: summaries[w].get(key) for _, key, _ in ROWS} for w in cols}
    if reps:
        numbers["replicate"] = {w: {"ceiling_after_warmup": rep["ceiling_r2"]["mean"]["after_warmup"],
                                    "replicate_run": rep.get("replicate")} for w, rep in reps.items()}
    src = ", ".join(r.run.rel(s.spectrum_summary) for s in series.values())
    if reps:
        src += ", " + ", ".join(r.run.rel(series[w].spectrum_replicate) for w in reps)
    fig_html = _figure(series, figs, r.run)
    text = ("Every held-out score refits the events without the checkpoints it scores. The token split "
            "fits nothing again (the fit is per token): half A's events predict half B's measured "
            "derivative. Its ceiling is close to 1 when the traced tokens are enough; it cannot see "
            "noise that every token shares at a checkpoint. The replicate ceiling can: it is the R² "
            "between two runs that differ only in data order (train.data_seed). "
            + ("" if reps else "No replicate here: train one with --set train.data_seed=1 and run "
               f"tokenclock spectrum {r.run.root} --replicate RUN2."))
    return (head + table + f'<p class="src">from {html.escape(src)}</p>' + fig_html
            + f"<p>{html.escape(text)}</p>")


def _figure(series: dict[str, RunDir], figs: Figures, run: RunDir) -> str:
    fig, ax = figs.new(size=(6.8, 4.0))
    ax = ax[0, 0]
    colors = {RAW: ("k", "tab:red"), AVG: ("tab:blue", "tab:orange")}
    srcs = []
    for w, s in series.items():
        if not s.spectrum_curve().is_file():
            continue
        c = read_parquet(s.spectrum_curve())
        x = np.asarray(c["x"], float)
        mc, rc = colors[w]
        ax.plot(x, c["dldu_measured"], "o", ms=3, color=mc, label=f"measured ({w})")
        ax.plot(x, c["dldu_reconstructed"], "-", color=rc, label=f"reconstructed ({w})")
        srcs.append(run.rel(s.spectrum_curve()))
        if s.spectrum_replicate_curve.is_file():
            rc2 = read_parquet(s.spectrum_replicate_curve)
            ax.plot(np.asarray(rc2["step"], float), rc2["dldu_measured_b"], "x", ms=3, color=mc, alpha=0.5,
                    label=f"measured, replicate ({w})")
            srcs.append(run.rel(s.spectrum_replicate_curve))
    if not srcs:
        return ""
    ax.set_xscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("−dL/d ln step (nats)")
    ax.legend(fontsize=7)
    return figs.save(fig, "validation.png", "from " + html.escape(", ".join(srcs)))
