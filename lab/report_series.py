"""Time series of a run for the report's plots: each component's RSS and CPU, and the Prometheus
metrics that show where a run waited (queue depth per controller, apiserver inflight and queued
requests, etcd db size, API requests per second per client).

They are part of the report model, so `lab report --format json` carries every point the HTML
report plots. Times are seconds from the run start. A long run is thinned to MAX_POINTS per line,
keeping each window's highest value: a queue that spiked between two kept points still shows.
"""

from __future__ import annotations

import itertools
import math
import re
import statistics
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from lab.metrics import parse_labels
from lab.records import MetricSample, Sample

#: Points per line: 600 keeps a 100-cluster run (~30 min at the 5 s sampling interval: ~360
#: points) whole and bounds a day-long one; a plot 1000 pixels wide shows no more.
MAX_POINTS = 600
#: Lines per chart: the busiest ones (highest peak). A manager has up to ~20 controllers and a plot
#: with more than ~10 lines cannot be read; the tables list every controller.
MAX_LINES = 10


@dataclass(frozen=True)
class Line:
    label: str
    t: list[float]  # seconds from the run start
    v: list[float]


@dataclass(frozen=True)
class Chart:
    key: str  # stable name, e.g. "workqueue_depth:capi-manager"
    title: str
    unit: str  # what the y axis counts
    lines: list[Line]


def thin(t: Sequence[float], v: Sequence[float], n: int = MAX_POINTS) -> tuple[list[float], list[float]]:
    """At most about `n` points: the first time of each window with the window's highest value."""
    if len(t) <= n:
        return list(t), list(v)
    step = math.ceil(len(t) / n)
    return list(t[::step]), [max(v[i : i + step]) for i in range(0, len(v), step)]


def _line(label: str, points: Sequence[tuple[float, float]], origin: float) -> Line:
    ordered = sorted(points)
    # 10 ms and 4 decimals: finer than any plot shows, and a third of the JSON's digits
    t, v = thin([round(ts - origin, 2) for ts, _ in ordered], [round(val, 4) for _, val in ordered])
    return Line(label, t, v)


def _busiest(lines: list[Line]) -> list[Line]:
    """Lines that are ever above zero, highest peak first, at most MAX_LINES."""
    moving = [ln for ln in lines if ln.v and max(ln.v) > 0]
    return sorted(moving, key=lambda ln: (-max(ln.v), ln.label))[:MAX_LINES]


def resource_charts(samples: Sequence[Sample], origin: float, group: Callable[[str], str]) -> list[Chart]:
    """RSS (MiB) and CPU (% of a core) per component; grouped components (one per workload
    cluster) are one line, the median of their processes at each tick."""
    rss: dict[str, dict[float, list[float]]] = defaultdict(lambda: defaultdict(list))
    cpu: dict[str, dict[float, list[float]]] = defaultdict(lambda: defaultdict(list))
    for s in samples:
        g = group(s.component)
        rss[g][s.ts].append(s.rss_bytes / 2**20)
        cpu[g][s.ts].append(s.cpu_percent)

    def lines(per: dict[str, dict[float, list[float]]]) -> list[Line]:
        return [
            _line(c, [(ts, statistics.median(vals)) for ts, vals in by_ts.items()], origin)
            for c, by_ts in sorted(per.items())
        ]

    if not samples:
        return []
    return [
        Chart("rss", "RSS per component (median per process)", "MiB", lines(rss)),
        Chart("cpu", "CPU per component (median per process)", "% of a core", lines(cpu)),
    ]


def _rate(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """Per-second increase of a counter between samples; a drop is a restart from zero."""
    out = []
    for (t0, v0), (t1, v1) in itertools.pairwise(sorted(points)):
        if t1 > t0:
            out.append((t1, (v1 - v0 if v1 >= v0 else v1) / (t1 - t0)))
    return out


#: Gauges plotted per component: (metric, the label a line stands for, key, title, unit)
GAUGE_CHARTS = (
    ("workqueue_depth", "name", "workqueue_depth", "workqueue depth per controller", "items"),
    ("apiserver_current_inflight_requests", "request_kind", "inflight", "inflight requests", "requests"),
    (
        "apiserver_flowcontrol_current_inqueue_requests",
        "priority_level",
        "apf_queued",
        "requests queued by priority level",
        "requests",
    ),
)

Points = dict[tuple[str, str, str], list[tuple[float, float]]]


def slug(name: str) -> str:
    """A component's name as it may stand in a chart key (and an HTML id): no spaces or brackets."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-")


def _gauges(by: Points, origin: float) -> list[Chart]:
    charts = []
    for metric, label, key, title, unit in GAUGE_CHARTS:
        per: dict[str, list[Line]] = defaultdict(list)
        for (c, m, lab), pts in sorted(by.items()):
            if m == metric:
                per[c].append(_line(parse_labels(lab).get(label, "") or m, pts, origin))
        charts += [
            Chart(f"{key}:{slug(c)}", f"{c}: {title}", unit, lines) for c, lines in sorted(per.items())
        ]
    return charts


def metric_charts(
    samples: Sequence[MetricSample], origin: float, group: Callable[[str], str] = lambda c: c
) -> list[Chart]:
    """The metric plots, one chart per (kind, component) that has a line above zero. Components of
    one group (a workload apiserver per cluster) are one, summed at each tick (a tick has one
    time for every component): a hundred charts of one cluster each tell less."""
    summed: dict[tuple[str, str, str], dict[float, float]] = defaultdict(lambda: defaultdict(float))
    members: dict[str, set[str]] = defaultdict(set)
    for s in samples:
        g = group(s.component)
        members[g].add(s.component)
        summed[(g, s.metric, s.labels)][s.ts] += s.value
    names = {g: f"{g}, sum of {len(m)}" if len(m) > 1 else g for g, m in members.items()}
    by: Points = {(names[g], m, lab): list(v.items()) for (g, m, lab), v in summed.items()}
    charts = _gauges(by, origin)
    etcd = [
        _line(c, [(ts, v / 2**20) for ts, v in pts], origin)
        for (c, m, _lab), pts in sorted(by.items())
        if m == "etcd_mvcc_db_total_size_in_bytes"
    ]
    charts.append(Chart("etcd_db_size", "etcd db size", "MiB", etcd))
    # client-go requests per second per component, summed over methods
    sent: dict[str, dict[float, float]] = defaultdict(lambda: defaultdict(float))
    for (c, m, _lab), pts in by.items():
        if m == "rest_client_requests_total":
            for ts, rate in _rate(pts):
                sent[c][ts] += rate
    clients = [_line(c, list(pts.items()), origin) for c, pts in sorted(sent.items())]
    charts.append(Chart("client_requests", "API requests sent per second (client-go)", "requests/s", clients))
    out = []
    for ch in charts:
        lines = _busiest(ch.lines)
        if lines:
            out.append(Chart(ch.key, ch.title, ch.unit, lines))
    return out


def charts(
    samples: Sequence[Sample],
    metric_samples: Sequence[MetricSample],
    origin: float,
    group: Callable[[str], str] = lambda c: c,
) -> list[Chart]:
    """Every chart of a run: resources first, then metrics."""
    return [*resource_charts(samples, origin, group), *metric_charts(metric_samples, origin, group)]
