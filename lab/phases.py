"""The phase vocabulary of create and delete runs (Phase, PHASES, PREVIOUS; lab.records stores
them, lab.report reads them) and which create phases an object seen by a watch shows: pure
functions, so every watcher (and the tests) read the same fields the same way.

Fields, as served at the pinned versions (CAPI v1beta2, BMO v1alpha1):
- BareMetalHost: status.provisioning.state == "provisioned" (BMO's StateProvisioned); annotation
  NODE_WRITTEN_ANNOTATION, set once by the node simulator when it has written the host's Node (and,
  for a control-plane host, the mirror pods and kubeadm-config): its value is the time of that write,
  so the record does not depend on when a watcher happens to see the annotation
- Machine (control plane only, label cluster.x-k8s.io/control-plane): status.nodeRef.name set
- KubeadmControlPlane: status.initialization.controlPlaneInitialized true (set once KCP finds
  kube-system/kubeadm-config in the workload cluster), and condition Available=True
- Cluster: condition Available=True
- MachineDeployment (workers): spec.replicas > 0, status.availableReplicas == status.replicas ==
  spec.replicas and condition Available=True
- worker BareMetalHosts (label lab.manifests.workers.ROLE_LABEL=worker) count towards the cluster's
  worker phases (lab.clusters.tracker adds them up), never towards bmh_provisioned or node_written
v1beta2 conditions are metav1.Condition lists under status.conditions. Each workload cluster lives
in the namespace of its own name, so the namespace names the cluster.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from lab import naming
from lab.manifests import workers
from lab.manifests.kinds import API_VERSIONS


class RunKind(StrEnum):
    create = "create"
    delete = "delete"
    create_hosts = "create-hosts"
    delete_hosts = "delete-hosts"
    scale = "scale"
    upgrade = "upgrade"


class Phase(StrEnum):
    """What happened to one cluster, in lifecycle order within each kind of run.

    create:
      applied            lab's server-side apply of all the cluster's objects returned
      bmh_provisioned    BMO (test mode) moved the BareMetalHost to `provisioned`
      node_written       the node simulator wrote Node, mirror pods and kubeadm-config
      kcp_initialized    KCP status.initialization.controlPlaneInitialized (KCP saw kubeadm-config)
      node_ref           the control-plane Machine got status.nodeRef (CAPM3 set the providerID first)
      kcp_available      KubeadmControlPlane condition Available=True
      cluster_available  Cluster condition Available=True: the cluster is done
    kcp_initialized and node_ref both follow node_written and race each other; PREVIOUS says which
    phase each one's step is measured from.

    delete:
      delete_requested   lab's DELETE of the Cluster was accepted
      machines_deleted   the cluster's Machines are gone
      cluster_deleted    the Cluster object is gone (finalizers done)
      namespace_deleted  the cluster's namespace is gone from the management cluster
      tenant_deleted     the etcd tenant (user, role, keys under /<cluster>/) is gone
      apiserver_stopped  the workload kube-apiserver is stopped: the cluster is done

    create with --workers W > 0 adds, before cluster_available (a v1beta2 Cluster is Available only
    once its MachineDeployments are: condition WorkersAvailable):
      workers_provisioned  BMO moved all W worker hosts to `provisioned`
      workers_written      the node simulator wrote all W worker Nodes (the last one's own timestamp)
      md_available         the MachineDeployment has W available replicas and Available=True
    scale (`lab scale-clusters`), per cluster: scale_applied (lab's apply of the new W returned),
    then going up the three worker phases above, going down workers_removed (no Machine of the
    surplus hosts is left: CAPI deleted their Nodes first) and hosts_removed (the surplus hosts,
    deprovisioned by BMO, are deleted with their secrets).

    upgrade (`lab upgrade-clusters`), per cluster, each step KCP's rollout or lab's part of it:
      upgrade_applied      lab's apply returned: the spare control-plane host and the new version
      cp_host_provisioned  BMO provisioned the spare host for KCP's new Machine
      cp_node_written      the node simulator wrote the new Node (and mirror pods) at the new version
      cp_node_ref          the new control-plane Machine got its nodeRef
      old_machine_deleted  KCP deleted the old Machine (CAPI drained and deleted its Node)
      old_host_removed     the old host, deprovisioned by BMO, is deleted with its secret
      cluster_upgraded     KCP status.version is the new one, KCP and Cluster Available

    create-hosts and delete-hosts (standalone BareMetalHosts, per host): lab's apply returned
    (host_applied) or its DELETE was accepted (host_delete_requested), then each BMO provisioning
    state the host was first seen in (BMO_STATES), then host_deleted: the host and its secret are gone.
    """

    applied = "applied"
    bmh_provisioned = "bmh_provisioned"
    node_written = "node_written"
    kcp_initialized = "kcp_initialized"
    node_ref = "node_ref"
    kcp_available = "kcp_available"
    cluster_available = "cluster_available"

    delete_requested = "delete_requested"
    machines_deleted = "machines_deleted"
    cluster_deleted = "cluster_deleted"
    namespace_deleted = "namespace_deleted"
    tenant_deleted = "tenant_deleted"
    apiserver_stopped = "apiserver_stopped"

    host_applied = "host_applied"
    host_registering = "registering"
    host_inspecting = "inspecting"
    host_preparing = "preparing"
    host_available = "available"
    host_provisioning = "provisioning"
    host_provisioned = "provisioned"

    host_delete_requested = "host_delete_requested"
    host_deprovisioning = "deprovisioning"
    host_powering_off = "powering off before delete"
    host_deleting = "deleting"
    host_deleted = "host_deleted"

    scale_applied = "scale_applied"
    workers_provisioned = "workers_provisioned"
    workers_written = "workers_written"
    md_available = "md_available"
    workers_removed = "workers_removed"
    hosts_removed = "hosts_removed"

    upgrade_applied = "upgrade_applied"
    cp_host_provisioned = "cp_host_provisioned"
    cp_node_written = "cp_node_written"
    cp_node_ref = "cp_node_ref"
    old_machine_deleted = "old_machine_deleted"
    old_host_removed = "old_host_removed"
    cluster_upgraded = "cluster_upgraded"


#: The phases of each kind of run, in order: the first is the origin of every latency, the last
#: means "this cluster is done".
PHASES: dict[RunKind, tuple[Phase, ...]] = {
    RunKind.create: (
        Phase.applied,
        Phase.bmh_provisioned,
        Phase.node_written,
        Phase.kcp_initialized,
        Phase.node_ref,
        Phase.kcp_available,
        Phase.cluster_available,
    ),
    RunKind.delete: (
        Phase.delete_requested,
        Phase.machines_deleted,
        Phase.cluster_deleted,
        Phase.namespace_deleted,
        Phase.tenant_deleted,
        Phase.apiserver_stopped,
    ),
    RunKind.create_hosts: (
        Phase.host_applied,
        Phase.host_registering,
        Phase.host_inspecting,
        Phase.host_preparing,
        Phase.host_available,
        Phase.host_provisioning,
        Phase.host_provisioned,
    ),
    RunKind.delete_hosts: (
        Phase.host_delete_requested,
        Phase.host_deprovisioning,
        Phase.host_powering_off,
        Phase.host_deleting,
        Phase.host_deleted,
    ),
    RunKind.scale: (
        Phase.scale_applied,
        Phase.workers_provisioned,
        Phase.workers_written,
        Phase.md_available,
        Phase.workers_removed,
        Phase.hosts_removed,
    ),
    RunKind.upgrade: (
        Phase.upgrade_applied,
        Phase.cp_host_provisioned,
        Phase.cp_node_written,
        Phase.cp_node_ref,
        Phase.old_machine_deleted,
        Phase.old_host_removed,
        Phase.cluster_upgraded,
    ),
}

#: What --workers W > 0 adds to a create run, in order, before cluster_available.
WORKER_PHASES = (Phase.workers_provisioned, Phase.workers_written, Phase.md_available)
#: The phases of a scale run going up, and going down.
SCALE_UP = (Phase.scale_applied, *WORKER_PHASES)
SCALE_DOWN = (Phase.scale_applied, Phase.workers_removed, Phase.hosts_removed)

#: BMO's status.provisioning.state (v1alpha1 ProvisioningState) -> the phase a host shows by it.
#: A state BMO passes through faster than a watch event is simply not recorded for that host.
BMO_STATES: dict[str, Phase] = {
    p.value: p
    for p in (
        Phase.host_registering,
        Phase.host_inspecting,
        Phase.host_preparing,
        Phase.host_available,
        Phase.host_provisioning,
        Phase.host_provisioned,
        Phase.host_deprovisioning,
        Phase.host_powering_off,
        Phase.host_deleting,
    )
}

#: The phase each phase waits for: its step latency is measured from that one.
PREVIOUS: dict[Phase, Phase] = {
    Phase.bmh_provisioned: Phase.applied,
    Phase.node_written: Phase.bmh_provisioned,
    Phase.kcp_initialized: Phase.node_written,
    Phase.node_ref: Phase.node_written,
    Phase.kcp_available: Phase.node_ref,
    Phase.cluster_available: Phase.kcp_available,
    Phase.machines_deleted: Phase.delete_requested,
    Phase.cluster_deleted: Phase.machines_deleted,
    Phase.namespace_deleted: Phase.cluster_deleted,
    Phase.tenant_deleted: Phase.namespace_deleted,
    Phase.apiserver_stopped: Phase.tenant_deleted,
    Phase.host_registering: Phase.host_applied,
    Phase.host_inspecting: Phase.host_registering,
    Phase.host_preparing: Phase.host_inspecting,
    Phase.host_available: Phase.host_preparing,
    Phase.host_provisioning: Phase.host_available,
    Phase.host_provisioned: Phase.host_provisioning,
    # an available host skips deprovisioning: its step to powering off is then not measured
    Phase.host_deprovisioning: Phase.host_delete_requested,
    Phase.host_powering_off: Phase.host_deprovisioning,
    Phase.host_deleting: Phase.host_powering_off,
    Phase.host_deleted: Phase.host_deleting,
    # in a create run these two steps are not measured (no scale_applied): since applied only
    Phase.workers_provisioned: Phase.scale_applied,
    Phase.workers_written: Phase.workers_provisioned,
    Phase.md_available: Phase.workers_written,
    Phase.workers_removed: Phase.scale_applied,
    Phase.hosts_removed: Phase.workers_removed,
    Phase.cp_host_provisioned: Phase.upgrade_applied,
    Phase.cp_node_written: Phase.cp_host_provisioned,
    Phase.cp_node_ref: Phase.cp_node_written,
    Phase.old_machine_deleted: Phase.cp_node_ref,
    Phase.old_host_removed: Phase.old_machine_deleted,
    Phase.cluster_upgraded: Phase.old_host_removed,
}


#: Where a phase's step starts in a run whose order lacks its PREVIOUS: in a create run with workers,
#: the worker Machines get their bootstrap data once the control plane is initialized.
FALLBACK_PREVIOUS: dict[Phase, Phase] = {Phase.workers_provisioned: Phase.kcp_initialized}


def previous(phase: Phase, order: tuple[Phase, ...]) -> Phase | None:
    """The phase `phase`'s step is measured from in a run of `order` (run_phases)."""
    prev = PREVIOUS.get(phase)
    if prev in order:
        return prev
    fallback = FALLBACK_PREVIOUS.get(phase)
    return fallback if fallback in order else None


def run_kind(phase: Phase) -> RunKind:
    return next(k for k, phases in PHASES.items() if phase in phases)


def run_phases(kind: RunKind, settings: Mapping[str, Any] | None = None) -> tuple[Phase, ...]:
    """The phases of one recorded run, the last meaning done: a create-hosts run for `available`
    hosts (its settings' "state") is done at host_available; a create run with "workers" > 0 has
    WORKER_PHASES before cluster_available; a scale run is SCALE_UP or SCALE_DOWN by its "direction"."""
    order = PHASES[kind]
    settings = settings or {}
    if kind is RunKind.create_hosts and settings.get("state") == Phase.host_available.value:
        return order[: order.index(Phase.host_available) + 1]
    if kind is RunKind.create and settings.get("workers"):
        return (*order[:-1], *WORKER_PHASES, order[-1])
    if kind is RunKind.scale:
        return SCALE_DOWN if settings.get("direction") == "down" else SCALE_UP
    return order


def host_phase(bmh: Mapping[str, Any]) -> Phase | None:
    """The phase a BareMetalHost's current provisioning state shows; None for none of BMO_STATES."""
    state = ((bmh.get("status") or {}).get("provisioning") or {}).get("state")
    return BMO_STATES.get(state) if isinstance(state, str) else None


CONTROL_PLANE_LABEL = "cluster.x-k8s.io/control-plane"
#: On a BareMetalHost: when the node simulator finished writing its Node (RFC 3339 UTC, milliseconds).
NODE_WRITTEN_ANNOTATION = "scale-lab.metal3.io/node-written"

#: The kinds to watch (apiVersion, kind) to see every create phase that the controllers drive;
#: `applied` is lab's own and `node_written` is the node simulator's.
WATCHED: tuple[tuple[str, str], ...] = (
    (API_VERSIONS["BareMetalHost"], "BareMetalHost"),
    (API_VERSIONS["Cluster"], "Machine"),  # Machines are CAPI core, same group/version as Cluster
    (API_VERSIONS["KubeadmControlPlane"], "KubeadmControlPlane"),
    (API_VERSIONS["Cluster"], "Cluster"),
    (API_VERSIONS["MachineDeployment"], "MachineDeployment"),
)


def condition(obj: Mapping[str, Any], type_: str) -> Mapping[str, Any] | None:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return dict(c)
    return None


def is_true(obj: Mapping[str, Any], type_: str) -> bool:
    c = condition(obj, type_)
    return c is not None and c.get("status") == "True"


def observed(obj: Mapping[str, Any]) -> list[Phase]:
    """The create phases this object's current state proves, in lifecycle order."""
    status = obj.get("status") or {}
    kind = obj.get("kind")
    out: list[Phase] = []
    if kind == "BareMetalHost":
        out += _host_phases(obj)
    elif kind == "Machine":
        labels = (obj.get("metadata") or {}).get("labels") or {}
        if CONTROL_PLANE_LABEL in labels and (status.get("nodeRef") or {}).get("name"):
            out.append(Phase.node_ref)
    elif kind == "KubeadmControlPlane":
        if (status.get("initialization") or {}).get("controlPlaneInitialized") is True:
            out.append(Phase.kcp_initialized)
        if is_true(obj, "Available"):
            out.append(Phase.kcp_available)
    elif kind == "Cluster" and is_true(obj, "Available"):
        out.append(Phase.cluster_available)
    elif kind == "MachineDeployment" and md_available(obj):
        out.append(Phase.md_available)
    return out


def _host_phases(bmh: Mapping[str, Any]) -> list[Phase]:
    if is_worker_host(bmh):
        return []  # counted per cluster: lab.clusters.tracker
    out = [Phase.bmh_provisioned] if is_provisioned(bmh) else []
    return out + ([Phase.node_written] if node_written_at(bmh) is not None else [])


def is_worker_host(bmh: Mapping[str, Any]) -> bool:
    return ((bmh.get("metadata") or {}).get("labels") or {}).get(workers.ROLE_LABEL) == workers.WORKER


def is_provisioned(bmh: Mapping[str, Any]) -> bool:
    return ((bmh.get("status") or {}).get("provisioning") or {}).get("state") == "provisioned"


def md_available(md: Mapping[str, Any]) -> bool:
    """All of a MachineDeployment's W > 0 replicas available, none surplus, Available=True."""
    want = (md.get("spec") or {}).get("replicas") or 0
    status = md.get("status") or {}
    return (
        want > 0
        and status.get("availableReplicas") == want
        and status.get("replicas") == want
        and is_true(md, "Available")
    )


def format_timestamp(epoch: float) -> str:
    """RFC 3339 UTC with milliseconds, e.g. 2026-11-21T19:30:01.123Z (NODE_WRITTEN_ANNOTATION's format)."""
    t = dt.datetime.fromtimestamp(epoch, dt.UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def node_written_at(bmh: Mapping[str, Any]) -> float | None:
    """Epoch seconds of the node simulator's write for this host; None when not written (or the
    value is not a timestamp: a hand-edited annotation must not become a measurement)."""
    value = ((bmh.get("metadata") or {}).get("annotations") or {}).get(NODE_WRITTEN_ANNOTATION)
    if not isinstance(value, str) or not value:
        return None
    try:
        t = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    if t.tzinfo is None:
        return None
    return t.timestamp()


def cluster_of(obj: Mapping[str, Any], prefix: str) -> tuple[str, int] | None:
    """(cluster name, index) of one of lab's namespaced objects; None for anything else."""
    ns = (obj.get("metadata") or {}).get("namespace")
    if not ns:
        return None
    index = naming.parse_index(prefix, ns)
    return None if index is None else (ns, index)


def blocking(obj: Mapping[str, Any]) -> str | None:
    """What holds a Cluster or KCP back: the Available condition's reason and message, for the
    "stuck clusters" list on a --wait timeout."""
    c = condition(obj, "Available")
    if c is None:
        return "no Available condition yet"
    if c.get("status") == "True":
        return None
    return f"Available={c.get('status')} {c.get('reason', '')}: {c.get('message', '')}".strip()
