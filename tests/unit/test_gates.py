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


FAILING = """
phases:
  bmh_provisioned: {p50: 1, p90: 1000}
  cluster_available: {max: 10}
wall_seconds: 10
slo: {mutating: 0.1}
components:
  capm3-manager: {rss_mib: 10, cpu_percent: 1000}
"""


def test_check_fails_with_one_line_per_violation(
    recorded: dict[str, str], run_lab: Callable[..., subprocess.CompletedProcess[str]], tmp_path: Path
) -> None:
    res = _check(run_lab, tmp_path / "g.yaml", FAILING, "--run", str(runs.CREATE_DEFAULT))
    assert res.returncode == 1, res.stderr
    assert res.stdout.splitlines() == [
        "phases.bmh_provisioned.p50: 15.1 s > 1.0 s (3 clusters)",
        "phases.cluster_available.max: 26.8 s > 10.0 s (3 clusters)",
        "wall_seconds: 50.4 s > 10.0 s",
        "slo.mutating: p99 0.540 s > 0.1 s (718 calls)",
        "components.capm3-manager.rss_mib: 68 MiB > 10 MiB",
    ]
    # clusterloader2's own limits: run 4 (delete, high) breached the mutating one; nothing is left
    res = _check(run_lab, tmp_path / "g.yaml", "slo: true\nresidue: 0\n", "--run", str(runs.DELETE_HIGH))
    assert (res.returncode, res.stdout) == (1, "slo.mutating: p99 1.257 s > 1 s (1388 calls)\n")


def test_check_passes_with_exit_0(
    recorded: dict[str, str], run_lab: Callable[..., subprocess.CompletedProcess[str]], tmp_path: Path
) -> None:
    passing = "phases: {bmh_provisioned: {p50: 60, p90: 120}, cluster_available: {p99: 120, max: 120}}\n"
    passing += "wall_seconds: 120\nslo: true\ncomponents: {capm3-manager: {rss_mib: 400, cpu_percent: 200}}\n"
    res = _check(run_lab, tmp_path / "g.yaml", passing, "--run", str(runs.CREATE_DEFAULT))
    assert (res.returncode, res.stdout) == (0, ""), res.stderr
    assert "all 10 gates" in res.stderr
    res = _check(run_lab, tmp_path / "g.yaml", "slo: true\nresidue: 0\n", "--run", str(runs.DELETE_DEFAULT))
    assert (res.returncode, res.stdout) == (0, ""), res.stderr


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("phases: {bmh_provisioned: {p95: 1}}", "phases.bmh_provisioned: unknown key 'p95'"),
        (
            "phases: {bmh_provisioned: {p90: '120'}}",
            "phases.bmh_provisioned.p90: expected a number >= 0, got '120'",
        ),
        ("phases: {bmh_provisoned: {p90: 1}}", "phases: 'bmh_provisoned' is not a phase of create runs"),
        ("{{", "not valid YAML at line 1"),
        ("residue: 0", "residue: a fact of delete runs"),
    ],
)
def test_malformed_file_is_one_error_line_exit_2(
    recorded: dict[str, str],
    run_lab: Callable[..., subprocess.CompletedProcess[str]],
    tmp_path: Path,
    text: str,
    error: str,
) -> None:
    path = tmp_path / "g.yaml"
    res = _check(run_lab, path, text, "--run", str(runs.CREATE_DEFAULT))
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.startswith(f"error: {path}: {error}") and len(res.stderr.splitlines()) == 1


def test_unreadable_file_is_exit_2(
    recorded: dict[str, str], run_lab: Callable[..., subprocess.CompletedProcess[str]], tmp_path: Path
) -> None:
    res = run_lab("report", "--check", str(tmp_path / "none.yaml"))
    assert res.returncode == 2
    assert (
        res.stderr == f"error: cannot read gates file {tmp_path / 'none.yaml'}: No such file or directory\n"
    )
    (tmp_path / "bin.yaml").write_bytes(b"\xff\xfe\x00")
    res = run_lab("report", "--check", str(tmp_path / "bin.yaml"))
    assert res.returncode == 2 and res.stderr.startswith("error: cannot read gates file")
