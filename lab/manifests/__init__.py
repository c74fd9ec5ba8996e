"""Pure functions from a cluster index to the objects of one workload cluster in the management cluster.

Same settings, index, endpoint and PKI -> the same objects, byte for byte: create can be re-run with
server-side apply and changes nothing. Nothing here reads files, the clock or the network.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lab import naming, shards
from lab.config import Settings
from lab.manifests import capi, controlplane, metal3, names, payload, workers
from lab.manifests.common import lab_labels, obj
from lab.manifests.secrets import bmc_password, bmc_secret, control_plane_bmc_secret, pki_secrets

if TYPE_CHECKING:
    from lab.pki import ClusterPKI

__all__ = ["bmc_password", "cluster_objects", "namespace"]


def namespace(
    cluster: str,
    index: int,
    backing: str = naming.LOCAL_BACKING,
    payload_kb: int = 0,
    n_workers: int = 0,
    control_plane: controlplane.ControlPlane = controlplane.ControlPlane(),
) -> dict[str, Any]:
    """The cluster's namespace; its labels are how lab lists the clusters that exist and where each
    one's apiserver runs, so delete finds it after any crash. A payload, a worker count and an
    upgraded control plane are noted on it (payload.ANNOTATION, workers.ANNOTATION,
    lab.manifests.controlplane) so a later create, scale or upgrade can tell it apart."""
    labels = {**lab_labels(cluster, index), naming.BACKING_LABEL: backing}
    ns = obj("Namespace", names.namespace(cluster), None, labels)
    annotations = control_plane.annotations()
    if payload_kb:
        annotations[payload.ANNOTATION] = str(payload_kb)
    if n_workers:
        annotations[workers.ANNOTATION] = str(n_workers)
    if annotations:
        ns["metadata"]["annotations"] = annotations
    return ns


def worker_hosts(cluster: str, index: int, bmc_password: str, n_workers: int) -> list[dict[str, Any]]:
    """[Secret, BareMetalHost] of worker slots 1..n_workers, in apply order."""
    out: list[dict[str, Any]] = []
    for slot in range(1, n_workers + 1):
        out += [bmc_secret(cluster, index, bmc_password, slot), metal3.worker_host(cluster, index, slot)]
    return out


def cluster_objects(
    settings: Settings,
    index: int,
    endpoint: tuple[str, int],
    pki: ClusterPKI,
    etcd_endpoints: list[str],
    bmc_password: str,
    backing: str = naming.LOCAL_BACKING,
    payload_kb: int = 0,
    n_workers: int = 0,
    n_shards: int = shards.DEFAULT,
    control_plane: controlplane.ControlPlane = controlplane.ControlPlane(),
) -> list[dict[str, Any]]:
    """Every object of workload cluster `index`, in apply order; `payload_kb` KiB of files in the
    KubeadmControlPlane (lab.manifests.payload); `n_workers` worker hosts and MachineDeployment
    replicas (lab.manifests.workers); with `n_shards` > 1 the Cluster and KCP carry the watch-filter
    label of the KCP shard the index falls to (lab.shards), with 1 no label at all; `control_plane`:
    the Kubernetes version of the KCP and the MachineDeployment, and the control-plane hosts
    (lab.manifests.controlplane).

    Order: the Namespace, then Secrets (KCP and BMO look them up), then the hosts (BMO can register and
    inspect them while the rest is created), then templates before what references them, the Cluster last.
    `bmc_password` is the caller's so it stays stable; lab.manifests.bmc_password(pki) derives one.
    """
    name = naming.cluster_name(settings.prefix, index)
    if pki.name != name:
        raise ValueError(f"PKI of {pki.name} passed for cluster {name}")
    workers.check_count(n_workers)
    shard = shards.labels(index, shards.check_count(n_shards))
    k8s = control_plane.kubernetes(settings.versions.kubernetes)
    hosts: list[dict[str, Any]] = []
    for slot in control_plane.hosts:
        secret = (
            control_plane_bmc_secret(name, index, bmc_password, slot)
            if slot
            else bmc_secret(name, index, bmc_password)
        )
        hosts += [secret, metal3.baremetal_host(name, index, slot)]
    return [
        namespace(name, index, backing, payload_kb, n_workers, control_plane),
        *pki_secrets(name, index, pki),
        *hosts,
        *worker_hosts(name, index, bmc_password, n_workers),
        metal3.data_template(name, index, names.controlplane_data_template(name)),
        metal3.data_template(name, index, names.workers_data_template(name)),
        metal3.machine_template(
            name,
            index,
            names.controlplane_template(name),
            names.controlplane_data_template(name),
            workers.CONTROL_PLANE,
        ),
        metal3.machine_template(
            name, index, names.workers_template(name), names.workers_data_template(name), workers.WORKER
        ),
        capi.kubeadm_config_template(name, index),
        metal3.metal3_cluster(name, index, endpoint),
        capi.kubeadm_control_plane(
            name,
            index,
            k8s,
            endpoint[0],
            etcd_endpoints,
            pki.certificates_expiry,
            payload.files(payload_kb),
            shard,
        ),
        capi.machine_deployment(name, index, k8s, n_workers),
        capi.cluster(name, index, shard),
    ]
