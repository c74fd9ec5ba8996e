"""lab.bottleneck: exact figures from hand-made series, then the statements a real recorded run
supports (tests/fixtures/runs)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable

import pytest
from support import runs

from lab import bottleneck, config, records
from lab.phases import PHASES, RunKind
from lab.records import Event, MetricSample, Run

T0 = 1_700_000_000.0
CREATE = PHASES[RunKind.create]


def _run(settings: dict[str, object] | None = None) -> Run:
    versions = {"capi": "v1.13.6", "capm3": "v1.13.2", "bmo": "v0.13.2"}
    return Run(1, RunKind.create, T0, T0 + 60, "ok", ["lab"], settings or {"versions": versions}, {})


def _ms(
    component: str, metric: str, labels: str, values: list[float], step: float = 5.0
) -> list[MetricSample]:
    return [MetricSample(T0 + i * step, component, metric, labels, v) for i, v in enumerate(values)]


def _finding(b: bottleneck.Bottleneck, topic: str, subject: str | None = None) -> bottleneck.Finding:
    return next(f for f in b.findings if f.topic == topic and (subject is None or f.subject == subject))


def test_deepest_queue_is_the_largest_area_not_the_highest_peak() -> None:
    samples = [
        # 10 deep for one interval: (0+10)/2*5 + (10+0)/2*5 = 50 item-seconds
        *_ms("capi-manager", "workqueue_depth", "name=machine", [0, 10, 0, 0, 0]),
        # 4 deep for the whole run: 4*20 = 80 item-seconds
        *_ms("bmo-manager", "workqueue_depth", "name=baremetalhost", [4, 4, 4, 4, 4]),
    ]
    f = _finding(bottleneck.analyse(_run(), [], samples), "queue")
    assert f.subject == "bmo-manager/baremetalhost" and f.verdict == "holds"
    assert f.figures[0].value == 80 and f.figures[0].window == (0.0, 20.0)
    assert "80 item-seconds of workqueue_depth, non-empty t+0s..t+20s, peak 4 at t+0s" in f.statement


def test_empty_queues_say_so() -> None:
    samples = _ms("capi-manager", "workqueue_depth", "name=machine", [0, 0, 0])
    f = _finding(bottleneck.analyse(_run(), [], samples), "queue")
    assert f.verdict == "none" and "3 scrapes" in f.statement and f.figures == []


def test_throttling_against_the_recorded_profile_qps() -> None:
    # capm3 at v1.13: --kube-api-qps 20 by default, 100 with profile high
    reqs = _ms("capm3-manager", "rest_client_requests_total", "method=GET", [0, 50, 150, 160])
    reqs += _ms("capm3-manager", "rest_client_requests_total", "method=PATCH", [0, 0, 0, 10])
    default = bottleneck.analyse(_run(), [], reqs)
    f = _finding(default, "throttling", "capm3-manager")
    assert f.verdict == "possibly throttled"
    assert f.figures[0].value == 20.0 and f.figures[0].window == (5.0, 10.0)  # 100 requests in 5 s
    assert "= 100 % of its management --kube-api-qps 20 (upstream default;" in f.statement
    high = _run({"versions": {"capm3": "v1.13.2"}, "tuning": "high"})
    f = _finding(bottleneck.analyse(high, [], reqs), "throttling", "capm3-manager")
    assert f.verdict == "ok" and "20 % of its management --kube-api-qps 100 (profile high)" in f.statement


def test_rate_limiter_wait_wins_when_exported_and_unknown_limits_say_so() -> None:
    samples = _ms("kube-apiserver", "rest_client_requests_total", "method=GET", [0, 10, 20])
    samples += _ms("ipam-manager", "rest_client_requests_total", "method=GET", [0, 10, 20])
    samples += _ms("capi-manager", "rest_client_requests_total", "method=GET", [0, 10, 20])
    samples += _ms("capi-manager", "rest_client_rate_limiter_duration_seconds_sum", "", [0, 1.5, 4.0])
    b = bottleneck.analyse(_run(), [], samples)
    capi = _finding(b, "throttling", "capi-manager")
    assert capi.verdict == "throttled" and capi.statement.startswith("capi-manager waited 4.0 s")
    ipam = _finding(b, "throttling", "ipam-manager")  # not in lab.tuning's table
    assert ipam.verdict == "unknown" and "client QPS limit unknown" in ipam.statement
    # the apiserver's own loopback client is no manager: no finding
    assert {f.subject for f in b.findings if f.topic == "throttling"} == {"capi-manager", "ipam-manager"}


def _buckets(cls: str, increases: dict[str, list[float]]) -> list[MetricSample]:
    out = []
    for le, values in increases.items():
        out += _ms(
            "kube-apiserver", "apiserver_request_duration_seconds_bucket", f"class={cls},le={le}", values
        )
    return out


def test_slo_breach_names_the_class_and_the_slowest_verb_resource() -> None:
    # 100 mutating calls, 5 of them slower than 4 s: p99 in (4, +Inf] -> beyond the buckets
    samples = _buckets("mutating", {"0.5": [0, 50, 95], "4": [0, 50, 95], "+Inf": [0, 50, 100]})
    # 100 reads, all under 0.1 s
    samples += _buckets("read", {"0.1": [0, 40, 100], "+Inf": [0, 40, 100]})
    samples += _ms(
        "kube-apiserver", "apiserver_request_duration_seconds_count", "resource=machines,verb=PATCH", [0, 4]
    )
    samples += _ms(
        "kube-apiserver", "apiserver_request_duration_seconds_sum", "resource=machines,verb=PATCH", [0, 8]
    )
    samples += _ms(
        "kube-apiserver", "apiserver_request_duration_seconds_count", "resource=pods,verb=POST", [0, 96]
    )
    samples += _ms(
        "kube-apiserver", "apiserver_request_duration_seconds_sum", "resource=pods,verb=POST", [0, 9.6]
    )
    b = bottleneck.analyse(_run(), [], samples)
    mutating = _finding(b, "slo", "mutating")
    assert mutating.verdict == "breach"
    assert mutating.statement == (
        "kube-apiserver mutating calls: p99 > 4 s over 100 calls t+0s..t+10s breaches the 1 s SLO; "
        "slowest mean: PATCH machines 2000.0 ms over 4 calls."
    )
    read = _finding(b, "slo", "read")
    assert read.verdict == "ok" and read.figures[0].value == pytest.approx(0.099)
    assert _finding(b, "slo", "list").verdict == "none"
    # a custom limit: the same p99 meets 200 ms... and not 50 ms
    assert (
        _finding(bottleneck.analyse(_run(), [], samples, {"read": 0.05}), "slo", "read").verdict == "breach"
    )


def test_longest_phase_is_the_largest_median_step() -> None:
    events = []
    for i, (bmh, node) in enumerate([(30, 35), (40, 42), (50, 60)], start=1):
        events += [
            Event(f"test-{i}", i, CREATE[0], T0),
            Event(f"test-{i}", i, CREATE[1], T0 + bmh),
            Event(f"test-{i}", i, CREATE[2], T0 + node),
        ]
    b = bottleneck.analyse(_run(), events, [])
    assert _finding(b, "metrics").statement.startswith("Run 1 has no metric samples")
    f = _finding(b, "phase")
    assert f.subject == "bmh_provisioned" and f.figures[0].value == 40
    assert f.statement == (
        "Clusters waited longest for bmh_provisioned (after applied): step p50 40.0 s, p90 48.0 s, "
        "max 50.0 s over 3 clusters t+0s..t+50s."
    )


def test_a_run_without_anything_does_not_crash() -> None:
    b = bottleneck.analyse(_run(), [], [])
    assert [f.topic for f in b.findings] == ["metrics", "phase"]
    assert "\n".join(bottleneck.to_markdown(b)).count("- **") == 2


# --- a real recorded run ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> records.Records:
    path = runs.load(runs.SMALL, tmp_path_factory.mktemp("runs") / "records.sqlite")
    return records.Records(path, create=False)


def _analyse(db: records.Records, run_id: int) -> bottleneck.Bottleneck:
    return bottleneck.analyse(db.run(run_id), db.events(run_id), db.metric_samples(run_id))


def test_recorded_create_runs_queue_throttling_slo_phase(recorded: records.Records) -> None:
    """What the two create runs (3 clusters each, default then high tuning) support."""
    default = _analyse(recorded, runs.CREATE_DEFAULT)
    assert default.scrapes >= 5
    assert {f.topic for f in default.findings} == {"queue", "throttling", "slo", "phase"}
    queue = _finding(default, "queue")
    assert queue.subject == runs.CREATE_DEFAULT_QUEUE and queue.verdict == "holds"
    fig = queue.figures[0]
    assert (fig.metric, fig.unit) == ("workqueue_depth", "item-seconds") and fig.value and fig.value > 0
    assert fig.window is not None and 0 <= fig.window[0] <= fig.window[1]
    managers = {"capi-manager", "kcp-manager", "cabpk-manager", "capm3-manager", "bmo-manager"}
    throttling = {f.subject: f for f in default.findings if f.topic == "throttling"}
    assert managers <= set(throttling)
    capm3 = throttling[runs.THROTTLED_AT_DEFAULT]
    assert capm3.verdict == "possibly throttled" and "--kube-api-qps 20 (profile default)" in capm3.statement
    assert all(throttling[m].verdict == "ok" for m in managers - {runs.THROTTLED_AT_DEFAULT})
    # profile high gave capm3 QPS 100: the same manager is below its limit in run 3
    high = {f.subject: f for f in _analyse(recorded, runs.CREATE_HIGH).findings if f.topic == "throttling"}
    assert high[runs.THROTTLED_AT_DEFAULT].verdict == "ok"
    assert "--kube-api-qps 100 (profile high)" in high[runs.THROTTLED_AT_DEFAULT].statement
    slo = [f for f in default.findings if f.topic == "slo"]
    assert [(f.subject, f.verdict) for f in slo] == [("mutating", "ok"), ("read", "ok"), ("list", "ok")]
    assert all(f.figures[0].value is not None and f.figures[0].value < 1 for f in slo)
    phase = _finding(default, "phase")
    assert phase.subject == runs.CREATE_LONGEST_PHASE and "(after applied)" in phase.statement


def test_recorded_delete_run_breaches_an_slo(recorded: records.Records) -> None:
    b = _analyse(recorded, runs.DELETE_HIGH)
    breach = [f for f in b.findings if f.topic == "slo" and f.verdict == "breach"]
    assert [f.subject for f in breach] == [runs.DELETE_HIGH_SLO_BREACH]
    p99 = breach[0].figures[0]
    assert p99.value is not None and p99.value > 1.0 and p99.labels == "class=mutating"
    assert "breaches the 1 s SLO; slowest mean: " in breach[0].statement
    assert breach[0].figures[1].metric == "apiserver_request_duration_seconds_sum/_count"
    assert _finding(b, "phase").subject == runs.DELETE_LONGEST_PHASE


def test_recorded_run_in_lab_report_md_and_json(
    lab_env: dict[str, str], run_lab: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    runs.load(runs.SMALL, config.load().db_path)
    res = run_lab("report", "--run", str(runs.CREATE_DEFAULT))
    assert res.returncode == 0, res.stderr
    section = res.stdout.split("## Bottleneck", 1)[1]
    assert (
        f"- **queue** (holds): {runs.CREATE_DEFAULT_QUEUE.replace('/', ' `')}` queue stayed deepest"
        in section
    )
    res = run_lab("report", "--run", str(runs.DELETE_HIGH), "--format", "json")
    doc = json.loads(res.stdout)
    verdicts = {(f["topic"], f["subject"]): f["verdict"] for f in doc["bottleneck"]["findings"]}
    assert verdicts[("slo", runs.DELETE_HIGH_SLO_BREACH)] == "breach"
    assert doc["bottleneck"]["run_id"] == runs.DELETE_HIGH and doc["run"]["id"] == runs.DELETE_HIGH


def test_the_slowest_call_may_be_to_no_resource() -> None:
    """kube-apiserver labels calls to no resource (GET /readyz, /metrics) with resource="": the
    slowest of a class can be one of them (seen on a real 3-cluster run, where it crashed the report)."""
    samples = _buckets("read", {"0.1": [0, 40, 100], "+Inf": [0, 40, 100]})
    samples += _ms(
        "kube-apiserver", "apiserver_request_duration_seconds_count", "resource=,verb=GET", [0, 10]
    )
    samples += _ms("kube-apiserver", "apiserver_request_duration_seconds_sum", "resource=,verb=GET", [0, 0.5])
    read = _finding(bottleneck.analyse(_run(), [], samples), "slo", "read")
    assert read.statement.endswith("; slowest mean: GET (no resource) 50.0 ms over 10 calls.")
    assert read.figures[1].labels == "verb=GET,resource="
