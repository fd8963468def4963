"""The explorer's HTTP API in-process (Starlette's TestClient) on the tiny run and its variants:
answers checked against the artifacts themselves, bad requests as 4xx JSON, nothing written."""
from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from explore_runs import *  # noqa: F403 (the fixtures: explore_dirs, opened, snapshot)

from tokenclock.curves import curve
from tokenclock.rundir import RunDir

TINY, TRACE_ONLY, IMPORTED, SHORT = range(4)


@pytest.fixture(scope="module")
def client(opened):
    from starlette.testclient import TestClient

    from tokenclock.explore.server import create_app

    return TestClient(create_app(opened))


@pytest.fixture(scope="module")
def tables(explore_dirs):
    run = RunDir(explore_dirs["tiny"])
    return {"tokens": pd.read_parquet(run.trace_tokens), "fit": pd.read_parquet(run.fit_tokens),
            "events": pd.read_parquet(run.fit_events), "loss": np.load(run.trace_loss),
            "axis": pd.read_parquet(run.trace_axis)}


def f32(resp) -> np.ndarray:
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "application/octet-stream"
    return np.frombuffer(resp.content, dtype="<f4")


def test_runs_describe_each_run_and_what_it_lacks(client, opened):
    info = client.get("/api/runs").json()
    assert [r["name"] for r in info] == ["tiny", "trace_only", "imported", "short"]
    tiny = info[TINY]
    assert tiny["n_tok"] == opened[TINY].n_tok and tiny["axis"] == "step" and tiny["has_fit"] and tiny["has_spectrum"]
    assert info[TRACE_ONLY]["has_fit"] is False and "tokenclock fit" in info[TRACE_ONLY]["notes"][0]
    assert info[IMPORTED]["has_text"] is False
    assert tiny["compare"][str(TRACE_ONLY)] is None  # the same validation tokens
    assert "do not share their validation tokens" in tiny["compare"][str(SHORT)]
    assert {s["file"] for s in tiny["sources"]["token"]} >= {"trace/loss.npy", "fit/events.parquet"}


def test_the_loss_matrix_stays_a_memmap(opened):
    assert isinstance(opened[TINY].loss, np.memmap)


def test_window_texts_and_colours_come_from_the_artifacts(client, tables):
    w = client.get("/api/run/0/window?start=60&n=100").json()
    assert w["texts"] == tables["tokens"]["token_text"].iloc[60:160].tolist()
    seq = tables["tokens"]["sequence"].to_numpy()[60:160]
    assert w["breaks"] == [60 + k for k in np.flatnonzero(np.diff(seq)) + 1]
    final = f32(client.get("/api/run/0/colours?start=60&n=100&by=final_loss"))
    np.testing.assert_array_equal(final, tables["loss"][-1, 60:160])
    cls = f32(client.get("/api/run/0/colours?start=0&n=50&by=class"))
    names = client.get("/api/runs").json()[0]["classes"]
    assert [names[int(c)] for c in cls] == tables["fit"]["class"].iloc[:50].tolist()
    mu = f32(client.get("/api/run/0/colours?start=0&n=3000&by=learning_time"))
    # each token's largest measured learning event; a token whose learning events are all censored
    # is coloured -inf / +inf (before the first / after the last checkpoint), never from the scale
    learn = tables["events"][tables["events"].a > 0]
    measured = learn[learn.censored == "none"] if "censored" in learn else learn
    want = np.full(len(mu), np.nan, np.float32)
    for evs, fill in ((learn.sort_values("a").groupby("tok_idx").last(), "side"),
                      (measured.sort_values("a").groupby("tok_idx").last(), "mu")):
        idx = evs.index.to_numpy()
        keep = idx < len(mu)
        if fill == "mu":
            want[idx[keep]] = evs["mu"].to_numpy()[keep]
        else:
            side = evs["censored"].to_numpy()[keep] if "censored" in evs else np.full(keep.sum(), "none")
            want[idx[keep]] = np.where(side == "left", -np.inf, np.where(side == "right", np.inf, np.nan))
    np.testing.assert_allclose(mu, want, rtol=1e-6)


def test_trajectory_is_the_loss_column_and_the_fitted_curve(client, opened, tables):
    i = 123
    v = f32(client.get(f"/api/run/0/trajectory/{i}"))
    k = len(tables["axis"])
    np.testing.assert_array_equal(v[:k], tables["loss"][:, i])
    fit = tables["fit"].set_index("tok_idx").loc[i]
    ev = tables["events"][tables["events"].tok_idx == i]
    x = tables["axis"]["step"].to_numpy(float)
    xf = opened[TINY].x_fit
    want = curve(np.log(xf), fit["b"], ev["a"], ev["mu"], ev["width"], fit["c"], np.log(x[x > 0][-1]))
    np.testing.assert_allclose(v[k:], want, rtol=1e-5, atol=1e-5)


def test_token_detail(client, tables):
    d = client.get("/api/run/0/token/200").json()
    row = tables["tokens"].iloc[200]
    assert (d["text"], d["context"], d["position"]) == (row["token_text"], row["context"], row["position"])
    fit = tables["fit"].set_index("tok_idx").loc[200]
    assert d["fit"]["class"] == fit["class"] and d["fit"]["model"] == fit["model"]
    assert d["fit"]["r2"] == pytest.approx(fit["r2"])
    assert len(d["events"]) == int(fit["n_events"])
    assert d["train_count"] == row["train_count"]


@pytest.mark.parametrize("path, status, needle", [
    ("/api/run/0/token/99999999", 404, "out of range"),
    ("/api/run/0/trajectory/-1", 404, "out of range"),
    ("/api/run/0/token/abc", 400, "not an integer"),
    ("/api/run/9/token/1", 404, "run 9 does not exist"),
    ("/api/run/0/window?start=0&n=100000", 400, "window size"),
    ("/api/run/0/colours?by=colour", 400, "unknown colour"),
    ("/api/run/1/colours?by=learning_time", 409, "tokenclock fit"),
    ("/api/run/0/tokens?regex=1&q=(", 400, "not a valid regular expression"),
    ("/api/run/0/tokens?r2_min=high", 400, "not a number"),
    ("/api/run/0/tokens?class=learnt", 400, "unknown class"),
    ("/api/run/2/search?q=a", 409, "no token text"),
    ("/api/run/0/events?x_min=0&x_max=10", 400, "not > 0"),
    ("/api/run/0/artifact?file=../manifest.json", 404, "not an artifact"),
    ("/api/compare/5?runs=0,3", 409, "do not share their validation tokens"),
    ("/api/nothing", 404, "Not Found"),
])
def test_bad_requests_answer_one_line_of_json(client, path, status, needle):
    r = client.get(path)
    assert r.status_code == status, r.text
    body = r.json()
    assert needle in body["error"] + " (" + body.get("fix", "") + ")"
    assert "Traceback" not in r.text and "\n" not in body["error"]


def test_filter_table_matches_pandas(client, tables):
    t, f = tables["tokens"], tables["fit"]
    res = client.get("/api/run/0/tokens?q=e&class=learned,forgotten&r2_min=0.5&sort=r2&desc=1&limit=20").json()
    keep = t["token_text"].str.contains("e", regex=False) & f["class"].isin(["learned", "forgotten"]) & (f["r2"] >= 0.5)
    assert res["total"] == int(keep.sum())
    r2 = [r["r2"] for r in res["rows"]]
    assert r2 == sorted(r2, reverse=True) and r2[0] == pytest.approx(f["r2"][keep].max())
    assert all("e" in r["text"] and r["class"] in ("learned", "forgotten") for r in res["rows"])
    page2 = client.get("/api/run/0/tokens?q=e&class=learned,forgotten&r2_min=0.5&sort=r2&desc=1&limit=20&offset=20").json()
    assert not {r["i"] for r in page2["rows"]} & {r["i"] for r in res["rows"]}
    rx = client.get("/api/run/0/tokens?q=^%20t&regex=1").json()
    assert rx["total"] == int(t["token_text"].str.match(" t").sum())


def test_filter_by_count_and_learning_time(client, tables, opened):
    t = tables["tokens"]
    lo = float(np.median(t["train_count"]))
    res = client.get(f"/api/run/0/tokens?count_min={lo}").json()
    assert res["total"] == int((t["train_count"] >= lo).sum())
    mu = opened[TINY].fit.mu
    res = client.get("/api/run/0/tokens?x_min=5&x_max=50&sort=learning_time").json()
    assert res["total"] == int(((mu >= np.log(5)) & (mu <= np.log(50))).sum())
    times = [r["learning_time"] for r in res["rows"]]
    assert times == sorted(times) and 5 * 0.999 <= times[0] and times[-1] <= 50 * 1.001


def test_brush_lists_the_events_in_the_range(client, tables):
    ev = tables["events"]
    res = client.get("/api/run/0/events?x_min=3&x_max=30&sign=learn&sort=a&limit=10").json()
    sel = ev[(ev.mu >= np.log(3)) & (ev.mu <= np.log(30)) & (ev.a > 0)
             & ((ev.censored == "none") if "censored" in ev else True)]
    assert res["total"] == len(sel) > 0
    assert res["sum_a"] == pytest.approx(sel.a.sum(), rel=1e-5)
    got = [r["event_a"] for r in res["rows"]]
    np.testing.assert_allclose(got, np.sort(sel.a.to_numpy())[::-1][:10], rtol=1e-6)
    assert all(r["text"] is not None and "context" in r for r in res["rows"])
    rises = client.get("/api/run/0/events?x_min=0.1&x_max=1e6&sign=rise&sort=-a").json()
    measured = ev.censored == "none" if "censored" in ev else np.ones(len(ev), bool)
    assert rises["total"] == int(((ev.a < 0) & measured).sum())  # censored events only with censored=1


def test_search_moves_to_the_next_match_and_wraps(client, tables):
    text = tables["tokens"]["token_text"].tolist()
    whole, offsets = "".join(text), np.cumsum([0] + [len(t) for t in text])
    starts = [k for k in range(len(whole)) if whole.startswith("th", k)]
    hits = np.unique(np.searchsorted(offsets, starts, side="right") - 1)  # the token where each match starts
    first = client.get("/api/run/0/search?q=th&from=0").json()
    assert (first["i"], first["total"]) == (int(hits[hits > 0][0]), whole.count("th"))
    wrap = client.get(f"/api/run/0/search?q=th&from={hits[-1]}").json()
    assert wrap["i"] == hits[0]
    back = client.get(f"/api/run/0/search?q=th&from={hits[1]}&dir=back").json()
    assert back["i"] == hits[0]


def test_spectrum_and_histogram_without_the_spectrum_stage(client, explore_dirs):
    sp = client.get("/api/run/0/spectrum").json()
    dens = pd.read_parquet(RunDir(explore_dirs["tiny"]).spectrum_density())
    np.testing.assert_allclose(sp["density"]["rho_learn"], dens["rho_learn"])
    assert len(sp["curve"]["dldu_measured"]) == len(sp["curve"]["x"])
    hist = client.get("/api/run/2/spectrum").json()  # imported npz: fit, no spectrum stage
    assert hist["source"] == "histogram" and hist["curve"] is None


def test_compare_same_tokens(client):
    assert client.get("/api/compare/7?runs=0,1").json()["x"] == "shared"


def test_downloads_hold_the_selection(client, tables):
    r = client.get("/api/run/0/download/tokens.csv?class=learned")
    assert r.status_code == 200 and "attachment" in r.headers["content-disposition"]
    got = pd.read_csv(io.StringIO(r.text))
    assert len(got) == int((tables["fit"]["class"] == "learned").sum())
    assert {"token_text", "context", "r2", "learning_time", "final_loss"} <= set(got.columns)
    p = client.get("/api/run/0/download/events.parquet?x_min=3&x_max=30&sign=all")
    ev = pd.read_parquet(io.BytesIO(p.content))
    sel = tables["events"]
    assert len(ev) == int(((sel.mu >= np.log(3)) & (sel.mu <= np.log(30))).sum())


def test_artifact_description(client, tables):
    d = client.get("/api/run/0/artifact?file=fit/tokens.parquet").json()
    assert d["rows"] == len(tables["fit"]) and "r2" in {c["name"] for c in d["columns"]}
    npy = client.get("/api/run/0/artifact?file=trace/loss.npy").json()
    assert npy["shape"] == list(tables["loss"].shape) and npy["dtype"] == "float32"


def test_trace_only_and_imported_runs_still_show_trajectories(client):
    v = f32(client.get("/api/run/1/trajectory/3"))
    assert np.isnan(v[-5:]).all()  # no fit: no fitted curve
    w = client.get("/api/run/2/window?start=0&n=10").json()
    assert w["texts"] is None
    assert client.get("/api/run/1/tokens?q=e").json()["total"] > 0


def test_the_page_and_its_bundles_are_served(client):
    page = client.get("/").text
    assert "/static/uPlot.iife.min.js" in page and "http" not in page.replace("http-equiv", "")
    assert client.get("/static/uPlot.iife.min.js").status_code == 200
    assert "MIT" in client.get("/static/uPlot.LICENSE").text


def test_nothing_is_written_into_the_runs(explore_dirs, opened, client, snapshot):
    before = {k: snapshot(p) for k, p in explore_dirs.items()}
    for r in range(4):
        for path in ("window?start=0&n=50", "colours?start=0&n=50&by=final_loss", "token/1", "trajectory/1",
                     "tokens?q=e", "spectrum", "download/tokens.parquet?q=e"):
            client.get(f"/api/run/{r}/{path}")
    assert {k: snapshot(p) for k, p in explore_dirs.items()} == before


def test_an_averaged_weight_series_opens_beside_the_raw_one(explore_dirs, tmp_path):
    from tokenclock.explore.server import open_runs, run_info

    run = RunDir(tmp_path / "both")
    if not hasattr(run, "series"):
        pytest.skip("this RunDir has no weight series")
    import shutil

    src = RunDir(explore_dirs["tiny"])
    for name in ("trace", "fit", "spectrum"):
        shutil.copytree(src.root / name, run.root / name)
        shutil.copytree(src.root / name, run.root / f"{name}_avg")
    runs = open_runs([run.root], log=lambda *a: None)
    assert [(d.name, d.series) for d in runs] == [("both", "raw"), ("both (avg)", "avg")]
    info = run_info(runs, 1)
    assert info["siblings"] == {"raw": 0, "avg": 1} and info["compare"]["0"] is None
    assert {s["file"] for s in info["sources"]["token"]} >= {"trace_avg/loss.npy", "fit_avg/events.parquet"}
