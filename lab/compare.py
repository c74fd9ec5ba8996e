"""Two recorded runs side by side (`lab report --compare A B`): every figure of A and B, the delta
(absolute and %), and whether the delta exceeds the run-to-run noise.

The noise rule. Every figure is a statistic of units the run recorded: a phase percentile of the
clusters' latencies, the wall time of the clusters' done times (its max), a component's median of
its resource samples, a bottleneck figure of its scrape intervals (queue item-seconds per
interval, request rate per interval, apiserver bucket increases per interval; lab.bottleneck's
Measures). For each run the figure is recomputed on BOOTSTRAP_DRAWS resamples (with replacement,
seeded: the same data gives the same verdict) of its units; the standard deviation of those is the
run's noise s. A delta exceeds the noise when |B - A| > 2 * sqrt(s_A^2 + s_B^2), about a 95 %
two-sided band if the two estimates were normal. With fewer than two units in either run there is
no spread to resample and the verdict is unknown (None), never a guess. This treats clusters and
scrape intervals as independent draws; they are not quite (clusters of one batch share the queue),
so the band is if anything narrow: repeat runs (`lab bench --repeat`) where a verdict matters.

Pure: no I/O, nothing printed.
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from lab import bottleneck, report
from lab.phases import PHASES
from lab.records import Event, MetricSample, Run, Sample

BOOTSTRAP_DRAWS = 1000
#: |delta| beyond this many combined standard deviations exceeds the noise
NOISE_SIGMAS = 2.0


class CompareError(ValueError):
    """The two runs cannot be compared (one line)."""


@dataclass(frozen=True)
class RunData:
    run: Run
    events: Sequence[Event]
    samples: Sequence[Sample]
    metric_samples: Sequence[MetricSample]


@dataclass(frozen=True)
class Row:
    section: str  # phases / duration / components / bottleneck
    figure: str
    unit: str
    a: float | None
    b: float | None
    delta: float | None
    delta_percent: float | None
    noise: float | None  # NOISE_SIGMAS * sqrt(s_A^2 + s_B^2)
    exceeds: bool | None  # None: not enough units to know


@dataclass(frozen=True)
class Comparison:
    a: dict[str, Any]
    b: dict[str, Any]
    rows: list[Row]

    def as_dict(self) -> dict[str, Any]:
        return {"a": self.a, "b": self.b, "rows": [asdict(r) for r in self.rows]}


Stat = Callable[[Sequence[Any]], float | None]


def spread(units: Sequence[Any], stat: Stat, draws: int, rng: random.Random) -> float | None:
    """The bootstrap standard deviation of stat over units; None with fewer than two units."""
    if len(units) < 2:
        return None
    values = []
    for _ in range(draws):
        v = stat([units[rng.randrange(len(units))] for _u in units])
        if v is not None:
            values.append(v)
    return statistics.pstdev(values) if len(values) > 1 else None


@dataclass(frozen=True)
class _Measure:
    section: str
    figure: str
    unit: str
    value: float | None
    units: list[Any]
    stat: Stat


def _percentile(q: float) -> Stat:
    return lambda u: report.percentile(u, q)


def _median(u: Sequence[float]) -> float | None:
    return float(statistics.median(u)) if u else None


def _max(u: Sequence[float]) -> float | None:
    return max(u) if u else None


def measures(d: RunData) -> dict[str, _Measure]:
    """Every figure of one run, by name."""
    model = report.build(d.run, d.events, d.samples)
    out: dict[str, _Measure] = {}
    lat = report.latencies(d.run.kind, d.events)
    first = PHASES[d.run.kind][0].value  # every latency's origin: always 0
    for phase, values in lat.items():
        if not values or phase == first:
            continue
        for q, name in ((50, "p50"), (90, "p90"), (99, "p99")):
            out[f"{phase} {name}"] = _Measure(
                "phases", f"{phase} {name}", "s", report.percentile(values, q), values, _percentile(q)
            )
        out[f"{phase} max"] = _Measure("phases", f"{phase} max", "s", max(values), values, _max)
    if model.timeline:
        t = model.timeline
        out["wall"] = _Measure("duration", "wall (run start to last done)", "s", max(t), t, _max)
        out["rate"] = _Measure(
            "duration",
            "clusters done per minute",
            "1/min",
            model.clusters_per_minute,
            t,
            lambda u: len(u) / (max(u) / 60) if u and max(u) > 0 else None,
        )
    last_done = d.run.started + model.wall_seconds if model.wall_seconds is not None else None
    groups: dict[str, list[Sample]] = {}
    for s in d.samples:
        groups.setdefault(report.component_group(s.component), []).append(s)
    for name, every in sorted(groups.items()):
        idle = [s for s in every if last_done is not None and s.ts > last_done]
        use = idle or every
        rss = [s.rss_bytes / 2**20 for s in use]
        cpu = [s.cpu_percent for s in use]
        out[f"{name} rss"] = _Measure("components", f"{name} RSS (median)", "MiB", _median(rss), rss, _median)
        out[f"{name} cpu"] = _Measure(
            "components", f"{name} CPU (median)", "% of a core", _median(cpu), cpu, _median
        )
    b = bottleneck.analyse(d.run, d.events, d.metric_samples)
    for m in b.measures:
        f = m.figure
        out[f"bn {f.key}"] = _Measure("bottleneck", f"{f.key} ({f.metric})", f.unit, f.value, m.units, m.stat)
    return out


def _info(d: RunData) -> dict[str, Any]:
    return {
        "id": d.run.id,
        "kind": d.run.kind.value,
        "status": d.run.status or "running",
        "tuning": d.run.settings.get("tuning"),
        "clusters": len({e.cluster for e in d.events}),
    }


def compare(a: RunData, b: RunData, draws: int = BOOTSTRAP_DRAWS, seed: int = 0) -> Comparison:
    """Rows for every figure either run has (bottleneck figures only when one of them is not 0)."""
    if a.run.kind != b.run.kind:
        raise CompareError(
            f"run {a.run.id} is a {a.run.kind.value} run and run {b.run.id} a {b.run.kind.value} run: "
            "compare runs of one kind"
        )
    ma, mb = measures(a), measures(b)
    rng = random.Random(seed)
    rows = []
    for key in [*ma, *(k for k in mb if k not in ma)]:
        x, y = ma.get(key), mb.get(key)
        m = x or y
        assert m is not None
        va, vb = x.value if x else None, y.value if y else None
        if m.section == "bottleneck" and not (va or vb):
            continue
        delta = vb - va if va is not None and vb is not None else None
        pct = 100 * delta / va if delta is not None and va else None
        sa = spread(x.units, x.stat, draws, rng) if x else None
        sb = spread(y.units, y.stat, draws, rng) if y else None
        noise = NOISE_SIGMAS * math.hypot(sa, sb) if sa is not None and sb is not None else None
        exceeds = abs(delta) > noise if delta is not None and noise is not None else None
        rows.append(Row(m.section, m.figure, m.unit, va, vb, delta, pct, noise, exceeds))
    return Comparison(_info(a), _info(b), rows)


def _f(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.3g}" if abs(v) < 10 else f"{v:.0f}"


def to_markdown(c: Comparison) -> str:
    def head(x: dict[str, Any]) -> str:
        return f"run {x['id']} ({x['kind']}, {x['status']}, tuning {x['tuning'] or 'not recorded'}, {x['clusters']} clusters)"

    lines = [
        f"# lab compare: A = {head(c.a)}, B = {head(c.b)}",
        "",
        f"Noise: {NOISE_SIGMAS:g} x the combined bootstrap standard deviation of each figure over its "
        "clusters, samples or scrape intervals (lab.compare); `?`: too few to tell.",
    ]
    for section in ("phases", "duration", "components", "bottleneck"):
        rows = [r for r in c.rows if r.section == section]
        if not rows:
            continue
        lines += ["", f"## {section}", ""]
        lines += report._table(
            ["figure", "unit", "A", "B", "delta", "delta %", "noise (+/-)", "beyond noise"],
            [
                [
                    r.figure,
                    r.unit,
                    _f(r.a),
                    _f(r.b),
                    _f(r.delta),
                    "-" if r.delta_percent is None else f"{r.delta_percent:+.0f} %",
                    _f(r.noise),
                    "?" if r.exceeds is None else ("YES" if r.exceeds else "no"),
                ]
                for r in rows
            ],
        )
    return "\n".join(lines) + "\n"
