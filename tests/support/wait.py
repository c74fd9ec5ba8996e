"""One poll loop for tests that wait on a real system to converge (a controller, a webhook, a process
coming back), so every wait fails the same way: an AssertionError naming what was awaited, how long,
and the last thing seen."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(
    what: str,
    fn: Callable[[], T],
    timeout: float,
    interval: float = 1.0,
    *,
    detail: Callable[[], object] | None = None,
) -> T:
    """Call `fn` every `interval` seconds until it returns something truthy, and return that.

    `fn` is always called at least once and once more at the deadline, so a slow poll never fails a
    condition that holds. On timeout the error carries `detail()` when given (for a check that only
    returns a bool but saw more), else `fn`'s last result.
    """
    deadline = time.monotonic() + timeout
    while True:
        last = fn()
        if last:
            return last
        if time.monotonic() >= deadline:
            seen = detail() if detail is not None else last
            raise AssertionError(f"{what}: not within {timeout:.0f}s (last seen: {seen!r})")
        time.sleep(max(0.0, min(interval, deadline - time.monotonic())))
