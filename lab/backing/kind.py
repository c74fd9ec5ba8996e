"""The `kind` backing: a kind cluster on a VM carries the multi-tenant etcd and workload apiservers.

`lab backing add NAME --kubeconfig F` (register) checks the cluster answers, keeps a private copy of
its kubeconfig and installs the multi-tenant etcd (lab.manifests.etcd) plus a NodePort for it.
create-clusters then calls KindBacking.ensure: each cluster's apiserver runs as a Deployment behind a
NodePort Service (lab.manifests.backing_apiserver); its endpoint is `<node address>:<nodePort>`, the
port handed out from the block the playbook publishes on the VM (lab.backing.node_ports).

Ports: create-clusters asks endpoint() first (to issue the cluster's certificates and render its
objects), from several threads, then ensure() for the batch. One LIST of the backing's Services
serves every endpoint() call of a run; each port handed out is remembered (per backing object, under
a lock), so endpoint() and ensure() agree and no port goes out twice. ensure() lists again and
refuses, before it changes anything, a port that a concurrent run took meanwhile.

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
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from cryptography import x509

from lab import naming, pki, pki_store
from lab.backing import node_ports, ready, store
from lab.backing.reach import is_loopback
from lab.backing.store import Entry, check_name
from lab.config import Settings
from lab.errors import LabError, UsageError
from lab.kube import ApiError, Client, Config
from lab.manifests import backing_apiserver as apiserver_manifests
from lab.manifests import etcd as etcd_manifests
from lab.runtime import poll
from lab.runtime.files import write_private

KUBECONFIG = "kubeconfig"
ROOT_STEM = "etcd-root"  # CN=root client pair under the backing dir
SERVER_STEM = "etcd-server"  # the etcd serving pair, kept so re-adding does not churn the Secret
REACH_TIMEOUT = 10.0
ETCD_READY_TIMEOUT = 300.0
#: a Pod's 30 s termination grace period, with room for a loaded node
POD_GONE_TIMEOUT = 120.0
#: What registrations by earlier lab versions put into the etcd namespace and this one does not: the
#: in-cluster auth bootstrap Job (its etcdctl is not in every node's etcd image) and the root client
#: pair it mounted. Deleted on register.
RETIRED = (("batch/v1", "Job", "etcd-bootstrap-auth"), ("v1", "Secret", "etcd-root-client"))
#: Kinds of the per-cluster objects, in the order remove deletes them (the Secret, the record, last).
_REMOVE_ORDER = (("apps/v1", "Deployment"), ("v1", "Service"), ("v1", "Secret"))


def kubeconfig_path(settings: Settings, name: str) -> Path:
    return store.backing_dir(settings, name) / KUBECONFIG


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


def default_node_address(server: str) -> str:
    """The host of the kubeconfig's server: kind with networking.apiServerAddress set to the VM's
    internal IP serves its API there, and the NodePorts are on the same address."""
    host = urlsplit(server).hostname
    if not host:
        raise UsageError(
            f"cannot take a node address from the kubeconfig server {server!r}: pass --node-address"
        )
    return host


def node_internal_ip(nodes: Sequence[dict[str, Any]]) -> str | None:
    """Pure: the InternalIP of the first node by name (IPv4 first), or None without nodes. A kind
    node's InternalIP is its container's address on the engine's network: this machine and pods
    of other kind clusters on that engine reach it, and NodePorts are open on every node."""
    for node in sorted(nodes, key=lambda n: str(n["metadata"]["name"])):
        addresses = [
            str(a.get("address"))
            for a in ((node.get("status") or {}).get("addresses") or [])
            if a.get("type") == "InternalIP"
        ]
        addresses.sort(key=lambda a: ":" in a)  # IPv4 before IPv6
        if addresses:
            return addresses[0]
    return None


#: kubelet reports at most this many images per Node (nodeStatusMaxImages' default): a longer list
#: may have left ours out, so it proves nothing
NODE_STATUS_MAX_IMAGES = 50


def missing_images(nodes: Sequence[dict[str, Any]], wanted: Sequence[str]) -> dict[str, list[str]]:
    """Pure: node -> the wanted images its status does not list (nodes with none missing, and
    nodes whose list may be truncated, left out)."""
    out: dict[str, list[str]] = {}
    for node in nodes:
        listed = (node.get("status") or {}).get("images") or []
        if len(listed) >= NODE_STATUS_MAX_IMAGES:
            continue
        names = {n for image in listed for n in image.get("names") or []}
        lacking = [w for w in wanted if w not in names]
        if lacking:
            out[str(node["metadata"]["name"])] = lacking
    return out


def pod_images(settings: Settings) -> list[str]:
    """The images the backing's pods run, each with imagePullPolicy Never."""
    return [etcd_manifests.image(settings), apiserver_manifests.image(settings)]


def _check_images(settings: Settings, name: str, nodes: Sequence[dict[str, Any]]) -> None:
    """Refuse a cluster whose nodes lack the images the pods run: they are never pulled, so the
    etcd would sit in ErrImageNeverPull. kind's node image for the pinned Kubernetes holds both."""
    lacking = missing_images(nodes, pod_images(settings))
    if lacking:
        node, images = next(iter(sorted(lacking.items())))
        raise UsageError(
            f"backing {name}: node {node} does not hold {', '.join(images)}, and lab's pods never pull: "
            f"create the kind cluster from a node image of Kubernetes {settings.versions.kubernetes} "
            "(kindest/node, or lab images build node), or kind load docker-image them"
        )


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


def etcd_endpoint(node_address: str, node_port: int = node_ports.DEFAULT_ETCD_NODE_PORT) -> str:
    return pki.endpoint_url(node_address, node_port)


def list_services(client: Client) -> node_ports.InUse:
    """One LIST of every Service in the backing cluster: lab's by cluster, and every port taken."""
    return node_ports.in_use(client.list("v1", "Service"), apiserver_manifests.NAMESPACE)


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
    kp = pki_store.load_keypair(directory, SERVER_STEM)
    if kp is not None:
        try:
            dns, ips = etcd_manifests.server_sans(node_addresses=[node_address])
            san = kp.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            names = {str(v) for v in san.get_values_for_type(x509.DNSName)}
            names |= {str(v) for v in san.get_values_for_type(x509.IPAddress)}
            fresh = kp.not_after.timestamp() - time.time() > 30 * 86400
            if kp.matches() and pki.signed_by(kp, ca.cert_pem) and {*dns, *ips} <= names and fresh:
                return kp
        except (ValueError, x509.ExtensionNotFound):
            pass
    server, _root = etcd_manifests.certificates(ca, node_addresses=[node_address])
    pki_store.write_keypair(directory, SERVER_STEM, server)
    return server


def _root_pair(directory: Path, ca: pki.KeyPair) -> pki.KeyPair:
    kp = pki_store.load_keypair(directory, ROOT_STEM)
    with contextlib.suppress(ValueError):
        if kp is not None and kp.matches() and pki.signed_by(kp, ca.cert_pem):
            return kp
    kp = pki.issue_client_cert(ca, "root")
    pki_store.write_keypair(directory, ROOT_STEM, kp)
    return kp


def etcd_objects(
    settings: Settings,
    ca: pki.KeyPair,
    server: pki.KeyPair,
    etcd_node_port: int = node_ports.DEFAULT_ETCD_NODE_PORT,
) -> list[dict[str, Any]]:
    """Pure: what register applies: the multi-tenant etcd, its external NodePort and the namespace
    the workload apiservers share."""
    return [
        *etcd_manifests.objects(settings, ca.cert_pem, (server.cert_pem, server.key_pem)),
        etcd_manifests.external_service(node_port=etcd_node_port),
        apiserver_manifests.namespace_obj(),
    ]


def _check_held(client: Client, name: str, block: node_ports.PortBlock) -> None:
    """Re-registering with a narrower block: refuse while an apiserver holds a port outside it."""
    outside = sorted((p, c) for c, p in list_services(client).held.items() if p not in block)
    if outside:
        some = ", ".join(f"{c} on {p}" for p, c in outside[:3])
        raise UsageError(
            f"backing {name}: {len(outside)} apiserver Service(s) hold NodePorts outside {block} ({some}): "
            "delete those clusters first, or give a block that covers them"
        )


def _default_address(nodes: Sequence[dict[str, Any]], server_host: str) -> str:
    """The kubeconfig server's host, unless it is a loopback address: kind on a workstation (or on
    this machine's engine) publishes its API on 127.0.0.1, where no NodePort is and which no pod can
    reach; then the first node's InternalIP (node_internal_ip). A cluster with no Node (a bare
    apiserver standing in for one) keeps the server's host."""
    if not is_loopback(server_host):
        return server_host
    return node_internal_ip(nodes) or server_host


def register(
    settings: Settings,
    name: str,
    kubeconfig: Path,
    *,
    capacity: int,
    node_address: str | None = None,
    node_port_block: str | None = None,
    etcd_node_port: int | None = None,
    wait: bool = False,
    timeout: float = ETCD_READY_TIMEOUT,
) -> Entry:
    """Check, copy, install, record. Every check runs before anything is written or applied.

    node_port_block: `FIRST-LAST`, the NodePorts the playbook publishes on the VM for apiservers
    (default node_ports.DEFAULT_BLOCK, the playbook's default); capacity may not exceed it.
    etcd_node_port: the one published for etcd, outside the block.
    node_address: where apiservers and etcd are reached (default: _default_address).
    wait: until the etcd answers root on its NodePort. Optional because it needs a node that runs
    Pods; the tests here use a bare kube-apiserver (no kubelet) as the backing cluster.
    Re-running with the same name updates capacity and ports and re-applies (same CA, same certificates).
    """
    check_name(name)
    if name in naming.BUILT_IN_BACKINGS:
        raise UsageError(f"{name!r} is a built-in backing of this machine; choose another name")
    if capacity < 1:
        raise UsageError(f"capacity must be at least 1, got {capacity}")
    block = node_ports.parse_block(node_port_block) if node_port_block else node_ports.DEFAULT_BLOCK
    etcd_port = node_ports.DEFAULT_ETCD_NODE_PORT if etcd_node_port is None else etcd_node_port
    node_ports.check(block, etcd_port, capacity)
    old = store.load(settings, name)
    if old is not None and old.runtime != "kind":
        raise UsageError(f"backing {name!r} is a {old.runtime} backing; remove it first")
    if not kubeconfig.is_file():
        raise UsageError(f"kubeconfig {kubeconfig} does not exist")
    try:
        cfg = Config.from_kubeconfig(kubeconfig)
    except LabError as e:
        raise UsageError(f"kubeconfig {kubeconfig}: {e}") from None
    explicit = check_node_address(node_address) if node_address is not None else None
    server_host = default_node_address(cfg.server) if explicit is None else ""
    _reach(cfg, str(kubeconfig))
    with Client(cfg) as client:
        _check_held(client, name, block)
        nodes = client.list("v1", "Node")
        _check_images(settings, name, nodes)
        address = explicit or check_node_address(_default_address(nodes, server_host))

    directory = store.backing_dir(settings, name)
    write_private(directory / KUBECONFIG, private_kubeconfig(cfg, name))
    ca = store.etcd_ca(settings, name)
    server = _server_pair(directory, ca, address)
    _root_pair(directory, ca)
    with Client(cfg) as client:
        client.apply(etcd_objects(settings, ca, server, etcd_port))
        for api, kind_, obj in RETIRED:  # a registration by an earlier lab left them; apply never deletes
            client.delete(api, kind_, obj, etcd_manifests.NAMESPACE)
    spec = {
        "kubeconfig": KUBECONFIG,
        "node_address": address,
        "server": cfg.server,
        "node_ports": str(block),
        "etcd_node_port": etcd_port,
    }
    entry = Entry(name, "kind", capacity, spec)
    store.save(settings, entry)
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
    store.delete(settings, entry.name)


class KindBacking:
    """lab.backing.Backing for a registered kind cluster."""

    def __init__(self, settings: Settings, entry: Entry) -> None:
        self.settings = settings
        self.entry = entry
        self.name = entry.name
        self.capacity = entry.capacity
        self.node_address: str = entry.spec["node_address"]
        # Entries from before the block was recorded: the playbook's defaults.
        self.block = node_ports.parse_block(entry.spec.get("node_ports") or str(node_ports.DEFAULT_BLOCK))
        self.etcd_node_port = int(entry.spec.get("etcd_node_port") or node_ports.DEFAULT_ETCD_NODE_PORT)
        self.directory = store.backing_dir(settings, entry.name)
        self._ca: pki.KeyPair | None = None
        self._lock = threading.Lock()
        self._in_use: node_ports.InUse | None = None  # the LIST endpoint() hands ports out from
        self._given: dict[str, int] = {}  # cluster -> port handed out by this object

    # --- connections ------------------------------------------------------------------------

    @contextlib.contextmanager
    def client(self, **kw: Any) -> Iterator[Client]:
        path = self.directory / self.entry.spec.get("kubeconfig", KUBECONFIG)
        with Client.from_kubeconfig(path, **kw) as c:
            yield c

    def etcd_endpoint(self) -> str:
        return self.entry.spec.get("etcd_endpoint") or etcd_endpoint(self.node_address, self.etcd_node_port)

    def root_etcd(self) -> Any:
        """An EtcdClient as root on the backing's etcd (external NodePort)."""
        from lab import etcd

        ca = self.etcd_ca()
        return etcd.connect(self.settings, ca.cert_pem, _root_pair(self.directory, ca), self.etcd_endpoint())

    # --- the contract -----------------------------------------------------------------------

    def endpoint(self, cluster: str, _index: int) -> tuple[str, int]:
        """The port of the cluster's Service if it has one, else the lowest free port of the block,
        the same for every later call on this object (and in ensure). Thread-safe."""
        with self._lock:
            if cluster not in self._given:
                if self._in_use is None:
                    with self.client() as client:
                        self._in_use = list_services(client)
                self._given |= node_ports.allocate(
                    self.block, self.name, [cluster], self._in_use, self._given
                )
            return self.node_address, self._given[cluster]

    def _assign(self, client: Client, names: Sequence[str]) -> dict[str, int]:
        """The ports of a batch under one fresh LIST; raises before anything is changed when a port
        handed out earlier no longer holds or the block is full."""
        with self._lock:
            in_use = list_services(client)
            moved = node_ports.moved({n: p for n, p in self._given.items() if n in names}, in_use)
            if moved:
                n, why = next(iter(moved.items()))
                raise LabError(
                    f"backing {self.name}: {len(moved)} cluster(s) lost the NodePort handed out to them, "
                    f"first {n}: {why} (another lab run on this backing?); run create-clusters again"
                )
            ports = node_ports.allocate(self.block, self.name, names, in_use, self._given)
            self._given |= ports
            self._in_use = in_use
            return ports

    def etcd_servers(self) -> list[str]:
        return [etcd_manifests.client_url()]

    def etcd_ca(self) -> pki.KeyPair:
        if self._ca is None:
            self._ca = store.etcd_ca(self.settings, self.name)
        return self._ca

    def preflight(self, new: Sequence[tuple[str, int]]) -> None:
        """Nothing to check before create: ensure() refuses a full block or a moved port itself."""

    def ensure(self, clusters: Sequence[tuple[str, int]]) -> None:
        """Secret, tenant, then Deployment and Service of each cluster (the order the module docstring
        explains), each on the port endpoint() gave it. Refuses, before changing anything, a batch
        the block cannot hold or a port that moved (lab.backing.node_ports)."""
        from lab.etcd import tenants

        if not clusters:
            return
        with self.client() as client:
            ports = self._assign(client, [n for n, _i in clusters])
            pkis = [
                (pki_store.cluster_pki(self.settings, n, self.node_address, ports[n], self.etcd_ca()), i)
                for n, i in clusters
            ]
            servers = ",".join(self.etcd_servers())
            client.apply([apiserver_manifests.namespace_obj()])
            client.apply([apiserver_manifests.secret(cp, i) for cp, i in pkis])
            with self.root_etcd() as root:
                tenants.bootstrap(root)
                tenants.create_many(root, [n for n, _i in clusters])
            rest = [
                o
                for cp, i in pkis
                for o in apiserver_manifests.objects(self.settings, cp, i, ports[cp.name], servers)[1:]
            ]
            client.apply(rest)

    def wait_ready(self, names: Sequence[str], timeout: float) -> None:
        """/readyz through each cluster's NodePort with its admin kubeconfig, as CAPI will reach it;
        on timeout the Pod's own reason (image pull, crash loop) names the cause."""
        ready.wait_ready(
            self.settings, names, timeout, why=self._why, where=f" on backing {self.name}", interval=1.0
        )

    def _why(self, cluster: str) -> str:
        return self._pods_reason(apiserver_manifests.NAMESPACE, f"{naming.CLUSTER_LABEL}={cluster}")

    def _pods_reason(self, namespace: str, selector: str) -> str:
        """Why the Pods `selector` picks in `namespace` are not serving, in the Pods' own words."""
        try:
            with self.client(attempts=2) as client:
                pods = client.list("v1", "Pod", namespace, label_selector=selector)
        except LabError as e:
            return f"backing cluster does not answer ({e})"
        return pod_reason(pods)

    def wait_etcd(self, timeout: float) -> None:
        """Until root reaches the etcd through the NodePort; then root user and role and auth on
        (lab.etcd.tenants.bootstrap, idempotent: the manifests carry no in-cluster bootstrap)."""
        from lab.etcd import tenants

        last = [""]

        def auth_on() -> bool:
            try:
                with self.root_etcd() as root:
                    tenants.bootstrap(root)
                    return True
            except LabError as e:
                last[0] = str(e)
            return False

        if not poll.until(auth_on, timeout, 2.0):
            raise LabError(
                f"etcd of backing {self.name} not ready within {timeout:.0f}s at {self.etcd_endpoint()}: "
                f"{last[0]}; its Pod: {self._etcd_pod_reason()}"
            )

    def _etcd_pod_reason(self) -> str:
        """Why the etcd Pod is not serving, in the Pod's own words (an image the node lacks, nodes
        without a pod network leaving it Pending), as wait_ready does for apiservers."""
        selector = ",".join(f"{k}={v}" for k, v in etcd_manifests.LABELS.items())
        return self._pods_reason(etcd_manifests.NAMESPACE, selector)

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
                tenants.remove(root, names)
            for n in names:
                client.delete("v1", "Secret", apiserver_manifests.secret_name(n), ns)
            self._wait_pods_gone(client, names)
        with self._lock:  # their ports are free again: the next hand-out lists afresh
            for n in names:
                self._given.pop(n, None)
            self._in_use = None
        for n in names:
            pki_store.remove_cluster_pki(self.settings, n)

    def _wait_pods_gone(
        self, client: Client, names: Sequence[str], timeout: float = POD_GONE_TIMEOUT
    ) -> None:
        """Until no apiserver Pod of these clusters is left. Deleting the Deployment only starts its
        Pods' termination (a 30 s grace period): seen for real, `delete-clusters --wait` ended with
        the three Pods still Terminating, gone about 20 s later. The run ends with the apiservers
        stopped and nothing of them left in the backing cluster."""
        wanted, left = set(names), [""]

        def gone() -> bool:
            pods = client.list(
                "v1", "Pod", apiserver_manifests.NAMESPACE, label_selector=naming.CLUSTER_LABEL
            )
            still = sorted({str(p["metadata"]["labels"][naming.CLUSTER_LABEL]) for p in pods} & wanted)
            left[0] = ", ".join(still)
            return not still

        if not poll.until(gone, timeout, 1.0):
            raise LabError(
                f"backing {self.name}: apiserver Pod(s) of {left[0]} still there {timeout:.0f}s after "
                "their Deployment was deleted"
            )

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

    def tenant_health(self, names: Sequence[str]) -> dict[str, str | None]:
        """Through the etcd's external NodePort, with each cluster's own client pair."""
        from lab.etcd import tenants

        return tenants.health(self.settings, self.etcd_endpoint(), self.etcd_ca().cert_pem, list(names))


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
