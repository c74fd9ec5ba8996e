"""What each supervised component of the local stack is doing: lab.supervised's status rows, in the
stack's start order, with the stack's probes."""

from __future__ import annotations

from lab import components, shards, supervised
from lab.config import Settings
from lab.stack import health, managers
from lab.supervised import CPU_WINDOW, Row

#: start order; KCP's shards (lab.shards) right after kcp-manager, shard 0
_MANAGERS = [n for m in managers.NAMES for n in (m, *(shards.EXTRA_PROGRAMS if m == shards.MANAGER else ()))]
ORDER = (*components.CORE, *_MANAGERS, components.NODESIM)


def rows(settings: Settings, window: float = CPU_WINDOW) -> list[Row]:
    return supervised.rows(settings, ORDER, health.probes(settings), window)
