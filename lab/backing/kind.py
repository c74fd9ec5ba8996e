"""The `kind` backing: a kind cluster on a VM carries the multi-tenant etcd and workload apiservers.

`lab backing add NAME --kubeconfig F` (register) checks the cluster answers, keeps a private copy of
its kubeconfig and installs the multi-tenant etcd (lab.manifests.etcd) plus a NodePort for it.
create-clusters then calls KindBacking.ensure: each cluster's apiserver runs as a Deployment behind a
NodePort Service (lab.manifests.backing_apiserver); its endpoint is `<node address>:<nodePort>`.

The controller (this machine) talks to two things on the backing: its kube-apiserver (server-side
apply, field manager "lab") and its etcd, through etcd's external NodePort (why a NodePort: see
lab.manifests.etcd.external_service), as root with a certificate from the backing's etcd CA.

Crash safety rests on one order. ensure applies a cluster's Secret first, then creates its etcd
tenant, then the Deployment and Service; remove deletes the Deployment and Service, then the tenant,
then the Secret. So a tenant never exists without a labelled object in the backing cluster, and
present() needs only one LIST of the backing's apiserver (no etcd round trip), which keeps
`lab backing list` and delete-clusters' sweep working while etcd is still starting.
"""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from cryptography import x509

from lab import naming, pki
from lab.backing import check_name, local, registry
from lab.backing.registry import Entry
from lab.config import Settings
from lab.errors import LabError, UsageError
from lab.kube import ApiError, Client, Config
from lab.manifests import backing_apiserver as apiserver_manifests
from lab.manifests import etcd as etcd_manifests

KUBECONFIG = "kubeconfig"
ROOT_STEM = "etcd-root"  # CN=root client pair under the backing dir
SERVER_STEM = "etcd-server"  # the etcd serving pair, kept so re-adding does not churn the Secret
REACH_TIMEOUT = 10.0
ETCD_READY_TIMEOUT = 300.0
#: Kinds of the per-cluster objects, in the order remove deletes them (the Secret, the record, last).
_REMOVE_ORDER = (("apps/v1", "Deployment"), ("v1", "Service"), ("v1", "Secret"))


def kubeconfig_path(settings: Settings, name: str) -> Path:
    return registry.backing_dir(settings, name) / KUBECONFIG


def private_kubeconfig(cfg: Config, name: str) -> bytes:
    """Pure: a one-context kubeconfig with every credential inline, so the copy does not depend on
    files beside the original (kind embeds them anyway; a hand-made kubeconfig may not)."""

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode("ascii")

    cluster: dict[str, Any] = {"server": cfg.server}
    if cfg.ca_pem:
        cluster["certificate-authority-data"] = b64(cfg.ca_pem)
    if cfg.insecure:
        cluster["insecure-skip-tls-verify"] = True
    user: dict[str, Any] = {}
    if cfg.cert_pem and cfg.key_pem:
        user |= {"client-certificate-data": b64(cfg.cert_pem), "client-key-data": b64(cfg.key_pem)}
    if cfg.token:
        user["token"] = cfg.token
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": cluster}],
        "users": [{"name": f"{name}-admin", "user": user}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": f"{name}-admin"}}],
        "current-context": name,
    }
    return yaml.safe_dump(doc, sort_keys=False).encode()


def write_private(path: Path, data: bytes) -> None:
    """0600 from the first byte (never world-readable for an instant), replaced atomically."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    tmp.chmod(0o600)
    os.replace(tmp, path)


def default_node_address(server: str) -> str:
    """The host of the kubeconfig's server: kind with networking.apiServerAddress set to the VM's
    internal IP serves its API there, and the NodePorts are on the same address."""
    host = urlsplit(server).hostname
    if not host:
        raise UsageError(
            f"cannot take a node address from the kubeconfig server {server!r}: pass --node-address"
        )
    return host


def check_node_address(address: str) -> str:
    with contextlib.suppress(ValueError):
        return str(ipaddress.ip_address(address))
    if not check_dns_name(address):
        raise UsageError(f"invalid node address {address!r}: an IP address or a DNS name")
    return address


def check_dns_name(name: str) -> bool:
    labels = name.rstrip(".").split(".")
    return 0 < len(name) <= 253 and all(
        0 < len(lb) <= 63
        and lb[0].isalnum()
        and lb[-1].isalnum()
        and all(c.isalnum() or c == "-" for c in lb)
        for lb in labels
    )


def etcd_endpoint(node_address: str) -> str:
    return pki.endpoint_url(node_address, etcd_manifests.EXTERNAL_NODE_PORT)


def _reach(cfg: Config, source: str) -> None:
    """One GET /version, no retries: the one clear line when the cluster does not answer."""
    with Client(cfg, attempts=1, timeout=REACH_TIMEOUT, parallel=1) as probe:
        try:
            probe.request("GET", "/version")
        except (ApiError, LabError, OSError) as e:
            raise LabError(
                f"the cluster of kubeconfig {source} ({cfg.server}) does not answer: {e}"
            ) from None


def _server_pair(directory: Path, ca: pki.KeyPair, node_address: str) -> pki.KeyPair:
    """The etcd serving pair kept under the backing dir; re-issued when it no longer fits."""
    kp = pki.load_keypair(directory, SERVER_STEM)
    if kp is not None:
        try:
            dns, ips = etcd_manifests.server_sans(node_addresses=[node_address])
            san = kp.cert.extensions.get_extension_for_oid(x509.ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
            names = {str(v) for v in san.value.get_values_for_type(x509.DNSName)}
            names |= {str(v) for v in san.value.get_values_for_type(x509.IPAddress)}
            fresh = kp.not_after.timestamp() - time.time() > 30 * 86400
            if kp.matches() and pki.signed_by(kp, ca.cert_pem) and {*dns, *ips} <= names and fresh:
                return kp
        except (ValueError, x509.ExtensionNotFound):
            pass
    server, _root = etcd_manifests.certificates(ca, node_addresses=[node_address])
    pki.write_keypair(directory, SERVER_STEM, server)
    return server


def _root_pair(directory: Path, ca: pki.KeyPair) -> pki.KeyPair:
    kp = pki.load_keypair(directory, ROOT_STEM)
    with contextlib.suppress(ValueError):
        if kp is not None and kp.matches() and pki.signed_by(kp, ca.cert_pem):
            return kp
    kp = pki.issue_client_cert(ca, "root")
    pki.write_keypair(directory, ROOT_STEM, kp)
    return kp


def etcd_objects(
    settings: Settings, ca: pki.KeyPair, server: pki.KeyPair, root: pki.KeyPair
) -> list[dict[str, Any]]:
    """Pure: what register applies: the multi-tenant etcd, its external NodePort and the namespace
    the workload apiservers share."""
    return [
        *etcd_manifests.objects(
            settings, ca.cert_pem, (server.cert_pem, server.key_pem), (root.cert_pem, root.key_pem)
        ),
        etcd_manifests.external_service(),
        apiserver_manifests.namespace_obj(),
    ]


def register(
    settings: Settings,
    name: str,
    kubeconfig: Path,
    *,
    capacity: int,
    node_address: str | None = None,
    wait: bool = False,
    timeout: float = ETCD_READY_TIMEOUT,
) -> Entry:
    """Check, copy, install, record. Every check runs before anything is written or applied.

    wait: until the etcd answers root on its NodePort. Optional because it needs a node that runs
    Pods; the tests here use a bare kube-apiserver (no kubelet) as the backing cluster.
    Re-running with the same name updates capacity and re-applies (same CA, same certificates).
    """
    check_name(name)
    if name == naming.LOCAL_BACKING:
        raise UsageError(
            f"{naming.LOCAL_BACKING!r} is the built-in backing of this machine; choose another name"
        )
    if capacity < 1:
        raise UsageError(f"capacity must be at least 1, got {capacity}")
    old = registry.load(settings, name)
    if old is not None and old.runtime != "kind":
        raise UsageError(f"backing {name!r} is a {old.runtime} backing; remove it first")
    if not kubeconfig.is_file():
        raise UsageError(f"kubeconfig {kubeconfig} does not exist")
    try:
        cfg = Config.from_kubeconfig(kubeconfig)
    except LabError as e:
        raise UsageError(f"kubeconfig {kubeconfig}: {e}") from None
    address = check_node_address(node_address or default_node_address(cfg.server))
    _reach(cfg, str(kubeconfig))

    directory = registry.backing_dir(settings, name)
    write_private(directory / KUBECONFIG, private_kubeconfig(cfg, name))
    ca = registry.etcd_ca(settings, name)
    objs = etcd_objects(settings, ca, _server_pair(directory, ca, address), _root_pair(directory, ca))
    with Client(cfg) as client:
        client.apply(objs)
    entry = Entry(
        name, "kind", capacity, {"kubeconfig": KUBECONFIG, "node_address": address, "server": cfg.server}
    )
    registry.save(settings, entry)
    if wait:
        KindBacking(settings, entry).wait_etcd(timeout)
    return entry


def unregister(settings: Settings, entry: Entry, *, force: bool = False) -> None:
    """Delete lab's namespaces from the backing cluster (its etcd, every tenant and apiserver go with
    them), then forget the backing. When the cluster does not answer, refuse unless `force` (then it
    is only forgotten: the cluster may be gone for good)."""
    try:
        with KindBacking(settings, entry).client(attempts=2, timeout=REACH_TIMEOUT) as client:
            for ns in (apiserver_manifests.NAMESPACE, etcd_manifests.NAMESPACE):
                client.delete("v1", "Namespace", ns)
    except (LabError, OSError) as e:
        if not force:
            raise LabError(
                f"backing {entry.name}: its cluster does not answer ({e}); --force forgets it anyway"
            ) from None
    registry.delete(settings, entry.name)


class KindBacking:
    """lab.backing.Backing for a registered kind cluster."""

    def __init__(self, settings: Settings, entry: Entry) -> None:
        self.settings = settings
        self.entry = entry
        self.name = entry.name
        self.capacity = entry.capacity
        self.node_address: str = entry.spec["node_address"]
        self.directory = registry.backing_dir(settings, entry.name)
        self._ca: pki.KeyPair | None = None

    # --- connections ------------------------------------------------------------------------

    @contextlib.contextmanager
    def client(self, **kw: Any) -> Iterator[Client]:
        path = self.directory / self.entry.spec.get("kubeconfig", KUBECONFIG)
        with Client.from_kubeconfig(path, **kw) as c:
            yield c

    def etcd_endpoint(self) -> str:
        return self.entry.spec.get("etcd_endpoint") or etcd_endpoint(self.node_address)

    def root_etcd(self) -> Any:
        """An EtcdClient as root on the backing's etcd (external NodePort)."""
        from lab import etcd

        ca = self.etcd_ca()
        return etcd.connect(self.settings, ca.cert_pem, _root_pair(self.directory, ca), self.etcd_endpoint())

    # --- the contract -----------------------------------------------------------------------

    def endpoint(self, cluster: str, index: int) -> tuple[str, int]:
        return self.node_address, apiserver_manifests.node_port(index)

    def etcd_servers(self) -> list[str]:
        return [etcd_manifests.client_url()]

    def etcd_ca(self) -> pki.KeyPair:
        if self._ca is None:
            self._ca = registry.etcd_ca(self.settings, self.name)
        return self._ca

    def ensure(self, clusters: Sequence[tuple[str, int]]) -> None:
        """Secret, tenant, then Deployment and Service of each cluster (the order the module docstring
        explains). Refuses, before changing anything, a cluster whose nodePort another one holds."""
        from lab.etcd import tenants

        if not clusters:
            return
        with self.client() as client:
            self._check_ports(client, clusters)
            pkis = [
                (pki.cluster_pki(self.settings, n, *self.endpoint(n, i), self.etcd_ca()), i)
                for n, i in clusters
            ]
            servers = ",".join(self.etcd_servers())
            client.apply([apiserver_manifests.namespace_obj()])
            client.apply([apiserver_manifests.secret(cp, i) for cp, i in pkis])
            with self.root_etcd() as root:
                tenants.bootstrap(root)
                tenants.create_many(root, [n for n, _i in clusters])
            rest = [
                o for cp, i in pkis for o in apiserver_manifests.objects(self.settings, cp, i, servers)[1:]
            ]
            client.apply(rest)

    def _check_ports(self, client: Client, clusters: Sequence[tuple[str, int]]) -> None:
        held = {
            s["spec"]["ports"][0].get("nodePort"): s["metadata"]["name"]
            for s in client.list(
                "v1", "Service", apiserver_manifests.NAMESPACE, label_selector=naming.CLUSTER_LABEL
            )
        }
        wanted: dict[int, str] = {}
        for n, i in clusters:
            port = apiserver_manifests.node_port(i)
            other = held.get(port) or wanted.get(port)
            if other is not None and other != n:
                raise LabError(
                    f"{n} and {other} both need nodePort {port} on backing {self.name} "
                    f"(indexes {apiserver_manifests.NODE_PORT_SPAN} apart): place one on another backing"
                )
            wanted[port] = n

    def wait_ready(self, names: Sequence[str], timeout: float) -> None:
        """/readyz through each cluster's NodePort with its admin kubeconfig (local.is_ready), as CAPI
        will reach it; on timeout the Pod's own reason (image pull, crash loop) names the cause."""
        pending = list(names)
        deadline = time.monotonic() + timeout
        while pending:
            pending = [n for n in pending if not local.is_ready(self.settings, n)]
            if not pending:
                return
            if time.monotonic() > deadline:
                raise LabError(
                    f"{len(pending)} workload apiserver(s) on backing {self.name} not ready within "
                    f"{timeout:.0f}s, first {pending[0]}: {self._why(pending[0])}"
                )
            time.sleep(1.0)

    def _why(self, cluster: str) -> str:
        try:
            with self.client(attempts=2) as client:
                pods = client.list(
                    "v1",
                    "Pod",
                    apiserver_manifests.NAMESPACE,
                    label_selector=f"{naming.CLUSTER_LABEL}={cluster}",
                )
        except LabError as e:
            return f"backing cluster does not answer ({e})"
        return pod_reason(pods)

    def wait_etcd(self, timeout: float) -> None:
        """Until root reads the auth status through the NodePort and auth is on (the bootstrap Job ran)."""
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            try:
                with self.root_etcd() as root:
                    if root.auth_enabled():
                        return
                    last = "auth is not enabled yet (bootstrap Job pending)"
            except LabError as e:
                last = str(e)
            time.sleep(2.0)
        raise LabError(
            f"etcd of backing {self.name} not ready within {timeout:.0f}s at {self.etcd_endpoint()}: {last}"
        )

    def remove(self, names: Sequence[str]) -> None:
        """Deployment and Service, then the tenant, then the Secret, then the PKI under lab home."""
        from lab.etcd import tenants

        names = [pki.check_cluster_name(n) for n in names]
        if not names:
            return
        ns = apiserver_manifests.NAMESPACE
        with self.client() as client:
            for api, kind in _REMOVE_ORDER[:2]:
                for n in names:
                    client.delete(api, kind, n, ns)
            with self.root_etcd() as root:
                present = {t.name for t in tenants.list_tenants(root)}
                gone = [n for n in names if n in present]
                if gone:
                    tenants.delete_many(root, gone)
                for n in names:
                    if n not in present:  # keys may outlive a half-done delete
                        tenants.delete_keys(root, n)
            for n in names:
                client.delete("v1", "Secret", apiserver_manifests.secret_name(n), ns)
        for n in names:
            pki.remove_cluster_pki(self.settings, n)

    def present(self) -> set[str]:
        """Clusters of this prefix with any labelled object in the backing's apiserver namespace."""
        found: set[str] = set()
        with self.client(attempts=3, timeout=REACH_TIMEOUT) as client:
            for api, kind in _REMOVE_ORDER:
                for o in client.list(
                    api, kind, apiserver_manifests.NAMESPACE, label_selector=naming.CLUSTER_LABEL
                ):
                    found.add(o["metadata"]["labels"][naming.CLUSTER_LABEL])
        return {n for n in found if naming.parse_index(self.settings.prefix, n) is not None}

    def used(self) -> int:
        return len(self.present())


def pod_reason(pods: Sequence[dict[str, Any]]) -> str:
    """Pure: the most telling reason a cluster's apiserver Pod is not ready."""
    if not pods:
        return "no Pod (Deployment not applied, or the ReplicaSet cannot create one)"
    status = pods[0].get("status") or {}
    for c in status.get("containerStatuses") or []:
        state = c.get("state") or {}
        for key in ("waiting", "terminated"):
            if key in state:
                s = state[key]
                return f"container {key}: {s.get('reason', '')} {s.get('message', '')}".strip()
        if not c.get("ready"):
            return f"container running but not ready ({c.get('restartCount', 0)} restarts)"
    for cond in status.get("conditions") or []:
        if cond.get("status") != "True" and cond.get("message"):
            return f"{cond.get('type')}: {cond['message']}"
    return f"Pod phase {status.get('phase', 'unknown')}"
