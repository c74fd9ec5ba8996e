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


def bmc_secret(cluster: str) -> str:
    return f"{host(cluster)}-bmc-secret"
