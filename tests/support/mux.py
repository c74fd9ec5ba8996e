"""Whether a workload cluster on the mux backing is served, whole and Available: the checks the e2e
test of the mux backing (e2e/test_mux.py) and the restart benchmark (benchmarks/mux_restart.py)
both make, so the benchmark's "Available again" is the test's.

Available is read from the management cluster (Cluster and KCP Available, the control-plane
Machine's nodeRef); whole from the workload API itself, through the cluster's own kubeconfig (the
Ready Node and the mirror pods the node simulator writes, which a restarted lab-mux starts without).
"""

from __future__ import annotations

import socket
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from lab import naming, phases
from lab.kube import Client

CAPI = "cluster.x-k8s.io/v1beta2"
KCP_API = "controlplane.cluster.x-k8s.io/v1beta2"
#: the static pods whose mirror pods the node simulator writes into every workload cluster
MIRROR_COMPONENTS = frozenset({"kube-apiserver", "kube-controller-manager", "kube-scheduler"})


def is_true(obj: Any, type_: str) -> bool:
    """The object exists and its condition `type_` is True (None, a missing object, is not)."""
    return obj is not None and phases.is_true(obj, type_)


def listening(port: int, host: str = naming.MUX_HOST) -> bool:
    """Something accepts TCP connections at host:port (a refused or timed-out connect is no)."""
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((host, port)) == 0


def available(cluster: Any, kcp: Any, machines: list[dict[str, Any]]) -> bool:
    """One cluster's objects as the management cluster holds them say Available: the one rule both
    the per-cluster check and the all-clusters poll apply."""
    return (
        is_true(cluster, "Available")
        and is_true(kcp, "Available")
        and bool(machines)
        and all((m.get("status") or {}).get("nodeRef") for m in machines)
    )


def cluster_available(client: Client, name: str) -> bool:
    """Cluster and KCP Available and the control-plane Machine has its nodeRef."""
    machines = client.list(CAPI, "Machine", name, label_selector=phases.CONTROL_PLANE_LABEL)
    return available(
        client.get(CAPI, "Cluster", name, name),
        client.get(KCP_API, "KubeadmControlPlane", name, name),
        machines,
    )


def not_available(client: Client, names: Iterable[str]) -> set[str]:
    """The named clusters that are not Available (cluster_available's rule), from three LISTs across
    all namespaces instead of three requests per cluster: a poll of 300 clusters stays one round
    of a second, not minutes under the client's rate limit. Served from the apiserver's watch cache
    (a poll that looks again anyway must not wait on a lagging cache)."""

    def by_namespace(api: str, kind: str, selector: str | None = None) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        for o in client.list(api, kind, label_selector=selector, cached=True):
            out.setdefault(o["metadata"].get("namespace", ""), []).append(o)
        return out

    def own(objs: list[dict[str, Any]], name: str) -> dict[str, Any] | None:
        return next((o for o in objs if o["metadata"]["name"] == name), None)

    clusters = by_namespace(CAPI, "Cluster")
    kcps = by_namespace(KCP_API, "KubeadmControlPlane")
    machines = by_namespace(CAPI, "Machine", phases.CONTROL_PLANE_LABEL)
    return {
        n
        for n in names
        if not available(own(clusters.get(n, []), n), own(kcps.get(n, []), n), machines.get(n, []))
    }


def workload_whole(kubeconfig: Path) -> bool:
    """The workload API answers with a Ready Node that has CAPM3's providerID and the three mirror
    pods Running: what the node simulator and CAPM3 wrote."""
    try:
        with Client.from_kubeconfig(kubeconfig, attempts=1) as wc:
            nodes = wc.list("v1", "Node")
            pods = wc.list("v1", "Pod", "kube-system")
    except Exception:  # down or restarting: not whole yet
        return False
    return (
        len(nodes) == 1
        and is_true(nodes[0], "Ready")
        and (nodes[0]["spec"].get("providerID") or "").startswith("metal3://")
        and {p["metadata"]["labels"].get("component") for p in pods} >= MIRROR_COMPONENTS
        and all(p["status"]["phase"] == "Running" for p in pods)
    )
