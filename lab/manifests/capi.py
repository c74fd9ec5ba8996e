"""Cluster API objects of one workload cluster: Cluster, KubeadmControlPlane, MachineDeployment and
its KubeadmConfigTemplate, shaped like CAPM3's own clusterctl template (examples/clusterctl-templates)
with lab's choices: one control-plane replica, external etcd, W workers (0 by default).
"""

from __future__ import annotations

from typing import Any

from lab.manifests import names
from lab.manifests.common import CAPI_CLUSTER_LABEL, cluster_labels, lab_labels, obj, ref

#: kubeadm's standard paths for an external etcd's CA and the apiserver's etcd client pair.
ETCD_CA_FILE = "/etc/kubernetes/pki/etcd/ca.crt"
ETCD_CERT_FILE = "/etc/kubernetes/pki/apiserver-etcd-client.crt"
ETCD_KEY_FILE = "/etc/kubernetes/pki/apiserver-etcd-client.key"
#: KCP skips probing a node's apiserver certificate when the KubeadmConfig already carries this
#: (CAPI controlplane/kubeadm/internal/controllers/controller.go reconcileCertificateExpiries).
CERT_EXPIRY_ANNOTATION = "machine.cluster.x-k8s.io/certificates-expiry"
DEPLOYMENT_NAME_LABEL = "cluster.x-k8s.io/deployment-name"
# The same defaults as CAPM3's template; nothing routes them in a fake cluster.
POD_CIDR = "192.168.0.0/18"
SERVICE_CIDR = "10.96.0.0/12"
SERVICE_DOMAIN = "cluster.local"


def node_registration() -> dict[str, Any]:
    """Node name and metal3.io/uuid label from the Metal3 metadata, as CAPM3's templates set them.

    CAPM3 finds a machine's Node by the metal3.io/uuid=<BareMetalHost UID> label and then writes the
    providerID itself (cloudProviderEnabled false); lab's node simulator creates that same Node.
    """
    return {
        "name": "{{ ds.meta_data.name }}",
        "kubeletExtraArgs": [{"name": "node-labels", "value": "metal3.io/uuid={{ ds.meta_data.uuid }}"}],
    }


def cluster(name: str, index: int, shard: dict[str, str] | None = None) -> dict[str, Any]:
    """`shard`: the watch-filter label of its KCP shard (lab.shards.labels), none by default."""
    return obj(
        "Cluster",
        name,
        names.namespace(name),
        {**cluster_labels(name, index), **(shard or {})},
        spec={
            "clusterNetwork": {
                "pods": {"cidrBlocks": [POD_CIDR]},
                "services": {"cidrBlocks": [SERVICE_CIDR]},
                "serviceDomain": SERVICE_DOMAIN,
            },
            "controlPlaneRef": ref("KubeadmControlPlane", name),
            "infrastructureRef": ref("Metal3Cluster", name),
        },
    )


def kubeadm_control_plane(
    name: str,
    index: int,
    k8s_version: str,
    endpoint_host: str,
    etcd_endpoints: list[str],
    certificates_expiry: str,
    files: list[dict[str, Any]] | None = None,
    shard: dict[str, str] | None = None,
) -> dict[str, Any]:
    """`files`: extra kubeadmConfigSpec.files (lab.manifests.payload), none by default. `shard`: the
    watch-filter label of its KCP shard (lab.shards.labels), on the object and its machine template
    (so on the Machines KCP creates, whose events the shard's filter lets through)."""
    if not etcd_endpoints:
        raise ValueError("external etcd needs at least one endpoint")
    sans = list(dict.fromkeys([endpoint_host, "127.0.0.1", "localhost"]))
    return obj(
        "KubeadmControlPlane",
        name,
        names.namespace(name),
        {**cluster_labels(name, index), **(shard or {})},
        spec={
            "replicas": 1,
            "version": k8s_version,
            "machineTemplate": {
                # KCP copies these onto each Machine, Metal3Machine and KubeadmConfig it creates.
                "metadata": {
                    "labels": {**lab_labels(name, index), **(shard or {})},
                    "annotations": {CERT_EXPIRY_ANNOTATION: certificates_expiry},
                },
                "spec": {
                    "infrastructureRef": ref("Metal3MachineTemplate", names.controlplane_template(name))
                },
            },
            # What KCP's defaulting webhook would set; explicit so objects are complete without webhooks.
            "rollout": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}},
            "kubeadmConfigSpec": {
                "clusterConfiguration": {
                    "apiServer": {"certSANs": sans},
                    "etcd": {
                        "external": {
                            "endpoints": list(etcd_endpoints),
                            "caFile": ETCD_CA_FILE,
                            "certFile": ETCD_CERT_FILE,
                            "keyFile": ETCD_KEY_FILE,
                        }
                    },
                },
                "initConfiguration": {"nodeRegistration": node_registration()},
                "joinConfiguration": {"controlPlane": {}, "nodeRegistration": node_registration()},
                **({"files": [dict(f) for f in files]} if files else {}),
            },
        },
    )


def kubeadm_config_template(name: str, index: int) -> dict[str, Any]:
    return obj(
        "KubeadmConfigTemplate",
        names.workers_template(name),
        names.namespace(name),
        cluster_labels(name, index),
        spec={"template": {"spec": {"joinConfiguration": {"nodeRegistration": node_registration()}}}},
    )


def machine_deployment(name: str, index: int, k8s_version: str, replicas: int = 0) -> dict[str, Any]:
    """`replicas` workers, 0 by default: the pool always exists so scaling it is one apply.

    On scale-down `lab scale-clusters` marks the Machines of the surplus hosts with CAPI's
    delete-machine annotation, which every MachineSet deletion order deletes first: the hosts freed
    are the highest slots, the ones scale-down removes."""
    selector = {CAPI_CLUSTER_LABEL: name, DEPLOYMENT_NAME_LABEL: name}
    return obj(
        "MachineDeployment",
        name,
        names.namespace(name),
        cluster_labels(name, index),
        spec={
            "clusterName": name,
            "replicas": replicas,
            "selector": {"matchLabels": dict(selector)},
            # What the defaulting webhook would set.
            "rollout": {
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
            },
            "template": {
                "metadata": {"labels": {**selector, **lab_labels(name, index)}},
                "spec": {
                    "clusterName": name,
                    "version": k8s_version,
                    "bootstrap": {"configRef": ref("KubeadmConfigTemplate", names.workers_template(name))},
                    "infrastructureRef": ref("Metal3MachineTemplate", names.workers_template(name)),
                },
            },
        },
    )
