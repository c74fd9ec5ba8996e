"""Which backing carries which new cluster: a pure function, so the rule is tested without backings.

Rule: a cluster that already has a backing keeps it (re-runs never move an apiserver); each new one
goes to the backing with the most free room among those given, ties broken by the order given. That
spreads a batch evenly over equal backings and fills a bigger one first, as the Metal3 runs did by
hand (ten equal VMs, a tenth of the clusters each).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from lab.errors import UsageError


@dataclass(frozen=True)
class Room:
    name: str
    capacity: int
    used: int

    @property
    def free(self) -> int:
        return max(0, self.capacity - self.used)


def place(
    new: Sequence[int], rooms: Sequence[Room], existing: Mapping[int, str] | None = None
) -> dict[int, str]:
    """index -> backing name for every index in `new` plus the ones in `existing` (kept as they are).

    Raises UsageError, before anything is created, when the backings given cannot hold the new ones.
    """
    existing = dict(existing or {})
    todo = [i for i in new if i not in existing]
    free = {r.name: r.free for r in rooms}
    total = sum(free.values())
    if len(todo) > total:
        detail = ", ".join(f"{r.name} {r.free} of {r.capacity}" for r in rooms) or "no backing"
        raise UsageError(
            f"{len(todo)} new cluster(s) do not fit: free capacity is {total} ({detail}); "
            "add a backing (lab backing add) or raise its capacity"
        )
    order = {r.name: n for n, r in enumerate(rooms)}
    out = dict(existing)
    for i in todo:
        name = max(free, key=lambda b: (free[b], -order[b]))
        out[i] = name
        free[name] -= 1
    return out
