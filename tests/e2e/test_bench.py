"""`lab bench` on the real stack: two profiles, create -> wait -> delete each, ends with the comparison;
then `lab report --html` of its runs opened in headless Chromium (issue 14): the page loads with no
console message (no error, no blocked fetch, no failed load), every plot the JSON report lists is
there and decoded by the browser to a non-empty image, and no key of the stack is in it. (The bench's
runs serve both: a create and a delete of two clusters cost about 100 s of CI each time.)

Indexes 41-42 keep clear of the other e2e modules.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

from support import browser
from support.stack import Stack

from lab import management, naming, records


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


def test_bench_two_profiles(stack: Stack, tmp_path: Path) -> None:
    browser.chromium()  # skip (fail under CI) before creating anything when there is no browser
    before = management.tuning_profile(stack.settings()) or "default"
    assert before == "default"
    # high first: the last profile is the one the stack had, so bench has nothing to restore and the
    # modules after this one run on the default tuning either way
    res = stack.lab(
        "bench",
        "--profile",
        "high",
        "--profile",
        "default",
        "--clusters",
        "2",
        "--start",
        "41",
        "--format",
        "json",
        timeout=1800,
    )
    doc = json.loads(res.stdout)
    (create_a, delete_a), (create_b, delete_b) = doc["runs"]["high"][0], doc["runs"]["default"][0]
    assert management.tuning_profile(stack.settings()) == before
    with records.open_records(stack.settings(), create=False) as db:
        assert [db.run(i).settings["tuning"] for i in (create_a, delete_a, create_b, delete_b)] == [
            "high",
            "high",
            "default",
            "default",
        ]
        assert all(db.run(i).status == "ok" for i in (create_a, delete_a, create_b, delete_b))
    kinds = [(c["kind"], c["a"]["id"], c["b"]["id"]) for c in doc["comparisons"]]
    assert kinds == [("create", create_a, create_b), ("delete", delete_a, delete_b)]
    rows = {r["figure"]: r for r in doc["comparisons"][0]["rows"]}
    assert rows["cluster_available p50"]["a"] > 0 and rows["cluster_available p50"]["b"] > 0
    assert rows["cluster_available p50"]["exceeds"] in (True, False)  # two clusters: a verdict
    # the page of each kind of run, in Chromium
    keys, shown, seconds = _page(stack, create_b, tmp_path / "report" / "create.html")
    # what every real run plots: resources, the apiserver (the scrape itself is in flight), etcd,
    # the managers' requests (leases are renewed every few seconds); queues only when one was seen
    for key in ("rss", "cpu", "inflight:kube-apiserver", "etcd_db_size", "client_requests"):
        assert key in keys, keys
    assert "cluster_available" in shown.dom and "Bottleneck" in shown.dom
    text = (tmp_path / "report" / "create.html").read_text()
    secrets = _secrets(stack.home)
    assert secrets, "found no key in the lab home: the check below would prove nothing"
    leaked = [s for s in secrets if s in text]
    assert leaked == [], leaked
    print(
        f"\nhtml report: {len(text) // 1024} KiB, {len(keys) + 1} plots, written in {seconds:.1f} s,"
        f" rendered by chromium in {shown.seconds:.1f} s; load {os.getloadavg()}"
    )
    _keys, shown, _seconds = _page(stack, delete_b, tmp_path / "report" / "delete.html")
    assert "deleted" in shown.dom

    # a range where lab sees a cluster (its labelled namespace) is refused before anything runs
    ns = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": "test-41",
            "labels": {naming.CLUSTER_LABEL: "test-41", naming.INDEX_LABEL: "41"},
        },
    }
    stack.kubectl("apply", "-f", "-", input_text=json.dumps(ns))
    try:
        res = stack.lab(
            "bench", "--profile", "default", "--profile", "high", "--clusters", "1", "--start", "41",
            check=False, timeout=300,
        )  # fmt: skip
        assert res.returncode == 1 and "error: clusters test-41 exist" in res.stderr
        assert "round 1" not in res.stderr  # refused before any `lab tune`
        assert management.tuning_profile(stack.settings()) == before
    finally:
        stack.kubectl("delete", "namespace", "test-41", "--wait=true")
