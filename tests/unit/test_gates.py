"""lab.gates: strict parsing, each kind of violation line, and `lab report --check` exit codes on a
recorded run (tests/fixtures/runs)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from support import runs

from lab import config, gates, report
from lab.phases import PHASES, RunKind
from lab.records import Event, Run, Sample

T0 = 1_700_000_000.0


def _report(kind: RunKind, done: int = 2, total: int = 2) -> report.Report:
    phases = PHASES[kind]
    events = []
    for i in range(1, total + 1):
        upto = len(phases) if i <= done else 2
        events += [Event(f"test-{i}", i, p, T0 + k * 10 * i) for k, p in enumerate(phases[:upto])]
    run = Run(1, kind, T0, T0 + 300, "ok", ["lab"], {}, {})
    return report.build(run, events)


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (
            "phases: {bmh_provisioned: {p95: 1}}",
            "phases.bmh_provisioned: unknown key 'p95' (allowed: p50, p90, p99, max)",
        ),
        (
            "phases: {bmh_provisioned: {p90: fast}}",
            "phases.bmh_provisioned.p90: expected a number >= 0, got 'fast'",
        ),
        ("phases: {bmh_provisoned: {p90: 1}}", "phases: 'bmh_provisoned' is not a phase of create runs;"),
        (
            "phases: {machines_deleted: {p90: 1}}",
            "phases: 'machines_deleted' is not a phase of create runs (a delete phase)",
        ),
        (
            "phase: {}",
            "top level: unknown key 'phase' (allowed: phases, wall_seconds, slo, components, residue)",
        ),
        ("slo: {mutating: 1, watch: 2}", "slo: unknown key 'watch'"),
        ("slo: yes please", "slo: expected true, false or a mapping"),
        ("components: {capi-manager: {rss: 1}}", "components.capi-manager: unknown key 'rss'"),
        ("wall_seconds: .nan", "wall_seconds: expected a number >= 0, got nan"),
        ("residue: 0", "residue: a fact of delete runs"),
        ("- phases", "top level: expected a mapping, got list"),
        ("phases: {a: [1", "not valid YAML at line 1"),
        ("", "the file sets no gates"),
    ],
)
def test_malformed_gates_are_one_error(text: str, error: str) -> None:
    with pytest.raises(gates.GateError) as e:
        gates.parse(text, RunKind.create)
    assert str(e.value).startswith(error)


def test_every_kind_of_violation_line() -> None:
    r = _report(RunKind.delete, done=1, total=2)
    g = gates.parse(
        """
phases: {machines_deleted: {p50: 5, max: 100}, apiserver_stopped: {p90: 1}}
wall_seconds: 10
slo: true
components: {capi-manager: {rss_mib: 50, cpu_percent: 10}, bmo-manager: {cpu_percent: 1}}
residue: 0
""",
        RunKind.delete,
    )
    assert g.count == 11  # slo: true is three limits
    samples = [Sample(T0, "capi-manager", 60 * 2**20, 5.0), Sample(T0 + 5, "capi-manager", 10, 12.5)]
    assert gates.check(g, r, samples) == [
        "phases.machines_deleted.p50: 15.0 s > 5.0 s (2 clusters)",
        "phases.apiserver_stopped.p90: 50.0 s > 1.0 s (1 clusters)",
        "wall_seconds: 1 of 2 clusters never reached apiserver_stopped (limit 10.0 s)",
        "slo: the run has no metric samples to check the SLOs against",
        "components.capi-manager.rss_mib: 60 MiB > 50 MiB",
        "components.capi-manager.cpu_percent: 12.5 % > 10 %",
        "components.bmo-manager: no samples of 'bmo-manager' in this run (sampled: capi-manager)",
        "residue: 1 cluster(s) not fully deleted > 0 (test-2)",
    ]


def test_gates_that_pass_are_silent_and_slo_off_checks_nothing() -> None:
    r = _report(RunKind.create)
    g = gates.parse("phases: {cluster_available: {max: 120}}\nslo: false\nwall_seconds: 120", RunKind.create)
    assert g.slo is None and g.count == 2
    assert gates.check(g, r, []) == []


# --- through the CLI, on a recorded run ---------------------------------------------------------


@pytest.fixture
def recorded(lab_env: dict[str, str]) -> dict[str, str]:
    runs.load(runs.SMALL, config.load().db_path)
    return lab_env


def _check(run_lab: Callable[..., subprocess.CompletedProcess[str]], path: Path, text: str, *args: str):
    path.write_text(text)
    return run_lab("report", "--check", str(path), *args)
