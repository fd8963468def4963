"""How the report writes its own text (no files, no figures; numbers: tokenclock.formatting): token text
with whitespace made visible, the order of the token classes, "not computed" notes and the captions
that name the artifact (and the command that writes it) behind each figure."""
from __future__ import annotations

from typing import Any

from tokenclock.stages.fit.models import CLASSES


def visible(text: Any, limit: int | None = None, keep: str = "end") -> str:
    """Show whitespace and control characters (newline -> \\n) and cut to `limit` characters."""
    s = "" if text is None else str(text)
    out = []
    for ch in s:
        if ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif not ch.isprintable() and ch != " ":
            out.append(ch.encode("unicode_escape").decode("ascii"))
        else:
            out.append(ch)
    s = "".join(out)
    if limit is not None and len(s) > limit:
        s = ("…" + s[-(limit - 1):]) if keep == "end" else (s[: limit - 1] + "…")
    return s


def token_label(context: Any, token: Any) -> str:
    return f"{visible(context, 22)}[{visible(token, 12, keep='start')}]"


def ordered(d: dict) -> list:
    return sorted(d.items(), key=lambda kv: (CLASSES.index(kv[0]) if kv[0] in CLASSES
                                             else len(CLASSES), kv[0]))
