"""The objects of local-mode workload clusters, with the PKI they embed: the I/O edge around the pure
lab.manifests, shared by `lab render` and whatever creates clusters.

Writes the lab home (the shared etcd CA, each cluster's PKI, created once and reused after), never a
cluster. Local mode only: each cluster's apiserver at naming.local_endpoint(index), its data in the
local multi-tenant etcd at lab.etcd.server.client_url. The KCP shard label follows the shard count
the stack runs with (lab.management.shards).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lab import management, manifests, naming, pki, pki_store
from lab.config import Settings
from lab.errors import LabError
from lab.etcd.server import ETCD_CA_CN, client_url, etcd_ca_dir
from lab.manifests.controlplane import ControlPlane

if TYPE_CHECKING:
    from lab.backing import Backing


def check_local(settings: Settings) -> None:
    stack = management.for_settings(settings)
    if not stack.local_backing:
        raise LabError(
            f"rendering needs mode local: in mode {stack.mode} a cluster's endpoint comes from its "
            "backing placement"
        )


def etcd_ca(settings: Settings) -> pki.KeyPair:
    """The one CA the local tenant etcd trusts (the same directory and CN lab.etcd.server uses)."""
    return pki_store.load_or_create_ca(etcd_ca_dir(settings), ETCD_CA_CN)


def local_objects(
    settings: Settings, index: int, ca: pki.KeyPair | None = None, n_workers: int = 0
) -> list[dict[str, Any]]:
    """Every object of cluster `index` in apply order; pass `ca` (etcd_ca()) when rendering many."""
    check_local(settings)
    name = naming.cluster_name(settings.prefix, index)
    host, port = naming.local_endpoint(index)
    cluster_pki = pki_store.cluster_pki(settings, name, host, port, ca or etcd_ca(settings))
    return manifests.cluster_objects(
        settings,
        index,
        (host, port),
        cluster_pki,
        [client_url(settings)],
        manifests.bmc_password(cluster_pki),
        n_workers=n_workers,
        n_shards=management.shards(settings),
    )


def backed_objects(
    settings: Settings,
    index: int,
    backing: Backing,
    ca: pki.KeyPair | None = None,
    payload_kb: int = 0,
    n_workers: int = 0,
    control_plane: ControlPlane = ControlPlane(),
) -> list[dict[str, Any]]:
    """Every object of cluster `index` placed on `backing`: its endpoint, etcd and etcd CA (pass
    `ca`, backing.etcd_ca(), when rendering many), `payload_kb` KiB of files in its KCP, its
    control plane's version and hosts. Creates the cluster's PKI on first use."""
    name = naming.cluster_name(settings.prefix, index)
    host, port = backing.endpoint(name, index)
    # a backing may need another CA key type than lab's default
    algorithm = getattr(backing, "ca_algorithm", pki.DEFAULT_ALGORITHM)
    cluster_pki = pki_store.cluster_pki(
        settings, name, host, port, ca or backing.etcd_ca(), algorithm=algorithm
    )
    return manifests.cluster_objects(
        settings,
        index,
        (host, port),
        cluster_pki,
        backing.etcd_servers(),
        manifests.bmc_password(cluster_pki),
        backing.name,
        payload_kb,
        n_workers,
        management.shards(settings),
        control_plane,
    )
