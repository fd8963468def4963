"""The page in a real headless Chromium (Playwright for Python driving Debian's chromium; never
`playwright install`): click a token, brush the spectrum, type a filter, compare runs. Every test
checks that no request leaves the local server and that the console shows no error. Skipped, with
the reason, where playwright or chromium is missing."""
from __future__ import annotations

import pandas as pd
import pytest
from explore_runs import *  # noqa: F403 (the fixtures: explore_dirs, opened, snapshot, browser; CHROMIUM)

from tokenclock.rundir import RunDir

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")


pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium found (apt-get install chromium)")  # noqa: F405


@pytest.fixture(scope="module")
def server(opened):
    yield from served(opened)  # noqa: F405 (explore_runs)


class Page:
    """A page that records console errors and every request it makes."""

    def __init__(self, browser, url: str):
        self.url = url
        self.page = browser.new_page(viewport={"width": 1400, "height": 1100})
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("request", lambda r: self.requests.append(r.url))

    def open(self, fragment: str = ""):
        self.page.goto(self.url + fragment)
        self.page.wait_for_selector("body[data-ready='1']", timeout=30_000)
        return self.page

    def check(self, console_errors: bool = False):
        outside = [u for u in self.requests if not u.startswith(self.url) and not u.startswith("data:")]
        assert not outside, f"requests left 127.0.0.1: {outside[:3]}"
        assert self.url.startswith("http://127.0.0.1:")
        if not console_errors:
            assert not self.errors, self.errors


@pytest.fixture
def page(browser, server):
    p = Page(browser, server.url)
    yield p
    p.page.close()


def _visible(s: str) -> str:
    s = s.replace("\n", "⏎").replace("\t", "→")
    return s.replace(" ", "␣") if s and not s.strip(" ") else s


def test_click_a_token_shows_its_trajectory(page, explore_dirs):
    pg = page.open()
    i = 37
    pg.click(f"#text .t[data-i='{i}']")
    pg.wait_for_selector(f"#traj-title[data-i='{i}']")
    pg.wait_for_selector("#traj-plot canvas")
    run = RunDir(explore_dirs["tiny"])
    text = pd.read_parquet(run.trace_tokens)["token_text"].iloc[i]
    cls = pd.read_parquet(run.fit_tokens)["class"].iloc[i]
    assert pg.inner_text("#traj-title") == f"Token {i}: “{_visible(text)}”"
    assert cls in pg.inner_text("#token-meta")
    assert pg.locator("#text .t.sel").get_attribute("data-i") == str(i)
    page.check()


def test_brush_the_spectrum_lists_the_events(page):
    pg = page.open()
    pg.wait_for_selector("#spec-plot .u-over")
    box = pg.locator("#spec-plot .u-over").bounding_box()
    y = box["y"] + box["height"] / 2
    pg.mouse.move(box["x"] + box["width"] * 0.2, y)
    pg.mouse.down()
    pg.mouse.move(box["x"] + box["width"] * 0.8, y, steps=8)
    pg.mouse.up()
    pg.wait_for_selector("#brush-table tbody tr")
    assert int(pg.locator("#brush-info").get_attribute("data-total")) > 0
    first = pg.locator("#brush-table tbody tr").first
    i = first.get_attribute("data-i")
    first.click()
    pg.wait_for_selector(f"#traj-title[data-i='{i}']")
    page.check()


def test_typing_a_filter_changes_the_table(page):
    pg = page.open()
    pg.wait_for_selector("#filter-table tbody tr")
    before = pg.locator("#filter-info").get_attribute("data-total")
    pg.fill("#f-q", "e")
    pg.wait_for_function(f"document.querySelector('#filter-info').dataset.total !== '{before}'")
    after = int(pg.locator("#filter-info").get_attribute("data-total"))
    assert 0 < after < int(before)
    tokens = pg.locator("#filter-table tbody td.tok").all_inner_texts()
    assert tokens and all("e" in t for t in tokens)
    pg.click("#filter-table th:has-text('r2')")  # sort by r2, largest first
    pg.wait_for_selector("#filter-table th.sorted:has-text('r2')")
    page.check()


def test_compare_overlays_runs_with_the_same_tokens_and_refuses_others(page):
    pg = page.open()
    pg.check("#compare")
    pg.click("#text .t[data-i='5']")
    pg.wait_for_selector("#traj-title[data-i='5']")
    pg.wait_for_function("document.querySelector('#traj-plot').innerText.includes('trace_only measured')")
    assert "compare refused" in pg.inner_text("#compare-msg") and "short" in pg.inner_text("#compare-msg")
    page.check()


def test_a_run_without_a_fit_still_shows_trajectories(page):
    pg = page.open("#run=1&tok=3")
    pg.wait_for_selector("#traj-title[data-i='3']")
    assert "tokenclock fit" in pg.inner_text("#notes")
    assert "tokenclock fit" in pg.inner_text("#spectrum-err")
    assert pg.locator("#colour option[value='learning_time']").is_disabled()
    page.check()


def test_an_out_of_range_token_is_a_message_in_the_page(page):
    pg = page.open("#run=0&tok=99999999")
    pg.wait_for_function("document.querySelector('#token-err').innerText.length > 0")
    msg = pg.inner_text("#token-err")
    assert "out of range" in msg and "Traceback" not in pg.content()
    page.check(console_errors=True)  # the browser logs the 404 itself
