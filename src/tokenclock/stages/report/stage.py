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

from tokenclock.artifacts import atomic_path, write_json
from tokenclock.errors import RunDirError
from tokenclock.formatting import fmt
from tokenclock.render import Figures, html_page
from tokenclock.rundir import RunDir
from tokenclock.stages.report.figures import (
    section_examples,
    section_loss_curve,
    section_reconstruction,
    section_resolution,
    section_spectrum,
)
from tokenclock.stages.report.headline import section_headline
from tokenclock.stages.report.load import RunView, load_run
from tokenclock.stages.report.population import section_classes, section_frequency
from tokenclock.stages.report.trust import section_validation

# ----------------------------------------------------------------------------- provenance (the headline: headline.py; figures: figures.py)


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
