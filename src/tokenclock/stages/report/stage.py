"""The report stage: reads the artifacts of one run directory (never logs) and writes
RUN/report/index.html (one self-contained page, no JS, no CDN), one PNG per figure beside it, and
RUN/report/summary.json with the headline numbers. Missing stages become "not computed" notes.
"""
from __future__ import annotations

import html
import json
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tokenclock.errors import RunDirError
from tokenclock.rundir import RunDir, load_manifest, run_lock, update_stage
from tokenclock.artifacts import atomic_path, read_json, read_npy, read_parquet, write_json
from tokenclock.stages.report.figures import (_Figures, _section_classes, _section_examples,
                                              _section_frequency, _section_loss_curve,
                                              _section_reconstruction, _section_spectrum)
from tokenclock.stages.report.load import RunView, load_run
from tokenclock.stages.report.text import _fmt, _not_computed, _ordered, _pct


# ----------------------------------------------------------------------------- sections without a figure (the rest: figures.py)


def _section_headline(r: RunView, numbers: dict) -> str:
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


def _all_numbers(r: RunView) -> str:
    """Every number in the stage summaries, so nothing a stage measured is hidden."""
    parts = []
    for name, d in (("fit/summary.json", r.fit_summary), ("spectrum/summary.json", r.spec_summary)):
        if d:
            parts.append(f"<details><summary>all of {name}</summary><pre>"
                         f"{html.escape(json.dumps(d, indent=2, default=str))}</pre></details>")
    return "".join(parts)


def _section_provenance(r: RunView) -> str:
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
            r = load_run(run)
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
