"""Metadata shared by every object of one workload cluster."""

from __future__ import annotations

from typing import Any

from lab import naming
from lab.manifests.kinds import API_VERSIONS

#: CAPI's "belongs to cluster" label (clusterv1.ClusterNameLabel); CAPI puts and reads it on Secrets,
#: MachineDeployments and the Machines it creates.
CAPI_CLUSTER_LABEL = "cluster.x-k8s.io/cluster-name"


def lab_labels(cluster: str, index: int) -> dict[str, str]:
    """lab's own labels: enough to list or delete every object of one cluster, or of all of them."""
    return {naming.CLUSTER_LABEL: cluster, naming.INDEX_LABEL: str(index)}


def cluster_labels(cluster: str, index: int) -> dict[str, str]:
    return {CAPI_CLUSTER_LABEL: cluster, **lab_labels(cluster, index)}


def obj(kind: str, name: str, namespace: str | None, labels: dict[str, str], **body: Any) -> dict[str, Any]:
    """An object ready for server-side apply: apiVersion, kind, metadata first, then the body."""
    meta: dict[str, Any] = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace
    meta["labels"] = dict(labels)
    return {"apiVersion": API_VERSIONS[kind], "kind": kind, "metadata": meta, **body}


def ref(kind: str, name: str) -> dict[str, str]:
    """A CAPI v1beta2 ContractVersionedObjectReference: CAPI picks the apiVersion from the CRD's contract label."""
    return {"apiGroup": API_VERSIONS[kind].rpartition("/")[0], "kind": kind, "name": name}
