"""The page's state in a real headless Chromium (set up as in test_browser.py) on a run with an averaged
series and one with censored events: one run-and-series menu that redraws every panel, the URL that back
and forward follow, bad fragments, clamped windows, rows that move the text to their token, stale tables
cleared on error, hover values, artifact values, download names, find across tokens, the censored
toggle and the legend, the curves of a selection. Every test also checks that no request leaves
127.0.0.1, no response is a 500 and the console shows no error."""
from __future__ import annotations

import re

import pytest
from explore_runs import *  # noqa: F403 (the fixtures, browser among them; CHROMIUM)
from test_browser import Page

pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium found (apt-get install chromium)")  # noqa: F405

BOTH, BOTH_AVG, CENS = range(3)


@pytest.fixture(scope="module")
def server(state_runs):
    yield from served(state_runs)  # noqa: F405 (explore_runs)


class StatePage(Page):
    def __init__(self, browser, url, **viewport):
        super().__init__(browser, url)
        if viewport:
            self.page.set_viewport_size(viewport)
        self.failed: list[str] = []
        self.page.on("response", lambda r: self.failed.append(r.url) if r.status >= 500 else None)

    def check(self, console_errors: bool = False):
        super().check(console_errors)
        assert not self.failed, f"500 answers: {self.failed}"
        assert not [u for u in self.requests if re.search(r"NaN|Infinity|undefined", u)], self.requests


@pytest.fixture
def page(browser, server):
    p = StatePage(browser, server.url)
    yield p
    p.page.close()


def token_ready(pg, i):
    pg.wait_for_selector(f"#traj-title[data-i='{i}']")
    pg.wait_for_selector("#traj-plot canvas")


def test_one_menu_for_runs_and_series_redraws_every_panel(page):
    pg = page.open("#run=0&tok=7")
    token_ready(pg, 7)
    assert pg.locator("#series").count() == 0  # no second menu that repeats the first
    labels = pg.locator("#run option").all_inner_texts()
    assert labels[:2] == ["both · raw weights", "both · averaged weights"]
    pg.select_option("#run", str(BOTH_AVG))
    pg.wait_for_function("document.querySelector('#traj-plot').innerText.includes('both (avg) measured')")
    token_ready(pg, 7)  # the same token, now of the averaged series
    assert "both measured" not in pg.inner_text("#traj-plot").replace("both (avg) measured", "")
    for view in ("token", "text", "curves"):
        assert "trace_avg/loss.npy" in pg.inner_text(f".src[data-view='{view}']")
    assert "run=1&tok=7" in pg.url
    page.check()


def test_back_and_forward_follow_the_url(page):
    pg = page.open()
    pg.click("#text .t[data-i='5']")
    token_ready(pg, 5)
    pg.click("#text .t[data-i='9']")
    token_ready(pg, 9)
    pg.go_back()
    token_ready(pg, 5)
    assert pg.url.endswith("tok=5")
    pg.go_forward()
    token_ready(pg, 9)
    page.check()


def test_bad_fragments_say_so_and_send_no_bad_request(page):
    pg = page.open("#run=7&tok=abc")
    pg.wait_for_function("document.querySelector('#page-err').innerText.length > 0")
    msg = pg.inner_text("#page-err")
    assert "run 7 does not exist" in msg and "tok=abc is not a token index" in msg
    assert pg.locator("#run").input_value() == "0"
    page.check()


def test_a_token_past_the_run_keeps_a_full_window(page, state_runs):
    pg = page.open("#run=0&tok=999999")
    pg.wait_for_function("document.querySelector('#token-err').innerText.includes('out of range')")
    n = state_runs[BOTH].n_tok
    assert pg.locator("#text .t").count() == min(2048, n)
    assert pg.locator("#text .t").last.get_attribute("data-i") == str(n - 1)
    page.check(console_errors=True)  # the browser logs the 404 itself


def test_a_row_click_moves_the_text_and_shows_the_token_panel(browser, server, state_runs):
    page = StatePage(browser, server.url, width=1280, height=800)
    pg = page.open()
    last = state_runs[BOTH].n_tok - 1
    pg.click("#filter-table th:has-text('tok_idx')")  # largest tok_idx first: a token outside the window
    pg.wait_for_selector(f"#filter-table tbody tr[data-i='{last}']")
    pg.click(f"#filter-table tbody tr[data-i='{last}']")
    token_ready(pg, last)
    pg.wait_for_selector(f"#text .t.sel[data-i='{last}']")
    box = pg.locator("#traj-title").bounding_box()
    assert 0 <= box["y"] < 800, box  # the token panel is on screen
    page.check()
    page.page.close()


def test_an_error_clears_the_stale_count_and_table(page):
    pg = page.open()
    pg.wait_for_selector("#filter-table tbody tr")
    pg.fill("input[name='x_min']", "abc")
    pg.wait_for_function("document.querySelector('#filter-err').innerText.includes('not a number')")
    assert pg.locator("#filter-table tbody tr").count() == 0 and pg.inner_text("#filter-info") == ""
    pg.fill("input[name='x_min']", "")
    pg.wait_for_selector("#filter-table tbody tr")
    pg.check("#f-regex")
    pg.fill("#f-q", "(")
    pg.wait_for_function("document.querySelector('#filter-err').innerText.includes('regular expression')")
    assert pg.locator("#filter-table tbody tr").count() == 0 and pg.inner_text("#filter-info") == ""
    page.check(console_errors=True)  # the browser logs the 400s itself


def test_the_tables_fit_at_1600_pixels(browser, server):
    page = StatePage(browser, server.url, width=1600, height=1000)
    pg = page.open()
    pg.wait_for_selector("#filter-table tbody tr")
    over = pg.evaluate("[...document.querySelectorAll('.scroll')].map((s) => s.scrollWidth - s.clientWidth)")
    assert max(over) <= 1, over
    page.check()
    page.page.close()


def test_hover_shows_the_value_behind_the_colour(page):
    pg = page.open()
    pg.select_option("#colour", "final_loss")
    pg.wait_for_selector("#legend .tick")
    pg.hover("#text .t[data-i='12']")
    got = pg.inner_text("#hover")
    value = pg.evaluate("fetch('/api/run/0/colours?start=12&n=1&by=final_loss').then((r) => r.arrayBuffer())"
                        ".then((b) => new Float32Array(b)[0])")
    assert got.startswith("token 12 ") and f"final loss {float(f'{value:.3g}'):g} nats" in got, (got, value)
    assert pg.get_attribute("#text .t[data-i='12']", "title") == got
    page.check()


def test_the_summary_dialog_shows_values(page, state_runs):
    from tokenclock.artifacts import read_json

    pg = page.open()
    pg.click(".src[data-view='spectrum'] a[data-file='spectrum/summary.json']")
    pg.wait_for_selector("#artifact[open]")
    r2 = read_json(state_runs[BOTH].run.spectrum_summary)["reconstruction_r2"]
    row = pg.locator("#artifact-body tr:has(th:text-is('reconstruction_r2')) td").inner_text()
    assert float(row) == pytest.approx(r2, rel=1e-3)
    page.check()


def test_download_names_carry_the_filter(page):
    pg = page.open()
    pg.fill("#f-q", "th")
    pg.wait_for_function("document.querySelector('#filter-downloads a').href.includes('q=th')")
    with pg.expect_download() as got:
        pg.click("#filter-downloads a:text-is('csv')")
    assert got.value.suggested_filename == "both_tokens_q-th.csv"
    page.check()


def test_find_matches_text_across_token_boundaries(page, explore_dirs):
    import numpy as np
    import pandas as pd

    from tokenclock.rundir import RunDir

    t = pd.read_parquet(RunDir(explore_dirs["tiny"]).trace_tokens)
    text, seq = t["token_text"].tolist(), t["sequence"].to_numpy()
    k = next(k for k in range(300, len(text) - 2) if seq[k] == seq[k + 2] and all(len(text[k + j].strip()) > 1 for j in (0, 1, 2)))
    q = text[k][1:] + text[k + 1] + text[k + 2][:-1]
    assert all(q not in s for s in text)  # no single token holds it
    whole, offsets = "".join(text), np.cumsum([0] + [len(s) for s in text])
    at = whole.find(q, offsets[1])
    first, last = np.searchsorted(offsets, [at, at + len(q) - 1], side="right") - 1
    pg = page.open()
    pg.fill("#find", q)
    pg.click("#find-next")
    token_ready(pg, first)
    hits = pg.locator("#text .t.hit")
    assert [hits.nth(j).get_attribute("data-i") for j in range(hits.count())] == [str(j) for j in range(first, last + 1)]
    assert last > first
    page.check()


def test_censored_events_lead_nowhere_and_the_legend_marks_past_the_range(page):
    pg = page.open(f"#run={CENS}")
    pg.wait_for_selector("#filter-table tbody tr")
    ticks = pg.locator("#legend .tick").all_inner_texts()
    assert len(ticks) == 5 and "after" in pg.inner_text("#legend")
    pg.click("#filter-table th:has-text('learning time')")  # latest first
    pg.wait_for_selector("#filter-table th.sorted:has-text('learning time')")
    assert "censored" not in pg.locator("#filter-table tbody tr").first.inner_text()
    # a token whose only learning event is censored is hatched past the range, never a colour of the ramp
    hatched = pg.evaluate("[...document.querySelectorAll('#text .t')].filter((s) => s.style.background.includes('repeating')).length")
    assert hatched > 0
    before = int(hatched)
    pg.check("#censored")
    pg.wait_for_function(f"[...document.querySelectorAll('#text .t')].filter((s) => s.style.background.includes('repeating')).length > {before}")
    assert "cens=1" in pg.url
    page.check()


def test_the_curves_of_a_selection(page):
    pg = page.open()
    pg.wait_for_selector("#curves-plot canvas")
    drawn = int(pg.get_attribute("#curves-info", "data-drawn"))
    assert 0 < drawn <= 200 and pg.get_attribute("#curves-info", "data-series") == "avg"
    assert "averaged weights: mean" in pg.inner_text("#curves-plot")
    pg.fill("#f-q", "th")
    pg.wait_for_function(f"document.querySelector('#curves-info').dataset.drawn !== '{drawn}'")
    total = int(pg.get_attribute("#filter-info", "data-total"))
    assert int(pg.get_attribute("#curves-info", "data-drawn")) == min(200, total)
    page.check()
