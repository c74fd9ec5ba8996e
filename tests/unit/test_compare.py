"""lab.compare: the bootstrap noise rule on hand-made runs, then two recorded runs (default and
high tuning, tests/fixtures/runs) and one altered copy, through `lab report --compare`."""

from __future__ import annotations

import json
import random
import sqlite3
import subprocess
from collections.abc import Callable

import pytest
from support import runs

from lab import compare, config
from lab.phases import PHASES, RunKind
from lab.records import Event, Run, Sample

T0 = 1_700_000_000.0
CREATE = PHASES[RunKind.create]


def _data(
    run_id: int, bmh: list[float], kind: RunKind = RunKind.create, rss: float = 100.0
) -> compare.RunData:
    events = []
    for i, t in enumerate(bmh, start=1):
        events += [
            Event(f"test-{i}", i, p, T0 + (0 if k == 0 else t + k)) for k, p in enumerate(PHASES[kind])
        ]
    samples = [Sample(T0 + 500 + k, "capi-manager", int((rss + k % 3) * 2**20), 1.0) for k in range(9)]
    run = Run(run_id, kind, T0, T0 + 600, "ok", ["lab"], {"tuning": "default"}, {})
    return compare.RunData(run, events, samples, [])


def _row(c: compare.Comparison, figure: str) -> compare.Row:
    return next(r for r in c.rows if r.figure == figure)


def test_spread_needs_two_units_and_is_zero_for_identical_ones() -> None:
    rng = random.Random(0)
    assert compare.spread([5.0], max, 100, rng) is None
    assert compare.spread([5.0, 5.0, 5.0], max, 100, rng) == 0
    assert compare.spread([1.0, 9.0], max, 500, rng) == pytest.approx(
        3.5, abs=0.5
    )  # max is 9 3/4 of the time


def test_a_shift_far_beyond_the_spread_exceeds_and_one_inside_does_not() -> None:
    base = [40.0, 41.0, 42.0, 43.0, 44.0, 45.0]
    c = compare.compare(_data(1, base), _data(2, [b + 20 for b in base], rss=101))
    p50 = _row(c, "bmh_provisioned p50")
    assert (p50.a, p50.b, p50.delta) == (43.5, 63.5, 20.0)
    assert p50.delta_percent == pytest.approx(20 / 43.5 * 100)
    assert p50.noise is not None and p50.noise < 5 and p50.exceeds is True
    rss = _row(c, "capi-manager RSS (median)")  # 101 vs 100 MiB with samples spread 0..2 MiB
    assert rss.delta == pytest.approx(1.0) and rss.exceeds is False
    assert not [r for r in c.rows if r.figure.startswith("applied ")]  # the origin is always 0
    # the verdict is reproducible: same data, same seed
    assert compare.compare(_data(1, base), _data(2, [b + 20 for b in base], rss=101)) == c


def test_one_cluster_runs_have_no_verdict_and_kinds_must_match() -> None:
    c = compare.compare(_data(1, [40.0]), _data(2, [80.0]))
    row = _row(c, "bmh_provisioned p50")
    assert row.delta == 40 and row.noise is None and row.exceeds is None
    assert "| bmh_provisioned p50 | s | 41 | 81 | 40 | +98 % | - | ? |" in compare.to_markdown(c)
    with pytest.raises(compare.CompareError, match="run 1 is a create run and run 2 a delete run"):
        compare.compare(_data(1, [1.0]), _data(2, [1.0], RunKind.delete))


# --- recorded runs, through the CLI -------------------------------------------------------------


@pytest.fixture
def recorded(lab_env: dict[str, str]) -> dict[str, str]:
    runs.load(runs.SMALL, config.load().db_path)
    return lab_env


def test_compare_recorded_default_and_high(
    recorded: dict[str, str], run_lab: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    res = run_lab("report", "--compare", str(runs.CREATE_DEFAULT), str(runs.CREATE_HIGH), "--format", "json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert (doc["a"]["tuning"], doc["b"]["tuning"]) == runs.TUNINGS
    rows = {r["figure"]: r for r in doc["rows"]}
    for r in rows.values():
        if r["a"] is not None and r["b"] is not None:
            assert r["delta"] == pytest.approx(r["b"] - r["a"])
    sections = {r["section"] for r in rows.values()}
    assert sections == {"phases", "duration", "components", "bottleneck"}
    md = run_lab("report", "--compare", str(runs.CREATE_DEFAULT), str(runs.CREATE_HIGH))
    assert md.returncode == 0 and "## bottleneck" in md.stdout


def test_compare_with_an_altered_copy(
    recorded: dict[str, str], run_lab: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    """Run B = run A with every phase after `applied` 60 s later (resource samples too, so the idle
    window holds the same samples) and capm3's RSS doubled: those deltas exceed the noise, a figure
    left alone shows delta 0 within it."""
    a = runs.CREATE_DEFAULT
    with sqlite3.connect(config.load().db_path) as db:
        db.execute(
            "INSERT INTO runs (kind, started, finished, status, argv, settings, host)"
            " SELECT kind, started, finished, status, argv, settings, host FROM runs WHERE id = ?",
            (a,),
        )
        b = db.execute("SELECT max(id) FROM runs").fetchone()[0]
        db.execute(
            "INSERT INTO cluster_events SELECT ?, cluster, idx, phase,"
            " ts + CASE WHEN phase = 'applied' THEN 0 ELSE 60 END FROM cluster_events WHERE run_id = ?",
            (b, a),
        )
        db.execute(
            "INSERT INTO samples SELECT ?, ts + 60, component,"
            " rss_bytes * CASE WHEN component = 'capm3-manager' THEN 2 ELSE 1 END, cpu_percent"
            " FROM samples WHERE run_id = ?",
            (b, a),
        )
        db.execute(
            "INSERT INTO metric_samples SELECT ?, ts, component, metric, labels, value"
            " FROM metric_samples WHERE run_id = ?",
            (b, a),
        )
    db.close()
    res = run_lab("report", "--compare", str(a), str(b), "--format", "json")
    assert res.returncode == 0, res.stderr
    rows = {r["figure"]: r for r in json.loads(res.stdout)["rows"]}
    p50 = rows["bmh_provisioned p50"]
    assert p50["delta"] == pytest.approx(60) and p50["exceeds"] is True
    rss = rows["capm3-manager RSS (median)"]
    assert rss["delta_percent"] == pytest.approx(100) and rss["exceeds"] is True
    slo = rows["slo_p99:mutating (apiserver_request_duration_seconds_bucket)"]
    assert slo["delta"] == 0 and slo["exceeds"] is False
    res = run_lab("report", "--compare", str(a), str(runs.DELETE_DEFAULT))
    assert res.returncode == 2 and res.stderr.startswith(f"error: run {a} is a create run and run")
    res = run_lab("report", "--compare", str(a), "99")
    assert res.returncode == 1 and res.stderr.startswith("error: no run 99 in")
    res = run_lab("report", "--compare", str(a), str(b), "--run", "1")
    assert res.returncode == 2 and "drop --run" in res.stderr
