"""Free loopback ports for tests and benchmarks."""

from __future__ import annotations

import random

from lab.runtime.ports import LOOPBACK, bindable, ephemeral_range


def free_block(size: int = 1, floor: int = 20000) -> int:
    """The first of `size` consecutive free loopback ports, chosen at random below the ephemeral range.

    A listener on an ephemeral port can lose it to any outgoing connection before it binds (seen in
    CI: a manager's webhook port taken by a client socket), so tests and benchmarks pick from below.
    """
    ceiling = ephemeral_range()[0]
    if ceiling - floor < size * 4:
        floor = 1024
    rng = random.Random()
    for _ in range(500):
        base = rng.randrange(floor, ceiling - size)
        if all(bindable(p) for p in range(base, base + size)):
            return base
    raise RuntimeError(f"no {size} consecutive free ports on {LOOPBACK} below {ceiling}")


def free_port() -> int:
    return free_block(1)
