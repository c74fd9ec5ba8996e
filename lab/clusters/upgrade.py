"""`lab upgrade-clusters --to VERSION`: KCP's own rolling upgrade of each cluster's control plane.

Lab changes two things and KCP does the rest, unmodified:
1. Create's convergence (lab.clusters.create.Creator) with the cluster's new control plane
   (lab.manifests.controlplane): the KubeadmControlPlane and the MachineDeployment at the new
   version, and a spare control-plane BareMetalHost beside the current one, with the host-role label
   the control plane's Metal3MachineTemplate selects (the mechanism --workers uses for its hosts).
   The namespace notes both, first (namespaces are applied before everything else).
2. KCP sees its Machine out of date and rolls out with maxSurge 1: a new Machine at the new version,
   which CAPM3 puts on the spare host (the only free control-plane host) once BMO has it available;
   BMO provisions it; the node simulator writes its Node (kubeletVersion the new version, found by
   CAPM3 through its metal3.io/uuid label for the providerID) and mirror pods; KCP updates
   kubeadm-config's kubernetesVersion itself. With the new Machine healthy KCP deletes the old one:
   CAPI drains and deletes its Node, CAPM3 has BMO deprovision its host. Lab then deletes the old
   host (back to `available`, no consumer) with its secret, as scale-down does for worker hosts,
   removes the old Node's mirror pods (the garbage collector's work: lab.nodesim), and applies the
   cluster once more with only the new host noted.

Resumable: the namespace says where each cluster is. A re-run skips clusters already at the target
(one host, KCP status.version the target), re-applies only what its digest says is missing, and
otherwise picks the rollout up where it stands. One recorded run (RunKind.upgrade) per command,
timed per phase and sampled as create's run is (lab.clusters.session.RunSampling: components'
RSS/CPU, metrics, and the idle window once every cluster is upgraded). Clusters with workers are
refused: their MachineDeployment would roll its Machines too, and lab renders no spare worker hosts.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lab import naming, nodesim, phases, records, versions
from lab.backing import Backing, open_backing
from lab.clusters import create, scale
from lab.clusters.session import RunSampling, run_snapshot
from lab.clusters.tracker import Tracker
from lab.config import Settings
from lab.errors import LabError, UsageError
from lab.kube import Client
from lab.manifests import controlplane, names, payload, workers
from lab.manifests.controlplane import ControlPlane
from lab.manifests.kinds import API_VERSIONS
from lab.phases import Phase, RunKind

Obj = dict[str, Any]
BMH_API = API_VERSIONS["BareMetalHost"]
CAPI_API = API_VERSIONS["Cluster"]
KCP_API = API_VERSIONS["KubeadmControlPlane"]
POLL = scale.POLL


@dataclass(frozen=True)
class UpgradePlan:
    """Decided before anything changes."""

    target: str
    names: dict[int, str]
    placement: dict[int, str]
    payload_kb: dict[int, int]
    control_plane: dict[int, ControlPlane]  # as each namespace notes it now
    current: dict[int, str]  # each KCP's spec.version now
    done: set[int] = field(default_factory=set)  # at the target already: nothing to do

    @property
    def todo(self) -> list[int]:
        return [i for i in self.names if i not in self.done]

    def rolled(self, index: int) -> ControlPlane:
        """The control plane to apply: the spare host beside the current one, at the target; an
        upgrade to the target under way (or rolled out, not yet confirmed) stays as it is."""
        cp = self.control_plane[index]
        return cp if cp.version == self.target else cp.rolled_to(self.target)

    def summary(self) -> str:
        resumed = sum(1 for i in self.todo if self.control_plane[i].version == self.target)
        parts = [f"{len(self.todo) - resumed} to upgrade to {self.target}"]
        if resumed:
            parts.append(f"{resumed} to finish")
        if self.done:
            parts.append(f"{len(self.done)} already at {self.target}")
        return ", ".join(parts)


def plan_upgrade(
    prefix: str,
    target: str,
    capi: str,
    indexes: Sequence[int] | None,
    namespaces: Mapping[int, Obj],
    kcps: Mapping[str, Obj],
) -> UpgradePlan:
    """Pure: which clusters to upgrade; `indexes` None means every cluster. Refused with one
    LabError (UsageError for a version the table does not support from a cluster's version) before
    anything changes: a cluster that does not exist, has no KCP yet, has workers, is mid-way through
    an upgrade to another version, or is at a version `target` is no supported upgrade from."""
    if indexes is None:
        indexes = sorted(namespaces)
        if not indexes:
            raise LabError("no clusters to upgrade: create some with lab create-clusters")
    missing = [i for i in indexes if i not in namespaces]
    if missing:
        raise LabError(
            f"{len(missing)} of the clusters do not exist ({naming.cluster_name(prefix, missing[0])} first): "
            "create them with lab create-clusters"
        )
    chosen = {i: naming.cluster_name(prefix, i) for i in indexes}
    with_workers = [i for i in indexes if workers.of_namespace(dict(namespaces[i]))]
    if with_workers:
        first = chosen[with_workers[0]]
        raise LabError(
            f"{len(with_workers)} cluster(s) ({first} first) have workers: upgrade-clusters rolls the control "
            "plane only and has no spare worker hosts for their MachineDeployment; "
            f"lab scale-clusters --workers 0 first"
        )
    cps: dict[int, ControlPlane] = {}
    current: dict[int, str] = {}
    done: set[int] = set()
    for i, name in chosen.items():
        cps[i] = controlplane.of_namespace(dict(namespaces[i]))
        current[i], at_target = _check_cluster(name, cps[i], kcps.get(name), target, capi)
        if at_target:
            done.add(i)
    return UpgradePlan(
        target=target,
        names=chosen,
        placement={
            i: (namespaces[i]["metadata"].get("labels") or {}).get(naming.BACKING_LABEL, naming.LOCAL_BACKING)
            for i in indexes
        },
        payload_kb={i: payload.of_namespace(dict(namespaces[i])) for i in indexes},
        control_plane=cps,
        current=current,
        done=done,
    )


def _check_cluster(name: str, cp: ControlPlane, kcp: Obj | None, target: str, capi: str) -> tuple[str, bool]:
    """(the KCP's spec.version, whether the cluster is at `target` already); raises when it may not
    be upgraded to `target` now (plan_upgrade)."""
    if kcp is None:
        raise LabError(
            f"{name} has no KubeadmControlPlane yet: finish its create first (lab create-clusters)"
        )
    spec_v = str((kcp.get("spec") or {}).get("version") or "")
    status_v = (kcp.get("status") or {}).get("version")
    if cp.version == target:
        return spec_v, not cp.rolling and status_v == target and spec_v == target
    if cp.rolling:
        raise LabError(
            f"{name} is being upgraded to {cp.version}: finish that first (lab upgrade-clusters --to {cp.version})"
        )
    try:
        versions.check_upgrade(spec_v, target, capi)
    except UsageError as e:
        raise UsageError(f"{name} at {spec_v}: {e}") from None
    return spec_v, False


@dataclass
class UpgradeResult:
    plan: UpgradePlan
    run: int | None = None
    done: list[str] = field(default_factory=list)
    stuck: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    waited: bool = True

    def as_dict(self) -> dict[str, object]:
        p = self.plan
        return {
            "to": p.target,
            "run": self.run,
            "upgraded": self.done,
            "unchanged": [p.names[i] for i in sorted(p.done)],
            "stuck": self.stuck,
            "waited": self.waited,
            "seconds": round(self.seconds, 3),
        }


@dataclass
class _Cluster:
    """One cluster's rollout as lab follows it."""

    index: int
    name: str
    cp: ControlPlane  # as applied: (old, new) hosts, or (new,) when resumed after the old one went
    hold: str = "objects not applied yet"
    collected: bool = False  # the old Node's mirror pods removed
    settled: bool = False  # applied again with the new host only
    upgraded: bool = False  # cluster_upgraded reached: not looked at again


class Upgrader:
    """Applies each cluster's upgrade, then follows and finishes the rollouts, recording phases."""

    def __init__(
        self,
        settings: Settings,
        mgmt: Client,
        plan: UpgradePlan,
        tracker: Tracker,
        namespaces: Mapping[int, Obj],
        parallel: int,
    ) -> None:
        self.settings = settings
        self.mgmt = mgmt
        self.plan = plan
        self.tracker = tracker
        self.namespaces = dict(namespaces)
        self.parallel = parallel
        self.clusters = {plan.names[i]: _Cluster(i, plan.names[i], plan.rolled(i)) for i in plan.todo}
        self._backings: dict[str, Backing] = {}

    def _creators(self, indexes: Sequence[int], shapes: Mapping[int, ControlPlane], mark: bool) -> None:
        """Create's convergence of `indexes` with their control planes `shapes`, one Creator per
        payload; clusters whose digest says they have exactly these objects are not applied again."""
        p = self.plan
        for b in sorted({p.placement[i] for i in indexes}):
            if b not in self._backings:
                self._backings[b] = open_backing(self.settings, b)
        for kb in sorted({p.payload_kb[i] for i in indexes}):
            idx = [i for i in indexes if p.payload_kb[i] == kb]
            has_digest = {
                i
                for i in idx
                if create.DIGEST_ANNOTATION in ((self.namespaces[i]["metadata"].get("annotations")) or {})
            }
            cplan = create.Plan(
                indexes=idx,
                names={i: p.names[i] for i in idx},
                placement={i: p.placement[i] for i in idx},
                complete=has_digest,
                partial=set(idx) - has_digest,
            )
            creator = create.Creator(
                self.settings,
                self.mgmt,
                cplan,
                self._backings,
                self.tracker if mark else None,
                self.parallel,
                kb,
                0,
                applied_phase=Phase.upgrade_applied,
                namespaces=self.namespaces,
                control_planes={i: shapes[i] for i in idx},
            )
            creator.confirm_complete()
            creator.run()
            if mark:  # applied now, or by the interrupted run: the step starts here either way
                for i in cplan.complete:
                    self.tracker.mark(p.names[i], Phase.upgrade_applied)

    def apply(self) -> None:
        todo = self.plan.todo
        self._creators(todo, {i: self.clusters[self.plan.names[i]].cp for i in todo}, mark=True)
        for c in self.clusters.values():
            c.hold = "KCP has not started the rollout yet"

    def pass_(self) -> set[str]:
        """One look at every cluster still rolling (four cached LISTs for all of them); the ones done."""
        hosts = {
            (h["metadata"]["namespace"], h["metadata"]["name"]): h
            for h in self.mgmt.list(
                BMH_API,
                "BareMetalHost",
                label_selector=f"{workers.ROLE_LABEL}={workers.CONTROL_PLANE}",
                cached=True,
            )
        }
        machines: dict[str, list[Obj]] = {}
        for m in self.mgmt.list(CAPI_API, "Machine", label_selector=phases.CONTROL_PLANE_LABEL, cached=True):
            machines.setdefault(m["metadata"]["namespace"], []).append(m)
        kcps = {
            k["metadata"]["namespace"]: k for k in self.mgmt.list(KCP_API, "KubeadmControlPlane", cached=True)
        }
        clusters = {
            c["metadata"]["namespace"]: c
            for c in self.mgmt.list(CAPI_API, "Cluster", cached=True)
            if c["metadata"]["name"] == c["metadata"]["namespace"]
        }
        finished = set()
        to_settle = []
        for name, c in self.clusters.items():
            if c.upgraded:
                continue
            if self._step(c, hosts, machines.get(name, []), kcps.get(name), clusters.get(name)):
                c.upgraded = True
                finished.add(name)
            elif c.hold == "settling":
                to_settle.append(c)
        if to_settle:
            idx = [c.index for c in to_settle]
            self._creators(idx, {c.index: c.cp.settled() for c in to_settle}, mark=False)
            for c in to_settle:
                c.settled, c.hold = True, "KCP status not at the new version yet"
        return finished

    def _step(
        self,
        c: _Cluster,
        hosts: Mapping[tuple[str, str], Obj],
        machines: Sequence[Obj],
        kcp: Obj | None,
        cluster: Obj | None,
    ) -> bool:
        """Mark what this cluster's rollout shows now, do lab's part of it; True once upgraded."""
        new = [m for m in machines if (m.get("spec") or {}).get("version") == self.plan.target]
        if not self._new_machine(c, hosts, new):
            return False
        old = [m for m in machines if m not in new]
        if old:
            c.hold = f"KCP has not deleted the old Machine {old[0]['metadata']['name']} yet"
            return False
        self.tracker.mark(c.name, Phase.old_machine_deleted)
        if not c.collected:
            c.collected = self._collect(c)
        if not self._old_host(c, hosts):
            return False
        return self._finished(c, machines, kcp, cluster)

    def _new_machine(self, c: _Cluster, hosts: Mapping[tuple[str, str], Obj], new: Sequence[Obj]) -> bool:
        """The spare host provisioned, its Node written, the new Machine's nodeRef: True at the last."""
        mark = self.tracker.mark
        host_name = names.control_plane_host(c.name, c.cp.current)
        host = hosts.get((c.name, host_name))
        if host is not None and phases.is_provisioned(host):
            mark(c.name, Phase.cp_host_provisioned)
        written = phases.node_written_at(host) if host is not None else None
        if written is not None:
            mark(c.name, Phase.cp_node_written, written)
        if any(((m.get("status") or {}).get("nodeRef") or {}).get("name") for m in new):
            mark(c.name, Phase.cp_node_ref)
            return True
        if Phase.cp_host_provisioned not in self.tracker.state[c.name].reached:
            state = phases.host_phase(host) if host is not None else None
            c.hold = f"spare host {host_name} {state.value if state else 'not registered yet'}"
        else:
            c.hold = "new Node not written yet" if written is None else "new Machine has no nodeRef yet"
        return False

    def _old_host(self, c: _Cluster, hosts: Mapping[tuple[str, str], Obj]) -> bool:
        """The old host deleted once BMO has it back to available with no consumer, as scale-down does
        for worker hosts; then the cluster is applied with the new host only. True when both are done."""
        if c.cp.old is None or c.settled:
            self.tracker.mark(c.name, Phase.old_host_removed)
            return True
        old_name = names.control_plane_host(c.name, c.cp.old)
        h = hosts.get((c.name, old_name))
        if h is None:
            self.tracker.mark(c.name, Phase.old_host_removed)
            c.hold = "settling"  # pass_ applies it with the new host only
            return False
        scale.delete_if_released(self.mgmt, h)
        c.hold = (
            f"old host {old_name} {scale.host_state(h) or 'has no state'}: not deprovisioned and deleted yet"
        )
        return False

    def _finished(self, c: _Cluster, machines: Sequence[Obj], kcp: Obj | None, cluster: Obj | None) -> bool:
        """One control-plane Machine, KCP status.version the target, KCP and Cluster Available, nothing
        of the old Node left in the workload API: True, and cluster_upgraded is marked."""
        status_v = ((kcp or {}).get("status") or {}).get("version")
        if status_v != self.plan.target or len(machines) != 1:
            c.hold = (
                f"KubeadmControlPlane status.version {status_v}, {len(machines)} control-plane Machine(s)"
            )
            return False
        for what, obj in (("KubeadmControlPlane", kcp), ("Cluster", cluster)):
            why = phases.blocking(obj or {})
            if why is not None:
                c.hold = f"{what} {why}"
                return False
        if not self._collect(c):  # the last look: nothing of the old Node is left
            return False
        self.tracker.mark(c.name, Phase.cluster_upgraded)
        return True

    def _collect(self, c: _Cluster) -> bool:
        """The mirror pods of the old Node (gone with its Machine) removed from the workload API."""
        try:
            kubeconfig = nodesim.workload_kubeconfig(self.settings, self.mgmt, c.name, c.name)
            client = Client.from_kubeconfig(kubeconfig, attempts=2, timeout=10.0)
            try:
                nodesim.remove_orphan_mirror_pods(client)
            finally:
                client.close()
        except (LabError, OSError) as e:
            c.hold = f"old Node's mirror pods not removed yet: {e}"
            return False
        return True

    def wait(self, deadline: float) -> dict[str, str]:
        """Until every cluster is upgraded or the deadline passes; what holds the rest."""
        waiting = set(self.clusters)
        while waiting:
            waiting -= self.pass_()
            if not waiting or time.monotonic() >= deadline:
                break
            time.sleep(POLL)
        return {n: self.clusters[n].hold for n in sorted(waiting, key=lambda n: self.clusters[n].index)}


def _kcps(mgmt: Client) -> dict[str, Obj]:
    """namespace -> lab's KubeadmControlPlane there (named like its namespace): one LIST."""
    return {
        k["metadata"]["namespace"]: k
        for k in mgmt.list(KCP_API, "KubeadmControlPlane")
        if k["metadata"]["name"] == k["metadata"]["namespace"]
    }


def upgrade_clusters(
    settings: Settings,
    mgmt: Client,
    indexes: Sequence[int] | None,
    target: str,
    *,
    parallel: int = 10,
    wait: bool = True,
    timeout: float = 1800.0,
    on_plan: Callable[[UpgradePlan], None] = lambda _p: None,
    say: Callable[[str], None] = lambda _m: None,
) -> UpgradeResult:
    """Upgrade clusters `indexes` (None: all) to Kubernetes `target` (checked against the version
    table for each cluster before anything changes)."""
    create.check_stack(mgmt)
    namespaces = create.existing_namespaces(settings, mgmt)
    plan = plan_upgrade(settings.prefix, target, settings.versions.capi, indexes, namespaces, _kcps(mgmt))
    on_plan(plan)
    started = time.monotonic()
    result = UpgradeResult(plan, waited=wait)
    todo = plan.todo
    if todo:
        snapshot = run_snapshot(
            settings,
            to=target,
            start=todo[0],
            count=len(todo),
            clusters=[plan.names[i] for i in todo],
            from_versions=sorted({plan.current[i] for i in todo}),
        )
        with (
            records.open_records(settings) as db,
            records.RunScope(db, RunKind.upgrade, sys.argv, snapshot) as run,
        ):
            result.run = run.id
            names_ = {plan.names[i]: i for i in todo}
            tracker = Tracker(
                mgmt,
                settings.prefix,
                names_,
                db,
                run.id,
                record=list(names_),
                goal=dict.fromkeys(names_, Phase.cluster_upgraded),
                phases=phases.PHASES[RunKind.upgrade],
            )
            upgrader = Upgrader(settings, mgmt, plan, tracker, namespaces, parallel)
            with RunSampling(settings, db, run.id) as sampling:
                upgrader.apply()
                say(f"upgrading {len(todo)} cluster(s) to {target}: spare hosts and versions applied")
                if wait:
                    result.stuck = upgrader.wait(started + timeout)
                    if not result.stuck:
                        sampling.idle()
            if wait:
                result.done = [n for n in names_ if n not in result.stuck]
                run.timed_out = bool(result.stuck)
    result.seconds = time.monotonic() - started
    return result
