"""Follows clusters through their create phases by watching the management cluster.

One watch per kind the controllers write (lab.phases.WATCHED), all namespaces, filtered to the
clusters asked for. Each phase is stamped when a watch event first shows it, to the millisecond,
which is what the report's latencies are made of; `node_written` carries the node simulator's own
timestamp from the BareMetalHost annotation. Watches, not polling: a phase is seen the moment the
controller writes it, and the apiserver does the filtering work once for every cluster.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from lab import phases
from lab.kube import Client
from lab.manifests import names
from lab.phases import Phase
from lab.records import Records
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
    #: --workers W: worker hosts of slots 1..W provisioned, and when their Nodes were written
    workers: int = 0
    provisioned: set[str] = field(default_factory=set)
    written: dict[str, float] = field(default_factory=dict)
    md_hold: str = "MachineDeployment not seen yet"
    #: a scale run's cluster is done at this phase, not at Available
    goal: Phase | None = None

    @property
    def done(self) -> bool:
        if self.goal is not None:
            return self.goal in self.reached
        if self.workers and Phase.md_available not in self.reached:
            return False
        return {Phase.cluster_available, Phase.kcp_available, Phase.node_ref} <= self.reached and (
            self.machine_ready
        )

    def holding(self) -> str:
        """The most specific reason this cluster is not done yet."""
        if self.goal is Phase.hosts_removed:
            if Phase.workers_removed in self.reached:
                return "surplus worker hosts not deprovisioned and deleted yet"
            return "surplus worker Machines not removed yet (drain, deprovision, Node deletion)"
        if self.goal is not None or (self.workers and Phase.cluster_available in self.reached):
            return (
                f"{len(self.provisioned)} of {self.workers} worker hosts provisioned, "
                f"{len(self.written)} Nodes written; {self.md_hold}"
            )
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

    def __init__(
        self,
        mgmt: Client,
        prefix: str,
        clusters: Mapping[str, int],
        records: Records | None = None,
        run_id: int | None = None,
        record: Iterable[str] = (),
        on_change: Callable[[], None] | None = None,
        workers: Mapping[str, int] | int = 0,
        goal: Mapping[str, Phase] | None = None,
        phases: Collection[Phase] | None = None,
    ) -> None:
        """`workers`: the W each cluster (or every one) is to have; `goal`: the phase a scale run's
        cluster is done at; `phases`: only these are recorded (a scale run sees its clusters'
        create phases again in the watches' first listing)."""
        super().__init__(mgmt, prefix, clusters, records, run_id, record, on_change)
        want = workers if isinstance(workers, Mapping) else dict.fromkeys(clusters, workers)
        for name, st in self.state.items():
            st.workers = want.get(name, 0)
            st.goal = (goal or {}).get(name)
        self.phases = None if phases is None else set(phases)

    def _new(self, index: int) -> ClusterState:
        return ClusterState(index)

    def _open(self) -> Iterator[tuple[str, Any]]:
        for api_version, kind in phases.WATCHED:
            yield f"track-{kind}", self.mgmt.watch(api_version, kind)

    def _event(self, ev: Any) -> None:
        if ev.type != "DELETED":
            self.observe(ev.object)
        elif ev.object.get("kind") == "BareMetalHost":
            self.forget_host(ev.object)

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
            if p is Phase.md_available and (obj.get("spec") or {}).get("replicas") != st.workers:
                continue  # still the MachineDeployment of before a scale
            ts = now
            if p is Phase.node_written:
                ts = phases.node_written_at(obj) or now
            stamped.append((p, ts))
        if kind == "BareMetalHost" and phases.is_worker_host(obj):
            stamped += self._worker_host(name, obj, now)
        elif kind == "MachineDeployment":
            status = obj.get("status") or {}
            with self._changed:
                st.md_hold = (
                    f"MachineDeployment {status.get('availableReplicas', 0)}/{(obj.get('spec') or {}).get('replicas')}"
                    " available"
                )
        self._reach(name, stamped)

    def _worker_host(self, name: str, bmh: Mapping[str, Any], now: float) -> list[tuple[Phase, float]]:
        """The worker phases this host completes for its cluster: all W hosts of slots 1..W
        provisioned, all W Nodes written (at the last one's own timestamp)."""
        host = bmh["metadata"]["name"]
        slot = names.worker_slot(name, host)
        with self._changed:
            st = self.state[name]
            if slot is None or slot > st.workers:
                return []
            if phases.is_provisioned(bmh):
                st.provisioned.add(host)
            else:
                st.provisioned.discard(host)
            written = phases.node_written_at(bmh)
            if written is not None:
                st.written[host] = written
            out = []
            if st.workers and len(st.provisioned) >= st.workers:
                out.append((Phase.workers_provisioned, now))
            if st.workers and len(st.written) >= st.workers:
                out.append((Phase.workers_written, max(st.written.values())))
            return out

    def forget_host(self, bmh: Mapping[str, Any]) -> None:
        found = phases.cluster_of(bmh, self.prefix)
        if found is None or found[0] not in self.state:
            return
        with self._changed:
            st = self.state[found[0]]
            st.provisioned.discard(bmh["metadata"]["name"])
            st.written.pop(bmh["metadata"]["name"], None)

    def _reach(self, name: str, stamped: list[tuple[Phase, float]]) -> None:
        """Only the phases this run records (all of them, unless `phases` was given)."""
        super()._reach(name, [(p, ts) for p, ts in stamped if self.phases is None or p in self.phases])

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
