"""One workload kube-apiserver inside a backing kind cluster: pure functions, cluster -> objects.

Per cluster, in apply order: a Secret `<cluster>-pki` (the files the apiserver reads), a Deployment
`<cluster>` (one replica of registry.k8s.io/kube-apiserver at the pinned Kubernetes version, with
exactly the flags of local mode: lab.workload_apiserver.apiserver_flags) and a NodePort Service
`<cluster>` on the nodePort lab handed out from the backing's published block
(lab.backing.node_ports), so the controlPlaneEndpoint `<node address>:<nodePort>` and the serving
certificate's SAN are known before anything is applied.

One shared namespace (NAMESPACE), not one per cluster: deleting a namespace is asynchronous (its
finalizer empties it first), so delete-then-create of the same cluster would be refused while the
old namespace terminates; a namespace per cluster also adds objects the backing's apiserver keeps
for nothing. Each object carries the cluster's label, so one label-selected LIST answers "which
clusters live here" (lab.backing.kind.present).

What the Secret holds: the cluster CA's certificate (client auth) but never its key, the serving
pair, the service-account pair (the apiserver signs tokens) and the etcd CA certificate with the
cluster's etcd client pair. No kubeconfig: no admin credential ever lives in the backing.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from lab import naming, pki
from lab.config import Settings
from lab.manifests import etcd as etcd_manifests
from lab.workload_apiserver import ENV, PkiPaths, apiserver_flags

NAMESPACE = "workload-apiservers"
IMAGE_REPOSITORY = "registry.k8s.io/kube-apiserver"
PKI_MOUNT = Path("/etc/kubernetes/pki")  # a path in the Pod, not here
SECURE_PORT = naming.APISERVER_PORT
COMPONENT = "kube-apiserver"
LABELS = {"app.kubernetes.io/name": COMPONENT, "app.kubernetes.io/part-of": "metal3-scale-lab"}

#: Requests from the measured idle RSS (benchmarks/apiserver_rss.py: 191.7 MiB median with GOGC=25,
#: 7 mCPU idle): the scheduler then refuses to overcommit the node. No memory limit: the apiserver's
#: start-up peak is above its idle RSS and an OOM kill would loop it through CrashLoopBackOff.
RESOURCES = {"requests": {"cpu": "10m", "memory": "200Mi"}}
#: Non-root: the apiserver writes no file when it is given its serving pair.
RUN_AS = 65532

# Secret keys; each is also the file name under PKI_MOUNT.
CA_CRT = "ca.crt"
TLS_CRT, TLS_KEY = "apiserver.crt", "apiserver.key"
SA_PUB, SA_KEY = "sa.pub", "sa.key"
ETCD_CA_CRT = "etcd-ca.crt"
ETCD_CRT, ETCD_KEY = "apiserver-etcd-client.crt", "apiserver-etcd-client.key"


def image(settings: Settings) -> str:
    return f"{IMAGE_REPOSITORY}:{settings.versions.kubernetes}"


def secret_name(cluster: str) -> str:
    return f"{cluster}-pki"


def labels(cluster: str, index: int) -> dict[str, str]:
    return {**LABELS, naming.CLUSTER_LABEL: cluster, naming.INDEX_LABEL: str(index)}


def selector(cluster: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": COMPONENT, naming.CLUSTER_LABEL: cluster}


def pod_paths() -> PkiPaths:
    """Where the apiserver finds its files in the Pod (the kubeconfig is never mounted)."""
    m = PKI_MOUNT
    return PkiPaths(
        ca=m / CA_CRT,
        cert=m / TLS_CRT,
        key=m / TLS_KEY,
        sa_pub=m / SA_PUB,
        sa_key=m / SA_KEY,
        etcd_ca=m / ETCD_CA_CRT,
        etcd_cert=m / ETCD_CRT,
        etcd_key=m / ETCD_KEY,
        kubeconfig=m / "unused",
    )


def apiserver_args(cluster: str, etcd_servers: str = etcd_manifests.client_url()) -> list[str]:
    """Listen on every Pod address; advertise the Pod IP (the endpoint reconciler is off, so it only
    has to be a valid address); then local mode's flag list, item for item."""
    return [
        "--bind-address=0.0.0.0",
        "--advertise-address=$(POD_IP)",
        f"--secure-port={SECURE_PORT}",
        *apiserver_flags(cluster, pod_paths(), etcd_servers),
    ]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def namespace_obj() -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE, "labels": dict(LABELS)}}


def secret(cp: pki.ClusterPKI, index: int) -> dict[str, Any]:
    files = {
        CA_CRT: cp.ca.cert_pem,
        TLS_CRT: cp.apiserver.cert_pem,
        TLS_KEY: cp.apiserver.key_pem,
        SA_PUB: cp.sa.cert_pem,
        SA_KEY: cp.sa.key_pem,
        ETCD_CA_CRT: cp.etcd_ca_cert_pem,
        ETCD_CRT: cp.etcd_client.cert_pem,
        ETCD_KEY: cp.etcd_client.key_pem,
    }
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": secret_name(cp.name), "namespace": NAMESPACE, "labels": labels(cp.name, index)},
        "type": "Opaque",
        "data": {k: _b64(v) for k, v in files.items()},
    }


def deployment(settings: Settings, cluster: str, index: int, etcd_servers: str) -> dict[str, Any]:
    https = {"port": "https", "scheme": "HTTPS"}
    container = {
        "name": COMPONENT,
        "image": image(settings),
        "imagePullPolicy": etcd_manifests.PULL_POLICY,
        "command": [COMPONENT],
        "args": apiserver_args(cluster, etcd_servers),
        "env": [
            *({"name": k, "value": v} for k, v in ENV.items()),
            {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        ],
        "ports": [{"name": "https", "containerPort": SECURE_PORT, "protocol": "TCP"}],
        # /readyz, /livez are open to anonymous users (system:public-info-viewer), as the kubelet is.
        "startupProbe": {"httpGet": {"path": "/livez", **https}, "periodSeconds": 5, "failureThreshold": 60},
        "readinessProbe": {
            "httpGet": {"path": "/readyz", **https},
            "periodSeconds": 5,
            "failureThreshold": 3,
        },
        "livenessProbe": {"httpGet": {"path": "/livez", **https}, "periodSeconds": 10, "failureThreshold": 8},
        "resources": RESOURCES,
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "runAsUser": RUN_AS,
            "runAsGroup": RUN_AS,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [{"name": "pki", "mountPath": str(PKI_MOUNT), "readOnly": True}],
    }
    pod_spec = {
        "containers": [container],
        "volumes": [{"name": "pki", "secret": {"secretName": secret_name(cluster), "defaultMode": 0o440}}],
        # Hundreds of Services share the namespace: their env vars would bloat every container.
        "enableServiceLinks": False,
        "automountServiceAccountToken": False,
        "securityContext": {"fsGroup": RUN_AS},
        "terminationGracePeriodSeconds": 30,
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": cluster, "namespace": NAMESPACE, "labels": labels(cluster, index)},
        "spec": {
            "replicas": 1,
            # Never two apiservers of one cluster at once: memory is what a backing runs out of.
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": selector(cluster)},
            "template": {"metadata": {"labels": labels(cluster, index)}, "spec": pod_spec},
        },
    }


def service(cluster: str, index: int, node_port: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": cluster, "namespace": NAMESPACE, "labels": labels(cluster, index)},
        "spec": {
            "type": "NodePort",
            "selector": selector(cluster),
            "ports": [
                {
                    "name": "https",
                    "port": SECURE_PORT,
                    "targetPort": "https",
                    "nodePort": node_port,
                    "protocol": "TCP",
                }
            ],
        },
    }


def objects(
    settings: Settings,
    cp: pki.ClusterPKI,
    index: int,
    node_port: int,
    etcd_servers: str = etcd_manifests.client_url(),
) -> list[dict[str, Any]]:
    """Secret, Deployment, Service of one cluster (the shared Namespace is namespace_obj())."""
    return [
        secret(cp, index),
        deployment(settings, cp.name, index, etcd_servers),
        service(cp.name, index, node_port),
    ]
