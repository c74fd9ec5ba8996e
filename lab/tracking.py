"""What the cluster and host trackers share: follow named objects through watches on the management
cluster, each watch in a daemon thread; stamp each phase the first time it is seen and record it into
the run; let the command wait, until a deadline, for every object to be done.

A subclass says which watches to open (`_open`), what an event means (`_event`) and the state kept
per object (`_new`); everything else, the locking and the "lost the watch" error included, is here
so both trackers behave the same.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Generic, Protocol, Self, TypeVar

from lab.errors import LabError
from lab.kube import Client
from lab.phases import Phase
from lab.records import Records


class PhaseState(Protocol):
    index: int
    reached: set[Phase]


S = TypeVar("S", bound=PhaseState)


class WatchTracker(Generic[S]):
    """`followed`: name -> index of every object followed; `record`: the names whose phases go into
    the run (objects that were there already are followed, not re-timed)."""

    def __init__(
        self,
        mgmt: Client,
        prefix: str,
        followed: Mapping[str, int],
        records: Records | None = None,
        run_id: int | None = None,
        record: Iterable[str] = (),
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.mgmt = mgmt
        self.prefix = prefix
        self.state = {name: self._new(index) for name, index in followed.items()}
        self.records = records
        self.run_id = run_id
        self.recorded = set(record)
        self.on_change = on_change
        self.error: Exception | None = None
        self._changed = threading.Condition()
        self._watches: list[Any] = []
        self._threads: list[threading.Thread] = []

    # --- what a subclass says -------------------------------------------------------------------

    def _new(self, index: int) -> S:
        raise NotImplementedError

    def _open(self) -> Iterator[tuple[str, Any]]:
        """(thread name, open watch) for each watch to follow, opened one at a time."""
        raise NotImplementedError

    def _event(self, ev: Any) -> None:
        raise NotImplementedError

    # --- lifecycle ----------------------------------------------------------------------------

    def __enter__(self) -> Self:
        for name, w in self._open():
            self._watches.append(w)
            t = threading.Thread(target=self._follow, args=(w,), name=name, daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def __exit__(self, *_exc: object) -> None:
        for w in self._watches:
            w.stop()
        for t in self._threads:
            t.join(timeout=5)

    def _follow(self, watch: Any) -> None:
        try:
            for ev in watch:
                self._event(ev)
        except (LabError, OSError) as e:  # the stack went away: the wait reports it
            with self._changed:
                self.error = e
                self._changed.notify_all()

    # --- state ----------------------------------------------------------------------------------

    def mark(self, name: str, phase: Phase, ts: float | None = None) -> None:
        """Phase `phase` of `name` at `ts` (now), e.g. one lab itself sees (applied); the first time
        per run wins."""
        self._reach(name, [(phase, time.time() if ts is None else ts)])

    def _reach(self, name: str, stamped: list[tuple[Phase, float]]) -> None:
        with self._changed:
            st = self.state[name]
            new = [(p, ts) for p, ts in stamped if p not in st.reached]
            st.reached.update(p for p, _ in new)
            self._changed.notify_all()
        if new and self.records is not None and self.run_id is not None and name in self.recorded:
            self.records.record_many(self.run_id, [(name, st.index, p, ts) for p, ts in new])
        self._notify()

    def _notify(self) -> None:
        if self.on_change is not None:
            self.on_change()

    def counts(self, phases: Iterable[Phase] = tuple(Phase)) -> dict[Phase, int]:
        """How many reached each of `phases` (the run's: the bars ask on every event)."""
        with self._changed:
            return {p: sum(p in s.reached for s in self.state.values()) for p in phases}

    def _pending(self, done: Callable[[S], bool], why: Callable[[S], str]) -> dict[str, str]:
        """name -> why, for every object not `done`, in index order."""
        with self._changed:
            return {n: why(s) for n, s in sorted(self.state.items(), key=lambda x: x[1].index) if not done(s)}

    def _wait(self, done: Callable[[S], bool], deadline: float) -> bool:
        """Until every object is `done` (True) or the monotonic deadline passes (False)."""
        with self._changed:
            while True:
                if self.error is not None:
                    raise LabError(f"lost the watch on the management cluster: {self.error}")
                if all(done(s) for s in self.state.values()):
                    return True
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(min(left, 1.0))
