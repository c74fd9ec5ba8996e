"""lab.records against a real SQLite file in a tmp lab home, and the sampler against real processes."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from lab import config, phases, records
from lab.errors import LabError
from lab.phases import PHASES, PREVIOUS, Phase, RunKind
from lab.records import Records


@pytest.fixture
def db(tmp_path: Path) -> Records:
    with Records(tmp_path / "records.sqlite") as r:
        yield r


def test_phases_are_listed_once_in_lifecycle_order_and_each_waits_for_an_earlier_one() -> None:
    assert [p for ps in PHASES.values() for p in ps] == list(Phase)
    for kind, order in PHASES.items():
        assert order[0] not in PREVIOUS
        for phase in order[1:]:
            assert order.index(PREVIOUS[phase]) < order.index(phase)
            assert phases.run_kind(phase) == kind


def test_run_lifecycle_and_snapshot(db: Records, lab_env: dict[str, str]) -> None:
    settings = config.load()
    snap = records.settings_snapshot(settings, tuning="seed", parallel=8)
    rid = db.start_run(RunKind.create, ["lab", "create-clusters", "3"], snap, started=1000.0)
    run = db.run(rid)
    assert (run.kind, run.started, run.finished, run.status) == (RunKind.create, 1000.0, None, None)
    assert run.settings["versions"]["capi"] == settings.versions.capi
    assert run.settings["tuning"] == "seed" and run.settings["parallel"] == 8
    assert run.host["cores"] >= 1 and run.host["memory_bytes"] > 0
    db.finish_run(rid, "timeout", finished=1100.0)
    assert (db.run(rid).finished, db.run(rid).status) == (1100.0, "timeout")
    with pytest.raises(LabError, match="no run 99"):
        db.finish_run(99)


def _scoped(db: Records, body: Callable[[records.RunScope], None]) -> records.Run:
    """Runs `body` in a RunScope (re-raising what it raises) and returns the run it recorded."""
    try:
        with records.RunScope(db, RunKind.create_hosts, ["lab", "create-hosts", "2"], {"count": 2}) as run:
            assert db.run(run.id).status is None and db.run(run.id).finished is None  # open while running
            body(run)
    finally:
        recorded = db.run()
    return recorded


def _timed_out(run: records.RunScope) -> None:
    run.timed_out = True


def _ctrl_c(_run: records.RunScope) -> None:
    raise KeyboardInterrupt


def _lab_error(_run: records.RunScope) -> None:
    raise LabError("the stack went away")


def _bug(_run: records.RunScope) -> None:
    raise ZeroDivisionError


def test_a_run_scope_finishes_its_run_with_how_the_command_ended(db: Records) -> None:
    before = time.time()
    ok = _scoped(db, lambda _run: None)
    assert (ok.kind, ok.status, ok.argv, ok.settings) == (
        RunKind.create_hosts,
        "ok",
        ["lab", "create-hosts", "2"],
        {"count": 2},
    )
    assert ok.finished is not None and before <= ok.started <= ok.finished <= time.time()
    assert _scoped(db, _timed_out).status == "timeout"
    with pytest.raises(KeyboardInterrupt):
        _scoped(db, _ctrl_c)
    assert (db.run().status, db.run().finished is not None) == ("interrupted", True)
    with pytest.raises(LabError, match="the stack went away"):
        _scoped(db, _lab_error)
    assert (db.run().status, db.run().finished is not None) == ("failed", True)
    with pytest.raises(ZeroDivisionError):
        _scoped(db, _bug)
    assert (db.run().status, db.run().finished is not None) == ("failed", True)
    assert [r.status for r in db.runs()] == ["ok", "timeout", "interrupted", "failed", "failed"]


def test_latest_run_and_unknown_run(db: Records) -> None:
    with pytest.raises(LabError, match="no runs"):
        db.run()
    a = db.start_run("create", [], {})
    b = db.start_run("delete", [], {})
    assert [r.id for r in db.runs()] == [a, b]
    assert db.run().id == b and db.run().kind == RunKind.delete
    with pytest.raises(LabError, match=f"no run {b + 1}"):
        db.run(b + 1)


def test_first_timestamp_wins_and_runs_are_separate(db: Records) -> None:
    r1 = db.start_run("create", [], {})
    r2 = db.start_run("create", [], {})
    assert db.record(r1, "test-1", 1, Phase.applied, 10.0) is True
    assert db.record(r1, "test-1", 1, "applied", 20.0) is False
    assert db.record(r2, "test-1", 1, Phase.applied, 30.0) is True
    assert db.record_many(r1, [("test-1", 1, Phase.applied, 5.0), ("test-2", 2, Phase.applied, 11.0)]) == 1
    assert [(e.cluster, e.phase, e.ts) for e in db.events(r1)] == [
        ("test-1", Phase.applied, 10.0),
        ("test-2", Phase.applied, 11.0),
    ]
    assert [e.ts for e in db.events(r2)] == [30.0]


def test_unknown_phase_is_refused(db: Records) -> None:
    rid = db.start_run("create", [], {})
    with pytest.raises(ValueError):
        db.record(rid, "test-1", 1, "booted")
    assert db.events(rid) == []


def test_records_survive_reopen_and_are_readable_by_another_connection(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite"
    with Records(path) as db:
        rid = db.start_run("create", ["x"], {})
        db.record(rid, "test-1", 1, Phase.applied, 1.0)
        # a second process's reader (lab report during a run) sees committed rows while we hold ours open
        other = sqlite3.connect(path)
        assert other.execute("SELECT count(*) FROM cluster_events").fetchone()[0] == 1
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        other.close()
    with Records(path, create=False) as db:
        assert [e.cluster for e in db.events(rid)] == ["test-1"]


def test_missing_file_is_a_one_line_error_without_creating_it(tmp_path: Path) -> None:
    path = tmp_path / "home" / "records.sqlite"
    with pytest.raises(LabError, match="no runs recorded yet"):
        Records(path, create=False)
    assert not path.exists()


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version=99")
    conn.close()
    with pytest.raises(LabError, match="newer lab"):
        Records(path)


def test_concurrent_writers_lose_nothing(db: Records) -> None:
    rid = db.start_run("create", [], {})

    def write(t: int) -> None:
        for i in range(50):
            db.record(rid, f"test-{t * 100 + i}", t * 100 + i, Phase.applied)
            db.sample(rid, f"c{t}", 1, 0.0)

    threads = [threading.Thread(target=write, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(db.events(rid)) == 200
    assert len(db.samples(rid)) == 200


def test_sampler_samples_real_processes_and_skips_dead_ones(db: Records) -> None:
    rid = db.start_run("create", [], {})
    # a busy child: its CPU must show up; a second child that exits: it must just disappear
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    short = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.3)"])
    try:
        with records.Sampler(
            db, rid, lambda: {"busy": busy.pid, "short": short.pid, "ghost": 2**22 + 7}, 0.2
        ):
            short.wait(timeout=10)
            time.sleep(1.2)
    finally:
        busy.kill()
        busy.wait()
    samples = db.samples(rid)
    busy_samples = [s for s in samples if s.component == "busy"]
    assert len(busy_samples) >= 3
    assert all(s.rss_bytes > 1_000_000 for s in busy_samples)
    # > 0, not a share: at load 51 on 2 cores the busy loop got a few percent of one
    assert max(s.cpu_percent for s in busy_samples) > 0
    assert {s.component for s in samples} <= {"busy", "short"}
    assert all(s.ts > db.run(rid).started for s in samples)


def test_a_schema_2_file_takes_host_runs_and_keeps_its_runs(tmp_path: Path) -> None:
    """Files written before create-hosts had a CHECK on runs.kind; opening one rebuilds the table
    without it, ids, events and samples kept."""
    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript(
        """
        CREATE TABLE runs (id INTEGER PRIMARY KEY AUTOINCREMENT,
            kind TEXT NOT NULL CHECK (kind IN ('create', 'delete')), started REAL NOT NULL,
            finished REAL, status TEXT, argv TEXT NOT NULL, settings TEXT NOT NULL, host TEXT NOT NULL);
        CREATE TABLE cluster_events (run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            cluster TEXT NOT NULL, idx INTEGER NOT NULL, phase TEXT NOT NULL, ts REAL NOT NULL,
            PRIMARY KEY (run_id, cluster, phase)) WITHOUT ROWID;
        INSERT INTO runs VALUES (7, 'create', 1.0, 2.0, 'ok', '[]', '{}', '{}');
        INSERT INTO cluster_events VALUES (7, 'test-1', 1, 'applied', 1.5);
        PRAGMA user_version=2;
        """
    )
    conn.close()
    with Records(path) as db:
        assert [r.id for r in db.runs()] == [7]
        assert [e.phase for e in db.events(7)] == [Phase.applied]
        new = db.start_run(RunKind.create_hosts, ["lab"], {})
        assert new > 7
        assert db.run(new).kind is RunKind.create_hosts
    with sqlite3.connect(path) as c:
        assert c.execute("PRAGMA user_version").fetchone()[0] == 3
        assert "CHECK" not in c.execute("SELECT sql FROM sqlite_master WHERE name = 'runs'").fetchone()[0]
