"""Secrets of one workload cluster: the CAPI certificate secrets and the BMC credentials.

Pre-creating `<cluster>-ca`, `-proxy`, `-sa`, `-etcd` and `-apiserver-etcd-client` makes KCP use lab's
PKI instead of generating its own (CAPI util/secret Certificates.LookupOrGenerate): the workload
apiserver lab runs is then signed by the CA that KCP uses for the kubeconfig. With external etcd the
`-etcd` and `-apiserver-etcd-client` certificates are "External": KCP never generates them, it waits
for them, and it needs no etcd CA key (tls.crt only).

`<cluster>-kubeconfig` is pre-created too, from lab's admin kubeconfig (same CA, shaped like CAPI's:
key `value`, cluster entry named after the cluster). Measured reason: CAPI's ClusterCache tries to
connect as soon as the Cluster's infrastructure is provisioned, which Metal3Cluster reports within a
second or two, before KCP's first reconcile has written the secret; the failed attempt is retried
only after the hard-coded ConnectionCreationRetryInterval (30 s, no flag), and KCP (initialization),
the Machine controller (nodeRef) and the Cluster's RemoteConnectionProbe all wait on that connection.
With the secret there, the first attempt succeeds: one cluster's create went from 37 s to about half.
It also spares KCP an RSA-2048 key per cluster (its default encryptionAlgorithm). KCP adopts the
secret (type cluster.x-k8s.io/secret: owner reference, rotation near expiry) as it does a generated one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import TYPE_CHECKING, Any

from lab.manifests import names
from lab.manifests.common import cluster_labels, obj

if TYPE_CHECKING:
    from lab.pki import ClusterPKI

#: Secret type CAPI gives the secrets it generates (clusterv1.ClusterSecretType).
CAPI_SECRET_TYPE = "cluster.x-k8s.io/secret"
#: BMO labels every BMC secret it claims with this (pkg/secretutils/label.go) and caches only labelled
#: secrets; setting it up front spares BMO an uncached read and a patch per host.
BMO_SECRET_LABEL = ("environment.metal3.io", "baremetal")
BMC_USERNAME = "scale-lab"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def bmc_password(pki: ClusterPKI) -> str:
    """A BMC password that is stable for a cluster yet unguessable without its CA key.

    HMAC-SHA256 of the cluster name keyed with the cluster CA private key: re-rendering the same cluster
    gives the same Secret (so apply is a no-op), and nobody can predict it from the name alone.
    BMO in test mode never uses it, but it must be non-empty and BMO trims whitespace.
    """
    digest = hmac.new(pki.ca.key_pem, b"scale-lab bmc password\0" + pki.name.encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(digest.digest()).decode("ascii").rstrip("=")[:32]


def pki_secrets(cluster: str, index: int, pki: ClusterPKI) -> list[dict[str, Any]]:
    """The five certificate secrets KCP looks up before it generates anything, and the kubeconfig
    secret (module docstring), keys as lab.pki gives them."""
    return [
        obj(
            "Secret",
            name,
            names.namespace(cluster),
            cluster_labels(cluster, index),
            type=CAPI_SECRET_TYPE,
            data={k: _b64(v) for k, v in data.items()},
        )
        for name, data in pki.secret_data(kubeconfig=True).items()
    ]


def bmc_secret(cluster: str, index: int, password: str, slot: int = 0) -> dict[str, Any]:
    """Credentials BMO requires for every host (non-empty username and password); `slot` > 0: of
    that worker host (the cluster's hosts share the password)."""
    name = names.worker_bmc_secret(cluster, slot) if slot else names.bmc_secret(cluster)
    return credentials(name, names.namespace(cluster), cluster_labels(cluster, index), password)


def control_plane_bmc_secret(cluster: str, index: int, password: str, slot: int) -> dict[str, Any]:
    """Credentials of control-plane host `slot` (slot 0's is bmc_secret's)."""
    name = names.control_plane_bmc_secret(cluster, slot)
    return credentials(name, names.namespace(cluster), cluster_labels(cluster, index), password)


def credentials(name: str, namespace: str, labels: dict[str, str], password: str) -> dict[str, Any]:
    """A BMC credentials Secret, pre-labelled for BMO's cache (BMO_SECRET_LABEL)."""
    if not password.strip():
        raise ValueError("the BMC password must not be empty")
    if password in (BMC_USERNAME, "password", "admin"):
        raise ValueError("refusing a guessable BMC password")
    return obj(
        "Secret",
        name,
        namespace,
        {**labels, BMO_SECRET_LABEL[0]: BMO_SECRET_LABEL[1]},
        type="Opaque",
        data={"username": _b64(BMC_USERNAME.encode()), "password": _b64(password.encode())},
    )
