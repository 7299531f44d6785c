"""The browser helper itself: it sees a good page as good, and it catches a broken image and a console error."""

from __future__ import annotations

import base64
import io
from pathlib import Path

from PIL import Image

from tests.browser import chromium_path, render_html


def _png_data_uri() -> str:
    buf = io.BytesIO()
    Image.new("RGB", (2, 2), (200, 30, 30)).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def test_render_html_reports_a_good_page_and_catches_a_broken_one(tmp_path: Path) -> None:
    assert chromium_path()  # fails (never skips) with the apt command when Chromium is missing

    good = tmp_path / "good.html"
    good.write_text(
        "<!doctype html><html><head><meta charset='utf-8'><title>Good report</title></head><body>"
        f"<h1>Results</h1><img src='{_png_data_uri()}' alt='dot'>"
        "<table><thead><tr><th>trial</th><th>acc</th></tr></thead>"
        "<tbody><tr><td>a</td><td>0.9</td></tr><tr><td>b</td><td>0.8</td></tr></tbody></table></body></html>"
    )
    shot = tmp_path / "good.png"
    report = render_html(good, screenshot=shot)
    assert report.console_errors == [] and report.failed_requests == []
    assert report.title == "Good report" and "Results" in report.text
    assert len(report.images) == 1 and report.images[0][0].startswith("data:image/png")
    assert report.images[0][1:] == (2, 2)
    assert report.tables == [(2, 2)]
    assert Image.open(shot).size[0] == 1280

    bad = tmp_path / "bad.html"
    bad.write_text(
        "<!doctype html><html><head><title>Bad</title></head><body>"
        "<img src='data:image/png;base64,AAAA' alt='broken'><script>console.error('boom')</script></body></html>"
    )
    report = render_html(bad)
    assert report.images == [("data:image/png;base64,AAAA", 0, 0)]
    assert any("boom" in e for e in report.console_errors), report.console_errors
