"""Whether a process is alive, as lab means it: one answer for the lock's holder and supervisord."""

from __future__ import annotations

import os


def alive(pid: int) -> bool:
    """True while `pid` runs. A process we may not signal still runs; a zombie (a child not reaped
    yet) is gone for every purpose of lab's."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False
