"""The report stage: reads the artifacts of one run directory (never logs) and writes
RUN/report/index.html (one self-contained page, no JS, no CDN), one PNG per figure beside it, and
RUN/report/summary.json with the headline numbers. Missing stages become "not computed" notes.
"""
from __future__ import annotations

import html
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from tokenclock.artifacts import atomic_path, write_json
from tokenclock.errors import RunDirError
from tokenclock.formatting import fmt, pct
from tokenclock.render import Figures, html_page, not_computed
from tokenclock.rundir import RunDir
from tokenclock.stages.report.figures import (
    section_examples,
    section_loss_curve,
    section_reconstruction,
    section_resolution,
    section_spectrum,
)
from tokenclock.stages.report.load import RunView, load_run
from tokenclock.stages.report.population import section_classes, section_frequency
from tokenclock.stages.report.token_text import ordered
from tokenclock.stages.report.trust import section_validation

# ----------------------------------------------------------------------------- sections without a figure (the rest: figures.py)


def section_headline(r: RunView, numbers: dict) -> str:
    rows = []

    def add(label: str, value: Any, source: str) -> None:
        rows.append(f"<tr><th>{html.escape(label)}</th><td>{html.escape(value)}</td>"
                    f'<td class="src">{html.escape(source)}</td></tr>')

    run = r.run
    trace_loss, fit_sum, fit_tok, spec_sum = (run.rel(p) for p in (run.trace_loss, run.fit_summary, run.fit_tokens,
                                                                    run.spectrum_summary))
    K, N = r.loss.shape
    numbers.update(n_tok=int(N), n_ckpt=int(K), axis=r.axis)
    add("tokens traced", fmt(N), trace_loss)
    add("checkpoints", fmt(K), trace_loss)
    add("fitted axis (clock)", r.axis, fit_sum if r.fit_summary else run.rel(run.trace_axis))
    notes = []
    if r.fit_tokens is not None:
        model = r.fit_tokens.get("model")
        fallback = {k: v for k, v in (r.fit_summary or {}).items()
                    if "sigmoid" in k and isinstance(v, (int, float)) and 0 <= v <= 1}
        if model is None and fallback:
            k, v = next(iter(fallback.items()))
            numbers["sigmoid_share"] = v
            add("tokens whose best model is a sigmoid", pct(v), f"{fit_sum} {k}")
        if model is not None:
            share = float(np.char.startswith(model.astype(str), "sigmoid").mean()) if len(model) \
                else float("nan")
            numbers["sigmoid_share"] = share
            add("tokens whose best model is a sigmoid", pct(share), fit_tok)
        cls = r.fit_tokens.get("class")
        if cls is not None and len(cls):
            names, counts = np.unique(cls.astype(str), return_counts=True)
            shares = {str(n): float(c) / len(cls) for n, c in zip(names, counts)}
            numbers["class_shares"] = shares
            add("class shares", ", ".join(f"{k} {pct(v)}" for k, v in ordered(shares)),
                fit_tok)
    else:
        notes.append(not_computed(r.run, "fit", "token fits"))
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
                add(label, fmt(s[key]), spec_sum)
        for key, v in s.items():  # any other R² the spectrum stage reports (e.g. after warmup)
            if key.startswith("reconstruction_r2") and key not in numbers and isinstance(v, (int, float)):
                numbers[key] = v
                add(key.replace("_", " ").replace("r2", "R²"), fmt(v), spec_sum)
    else:
        notes.append(not_computed(r.run, "spectrum", "learning-time spectrum"))
    notes += trace_flags(r.run, r.meta, numbers)
    extra = _all_numbers(r)
    return ('<div class="box"><h2>Headline</h2><table class="kv">' + "".join(rows) + "</table>"
            + "".join(notes) + extra + "</div>")


def trace_flags(run: RunDir, meta: dict, numbers: dict) -> list[str]:
    """What the trace flagged about its checkpoints (trace/meta.json): axis warnings, checkpoints
    with identical loss rows, checkpoints left out, published steps a suite lacked."""
    lines = [w["message"] for w in meta.get("warnings") or []]
    lines += [f"identical loss rows: {', '.join(g)} (the same weights under several labels?)"
              for g in meta.get("identical_rows") or []]
    lines += [f"left out: {s['checkpoint']}: {s['reason']}" for s in meta.get("skipped") or []]
    missing = (meta.get("suite") or {}).get("missing") or []
    if missing:
        lines.append(f"the {meta['suite']['suite']} schedule has {len(missing)} step(s) this series lacks "
                     f"(first: {', '.join(map(str, missing[:5]))}); traced without them, nothing interpolated")
    if lines:
        numbers["trace_flags"] = lines
    return [f'<p class="note">{html.escape(run.rel(run.trace_meta))}: {html.escape(x)}</p>' for x in lines]


def _all_numbers(r: RunView) -> str:
    """Every number in the stage summaries, so nothing a stage measured is hidden."""
    parts = []
    for name, d in ((r.run.rel(r.run.fit_summary), r.fit_summary), (r.run.rel(r.run.spectrum_summary), r.spec_summary)):
        if d:
            parts.append(f"<details><summary>all of {name}</summary><pre>"
                         f"{html.escape(json.dumps(d, indent=2, default=str))}</pre></details>")
    return "".join(parts)


def section_provenance(r: RunView) -> str:
    m = r.manifest
    if not m:
        return "<h2>Runs and provenance</h2><p class=\"note\">no manifest.json in this run directory.</p>"
    rows = []
    for name, st in m.get("stages", {}).items():
        cfg = st.get("config")
        cfg_html = ("<details><summary>config</summary><pre>"
                    f"{html.escape(json.dumps(cfg, indent=2, default=str))}</pre></details>") if cfg else ""
        rows.append(f"<tr><td>{html.escape(name)}</td><td>{html.escape(str(st.get('status')))}</td>"
                    f"<td>{fmt(st.get('seconds')) if st.get('seconds') is not None else ''}</td>"
                    f"<td>{html.escape(str(st.get('updated', '')))}</td><td>{cfg_html}</td></tr>")
    vers = ", ".join(f"{html.escape(k)} {html.escape(str(v))}" for k, v in (m.get("versions") or {}).items())
    return ("<h2>Runs and provenance</h2><table><tr><th>stage</th><th>status</th><th>seconds</th>"
            "<th>updated</th><th>resolved config</th></tr>" + "".join(rows) + "</table>"
            f"<p>versions: {vers}<br>git commit: <code>{html.escape(str(m.get('git_commit')))}</code>"
            f"<br>from manifest.json</p>")


# ----------------------------------------------------------------------------- page


def report(run_dir: str | Path, *, out: str | Path | None = None) -> Path:
    """Write the report of one run directory; returns the path of index.html.

    out: folder for index.html, the PNGs and summary.json (default RUN/report/).
    Raises RunDirError when RUN/trace has no loss matrix; every later stage is optional.
    """
    import matplotlib

    run = RunDir(run_dir)
    if not run.trace_loss.is_file():  # checked before the lock: no manifest in a non-run folder
        raise RunDirError(f"{run.trace_loss} does not exist", f"run `{run.command('trace')}` first")
    out_dir = Path(out) if out is not None else run.report_dir
    with run.stage("report", inputs={"run": str(run.root)}) as st:
        r = load_run(run)
        figs = Figures(out_dir)
        numbers: dict[str, Any] = {}
        # Missing glyphs in token text only warn; silence them, not real errors.
        with matplotlib.rc_context({"font.size": 9}), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sections = [section_headline(r, numbers), section_loss_curve(r, figs),
                        section_examples(r, figs), section_spectrum(r, figs),
                        section_resolution(r, figs, numbers),
                        section_reconstruction(r, figs, numbers), section_validation(r, figs, numbers),
                        section_classes(r, figs, numbers), section_frequency(r, figs, numbers),
                        section_provenance(r)]
        page = html_page(f"tokenclock report: {run.root.name}",
                         f"<h1>tokenclock report</h1><p>RUN = <code>{html.escape(str(run.root))}"
                         "</code>; every number below comes from an artifact in RUN, named under "
                         "each figure.</p>" + "".join(sections))
        html_path = out_dir / run.report_html.name
        with atomic_path(html_path) as tmp:
            tmp.write_text(page, encoding="utf-8")
        write_json(out_dir / run.report_summary.name,
                   {"run": str(run.root), **numbers, "figures": figs.written})
        st.record(outputs=[str(html_path)])
    return html_path
