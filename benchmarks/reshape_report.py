"""The reshape benchmark's report (benchmarks/reshape_bench.py): BENCH/report/index.html and
reshape.png from BENCH/results.json and BENCH/schedules/*/, drawn with tokenclock's rendering kit,
and the pool-repetition check its printed summary shares.
"""
from __future__ import annotations

import html
import math
from pathlib import Path

import numpy as np

from tokenclock.artifacts import read_json
from tokenclock.render import Figures, write_page
from tokenclock.rundir import ScheduleDir
from tokenclock.stages.reshape.config import TOKEN_STRATEGIES
from tokenclock.stages.reshape.stage import load_profiles


def repetition_check(rep: dict) -> tuple[float, bool]:
    """(how often the uniform order's random windows see a token they see at all, whether the pool's
    drawn windows are seen more than 1.1 x that) for a schedule's `pool_repetition`: lambda / (1 - e^-lambda)
    at lambda draws per token, so a drawn window is compared like with like."""
    lam = rep["uniform_draws_per_token"]
    seen = lam / -math.expm1(-lam) if lam > 0 else 1.0
    return seen, rep["mean_draws"] > 1.1 * max(1.0, seen)




def sampled_learning_hist(schedule_dir: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(pool-average, as-sampled) learning-time histograms (n_bins,) of one schedule, each summing
    to 1: the pool's mean drop by learning time, and the same weighted by how often the schedule
    draws each window (slots outside the pool are counted at the pool's average profile)."""
    prof = load_profiles(schedule_dir)
    meta = read_json(ScheduleDir(schedule_dir).meta)
    hist, draws = np.clip(prof["learn_hist"], 0, None), prof["draws"].astype(np.float64)
    before = hist.mean(axis=0)
    other = meta["steps"] * meta["batch_size"] - draws.sum()
    after = draws @ hist + other * before
    return before / max(before.sum(), 1e-12), after / max(after.sum(), 1e-12)


def reshape_report(bench_dir: str | Path) -> Path:
    """BENCH/report/index.html + PNGs from results.json and schedules/*/ (benchmarks/reshape_bench.py):
    the validation curves of every arm and seed (averaged-weight series dashed), the learning-time
    histogram each sequence-level schedule feeds the model, the speed-up table with its spreads and
    verdicts, and the proxy's cost and checks."""
    bench = Path(bench_dir)
    res = read_json(bench / "results.json")
    arms = list(dict.fromkeys(k.split("|")[0] for k in res["curves"]))
    specs = res.get("protocol", {}).get("arm_specs", {})
    out = bench / "report"
    out.mkdir(parents=True, exist_ok=True)

    figs = Figures(out)
    fig, axes = figs.new(1, 2, size=(12, 4.6))
    ax1, ax2 = axes[0]
    lo = min(min(c["val_loss"]) for c in res["curves"].values())
    pool_drawn = False
    for i, arm in enumerate(arms):
        color = f"C{i % 10}"
        for j, (k, c) in enumerate((k, c) for k, c in res["curves"].items() if k.split("|")[0] == arm):
            step = np.asarray(c["step"], dtype=float)
            ok = step > 0
            ax1.plot(step[ok], np.asarray(c["val_loss"])[ok], color=color, lw=1.0, alpha=0.8,
                     label=arm if j == 0 else None)
            if c.get("val_loss_avg") and len(c["val_loss_avg"]) == len(step):
                ax1.plot(step[ok], np.asarray(c["val_loss_avg"])[ok], color=color, lw=0.8, ls="--", alpha=0.7)
        strategy, lr_schedule = specs.get(arm, (arm, "cosine"))
        sched = sorted((bench / "schedules").glob(f"{arm}-s*"))
        if not sched:
            continue
        before, after = sampled_learning_hist(sched[0])
        x = (np.arange(len(after)) + 0.5) / len(after)
        if not pool_drawn:  # every schedule shares the pool: its average is what the uniform order feeds
            ax2.step(x, before, where="mid", color="k", lw=2, label="uniform (pool average)")
            pool_drawn = True
        # one line per sequence-level strategy (its -wsd / -const arms draw the same sequences)
        if strategy not in ("uniform", *TOKEN_STRATEGIES) and lr_schedule == "cosine":
            ax2.step(x, after, where="mid", color=color, lw=1.2, label=arm)
    ax1.set(xscale="log", xlabel="step", ylabel="validation loss (nats)",
            title="validation loss, every arm and seed (dashed: averaged weights)")
    ax1.set_ylim(lo - 0.05, lo + 1.5)
    ax1.legend(fontsize=7)
    ax2.set(xlabel="learning time (log-step fraction of the proxy)", ylabel="share of loss drop sampled",
            title="learning-time histogram fed to the model")
    ax2.legend(fontsize=7)
    png = figs.write(fig, "reshape.png")

    def nats(d: dict | None) -> str:
        if not d or d["mean"] is None:
            return "<td></td>"
        return f"<td>{d['mean']:+.4f} &plusmn; {d['sd'] or 0:.4f}</td>"

    def cell(d: dict) -> str:
        if d["mean"] is None:
            return "<td>never</td>"
        sd = d["sd"] if d["sd"] is not None else float("nan")
        never = f" ({d['not_reached']} never)" if d["not_reached"] else ""
        return f"<td>{d['mean']:+.1%} &plusmn; {sd:.1%}{never}</td>"

    rows = "".join(
        f"<tr><td>{html.escape(arm)}</td>{cell(s['speedup'])}<td>{s['verdict']}</td>"
        f"{cell(s['speedup_with_proxy_cost'])}<td>{s['verdict_with_proxy_cost']}</td>"
        f"{nats(s['final_val_delta'])}{nats(s.get('final_check_delta'))}</tr>"
        for arm, s in res["summary"].items())
    a, p = res["args"], res["proxy"]
    def rep_item(arm: str, r: dict) -> str:
        seen, flag = repetition_check(r)
        return (f"<li>{html.escape(arm)}: a drawn pool window is seen {r['mean_draws']:.2f} times on average "
                f"(max {r['max_draws']}); the uniform order's random windows see a token "
                f"{r['uniform_draws_per_token']:.2f} times, {seen:.2f} times among the tokens they see"
                f"{' <b>REPETITION</b>' if flag else ''}</li>")

    reps = "".join(rep_item(arm, r) for arm, r in res["checks"]["pool_repetition"].items())
    body = f"""<h1>Reshaped vs uniform training at matched tokens</h1>
<p>Seeds {a['seeds']}; {a['preset']}, {a['steps']} steps x {a['batch']} x {a['seq_len']} tokens per arm; baseline
<b>uniform</b> (cosine, fully decayed); speed-up = 1 - steps_arm(L*) / steps_uniform(L*) at the uniform run's final
validation loss L* (per seed), mean &plusmn; SD over seeds; a mean within two SDs is "no gain".</p>
<p>Proxy: {p['params']:,} params, {p['train_tokens']:,} training tokens, {p['pool_trace_tokens']:,} traced tokens
(pool of {p['pool_size']:,} windows): {p['flops']:.3g} FLOPs = <b>{p['share_of_one_run']:.1%}</b> of one run;
{p['train_seconds']:.0f} s training, {p['pool_trace_seconds'] or 0:.0f} s pool trace, {p['pool_fit_seconds']:.0f} s
pool fit. Proxy check: {p['censored_share']:.1%} of its learning events censored at its last checkpoint.</p>
<img src="{png}" alt="{png}">
<table class="num"><tr><th>arm</th><th>speed-up at L*</th><th></th><th>incl. proxy cost</th><th></th>
<th>final val delta (nats)</th><th>on the shared check windows</th></tr>{rows}</table>
<p>Pool check:</p><ul>{reps}</ul>
<p>From results.json (<code>python benchmarks/reshape_bench.py --out {html.escape(str(bench))}</code>;
<code>--report-only</code> redraws this page).</p>"""
    return write_page(out / "index.html", "tokenclock reshape", body)
