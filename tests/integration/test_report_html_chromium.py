"""tests/support/browser.py against pages made to fail: Chromium is the one real piece. A fetch from
the network and an image that does not decode are both seen, so the check of `lab report --html`
in tests/e2e/test_bench.py can fail."""

from __future__ import annotations

from pathlib import Path

from support import browser

from lab import report_html


def test_the_browser_check_catches_a_broken_page(tmp_path: Path) -> None:
    """The same check on a page with a fetch from the network and an image that does not decode:
    both are seen (a check that cannot fail proves nothing)."""
    page = tmp_path / "bad.html"
    page.write_text(
        "<!DOCTYPE html><html><head>"
        f'<meta http-equiv="Content-Security-Policy" content="{report_html.CSP}"></head><body>'
        '<figure id="plot-bad"><img alt="x" src="data:image/svg+xml;base64,bm90IGFuIFNWRw=="></figure>'
        '<figure id="plot-remote"><img alt="y" src="https://example.com/plot.png"></figure>'
        "</body></html>"
    )
    shown = browser.render(page)
    assert any("example.com" in line for line in shown.console), shown.console
    natural = {i["id"]: i["natural"] for i in shown.probe["imgs"]}
    assert natural == {"plot-bad": [0, 0], "plot-remote": [0, 0]}, shown.probe
