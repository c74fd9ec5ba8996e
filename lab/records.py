"""Run records: every cluster's phase timestamps, the components' resource samples and their reduced
Prometheus metrics (lab.metrics), in SQLite.

Why SQLite (stdlib, WAL): create/delete write from several threads (watchers, the sampler) while
`lab report` may read from another process; WAL lets readers and the one writer go on together, and
one file under the lab home is easy to copy off a lab host and compare.

Timestamps are Unix epoch seconds (float, UTC). A cluster's phase is recorded once per run: the
first timestamp wins, so a watcher that sees the same condition again after a reconnect, or a
re-run of the same command step, never moves a measurement.
"""

from __future__ import annotations

import json
import os
import platform
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from lab.errors import LabError
from lab.phases import Phase, RunKind


@dataclass(frozen=True)
class Run:
    id: int
    kind: RunKind
    started: float
    finished: float | None
    status: str | None  # None while running; then ok / failed / timeout / interrupted
    argv: list[str]
    settings: dict[str, Any]  # versions, tuning profile, prefix, mode, anything else the caller adds
    host: dict[str, Any]  # cores, memory_bytes, ...


@dataclass(frozen=True)
class Event:
    cluster: str
    index: int
    phase: Phase
    ts: float


@dataclass(frozen=True)
class MetricSample:
    ts: float
    component: str
    metric: str
    labels: str  # "k=v,k=v", sorted (lab.metrics.labels_key)
    value: float


@dataclass(frozen=True)
class Sample:
    ts: float
    component: str
    rss_bytes: int
    cpu_percent: float  # of one core, as psutil reports it (can exceed 100)


_RUNS_COLUMNS = """(
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    kind     TEXT NOT NULL,
    started  REAL NOT NULL,
    finished REAL,
    status   TEXT,
    argv     TEXT NOT NULL,
    settings TEXT NOT NULL,
    host     TEXT NOT NULL
)"""
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS runs {_RUNS_COLUMNS};
CREATE TABLE IF NOT EXISTS cluster_events (
    run_id  INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    cluster TEXT NOT NULL,
    idx     INTEGER NOT NULL,
    phase   TEXT NOT NULL,
    ts      REAL NOT NULL,
    PRIMARY KEY (run_id, cluster, phase)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS samples (
    run_id      INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    ts          REAL NOT NULL,
    component   TEXT NOT NULL,
    rss_bytes   INTEGER NOT NULL,
    cpu_percent REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS samples_by_run ON samples (run_id, component, ts);
CREATE TABLE IF NOT EXISTS metric_samples (
    run_id    INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    ts        REAL NOT NULL,
    component TEXT NOT NULL,
    metric    TEXT NOT NULL,
    labels    TEXT NOT NULL,
    value     REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS metric_samples_by_run ON metric_samples (run_id, component, metric, ts);
"""
#: 2: metric_samples (lab.metrics). Every statement above is IF NOT EXISTS, so running the script
#: on an older file is its migration. 3: runs.kind lost its CHECK (create, delete): RunKind says
#: which kinds exist (create-hosts, delete-hosts joined), so a new kind needs no table rebuild again.
_SCHEMA_VERSION = 3


def host_facts() -> dict[str, Any]:
    """What a number measured on this machine needs next to it to be comparable."""
    return {
        "cores": os.cpu_count(),
        "memory_bytes": psutil.virtual_memory().total,
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


class Records:
    """One SQLite file, shared by the threads of one process (calls are serialised by a lock)."""

    def __init__(self, path: Path, *, create: bool = True) -> None:
        if not create and not path.is_file():
            raise LabError(f"no runs recorded yet ({path} does not exist)")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        # autocommit (isolation_level=None); writes that belong together use _tx().
        self._db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > _SCHEMA_VERSION:
                raise LabError(
                    f"{path} was written by a newer lab (schema {version}); upgrade lab to read it"
                )
            if create or version < _SCHEMA_VERSION:  # a reader (lab report) must not write the file
                old = self._db.execute("SELECT sql FROM sqlite_master WHERE name = 'runs'").fetchone()
                if old and "CHECK" in old[0]:
                    self._drop_kind_check()
                self._db.executescript(_SCHEMA)
                self._db.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")

    def _drop_kind_check(self) -> None:
        """Schema 3: rebuild `runs` without the CHECK on kind (SQLite cannot alter a constraint), as
        SQLite's own ALTER TABLE procedure does: foreign keys off, so dropping the old table cascades
        to no event or sample, and the copy keeps every id."""
        self._db.execute("PRAGMA foreign_keys=OFF")
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(f"CREATE TABLE runs_v3 {_RUNS_COLUMNS}")
                self._db.execute(
                    "INSERT INTO runs_v3 (id, kind, started, finished, status, argv, settings, host)"
                    " SELECT id, kind, started, finished, status, argv, settings, host FROM runs"
                )
                self._db.execute("DROP TABLE runs")
                self._db.execute("ALTER TABLE runs_v3 RENAME TO runs")
                self._db.execute("PRAGMA user_version=3")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        finally:
            self._db.execute("PRAGMA foreign_keys=ON")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Records:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # --- runs -------------------------------------------------------------------------------

    def start_run(
        self,
        kind: RunKind | str,
        argv: list[str],
        settings: Mapping[str, Any],
        host: Mapping[str, Any] | None = None,
        started: float | None = None,
    ) -> int:
        """A new run; `settings` is the snapshot to keep with it (see settings_snapshot)."""
        row = (
            RunKind(kind).value,
            time.time() if started is None else started,
            json.dumps(list(argv)),
            json.dumps(dict(settings), sort_keys=True, default=str),
            json.dumps(dict(host_facts() if host is None else host), sort_keys=True),
        )
        with self._tx() as db:
            cur = db.execute(
                "INSERT INTO runs (kind, started, argv, settings, host) VALUES (?, ?, ?, ?, ?)", row
            )
        assert cur.lastrowid is not None
        return cur.lastrowid

    def finish_run(self, run_id: int, status: str = "ok", finished: float | None = None) -> None:
        with self._tx() as db:
            cur = db.execute(
                "UPDATE runs SET finished = ?, status = ? WHERE id = ?",
                (time.time() if finished is None else finished, status, run_id),
            )
            if cur.rowcount != 1:
                raise LabError(f"no run {run_id} in {self.path}")

    def runs(self) -> list[Run]:
        """All runs, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, kind, started, finished, status, argv, settings, host FROM runs ORDER BY id"
            ).fetchall()
        return [_run(r) for r in rows]

    def run(self, run_id: int | None = None) -> Run:
        """One run; the latest when run_id is None."""
        cols = "SELECT id, kind, started, finished, status, argv, settings, host FROM runs"
        with self._lock:
            if run_id is None:
                row = self._db.execute(f"{cols} ORDER BY id DESC LIMIT 1").fetchone()
            else:
                row = self._db.execute(f"{cols} WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise LabError(
                f"no run {run_id} in {self.path}" if run_id is not None else f"no runs in {self.path}"
            )
        return _run(row)

    # --- cluster events ---------------------------------------------------------------------

    def record(
        self, run_id: int, cluster: str, index: int, phase: Phase | str, ts: float | None = None
    ) -> bool:
        """Record that `cluster` reached `phase`; False when the run already had it (first wins)."""
        return (
            self.record_many(run_id, [(cluster, index, Phase(phase), time.time() if ts is None else ts)]) == 1
        )

    def record_many(self, run_id: int, events: Iterable[tuple[str, int, Phase | str, float]]) -> int:
        """Many events in one transaction (a watcher's burst); returns how many were new."""
        rows = [(run_id, c, i, Phase(p).value, ts) for c, i, p, ts in events]
        with self._tx() as db:
            before = db.total_changes
            db.executemany(
                "INSERT OR IGNORE INTO cluster_events (run_id, cluster, idx, phase, ts) VALUES (?, ?, ?, ?, ?)",
                rows,
            )
            return db.total_changes - before

    def events(self, run_id: int) -> list[Event]:
        with self._lock:
            rows = self._db.execute(
                "SELECT cluster, idx, phase, ts FROM cluster_events WHERE run_id = ? ORDER BY ts, idx",
                (run_id,),
            ).fetchall()
        return [Event(c, i, Phase(p), ts) for c, i, p, ts in rows]

    # --- resource samples -------------------------------------------------------------------

    def sample(
        self, run_id: int, component: str, rss_bytes: int, cpu_percent: float, ts: float | None = None
    ) -> None:
        self.sample_many(run_id, [(time.time() if ts is None else ts, component, rss_bytes, cpu_percent)])

    def sample_many(self, run_id: int, samples: Iterable[tuple[float, str, int, float]]) -> None:
        rows = [(run_id, ts, c, int(rss), float(cpu)) for ts, c, rss, cpu in samples]
        with self._tx() as db:
            db.executemany(
                "INSERT INTO samples (run_id, ts, component, rss_bytes, cpu_percent) VALUES (?, ?, ?, ?, ?)",
                rows,
            )

    def samples(self, run_id: int) -> list[Sample]:
        with self._lock:
            rows = self._db.execute(
                "SELECT ts, component, rss_bytes, cpu_percent FROM samples WHERE run_id = ? ORDER BY ts",
                (run_id,),
            ).fetchall()
        return [Sample(*r) for r in rows]

    # --- metric samples (lab.metrics) ----------------------------------------------------------

    def metric_many(self, run_id: int, rows: Iterable[tuple[float, str, str, str, float]]) -> None:
        """One scrape's rows (ts, component, metric, labels, value) in one transaction."""
        data = [(run_id, ts, c, m, lab, float(v)) for ts, c, m, lab, v in rows]
        with self._tx() as db:
            db.executemany(
                "INSERT INTO metric_samples (run_id, ts, component, metric, labels, value)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                data,
            )

    def metric_samples(self, run_id: int) -> list[MetricSample]:
        with self._lock:
            rows = self._db.execute(
                "SELECT ts, component, metric, labels, value FROM metric_samples WHERE run_id = ?"
                " ORDER BY component, metric, labels, ts",
                (run_id,),
            ).fetchall()
        return [MetricSample(*r) for r in rows]


class RunScope:
    """One command's run record from start to end: `with RunScope(db, kind, argv, snapshot) as run:`
    starts the run (its id is `run.id`) and always finishes it, with the status that says how the
    command ended: ok, or timeout when the body set `run.timed_out` (what it waited for did not all
    happen by its deadline), interrupted on Ctrl-C (KeyboardInterrupt), failed on any other
    exception, which goes on up. Every command that records a run (create/delete clusters, create/
    delete hosts) ends it the same way, so a report can trust one meaning of each status.
    """

    def __init__(
        self, records: Records, kind: RunKind | str, argv: list[str], settings: Mapping[str, Any]
    ) -> None:
        self.records = records
        self.kind = kind
        self.argv = argv
        self.settings = settings
        self.timed_out = False
        self.id = -1  # set by __enter__

    def __enter__(self) -> RunScope:
        self.id = self.records.start_run(self.kind, self.argv, self.settings)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_exc: object) -> None:
        if exc_type is None:
            status = "timeout" if self.timed_out else "ok"
        elif issubclass(exc_type, KeyboardInterrupt):
            status = "interrupted"
        else:
            status = "failed"
        self.records.finish_run(self.id, status)


def _run(row: tuple[Any, ...]) -> Run:
    rid, kind, started, finished, status, argv, settings, host = row
    return Run(
        rid,
        RunKind(kind),
        started,
        finished,
        status,
        json.loads(argv),
        json.loads(settings),
        json.loads(host),
    )


def open_records(settings: Any, *, create: bool = True) -> Records:
    """The records of this lab home (settings.db_path)."""
    return Records(settings.db_path, create=create)


def settings_snapshot(settings: Any, tuning: str | None = None, **extra: Any) -> dict[str, Any]:
    """What a run must remember about the configuration to be compared with another run later.
    `mode` in `extra` (lab.management.current_mode) wins over the configured one, which a lab home
    in kind mode without LAB_MODE does not carry."""
    return {
        "versions": settings.versions.model_dump(),
        "tuning": tuning,
        "prefix": settings.prefix,
        "mode": settings.mode,
        **extra,
    }


PidSource = Mapping[str, int] | Callable[[], Mapping[str, int]]


class Sampler:
    """Samples RSS and CPU of named processes every `interval` seconds into a run, in a thread.

    `pids` is a mapping {component: pid}, or a callable returning one, asked again at each tick so a
    restarted component is followed. CPU is psutil's percent of one core since the previous tick, so
    a process's first tick only primes the counter and is not stored. Processes that are gone are
    skipped silently: a component stopping during a delete run is expected.
    """

    def __init__(self, records: Records, run_id: int, pids: PidSource, interval: float = 5.0) -> None:
        self.records = records
        self.run_id = run_id
        self._pids = pids
        self.interval = interval
        self._procs: dict[str, psutil.Process] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="lab-sampler", daemon=True)

    def __enter__(self) -> Sampler:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self.tick()  # prime the CPU counters now, so the first stored sample covers one interval
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.tick()

    def tick(self) -> int:
        """Take one sample of every component; returns how many were stored."""
        now = time.time()
        wanted = dict(self._pids() if callable(self._pids) else self._pids)
        rows: list[tuple[float, str, int, float]] = []
        for component, pid in wanted.items():
            proc = self._procs.get(component)
            if proc is None or proc.pid != pid:
                try:
                    proc = psutil.Process(pid)
                    proc.cpu_percent(None)  # prime
                except psutil.Error:
                    self._procs.pop(component, None)
                    continue
                self._procs[component] = proc
                continue
            try:
                with proc.oneshot():
                    rows.append((now, component, proc.memory_info().rss, proc.cpu_percent(None)))
            except psutil.Error:
                self._procs.pop(component, None)
        for gone in set(self._procs) - set(wanted):
            del self._procs[gone]
        if rows:
            self.records.sample_many(self.run_id, rows)
        return len(rows)
