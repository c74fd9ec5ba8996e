"""`lab delete-clusters`: take workload clusters apart in the order their controllers need.

Order, per cluster, and why:
1. DELETE the Cluster: CAPI deletes the MachineDeployment, KCP and Machines; CAPM3 deprovisions the
   host through BMO (test mode). CAPI drains and looks up the Node through the workload apiserver,
   so that apiserver stays up until the Cluster object is gone.
2. DELETE the BareMetalHosts and wait until BMO has removed its finalizer (it also releases the
   finalizer it put on the BMC secret).
3. DELETE the secrets, then the namespace; wait until kube-controller-manager's namespace
   controller has removed it (CAPM3's data templates and anything else left go with it).
4. The backing's apiserver, etcd tenant and files (Backing.remove).

Every step is driven by what the management cluster shows on each pass (a few LISTs across
namespaces, never a GET per cluster), not by what this process remembers, so a re-run after a
crash at any point picks up where things are. Deleting what does not exist is not an error.
Anything a backing still carries for a cluster whose namespace is already gone (a crash after step
3) is a leftover: it is removed at once. So are the certificates `lab render` wrote for clusters
whose objects were never applied (the local backing counts every PKI directory as carried). Races with a concurrent create of the same cluster are not
handled: create writes PKI before the namespace, so do not delete a range that is being created.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from lab import management, naming, phases, records
from lab.backing import Backing, open_all
from lab.backing.store import entries
from lab.clusters.inventory import cluster_namespaces
from lab.clusters.session import RunSampling, run_snapshot
from lab.config import Settings
from lab.kube import ApiError, Client, NotFound
from lab.kube.errors import retryable
from lab.manifests.common import CAPI_CLUSTER_LABEL
from lab.manifests.kinds import API_VERSIONS
from lab.phases import PHASES, Phase, RunKind

#: DELETE requests in flight at once (the client's QPS limit still applies).
PARALLEL = 10
#: Seconds between two looks at the management cluster while waiting.
POLL = 1.0
DELETE_PHASES = PHASES[RunKind.delete]

Obj = dict[str, Any]
Progress = Callable[[dict[Phase, int], int, int], None]


@dataclass(frozen=True)
class Target:
    name: str
    index: int
    backing: str


@dataclass(frozen=True)
class Plan:
    """What a delete run works on, decided before anything changes."""

    #: clusters with a namespace: the whole sequence
    clusters: list[Target]
    #: backing name -> clusters it still carries that have no namespace any more
    leftovers: dict[str, list[str]]

    @property
    def names(self) -> list[str]:
        swept = {n for ns in self.leftovers.values() for n in ns}
        return [t.name for t in self.clusters] + sorted(swept, key=_index_key)

    def summary(self) -> str:
        swept = sum(len(v) for v in self.leftovers.values())
        parts = [f"{len(self.clusters)} cluster(s) to delete"]
        if swept:
            parts.append(f"{swept} leftover(s) without a namespace to sweep")
        return ", ".join(parts)


@dataclass
class Result:
    run_id: int | None
    plan: Plan
    waited: bool
    requested: list[str] = field(default_factory=list)  # Cluster DELETEs this run sent
    deleted: list[str] = field(default_factory=list)  # nothing of them remains
    pending: dict[str, str] = field(default_factory=dict)  # name -> what it still waits for
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "run": self.run_id,
            "clusters": [t.name for t in self.plan.clusters],
            "leftovers": sorted((n for v in self.plan.leftovers.values() for n in v), key=_index_key),
            "requested": self.requested,
            "waited": self.waited,
            "deleted": self.deleted,
            "pending": self.pending,
            "seconds": round(self.seconds, 3),
        }


def _index_key(name: str) -> tuple[int, str]:
    head, _, tail = name.rpartition("-")
    return (int(tail), head) if tail.isdigit() else (sys.maxsize, name)


# --- planning --------------------------------------------------------------------------------


def select(
    prefix: str, names: Sequence[str] | None, namespaces: Iterable[Obj]
) -> tuple[list[Target], set[str]]:
    """Pure: the clusters to delete (those of `names` with a namespace, every one of `prefix` when
    names is None) in index order, and the set of names asked for that have no namespace."""
    wanted = None if names is None else set(names)
    found: dict[str, Target] = {}
    for ns in namespaces:
        name = ns["metadata"]["name"]
        index = naming.parse_index(prefix, name)
        if index is None or (wanted is not None and name not in wanted):
            continue
        labels = ns["metadata"].get("labels") or {}
        found[name] = Target(name, index, labels.get(naming.BACKING_LABEL, naming.LOCAL_BACKING))
    missing = set() if wanted is None else wanted - set(found)
    return sorted(found.values(), key=lambda t: t.index), missing


def leftovers(
    prefix: str, names: Sequence[str] | None, with_namespace: Iterable[str], present: Mapping[str, set[str]]
) -> dict[str, list[str]]:
    """Pure: per backing, the clusters it carries (`present`) that were asked for (every one of
    `prefix` when names is None) and have no namespace: what a crash after the namespace left."""
    have = set(with_namespace)
    wanted = None if names is None else set(names)
    out: dict[str, list[str]] = {}
    for backing, carried in present.items():
        picked = [
            n
            for n in carried
            if n not in have and naming.parse_index(prefix, n) is not None and (wanted is None or n in wanted)
        ]
        if picked:
            out[backing] = sorted(picked, key=_index_key)
    return out


def known_backings(settings: Settings, targets: Sequence[Target]) -> dict[str, Backing]:
    """Every backing a cluster may live on: local and mux (in local mode), the registered ones, and those the
    namespaces name. A registered backing that cannot be reached fails the delete before it starts."""
    local = list(naming.BUILT_IN_BACKINGS) if management.for_settings(settings).local_backing else []
    names = [*local, *(e.name for e in entries(settings)), *(t.backing for t in targets)]
    return open_all(settings, names)


def make_plan(
    settings: Settings, mgmt: Client, names: Sequence[str] | None
) -> tuple[Plan, dict[str, Backing]]:
    """Reads only: the namespaces (one LIST) and what each backing carries."""
    targets, _missing = select(settings.prefix, names, cluster_namespaces(mgmt))
    backings = known_backings(settings, targets)
    present = {n: b.present() for n, b in backings.items()}
    plan = Plan(targets, leftovers(settings.prefix, names, [t.name for t in targets], present))
    return plan, backings


# --- what the management cluster shows -------------------------------------------------------


@dataclass
class Snapshot:
    """One look at the management cluster: every kind the sequence waits on, listed once."""

    namespaces: dict[str, Obj]
    clusters: dict[str, Obj]  # namespace -> lab's Cluster
    machines: dict[str, list[Obj]]  # namespace -> Machines
    hosts: dict[str, list[Obj]]  # namespace -> BareMetalHosts

    @classmethod
    def take(
        cls, mgmt: Client, wanted: set[str], capi: bool = True, hosts: bool = True, cached: bool = False
    ) -> Snapshot:
        """`capi`/`hosts` False: no cluster waits on that step any more, so its kinds are not listed
        (what is not listed reads as gone, which is what those clusters already saw). `cached`: from
        the apiserver's watch cache (Client.list); safe for the passes after a first consistent
        look, since that cache only moves forward."""

        def by_ns(items: list[Obj]) -> dict[str, list[Obj]]:
            out: dict[str, list[Obj]] = {}
            for o in items:
                ns = o["metadata"].get("namespace")
                if ns in wanted:
                    out.setdefault(ns, []).append(o)
            return out

        namespaces = {
            ns["metadata"]["name"]: ns
            for ns in cluster_namespaces(mgmt, cached)
            if ns["metadata"]["name"] in wanted
        }
        clusters: dict[str, Obj] = {}
        machines: list[Obj] = []
        if capi:
            for o in mgmt.list(
                API_VERSIONS["Cluster"], "Cluster", label_selector=naming.CLUSTER_LABEL, cached=cached
            ):
                meta = o["metadata"]
                if meta["namespace"] in wanted and meta["name"] == meta["namespace"]:
                    clusters[meta["namespace"]] = o
            machines = mgmt.list(
                API_VERSIONS["Cluster"], "Machine", label_selector=CAPI_CLUSTER_LABEL, cached=cached
            )
        bmhs: list[Obj] = []
        if capi or hosts:
            bmhs = mgmt.list(
                API_VERSIONS["BareMetalHost"],
                "BareMetalHost",
                label_selector=naming.CLUSTER_LABEL,
                cached=cached,
            )
        return cls(namespaces, clusters, by_ns(machines), by_ns(bmhs))


def poll_interval(waiting: int) -> float:
    """Seconds between passes: POLL, longer with many clusters so the LISTs stay cheap for the
    management apiserver (1000 clusters: a pass every 5 s)."""
    return max(POLL, waiting / 200)


def _deleting(obj: Mapping[str, Any]) -> bool:
    return bool(obj["metadata"].get("deletionTimestamp"))


def _timestamp(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def cluster_hold(cluster: Obj, machines: Sequence[Obj], hosts: Sequence[Obj] = ()) -> str:
    """Pure: why a Cluster being deleted is not gone yet. Hosts CAPM3 has released (no image) that
    BMO has not started to deprovision are named: at 100 clusters that queue was the wait (84
    hosts still `provisioned` 4 min in, BMO at its default of NumCPU workers, 2 here)."""
    if machines:
        states = sorted({(m.get("status") or {}).get("phase") or "?" for m in machines})
        queued = sum(
            1
            for h in hosts
            if not (h.get("spec") or {}).get("image")
            and ((h.get("status") or {}).get("provisioning") or {}).get("state") == "provisioned"
        )
        bmo = f"; {queued} BareMetalHost(s) released, waiting for BMO to deprovision" if queued else ""
        return f"Cluster deleting: {len(machines)} Machine(s) left ({', '.join(states)}){bmo}"
    cond = phases.condition(cluster, "Deleting")
    if cond and cond.get("message"):
        return f"Cluster deleting: {cond['message']}"
    return f"Cluster deleting, finalizers {cluster['metadata'].get('finalizers') or []}"


def hosts_hold(hosts: Sequence[Obj]) -> str:
    """Pure: why the BareMetalHosts are not gone yet."""
    states = sorted({((h.get("status") or {}).get("provisioning") or {}).get("state") or "?" for h in hosts})
    return f"{len(hosts)} BareMetalHost(s) being deleted ({', '.join(states)})"


def namespace_hold(ns: Obj) -> str:
    """Pure: the namespace controller's own account (conditions NamespaceContentRemaining and
    NamespaceFinalizersRemaining) of what keeps a namespace."""
    for type_ in (
        "NamespaceFinalizersRemaining",
        "NamespaceContentRemaining",
        "NamespaceDeletionContentFailure",
    ):
        c = phases.condition(ns, type_)
        if c and c.get("status") == "True":
            return f"namespace: {c.get('message', type_)}"
    return "namespace being deleted"


# --- the run ---------------------------------------------------------------------------------


@dataclass
class Deleter:
    settings: Settings
    mgmt: Client
    plan: Plan
    backings: dict[str, Backing]
    db: records.Records | None = None
    run_id: int | None = None
    on_progress: Progress | None = None
    reached: dict[str, set[Phase]] = field(default_factory=dict)
    requested: list[str] = field(default_factory=list)
    _secrets_done: set[str] = field(default_factory=set)
    #: name -> the step it waits on after the last pass: "capi", "hosts" or "namespace"
    stage: dict[str, str] = field(default_factory=dict)
    _index: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for t in self.plan.clusters:
            self._index[t.name] = t.index
        for names in self.plan.leftovers.values():
            for n in names:
                self._index[n] = naming.parse_index(self.settings.prefix, n) or 0
        self.reached = {n: set() for n in self._index}

    # --- bookkeeping ---------------------------------------------------------------------------

    def mark(self, name: str, phase: Phase, ts: float | None = None) -> None:
        if phase in self.reached[name]:
            return
        self.reached[name].add(phase)
        if self.db is not None and self.run_id is not None:
            self.db.record(self.run_id, name, self._index[name], phase, time.time() if ts is None else ts)

    def mark_all(self, name: str, upto: Phase, ts: float | None = None) -> None:
        """`upto` and every phase before it: they are all true once `upto` is."""
        for p in DELETE_PHASES[: DELETE_PHASES.index(upto) + 1]:
            self.mark(name, p, ts)

    def done(self) -> list[str]:
        last = DELETE_PHASES[-1]
        return [n for n, r in self.reached.items() if last in r]

    def progress(self) -> None:
        if self.on_progress is not None:
            counts = {p: sum(p in r for r in self.reached.values()) for p in DELETE_PHASES}
            self.on_progress(counts, len(self.done()), len(self.reached))

    # --- steps ---------------------------------------------------------------------------------

    def _parallel(self, calls: list[Callable[[], object]]) -> None:
        if not calls:
            return
        with ThreadPoolExecutor(
            max_workers=min(PARALLEL, len(calls)), thread_name_prefix="lab-delete"
        ) as pool:
            for fut in [pool.submit(c) for c in calls]:
                fut.result()

    def request(self, snap: Snapshot) -> None:
        """DELETE every Cluster not already being deleted; the request time starts each cluster's clock."""
        calls: list[Callable[[], object]] = []
        for t in self.plan.clusters:
            cluster = snap.clusters.get(t.name)
            if cluster is None:
                self.mark(t.name, Phase.delete_requested)
            elif _deleting(cluster):  # an earlier run (--no-wait, or killed) asked already
                self.mark(
                    t.name, Phase.delete_requested, _timestamp(cluster["metadata"]["deletionTimestamp"])
                )
            else:
                calls.append(partial(self._delete_cluster, t.name))
        self._parallel(calls)
        self.progress()

    def _delete_cluster(self, name: str) -> None:
        self.mgmt.delete(API_VERSIONS["Cluster"], "Cluster", name, name)
        self.mark(name, Phase.delete_requested)
        self.requested.append(name)

    def sweep(self) -> None:
        """Leftovers without a namespace: their backing removes what it still carries."""
        for backing, names in self.plan.leftovers.items():
            for n in names:
                self.mark(n, Phase.delete_requested)
            self._remove(backing, names)

    def _remove(self, backing: str, names: list[str]) -> None:
        # Backing.remove stops the apiserver and drops the tenant in one call: both are stamped
        # when it returns.
        self.backings[backing].remove(names)
        now = time.time()
        for n in names:
            self.mark_all(n, Phase.apiserver_stopped, now)
        self.progress()

    def step(self, snap: Snapshot) -> dict[str, str]:
        """One pass over the clusters still in the sequence; returns name -> what each waits for."""
        waiting: dict[str, str] = {}
        calls: list[Callable[[], object]] = []
        gone: dict[str, list[str]] = {}
        for t in self.plan.clusters:
            name = t.name
            if Phase.apiserver_stopped in self.reached[name]:
                continue
            ns = snap.namespaces.get(name)
            if ns is None:
                self.mark_all(name, Phase.namespace_deleted)
                gone.setdefault(t.backing, []).append(name)
                continue
            self.stage[name], waiting[name] = self._advance(name, ns, snap, calls)
        self._parallel(calls)
        for backing, names in gone.items():
            self._remove(backing, names)
        self.progress()
        return waiting

    def _advance(
        self, name: str, ns: Obj, snap: Snapshot, calls: list[Callable[[], object]]
    ) -> tuple[str, str]:
        """One cluster whose namespace is still there: queue on `calls` the deletes its next step
        needs; returns (stage, what it waits for)."""
        cluster = snap.clusters.get(name)
        machines = snap.machines.get(name, [])
        if cluster is not None:
            if not machines:
                self.mark(name, Phase.machines_deleted)
            if not _deleting(cluster):  # created again behind our back, or a request was lost
                calls.append(partial(self.mgmt.delete, API_VERSIONS["Cluster"], "Cluster", name, name))
            return "capi", cluster_hold(cluster, machines, snap.hosts.get(name, []))
        self.mark_all(name, Phase.cluster_deleted)
        hosts = snap.hosts.get(name, [])
        if hosts:
            calls.extend(
                partial(
                    self.mgmt.delete,
                    h["apiVersion"],
                    "BareMetalHost",
                    h["metadata"]["name"],
                    h["metadata"]["namespace"],
                )
                for h in hosts
                if not _deleting(h)
            )
            return "hosts", hosts_hold(hosts)
        if name not in self._secrets_done:
            calls.append(partial(self._delete_secrets, name))
        if not _deleting(ns):
            calls.append(partial(self.mgmt.delete, "v1", "Namespace", name))
        return "namespace", namespace_hold(ns)

    def _delete_secrets(self, namespace: str) -> None:
        """One deletecollection call: the namespace's secrets go before the namespace itself."""
        res = self.mgmt.resource("v1", "Secret")
        with contextlib.suppress(NotFound):
            self.mgmt.request("DELETE", res.path(namespace))
        self._secrets_done.add(namespace)

    def run(self, wait: bool, deadline: float) -> dict[str, str]:
        """Request, sweep, and (wait) step until every cluster is gone or the monotonic deadline;
        returns what the clusters not done wait for."""
        wanted = {t.name for t in self.plan.clusters}
        snap = Snapshot.take(self.mgmt, wanted) if wanted else Snapshot({}, {}, {}, {})
        self.request(snap)
        self.sweep()
        if not wait:
            return {
                t.name: "deletion requested (--no-wait)"
                for t in self.plan.clusters
                if Phase.apiserver_stopped not in self.reached[t.name]
            }
        waiting = self.step(snap)
        while waiting and time.monotonic() < deadline:
            time.sleep(min(poll_interval(len(waiting)), max(0.0, deadline - time.monotonic())))
            stages = {self.stage[n] for n in waiting}
            try:
                snap = Snapshot.take(
                    self.mgmt, set(waiting), capi="capi" in stages, hosts="hosts" in stages, cached=True
                )
                waiting = self.step(snap)
            except ApiError as e:
                if not retryable(e):
                    raise
                # the client's own retries ran out (an apiserver starved or restarting): the
                # clusters still wait, and the next pass looks again until the deadline
                waiting = {n: f"management API not answering: {e}" for n in waiting}
        return waiting


def delete(
    settings: Settings,
    mgmt: Client,
    names: Sequence[str] | None,
    *,
    wait: bool = True,
    timeout: float = 1800.0,
    on_progress: Progress | None = None,
    on_plan: Callable[[Plan], None] | None = None,
) -> Result:
    """Delete the named clusters (every cluster of this prefix, leftovers included, when None).

    Raises LabError before anything changes when the management cluster does not answer or a
    backing cannot be opened. Records a delete run with every cluster's phase timestamps.
    """
    from lab.clusters.create import check_stack

    check_stack(mgmt)
    plan, backings = make_plan(settings, mgmt, names)
    if on_plan is not None:
        on_plan(plan)
    started = time.monotonic()
    if not plan.names:
        return Result(None, plan, wait)
    snapshot = run_snapshot(
        settings,
        clusters=len(plan.names),
        names="all" if names is None else f"{len(names)} named",
        wait=wait,
    )
    with (
        records.open_records(settings) as db,
        records.RunScope(db, RunKind.delete, sys.argv, snapshot) as run,
    ):
        deleter = Deleter(settings, mgmt, plan, backings, db, run.id, on_progress)
        with RunSampling(settings, db, run.id):
            pending = deleter.run(wait, started + timeout)
        result = Result(run.id, plan, wait, sorted(deleter.requested, key=_index_key))
        result.deleted = sorted(deleter.done(), key=_index_key)
        result.pending = pending
        result.seconds = time.monotonic() - started
        run.timed_out = bool(pending) and wait
        return result
