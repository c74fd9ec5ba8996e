"""Names of the objects of one workload cluster, so every module (render, node simulator, delete)
agrees on them. All live in the cluster's own namespace, named like the cluster.

The CAPI secret names follow CAPI util/secret (`<cluster>-<purpose>`): KCP looks them up by exactly
these names and only generates what it does not find.
"""

from __future__ import annotations


def namespace(cluster: str) -> str:
    return cluster


def controlplane_template(cluster: str) -> str:
    return f"{cluster}-controlplane"


def workers_template(cluster: str) -> str:
    return f"{cluster}-workers"


def controlplane_data_template(cluster: str) -> str:
    return f"{cluster}-controlplane-template"


def workers_data_template(cluster: str) -> str:
    return f"{cluster}-workers-template"


def host(cluster: str) -> str:
    """The one BareMetalHost of a cluster; unique across namespaces so `kubectl get bmh -A` reads well."""
    return f"{cluster}-host-0"


def control_plane_host(cluster: str, slot: int) -> str:
    """Control-plane host `slot`: 0 is host(cluster); 1 the spare an upgrade rolls the control plane
    onto (test-7-host-cp1), a name worker_slot never reads as a worker's."""
    return host(cluster) if slot == 0 else f"{cluster}-host-cp{slot}"


def control_plane_bmc_secret(cluster: str, slot: int) -> str:
    return f"{control_plane_host(cluster, slot)}-bmc-secret"


def worker_host(cluster: str, slot: int) -> str:
    """Worker host `slot` (1..W): test-7-host-1, test-7-host-2, next to the control plane's host-0."""
    return f"{cluster}-host-{slot}"


def worker_slot(cluster: str, host_name: str) -> int | None:
    """Inverse of worker_host; None for the control-plane host or a name that is not one of ours."""
    head, _, tail = host_name.rpartition("-host-")
    if head != cluster or not tail.isdigit() or tail.startswith("0"):
        return None
    return int(tail)


def bmc_secret(cluster: str) -> str:
    return f"{host(cluster)}-bmc-secret"


def worker_bmc_secret(cluster: str, slot: int) -> str:
    return f"{worker_host(cluster, slot)}-bmc-secret"
