"""lab.runtime.supervise against a real supervisord: add, leave alone, change, restart after kill -9,
remove, shut down. Programs are tiny Python sleepers, so this runs in seconds."""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab import naming, supervised
from lab.config import Settings
from lab.errors import LabError
from lab.runtime import procs, supervise
from lab.stack import up


def _sleeper(tag: str) -> list[str]:
    return [sys.executable, "-c", f"import time; print('{tag}', flush=True); time.sleep(600)"]


def _running_pid(
    sup: supervise.Supervisor, name: str, not_pid: int | None = None, timeout: float = 20
) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = sup.process(name)
        if info and info["statename"] == "RUNNING" and info["pid"] and info["pid"] != not_pid:
            return int(info["pid"])
        time.sleep(0.1)
    raise AssertionError(
        f"{name} not RUNNING (other than pid {not_pid}) within {timeout}s: {sup.process(name)}"
    )


@pytest.fixture
def sup(tmp_path: Path) -> Iterator[supervise.Supervisor]:
    # A short home: unix socket paths are limited to ~107 bytes.
    settings = Settings(
        home=Path(os.environ.get("TMPDIR", "/tmp")) / f"labsup-{os.getpid()}-{tmp_path.name[-12:]}"
    )
    s = supervise.ensure_running(settings)
    try:
        yield s
    finally:
        s.shutdown()
        shutil.rmtree(settings.home, ignore_errors=True)


def test_apply_is_idempotent_and_restarts_only_changed_programs(sup: supervise.Supervisor) -> None:
    first = sup.apply([supervise.Program("a", _sleeper("a1")), supervise.Program("b", _sleeper("b1"))])
    assert sorted(first["added"]) == ["a", "b"] and first["changed"] == first["removed"] == []
    a1, b1 = _running_pid(sup, "a"), _running_pid(sup, "b")

    again = sup.apply([supervise.Program("a", _sleeper("a1")), supervise.Program("b", _sleeper("b1"))])
    assert again == {"added": [], "changed": [], "removed": []}
    assert (_running_pid(sup, "a"), _running_pid(sup, "b")) == (a1, b1)

    changed = sup.apply([supervise.Program("a", _sleeper("a2"))])
    assert changed["changed"] == ["a"]
    assert _running_pid(sup, "a", not_pid=a1) != a1
    assert _running_pid(sup, "b") == b1
    assert "a2" in supervise.log_file(sup.settings, "a").read_text()


def test_killed_program_is_restarted(sup: supervise.Supervisor) -> None:
    sup.apply([supervise.Program("k", _sleeper("k"))])
    pid = _running_pid(sup, "k")
    os.kill(pid, signal.SIGKILL)
    assert _running_pid(sup, "k", not_pid=pid) != pid


def test_removed_program_stops(sup: supervise.Supervisor) -> None:
    sup.apply([supervise.Program("r", _sleeper("r"))])
    pid = _running_pid(sup, "r")
    assert sup.remove(["r"])["removed"] == ["r"]
    assert sup.process("r") is None
    deadline = time.monotonic() + 20
    while procs.alive(pid):
        assert time.monotonic() < deadline, "removed program still alive"
        time.sleep(0.1)


def _slow_to_stop(marks: Path, tag: str) -> list[str]:
    """A program that notes when SIGTERM reaches it, takes 1 s to shut down, and notes its exit."""
    script = marks.with_name("slow_to_stop.py")
    script.write_text(
        "import signal, sys, time\n"
        "def term(*_):\n"
        "    with open(sys.argv[1], 'a') as f: f.write(f'term {sys.argv[2]} {time.time()}\\n')\n"
        "    time.sleep(1)\n"
        "    with open(sys.argv[1], 'a') as f: f.write(f'exit {sys.argv[2]} {time.time()}\\n')\n"
        "    sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, term)\n"
        "with open(sys.argv[1], 'a') as f: f.write(f'ready {sys.argv[2]} {time.time()}\\n')\n"
        "time.sleep(600)\n"
    )
    return [sys.executable, str(script), str(marks), tag]


def _all_ready(marks: Path, names: list[str], timeout: float = 60) -> None:
    """Until each program has its SIGTERM handler in place (RUNNING is only startsecs=1 after
    the spawn, and Python's start-up takes longer than that at load 30)."""
    deadline = time.monotonic() + timeout
    while True:
        text = marks.read_text() if marks.exists() else ""
        ready = {line.split()[1] for line in text.splitlines() if line.startswith("ready ")}
        if ready >= set(names):
            return
        assert time.monotonic() < deadline, f"not ready within {timeout}s: {set(names) - ready}"
        time.sleep(0.05)


def test_removing_many_programs_stops_them_all_at_once(sup: supervise.Supervisor, tmp_path: Path) -> None:
    """Every removed program gets SIGTERM before the first of them has exited: a delete of 100
    clusters no longer stops 100 apiservers one after another."""
    marks = tmp_path / "marks"
    names = [f"s{i}" for i in range(4)]
    sup.apply([supervise.Program(n, _slow_to_stop(marks, n)) for n in names])
    _all_ready(marks, names)
    assert sorted(sup.remove(names)["removed"]) == names
    assert all(sup.process(n) is None for n in names)
    events = [line.split() for line in marks.read_text().splitlines()]
    terms = [float(t) for kind, _n, t in events if kind == "term"]
    exits = [float(t) for kind, _n, t in events if kind == "exit"]
    assert len(terms) == len(exits) == len(names), events
    assert max(terms) < min(exits), events


def test_a_crash_looping_component_fails_the_wait_with_its_name_last_log_line_and_log(
    sup: supervise.Supervisor,
) -> None:
    crash = [
        sys.executable,
        "-c",
        "print('boom: flag provided but not defined', flush=True); raise SystemExit(3)",
    ]
    sup.apply([supervise.Program("capi-manager", crash)])
    with pytest.raises(LabError) as err:
        up.wait_healthy(sup.settings, sup, ["capi-manager"], timeout=60, log=lambda _m: None)
    msg = str(err.value)
    assert msg.startswith("capi-manager keeps exiting")
    assert "boom: flag provided but not defined" in msg
    assert msg.endswith(f"(log: {supervise.log_file(sup.settings, 'capi-manager')})")
    assert "\n" not in msg


def test_converge_starts_a_stopped_program_and_leaves_a_running_one(sup: supervise.Supervisor) -> None:
    programs = [supervise.Program("s", _sleeper("s")), supervise.Program("t", _sleeper("t"))]
    assert sorted(sup.converge(programs)["added"]) == ["s", "t"]
    s1, t1 = _running_pid(sup, "s"), _running_pid(sup, "t")
    sup.rpc.stopProcess("s", True)
    assert sup.process("s")["statename"] == "STOPPED"  # type: ignore[index]
    assert sup.converge(programs) == {"added": [], "changed": [], "removed": []}
    assert _running_pid(sup, "s", not_pid=s1) != s1
    assert _running_pid(sup, "t") == t1


def test_down_stops_every_workload_apiserver_at_once(sup: supervise.Supervisor, tmp_path: Path) -> None:
    """supervisord's own shutdown goes one program at a time; down signals the workload
    apiservers together first, so 100 live clusters cost one stopwaitsecs, not a hundred."""
    marks = tmp_path / "marks"
    names = [f"{naming.WORKLOAD_PROGRAM_PREFIX}test-{i}" for i in range(4)]
    sup.apply([supervise.Program(n, _slow_to_stop(marks, n)) for n in names])
    _all_ready(marks, names)
    assert supervised.down(sup.settings) is True
    assert not sup.alive(), (sup.settings.log_dir / "supervisord.log").read_text()[-2000:]
    events = [line.split() for line in marks.read_text().splitlines()]
    terms = [float(t) for kind, _n, t in events if kind == "term"]
    exits = [float(t) for kind, _n, t in events if kind == "exit"]
    assert len(terms) == len(exits) == len(names), events
    assert max(terms) < min(exits), events
