"""One deadline loop for the waits that only poll: check, sleep, give up at the deadline."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def until(check: Callable[[], T], timeout: float, interval: float) -> T:
    """Call `check` every `interval` seconds until it returns something truthy, and return that;
    after `timeout` seconds return its last (falsy) answer, so the caller words the error."""
    deadline = time.monotonic() + timeout
    while True:
        last = check()
        if last or time.monotonic() > deadline:
            return last
        time.sleep(interval)
