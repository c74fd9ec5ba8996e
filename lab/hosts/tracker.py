"""One watch on the hosts namespace's BareMetalHosts: the first time each host is seen in each BMO
state is that phase's timestamp (lab.phases.BMO_STATES), recorded into the run as it happens.

A state BMO leaves before the next watch event shows it is not recorded for that host: its
latency from the run's first phase is then missing, never made up.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from lab import naming, phases
from lab.errors import LabError
from lab.hosts.inventory import BMH_API, selector
from lab.kube import Client
from lab.phases import Phase
from lab.records import Records


@dataclass
class Followed:
    index: int
    reached: set[Phase] = field(default_factory=set)
    state: str = "not seen yet"  # BMO's provisioning state now, for the "stuck" list
    gone: bool = False  # the watch saw it deleted


class Tracker:
    """`hosts`: name -> index of every host followed; `record`: the names whose phases go into the
    run (hosts that were there already are followed, not re-timed)."""

    def __init__(
        self,
        mgmt: Client,
        prefix: str,
        hosts: Mapping[str, int],
        records: Records | None = None,
        run_id: int | None = None,
        record: Iterable[str] = (),
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.mgmt = mgmt
        self.prefix = prefix
        self.state = {name: Followed(index) for name, index in hosts.items()}
        self.records = records
        self.run_id = run_id
        self.recorded = set(record)
        self.on_change = on_change
        self.error: Exception | None = None
        self._changed = threading.Condition()
        self._watch: Any = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Tracker:
        self._watch = self.mgmt.watch(
            BMH_API,
            "BareMetalHost",
            naming.hosts_namespace(self.prefix),
            label_selector=selector(self.prefix),
        )
        self._thread = threading.Thread(target=self._follow, name="track-hosts", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._watch is not None:
            self._watch.stop()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _follow(self) -> None:
        try:
            for ev in self._watch:
                name = ev.object["metadata"]["name"]
                if name not in self.state:
                    continue
                if ev.type == "DELETED":
                    with self._changed:
                        self.state[name].gone = True
                        self.state[name].state = "deleted"
                        self._changed.notify_all()
                    self._notify()
                else:
                    self.observe(ev.object)
        except (LabError, OSError) as e:  # the stack went away: the wait reports it
            with self._changed:
                self.error = e
                self._changed.notify_all()

    def observe(self, bmh: Mapping[str, Any]) -> None:
        name = bmh["metadata"]["name"]
        st = self.state[name]
        with self._changed:
            st.state = ((bmh.get("status") or {}).get("provisioning") or {}).get("state") or "none"
            st.gone = False
        phase = phases.host_phase(bmh)
        if phase is not None:
            self.mark(name, phase)
        else:
            self._notify()

    def mark(self, name: str, phase: Phase, ts: float | None = None) -> None:
        """Phase `phase` of host `name` at `ts` (now); the first time per run wins."""
        stamp = time.time() if ts is None else ts
        with self._changed:
            st = self.state[name]
            new = phase not in st.reached
            st.reached.add(phase)
            self._changed.notify_all()
        if new and self.records is not None and self.run_id is not None and name in self.recorded:
            self.records.record_many(self.run_id, [(name, st.index, phase, stamp)])
        self._notify()

    def _notify(self) -> None:
        if self.on_change is not None:
            self.on_change()

    def counts(self, phases: Iterable[Phase]) -> dict[Phase, int]:
        """How many hosts reached each of `phases` (the run's: the bars ask on every event)."""
        with self._changed:
            return {p: sum(p in s.reached for s in self.state.values()) for p in phases}

    def pending(self, done: Callable[[Followed], bool]) -> dict[str, str]:
        """name -> BMO's state now, for every host not `done`, in index order."""
        with self._changed:
            return {
                n: s.state for n, s in sorted(self.state.items(), key=lambda x: x[1].index) if not done(s)
            }

    def wait(self, done: Callable[[Followed], bool], deadline: float) -> bool:
        """Until every host is `done` (True) or the monotonic deadline passes (False)."""
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
