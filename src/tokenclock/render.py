"""The one rendering kit of tokenclock's pages: figures (matplotlib, Agg per figure, no pyplot
state, written atomically), the stylesheet and HTML frame, and captions that name the artifacts
behind a figure through RunDir (so an averaged-weight report names trace_avg/ where it read it)
with the command that writes each. Used by the run report, the study report and the benchmarks'
reports. Reads nothing; writes only the PNGs and pages it is given.
"""
from __future__ import annotations

import html
from pathlib import Path

from tokenclock.artifacts import atomic_path
from tokenclock.rundir import RunDir, series_flag

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
h1{margin-bottom:.2em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
.box{background:#f6f8fa;border:1px solid #d0d7de;border-radius:6px;padding:0 1em 1em}
table{border-collapse:collapse;font-size:.9em}td,th{padding:.25em .6em;border-bottom:1px solid #eee;
text-align:left;vertical-align:top}.src{color:#777;font-size:.85em}table.num td{text-align:right}
figure{margin:1em 0}img{max-width:100%}figcaption{color:#555;font-size:.9em}
.note{color:#8a5300;background:#fff8e6;padding:.3em .6em;border-radius:4px}
code,pre{background:#f0f0f0;border-radius:3px;padding:0 .2em;white-space:pre-wrap}
"""
"""The one stylesheet of tokenclock's pages (`table.num`: a table of numbers, right-aligned)."""


def html_page(title: str, body: str) -> str:
    """A self-contained HTML page (no JS, no CDN, the stylesheet inline): `title` is plain text
    (escaped here), `body` is HTML."""
    return ('<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>{body}"
            "</body></html>\n")


def write_page(path: Path, title: str, body: str) -> Path:
    """html_page(title, body) written atomically to `path`; returns `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(html_page(title, body), encoding="utf-8")
    return path


class Figures:
    """Makes matplotlib figures and writes them as PNGs (atomically) into one folder."""

    def __init__(self, out: Path, dpi: int = 110):
        self.out = Path(out)
        self.dpi = dpi
        self.written: list[str] = []

    def new(self, nrows: int = 1, ncols: int = 1, size=(6.4, 4.0)):
        """(figure, axes (nrows, ncols) array): Agg per figure, no global backend switch."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        fig = Figure(figsize=size, dpi=self.dpi, layout="constrained")
        FigureCanvasAgg(fig)
        return fig, fig.subplots(nrows, ncols, squeeze=False)

    def write(self, fig, name: str) -> str:
        """Write `fig` as OUT/name; returns name (relative to the page beside it)."""
        self.out.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.out / name) as tmp:
            fig.savefig(tmp, format="png")
        self.written.append(name)
        return name

    def save(self, fig, name: str, caption: str) -> str:
        """Write `fig` as OUT/name; returns its HTML <figure> with `caption` (HTML)."""
        self.write(fig, name)
        return (f'<figure><img src="{html.escape(name)}" alt="{html.escape(name)}">'
                f"<figcaption>{caption}</figcaption></figure>")


def sources(run: RunDir, *artifacts: Path) -> str:
    """A caption's provenance: 'from trace_avg/loss.npy (`tokenclock trace RUN --weights avg`); ...',
    each artifact named relative to the run and grouped under the command that writes it."""
    groups: dict[str, list[str]] = {}
    for a in artifacts:
        groups.setdefault(run.stage_of(a), []).append(run.rel(a))
    return "from " + "; ".join(
        f"{html.escape(', '.join(names))} (<code>tokenclock {st} RUN{series_flag(run.weights if st != 'train' else None)}"
        "</code>)" for st, names in groups.items())


def not_computed(run: RunDir, stage: str, what: str = "") -> str:
    """A note that `what` (default: the stage) is missing, with the command that computes it."""
    return (f'<p class="note">{html.escape(what or stage)} not computed: run '
            f"<code>{html.escape(run.command(stage))}</code></p>")
