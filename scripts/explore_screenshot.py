"""The README's screenshot of `tokenclock explore`: serves a run, drives Debian's headless chromium
with Playwright (a token clicked, a range of the spectrum brushed, a filter typed) and writes a PNG.

    python scripts/explore_screenshot.py runs/demo docs/explore.png [--token 5] [--filter the]
"""
from __future__ import annotations

import argparse
import shutil
import sys


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run")
    ap.add_argument("out")
    ap.add_argument("--token", type=int, default=5, help="column of the token to click")
    ap.add_argument("--filter", default="the", help="text typed into the filter's token box")
    ap.add_argument("--brush", default="0.42:0.58", help="brushed span of the spectrum plot, as fractions of its width")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    from tokenclock.explore.server import Background, open_runs

    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    bg = Background(open_runs([args.run]))
    errors: list[str] = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1500, "height": 1000}, device_scale_factor=1)
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.goto(bg.url)
            page.wait_for_selector("body[data-ready='1']", timeout=60_000)
            page.click(f"#text .t[data-i='{args.token}']")
            page.wait_for_selector(f"#traj-title[data-i='{args.token}']")
            box = page.locator("#spec-plot .u-over").bounding_box()
            lo, hi = (float(v) for v in args.brush.split(":"))
            y = box["y"] + box["height"] / 2
            page.mouse.move(box["x"] + box["width"] * lo, y)
            page.mouse.down()
            page.mouse.move(box["x"] + box["width"] * hi, y, steps=8)
            page.mouse.up()
            page.wait_for_selector("#brush-table tbody tr")
            page.fill("#f-q", args.filter)
            page.wait_for_timeout(1500)
            page.screenshot(path=args.out, full_page=True)
            browser.close()
    finally:
        bg.stop()
    if errors:
        sys.exit(f"console errors: {errors}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
