"""lab.report_series and lab.report_html: the time series of a run recorded through lab.records
(metric rows reduced by lab.metrics from real KCP and kube-apiserver scrapes), the page they make,
and that --format json carries every plotted point. Chromium opens the page in
tests/e2e/test_report_html.py."""

from __future__ import annotations

import base64
import json
import re
import subprocess
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path

import pytest

from lab import config, metrics, records, report, report_html, report_series
from lab.phases import PHASES, RunKind
from lab.plot import svg_figures

FIXTURES = Path(__file__).parent / "fixtures"
T0 = 1_790_000_000.0
HOSTILE = "<script>alert(1)</script>&\"'"


def _record(db: records.Records, ticks: int = 12) -> int:
    """A create run of 3 clusters over 60 s, sampled every 5 s: resources of three components
    (and two workload apiservers, one row), the two scrapes' rows with counters growing and queue
    depths rising then draining."""
    run = db.start_run(
        RunKind.create,
        ["lab", "create-clusters", "3", HOSTILE],
        {"versions": {"capi": "v1.13.6"}, "tuning": None, "prefix": "test", "note": HOSTILE},
        {"cores": 2, "memory_bytes": 24 * 2**30, "platform": "Linux"},
        started=T0,
    )
    for i in (1, 2, 3):
        db.record_many(
            run, [(f"test-{i}", i, p, T0 + 3 * i + 8 * k) for k, p in enumerate(PHASES[RunKind.create])]
        )
    scrapes = {
        "kcp-manager": metrics.reduce((FIXTURES / "metrics_kcp.txt").read_text()),
        "kube-apiserver": metrics.reduce((FIXTURES / "metrics_apiserver.txt").read_text()),
    }
    for k in range(ticks):
        ts = T0 + 5 * k
        wave = min(k, ticks - 1 - k)  # 0, 1, ... up, then back to 0
        db.sample_many(
            run,
            [
                (ts, "kube-apiserver", (600 + 10 * k) * 2**20, 40.0 + k),
                (ts, "kcp-manager", 80 * 2**20, 5.0 + wave),
                (ts, f"{report.WORKLOAD_PREFIX}test-1", 180 * 2**20, 2.0),
                (ts, f"{report.WORKLOAD_PREFIX}test-2", 190 * 2**20, 4.0),
            ],
        )
        rows = []
        for comp, scrape in scrapes.items():
            for m, lab, v in scrape:
                if m in ("workqueue_depth", "apiserver_current_inflight_requests"):
                    v = float(wave * 3 + (1 if "kubeadm" in lab or "mutating" in lab else 0))
                elif not m.startswith("etcd_mvcc"):
                    v = v * k / (ticks - 1)  # counters from 0 to the scrape's value
                rows.append((ts, comp, m, lab, v))
        rows.append((ts, "kcp-manager", "workqueue_depth", f"name={HOSTILE}", float(wave)))
        rows.append((ts, "mgmt-etcd", "etcd_mvcc_db_total_size_in_bytes", "", float((20 + k) * 2**20)))
        for i in (1, 2):  # one per cluster: one chart of their sum
            rows.append(
                (
                    ts,
                    f"{report.WORKLOAD_PREFIX}test-{i}",
                    "apiserver_current_inflight_requests",
                    "request_kind=mutating",
                    float(i),
                )
            )
        db.metric_many(run, rows)
    db.finish_run(run, "ok", T0 + 60)
    return run


@pytest.fixture
def model(tmp_path: Path) -> report.Report:
    with records.Records(tmp_path / "records.sqlite") as db:
        run = _record(db)
        r = db.run(run)
        return report.build(r, db.events(run), db.samples(run), metric_samples=db.metric_samples(run))


def test_thin_keeps_each_windows_peak() -> None:
    t = [float(i) for i in range(10)]
    v = [0.0, 9, 0, 0, 0, 0, 0, 7, 0, 0]
    assert report_series.thin(t, v, 20) == (t, v)
    assert report_series.thin(t, v, 5) == ([0.0, 2, 4, 6, 8], [9.0, 0, 0, 7, 0])


def test_charts_of_a_recorded_run(model: report.Report) -> None:
    charts = {c.key: c for c in model.charts}
    assert list(charts)[:2] == ["rss", "cpu"]
    rss = {ln.label: ln for ln in charts["rss"].lines}
    assert set(rss) == {"kube-apiserver", "kcp-manager", report.WORKLOAD_ROW}
    assert rss["kube-apiserver"].t == [5.0 * k for k in range(12)]
    assert rss["kube-apiserver"].v[-1] == 710.0
    assert rss[report.WORKLOAD_ROW].v[0] == 185.0  # median of the two workload apiservers
    depth = charts["workqueue_depth:kcp-manager"]
    assert depth.unit == "items"
    by_label = {ln.label: ln.v for ln in depth.lines}
    assert by_label["kubeadmcontrolplane"] == [3.0 * min(k, 11 - k) + 1 for k in range(12)]
    assert max(by_label[HOSTILE]) == 5.0
    assert "inflight:kube-apiserver" in charts
    workload = charts["inflight:workload-kube-apiserver-each-sum-of-2"]
    assert workload.title == f"{report.WORKLOAD_ROW}, sum of 2: inflight requests"
    assert [(ln.label, set(ln.v)) for ln in workload.lines] == [("mutating", {3.0})]
    assert not [k for k in charts if report.WORKLOAD_PREFIX in k]
    assert [ln.label for ln in charts["etcd_db_size"].lines] == ["mgmt-etcd"]
    assert charts["etcd_db_size"].lines[0].v[0] == 20.0  # MiB
    # KCP's requests grow linearly: the same rate at every tick after the first
    (kcp,) = charts["client_requests"].lines
    assert kcp.t[0] == 5.0 and len(set(round(v, 6) for v in kcp.v)) == 1 and kcp.v[0] > 0


def test_json_carries_every_plotted_point(model: report.Report) -> None:
    data = json.loads(json.dumps(model.as_dict(), default=str))
    assert [c["key"] for c in data["charts"]] == [c.key for c in model.charts]
    assert data["charts"][0]["lines"][0]["t"] == model.charts[0].lines[0].t
    assert data["latencies"]["cluster_available"] == model.latencies["cluster_available"]
    assert data["metrics"]["controllers"], data["metrics"]


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_page_is_self_contained_and_escaped(model: report.Report) -> None:
    figures = svg_figures(model)
    page = report_html.render(model, figures)
    assert HOSTILE not in page and "<script" not in page
    assert html_escaped(HOSTILE) in page
    parsed = _Page()
    parsed.feed(page)
    tags = [t for t, _a in parsed.tags]
    assert "script" not in tags and "link" not in tags and "iframe" not in tags
    # every reference is a data: URI: nothing to fetch
    refs = [v for _t, a in parsed.tags for k, v in a.items() if k in ("src", "href", "srcset", "poster")]
    assert refs and all(v and v.startswith("data:image/svg+xml;base64,") for v in refs), refs
    outside = re.sub(r'data:[^"]*', "", page)  # base64 may hold "//"
    assert not re.search(r"url\(|@import|//|https?:", outside), "a URL in the page"
    csp = [a for t, a in parsed.tags if t == "meta" and a.get("http-equiv") == "Content-Security-Policy"]
    assert csp == [{"http-equiv": "Content-Security-Policy", "content": report_html.CSP}]
    figs = [a["id"] for t, a in parsed.tags if t == "figure"]
    assert figs == ["plot-overview", *(f"plot-{c.key}" for c in model.charts)]
    for _t, a in parsed.tags:
        if a.get("src"):
            svg = base64.b64decode(a["src"].split(",", 1)[1]).decode()
            assert "<svg" in svg and 'xlink:href="http' not in svg
    text = "".join(parsed.text)
    assert "kubeadmcontrolplane" in text and "clusterloader2 SLOs" in text and "cluster_available" in text


def test_page_of_a_run_without_samples(tmp_path: Path) -> None:
    """A run that recorded only its start (no cluster, no sample): the page says so and has the
    overview plot alone."""
    with records.Records(tmp_path / "records.sqlite") as db:
        run = db.start_run(RunKind.delete, ["lab", "delete-clusters", "--all"], {}, {}, started=T0)
        r = report.build(db.run(run), [], [])
    assert r.charts == []
    page = report_html.render(r, svg_figures(r))
    assert page.count("<figure") == 1 and "No resource samples were recorded." in page
    assert "Over time" not in page and "<h2>Metrics" not in page


def html_escaped(s: str) -> str:
    import html

    return html.escape(s, quote=True)


def test_cli_writes_the_page(
    run_lab: Callable[..., subprocess.CompletedProcess[str]], lab_env: dict[str, str], tmp_path: Path
) -> None:
    with records.open_records(config.load()) as db:
        _record(db)
    out = tmp_path / "out" / "run.html"
    res = run_lab("report", "--html", str(out), "--format", "json")
    assert res.returncode == 0, res.stderr
    assert out.stat().st_mode & 0o777 == 0o644
    page = out.read_text()
    doc = json.loads(res.stdout)
    assert page.count("<figure") == 1 + len(doc["charts"])
    # the page says what held the run, statement by statement, as the text report does
    assert "<h2>Bottleneck" in page and doc["bottleneck"]["findings"]
    assert all(html_escaped(f["statement"]) in page for f in doc["bottleneck"]["findings"])
    assert f"HTML report written to {out}" in res.stderr
    res = run_lab("report", "--html", str(tmp_path))
    assert res.returncode == 2 and res.stderr.startswith("error: --html takes a file name"), res.stderr
    res = run_lab("report", "--html", "/proc/lab-no-such-dir/r.html")
    assert res.returncode == 1 and res.stderr.startswith("error: cannot write the HTML report to"), res.stderr
