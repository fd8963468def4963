"""How tokenclock writes numbers for people (no files): one number format with one rule for missing
values, and percentages. Used by the reports (pages: tokenclock.render) and the demo's printed
headline.
"""
from __future__ import annotations

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
