"""The report's headline (reads the loaded run and each weight series' spectrum summaries; writes
no files): one sentence of setup, the one score to trust with its ceiling and why, what the fit
measured (the drop from the traced losses, class shares, censored events), and every other score
in one table with a line on what it tests.
"""
from __future__ import annotations

import html
import json
import math
from typing import Any

import numpy as np

from tokenclock.artifacts import read_json
from tokenclock.formatting import fmt, pct
from tokenclock.render import not_computed
from tokenclock.rundir import AVG, SERIES_LABELS, WEIGHT_SERIES, RunDir
from tokenclock.stages.report.load import RunView
from tokenclock.stages.report.token_text import ordered

RECOMMENDED = "reconstruction_r2_heldout_after_warmup"
# (label, spectrum/summary.json key, what it tests); the recommended score first
SCORES = (
    ("held-out R², after warmup", RECOMMENDED,
     "refits the events without every other checkpoint and scores those, after the warmup steps: "
     "the part of the curve a scaling law describes, on checkpoints the fit never saw"),
    ("in-sample R²", "reconstruction_r2",
     "scores the checkpoints the events were fitted on: how well the events describe the curve, "
     "not a prediction; the warmup's large, easy derivative lifts it"),
    ("in-sample R², after warmup", "reconstruction_r2_after_warmup",
     "the same in-sample score without the warmup steps"),
    ("held-out R² (every other checkpoint)", "reconstruction_r2_heldout",
     "held-out checkpoints including warmup; each sits between two fitted neighbours, and the "
     "smoothing of the measured derivative leaks across them"),
    ("held-out R² (blocks of checkpoints)", "reconstruction_r2_block_heldout",
     "leaves out runs of consecutive checkpoints: no fitted neighbour inside a block and no "
     "smoothing across it, so the events must predict a stretch of the curve, not interpolate "
     "between neighbours: the hardest of the held-out tests"),
    ("held-out R² (blocks), after warmup", "reconstruction_r2_block_heldout_after_warmup",
     "the block test after warmup, where the derivative is small and its noise weighs most"),
    ("token split, after warmup", "token_split_r2_after_warmup",
     "half A's events predict half B's measured derivative: do the events generalise across tokens"),
    ("token-split ceiling, after warmup", "token_split_ceiling_r2_after_warmup",
     "half A's measured derivative against half B's: bounds the token split; blind to noise that "
     "every token shares at a checkpoint"),
)


def _num(v) -> float | None:
    return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None


def series_summaries(r: RunView) -> tuple[dict[str, dict], dict[str, dict]]:
    """{series: spectrum summary} (raw first) and {series: spectrum replicate record}."""
    summ, reps = {}, {}
    for w in WEIGHT_SERIES:
        s = r.run.series(w)
        if s.spectrum_summary.is_file():
            summ[w] = r.spec_summary if w == r.run.weights and r.spec_summary else read_json(s.spectrum_summary)
            if s.spectrum_replicate.is_file():
                reps[w] = read_json(s.spectrum_replicate)
    return summ, reps


def recommended_score(summ: dict[str, dict], reps: dict[str, dict]) -> dict | None:
    """The one score to trust: held-out R² after warmup, of the averaged series when it was
    traced (else raw), beside the replicate ceiling of that series (else the token-split
    ceiling, which cannot see shared noise). Falls back to held-out, then in-sample R², saying so."""
    if not summ:
        return None
    w = AVG if AVG in summ else next(iter(summ))
    s = summ[w]
    for key in (RECOMMENDED, "reconstruction_r2_heldout", "reconstruction_r2"):
        if _num(s.get(key)) is not None:
            break
    else:
        return None
    rep = ((reps.get(w) or {}).get("ceiling_r2") or {}).get("mean", {}).get("after_warmup")
    if _num(rep) is not None:
        ceiling, how = float(rep), "replicate"
    elif _num(s.get("token_split_ceiling_r2_after_warmup")) is not None:
        ceiling, how = float(s["token_split_ceiling_r2_after_warmup"]), "token split"
    else:
        ceiling, how = None, None
    value = float(s[key])
    return {"series": w, "key": key, "value": value, "ceiling": ceiling, "ceiling_kind": how,
            "ratio": value / ceiling if ceiling else None}


def setup_sentence(r: RunView) -> str:
    """Model, parameters, steps, batch, tokens traced and the machine, from the manifest (train
    stage) and trace/meta.json; what is not recorded is left out."""
    stages = (r.manifest or {}).get("stages") or {}
    train = stages.get("train") or {}
    conf, summ = train.get("config") or {}, train.get("summary") or {}
    tc, mc = conf.get("train") or {}, conf.get("model") or {}
    K, N = r.loss.shape
    parts = []
    model = mc.get("preset") or ((stages.get("trace") or {}).get("config") or {}).get("model")
    if model:
        p = summ.get("n_params")
        parts.append(f"Model {model}" + (f" ({fmt(p / 1e6)}M non-embedding parameters)" if p else ""))
    batch = (f" at batch {fmt(tc['batch_size'])} x {fmt(tc['seq_len'])} tokens"
             if tc.get("batch_size") and tc.get("seq_len") else "")
    if train.get("status") == "done" and summ.get("steps"):
        parts.append(f"trained {fmt(summ['steps'])} steps{batch}")
    elif tc.get("steps") and r.axis == "step":  # stopped early: say how far it got
        parts.append(f"trained to step {fmt(r.x.max())} of {fmt(tc['steps'])} configured{batch}")
    elif tc.get("steps"):
        parts.append(f"configured for {fmt(tc['steps'])} steps{batch}")
    prec = summ.get("precision") or {}
    if prec.get("cpu") or summ.get("device"):
        dev = prec.get("cuda") if str(summ.get("device", "")).startswith("cuda") else prec.get("cpu")
        parts.append(f"on {dev or summ.get('device')}" + (f" ({summ['dtype']})" if summ.get("dtype") else ""))
    lead = ", ".join(parts)
    traced = f"{fmt(N)} validation tokens traced at {fmt(K)} checkpoints along {r.axis}"
    return (lead + "; " + traced if lead else traced[0].upper() + traced[1:]) + "."


def _drop_sentence(r: RunView, numbers: dict) -> str:
    """The mean loss's drop measured between the first and the last traced checkpoint."""
    ml = r.mean_loss
    first, last = float(ml[0]), float(ml[-1])
    numbers.update(loss_first=first, loss_last=last, drop_measured_nats=first - last)
    x = r.x
    return (f"The mean traced loss falls {fmt(first - last)} nats, from {fmt(first)} at {r.axis} "
            f"{_x(x[0])} to {fmt(last)} at {_x(x[-1])} (measured, {r.run.rel(r.run.trace_loss)}).")


def _x(v: float) -> str:
    """An axis value: a whole number with thousands separators (steps), else 3 figures."""
    return f"{v:,.0f}" if float(v).is_integer() else fmt(v)


def _censored_sentence(r: RunView, numbers: dict) -> str:
    if r.events is None or not len(r.events["mu"]):
        return ""
    side = r.censored_sides()
    n, n_l, n_r = len(side), int((side == "left").sum()), int((side == "right").sum())
    numbers.update(n_events=n, n_censored_left=n_l, n_censored_right=n_r)
    return (f" Of {fmt(n)} events (drops and rises), {fmt(n - n_l - n_r)} have their midpoint inside the "
            f"observed checkpoints (measured); {fmt(n_l)} lie before or at the first checkpoint and "
            f"{fmt(n_r)} after or at the last (censored: their time and amplitude are "
            f"extrapolations, drawn apart and left out of the lists below).")


def section_headline(r: RunView, numbers: dict) -> str:
    K, N = r.loss.shape
    numbers.update(n_tok=int(N), n_ckpt=int(K), axis=r.axis)
    summ, reps = series_summaries(r)
    parts = [f"<p>{html.escape(setup_sentence(r))}</p>"]
    rec = recommended_score(summ, reps)
    if rec is not None:
        numbers["recommended_score"] = rec
        parts.append(_trust_html(rec))
    notes = []
    rows = []

    def add(label: str, value: Any, source: str) -> None:
        rows.append(f"<tr><th>{html.escape(label)}</th><td>{html.escape(value)}</td>"
                    f'<td class="src">{html.escape(source)}</td></tr>')

    run = r.run
    fit_sum, fit_tok, spec_sum = (run.rel(p) for p in (run.fit_summary, run.fit_tokens, run.spectrum_summary))
    measured = _drop_sentence(r, numbers)
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
            add("class shares (early, late: censored)",
                ", ".join(f"{k} {pct(v)}" for k, v in ordered(shares)), fit_tok)
        measured += _censored_sentence(r, numbers)
    else:
        notes.append(not_computed(r.run, "fit", "token fits"))
    s = r.spec_summary
    if s is not None:
        for key, label in (("event_share", "share of the loss drop carried by events"),
                           ("best_clock", f"best clock (by {s.get('best_clock_by', 'R²')})"),
                           ("alpha_measured", "alpha measured (power law of the loss)"),
                           ("alpha_spectrum", "alpha from the spectrum")):
            if key in s and s[key] is not None:
                numbers[key] = s[key]
                add(label, fmt(s[key]), spec_sum)
        for key, v in s.items():  # every R² of the primary series stays in summary.json
            if key.startswith("reconstruction_r2") and isinstance(v, (int, float)):
                numbers[key] = v
    else:
        notes.append(not_computed(r.run, "spectrum", "learning-time spectrum"))
    notes += trace_flags(run, r.meta, numbers)
    parts.append(f"<p>{html.escape(measured)}</p>")
    parts.append('<table class="kv">' + "".join(rows) + "</table>")
    srcs = [run.rel(run.series(w).spectrum_summary) for w in summ]
    srcs += [run.rel(run.series(w).spectrum_replicate) for w in reps]
    parts.append(_scores_table(summ, reps, rec, srcs))
    return ('<div class="box"><h2>Headline</h2>' + "".join(parts) + "".join(notes)
            + _all_numbers(r) + "</div>")


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


def _trust_html(rec: dict) -> str:
    name = SERIES_LABELS[rec["series"]]
    label = {RECOMMENDED: "held-out R² after warmup", "reconstruction_r2_heldout":
             "held-out R² (every other checkpoint; no after-warmup score in the summary)",
             "reconstruction_r2": "in-sample R² (no held-out score in the summary)"}[rec["key"]]
    text = f"Trust this score: {label} of the reconstructed −dL/d ln x on the {name} = {fmt(rec['value'])}"
    if rec["ceiling_kind"] == "replicate":
        text += (f", against a replicate ceiling of {fmt(rec['ceiling'])} ({fmt(rec['ratio'])} of "
                 f"it): the R² between two runs that differ only in data order, so no reconstruction "
                 f"can score above it.")
    elif rec["ceiling_kind"] == "token split":
        text += (f", against the token-split ceiling of {fmt(rec['ceiling'])}; that ceiling cannot see "
                 f"noise every token shares at a checkpoint, so the true ceiling is lower: train a "
                 f"replicate (--set train.data_seed=1) and run tokenclock spectrum RUN --replicate "
                 f"RUN2 to measure it.")
    else:
        text += "; no ceiling measured (no replicate, no token split)."
    why = ("Why this one: it scores checkpoints the fit never saw"
           + (", after the warmup steps whose large, easy derivative inflates every other R²"
              if rec["key"] == RECOMMENDED else "")
           + ("; the averaged weights remove much of the raw checkpoints' step-to-step noise, "
              "which every token shares and no split of the tokens can see." if rec["series"] == AVG
              else "; trace the averaged weights (train.avg) to take out the raw checkpoints' "
                   "shared step-to-step noise."))
    return f'<p class="trust"><b>{html.escape(text)}</b> {html.escape(why)}</p>'


def _scores_table(summ: dict[str, dict], reps: dict[str, dict], rec: dict | None,
                  srcs: list[str]) -> str:
    """Every score of every series in one table, each with what it tests."""
    if not summ:
        return ""
    cols = list(summ)
    rows = []
    for label, key, what in SCORES:
        vals = [summ[w].get(key) for w in cols]
        if all(_num(v) is None for v in vals):
            continue
        mark = " (recommended)" if rec and key == rec["key"] else ""
        rows.append(f"<tr><th>{html.escape(label + mark)}</th>"
                    + "".join(f"<td>{fmt(v)}</td>" for v in vals)
                    + f'<td class="src">{html.escape(what)}</td></tr>')
    if reps:
        vals = [((reps.get(w) or {}).get("ceiling_r2") or {}).get("mean", {}).get("after_warmup")
                for w in cols]
        rows.append("<tr><th>replicate ceiling, after warmup</th>"
                    + "".join(f"<td>{fmt(v)}</td>" for v in vals)
                    + '<td class="src">run A\'s measured derivative against run B\'s (another data '
                      "order): what replicates at all; bounds every score above</td></tr>")
    src = ", ".join(html.escape(p) for p in srcs)
    return ("<h3>Every score of −dL/d ln x</h3><table><tr><th>score</th>"
            + "".join(f"<th>{SERIES_LABELS[w]}</th>" for w in cols)
            + "<th>what it tests</th></tr>" + "".join(rows) + "</table>"
            + f'<p class="src">from {src}</p>')


def _all_numbers(r: RunView) -> str:
    """Every number in the stage summaries, so nothing a stage measured is hidden."""
    parts = []
    for name, d in ((r.run.rel(r.run.fit_summary), r.fit_summary), (r.run.rel(r.run.spectrum_summary), r.spec_summary)):
        if d:
            parts.append(f"<details><summary>all of {name}</summary><pre>"
                         f"{html.escape(json.dumps(d, indent=2, default=str))}</pre></details>")
    return "".join(parts)
