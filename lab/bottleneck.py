"""What held a run, from its records: each statement cites the figure it rests on (metric, component,
value, and the window of the run it covers, in seconds from the run's start).

Four questions, the ones the Metal3 scale notes answered by hand:

- queue: which controller's workqueue stayed deepest longest. The figure is the area under
  `workqueue_depth` (item-seconds, trapezoids between scrapes): a queue 10 deep for 5 s and one 1 deep
  for 50 s held the same amount of work waiting.
- throttling, per manager: client-go's `rest_client_rate_limiter_duration_seconds` when the binary
  exports it (controller-runtime registers neither it nor the request latency, so the six managers
  do not); otherwise the manager's request rate per scrape interval against the `--kube-api-qps` it
  ran with (lab.tuning at the run's versions and recorded profile). A peak at 90 % of the limit or
  more means the token bucket was being emptied: requests waited.
- slo: the management kube-apiserver's p99 per clusterloader2 call class (mutating and single-object
  read <= 1 s, list <= 30 s) from the increase of the stored buckets between the first and the last
  scrape, as Prometheus' histogram_quantile. The sampler keeps buckets by class only (lab.metrics:
  by verb x resource they are most of a scrape), so a breach names the class, and the verb+resource
  with the slowest mean latency (sum/count, kept by verb and resource) as where to look.
- phase: the phase clusters waited longest for: the largest median step from the phase it waits for
  (lab.phases.previous), with p90 and max.

Every figure is also a Measure: its value and the units it is a statistic of (per-cluster times,
per-scrape-interval increments), so lab.compare can bootstrap run-to-run noise from the same data.
Pure: no I/O, nothing printed.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from lab import shards, tuning
from lab.metrics import SLO_HISTOGRAM, parse_labels
from lab.phases import Phase, previous, run_phases
from lab.records import Event, MetricSample, Run
from lab.report import SLO_SECONDS, histogram_quantile, percentile

#: A peak request rate at or above this share of the manager's client QPS limit counts as throttled.
THROTTLE_SHARE = 0.9
#: Call classes of the SLO figures, by verb (scope is not stored; a GET is a single-object read).
MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE", "DELETECOLLECTION", "APPLY"})

Window = tuple[float, float]
Stat = Callable[[Sequence[Any]], float | None]


@dataclass(frozen=True)
class Figure:
    """One number a statement rests on."""

    key: str  # stable across runs: what lab.compare matches on
    metric: str
    component: str
    labels: str
    value: float | None
    unit: str
    window: Window | None  # seconds from the run's start


@dataclass(frozen=True)
class Finding:
    topic: str  # queue / throttling / slo / phase / metrics
    subject: str
    verdict: str  # holds / throttled / ok / breach / unknown / none
    statement: str
    figures: list[Figure]


@dataclass(frozen=True)
class Measure:
    """A figure's value as a statistic of units, for a bootstrap (lab.compare)."""

    figure: Figure
    units: list[Any]
    stat: Stat


@dataclass(frozen=True)
class Bottleneck:
    run_id: int
    scrapes: int
    findings: list[Finding]
    measures: list[Measure] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "scrapes": self.scrapes,
            "findings": [asdict(f) for f in self.findings],
        }


# --- series -----------------------------------------------------------------------------------

Points = list[tuple[float, float]]


def _series(samples: Sequence[MetricSample]) -> dict[tuple[str, str, str], Points]:
    out: dict[tuple[str, str, str], Points] = defaultdict(list)
    for s in sorted(samples, key=lambda s: s.ts):
        out[(s.component, s.metric, s.labels)].append((s.ts, s.value))
    return out


def deltas(points: Points) -> list[tuple[Window, float]]:
    """A counter's increase per scrape interval; a drop is a restart from zero."""
    return [((t0, t1), v1 - v0 if v1 >= v0 else v1) for (t0, v0), (t1, v1) in itertools.pairwise(points)]


def area(points: Points) -> list[tuple[Window, float]]:
    """A gauge's item-seconds per scrape interval (trapezoids)."""
    return [((t0, t1), (v0 + v1) / 2 * (t1 - t0)) for (t0, v0), (t1, v1) in itertools.pairwise(points)]


def _sum(units: Sequence[float]) -> float | None:
    return float(sum(units)) if units else None


def _mean(units: Sequence[float]) -> float | None:
    return sum(units) / len(units) if units else None


def _max(units: Sequence[float]) -> float | None:
    return max(units) if units else None


def _merge(units: Sequence[dict[float, float]]) -> dict[float, float]:
    total: dict[float, float] = defaultdict(float)
    for u in units:
        for le, n in u.items():
            total[le] += n
    return dict(total)


def _p99(units: Sequence[dict[float, float]]) -> float | None:
    return histogram_quantile(0.99, _merge(units))


def _rel(run: Run, w: Window) -> Window:
    return (round(w[0] - run.started, 1), round(w[1] - run.started, 1))


def _t(w: Window | None) -> str:
    return "-" if w is None else f"t+{w[0]:.0f}s..t+{w[1]:.0f}s"


# --- queue ------------------------------------------------------------------------------------


def _queues(run: Run, series: dict[tuple[str, str, str], Points]) -> tuple[list[Finding], list[Measure]]:
    measures = []
    best: tuple[float, Figure, float, float] | None = None
    for (c, m, lab), pts in sorted(series.items()):
        if m != "workqueue_depth" or len(pts) < 2:
            continue
        name = parse_labels(lab).get("name", "")
        parts = area(pts)
        total = sum(v for _w, v in parts)
        busy = [w for w, v in parts if v > 0]  # the intervals that held items
        window = _rel(run, (busy[0][0], busy[-1][1])) if busy else None
        fig = Figure(f"queue:{c}/{name}", m, c, lab, total, "item-seconds", window)
        measures.append(Measure(fig, [v for _w, v in parts], _sum))
        peak_t, peak = max(pts, key=lambda p: p[1])
        if total > 0 and (best is None or total > best[0]):
            best = (total, fig, peak, peak_t - run.started)
    if best is None:
        n = len({t for (_c, m, _l), pts in series.items() if m == "workqueue_depth" for t, _v in pts})
        return [
            Finding(
                "queue",
                "-",
                "none",
                f"No controller's workqueue was seen non-empty (workqueue_depth, {n} scrapes): "
                "no queue held the run.",
                [],
            )
        ], measures
    total, fig, peak, peak_at = best
    name = parse_labels(fig.labels).get("name", "")
    return [
        Finding(
            "queue",
            f"{fig.component}/{name}",
            "holds",
            f"{fig.component} `{name}` queue stayed deepest longest: {total:.0f} item-seconds of "
            f"workqueue_depth, non-empty {_t(fig.window)}, peak {peak:.0f} at t+{peak_at:.0f}s.",
            [fig],
        )
    ], measures


# --- throttling -------------------------------------------------------------------------------


def _minor(version: str) -> tuning.Minor | None:
    try:
        major, minor = version.lstrip("v").split(".")[:2]
        return int(major), int(minor)
    except ValueError:
        return None


def qps_limit(run: Run, component: str) -> tuple[float | None, str]:
    """The manager's management-API client QPS in this run, and where the number comes from; a
    KCP shard's (lab.shards) is kcp-manager's, whose flags every shard runs with."""
    component = shards.base_manager(component)
    key = tuning.COMPONENTS.get(component)
    minor = _minor(str(run.settings.get("versions", {}).get(key, ""))) if key else None
    if key is None or minor is None:
        return None, "no known --kube-api-qps"
    profile = run.settings.get("tuning")
    for k in tuning.TABLE:
        if k.component == component and k.flag == "kube-api-qps" and k.applies(minor):
            if profile is None:
                return float(k.default), "upstream default; the run did not record its tuning profile"
            return float(k.values.get(profile, k.default)), f"profile {profile}"
    return None, "no --kube-api-qps at this version"


def _throttling(run: Run, series: dict[tuple[str, str, str], Points]) -> tuple[list[Finding], list[Measure]]:
    per: dict[str, dict[float, float]] = defaultdict(lambda: defaultdict(float))
    for (c, m, _lab), pts in series.items():
        # managers only: kube-apiserver's loopback client is not what a tuning profile can change
        if m == "rest_client_requests_total" and c.endswith("-manager"):
            for t, v in pts:
                per[c][t] += v
    findings, measures = [], []
    for c in sorted(per):
        pts = sorted(per[c].items())
        steps = deltas(pts)
        rates = [(w, v / (w[1] - w[0])) for w, v in steps if w[1] > w[0]]
        sent = sum(v for _w, v in steps)
        if not rates or sent <= 0:
            continue
        span = pts[-1][0] - pts[0][0]
        peak_w, peak = max(rates, key=lambda r: r[1])
        peak_fig = Figure(
            f"client_peak_rps:{c}", "rest_client_requests_total", c, "", peak, "req/s", _rel(run, peak_w)
        )
        mean_fig = Figure(
            f"client_mean_rps:{c}",
            "rest_client_requests_total",
            c,
            "",
            sent / span,
            "req/s",
            _rel(run, (pts[0][0], pts[-1][0])),
        )
        measures += [
            Measure(peak_fig, [r for _w, r in rates], _max),
            Measure(mean_fig, [r for _w, r in rates], _mean),
        ]
        waited = series.get((c, "rest_client_rate_limiter_duration_seconds_sum", ""))
        if waited and len(waited) > 1:
            wait_steps = deltas(waited)
            wait = sum(v for _w, v in wait_steps)
            fig = Figure(
                f"client_throttled_seconds:{c}",
                "rest_client_rate_limiter_duration_seconds_sum",
                c,
                "",
                wait,
                "s",
                _rel(run, (waited[0][0], waited[-1][0])),
            )
            measures.append(Measure(fig, [v for _w, v in wait_steps], _sum))
            verdict = "throttled" if wait > 0 else "ok"
            text = (
                f"{c} waited {wait:.1f} s in client-go's rate limiter over {sent:.0f} requests "
                f"({_t(fig.window)})."
            )
            findings.append(Finding("throttling", c, verdict, text, [fig, peak_fig]))
            continue
        limit, source = qps_limit(run, c)
        base = (
            f"{c}: {sent:.0f} client requests, mean {sent / span:.1f} req/s, "
            f"peak {peak:.1f} req/s {_t(peak_fig.window)}"
        )
        if limit is None:
            findings.append(
                Finding(
                    "throttling", c, "unknown", f"{base}; client QPS limit unknown ({source}).", [peak_fig]
                )
            )
            continue
        share = peak / limit
        throttled = share >= THROTTLE_SHARE
        findings.append(
            Finding(
                "throttling",
                c,
                "possibly throttled" if throttled else "ok",
                f"{base} = {100 * share:.0f} % of its management --kube-api-qps {limit:g} ({source}): "
                + (
                    "at or above the limit, so requests may have waited (the rate counts all its API "
                    "clients, workload clusters' included, and the binary does not export client-go's "
                    "rate-limiter wait: its log's 'due to client-side throttling' lines settle it)."
                    if throttled
                    else "below its client-side limit."
                ),
                [peak_fig, mean_fig],
            )
        )
    return findings, measures


# --- SLO --------------------------------------------------------------------------------------


def call_class(verb: str) -> str | None:
    if verb in MUTATING:
        return "mutating"
    if verb == "LIST":
        return "list"
    if verb == "GET":
        return "read"
    return None


def _class_units(
    series: dict[tuple[str, str, str], Points],
) -> tuple[dict[str, list[dict[float, float]]], dict[str, Window]]:
    """Per call class, the bucket increases of each scrape interval, and the span they cover."""
    per_class: dict[str, list[dict[float, float]]] = defaultdict(list)
    spans: dict[str, Window] = {}
    for (_c, m, lab), pts in series.items():
        if m != f"{SLO_HISTOGRAM}_bucket" or len(pts) < 2:
            continue
        kv = parse_labels(lab)
        le = float(kv["le"])
        units = per_class[kv["class"]]
        for i, (_w, v) in enumerate(deltas(pts)):
            while len(units) <= i:
                units.append({})
            units[i][le] = units[i].get(le, 0.0) + v
        spans[kv["class"]] = (pts[0][0], pts[-1][0])
    return per_class, spans


def _slowest(series: dict[tuple[str, str, str], Points]) -> dict[str, tuple[float, str, str, float]]:
    """Per call class, the verb+resource with the highest mean latency: (mean, verb, resource, calls).
    The resource is "" for calls to no resource (e.g. GET /readyz, /metrics)."""
    out: dict[str, tuple[float, str, str, float]] = {}
    for (c, m, lab), pts in series.items():
        if m != f"{SLO_HISTOGRAM}_count":
            continue
        kv = parse_labels(lab)
        cls = call_class(kv.get("verb", ""))
        count = sum(v for _w, v in deltas(pts))
        if cls is None or count <= 0:
            continue
        total = sum(v for _w, v in deltas(series.get((c, f"{SLO_HISTOGRAM}_sum", lab), [])))
        mean = total / count
        if cls not in out or mean > out[cls][0]:
            out[cls] = (mean, kv.get("verb", ""), kv.get("resource", ""), count)
    return out


def _slo(
    run: Run, series: dict[tuple[str, str, str], Points], limits: dict[str, float]
) -> tuple[list[Finding], list[Measure]]:
    per_class, spans = _class_units(series)
    slowest = _slowest(series)
    findings, measures = [], []
    for cls, limit in limits.items():
        units = per_class.get(cls, [])
        p99 = _p99(units)
        total = _merge(units)
        calls = total.get(float("inf"), 0.0)
        window = _rel(run, spans[cls]) if cls in spans else None
        fig = Figure(
            f"slo_p99:{cls}", f"{SLO_HISTOGRAM}_bucket", "kube-apiserver", f"class={cls}", p99, "s", window
        )
        measures.append(Measure(fig, units, _p99))
        if p99 is None or calls <= 0:
            findings.append(
                Finding("slo", cls, "none", f"No {cls} calls reached kube-apiserver while sampled.", [fig])
            )
            continue
        finite = [le for le in total if le != float("inf")]
        beyond = bool(finite) and total[max(finite)] < 0.99 * calls
        breach = beyond or p99 > limit
        shown = f"> {p99:g}" if beyond else f"{p99:.3f}"
        text = f"kube-apiserver {cls} calls: p99 {shown} s over {calls:.0f} calls {_t(window)} " + (
            f"breaches the {limit:g} s SLO" if breach else f"within the {limit:g} s SLO"
        )
        figs = [fig]
        if cls in slowest:
            mean, verb, resource, count = slowest[cls]
            call = f"{verb} {resource}" if resource else f"{verb} (no resource)"
            text += f"; slowest mean: {call} {mean * 1000:.1f} ms over {count:.0f} calls"
            figs.append(
                Figure(
                    f"slowest_mean:{cls}",
                    f"{SLO_HISTOGRAM}_sum/_count",
                    "kube-apiserver",
                    f"verb={verb},resource={resource}",
                    mean,
                    "s",
                    window,
                )
            )
        findings.append(Finding("slo", cls, "breach" if breach else "ok", text + ".", figs))
    return findings, measures


# --- phases -----------------------------------------------------------------------------------


def _phases(run: Run, events: Sequence[Event]) -> tuple[list[Finding], list[Measure]]:
    order = run_phases(run.kind, run.settings)
    ts: dict[str, dict[Phase, float]] = defaultdict(dict)
    for e in events:
        if e.phase in order:
            ts[e.cluster][e.phase] = e.ts
    best: tuple[float, Phase, Phase, list[float], Window] | None = None
    measures = []
    for phase in order:
        prev = previous(phase, order)
        if prev is None:
            continue
        pairs = [(t[prev], t[phase]) for t in ts.values() if prev in t and phase in t]
        if not pairs:
            continue
        steps = [b - a for a, b in pairs]
        window = _rel(run, (min(a for a, _b in pairs), max(b for _a, b in pairs)))
        p50 = percentile(steps, 50)
        assert p50 is not None
        fig = Figure(
            f"step_p50:{phase.value}", "cluster_events", "-", f"phase={phase.value}", p50, "s", window
        )
        measures.append(Measure(fig, steps, lambda u: percentile(u, 50)))
        if best is None or p50 > best[0]:
            best = (p50, phase, prev, steps, window)
    if best is None:
        return [
            Finding("phase", "-", "none", "No cluster reached a second phase: no step to compare.", [])
        ], measures
    p50, phase, prev, steps, window = best
    p90, top = percentile(steps, 90), max(steps)
    fig = Figure(f"step_p50:{phase.value}", "cluster_events", "-", f"phase={phase.value}", p50, "s", window)
    return [
        Finding(
            "phase",
            phase.value,
            "holds",
            f"Clusters waited longest for {phase.value} (after {prev.value}): step p50 {p50:.1f} s, "
            f"p90 {p90:.1f} s, max {top:.1f} s over {len(steps)} clusters {_t(window)}.",
            [fig],
        )
    ], measures


def analyse(
    run: Run,
    events: Sequence[Event],
    metric_samples: Sequence[MetricSample],
    slo_limits: dict[str, float] | None = None,
) -> Bottleneck:
    """Every finding of one run; a run without metric samples gets one `metrics` finding saying so."""
    findings: list[Finding] = []
    measures: list[Measure] = []
    series = _series(metric_samples)
    scrapes = len({s.ts for s in metric_samples})
    if not metric_samples:
        findings.append(
            Finding(
                "metrics",
                "-",
                "none",
                f"Run {run.id} has no metric samples: nothing to say about queues, client throttling "
                "or apiserver SLOs.",
                [],
            )
        )
    else:
        for part in (
            _queues(run, series),
            _throttling(run, series),
            _slo(run, series, SLO_SECONDS | (slo_limits or {})),
        ):
            findings += part[0]
            measures += part[1]
    phase_findings, phase_measures = _phases(run, events)
    return Bottleneck(run.id, scrapes, findings + phase_findings, measures + phase_measures)


def to_markdown(b: Bottleneck) -> list[str]:
    """The section's lines: one bullet per statement (figures in --format json)."""
    lines = [
        f"## Bottleneck (from {b.scrapes} scrapes and the phase records; t+ = seconds from the run start)",
        "",
    ]
    lines += [f"- **{f.topic}** ({f.verdict}): {f.statement}" for f in b.findings]
    return lines
