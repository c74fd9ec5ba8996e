"""`@mutating`: the commands that change a lab home hold its lock (lab.runtime.lock) while they run."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from lab import config
from lab.runtime import lock

P = ParamSpec("P")
R = TypeVar("R")


def mutating(fn: Callable[P, R]) -> Callable[P, R]:
    """Run the command under the lab home's lock; a second one refuses at once with the holder's pid.
    functools.wraps keeps the signature typer reads the options from."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with lock.hold(config.load()):
            return fn(*args, **kwargs)

    return wrapper
