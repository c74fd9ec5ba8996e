"""`lab report --html` of a real create run, opened in headless Chromium (issue 14): the page loads
with no console message (no error, no blocked fetch, no failed load), every plot the JSON report
lists is there and decoded by the browser to a non-empty image, and no key of the stack is in it.

Indexes 4621-4622 keep clear of the other e2e modules.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

from support import browser
from support.stack import Stack

TIMEOUT = 600


def _secrets(home: Path) -> list[str]:
    """Pieces of every private key and kubeconfig credential in the lab home."""
    out = []
    for path in home.rglob("*"):
        if not path.is_file() or path.stat().st_size > 1_000_000:
            continue
        text = path.read_text(errors="replace")
        for body in re.findall(r"-----BEGIN [A-Z ]*PRIVATE KEY-----\s*([A-Za-z0-9+/=\s]{40,})", text):
            out.append(body.split()[0][:40])
        out += re.findall(r"(?:client-key-data|token|password): *\"?([A-Za-z0-9+/=._-]{16,})", text)
    return out


def _page(stack: Stack, run: int, page: Path) -> tuple[list[str], browser.Rendered, float]:
    """`lab report --html` of `run`, opened in Chromium: the JSON report's chart keys, what the
    browser saw, and how long the report took; asserts what holds for every run."""
    started = time.monotonic()
    out = stack.lab("report", "--run", str(run), "--html", str(page), "--format", "json")
    seconds = time.monotonic() - started
    model = json.loads(out.stdout)
    keys = [c["key"] for c in model["charts"]]
    # a queue is plotted for every manager whose queue was ever seen non-empty, and for no other
    queued = {c["component"] for c in model["metrics"]["controllers"] if c["peak_depth"] > 0}
    assert {k.split(":", 1)[1] for k in keys if k.startswith("workqueue_depth:")} == queued, keys
    assert page.stat().st_mode & 0o777 == 0o644
    shown = browser.render(page)
    assert shown.console == [], "\n".join(shown.console)
    imgs = shown.probe["imgs"]
    assert [i["id"] for i in imgs] == ["plot-overview", *(f"plot-{k}" for k in keys)]
    for img in imgs:
        assert img["complete"], img
        assert min(img["natural"]) > 100 and min(img["shown"]) > 100, img  # decoded and laid out
    for heading in ("Phase latencies", "Components", "Controllers", "clusterloader2 SLOs", "etcd"):
        assert heading in shown.dom, heading
    return keys, shown, seconds


def test_html_report_of_a_real_run_renders_in_chromium(stack: Stack, tmp_path: Path) -> None:
    browser.chromium()  # skip (fail under CI) before creating anything when there is no browser
    out = stack.lab(
        "create-clusters", "2", "--start", "4621", "--wait", "--timeout", "480", "-o", "json", timeout=TIMEOUT
    )
    res = json.loads(out.stdout)
    assert res["stuck"] == {}, res
    page = tmp_path / "report" / "create.html"
    keys, shown, seconds = _page(stack, res["run"], page)
    # what every real run plots: resources, the apiserver (the scrape itself is in flight), etcd,
    # the managers' requests (leases are renewed every few seconds); queues only when one was seen
    for key in ("rss", "cpu", "inflight:kube-apiserver", "etcd_db_size", "client_requests"):
        assert key in keys, keys
    assert "cluster_available" in shown.dom
    text = page.read_text()
    secrets = _secrets(stack.home)
    assert secrets, "found no key in the lab home: the check below would prove nothing"
    leaked = [s for s in secrets if s in text]
    assert leaked == [], leaked
    print(
        f"\nhtml report: {len(text) // 1024} KiB, {len(keys) + 1} plots, written in {seconds:.1f} s,"
        f" rendered by chromium in {shown.seconds:.1f} s; load {os.getloadavg()}"
    )

    out = stack.lab(
        "delete-clusters", "--start", "4621", "--count", "2", "--wait", "-o", "json", timeout=TIMEOUT
    )
    _keys, shown, _seconds = _page(stack, json.loads(out.stdout)["run"], tmp_path / "report" / "delete.html")
    assert "deleted" in shown.dom
