"""lab.metrics' reduction and sampler, and the report's metrics section, on small committed scrapes:
tests/unit/fixtures/metrics_kcp.txt is a real KCP manager scrape (v1.13.6) cut to a few families,
metrics_apiserver.txt an apiserver excerpt with known bucket counts, so every p99 below is checked
against a value worked out by hand.
"""

from __future__ import annotations

import http.server
import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab import metrics, records, report
from lab.phases import RunKind
from lab.records import MetricSample, Records, Run

FIXTURES = Path(__file__).parent / "fixtures"
KCP = (FIXTURES / "metrics_kcp.txt").read_text()
APISERVER = (FIXTURES / "metrics_apiserver.txt").read_text()


def _rows(text: str) -> dict[tuple[str, str], float]:
    return {(m, lab): v for m, lab, v in metrics.reduce(text)}


def test_reduce_keeps_controller_series_summed_over_other_labels() -> None:
    rows = _rows(KCP)
    ctl = "controller=kubeadmcontrolplane"
    # reconcile_total is summed over result: error 51 + requeue 0 + requeue_after 26 + success 30
    assert rows[("controller_runtime_reconcile_total", ctl)] == 107
    assert rows[("controller_runtime_reconcile_errors_total", ctl)] == 51
    assert rows[("controller_runtime_reconcile_time_seconds_count", ctl)] == 107
    assert rows[("workqueue_depth", "name=kubeadmcontrolplane")] >= 0
    assert ("rest_client_requests_total", "method=PATCH") in rows  # summed over code and host
    assert not any(m.endswith("_bucket") for m, _lab in rows)  # no histogram bucket of a manager
    assert not any(m.startswith("go_") for m, _lab in rows)  # families no rule wants are dropped


def test_reduce_keeps_apiserver_buckets_by_slo_class_only() -> None:
    rows = _rows(APISERVER)
    buckets = {lab: v for (m, lab), v in rows.items() if m == "apiserver_request_duration_seconds_bucket"}
    assert buckets["class=mutating,le=+Inf"] == 100
    assert buckets["class=read,le=+Inf"] == 200
    assert buckets["class=list,le=+Inf"] == 6  # LIST, and a GET of a collection would be too
    assert len(buckets) == 3 * 24  # WATCH is outside the SLOs: no class, no row
    assert rows[("apiserver_request_duration_seconds_count", "resource=clusters,verb=WATCH")] == 40
    assert rows[("apiserver_current_inflight_requests", "request_kind=readOnly")] == 7
    assert rows[("apiserver_flowcontrol_rejected_requests_total", "priority_level=workload-low")] == 3
    assert ("process_cpu_seconds_total", "") not in rows


def test_slo_classes_follow_clusterloader2() -> None:
    assert metrics.slo_class("PATCH", "resource") == "mutating"
    assert metrics.slo_class("GET", "resource") == "read"
    assert metrics.slo_class("GET", "namespace") == "list"
    assert metrics.slo_class("LIST", "cluster") == "list"
    assert metrics.slo_class("WATCH", "cluster") is None


def test_increase_handles_restarts_and_quantile_interpolates() -> None:
    assert report.increase([5, 7, 2, 4]) == 2 + 2 + 2  # 7 -> 2: restarted, counted from zero
    assert report.increase([3]) == 0
    assert report.histogram_quantile(0.5, {1.0: 50, 2.0: 100, float("inf"): 100}) == 1.0
    assert report.histogram_quantile(0.99, {1.0: 0, float("inf"): 10}) == 1.0  # in +Inf: top bound
    assert report.histogram_quantile(0.99, {float("inf"): 0}) is None


def _scrapes(t0: float = 1000.0, t1: float = 1030.0) -> list[MetricSample]:
    """Two scrapes of the fixtures: every counter at zero, then at the fixture's values."""
    out = []
    for component, text in (("kcp-manager", KCP), ("kube-apiserver", APISERVER)):
        for m, lab, v in metrics.reduce(text):
            out.append(MetricSample(t0, component, m, lab, 0.0))
            out.append(MetricSample(t1, component, m, lab, v))
    out.append(MetricSample(t0, metrics.SAMPLER_COMPONENT, metrics.SAMPLER_CPU, "", 0.1))
    out.append(MetricSample(t1, metrics.SAMPLER_COMPONENT, metrics.SAMPLER_CPU, "", 0.4))
    return out


def test_report_metrics_from_samples() -> None:
    m = report.metrics(_scrapes())
    assert m is not None
    slo = {r.call: r for r in m.slo}
    # mutating: 80/90/95/98/100 cumulative at 5/25/50/100/200 ms; rank 99 is half-way in (0.1, 0.2]
    assert slo["mutating"].p99 == pytest.approx(0.15) and slo["mutating"].met is True
    assert slo["read"].p99 == pytest.approx(0.005 * 198 / 200)
    # list: one of six took longer than 60 s, so p99 is in +Inf: the top finite bound, over 30 s
    assert (slo["list"].requests, slo["list"].p99, slo["list"].met) == (6, 60.0, False)
    assert slo["list"].beyond_buckets and not slo["mutating"].beyond_buckets
    kcp = next(c for c in m.controllers if c.controller == "kubeadmcontrolplane")
    assert (kcp.reconciles, kcp.errors) == (107, 51)
    assert kcp.mean_reconcile_seconds == pytest.approx(316.825156966 / 107)
    assert m.clients[0].component == "kcp-manager" and m.clients[0].throttled_seconds is None
    assert m.sampler_cpu_seconds == 0.4 and m.sampled_seconds == 30.0 and m.scrapes == 2
    assert report.metrics([]) is None


def test_markdown_has_p99_and_the_metrics_section() -> None:
    run = Run(1, RunKind.create, 1000.0, 1100.0, "ok", ["lab"], {"versions": {}}, {"cores": 2})
    text = report.to_markdown(report.build(run, [], metric_samples=_scrapes()))
    assert "| phase | reached | p50 | p90 | p99 | max | step from | step p50 | step p90 | step p99 |" in text
    assert "## Metrics (2 scrapes over 30.0s" in text
    assert "| mutating | 100 | 0.150 | 1 | yes |" in text
    assert "| list | 6 | > 60.000 | 30 | NO |" in text
    assert "| kcp-manager | kubeadmcontrolplane |" in text
    assert "| kcp-manager | " in text and "not exported" in text
    assert "0.4 s CPU (1.3 % of a core)" in text
    no_metrics = report.to_markdown(report.build(run, []))
    assert "## Metrics" not in no_metrics


def test_schema_1_database_gains_metric_samples(tmp_path: Path) -> None:
    path = tmp_path / "records.sqlite"
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE runs (id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, started REAL NOT NULL,"
        " finished REAL, status TEXT, argv TEXT NOT NULL, settings TEXT NOT NULL, host TEXT NOT NULL);"
        "INSERT INTO runs (kind, started, argv, settings, host) VALUES ('create', 1.0, '[]', '{}', '{}');"
        "PRAGMA user_version=1;"
    )
    db.close()
    with Records(path) as rec:
        rec.metric_many(1, [(2.0, "kcp-manager", "workqueue_depth", "name=x", 3.0)])
        assert rec.metric_samples(1) == [MetricSample(2.0, "kcp-manager", "workqueue_depth", "name=x", 3.0)]
        assert rec.run(1).kind == RunKind.create


@pytest.fixture
def server() -> Iterator[tuple[int, list[dict[str, str]]]]:
    """A real HTTP server on loopback serving the KCP fixture; records each request's headers."""
    seen: list[dict[str, str]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(dict(self.headers))
            body = KCP.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: object) -> None:
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv.server_address[1], seen
    srv.shutdown()
    srv.server_close()


def test_sampler_scrapes_skips_the_dead_and_guards_its_token(
    server: tuple[int, list[dict[str, str]]], tmp_path: Path
) -> None:
    port, seen = server
    dead = metrics.Target("gone", "http://127.0.0.1:9/metrics")  # discard port: nothing listens
    good = metrics.Target("kcp-manager", f"http://127.0.0.1:{port}/metrics")
    stranger = metrics.Target(
        "bmo-manager",
        f"http://127.0.0.1:{port}/metrics",
        token=lambda: "secret",
        owner=lambda: os.getpid() + 1,  # not the process behind the port (this test's own)
        port_owner=lambda _p: os.getpid(),
        port=port,
    )
    with records.Records(tmp_path / "r.sqlite") as db:
        run = db.start_run(RunKind.create, [], {})
        sampler = metrics.MetricsSampler(lambda rows: db.metric_many(run, rows), [dead, good, stranger], 0.05)
        with sampler:
            threading.Event().wait(0.3)
        stored = db.metric_samples(run)
    assert {s.component for s in stored} == {"kcp-manager", metrics.SAMPLER_COMPONENT}
    assert "gone" in sampler.errors and "bmo-manager" in sampler.errors
    assert not any("Authorization" in h for h in seen)  # the token never left for a stranger
    cpu = [s.value for s in stored if s.metric == metrics.SAMPLER_CPU]
    assert cpu == sorted(cpu) and cpu[-1] > 0


def test_memoised_reducer_gives_the_parser_s_answer_with_new_values() -> None:
    """A Reducer reused across scrapes (as the sampler does) sums the new values, not old ones."""
    r = metrics.Reducer()
    assert r(APISERVER) == metrics.reduce(APISERVER)
    doubled = APISERVER.replace('request_kind="readOnly"} 7', 'request_kind="readOnly"} 14')
    assert _rows_of(r(doubled))[("apiserver_current_inflight_requests", "request_kind=readOnly")] == 14


def _rows_of(rows: list[metrics.Row]) -> dict[tuple[str, str], float]:
    return {(m, lab): v for m, lab, v in rows}
