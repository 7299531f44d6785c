"""Render a self-contained HTML file in a real headless Chromium and report what a reader would see.

This lives in tests/ because only the tests need a browser: the product writes HTML and never opens it. Chromium is
Debian's package (`apt-get install -y chromium`), driven through Playwright, which must not download a browser of its
own (no network here), hence `executable_path`. Flags: `--no-sandbox` because the tests run as root, `--disable-gpu`
because there is no display, and the networking ones (`--disable-background-networking`, `--disable-component-update`,
`--disable-sync`, `--disable-quic`, `--no-first-run`) so Chromium does not keep dialling the closed network.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# Resolves once every <img> has finished, loaded or broken (a broken one then has naturalWidth 0).
_WAIT_FOR_IMAGES = """() => Promise.all(Array.from(document.images, img => img.complete ? null :
    new Promise(done => { img.addEventListener('load', done); img.addEventListener('error', done); })))"""
_IMAGES = "() => Array.from(document.images, img => [img.src.slice(0, 60), img.naturalWidth, img.naturalHeight])"
# Per table: body rows (<tbody> rows with a <td>: bare <tr>s go to an implicit <tbody>, a <th>-only row is a header),
# header cells (the <thead>'s, else the first row's <th>s).
_TABLES = """() => Array.from(document.querySelectorAll('table'), t => [
    Array.from(t.tBodies).reduce((n, b) => n + Array.from(b.rows).filter(r => r.querySelector('td')).length, 0),
    t.tHead ? t.tHead.querySelectorAll('th, td').length : (t.rows[0] ? t.rows[0].querySelectorAll('th').length : 0)])"""


@dataclass
class PageReport:
    console_errors: list[str] = field(default_factory=list)  # console.error(...) and uncaught exceptions
    failed_requests: list[str] = field(default_factory=list)  # requests that failed or answered >= 400
    images: list[tuple[str, int, int]] = field(default_factory=list)  # (src[:60], naturalWidth, naturalHeight)
    tables: list[tuple[int, int]] = field(default_factory=list)  # (body rows, header cells)
    title: str = ""
    text: str = ""  # document.body.innerText
    page_width: int = 0  # the document's scroll width: more than the window's means horizontal scrolling
    sorted_columns: dict[str, list[list[str]]] = field(default_factory=dict)  # header -> its cells per click


def chromium_path() -> str:
    """The Chromium binary to drive: $CVSWEEP_CHROMIUM or /usr/bin/chromium; a clear error if it is not there."""
    path = os.environ.get("CVSWEEP_CHROMIUM", "/usr/bin/chromium")
    if not os.access(path, os.X_OK):
        raise RuntimeError(
            f"Chromium not found at {path}: the HTML report tests need a real browser. "
            "Install it with `apt-get install -y chromium` (or point CVSWEEP_CHROMIUM at one)."
        )
    return path


# The cells of column `i` of the first table, top to bottom.
_COLUMN = """i => Array.from(document.querySelector('table').tBodies[0].rows, r => r.cells[i].textContent)"""


def render_html(
    path: Path, screenshot: Path | None = None, width: int = 1280, click: tuple[str, ...] = ()
) -> PageReport:
    """Open `path` (file://) in headless Chromium, wait for load and images, and report; optionally screenshot it.
    `click`: headers of the first table to click, each twice, as a reader sorting it would; `sorted_columns`
    has that column's cells before, after one click and after two."""
    from playwright.sync_api import sync_playwright

    report = PageReport()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": 800})
            errors, failed = report.console_errors, report.failed_requests
            page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
            page.on("pageerror", lambda exc: errors.append(f"uncaught: {exc}"))
            page.on("requestfailed", lambda r: failed.append(f"{r.url[:80]}: {r.failure}"))
            page.on("response", lambda r: failed.append(f"{r.url[:80]}: {r.status}") if r.status >= 400 else None)
            page.goto(Path(path).resolve().as_uri(), wait_until="load")
            page.evaluate(_WAIT_FOR_IMAGES)
            report.images = [tuple(i) for i in page.evaluate(_IMAGES)]
            report.tables = [tuple(t) for t in page.evaluate(_TABLES)]
            report.title = page.title()
            report.text = page.evaluate("() => document.body.innerText")
            report.page_width = page.evaluate("() => document.documentElement.scrollWidth")
            if screenshot is not None:
                page.screenshot(path=str(screenshot), full_page=True)
            for header in click:
                th = page.locator("table").first.locator("thead th", has_text=header).first
                i = th.evaluate("th => th.cellIndex")
                seen = [page.evaluate(_COLUMN, i)]
                for _ in range(2):
                    th.click()
                    seen.append(page.evaluate(_COLUMN, i))
                report.sorted_columns[header] = seen
        finally:
            browser.close()
    return report
