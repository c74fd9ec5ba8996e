"""SIGTERM as an exit that runs `finally`: a benchmark killed with `kill` (or by a session's end)
must still stop the stacks, engines and kind clusters it started. Python's default SIGTERM action
ends the process at once, skipping every `finally`; once, that left a benchmark's Docker engine
running with its iptables chains behind."""

from __future__ import annotations

import signal
from types import FrameType

#: the exit status of a process ended by SIGTERM, as a shell reports it (128 + 15)
EXIT_STATUS = 128 + signal.SIGTERM


def _exit(signum: int, frame: FrameType | None) -> None:
    # The cleanup that follows may take minutes (lab down --purge): a second SIGTERM must not cut it.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise SystemExit(EXIT_STATUS)


def terminate_runs_finally() -> None:
    """From now on, the first SIGTERM raises SystemExit(143) in the main thread (so every `finally`
    and context manager on the way out runs), and later ones are ignored while that cleanup runs."""
    signal.signal(signal.SIGTERM, _exit)
