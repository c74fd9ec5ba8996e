"""`lab create-hosts`: plan, apply the missing hosts, time their BMO states, wait for the target one.

Convergent: a host whose BareMetalHost and Secret both exist is left alone (re-running creates
only what is missing, and writes nothing when nothing is); the objects are rendered
deterministically, so re-applying a half-created host is a no-op for what was there.

Capacity: standalone hosts share the clusters' index space (setting max_index, at most 65000), the
range their boot MACs and BMC addresses are unique in (lab.naming). Nothing else bounds them on one
machine: BMO in test mode runs no process per host, and a provisioned host is two objects in the
management etcd, measured as JSON with status and managed fields (etcd keeps Secrets as protobuf, smaller): a BareMetalHost of 6.0 kB
and a Secret of 1.3 kB, so 65000 hosts are ~0.5 GB of the management etcd's 8 GiB quota.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from lab import naming, records
from lab.clusters.create import check_stack
from lab.clusters.session import RunSampling, run_snapshot
from lab.config import Settings
from lab.errors import LabError
from lab.hosts import inventory
from lab.hosts.tracker import Followed, Tracker
from lab.kube import Client, Obj
from lab.manifests import hosts as manifests
from lab.manifests.hosts import HostState
from lab.phases import Phase, RunKind, run_phases

#: Hosts named in an error about existing hosts; the rest are counted.
MAX_NAMED = 5


@dataclass(frozen=True)
class Plan:
    namespace: str
    indexes: list[int]
    names: dict[int, str]
    state: HostState
    new: list[int]  # a host or its secret is missing: applied by this run
    existing: list[int]  # both there, created for the same state: left alone

    def summary(self) -> str:
        parts = [f"{len(self.new)} new"]
        if self.existing:
            parts.append(f"{len(self.existing)} already there")
        return f"{', '.join(parts)}, state {self.state}"


@dataclass
class Result:
    run_id: int
    plan: Plan
    waited: bool
    done: list[str] = field(default_factory=list)
    stuck: dict[str, str] = field(default_factory=dict)  # name -> BMO's state when the wait ended
    seconds: float = 0.0

    def as_dict(self) -> dict[str, object]:
        p = self.plan
        return {
            "run": self.run_id,
            "namespace": p.namespace,
            "hosts": [p.names[i] for i in p.indexes],
            "state": p.state.value,
            "new": [p.names[i] for i in p.new],
            "unchanged": [p.names[i] for i in p.existing],
            "waited": self.waited,
            "done": self.done,
            "stuck": self.stuck,
            "seconds": round(self.seconds, 3),
        }


class Display(Protocol):
    def planned(self, plan: Plan) -> None: ...
    def update(self, counts: dict[Phase, int]) -> None: ...


def _named(names: Sequence[str]) -> str:
    more = f" and {len(names) - MAX_NAMED} more" if len(names) > MAX_NAMED else ""
    return ", ".join(names[:MAX_NAMED]) + more


def make_plan(settings: Settings, inv: inventory.Inventory, indexes: Sequence[int], state: HostState) -> Plan:
    """Pure over one inventory; raises LabError (nothing changed) for hosts in the way."""
    names = {i: naming.host_name(settings.prefix, i) for i in indexes}
    ns = naming.hosts_namespace(settings.prefix)
    if inv.namespace_terminating:
        raise LabError(f"namespace {ns} is being deleted: wait for lab delete-hosts to finish, then re-run")
    deleting = inv.deleting(indexes)
    if deleting:
        raise LabError(
            f"host(s) {_named([names[i] for i in deleting])} are being deleted: re-run lab delete-hosts to finish"
        )
    other = [i for i in indexes if inv.state(i) not in (None, state)]
    if other:
        raise LabError(
            f"host(s) {_named([names[i] for i in other])} exist for state {inv.state(other[0])}, not {state}: "
            "delete them first (lab delete-hosts) or ask for that state"
        )
    new = [i for i in indexes if i not in inv.hosts or i not in inv.secrets]
    existing = [i for i in indexes if i not in new]
    return Plan(ns, list(indexes), names, state, new, existing)


def target(state: HostState) -> Phase:
    return Phase.host_provisioned if state is HostState.provisioned else Phase.host_available


def create_hosts(
    settings: Settings,
    mgmt: Client,
    indexes: Sequence[int],
    state: HostState,
    display: Display,
    *,
    wait: bool = True,
    timeout: float = 600.0,
) -> Result:
    check_stack(mgmt)
    plan = make_plan(settings, inventory.read(settings, mgmt), indexes, state)
    key = inventory.bmc_key(settings)
    goal = target(state)
    started = time.monotonic()
    snapshot = run_snapshot(settings, start=indexes[0], count=len(indexes), state=state.value)
    with (
        records.open_records(settings) as db,
        records.RunScope(db, RunKind.create_hosts, sys.argv, snapshot) as run,
    ):
        run_id = run.id
        order = run_phases(RunKind.create_hosts, snapshot)
        names = {plan.names[i]: i for i in indexes}
        tracker = Tracker(
            mgmt,
            settings.prefix,
            names,
            db,
            run_id,
            record=[plan.names[i] for i in plan.new],
            on_change=lambda: display.update(tracker.counts(order)),
        )
        with RunSampling(settings, db, run_id), tracker:
            display.planned(plan)
            if plan.new:
                mgmt.apply_one(manifests.namespace(settings.prefix))

                def applied(obj: Obj) -> None:
                    if obj["kind"] == "BareMetalHost":
                        tracker.mark(obj["metadata"]["name"], Phase.host_applied)

                objs = [o for i in plan.new for o in manifests.host_objects(settings.prefix, i, state, key)]
                mgmt.apply(objs, on_applied=applied)
            for name in names:  # hosts that were there: their first phase for --wait's counts
                if name not in tracker.recorded:
                    tracker.mark(name, Phase.host_applied)
            result = Result(run_id, plan, wait)

            def done(s: Followed) -> bool:
                return goal in s.reached

            if wait:
                tracker.wait(done, started + timeout)
                result.stuck = tracker.pending(done)
            result.done = [n for n in names if n not in tracker.pending(done)]
        run.timed_out = bool(result.stuck)
        result.seconds = time.monotonic() - started
        return result
