"""Follows clusters through their create phases by watching the management cluster.

One watch per kind the controllers write (lab.phases.WATCHED), all namespaces, filtered to the
clusters asked for. Each phase is stamped when a watch event first shows it, to the millisecond,
which is what the report's latencies are made of; `node_written` carries the node simulator's own
timestamp from the BareMetalHost annotation. Watches, not polling: a phase is seen the moment the
controller writes it, and the apiserver does the filtering work once for every cluster.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from lab import phases
from lab.phases import Phase
from lab.tracking import WatchTracker

#: What --wait requires, beyond the phases: the control-plane Machine's own Ready condition.
MACHINE_READY = "Ready"


@dataclass
class ClusterState:
    index: int
    reached: set[Phase] = field(default_factory=set)
    machine_ready: bool = False
    #: the Available condition of the Cluster and of the KCP, for the "stuck" list
    cluster_hold: str | None = "not seen yet"
    kcp_hold: str | None = "not seen yet"

    @property
    def done(self) -> bool:
        return {Phase.cluster_available, Phase.kcp_available, Phase.node_ref} <= self.reached and (
            self.machine_ready
        )

    def holding(self) -> str:
        """The most specific reason this cluster is not done yet."""
        if Phase.node_ref not in self.reached:
            last = max(self.reached, key=_ORDER.index, default=None)
            return f"waiting after {last.value if last else 'nothing'}: no nodeRef yet"
        if not self.machine_ready:
            return "control-plane Machine not Ready"
        return f"KubeadmControlPlane {self.kcp_hold}" if self.kcp_hold else f"Cluster {self.cluster_hold}"


_ORDER = list(Phase)


class Tracker(WatchTracker[ClusterState]):
    """Watches in threads, one per kind (lab.phases.WATCHED); `record` names the clusters whose
    phases go into the run's records (clusters that already existed are followed for --wait but not
    re-timed)."""

    def _new(self, index: int) -> ClusterState:
        return ClusterState(index)

    def _open(self) -> Iterator[tuple[str, Any]]:
        for api_version, kind in phases.WATCHED:
            yield f"track-{kind}", self.mgmt.watch(api_version, kind)

    def _event(self, ev: Any) -> None:
        if ev.type != "DELETED":
            self.observe(ev.object)

    def observe(self, obj: Mapping[str, Any]) -> None:
        found = phases.cluster_of(obj, self.prefix)
        if found is None or found[0] not in self.state:
            return
        name = found[0]
        now = time.time()
        kind = obj.get("kind")
        with self._changed:
            st = self.state[name]
            if kind == "Cluster":
                st.cluster_hold = phases.blocking(obj)
            elif kind == "KubeadmControlPlane":
                st.kcp_hold = phases.blocking(obj)
            elif kind == "Machine" and phases.CONTROL_PLANE_LABEL in (obj["metadata"].get("labels") or {}):
                st.machine_ready = phases.is_true(obj, MACHINE_READY)
        stamped = []
        for p in phases.observed(obj):
            ts = now
            if p is Phase.node_written:
                ts = phases.node_written_at(obj) or now
            stamped.append((p, ts))
        self._reach(name, stamped)

    def done(self) -> int:
        with self._changed:
            return sum(s.done for s in self.state.values())

    def pending(self) -> dict[str, str]:
        """name -> what holds it, for every cluster not done."""
        return self._pending(_is_done, ClusterState.holding)

    def wait(self, deadline: float) -> bool:
        """Until every cluster is done (True) or the monotonic deadline passes (False)."""
        return self._wait(_is_done, deadline)


def _is_done(s: ClusterState) -> bool:
    return s.done
