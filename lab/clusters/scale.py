"""`lab scale-clusters`: change the worker count W of existing clusters, up or down.

Up is create's convergence with the new W (lab.clusters.create.Creator): the missing worker hosts
and their secrets are applied, the MachineDeployment's replicas become W, the namespace notes W and
gets the new digest; then the tracker waits for the worker phases (all W hosts provisioned, all W
Nodes written, the MachineDeployment Available).

Down removes the highest slots: the Machines on the surplus hosts (slot > W) get CAPI's
delete-machine annotation, which a MachineSet deletes first whatever its deletion order, then the
new W is applied. CAPI deletes each such Machine the real way (drain, Metal3Machine deleted, so
CAPM3 has BMO deprovision the host, then the Node in the workload API), and once no Machine is left
on them the surplus hosts, back to `available`, are deleted with their secrets. A re-run finds
surplus hosts by their slot, so an interrupted scale-down finishes.

Each direction is one recorded run (RunKind.scale, settings direction up/down), timed per phase
and sampled as create's run is (lab.clusters.session.RunSampling: components' RSS/CPU, metrics,
and the idle window once every cluster is done).
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from lab import naming, records
from lab.backing import Backing, open_backing
from lab.clusters import create
from lab.clusters.session import RunSampling, run_snapshot
from lab.clusters.tracker import Tracker
from lab.config import Settings
from lab.errors import LabError
from lab.kube import Client, NotFound
from lab.manifests import names, payload, workers
from lab.manifests.kinds import API_VERSIONS
from lab.phases import SCALE_DOWN, SCALE_UP, Phase, RunKind

Obj = dict[str, Any]
BMH_API = API_VERSIONS["BareMetalHost"]
CAPI_API = API_VERSIONS["Cluster"]
M3_API = API_VERSIONS["Metal3MachineTemplate"]
#: CAPI's clusterv1.DeleteMachineAnnotation: a MachineSet scaling down deletes these Machines first.
DELETE_MACHINE_ANNOTATION = "cluster.x-k8s.io/delete-machine"
DEPLOYMENT_LABEL = "cluster.x-k8s.io/deployment-name"
#: BMO's name for the state a deprovisioned host returns to.
AVAILABLE = ("available", "ready")
POLL = 2.0


@dataclass(frozen=True)
class ScalePlan:
    """Decided before anything changes: each cluster's W now, and the surplus hosts going down."""

    target: int
    names: dict[int, str]
    current: dict[int, int]
    placement: dict[int, str]
    payload_kb: dict[int, int]
    surplus: dict[int, list[str]] = field(default_factory=dict)  # index -> worker hosts past target

    @property
    def up(self) -> list[int]:
        return [i for i in self.names if self.current[i] < self.target]

    @property
    def down(self) -> list[int]:
        return [i for i in self.names if self.current[i] > self.target or self.surplus.get(i)]

    @property
    def unchanged(self) -> list[int]:
        return [i for i in self.names if i not in self.up and i not in self.down]

    def summary(self) -> str:
        return f"{len(self.up)} up, {len(self.down)} down, {len(self.unchanged)} already at {self.target} workers"


def plan_scale(
    prefix: str,
    target: int,
    indexes: Sequence[int] | None,
    namespaces: dict[int, Obj],
    worker_hosts: Sequence[Obj],
) -> ScalePlan:
    """Pure: which clusters go up or down. `indexes` None means every cluster; a cluster asked
    for by range that does not exist is refused (LabError), before anything changes."""
    workers.check_count(target)
    if indexes is None:
        indexes = sorted(namespaces)
        if not indexes:
            raise LabError("no clusters to scale: create some with lab create-clusters")
    missing = [i for i in indexes if i not in namespaces]
    if missing:
        raise LabError(
            f"{len(missing)} of the clusters do not exist ({naming.cluster_name(prefix, missing[0])} first): "
            "create them with lab create-clusters --workers"
        )
    chosen = {i: naming.cluster_name(prefix, i) for i in indexes}
    by_ns: dict[str, list[str]] = {}
    for h in worker_hosts:
        by_ns.setdefault(h["metadata"]["namespace"], []).append(h["metadata"]["name"])
    surplus: dict[int, list[str]] = {}
    for i, name in chosen.items():
        past = [h for h in by_ns.get(name, []) if (names.worker_slot(name, h) or 0) > target]
        if past:
            surplus[i] = sorted(past)
    return ScalePlan(
        target=target,
        names=chosen,
        current={i: workers.of_namespace(namespaces[i]) for i in indexes},
        placement={
            i: (namespaces[i]["metadata"].get("labels") or {}).get(naming.BACKING_LABEL, naming.LOCAL_BACKING)
            for i in indexes
        },
        payload_kb={i: payload.of_namespace(namespaces[i]) for i in indexes},
        surplus=surplus,
    )


@dataclass
class ScaleResult:
    plan: ScalePlan
    runs: dict[str, int] = field(default_factory=dict)  # direction -> run id
    done: list[str] = field(default_factory=list)
    stuck: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, object]:
        p = self.plan
        return {
            "workers": p.target,
            "runs": self.runs,
            "up": [p.names[i] for i in p.up],
            "down": [p.names[i] for i in p.down],
            "unchanged": [p.names[i] for i in p.unchanged],
            "done": self.done,
            "stuck": self.stuck,
            "seconds": round(self.seconds, 3),
        }


def worker_hosts(mgmt: Client, cached: bool = False) -> list[Obj]:
    """Every cluster's worker hosts: one LIST."""
    return mgmt.list(
        BMH_API, "BareMetalHost", label_selector=f"{workers.ROLE_LABEL}={workers.WORKER}", cached=cached
    )


def _plan(settings: Settings, mgmt: Client, indexes: Sequence[int] | None, target: int) -> ScalePlan:
    return plan_scale(
        settings.prefix, target, indexes, create.existing_namespaces(settings, mgmt), worker_hosts(mgmt)
    )


def _open(settings: Settings, plan: ScalePlan, indexes: Sequence[int]) -> dict[str, Backing]:
    return {b: open_backing(settings, b) for b in sorted({plan.placement[i] for i in indexes})}


def _creators(
    settings: Settings, mgmt: Client, plan: ScalePlan, indexes: Sequence[int], tracker: Tracker, parallel: int
) -> list[create.Creator]:
    """One Creator per payload (each renders one): the clusters re-rendered with the new W."""
    backings = _open(settings, plan, indexes)
    # each cluster keeps the control plane it has (an upgraded one its version and host)
    namespaces = create.existing_namespaces(settings, mgmt)
    out = []
    for kb in sorted({plan.payload_kb[i] for i in indexes}):
        idx = [i for i in indexes if plan.payload_kb[i] == kb]
        cplan = create.Plan(
            indexes=idx,
            names={i: plan.names[i] for i in idx},
            placement={i: plan.placement[i] for i in idx},
            partial=set(idx),
        )
        out.append(
            create.Creator(
                settings,
                mgmt,
                cplan,
                backings,
                tracker,
                parallel,
                kb,
                plan.target,
                applied_phase=Phase.scale_applied,
                namespaces=namespaces,
            )
        )
    return out


def _machines_on(mgmt: Client, ns: str, hosts: Sequence[str]) -> list[str]:
    """Names of the Machines whose Metal3Machine holds one of `hosts` (the host's consumerRef)."""
    out = []
    for h in hosts:
        bmh = mgmt.get(BMH_API, "BareMetalHost", h, ns)
        ref = ((bmh or {}).get("spec") or {}).get("consumerRef") or {}
        if ref.get("kind") != "Metal3Machine":
            continue
        m3m = mgmt.get(ref.get("apiVersion") or M3_API, "Metal3Machine", ref["name"], ns)
        owner = next(
            (
                o["name"]
                for o in ((m3m or {}).get("metadata") or {}).get("ownerReferences") or []
                if o.get("kind") == "Machine"
            ),
            None,
        )
        if owner:
            out.append(owner)
    return out


def _mark_for_deletion(mgmt: Client, ns: str, machines: Sequence[str]) -> None:
    res = mgmt.resource(CAPI_API, "Machine")
    for m in machines:
        with contextlib.suppress(NotFound):  # already gone: nothing to mark
            mgmt.request(
                "PATCH",
                res.path(ns, m),
                params={"fieldManager": create.DIGEST_MANAGER},
                body={"metadata": {"annotations": {DELETE_MACHINE_ANNOTATION: "true"}}},
                content_type="application/merge-patch+json",
            )


def _run_scope(
    settings: Settings, db: records.Records, direction: str, plan: ScalePlan, idx: Sequence[int]
) -> records.RunScope:
    """The recorded run of one direction (records.RunScope ends it with how the body ended)."""
    return records.RunScope(
        db,
        RunKind.scale,
        sys.argv,
        run_snapshot(
            settings,
            direction=direction,
            workers=plan.target,
            count=len(idx),
            start=idx[0],
            clusters=[plan.names[i] for i in idx],
        ),
    )


def _scale_up(
    settings: Settings,
    mgmt: Client,
    plan: ScalePlan,
    db: records.Records,
    result: ScaleResult,
    deadline: float,
    parallel: int,
    say: Callable[[str], None],
) -> None:
    idx = plan.up
    names_ = {plan.names[i]: i for i in idx}
    with _run_scope(settings, db, "up", plan, idx) as run:
        result.runs["up"] = run.id
        tracker = Tracker(
            mgmt,
            settings.prefix,
            names_,
            db,
            run.id,
            record=list(names_),
            workers=plan.target,
            goal=dict.fromkeys(names_, Phase.md_available),
            phases=SCALE_UP,
        )
        with RunSampling(settings, db, run.id) as sampling, tracker:
            for c in _creators(settings, mgmt, plan, idx, tracker, parallel):
                c.run()
            say(f"scaling {len(idx)} cluster(s) up to {plan.target} workers: objects applied")
            if tracker.wait(deadline):
                sampling.idle()
            pending = tracker.pending()
        result.stuck.update(pending)
        result.done += [n for n in names_ if n not in pending]
        run.timed_out = bool(pending)


def _scale_down(
    settings: Settings,
    mgmt: Client,
    plan: ScalePlan,
    db: records.Records,
    result: ScaleResult,
    deadline: float,
    parallel: int,
    say: Callable[[str], None],
) -> None:
    idx = plan.down
    names_ = {plan.names[i]: i for i in idx}
    with _run_scope(settings, db, "down", plan, idx) as run:
        result.runs["down"] = run.id
        tracker = Tracker(
            mgmt,
            settings.prefix,
            names_,
            db,
            run.id,
            record=list(names_),
            goal=dict.fromkeys(names_, Phase.hosts_removed),
            phases=SCALE_DOWN,
        )
        with RunSampling(settings, db, run.id) as sampling:
            for i in idx:
                _mark_for_deletion(
                    mgmt, plan.names[i], _machines_on(mgmt, plan.names[i], plan.surplus.get(i, []))
                )
            for c in _creators(settings, mgmt, plan, idx, tracker, parallel):
                c.run()
            say(f"scaling {len(idx)} cluster(s) down to {plan.target} workers: replicas applied")
            waiting = set(names_)
            deleted: set[str] = set()
            while waiting and time.monotonic() < deadline:
                waiting -= _down_pass(mgmt, plan.target, waiting, deleted, tracker)
                if waiting:
                    time.sleep(POLL)
            if not waiting:
                sampling.idle()
        pending = tracker.pending()
        result.stuck.update(pending)
        result.done += [n for n in names_ if n not in pending]
        run.timed_out = bool(pending)


def _down_pass(mgmt: Client, target: int, waiting: set[str], deleted: set[str], tracker: Tracker) -> set[str]:
    """One look at the clusters going down (two LISTs for all of them): marks workers_removed once a
    cluster has no more than `target` worker Machines, deletes its surplus hosts (and their BMC
    secrets) once BMO has them back to available with no consumer, and returns the clusters whose
    surplus hosts are gone (hosts_removed)."""
    machines = mgmt.list(CAPI_API, "Machine", label_selector=DEPLOYMENT_LABEL, cached=True)
    count: dict[str, int] = {}
    for m in machines:
        count[m["metadata"]["namespace"]] = count.get(m["metadata"]["namespace"], 0) + 1
    past: dict[str, list[Obj]] = {}
    for h in worker_hosts(mgmt, cached=True):
        ns = h["metadata"]["namespace"]
        if ns in waiting and (names.worker_slot(ns, h["metadata"]["name"]) or 0) > target:
            past.setdefault(ns, []).append(h)
    finished = set()
    for name in sorted(waiting):
        if count.get(name, 0) > target:
            continue
        tracker.mark(name, Phase.workers_removed)
        if not past.get(name):
            tracker.mark(name, Phase.hosts_removed)
            finished.add(name)
        for h in past.get(name, []):
            host = h["metadata"]["name"]
            if host not in deleted and delete_if_released(mgmt, h):
                deleted.add(host)
    return finished


def delete_if_released(mgmt: Client, host: Obj) -> bool:
    """Delete a host and its BMC secret once BMO has it back to available with no consumer (what
    scale-down does to surplus worker hosts and an upgrade to the old control-plane host); True when
    deleted."""
    free = not (host.get("spec") or {}).get("consumerRef")
    if not (free and host_state(host) in AVAILABLE):
        return False
    ns = host["metadata"]["namespace"]
    mgmt.delete(BMH_API, "BareMetalHost", host["metadata"]["name"], ns)
    mgmt.delete("v1", "Secret", host["spec"]["bmc"]["credentialsName"], ns)
    return True


def host_state(host: Obj) -> str | None:
    """BMO's provisioning state of a host, None before it has one."""
    state: str | None = ((host.get("status") or {}).get("provisioning") or {}).get("state")
    return state


def scale_clusters(
    settings: Settings,
    mgmt: Client,
    indexes: Sequence[int] | None,
    n_workers: int,
    *,
    parallel: int = 10,
    timeout: float = 1800.0,
    on_plan: Callable[[ScalePlan], None] = lambda _p: None,
    say: Callable[[str], None] = lambda _m: None,
) -> ScaleResult:
    """Scale clusters `indexes` (None: all) to `n_workers` workers; down first, then up."""
    create.check_stack(mgmt)
    plan = _plan(settings, mgmt, indexes, n_workers)
    on_plan(plan)
    started = time.monotonic()
    deadline = started + timeout
    result = ScaleResult(plan)
    if plan.down or plan.up:
        with records.open_records(settings) as db:
            if plan.down:
                _scale_down(settings, mgmt, plan, db, result, deadline, parallel, say)
            if plan.up:
                _scale_up(settings, mgmt, plan, db, result, deadline, parallel, say)
    result.seconds = time.monotonic() - started
    return result
