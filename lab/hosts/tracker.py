"""One watch on the hosts namespace's BareMetalHosts: the first time each host is seen in each BMO
state is that phase's timestamp (lab.phases.BMO_STATES), recorded into the run as it happens.

A state BMO leaves before the next watch event shows it is not recorded for that host: its
latency from the run's first phase is then missing, never made up.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from lab import naming, phases
from lab.hosts.inventory import BMH_API, selector
from lab.phases import Phase
from lab.tracking import WatchTracker


@dataclass
class Followed:
    index: int
    reached: set[Phase] = field(default_factory=set)
    state: str = "not seen yet"  # BMO's provisioning state now, for the "stuck" list
    gone: bool = False  # the watch saw it deleted


class Tracker(WatchTracker[Followed]):
    """One watch on the hosts namespace's BareMetalHosts; a host's phases are BMO's states, and
    `pending` says the state each host not done is in."""

    def _new(self, index: int) -> Followed:
        return Followed(index)

    def _open(self) -> Iterator[tuple[str, Any]]:
        ns = naming.hosts_namespace(self.prefix)
        yield (
            "track-hosts",
            self.mgmt.watch(BMH_API, "BareMetalHost", ns, label_selector=selector(self.prefix)),
        )

    def _event(self, ev: Any) -> None:
        name = ev.object["metadata"]["name"]
        if name not in self.state:
            return
        if ev.type == "DELETED":
            with self._changed:
                self.state[name].gone = True
                self.state[name].state = "deleted"
                self._changed.notify_all()
            self._notify()
        else:
            self.observe(ev.object)

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

    def pending(self, done: Callable[[Followed], bool]) -> dict[str, str]:
        """name -> BMO's state now, for every host not `done`, in index order."""
        return self._pending(done, _bmo_state)

    def wait(self, done: Callable[[Followed], bool], deadline: float) -> bool:
        """Until every host is `done` (True) or the monotonic deadline passes (False)."""
        return self._wait(done, deadline)


def _bmo_state(s: Followed) -> str:
    return s.state
