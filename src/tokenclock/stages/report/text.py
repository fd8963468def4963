"""How the report writes its own text (no files, no figures; numbers: tokenclock.text): token text
with whitespace made visible, the order of the token classes, "not computed" notes and the captions
that name the artifact (and the command that writes it) behind each figure."""
from __future__ import annotations

import html
from typing import Any

from tokenclock.rundir import RunDir

CLASS_ORDER = ("learned", "rise-then-fall", "forgotten", "flat", "early", "late", "irregular")


def _visible(text: Any, limit: int | None = None, keep: str = "end") -> str:
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


def _token_label(context: Any, token: Any) -> str:
    return f"{_visible(context, 22)}[{_visible(token, 12, keep='start')}]"


def _not_computed(stage: str, run: RunDir, what: str = "") -> str:
    return (f'<p class="note">{html.escape(what or stage)} not computed: run '
            f"<code>tokenclock {stage} {html.escape(str(run.root))}</code></p>")


def _ordered(d: dict) -> list:
    return sorted(d.items(), key=lambda kv: (CLASS_ORDER.index(kv[0]) if kv[0] in CLASS_ORDER
                                             else len(CLASS_ORDER), kv[0]))


_STAGE_OF = {"trace": "trace", "fit": "fit", "spectrum": "spectrum", "ckpt": "train"}


def _from(*artifacts: str) -> str:
    """'from trace/loss.npy (`tokenclock trace RUN`), fit/events.parquet (`tokenclock fit RUN`)'."""
    groups: dict[str, list[str]] = {}
    for a in artifacts:
        groups.setdefault(_STAGE_OF.get(a.split("/")[0], a.split("/")[0]), []).append(a)
    return "from " + "; ".join(f"{html.escape(', '.join(arts))} (<code>tokenclock {st} RUN</code>)"
                               for st, arts in groups.items())
