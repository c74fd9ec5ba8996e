"""`lab delete-hosts`: delete standalone hosts to zero residue, timing BMO's states on the way.

Order, per host: DELETE the BareMetalHost; BMO deprovisions a provisioned host, powers it off,
deletes it and removes its finalizer (and the one it put on the BMC secret); then lab deletes the
Secret (BMO reads the credentials until the end, so not before). When no host or secret is left in
the hosts namespace, the namespace goes too, waited for until kube-controller-manager has removed
it (a create right after must not meet a terminating namespace).

Every pass reads what the management cluster shows (two LISTs), never what this process remembers:
a re-run after Ctrl-C or --no-wait finishes the job, and deleting what does not exist is no error.
"""

from __future__ import annotations

import datetime as dt
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Protocol

from lab import naming, records
from lab.clusters.create import check_stack
from lab.clusters.session import RunSampling, run_snapshot
from lab.config import Settings
from lab.hosts import inventory
from lab.hosts.tracker import Tracker
from lab.kube import Client
from lab.phases import PHASES, Phase, RunKind

#: DELETE requests in flight at once (the client's QPS limit still applies).
PARALLEL = 10
#: Seconds between two looks at the management cluster while waiting.
POLL = 0.5


@dataclass(frozen=True)
class Plan:
    namespace: str
    indexes: list[int]  # hosts with a BareMetalHost or a Secret
    names: dict[int, str]
    #: nothing else of lab's is in the namespace: it goes once these hosts have
    remove_namespace: bool

    def summary(self) -> str:
        ns = f"; then namespace {self.namespace}" if self.remove_namespace else ""
        return f"{len(self.indexes)} host(s) to delete{ns}"


@dataclass
class Result:
    run_id: int | None  # None: nothing to delete
    plan: Plan
    waited: bool
    deleted: list[str] = field(default_factory=list)
    pending: dict[str, str] = field(default_factory=dict)  # name -> what it still waits for
    namespace_removed: bool = False
    seconds: float = 0.0

    def as_dict(self) -> dict[str, object]:
        return {
            "run": self.run_id,
            "namespace": self.plan.namespace,
            "hosts": [self.plan.names[i] for i in self.plan.indexes],
            "waited": self.waited,
            "deleted": self.deleted,
            "pending": self.pending,
            "namespace_removed": self.namespace_removed,
            "seconds": round(self.seconds, 3),
        }


class Display(Protocol):
    def planned(self, plan: Plan) -> None: ...
    def update(self, counts: dict[Phase, int]) -> None: ...


def make_plan(settings: Settings, inv: inventory.Inventory, indexes: Sequence[int] | None) -> Plan:
    """Pure over one inventory: `indexes` None means every host."""
    have = inv.indexes
    chosen = sorted(have if indexes is None else have & set(indexes))
    return Plan(
        naming.hosts_namespace(settings.prefix),
        chosen,
        {i: naming.host_name(settings.prefix, i) for i in chosen},
        inv.namespace is not None and not (have - set(chosen)),
    )


def _timestamp(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


class Deleter:
    def __init__(self, settings: Settings, mgmt: Client, plan: Plan, tracker: Tracker) -> None:
        self.settings = settings
        self.mgmt = mgmt
        self.plan = plan
        self.tracker = tracker
        self.done: set[int] = set()

    def _parallel(self, calls: list[Callable[[], object]]) -> None:
        if calls:
            with ThreadPoolExecutor(max_workers=min(PARALLEL, len(calls))) as pool:
                list(pool.map(lambda c: c(), calls))

    def request(self, inv: inventory.Inventory) -> None:
        """DELETE every host of the plan that is not being deleted yet; a host already being deleted
        (an earlier run) counts from its deletionTimestamp."""
        calls: list[Callable[[], object]] = []
        for i in self.plan.indexes:
            name = self.plan.names[i]
            host = inv.hosts.get(i)
            if host is None:
                self.tracker.mark(name, Phase.host_delete_requested)
                continue
            since = _timestamp(host["metadata"].get("deletionTimestamp"))
            if since is not None:
                self.tracker.mark(name, Phase.host_delete_requested, since)
                continue

            def one(name: str = name) -> None:
                self.mgmt.delete(inventory.BMH_API, "BareMetalHost", name, self.plan.namespace)
                self.tracker.mark(name, Phase.host_delete_requested)

            calls.append(one)
        self._parallel(calls)

    def step(self, inv: inventory.Inventory) -> None:
        """One pass: the secrets of hosts that are gone, and which hosts are done."""
        calls: list[Callable[[], object]] = []
        for i in self.plan.indexes:
            if i in self.done or i in inv.hosts:
                continue
            secret = inv.secrets.get(i)
            if secret is None:
                self.done.add(i)
                self.tracker.mark(self.plan.names[i], Phase.host_deleted)
            elif not secret["metadata"].get("deletionTimestamp"):
                calls.append(
                    partial(self.mgmt.delete, "v1", "Secret", secret["metadata"]["name"], self.plan.namespace)
                )
        self._parallel(calls)

    def pending(self, inv: inventory.Inventory) -> dict[str, str]:
        out = {}
        for i in self.plan.indexes:
            if i in self.done:
                continue
            if i in inv.hosts:
                state = ((inv.hosts[i].get("status") or {}).get("provisioning") or {}).get("state") or "none"
                out[self.plan.names[i]] = f"BareMetalHost {state}"
            elif i in inv.secrets:
                fin = inv.secrets[i]["metadata"].get("finalizers") or []
                out[self.plan.names[i]] = "Secret" + (f" held by finalizers {fin}" if fin else "")
            else:  # gone since the last pass
                self.done.add(i)
                self.tracker.mark(self.plan.names[i], Phase.host_deleted)
        return out

    def namespace_empty(self) -> bool:
        """No host or secret at all in the namespace (whoever made them)."""
        ns = self.plan.namespace
        return not self.mgmt.list(inventory.BMH_API, "BareMetalHost", ns) and not self.mgmt.list(
            "v1", "Secret", ns
        )

    def remove_namespace(self) -> bool | None:
        """DELETE the namespace when empty: True once it is gone, False while it goes, None when
        something not lab's keeps it (hosts or secrets someone else put there: left alone)."""
        ns = self.mgmt.get("v1", "Namespace", self.plan.namespace)
        if ns is None:
            inventory.forget_key(self.settings)  # no host left to derive a password for
            return True
        if ns["metadata"].get("deletionTimestamp"):
            return False
        if not self.namespace_empty():
            return None
        self.mgmt.delete("v1", "Namespace", self.plan.namespace)
        return False


def delete_hosts(
    settings: Settings,
    mgmt: Client,
    indexes: Sequence[int] | None,
    display: Display,
    *,
    wait: bool = True,
    timeout: float = 600.0,
) -> Result:
    check_stack(mgmt)
    plan = make_plan(settings, inventory.read(settings, mgmt), indexes)
    if not plan.indexes and not plan.remove_namespace:
        return Result(None, plan, wait)
    started = time.monotonic()
    deadline = started + timeout
    snapshot = run_snapshot(settings, count=len(plan.indexes), all=indexes is None)
    with (
        records.open_records(settings) as db,
        records.RunScope(db, RunKind.delete_hosts, sys.argv, snapshot) as run,
    ):
        run_id = run.id
        names = {plan.names[i]: i for i in plan.indexes}
        tracker = Tracker(
            mgmt,
            settings.prefix,
            names,
            db,
            run_id,
            record=names,
            on_change=lambda: display.update(tracker.counts(PHASES[RunKind.delete_hosts])),
        )
        deleter = Deleter(settings, mgmt, plan, tracker)
        result = Result(run_id, plan, wait)
        with RunSampling(settings, db, run_id), tracker:
            display.planned(plan)
            inv = inventory.read(settings, mgmt)
            deleter.request(inv)
            deleter.step(inv)
            settled = False  # every host done, and the namespace gone or kept
            while wait and time.monotonic() < deadline:
                if len(deleter.done) == len(plan.indexes):
                    removed = deleter.remove_namespace() if plan.remove_namespace else None
                    if removed is not False:
                        result.namespace_removed, settled = bool(removed), True
                        break
                time.sleep(POLL)
                inv = inventory.read(settings, mgmt)
                deleter.step(inv)
            inv = inventory.read(settings, mgmt)
            result.pending = deleter.pending(inv) if wait else {}
            if wait and not settled and not result.pending:
                result.pending[plan.namespace] = "namespace not removed yet"
            result.deleted = [plan.names[i] for i in sorted(deleter.done)]
        run.timed_out = bool(result.pending)
        result.seconds = time.monotonic() - started
        return result
