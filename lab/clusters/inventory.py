"""Which workload clusters exist and how far each one has come: for `lab status` and delete.

The labelled namespaces say which clusters exist (the management cluster is the source of truth);
the phase comes from the cluster's Cluster, KubeadmControlPlane, control-plane Machine and
BareMetalHost, read with lab.phases as create's tracker reads them. Five LIST calls in all, whatever
the number of clusters: each kind is listed once across namespaces, never one GET per cluster.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from lab import naming, phases, shards
from lab.config import Settings
from lab.kube import Client
from lab.manifests.kinds import API_VERSIONS
from lab.phases import Phase

Obj = Mapping[str, Any]

# Display phases, in lifecycle order (the order of `lab status`'s counts).
PENDING = "pending"  # namespace only: create has not applied the Cluster yet (or crashed before it)
APPLIED = "applied"  # objects applied, the host not claimed yet
PROVISIONING = "provisioning"  # CAPM3 claimed the host, BMO is provisioning it
PROVISIONED = "provisioned"  # BareMetalHost provisioned, no Node seen by KCP yet
INITIALIZED = "initialized"  # KCP found kubeadm-config: the control plane is initialized
NODE = "node"  # the control-plane Machine has its nodeRef
AVAILABLE = "available"  # Cluster Available=True
DELETING = "deleting"  # the Cluster or its namespace is being deleted
ORDER: tuple[str, ...] = (
    PENDING,
    APPLIED,
    PROVISIONING,
    PROVISIONED,
    INITIALIZED,
    NODE,
    AVAILABLE,
    DELETING,
)

#: BMO provisioning states in which the host is on its way to `provisioned` for a consumer.
_PROVISIONING_STATES = ("provisioning",)


@dataclass(frozen=True)
class ClusterInfo:
    name: str
    index: int
    backing: str
    phase: str
    #: what holds the cluster in its phase (None when available)
    reason: str | None = None
    #: the KCP shard whose watch-filter label its KubeadmControlPlane carries (lab.shards); None
    #: when unsharded or not applied yet
    shard: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Seen:
    cluster: Obj | None = None
    kcp: Obj | None = None
    machine: Obj | None = None
    host: Obj | None = None


def _deleting(obj: Obj | None) -> bool:
    return obj is not None and bool((obj.get("metadata") or {}).get("deletionTimestamp"))


def phase_of(namespace: Obj, seen: _Seen) -> tuple[str, str | None]:
    """Pure: (display phase, reason) of one cluster from its namespace and objects."""
    if _deleting(namespace) or _deleting(seen.cluster):
        what = "namespace" if seen.cluster is None else "Cluster"
        return DELETING, f"{what} is being deleted"
    if seen.cluster is None:
        return PENDING, "no Cluster object (create did not finish: re-run it, or delete the cluster)"
    reached: set[Phase] = set()
    for obj in (seen.cluster, seen.kcp, seen.machine, seen.host):
        if obj is not None:
            reached.update(phases.observed(obj))
    if Phase.cluster_available in reached:
        return AVAILABLE, None
    hold = phases.blocking(seen.cluster)
    if Phase.node_ref in reached:
        kcp_hold = phases.blocking(seen.kcp) if seen.kcp is not None else "no KubeadmControlPlane"
        return NODE, f"KubeadmControlPlane {kcp_hold}" if kcp_hold else f"Cluster {hold}"
    if Phase.kcp_initialized in reached:
        return INITIALIZED, "control-plane Machine has no nodeRef yet"
    if Phase.bmh_provisioned in reached:
        return PROVISIONED, "KubeadmControlPlane not initialized (no kubeadm-config seen yet)"
    return _host_phase(seen.host)


def _host_phase(host: Obj | None) -> tuple[str, str | None]:
    """Pure: (display phase, reason) of a cluster whose BareMetalHost is not provisioned yet."""
    state = ((host or {}).get("status") or {}).get("provisioning", {}).get("state")
    if state in _PROVISIONING_STATES:
        return PROVISIONING, f"BareMetalHost {state}"
    if host is None:
        return APPLIED, "no BareMetalHost"
    return APPLIED, f"BareMetalHost {state or 'has no state yet'}"


def derive(
    prefix: str,
    namespaces: Iterable[Obj],
    clusters: Iterable[Obj] = (),
    kcps: Iterable[Obj] = (),
    machines: Iterable[Obj] = (),
    hosts: Iterable[Obj] = (),
) -> list[ClusterInfo]:
    """Pure: every cluster of `prefix` that has a namespace, with its phase, ordered by index."""
    seen: dict[str, _Seen] = {}
    ns_of: dict[str, tuple[Obj, int]] = {}
    for ns in namespaces:
        name = ns["metadata"]["name"]
        index = naming.parse_index(prefix, name)
        if index is not None:
            ns_of[name] = (ns, index)
            seen[name] = _Seen()
    for field, objs in (("cluster", clusters), ("kcp", kcps), ("machine", machines), ("host", hosts)):
        for obj in objs:
            found = phases.cluster_of(obj, prefix)
            if found is None or found[0] not in seen:
                continue
            if field == "machine" and phases.CONTROL_PLANE_LABEL not in (obj["metadata"].get("labels") or {}):
                continue
            if field == "host" and phases.is_worker_host(obj):
                continue  # the phase is the control plane's: its host is host-0
            if field == "cluster" and obj["metadata"]["name"] != found[0]:
                continue  # not lab's Cluster (lab names it like its namespace)
            setattr(seen[found[0]], field, obj)
    out = []
    for name, (ns, index) in ns_of.items():
        labels = ns["metadata"].get("labels") or {}
        phase, reason = phase_of(ns, seen[name])
        backing = labels.get(naming.BACKING_LABEL, naming.LOCAL_BACKING)
        kcp = seen[name].kcp
        watch = ((kcp or {}).get("metadata", {}).get("labels") or {}).get(shards.WATCH_LABEL)
        out.append(ClusterInfo(name, index, backing, phase, reason, shards.shard_of_label(watch)))
    return sorted(out, key=lambda c: c.index)


def by_phase(infos: Sequence[ClusterInfo]) -> dict[str, int]:
    """Pure: count per display phase, every phase present (0 included), in lifecycle order."""
    counts = dict.fromkeys(ORDER, 0)
    for c in infos:
        counts[c.phase] = counts.get(c.phase, 0) + 1
    return counts


def cluster_namespaces(mgmt: Client, cached: bool = False) -> list[dict[str, Any]]:
    return mgmt.list("v1", "Namespace", label_selector=naming.CLUSTER_LABEL, cached=cached)


def list_clusters(settings: Settings, mgmt: Client) -> list[ClusterInfo]:
    """Every cluster of this lab's prefix in the management cluster, with its phase: five LISTs."""
    namespaces = cluster_namespaces(mgmt)
    if all(naming.parse_index(settings.prefix, ns["metadata"]["name"]) is None for ns in namespaces):
        return []  # no need to ask for the rest
    sel = naming.CLUSTER_LABEL
    return derive(
        settings.prefix,
        namespaces,
        mgmt.list(API_VERSIONS["Cluster"], "Cluster", label_selector=sel),
        mgmt.list(API_VERSIONS["KubeadmControlPlane"], "KubeadmControlPlane", label_selector=sel),
        # Machines are CAPI's (KCP makes them): they carry CAPI's labels, not lab's
        mgmt.list(API_VERSIONS["Cluster"], "Machine", label_selector=phases.CONTROL_PLANE_LABEL),
        mgmt.list(API_VERSIONS["BareMetalHost"], "BareMetalHost", label_selector=sel),
    )
