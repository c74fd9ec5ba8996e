"""The multi-tenant etcd inside a backing kind cluster (VM mode): pure functions to objects.

The same etcd as the local process (lab.etcd.server): TLS on client and peer ports, client
certificates required, auth on with a password-less root identified by a CN=root certificate, etcd's
own periodic compaction (tenants' apiservers run with --etcd-compaction-interval=0) and an 8 GiB quota.

Objects, in apply order: Namespace; Secrets etcd-ca (CA cert only: the CA key never enters the
cluster), etcd-server (serving + peer cert), etcd-root-client (CN=root); the headless Service that
gives members their DNS names; the client Service the workload apiservers dial; the StatefulSet; the
Job that creates root and enables auth (idempotent: it stops at once when auth is already on).
external_service() adds a NodePort for the controller (lab.backing.kind), which sits outside the
cluster and creates tenants; it is not in objects(), which is what runs inside any cluster.

Storage: a PersistentVolumeClaim per member (volumeClaimTemplates; kind's default local-path class),
not emptyDir. Both sit on the node's disk, but emptyDir dies with the Pod: a rollout, an eviction or
`kubectl delete pod` would wipe every tenant and turn auth off again, silently breaking every
workload apiserver. A PVC survives all of those. Pass persistent=False for a throw-away etcd.
"""

from __future__ import annotations

import base64
import ipaddress
import shlex
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
ROOT_SECRET = "etcd-root-client"
BOOTSTRAP_JOB = "etcd-bootstrap-auth"
CLIENT_PORT, PEER_PORT, METRICS_PORT = 2379, 2380, 2381
IMAGE_REPOSITORY = "registry.k8s.io/etcd"
#: registry.k8s.io/etcd tags are <etcd version>-<image revision>.
IMAGE_REVISION = 0
DATA_DIR = "/var/lib/etcd"
STORAGE = "10Gi"  # above the 8 GiB backend quota, with room for the WAL and snapshots
CA_MOUNT, SERVER_MOUNT, ROOT_MOUNT = "/etc/etcd/pki/ca", "/etc/etcd/pki/server", "/etc/etcd/pki/root"
LABELS = {"app.kubernetes.io/name": "etcd", "app.kubernetes.io/part-of": "metal3-scale-lab"}


def image(settings: Settings) -> str:
    return f"{IMAGE_REPOSITORY}:{settings.versions.etcd.lstrip('v')}-{IMAGE_REVISION}"


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
    ca_cert_pem: bytes,
    server: tuple[bytes, bytes],
    root: tuple[bytes, bytes],
    namespace: str = NAMESPACE,
) -> list[dict[str, Any]]:
    """etcd-ca (tls.crt only), etcd-server and etcd-root-client (kubernetes.io/tls); pairs are (cert, key)."""

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
        secret(ROOT_SECRET, "kubernetes.io/tls", {"tls.crt": root[0], "tls.key": root[1]}),
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
    settings: Settings, namespace: str = NAMESPACE, replicas: int = 1, persistent: bool = True
) -> dict[str, Any]:
    if replicas not in (1, 3, 5):
        raise ValueError(f"etcd members must be 1, 3 or 5, got {replicas}")
    probe_port = {"port": "metrics", "scheme": "HTTP"}
    container = {
        "name": "etcd",
        "image": image(settings),
        "imagePullPolicy": "IfNotPresent",
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
            "metadata": {"labels": dict(LABELS)},
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


def bootstrap_script(endpoint: str, ca: str, cert: str, key: str, etcdctl: str = "etcdctl") -> str:
    """Root user and role, then auth on, as root (CN=root certificate). Safe to run any number of times:
    it exits at once when auth is on, and every step before that tolerates having been done.
    The image has sh (bash) and etcdctl but no coreutils, so only shell built-ins are used."""
    q = shlex.quote
    ctl = f"{q(etcdctl)} --endpoints={q(endpoint)} --cacert={q(ca)} --cert={q(cert)} --key={q(key)}"
    ctl += " --command-timeout=10s"
    user = tenant_etcd.ROOT_USER
    return "\n".join(
        [
            "set -eu",
            f"status=$({ctl} auth status)",
            'case "$status" in *"Authentication Status: true"*) echo "auth already enabled"; exit 0;; esac',
            f"{ctl} user get {user} >/dev/null 2>&1 || {ctl} user add {user} --no-password",
            f"{ctl} role get {user} >/dev/null 2>&1 || {ctl} role add {user}",
            f"{ctl} user grant-role {user} {user}",
            f"{ctl} auth enable",
        ]
    )


def bootstrap_job(settings: Settings, namespace: str = NAMESPACE) -> dict[str, Any]:
    """Runs bootstrap_script; until etcd answers, etcdctl fails and the Job's back-off retries."""
    container = {
        "name": "bootstrap",
        "image": image(settings),
        "imagePullPolicy": "IfNotPresent",
        "command": [
            "/bin/sh",
            "-c",
            bootstrap_script(
                client_url(namespace), f"{CA_MOUNT}/tls.crt", f"{ROOT_MOUNT}/tls.crt", f"{ROOT_MOUNT}/tls.key"
            ),
        ],
        "securityContext": {"allowPrivilegeEscalation": False},
        "volumeMounts": [
            {"name": "ca", "mountPath": CA_MOUNT, "readOnly": True},
            {"name": "root", "mountPath": ROOT_MOUNT, "readOnly": True},
        ],
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _meta(BOOTSTRAP_JOB, namespace),
        "spec": {
            "backoffLimit": 12,
            "ttlSecondsAfterFinished": 3600,
            "template": {
                "metadata": {"labels": {**LABELS, "app.kubernetes.io/component": "bootstrap"}},
                "spec": {
                    "restartPolicy": "OnFailure",
                    "containers": [container],
                    "volumes": [_secret_volume("ca", CA_SECRET), _secret_volume("root", ROOT_SECRET)],
                    "enableServiceLinks": False,
                },
            },
        },
    }


def objects(
    settings: Settings,
    ca_cert_pem: bytes,
    server: tuple[bytes, bytes],
    root: tuple[bytes, bytes],
    namespace: str = NAMESPACE,
    replicas: int = 1,
    persistent: bool = True,
) -> list[dict[str, Any]]:
    """Everything, in apply order. `server` must carry server_sans(namespace, replicas) and clientAuth."""
    return [
        namespace_obj(namespace),
        *secrets(ca_cert_pem, server, root, namespace),
        *services(namespace),
        statefulset(settings, namespace, replicas, persistent),
        bootstrap_job(settings, namespace),
    ]
