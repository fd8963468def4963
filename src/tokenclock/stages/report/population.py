"""The report's sections about the token population: the class breakdown (with how much of the early
drop is the shared collapse to unigram predictions) and learning time against training-set
frequency, with the tokens learned earliest and latest. Each writes its PNG and returns its HTML.
"""
from __future__ import annotations

import html
import math

import numpy as np

from tokenclock.formatting import fmt, pct
from tokenclock.render import Figures, not_computed, sources
from tokenclock.scores import spearman
from tokenclock.stages.report.figures import observed_range, token_html
from tokenclock.stages.report.load import RunView
from tokenclock.stages.report.token_text import ordered

UNIGRAM_TOL_NATS = 0.1  # "mean loss within 0.1 nats of the mean unigram loss"


def section_classes(r: RunView, figs: Figures, numbers: dict) -> str:
    head = "<h2>Token classes, and how much of the drop is unigram learning</h2>"
    parts = []
    if r.fit_tokens is not None and "class" in r.fit_tokens:
        names, counts = np.unique(r.fit_tokens["class"].astype(str), return_counts=True)
        pairs = ordered(dict(zip(names.tolist(), counts.tolist())))
        fig, ax = figs.new(size=(6.4, 3.2))
        ax = ax[0, 0]
        ax.bar([p[0] for p in pairs], [p[1] for p in pairs], color="tab:blue")
        ax.set_ylabel("tokens")
        ax.tick_params(axis="x", labelsize=8)
        parts.append(figs.save(fig, "classes.png", sources(r.run, r.run.fit_tokens)))
    else:
        parts.append(not_computed(r.run, "fit", "token classes"))
    if "unigram_loss" not in r.tokens or not r.meta.get("vocab_size") \
            or not np.isfinite(np.asarray(r.tokens["unigram_loss"], float)).any():
        return head + "".join(parts)
    uni = np.asarray(r.tokens["unigram_loss"], float)
    ln_v = math.log(float(r.meta["vocab_size"]))
    # measured, not the fitted b: a late token's b is an extrapolation past the last checkpoint
    final = np.asarray(r.loss[-1], float)
    final_src = f"the loss measured at the last checkpoint ({r.run.rel(r.run.trace_loss)})"
    unigram_drop = float(np.nanmean(ln_v - uni))
    contextual_drop = float(np.nanmean(uni - final))
    numbers.update(unigram_drop_nats=unigram_drop, contextual_drop_nats=contextual_drop)
    x = r.x
    keep = x > 0
    mean_loss = r.mean_loss[keep]
    near = np.flatnonzero(np.abs(mean_loss - float(np.nanmean(uni))) <= UNIGRAM_TOL_NATS)
    sent = [f"Averaged over tokens, the loss falls {fmt(unigram_drop + contextual_drop)} nats from "
            f"uniform predictions (ln V = {ln_v:.3g}) to {final_src}: {fmt(unigram_drop)} nats "
            f"of that is the shared collapse to unigram predictions (ln V minus the token's unigram "
            f"loss, {r.run.rel(r.run.trace_tokens)}) and {fmt(contextual_drop)} nats is contextual (unigram "
            f"loss minus the final loss)."]
    if r.fit_tokens is not None and "model" in r.fit_tokens and len(r.fit_tokens["model"]):
        names, counts = np.unique(r.fit_tokens["model"].astype(str), return_counts=True)
        share = dict(zip(names.tolist(), (counts / counts.sum()).tolist()))
        sig = sum(v for k, v in share.items() if k.startswith("sigmoid"))
        sent.insert(0, f"{pct(sig)} of {counts.sum():,} tokens are best described (BIC) by a sigmoid "
                       f"model (" + ", ".join(f"{k} {pct(v)}" for k, v in share.items()) + ").")
    if len(near) and r.events is not None and len(r.events["mu"]):
        k = near[0]
        u_k = math.log(x[keep][k])
        mu, a = r.events["mu"], r.events["a"]
        share = float(np.mean(mu < u_k))
        pos = a > 0
        share_a = float(a[pos & (mu < u_k)].sum() / a[pos].sum()) if pos.any() else float("nan")
        numbers.update(unigram_checkpoint_x=float(x[keep][k]), early_event_share=share,
                       early_event_amplitude_share=share_a)
        sent.append(f"The mean loss first comes within {UNIGRAM_TOL_NATS} nats of the mean unigram "
                    f"loss at {r.axis} = {fmt(x[keep][k])}; {pct(share)} of all events (and "
                    f"{pct(share_a)} of the learning amplitude) have their midpoint before then: "
                    f"by timing alone those events cannot be told apart from the shared unigram "
                    f"phase.")
    elif not len(near):
        sent.append(f"The mean loss never comes within {UNIGRAM_TOL_NATS} nats of the mean unigram "
                    f"loss in the traced checkpoints.")
    return head + "".join(parts) + "<p>" + " ".join(html.escape(s) for s in sent) + "</p>"



def section_frequency(r: RunView, figs: Figures, numbers: dict) -> str:
    head = "<h2>Learning time vs training-set frequency</h2>"
    if r.events is None:
        return head + not_computed(r.run, "fit", "learning times")
    if "train_count" not in r.tokens or not (np.asarray(r.tokens["train_count"]) >= 0).any():
        return head + (f'<p class="note">{r.run.rel(r.run.trace_tokens)} has no training-split frequencies (an '
                       "imported matrix or a checkpoint series without a training split).</p>")
    tok, mu = r.largest_learning_events(measured=True)
    n_cens = len(r.largest_learning_events()[0]) - len(tok)
    numbers["n_censored_largest_learning"] = n_cens
    if len(tok) < 3:
        return head + ('<p class="note">fewer than 3 tokens with a measured (not censored) '
                       f"learning event ({n_cens} censored).</p>")
    count = np.asarray(r.tokens["train_count"], float)[r.columns(tok)]
    rho = spearman(count, mu)
    numbers["spearman_mu_train_count"] = rho
    fig, ax = figs.new()
    ax = ax[0, 0]
    xs = np.exp(mu)
    if len(tok) > 2000:
        hb = ax.hexbin(count + 1, xs, xscale="log", yscale="log", gridsize=40, mincnt=1, bins="log")
        fig.colorbar(hb, ax=ax, label="tokens")
    else:
        ax.scatter(count + 1, xs, s=6, alpha=0.5)
        ax.set_xscale("log")
        ax.set_yscale("log")
    observed_range(ax, r, vertical=False)
    ax.set_xlabel("train_count + 1 (occurrences of the token id in the training split)")
    ax.set_ylabel(f"learning time mu ({r.axis})")
    ax.legend(fontsize=7, loc="lower left")
    body = figs.save(fig, "frequency.png", sources(r.run, r.run.fit_events, r.run.trace_tokens) +
                     f": mu of each token's largest learning event, measured ones only ({n_cens:,} "
                     f"tokens whose largest learning event is censored are left out); shaded: the "
                     f"traced checkpoints")
    text = (f"Spearman rank correlation between training-set frequency and learning time: "
            f"ρ = {rho:+.2f} over {len(tok):,} tokens with a measured learning event"
            + (" (frequent tokens are learned earlier). " if rho < 0 else ". "))
    if math.isfinite(rho):
        text += (f"Frequency accounts for ρ² = {pct(rho * rho)} of the rank variance of learning "
                 f"times; a heavy-tailed difficulty (frequency) explanation covers that much, and the "
                 f"remaining {pct(1 - rho * rho)} depends on something else (context, position, "
                 f"what the token's context needs to have been learned first).")
    return head + body + f"<p>{html.escape(text)}</p>" + _extremes_table(r, tok, mu, count)



def _extremes_table(r: RunView, tok: np.ndarray, mu: np.ndarray, count: np.ndarray, n: int = 8) -> str:
    """The n earliest- and n latest-learned tokens, with their text (escaped) and frequency."""
    order = np.argsort(mu, kind="stable")
    rows = []
    for label, idx in (("earliest", order[:n]), ("latest", order[::-1][:n])):
        for j in idx:
            i = int(r.columns([tok[j]])[0])
            rows.append(f"<tr><td>{label}</td><td>{fmt(float(np.exp(mu[j])))}</td>"
                        f"<td>{fmt(int(count[j]))}</td><td>{token_html(r, i)}</td></tr>")
    return (f"<details><summary>the {n} earliest and latest learned tokens (measured events: "
            f"midpoint inside the checkpoints)</summary><table>"
            f"<tr><th></th><th>mu ({html.escape(r.axis)})</th><th>train_count</th>"
            "<th>context + <b>token</b></th></tr>" + "".join(rows) + "</table></details>")
