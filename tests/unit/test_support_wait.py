"""support.wait.wait_for, the poll loop every e2e wait goes through: it must not fail a condition
that holds by the deadline, and its error must say what was seen."""

from __future__ import annotations

import time

import pytest
from support.wait import wait_for


def test_returns_the_first_truthy_value() -> None:
    seen = iter([None, [], ["m"]])
    assert wait_for("a machine", lambda: next(seen), 5, interval=0.01) == ["m"]


def test_checks_once_more_at_the_deadline() -> None:
    started = time.monotonic()
    assert wait_for("late", lambda: time.monotonic() - started >= 0.3, 0.3, interval=10) is True
    assert time.monotonic() - started < 2


def test_timeout_names_what_and_the_last_thing_seen() -> None:
    calls = []
    with pytest.raises(AssertionError, match=r"phase Available: not within 0s \(last seen: 'Provisioning'\)"):
        wait_for(
            "phase Available",
            lambda: calls.append(1) or "",
            0.2,
            interval=0.05,
            detail=lambda: "Provisioning",
        )
    assert len(calls) >= 2
    with pytest.raises(AssertionError, match=r"not within 0s \(last seen: 0\)"):
        wait_for("count", lambda: 0, 0.1, interval=0.05)
