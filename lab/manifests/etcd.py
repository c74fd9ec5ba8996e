"""The multi-tenant etcd inside a backing kind cluster (VM mode): pure functions to objects.

The same etcd as the local process (lab.etcd.server): TLS on client and peer ports, client
certificates required, auth on with a password-less root identified by a CN=root certificate, etcd's
own periodic compaction (tenants' apiservers run with --etcd-compaction-interval=0) and an 8 GiB quota.

Objects, in apply order: Namespace; Secrets etcd-ca (CA cert only: the CA key never enters the
cluster), etcd-server (serving + peer cert); the headless Service that
gives members their DNS names; the client Service the workload apiservers dial; the StatefulSet.
external_service() adds a NodePort for the controller (lab.backing.kind), which sits outside the
cluster and creates tenants; it is not in objects(), which is what runs inside any cluster.

Auth is turned on by the controller through that NodePort (lab.etcd.tenants.bootstrap, as for the
local tenant etcd), not by a Job in the cluster: etcd's image as kubeadm names it is the only one a
kind node is sure to hold (see image()), and lab's own build of it carries etcd alone, no etcdctl.

The pod template carries a digest of the CA and serving certificates (TLS_ANNOTATION): etcd reads
its trusted CA once at start, so a new CA (a re-registration from another lab home) must restart it,
and a changed template is what makes the StatefulSet do so.

Storage: a PersistentVolumeClaim per member (volumeClaimTemplates; the cluster's default StorageClass,
on a kind node kind's `standard`, bound at once), not emptyDir. Both sit on the node's disk, but emptyDir dies with the Pod: a rollout, an eviction or
`kubectl delete pod` would wipe every tenant and turn auth off again, silently breaking every
workload apiserver. A PVC survives all of those. Pass persistent=False for a throw-away etcd.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
from collections.abc import Sequence
from typing import Any

from lab import pki, tenant_etcd
from lab.config import Settings

NAMESPACE = "etcd-system"
NAME = "etcd"  # StatefulSet and headless Service: members are etcd-0.etcd.<ns>.svc
CLIENT_SERVICE = "etcd-client"
EXTERNAL_SERVICE = "etcd-external"
#: The default port the controller reaches etcd on, <node address>:<port>: the top of Kubernetes'
#: default NodePort range, outside any apiserver block (a backing's own is its entry's
#: etcd_node_port, which the playbook publishes: lab.backing.node_ports).
EXTERNAL_NODE_PORT = 32767
CA_SECRET = "etcd-ca"
SERVER_SECRET = "etcd-server"
CLIENT_PORT, PEER_PORT, METRICS_PORT = 2379, 2380, 2381
IMAGE_REPOSITORY = "registry.k8s.io/etcd"
#: the image is the node's own (see image()): never pulled, so a missing one is ErrImageNeverPull at
#: once instead of minutes of pull back-off on a machine without a registry
PULL_POLICY = "Never"
#: registry.k8s.io/etcd tags are <etcd version>-<image revision>.
IMAGE_REVISION = 0
DATA_DIR = "/var/lib/etcd"
STORAGE = "10Gi"  # above the 8 GiB backend quota, with room for the WAL and snapshots
CA_MOUNT, SERVER_MOUNT = "/etc/etcd/pki/ca", "/etc/etcd/pki/server"
LABELS = {"app.kubernetes.io/name": "etcd", "app.kubernetes.io/part-of": "metal3-scale-lab"}
#: on the pod template: tls_digest() of the certificates the pod mounts
TLS_ANNOTATION = "scale-lab.metal3.io/tls-digest"


def image(settings: Settings) -> str:
    """The etcd image every kind node already holds: the one kubeadm runs for the pinned Kubernetes
    (kind preloads it in its own node images, `lab images build node` in lab's), so a kind backing
    pulls nothing. lab's own etcd pin (`versions.etcd`) is for the etcd processes lab starts."""
    return f"{IMAGE_REPOSITORY}:{settings.versions.node_etcd.lstrip('v')}-{IMAGE_REVISION}"


def member(i: int) -> str:
    return f"{NAME}-{i}"


def member_host(i: int, namespace: str = NAMESPACE) -> str:
    return f"{member(i)}.{NAME}.{namespace}.svc"


def client_host(namespace: str = NAMESPACE) -> str:
    return f"{CLIENT_SERVICE}.{namespace}.svc"


def client_url(namespace: str = NAMESPACE) -> str:
    """What workload apiservers in the backing cluster put in --etcd-servers."""
    return f"https://{client_host(namespace)}:{CLIENT_PORT}"


def server_sans(
    namespace: str = NAMESPACE, replicas: int = 1, node_addresses: Sequence[str] = ()
) -> tuple[list[str], list[str]]:
    """(DNS names, IPs) the etcd-server certificate must carry: every member's peer/client name, the
    client Service in its short and long forms, loopback (probes, the bootstrap via localhost) and the
    node addresses the controller dials the external NodePort on (IPs or host names)."""
    ips = ["127.0.0.1"]
    dns = [
        "localhost",
        CLIENT_SERVICE,
        f"{CLIENT_SERVICE}.{namespace}",
        client_host(namespace),
        f"{client_host(namespace)}.cluster.local",
    ]
    for i in range(replicas):
        dns += [member_host(i, namespace), f"{member_host(i, namespace)}.cluster.local"]
    for address in node_addresses:
        try:
            ips.append(str(ipaddress.ip_address(address)))
        except ValueError:
            dns.append(address)
    return list(dict.fromkeys(dns)), list(dict.fromkeys(ips))


def certificates(
    ca: pki.KeyPair, namespace: str = NAMESPACE, replicas: int = 1, node_addresses: Sequence[str] = ()
) -> tuple[pki.KeyPair, pki.KeyPair]:
    """(server, root) for objects(), signed by the shared etcd CA. The one impure helper here (fresh
    keys): the server cert serves clients and peers under every in-cluster name; root is CN=root."""
    sans = server_sans(namespace, replicas, node_addresses)
    server = pki.issue_server_cert(ca, NAME, *sans, client_auth=True)
    return server, pki.issue_client_cert(ca, tenant_etcd.ROOT_USER)


def _meta(name: str, namespace: str | None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace
    meta["labels"] = dict(LABELS)
    return meta


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def namespace_obj(namespace: str = NAMESPACE) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": _meta(namespace, None)}


def secrets(
    ca_cert_pem: bytes, server: tuple[bytes, bytes], namespace: str = NAMESPACE
) -> list[dict[str, Any]]:
    """etcd-ca (tls.crt only) and etcd-server (kubernetes.io/tls; the pair is (cert, key)). No root
    client pair: only the controller, outside the cluster, acts as root."""

    def secret(name: str, type_: str, data: dict[str, bytes]) -> dict[str, Any]:
        body = {k: _b64(v) for k, v in data.items()}
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": _meta(name, namespace),
            "type": type_,
            "data": body,
        }

    return [
        secret(CA_SECRET, "Opaque", {"tls.crt": ca_cert_pem}),
        secret(SERVER_SECRET, "kubernetes.io/tls", {"tls.crt": server[0], "tls.key": server[1]}),
    ]


def services(namespace: str = NAMESPACE) -> list[dict[str, Any]]:
    """Headless (member DNS, published before ready so members can find each other) and client."""
    selector = dict(LABELS)
    headless = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(NAME, namespace),
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": selector,
            "ports": [
                {"name": "client", "port": CLIENT_PORT, "targetPort": "client", "protocol": "TCP"},
                {"name": "peer", "port": PEER_PORT, "targetPort": "peer", "protocol": "TCP"},
            ],
        },
    }
    client = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(CLIENT_SERVICE, namespace),
        "spec": {
            "type": "ClusterIP",
            "selector": selector,
            "ports": [{"name": "client", "port": CLIENT_PORT, "targetPort": "client", "protocol": "TCP"}],
        },
    }
    return [headless, client]


def external_service(namespace: str = NAMESPACE, node_port: int = EXTERNAL_NODE_PORT) -> dict[str, Any]:
    """The client port on every node's address, for the controller outside the cluster.

    Why a NodePort: lab creates tenants from the controller and must not depend on a long-lived
    `kubectl port-forward` (one more process to supervise, and it funnels every call through the
    backing's apiserver). What guards it: etcd's own TLS with client certificates required and auth
    on, the same as in-cluster clients face; only certificates from the backing's etcd CA, whose key
    never leaves the controller, get a handshake.
    """
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(EXTERNAL_SERVICE, namespace),
        "spec": {
            "type": "NodePort",
            "selector": dict(LABELS),
            "ports": [
                {
                    "name": "client",
                    "port": CLIENT_PORT,
                    "targetPort": "client",
                    "nodePort": node_port,
                    "protocol": "TCP",
                }
            ],
        },
    }


def etcd_args(namespace: str = NAMESPACE, replicas: int = 1) -> list[str]:
    """The container's flags: lab.etcd.server's policy (auth, compaction, quota) with in-cluster
    addresses. $(POD_NAME) is expanded by the kubelet from the downward-API env."""
    peers = ",".join(f"{member(i)}=https://{member_host(i, namespace)}:{PEER_PORT}" for i in range(replicas))
    me = f"$(POD_NAME).{NAME}.{namespace}.svc"
    return [
        "--name=$(POD_NAME)",
        f"--data-dir={DATA_DIR}",
        f"--listen-client-urls=https://0.0.0.0:{CLIENT_PORT}",
        f"--advertise-client-urls=https://{me}:{CLIENT_PORT}",
        f"--listen-peer-urls=https://0.0.0.0:{PEER_PORT}",
        f"--initial-advertise-peer-urls=https://{me}:{PEER_PORT}",
        f"--initial-cluster={peers}",
        "--initial-cluster-state=new",
        f"--initial-cluster-token={NAME}-{namespace}",
        f"--listen-metrics-urls=http://0.0.0.0:{METRICS_PORT}",
        f"--cert-file={SERVER_MOUNT}/tls.crt",
        f"--key-file={SERVER_MOUNT}/tls.key",
        f"--trusted-ca-file={CA_MOUNT}/tls.crt",
        "--client-cert-auth=true",
        f"--peer-cert-file={SERVER_MOUNT}/tls.crt",
        f"--peer-key-file={SERVER_MOUNT}/tls.key",
        f"--peer-trusted-ca-file={CA_MOUNT}/tls.crt",
        "--peer-client-cert-auth=true",
        f"--auto-compaction-mode={tenant_etcd.COMPACTION_MODE}",
        f"--auto-compaction-retention={tenant_etcd.COMPACTION_RETENTION}",
        f"--quota-backend-bytes={tenant_etcd.QUOTA_BACKEND_BYTES}",
        f"--snapshot-count={tenant_etcd.SNAPSHOT_COUNT}",
        "--log-level=warn",
    ]


def _secret_volume(name: str, secret: str) -> dict[str, Any]:
    return {"name": name, "secret": {"secretName": secret, "defaultMode": 0o400}}


def statefulset(
    settings: Settings,
    namespace: str = NAMESPACE,
    replicas: int = 1,
    persistent: bool = True,
    tls: str = "",
) -> dict[str, Any]:
    """tls: tls_digest() of the mounted certificates, on the pod template (see the module docstring)."""
    if replicas not in (1, 3, 5):
        raise ValueError(f"etcd members must be 1, 3 or 5, got {replicas}")
    probe_port = {"port": "metrics", "scheme": "HTTP"}
    container = {
        "name": "etcd",
        "image": image(settings),
        "imagePullPolicy": PULL_POLICY,
        "command": ["etcd"],
        "args": etcd_args(namespace, replicas),
        "env": [
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        ],
        "ports": [
            {"name": "client", "containerPort": CLIENT_PORT, "protocol": "TCP"},
            {"name": "peer", "containerPort": PEER_PORT, "protocol": "TCP"},
            {"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"},
        ],
        # etcd 3.6 serves /livez and /readyz on the metrics listener without client certificates.
        "startupProbe": {
            "httpGet": {"path": "/readyz", **probe_port},
            "periodSeconds": 5,
            "failureThreshold": 60,
        },
        "livenessProbe": {
            "httpGet": {"path": "/livez", **probe_port},
            "periodSeconds": 10,
            "failureThreshold": 8,
        },
        "readinessProbe": {"httpGet": {"path": "/readyz", **probe_port}, "periodSeconds": 5},
        # Requests only: a memory limit that OOM-kills etcd takes every workload cluster down with it.
        "resources": {"requests": {"cpu": "200m", "memory": "512Mi"}},
        "securityContext": {"allowPrivilegeEscalation": False},
        "volumeMounts": [
            {"name": "data", "mountPath": DATA_DIR},
            {"name": "ca", "mountPath": CA_MOUNT, "readOnly": True},
            {"name": "server", "mountPath": SERVER_MOUNT, "readOnly": True},
        ],
    }
    volumes = [_secret_volume("ca", CA_SECRET), _secret_volume("server", SERVER_SECRET)]
    spec: dict[str, Any] = {
        "replicas": replicas,
        "serviceName": NAME,
        # All members must start together to form the first quorum.
        "podManagementPolicy": "Parallel",
        "selector": {"matchLabels": dict(LABELS)},
        "template": {
            "metadata": {"labels": dict(LABELS), "annotations": {TLS_ANNOTATION: tls}},
            "spec": {"containers": [container], "volumes": volumes, "enableServiceLinks": False},
        },
    }
    if persistent:
        spec["volumeClaimTemplates"] = [
            {
                "metadata": {"name": "data", "labels": dict(LABELS)},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": STORAGE}}},
            }
        ]
    else:
        volumes.insert(0, {"name": "data", "emptyDir": {}})
    return {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": _meta(NAME, namespace), "spec": spec}


def tls_digest(ca_cert_pem: bytes, server_cert_pem: bytes) -> str:
    """16 hex digits that change with the CA or the serving certificate."""
    return hashlib.sha256(ca_cert_pem + b"\n" + server_cert_pem).hexdigest()[:16]


def objects(
    settings: Settings,
    ca_cert_pem: bytes,
    server: tuple[bytes, bytes],
    namespace: str = NAMESPACE,
    replicas: int = 1,
    persistent: bool = True,
) -> list[dict[str, Any]]:
    """Everything, in apply order. `server` must carry server_sans(namespace, replicas) and clientAuth."""
    return [
        namespace_obj(namespace),
        *secrets(ca_cert_pem, server, namespace),
        *services(namespace),
        statefulset(settings, namespace, replicas, persistent, tls_digest(ca_cert_pem, server[0])),
    ]
