"""What each supervised component of the local stack is doing: lab.supervised's status rows, in the
stack's start order, with the stack's probes."""

from __future__ import annotations

from lab import components, supervised
from lab.config import Settings
from lab.stack import health, managers
from lab.supervised import CPU_WINDOW, Row

ORDER = (*components.CORE, *managers.NAMES, components.NODESIM)


def rows(settings: Settings, window: float = CPU_WINDOW) -> list[Row]:
    return supervised.rows(settings, ORDER, health.probes(settings), window)
