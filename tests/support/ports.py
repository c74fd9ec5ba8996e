"""Free loopback ports for tests and benchmarks."""

from __future__ import annotations

import os
import random

from lab.runtime.ports import LOOPBACK, bindable, ephemeral_range


def free_block(size: int = 1, floor: int = 21000) -> int:
    """The first of `size` consecutive free loopback ports, chosen at random below the ephemeral range.

    A listener on an ephemeral port can lose it to any outgoing connection before it binds (seen in
    CI: a manager's webhook port taken by a client socket), so tests and benchmarks pick from below.
    The floor keeps clear of the mux backing's cluster ports (20000 + index) for indexes up to 1000.
    """
    ceiling = ephemeral_range()[0]
    if ceiling - floor < size * 4:
        floor = 1024
    floor, ceiling = _worker_share(floor, ceiling)
    rng = random.Random()
    for _ in range(500):
        base = rng.randrange(floor, ceiling - size)
        if all(bindable(p) for p in range(base, base + size)):
            return base
    raise RuntimeError(f"no {size} consecutive free ports on {LOOPBACK} below {ceiling}")


def _worker_share(floor: int, ceiling: int) -> tuple[int, int]:
    """Under pytest-xdist, this worker's own slice of [floor, ceiling): two workers probe and bind at
    the same moments (both stacks start together), and a block found free by both would go to one."""
    worker, count = os.environ.get("PYTEST_XDIST_WORKER", ""), os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if not (worker.startswith("gw") and count):
        return floor, ceiling
    width = (ceiling - floor) // int(count)
    start = floor + int(worker[2:]) * width
    return start, start + width


def free_port() -> int:
    return free_block(1)
