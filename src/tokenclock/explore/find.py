"""The page's find: a string (or regular expression) searched in the validation text itself, the
token texts of a run joined in order, so that " lamb" finds the tokens " l|am|b" as well as one
token " lamb". Built on the first find of a run and kept: one str of the text (1-4 bytes per
character) and the character offset of each token (4 bytes per token); a match never spans two
validation sequences.
"""
from __future__ import annotations

import re

import numpy as np

from tokenclock.explore.data import ExploreError, RunData

SCAN_MAX = 10_000  # matches skipped (across a sequence break) before a find gives up on one direction


def text_of(d: RunData) -> tuple[str, np.ndarray]:
    """(the validation text, int32 (N + 1,) character offset of each token in it; int64 past 2^31)."""
    if "text" not in d.cache:
        if d.vocab_text is None or d.token_id is None:
            raise ExploreError(f"run {d.name} has no token text (an imported loss matrix)",
                               "find needs a trace with token text: explore the run it was imported from", status=409)
        lengths = np.fromiter((len(t) for t in d.vocab_text), np.int64, len(d.vocab_text))
        total = int(lengths[d.token_id].sum(dtype=np.int64))
        offsets = np.zeros(d.n_tok + 1, np.int32 if total < 2**31 else np.int64)  # 4 bytes per token
        np.cumsum(lengths[d.token_id], out=offsets[1:])
        d.cache["text"] = ("".join(d.vocab_text[d.token_id].tolist()), offsets)
    return d.cache["text"]


def _pattern(q: str, regex: bool) -> re.Pattern:
    if not q:
        raise ExploreError("empty search", "type some text to find")
    if not regex:
        return re.compile(re.escape(q))
    try:
        pat = re.compile(q, re.MULTILINE)
    except re.error as e:
        raise ExploreError(f"{q!r} is not a valid regular expression ({e})", "escape special characters "
                           "with a backslash, or untick regex") from None
    if pat.match(""):
        raise ExploreError(f"the regular expression {q!r} matches empty text", "make it match at least one character")
    return pat


def _total(d: RunData, q: str, regex: bool, pat: re.Pattern, text: str) -> int:
    counts = d.cache.setdefault("find_totals", {})
    if (q, regex) not in counts:
        if len(counts) > 64:
            counts.clear()
        counts[(q, regex)] = text.count(q) if not regex else sum(1 for _ in pat.finditer(text))
    return counts[(q, regex)]


def search(d: RunData, q: str, regex: bool, start: int, backward: bool = False) -> dict:
    """The next (or previous) match after (before) token `start`, wrapping around: {i: its first
    token, n: how many tokens it covers, total: matches in the whole text}; i is None without one."""
    pat = _pattern(q, regex)
    start = d.check_col(start)
    text, offsets = text_of(d)
    total = _total(d, q, regex, pat, text)
    if not total:
        return {"i": None, "n": 0, "total": 0}
    if backward:
        m = _last(d, pat, text, offsets, int(offsets[start])) or _last(d, pat, text, offsets, len(text))
    else:
        m = _first(d, pat, text, offsets, int(offsets[start + 1])) or _first(d, pat, text, offsets, 0)
    if m is None:
        return {"i": None, "n": 0, "total": total}
    i, j = np.searchsorted(offsets, [m[0], max(m[0], m[1] - 1)], side="right") - 1
    return {"i": int(i), "n": int(j - i + 1), "total": total}


def _one_sequence(d: RunData, offsets: np.ndarray, c0: int, c1: int) -> bool:
    """Whether characters c0..c1 (a match) lie in one validation sequence."""
    i = np.searchsorted(offsets, [c0, max(c0, c1 - 1)], side="right") - 1
    return i[0] == i[1] or d.seq(i)[0] == d.seq(i)[1]


def _first(d: RunData, pat: re.Pattern, text: str, offsets: np.ndarray, pos: int) -> tuple[int, int] | None:
    """The first match starting at character `pos` or later."""
    for _ in range(SCAN_MAX):
        m = pat.search(text, pos)
        if m is None:
            return None
        if _one_sequence(d, offsets, m.start(), m.end()):
            return m.start(), m.end()
        pos = m.start() + 1
    return None


def _last(d: RunData, pat: re.Pattern, text: str, offsets: np.ndarray, end: int) -> tuple[int, int] | None:
    """The last match starting before character `end` (searched in a window before it, widened
    fourfold until one is found)."""
    width = 4096
    while True:
        lo = max(0, end - width)
        found = [(m.start(), m.end()) for m in pat.finditer(text, lo, min(len(text), end + 4096)) if m.start() < end]
        for s, e in reversed(found):
            if _one_sequence(d, offsets, s, e):
                return s, e
        if lo == 0:
            return None
        width *= 4
