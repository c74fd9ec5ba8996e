"""lab.bottleneck: exact figures from hand-made series, then the statements a real recorded run
supports (tests/fixtures/runs)."""

from __future__ import annotations

import pytest
from support import runs

from lab import bottleneck, records
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
    samples += _ms("ipam-manager", "rest_client_rate_limiter_duration_seconds_sum", "", [0, 1.5, 4.0])
    b = bottleneck.analyse(_run(), [], samples)
    ipam = _finding(b, "throttling", "ipam-manager")
    assert ipam.verdict == "throttled" and ipam.statement.startswith("ipam-manager waited 4.0 s")
    assert _finding(b, "throttling", "kube-apiserver").verdict == "unknown"


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


def test_recorded_create_run(recorded: records.Records) -> None:
    """What the first create run (3 clusters, default tuning) supports; the numbers are its own."""
    b = _analyse(recorded, runs.CREATE_DEFAULT)
    assert b.scrapes >= 5
    by_topic = {f.topic for f in b.findings}
    assert by_topic == {"queue", "throttling", "slo", "phase"}
    assert {f.subject for f in b.findings if f.topic == "throttling"} >= {
        "capi-manager",
        "kcp-manager",
        "capm3-manager",
        "bmo-manager",
    }
    for f in b.findings:
        if f.topic != "queue" or f.verdict != "none":
            assert f.figures and all(fig.value is not None for fig in f.figures[:1]), f
    assert [f.verdict for f in b.findings if f.topic == "slo"] == ["ok", "ok", "ok"]
    assert _finding(b, "phase").subject == runs.CREATE_LONGEST_PHASE
