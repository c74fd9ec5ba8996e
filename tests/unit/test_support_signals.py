"""support.signals: a benchmark ended by SIGTERM runs its `finally` (its cleanup), and a second
SIGTERM does not cut that cleanup short. Checked on a real child process."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from support.signals import EXIT_STATUS

SUPPORT = Path(__file__).resolve().parents[1]

CHILD = """
import sys, time
sys.path.insert(0, {support!r})
from pathlib import Path
from support.signals import terminate_runs_finally
terminate_runs_finally()
out = Path({out!r})
try:
    out.write_text("started")
    time.sleep(60)
finally:
    out.write_text("cleanup began")
    time.sleep(0.5)  # a second SIGTERM lands here
    out.write_text("cleaned up")
"""


def _wait_for_text(path: Path, text: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if path.exists() and path.read_text() == text:
            return
        time.sleep(0.02)
    raise AssertionError(f"{path} never read {text!r}; last: {path.read_text() if path.exists() else None!r}")


def test_sigterm_runs_finally_and_a_second_one_does_not_cut_it(tmp_path: Path) -> None:
    out = tmp_path / "state"
    child = subprocess.Popen([sys.executable, "-c", CHILD.format(support=str(SUPPORT), out=str(out))])
    try:
        _wait_for_text(out, "started")
        child.send_signal(signal.SIGTERM)
        _wait_for_text(out, "cleanup began")
        child.send_signal(signal.SIGTERM)
        assert child.wait(timeout=20) == EXIT_STATUS
    finally:
        child.kill()
        child.wait()
    assert out.read_text() == "cleaned up"
