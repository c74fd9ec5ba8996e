"""Gates for CI: thresholds a recorded run must meet (`lab report --check FILE.yaml`).

The file (every key optional, nothing else allowed):

    phases:                      # seconds from the cluster's first phase (the report's phase table)
      bmh_provisioned: {p50: 60, p90: 120, p99: 150, max: 180}
    wall_seconds: 600            # run start -> last cluster done
    slo: true                    # clusterloader2's p99 limits (mutating/read 1 s, list 30 s); false: off
    # slo: {mutating: 2, list: 60}   custom limits, the others keep clusterloader2's
    components:                  # a component's largest sample (per process for workload apiservers)
      capm3-manager: {rss_mib: 400, cpu_percent: 150}
    residue: 0                   # delete runs: clusters the delete did not see fully gone

Why residue is read from the run and not from the world: a report reads records only, and after a
delete every trace lab removes (namespace, etcd tenant, workload apiserver) is a phase of the run
(lab.phases), so a cluster that never reached `apiserver_stopped` is exactly one with something
left. lab.clusters.residue, which looks at the world, needs the running stack.

Strict on purpose: a gate that silently checks nothing (a misspelt phase, `p95`, a string for a
number) is worse than none, so any unknown key, phase or wrong type is a GateError before anything
is checked. Pure: the caller reads the file and prints.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from lab.phases import PHASES, Phase, RunKind
from lab.records import Sample
from lab.report import SLO_SECONDS, Report, component_group

STATS = ("p50", "p90", "p99", "max")
RESOURCES = ("rss_mib", "cpu_percent")
TOP_KEYS = ("phases", "wall_seconds", "slo", "components", "residue")


class GateError(ValueError):
    """The gates file is unreadable as gates: one line saying where."""


@dataclass(frozen=True)
class Gates:
    phases: dict[str, dict[str, float]] = field(default_factory=dict)
    wall_seconds: float | None = None
    slo: dict[str, float] | None = None  # None: SLOs not checked
    components: dict[str, dict[str, float]] = field(default_factory=dict)
    residue: int | None = None

    @property
    def count(self) -> int:
        """How many thresholds the file sets."""
        return (
            sum(len(v) for v in self.phases.values())
            + (self.wall_seconds is not None)
            + (len(self.slo) if self.slo is not None else 0)
            + sum(len(v) for v in self.components.values())
            + (self.residue is not None)
        )


def _number(where: str, v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v < 0:
        raise GateError(f"{where}: expected a number >= 0, got {v!r}")
    return float(v)


def _mapping(where: str, v: Any) -> Mapping[Any, Any]:
    if not isinstance(v, Mapping):
        raise GateError(f"{where}: expected a mapping, got {type(v).__name__}")
    return v


def _keys(where: str, m: Mapping[Any, Any], allowed: Sequence[str]) -> None:
    for k in m:
        if k not in allowed:
            raise GateError(f"{where}: unknown key {k!r} (allowed: {', '.join(allowed)})")


def _phases(raw: Any, kind: RunKind) -> dict[str, dict[str, float]]:
    phases: dict[str, dict[str, float]] = {}
    valid = {p.value for p in PHASES[kind]}
    for name, limits in _mapping("phases", raw).items():
        if name not in valid:
            other = name in {p.value for p in Phase}
            raise GateError(
                f"phases: {name!r} is not a phase of {kind.value} runs"
                + (f" (a {next(k for k in RunKind if k != kind).value} phase)" if other else "")
                + f"; phases: {', '.join(sorted(valid))}"
            )
        m = _mapping(f"phases.{name}", limits)
        _keys(f"phases.{name}", m, STATS)
        phases[name] = {s: _number(f"phases.{name}.{s}", v) for s, v in m.items()}
    return phases


def _slo_limits(raw: Any) -> dict[str, float] | None:
    if raw is True:
        return dict(SLO_SECONDS)
    if raw is False:
        return None
    if isinstance(raw, Mapping):
        _keys("slo", raw, tuple(SLO_SECONDS))
        return SLO_SECONDS | {k: _number(f"slo.{k}", v) for k, v in raw.items()}
    raise GateError(f"slo: expected true, false or a mapping of call class to seconds, got {raw!r}")


def parse(text: str, kind: RunKind) -> Gates:
    """Gates for a run of `kind` from YAML text; GateError names the first thing wrong."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise GateError(f"not valid YAML{where}: {getattr(e, 'problem', None) or e}") from None
    if doc is None:
        raise GateError("the file sets no gates")
    top = _mapping("top level", doc)
    _keys("top level", top, TOP_KEYS)
    phases = _phases(top.get("phases", {}), kind)
    wall = top.get("wall_seconds")
    slo = _slo_limits(top.get("slo", False))
    components: dict[str, dict[str, float]] = {}
    for name, limits in _mapping("components", top.get("components", {})).items():
        m = _mapping(f"components.{name}", limits)
        _keys(f"components.{name}", m, RESOURCES)
        components[str(name)] = {r: _number(f"components.{name}.{r}", v) for r, v in m.items()}
    residue = top.get("residue")
    if residue is not None:
        if isinstance(residue, bool) or not isinstance(residue, int) or residue < 0:
            raise GateError(f"residue: expected a whole number >= 0, got {residue!r}")
        if kind != RunKind.delete:
            raise GateError("residue: a fact of delete runs; pick a delete run with --run")
    return Gates(
        phases,
        None if wall is None else _number("wall_seconds", wall),
        slo,
        components,
        residue,
    )


def _s(v: float) -> str:
    return f"{v:.1f} s"


def check(gates: Gates, report: Report, samples: Sequence[Sample]) -> list[str]:
    """One line per violation, in the file's order; empty when the run meets every gate."""
    out: list[str] = []
    for p in report.phases:
        for stat, limit in gates.phases.get(p.phase, {}).items():
            got = getattr(p.since_start, stat)
            if got is None:
                out.append(f"phases.{p.phase}.{stat}: no cluster reached {p.phase} (limit {_s(limit)})")
            elif got > limit:
                out.append(f"phases.{p.phase}.{stat}: {_s(got)} > {_s(limit)} ({p.reached} clusters)")
    if gates.wall_seconds is not None:
        out += _wall(gates.wall_seconds, report)
    if gates.slo is not None:
        out += _slo(gates.slo, report)
    out += _components(gates.components, samples)
    if gates.residue is not None and len(report.incomplete) > gates.residue:
        names = ", ".join(i.cluster for i in report.incomplete[:10])
        more = ", ..." if len(report.incomplete) > 10 else ""
        out.append(
            f"residue: {len(report.incomplete)} cluster(s) not fully deleted > {gates.residue} "
            f"({names}{more})"
        )
    return out


def _wall(limit: float, report: Report) -> list[str]:
    if report.wall_seconds is None:
        return [f"wall_seconds: no cluster reached {report.final_phase} (limit {_s(limit)})"]
    if report.done < report.clusters:
        return [
            f"wall_seconds: {report.clusters - report.done} of {report.clusters} clusters never "
            f"reached {report.final_phase} (limit {_s(limit)})"
        ]
    if report.wall_seconds > limit:
        return [f"wall_seconds: {_s(report.wall_seconds)} > {_s(limit)}"]
    return []


def _slo(limits: dict[str, float], report: Report) -> list[str]:
    if report.metrics is None:
        return ["slo: the run has no metric samples to check the SLOs against"]
    out = []
    for row in report.metrics.slo:
        limit = limits[row.call]
        if row.p99 is None:
            continue  # no call of this class: nothing was slow
        if row.beyond_buckets:
            out.append(f"slo.{row.call}: p99 > {row.p99:g} s (beyond the last bucket) > {limit:g} s")
        elif row.p99 > limit:
            out.append(f"slo.{row.call}: p99 {row.p99:.3f} s > {limit:g} s ({row.requests:.0f} calls)")
    return out


def _components(limits: dict[str, dict[str, float]], samples: Sequence[Sample]) -> list[str]:
    peaks: dict[str, tuple[float, float]] = {}
    for s in samples:
        name = component_group(s.component)
        rss, cpu = peaks.get(name, (0.0, 0.0))
        peaks[name] = (max(rss, s.rss_bytes / 2**20), max(cpu, s.cpu_percent))
    out = []
    for name, wanted in limits.items():
        if name not in peaks:
            known = ", ".join(sorted(peaks)) or "none"
            out.append(f"components.{name}: no samples of {name!r} in this run (sampled: {known})")
            continue
        rss, cpu = peaks[name]
        if "rss_mib" in wanted and rss > wanted["rss_mib"]:
            out.append(f"components.{name}.rss_mib: {rss:.0f} MiB > {wanted['rss_mib']:g} MiB")
        if "cpu_percent" in wanted and cpu > wanted["cpu_percent"]:
            out.append(f"components.{name}.cpu_percent: {cpu:.1f} % > {wanted['cpu_percent']:g} %")
    return out
