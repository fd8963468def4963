"""Studies: grids of runs over model size and token budget, the D and M axes built from their
final losses, the Chinchilla baseline and the study report. `study(DIR, load_study(CONFIG))`."""
from __future__ import annotations

from tokenclock.study.config import load_study
from tokenclock.study.stage import study

__all__ = ["load_study", "study"]
