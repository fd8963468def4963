"""The explorer's API under bad input (every query parameter: text, NaN, inf, negative, past the run, a
reversed range, an unknown run: a 4xx naming the fix, never a 500), and what the state fixes added:
windows clamped to a full window, censored events apart, find across token boundaries, the curves of a
selection, download names that carry the selection, JSON values in the artifact description."""
from __future__ import annotations

import io
import json
import struct

import numpy as np
import pandas as pd
import pytest
from explore_runs import *  # noqa: F403 (the fixtures)

from tokenclock.rundir import RunDir

BOTH, BOTH_AVG, CENS = range(3)


@pytest.fixture(scope="module")
def client(state_runs):
    from starlette.testclient import TestClient

    from tokenclock.explore.server import create_app

    return TestClient(create_app(state_runs))


BAD = [  # (path under /api/run/0/ or /api/, status, words the answer must hold)
    ("window?start=abc", 400, "not a number"), ("window?start=nan", 400, "not a finite number"),
    ("window?start=inf", 400, "not a finite number"), ("window?start=-inf", 400, "not a finite number"),
    ("window?start=-1", 400, "integer >= 0"), ("window?start=1.5", 400, "integer >= 0"),
    ("window?n=0", 400, "integer >= 1"), ("window?n=nan", 400, "not a finite number"),
    ("window?n=100000", 400, "window size"),
    ("colours?start=NaN&by=final_loss", 400, "not a finite number"), ("colours?n=-5", 400, "integer >= 1"),
    ("colours?by=learning_time&censored=maybe", 400, "yes/no"),
    ("search?q=the&from=abc", 400, "not a number"), ("search?q=the&from=nan", 400, "not a finite number"),
    ("search?q=the&from=inf", 400, "not a finite number"), ("search?q=the&from=-2", 400, "integer >= 0"),
    ("search?q=the&from=99999999", 404, "out of range"), ("search?q=the&dir=sideways", 400, "unknown dir"),
    ("search?q=", 400, "empty search"), ("search?q=(&regex=1", 400, "not a valid regular expression"),
    ("search?q=a*&regex=1", 400, "matches empty text"),
    ("tokens?offset=abc", 400, "not a number"), ("tokens?offset=nan", 400, "not a finite number"),
    ("tokens?offset=-1", 400, "integer >= 0"), ("tokens?offset=99999999", 400, "past the last"),
    ("tokens?limit=inf", 400, "not a finite number"), ("tokens?limit=0", 400, "integer in 1..500"),
    ("tokens?x_min=nan", 400, "not a finite number"), ("tokens?x_min=abc", 400, "not a number"),
    ("tokens?x_max=inf", 400, "not a finite number"), ("tokens?x_min=-5", 400, "not > 0"),
    ("tokens?x_min=50&x_max=5", 400, "reversed range"), ("tokens?r2_min=0.9&r2_max=0.1", 400, "swap them"),
    ("tokens?count_min=-1", 400, "negative"), ("tokens?count_min=10&count_max=1", 400, "reversed range"),
    ("tokens?r2_min=-inf", 400, "not a finite number"), ("tokens?sort=loudness", 400, "unknown sort"),
    ("tokens?desc=maybe", 400, "yes/no"), ("tokens?regex=2&q=a", 400, "yes/no"),
    ("events?x_min=nan&x_max=10", 400, "not a finite number"), ("events?x_min=1&x_max=inf", 400, "not a finite"),
    ("events?x_min=100&x_max=10", 400, "reversed range"), ("events?x_min=-1&x_max=10", 400, "not > 0"),
    ("events?x_min=1", 400, "needs x_min and x_max"), ("events?x_min=1&x_max=10&offset=nan", 400, "finite"),
    ("events?x_min=1&x_max=10&offset=99999999", 400, "past the last"), ("events?x_min=1&x_max=10&sign=up", 400, "sign"),
    ("curves?of=filter&x_min=nan", 400, "not a finite number"), ("curves?of=brush&x_min=9&x_max=3", 400, "reversed"),
    ("curves?of=everything", 400, "unknown selection"),
    ("download/events.csv?x_min=30&x_max=3", 400, "reversed range"),
    ("download/tokens.csv?count_min=-3", 400, "negative"),
]


@pytest.mark.parametrize("path, status, needle", BAD)
def test_every_bad_parameter_is_a_4xx_that_names_the_fix(client, path, status, needle):
    r = client.get(f"/api/run/0/{path}")
    assert r.status_code == status, r.text
    body = r.json()
    assert needle in body["error"] + " " + body.get("fix", "")
    assert body.get("fix") and "\n" not in body["error"]


@pytest.mark.parametrize("path, status, needle", [
    ("/api/run/7/window", 404, "run 7 does not exist"), ("/api/run/-1/tokens", 404, "run -1 does not exist"),
    ("/api/run/abc/tokens", 400, "not an integer"), ("/api/run/nan/tokens", 400, "not an integer"),
    ("/api/run/0/token/nan", 400, "not an integer"), ("/api/run/0/token/inf", 400, "not an integer"),
    ("/api/run/0/trajectory/-5", 404, "out of range"), ("/api/compare/3?runs=0,9", 404, "run 9 does not exist"),
    ("/api/compare/3?runs=0,abc", 400, "not an integer"), ("/api/compare/3?runs=0,0", 400, "twice"),
])
def test_unknown_runs_and_tokens(client, path, status, needle):
    r = client.get(path)
    assert r.status_code == status, r.text
    assert needle in r.json()["error"]


def test_a_start_past_the_run_gives_its_last_full_window(client, state_runs):
    n = state_runs[BOTH].n_tok
    w = client.get("/api/run/0/window?start=99999999&n=100").json()
    assert (w["start"], w["stop"], w["clamped"]) == (n - 100, n, True)
    v = np.frombuffer(client.get("/api/run/0/colours?start=99999999&n=100&by=final_loss").content, "<f4")
    np.testing.assert_array_equal(v, state_runs[BOTH].final(slice(n - 100, n)))
    assert client.get("/api/run/0/window?start=5&n=100").json()["clamped"] is False


@pytest.fixture(scope="module")
def censored(state_dirs):
    ev = pd.read_parquet(RunDir(state_dirs["censored"]).fit_events)
    return ev


def test_censored_events_are_left_out_unless_asked_and_then_come_last(client, censored):
    ev = censored
    n_cens = int((ev.censored != "").sum())
    assert client.get("/api/runs").json()[CENS]["n_censored"] == n_cens > 0
    everything = "x_min=1e-3&x_max=1e9&sign=learn&sort=a&limit=500"
    out = client.get(f"/api/run/{CENS}/events?{everything}").json()
    learn = ev[ev.a > 0]
    assert out["total"] == int((learn.censored == "").sum())
    assert out["censored_left_out"] == int((learn.censored != "").sum())
    assert not any(r["event_censored"] for r in out["rows"])
    both = client.get(f"/api/run/{CENS}/events?{everything}&censored=1").json()
    assert both["total"] == len(learn) and both["censored"] == out["censored_left_out"]
    flags = [r["event_censored"] != "" for r in both["rows"]]
    assert flags == sorted(flags)  # the measured events lead
    # the largest amplitude overall is censored, yet the default list starts with a measured one
    assert learn.sort_values("a").iloc[-1].censored != "" or out["rows"][0]["event_censored"] == ""


def test_colours_and_sorts_lead_with_measured_events(client, censored, state_runs):
    ev = censored
    main = ev[ev.a > 0].sort_values("a").groupby("tok_idx").tail(1).set_index("tok_idx")
    v = np.frombuffer(client.get(f"/api/run/{CENS}/colours?start=0&n=3000&by=learning_time").content, "<f4")
    v_all = np.frombuffer(client.get(f"/api/run/{CENS}/colours?start=0&n=3000&by=learning_time&censored=1").content,
                          "<f4")
    right = main.index[(main.censored == "right") & (main.index < len(v))]
    assert np.isposinf(v_all[right]).all()  # past the last checkpoint: never a colour inside the range
    measured = ev[(ev.a > 0) & (ev.censored == "")].groupby("tok_idx").a.max()
    only_cens = [t for t in right if t not in measured.index]
    assert only_cens and np.isposinf(v[only_cens]).all()
    has_measured = [t for t in right if t in measured.index]
    assert has_measured and np.isfinite(v[has_measured]).all()
    for flag in ("", "&censored=1"):
        rows = client.get(f"/api/run/{CENS}/tokens?sort=learning_time&desc=1&limit=500{flag}").json()["rows"]
        cens = [r["censored"] != "" for r in rows]
        assert cens == sorted(cens)
        times = [r["learning_time"] for r in rows if not r["censored"] and r["learning_time"] is not None]
        assert times == sorted(times, reverse=True)
    rows = client.get(f"/api/run/{CENS}/tokens?sort=learning_time&desc=1&limit=5").json()["rows"]
    u_max = float(np.log(state_runs[CENS].x[-1]))
    assert all(r["learning_time"] is None or np.log(r["learning_time"]) <= u_max + 1e-6 for r in rows)


def test_find_matches_text_across_token_boundaries(client, explore_dirs):
    t = pd.read_parquet(RunDir(explore_dirs["tiny"]).trace_tokens)
    text, seq = t["token_text"].tolist(), t["sequence"].to_numpy()
    # a string made of two neighbouring tokens that no single token contains
    i = next(k for k in range(200, len(text) - 1) if seq[k] == seq[k + 1] and len(text[k]) > 1 and len(text[k + 1]) > 1
             and (text[k] + text[k + 1]) not in set(text))
    q = text[i][1:] + text[i + 1]
    whole = "".join(text)
    got = client.get(f"/api/run/0/search?q={q}&from={i - 1}").json()
    assert (got["i"], got["n"]) == (i, 2)
    assert got["total"] == whole.count(q)
    assert client.get(f"/api/run/0/search?q={q}&from={i}&dir=back").json()["i"] != i or whole.count(q) == 1


def _curves(resp):
    assert resp.status_code == 200, resp.text
    n = struct.unpack("<I", resp.content[:4])[0]
    meta = json.loads(resp.content[4:4 + n])
    out, off = {}, 4 + n
    for name, rows, cols in meta["blocks"]:
        out[name] = np.frombuffer(resp.content, "<f4", rows * cols, off).reshape(rows, cols)
        off += rows * cols * 4
    assert off == len(resp.content)
    return meta, out


def test_the_curves_of_a_filter(client, state_runs, explore_dirs):
    d = state_runs[BOTH]
    meta, b = _curves(client.get("/api/run/0/curves?of=filter&class=learned"))
    fit = pd.read_parquet(RunDir(explore_dirs["tiny"]).fit_tokens)
    want = fit.index[fit["class"] == "learned"].to_numpy()
    assert meta["n_tokens"] == len(want) and meta["n_drawn"] == min(200, len(want))
    assert set(meta["drawn"]) <= set(want.tolist())
    loss = np.load(d.run.trace_loss)
    np.testing.assert_array_equal(b["loss"], loss[:, meta["drawn"]].T)
    if meta["n_sample"] == len(want):  # the band of every selected token
        np.testing.assert_allclose(b["mean"][0], loss[:, want].mean(axis=1), rtol=1e-5)
        np.testing.assert_allclose(b["q90"][0], np.quantile(loss[:, want], 0.9, axis=1), rtol=1e-5)
    assert [s["series"] for s in meta["series"]] == ["avg"]  # the averaged series on the same tokens
    np.testing.assert_allclose(b["1:mean"][0], 0.8 * b["mean"][0], rtol=1e-4)
    assert np.isfinite(b["fit"]).all() and b["fit"].shape == (meta["n_drawn"], len(d.x_fit))
    again = client.get("/api/run/0/curves?of=filter&class=learned").content
    assert again == client.get("/api/run/0/curves?of=filter&class=learned").content  # same seed, same numbers


def test_the_curves_of_a_brush(client):
    meta, b = _curves(client.get(f"/api/run/{CENS}/curves?of=brush&x_min=1e-3&x_max=1e9"))
    assert meta["censored_left_out"] > 0 and meta["n_tokens"] > 0 and b["loss"].shape[0] == meta["n_drawn"]


def test_download_names_carry_the_selection(client):
    r = client.get("/api/run/0/download/tokens.csv?class=learned&q=th&x_min=5")
    assert 'filename="both_tokens_class-learned_q-th_x_min-5.csv"' in r.headers["content-disposition"]
    got = pd.read_csv(io.StringIO(r.text))
    assert len(got) and all("th" in s for s in got["token_text"])
    r = client.get("/api/run/0/download/events.parquet?x_min=3&x_max=30&sign=all")
    assert 'filename="both_events_x_min-3_x_max-30_sign-all.parquet"' in r.headers["content-disposition"]


def test_the_artifact_description_shows_json_values(client, state_runs):
    from tokenclock.artifacts import read_json

    d = client.get("/api/run/0/artifact?file=spectrum/summary.json").json()
    want = read_json(state_runs[BOTH].run.spectrum_summary)
    assert d["values"]["reconstruction_r2"] == pytest.approx(want["reconstruction_r2"])


def test_the_histogram_leaves_censored_events_out_and_counts_them(state_runs, censored):
    import shutil

    from tokenclock.explore.files import spectrum
    from tokenclock.explore.server import open_runs

    root = state_runs[CENS].run.root.parent / "censored_no_spectrum"
    if not root.exists():
        shutil.copytree(state_runs[CENS].run.root, root, ignore=shutil.ignore_patterns("spectrum*"))
    d = open_runs([root], log=lambda *a: None)[0]
    sp = spectrum(d)
    assert sp["source"] == "histogram"
    assert sp["summary"]["n_censored_left_out"] == int((censored.censored != "").sum())
    assert sp["summary"]["n_events"] == int((censored.censored == "").sum())
