"""How tokenclock writes numbers and pages for people (no files): one number format with one rule
for missing values, percentages, and the stylesheet and HTML frame that the run report and the
study report share. Used by the report stage, the study report and the demo's printed headline.
"""
from __future__ import annotations

import html
import math
from typing import Any

import numpy as np

NA = "n/a"
"""What a missing number prints as: None, NaN and inf alike."""


def fmt(v: Any, spec: str | None = None) -> str:
    """A value for people: None, NaN and inf print as 'n/a'; numbers by the format `spec` (".3f",
    ".1%", ".4g") or, without one, integers with thousands separators and floats to 3 significant
    digits (scientific below 1e-3); bools and anything else as str. Not HTML-escaped."""
    if v is None:
        return NA
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, (float, np.floating)) and not math.isfinite(v):
        return NA
    if spec is not None and isinstance(v, (int, float, np.integer, np.floating)):
        return format(v, spec)
    if isinstance(v, (int, np.integer)):
        return f"{int(v):,}"
    if isinstance(v, (float, np.floating)):
        return f"{v:.3g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.2e}"
    return str(v)


def pct(v: Any) -> str:
    """A share as a percentage with one decimal (0.123 -> '12.3%'); missing -> 'n/a'."""
    return fmt(v, ".1%")


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
