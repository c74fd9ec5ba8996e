"""The node simulator: writes into a workload apiserver what kubeadm and a kubelet would have
produced once a BareMetalHost is provisioned, so CAPI, KCP and CAPM3 see a live cluster.

Chain followed (all in the management cluster): BareMetalHost (provisioned, consumerRef) ->
Metal3Machine -> owner Machine -> cluster name (label) -> workload kubeconfig (lab's own admin
kubeconfig from the cluster's PKI, else the `<cluster>-kubeconfig` secret). Then:
- a Ready Node named after the Machine, labelled `metal3.io/uuid=<BMH uid>` with spec.providerID
  left empty: CAPM3 v1.13 (SetProviderIDFromNodeLabel) finds it by that label and patches the
  providerID itself, which is the path a real Metal3 cluster takes;
- control plane only: the control-plane label and NoSchedule taint, mirror pods of the three
  components (no etcd pod: the lab's clusters use external etcd), `kube-system/kubeadm-config`
  (KCP marks the cluster initialized when it exists and parses it on upgrade), and the KubeadmConfig
  annotation `machine.cluster.x-k8s.io/certificates-expiry`, so KCP never port-forwards to probe it.
Objects are created once and never overwritten: after creation CAPI, CAPM3 and KCP own changes to
them (labels, taints, providerID, kubeadm-config updates). Writes are plain creates and merge
patches, never server-side apply, so the same code serves a real kube-apiserver and the mux
backing's in-memory one (which has neither apply patches nor a status subresource). No heartbeats: nothing watches leases.
An upgrade (`lab upgrade-clusters`) needs nothing else from the simulator: KCP's rollout makes a new
control-plane Machine on a new host, whose Node and mirror pods are written like any other, at the
Machine's spec.version (the Node's kubeletVersion, the pods' image tags). What KCP v1.13.6 reads and
writes in the workload cluster during an upgrade is written by KCP itself: kubeadm-config's
ClusterConfiguration (UpdateClusterConfiguration sets kubernetesVersion), kubeadm's RBAC bindings;
kube-proxy's DaemonSet and CoreDNS it updates only when they exist, and lab's clusters have neither
(kubeadm's addon phase is not simulated); it reads no kubelet-config, and with external etcd it
skips every etcd step. The old Node's mirror pods, which a real cluster's garbage collector removes
with the Node, are removed by remove_orphan_mirror_pods.
Last, the host gets annotation `scale-lab.metal3.io/node-written` (lab.phases) with the time of the
write, once: the run records take the node_written phase from it.

The simulator lives as long as the stack, while clusters come and go under the same names: a cluster
deleted and created again has a new CA and new client certificates. So nothing per cluster is kept
by name alone: workload clients are tied to the kubeconfig they were built from (WorkloadClients),
and a host's DELETED event forgets what was kept for it and its namespace.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import logging
import sys
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import yaml

from lab import components, muxapi, phases, pki, pki_store
from lab.config import Settings
from lab.errors import LabError
from lab.kube import ApiError, Client, NotFound, Obj, Watch
from lab.manifests import capi
from lab.manifests.common import CAPI_CLUSTER_LABEL
from lab.manifests.kinds import API_VERSIONS
from lab.naming import BACKING_LABEL, CLUSTER_LABEL, MUX_BACKING
from lab.runtime.supervise import Program

log = logging.getLogger("lab.nodesim")

FIELD_MANAGER = "lab-nodesim"
MERGE_PATCH = "application/merge-patch+json"
PROGRAM_NAME = components.NODESIM
BMH_API = API_VERSIONS["BareMetalHost"]
CAPI_API = API_VERSIONS["Cluster"]  # Machines are CAPI core: the same group/version
BOOTSTRAP_API = API_VERSIONS["KubeadmConfigTemplate"]  # and KubeadmConfigs the bootstrap provider's
CLUSTER_NAME_LABEL = CAPI_CLUSTER_LABEL
CONTROL_PLANE_MACHINE_LABEL = phases.CONTROL_PLANE_LABEL
CERT_EXPIRY_ANNOTATION = capi.CERT_EXPIRY_ANNOTATION
UUID_LABEL = "metal3.io/uuid"
CP_ROLE_LABEL = "node-role.kubernetes.io/control-plane"
COMPONENTS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")
#: what kubeadm's static pods get (scheduling.SystemCriticalPriority + 1000)
NODE_CRITICAL_PRIORITY = 2000001000
CONTAINERD = "containerd://2.1.4"
RETRY_SECONDS = 10.0
#: Hosts handled at once. Serially each took 1.5-3.5 s on the busy 2-core machine (a workload client's
#: discovery and about ten writes), so hosts provisioned together queued behind each other.
WORKERS = 8
#: How often the simulator asks lab-mux (the mux backing's server) when it started: one loopback GET.
#: A restarted lab-mux serves its clusters' endpoints again but none of their objects; they are
#: Available again only once their Nodes and mirror pods are written again (issue goal: 60 s).
MUX_POLL_SECONDS = 2.0
#: How often the simulator asks the registered mux hosts (lab-mux on a process backing host) when
#: their lab-mux started: one ssh each (a `lab host mux-list`, ~1 s of the host's CPU), so less often.
HOST_MUX_POLL_SECONDS = 10.0
#: backing name -> when that backing's lab-mux last started (None: not answering now). The caller
#: asks the registered mux hosts (lab.backing.hostmux.started), which this adapter cannot import.
MuxStarts = Callable[[], Mapping[str, str | None]]


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- pure builders ---------------------------------------------------------------------------


def node(machine_name: str, bmh_uid: str, control_plane: bool, provider_id: str = "") -> Obj:
    """The Node object (metadata + spec) a kubelet registers; status comes from node_status().
    provider_id: the Machine's, when CAPM3 set it already (a Node written again into a restarted
    lab-mux): CAPM3 sets it only once, and CAPI finds a Machine's Node by it."""
    labels = {
        "kubernetes.io/hostname": machine_name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "beta.kubernetes.io/os": "linux",
        "beta.kubernetes.io/arch": "amd64",
        UUID_LABEL: bmh_uid,
    }
    spec: dict[str, Any] = {"podCIDR": "192.168.0.0/24", "podCIDRs": ["192.168.0.0/24"]}
    if provider_id:
        spec["providerID"] = provider_id
    if control_plane:
        # what `kubeadm init` / `join --control-plane` (mark-control-plane phase) set
        labels[CP_ROLE_LABEL] = ""
        labels["node.kubernetes.io/exclude-from-external-load-balancers"] = ""
        spec["taints"] = [{"key": CP_ROLE_LABEL, "effect": "NoSchedule"}]
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": machine_name,
            "labels": labels,
            "annotations": {
                "kubeadm.alpha.kubernetes.io/cri-socket": "unix:///var/run/containerd/containerd.sock",
                "node.alpha.kubernetes.io/ttl": "0",
                "volumes.kubernetes.io/controller-managed-attach-detach": "true",
            },
        },
        "spec": spec,
    }


def node_status(machine_name: str, bmh_uid: str, version: str, now: str) -> Obj:
    """status of a healthy node: Ready, no pressure (what CAPI's MachineNodeHealthy checks)."""

    def cond(type_: str, status: str, reason: str, message: str) -> dict[str, str]:
        return {
            "type": type_,
            "status": status,
            "reason": reason,
            "message": message,
            "lastHeartbeatTime": now,
            "lastTransitionTime": now,
        }

    resources = {"cpu": "8", "memory": "32Gi", "pods": "110", "ephemeral-storage": "100Gi"}
    return {
        "conditions": [
            cond(
                "MemoryPressure",
                "False",
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available",
            ),
            cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            cond("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
            cond("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
        ],
        "addresses": [{"type": "Hostname", "address": machine_name}],
        "capacity": resources,
        "allocatable": resources,
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        "nodeInfo": {
            "machineID": bmh_uid.replace("-", ""),
            "systemUUID": bmh_uid,
            "bootID": bmh_uid,
            "kernelVersion": "6.8.0-lab",
            "osImage": "metal3-scale-lab simulated node",
            "containerRuntimeVersion": CONTAINERD,
            "kubeletVersion": version,
            "operatingSystem": "linux",
            "architecture": "amd64",
        },
    }


def mirror_pods(node_name: str, version: str, node_uid: str | None = None) -> list[Obj]:
    """kube-system/<component>-<node>: what the kubelet mirrors from kubeadm's static pod manifests."""
    out = []
    for component in COMPONENTS:
        name = f"{component}-{node_name}"
        digest = hashlib.sha256(f"{name}/{version}".encode()).hexdigest()[:32]
        meta: dict[str, Any] = {
            "name": name,
            "namespace": "kube-system",
            "labels": {"component": component, "tier": "control-plane"},
            "annotations": {
                "kubernetes.io/config.mirror": digest,
                "kubernetes.io/config.hash": digest,
                "kubernetes.io/config.source": "file",
                "kubernetes.io/config.seen": "2026-01-01T00:00:00.000000000Z",
            },
        }
        if node_uid:  # the kubelet makes the Node the mirror pod's owner
            meta["ownerReferences"] = [
                {"apiVersion": "v1", "kind": "Node", "name": node_name, "uid": node_uid, "controller": True}
            ]
        out.append(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": meta,
                "spec": {
                    "nodeName": node_name,
                    "hostNetwork": True,
                    "priorityClassName": "system-node-critical",
                    "priority": NODE_CRITICAL_PRIORITY,
                    "enableServiceLinks": True,
                    "tolerations": [{"operator": "Exists", "effect": "NoExecute"}],
                    "containers": [
                        {
                            "name": component,
                            "image": f"registry.k8s.io/{component}:{version}",
                            "command": [component],
                        }
                    ],
                },
            }
        )
    return out


def pod_status(component: str, version: str, now: str) -> Obj:
    """Running and Ready: what KCP's <Component>PodHealthy conditions require."""
    conds = [
        {"type": t, "status": "True", "lastTransitionTime": now}
        for t in ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled")
    ]
    return {
        "phase": "Running",
        "conditions": conds,
        "startTime": now,
        "containerStatuses": [
            {
                "name": component,
                "image": f"registry.k8s.io/{component}:{version}",
                "imageID": "",
                "ready": True,
                "started": True,
                "restartCount": 0,
                "state": {"running": {"startedAt": now}},
            }
        ],
    }


def kubeadm_api_version(version: str) -> str:
    """kubeadm writes v1beta4 since 1.31 (v1beta3 before); CAPI's UnmarshalClusterConfiguration reads both."""
    major, minor = (int(x) for x in version.lstrip("v").split(".")[:2])
    return "kubeadm.k8s.io/v1beta4" if (major, minor) >= (1, 31) else "kubeadm.k8s.io/v1beta3"


def cluster_configuration(
    cluster_name: str,
    version: str,
    endpoint: str,
    service_subnet: str = pki.SERVICE_CIDR,
    pod_subnet: str = "192.168.0.0/18",
    etcd_endpoints: tuple[str, ...] = ("https://etcd-server:2379",),
) -> Obj:
    """The ClusterConfiguration `kubeadm init` uploads: external etcd (KCP then skips etcd checks)."""
    return {
        "apiVersion": kubeadm_api_version(version),
        "kind": "ClusterConfiguration",
        "apiServer": {},
        "caCertificateValidityPeriod": "87600h0m0s",
        "certificateValidityPeriod": "8760h0m0s",
        "certificatesDir": "/etc/kubernetes/pki",
        "clusterName": cluster_name,
        "controlPlaneEndpoint": endpoint,
        "controllerManager": {},
        "dns": {},
        "encryptionAlgorithm": "ECDSA-P256",
        "etcd": {
            "external": {
                "endpoints": list(etcd_endpoints),
                "caFile": "/etc/kubernetes/pki/etcd/ca.crt",
                "certFile": "/etc/kubernetes/pki/apiserver-etcd-client.crt",
                "keyFile": "/etc/kubernetes/pki/apiserver-etcd-client.key",
            }
        },
        "imageRepository": "registry.k8s.io",
        "kubernetesVersion": version,
        "networking": {
            "dnsDomain": pki.CLUSTER_DOMAIN,
            "podSubnet": pod_subnet,
            "serviceSubnet": service_subnet,
        },
        "proxy": {},
        "scheduler": {},
    }


def kubeadm_config(cluster_name: str, version: str, endpoint: str, **kw: Any) -> Obj:
    """kube-system/kubeadm-config with data.ClusterConfiguration as kubeadm's upload-config writes it."""
    text = yaml.safe_dump(cluster_configuration(cluster_name, version, endpoint, **kw), sort_keys=True)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "kubeadm-config", "namespace": "kube-system"},
        "data": {"ClusterConfiguration": text},
    }


# --- writing into a workload apiserver --------------------------------------------------------


# Plain create and merge patch, no server-side apply: the mux backing's in-memory API server (CAPI's
# test library) serves neither apply patches nor a status subresource, and these work on both.


def _create(client: Client, obj: Obj) -> Obj:
    """POST the object; when it exists already (a concurrent writer), the stored one."""
    res = client.resource(obj["apiVersion"], obj["kind"])
    ns, name = obj["metadata"].get("namespace"), obj["metadata"]["name"]
    try:
        return dict(client.request("POST", res.path(ns), params={"fieldManager": FIELD_MANAGER}, body=obj))
    except ApiError as e:
        if e.status != 409:
            raise
    got = client.get(obj["apiVersion"], obj["kind"], name, ns)
    if got is None:
        raise LabError(f"{obj['kind']} {name} was there a moment ago and is gone")
    return got


def _patch_status(
    client: Client, api_version: str, kind: str, name: str, ns: str | None, status: Obj
) -> None:
    """Merge-patch the status subresource (the only way to set a Pod's status on a kube-apiserver);
    where no status subresource is served (404 from the in-memory server), the object itself."""
    res = client.resource(api_version, kind)
    body: Obj = {"status": status}
    params = {"fieldManager": FIELD_MANAGER}
    try:
        client.request(
            "PATCH", res.path(ns, name) + "/status", params=params, body=body, content_type=MERGE_PATCH
        )
    except NotFound:
        client.request("PATCH", res.path(ns, name), params=params, body=body, content_type=MERGE_PATCH)


def write_node(
    client: Client,
    machine_name: str,
    bmh_uid: str,
    version: str,
    control_plane: bool,
    cluster_name: str = "",
    endpoint: str = "",
    provider_id: str = "",
) -> bool:
    """Create what is missing (Node, mirror pods, kubeadm-config); True when anything was written.

    Present objects are left alone: CAPI, CAPM3 and KCP change them after creation.
    """
    now, wrote = _now(), False
    current = client.get("v1", "Node", machine_name)
    if current is None:
        current = _create(client, node(machine_name, bmh_uid, control_plane, provider_id))
        wrote = True
    if not phases.is_true(current, "Ready"):
        _patch_status(
            client, "v1", "Node", machine_name, None, node_status(machine_name, bmh_uid, version, now)
        )
        wrote = True
    if not control_plane:
        return wrote
    # the mux backing's in-memory server assigns no uid: no owner reference there
    for pod in mirror_pods(machine_name, version, current["metadata"].get("uid")):
        name = pod["metadata"]["name"]
        got = client.get("v1", "Pod", name, "kube-system")
        if got is None:
            _create(client, pod)
            wrote = True
        if got is None or (got.get("status") or {}).get("phase") != "Running":
            component = pod["metadata"]["labels"]["component"]
            _patch_status(client, "v1", "Pod", name, "kube-system", pod_status(component, version, now))
            wrote = True
    if client.get("v1", "ConfigMap", "kubeadm-config", "kube-system") is None:
        _create(client, kubeadm_config(cluster_name, version, endpoint))
        wrote = True
    return wrote


def remove_orphan_mirror_pods(client: Client) -> list[str]:
    """Delete the mirror pods of Nodes that are gone; their names.

    A kubelet's mirror pods are owned by its Node, so in a real cluster the garbage collector of
    kube-controller-manager deletes them once CAPI deletes the Node (a control-plane Machine rolled
    out by an upgrade). Lab's workload clusters run no kube-controller-manager: this does its part
    for the pods the simulator wrote, nothing else."""
    nodes = {n["metadata"]["name"] for n in client.list("v1", "Node")}
    gone = []
    res = client.resource("v1", "Pod")
    # grace 0, as the pod garbage collector deletes pods of a vanished node: a graceful delete of a
    # pod bound to a node only marks it Terminating until that node's kubelet confirms, never here
    force = {"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0}
    for pod in client.list("v1", "Pod", namespace="kube-system", label_selector="tier=control-plane"):
        meta = pod["metadata"]
        if "kubernetes.io/config.mirror" not in (meta.get("annotations") or {}):
            continue
        if (pod.get("spec") or {}).get("nodeName") in nodes:
            continue
        with contextlib.suppress(NotFound):  # gone meanwhile
            client.request("DELETE", res.path("kube-system", meta["name"]), body=force)
        gone.append(meta["name"])
    return gone


# --- following the management cluster ----------------------------------------------------------


def workload_kubeconfig(settings: Settings, mgmt: Client, namespace: str, cluster: str) -> bytes:
    """lab's own admin kubeconfig when lab made the cluster's PKI, else CAPI's <cluster>-kubeconfig."""
    path = pki.cluster_pki_dir(settings, cluster) / "admin.kubeconfig"
    if path.is_file():
        return path.read_bytes()
    secret = mgmt.get("v1", "Secret", f"{cluster}-kubeconfig", namespace)
    if secret is None or "value" not in (secret.get("data") or {}):
        raise LabError(f"no kubeconfig for cluster {namespace}/{cluster} yet")
    return base64.b64decode(secret["data"]["value"])


def _owner(obj: Mapping[str, Any], kind: str) -> str | None:
    for ref in obj["metadata"].get("ownerReferences") or []:
        if ref.get("kind") == kind:
            return str(ref["name"])
    return None


def _endpoint(cluster: Mapping[str, Any] | None) -> str:
    ep = ((cluster or {}).get("spec") or {}).get("controlPlaneEndpoint") or {}
    return f"{ep['host']}:{ep.get('port', 6443)}" if ep.get("host") else ""


class WorkloadClients:
    """One client per workload cluster, tied to the kubeconfig it was built from; thread-safe.

    Keyed by `<namespace>/<cluster>` and a digest of the kubeconfig, which every use reads again (a
    file read, or one GET of the secret): a cluster deleted and created under the same name gets a
    new CA, and a client kept by name alone would keep the old one for the life of the process,
    every call failing TLS verification. A client whose calls fail TLS or authentication is dropped
    too (`drop`), so the next try connects afresh.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._clients: dict[str, tuple[str, Client]] = {}

    def get(self, key: str, kubeconfig: bytes) -> Client:
        digest = hashlib.sha256(kubeconfig).hexdigest()
        with self._lock:
            held = self._clients.get(key)
            if held is not None and held[0] == digest:
                return held[1]
        made = Client.from_kubeconfig(kubeconfig, qps=20, burst=40)
        stale: Client | None
        with self._lock:
            held = self._clients.get(key)
            if held is not None and held[0] == digest:  # another worker was first
                stale, chosen = made, held[1]
            else:
                self._clients[key] = (digest, made)
                stale, chosen = (held[1] if held else None), made
        if stale is not None:
            if stale is not made:
                log.info("credentials of %s changed: new client", key)
            stale.close()  # a call in flight on it still completes; its connection is not reused
        return chosen

    def drop(self, key: str, client: Client | None = None) -> None:
        """Forget the client of `key` (only if it is still `client`, when given) and close it."""
        with self._lock:
            held = self._clients.get(key)
            if held is None or (client is not None and held[1] is not client):
                return
            del self._clients[key]
        held[1].close()

    def drop_namespace(self, namespace: str) -> None:
        """Forget the clients of every cluster in `namespace`."""
        with self._lock:
            keys = [k for k in self._clients if k.split("/", 1)[0] == namespace]
        for k in keys:
            self.drop(k)

    def keys(self) -> list[str]:
        with self._lock:
            return sorted(self._clients)

    def close(self) -> None:
        with self._lock:
            held, self._clients = list(self._clients.values()), {}
        for _digest, c in held:
            c.close()


def stale_credentials(e: ApiError) -> bool:
    """The workload apiserver refused this client's TLS (its CA changed) or its certificate (401)."""
    return (e.status == 0 and e.reason == "TLS") or e.status == 401


def reconcile_host(
    settings: Settings, mgmt: Client, bmh: Mapping[str, Any], clients: WorkloadClients | None = None
) -> bool:
    """Write the objects for one BMH when it is provisioned and consumed; True when it is done (and
    need not be looked at again), False when the host is not provisioned yet. Raises LabError when
    it is but something on the way is missing or unreachable: worth a retry."""
    if clients is not None:
        return _reconcile(settings, mgmt, bmh, clients)
    own = WorkloadClients()
    try:
        return _reconcile(settings, mgmt, bmh, own)
    finally:
        own.close()


def _reconcile(settings: Settings, mgmt: Client, bmh: Mapping[str, Any], clients: WorkloadClients) -> bool:
    status = bmh.get("status") or {}
    ref = (bmh.get("spec") or {}).get("consumerRef") or {}
    if (status.get("provisioning") or {}).get("state") != "provisioned" or ref.get("kind") != "Metal3Machine":
        return False
    ns = ref.get("namespace") or bmh["metadata"]["namespace"]
    m3m = mgmt.get(ref["apiVersion"], "Metal3Machine", ref["name"], ns)
    machine_name = _owner(m3m, "Machine") if m3m else None
    machine = mgmt.get(CAPI_API, "Machine", machine_name, ns) if machine_name else None
    if machine is None:  # provisioned, so the chain must appear: retry
        raise LabError(f"{ref['kind']} {ns}/{ref['name']} has no Machine owner yet")
    spec = machine.get("spec") or {}
    cluster_name = machine["metadata"].get("labels", {}).get(CLUSTER_NAME_LABEL) or spec.get("clusterName")
    if not cluster_name:  # CAPI sets both on every Machine it makes: retry rather than guess
        raise LabError(f"Machine {ns}/{machine['metadata']['name']} names no cluster yet")
    version = spec.get("version") or settings.versions.kubernetes
    control_plane = CONTROL_PLANE_MACHINE_LABEL in (machine["metadata"].get("labels") or {})
    cluster = mgmt.get(CAPI_API, "Cluster", cluster_name, ns)
    key = f"{ns}/{cluster_name}"
    client = clients.get(key, workload_kubeconfig(settings, mgmt, ns, cluster_name))
    try:
        wrote = write_node(
            client,
            machine["metadata"]["name"],
            bmh["metadata"]["uid"],
            version,
            control_plane,
            cluster_name,
            _endpoint(cluster),
            spec.get("providerID") or "",
        )
    except ApiError as e:
        if stale_credentials(e):
            clients.drop(key, client)
        raise
    written = time.time()
    if control_plane:
        annotate_certificates_expiry(settings, mgmt, machine, cluster_name)
    mark_node_written(mgmt, bmh, written)
    if wrote:
        log.info("wrote node %s into %s", machine["metadata"]["name"], key)
    return True


def mark_node_written(mgmt: Client, bmh: Mapping[str, Any], epoch: float) -> bool:
    """Stamp the host with the time its Node was written, for the run records; True when stamped.

    Never moves an existing stamp: after a restart the simulator finds everything already written
    and must not turn the restart time into a measurement. A merge patch under the simulator's own
    field manager touches only this annotation (BMO owns the rest of the host)."""
    meta = bmh["metadata"]
    if phases.NODE_WRITTEN_ANNOTATION in (meta.get("annotations") or {}):
        return False
    # the host in hand may be an old copy (a retry, a watch that lagged): ask the API once more
    fresh = mgmt.get(BMH_API, "BareMetalHost", meta["name"], meta["namespace"])
    if fresh is None or phases.NODE_WRITTEN_ANNOTATION in (fresh["metadata"].get("annotations") or {}):
        return False
    res = mgmt.resource(BMH_API, "BareMetalHost")
    patch = {"metadata": {"annotations": {phases.NODE_WRITTEN_ANNOTATION: phases.format_timestamp(epoch)}}}
    mgmt.request(
        "PATCH",
        res.path(meta["namespace"], meta["name"]),
        params={"fieldManager": FIELD_MANAGER},
        body=patch,
        content_type="application/merge-patch+json",
    )
    return True


def annotate_certificates_expiry(
    settings: Settings, mgmt: Client, machine: Mapping[str, Any], cluster_name: str
) -> None:
    """Put the serving cert's NotAfter on the Machine's KubeadmConfig, as KCP's probe would."""
    ref = ((machine.get("spec") or {}).get("bootstrap") or {}).get("configRef") or {}
    if ref.get("kind") != "KubeadmConfig":
        return
    ns = machine["metadata"]["namespace"]
    cfg = mgmt.get(BOOTSTRAP_API, "KubeadmConfig", ref["name"], ns)
    if cfg is None or CERT_EXPIRY_ANNOTATION in (cfg["metadata"].get("annotations") or {}):
        return
    res = mgmt.resource(BOOTSTRAP_API, "KubeadmConfig")
    patch = {
        "metadata": {"annotations": {CERT_EXPIRY_ANNOTATION: serving_cert_expiry(settings, cluster_name)}}
    }
    mgmt.request("PATCH", res.path(ns, ref["name"]), body=patch, content_type="application/merge-patch+json")


def serving_cert_expiry(settings: Settings, cluster_name: str) -> str:
    """RFC 3339 NotAfter of the cluster's apiserver serving cert (lab.pki_store's files)."""
    kp = pki_store.load_keypair(pki.cluster_pki_dir(settings, cluster_name), "apiserver")
    if kp is None:
        raise LabError(f"cluster {cluster_name} has no serving certificate under {settings.clusters_dir}")
    return kp.not_after.strftime("%Y-%m-%dT%H:%M:%SZ")


class _State:
    """What the workers share: hosts done (uid + consumer), hosts being handled and the newest copy
    seen meanwhile, hosts waiting for a retry, hosts deleted, workload clients, namespace verdicts."""

    def __init__(self, stop: threading.Event | None = None) -> None:
        self.lock = threading.Lock()
        self.stop = stop or threading.Event()
        self.done: set[tuple[str, str]] = set()
        #: host uid -> namespace, for the done hosts: which to hand again when lab-mux restarts
        self.namespace_of: dict[str, str] = {}
        self.inflight: set[tuple[str, str]] = set()
        self.newer: dict[tuple[str, str], Obj] = {}
        self.pending: dict[str, Obj] = {}
        #: uids seen DELETED: a copy of such a host still queued in a worker must not come back
        self.deleted: set[str] = set()
        self.clients = WorkloadClients()
        self.lab_ns: dict[str, bool] = {}
        #: the watch the loop reads while nothing waited for a retry (a long one), and whether a
        #: failure since has set a timer to end it
        self.long_watch: Watch | None = None
        self.wake_set = False
        self.current: Watch | None = None

    def watching(self, watch: Watch, long: bool) -> None:
        """The loop reads `watch` now; a long one ends RETRY_SECONDS after a failure meanwhile."""
        with self.lock:
            self.current = watch
            self.long_watch, self.wake_set = (watch if long else None), False
            failed_meanwhile = long and bool(self.pending)
        if self.stop.is_set():
            watch.stop()
        if failed_meanwhile:
            self._wake()

    def stop_watch(self) -> None:
        """Wait for the stop event, then end the watch the loop reads (see watching for a later one)."""
        self.stop.wait()
        with self.lock:
            watch = self.current
        if watch is not None:
            watch.stop()

    def retry_later(self, bmh: Obj) -> None:
        """Queue a failed host for the next pass, which comes RETRY_SECONDS from now at the latest
        (not after a long watch's five minutes)."""
        uid = bmh["metadata"]["uid"]
        with self.lock:
            if uid in self.deleted:
                return
            self.pending[uid] = bmh
        self._wake()

    def _wake(self) -> None:
        with self.lock:
            watch = self.long_watch if not self.wake_set else None
            self.wake_set = self.wake_set or watch is not None
        if watch is not None:
            timer = threading.Timer(RETRY_SECONDS, watch.stop)
            timer.daemon = True
            timer.start()

    def forget(self, bmh: Mapping[str, Any]) -> None:
        """A host is gone: drop everything kept for it, and the clients and verdict of its namespace
        (its cluster is on its way out, or scaled down: a client is rebuilt on the next use)."""
        meta = bmh["metadata"]
        uid, ns = meta["uid"], meta["namespace"]
        with self.lock:
            self.deleted.add(uid)
            self.done = {k for k in self.done if k[0] != uid}
            self.namespace_of.pop(uid, None)
            self.newer = {k: v for k, v in self.newer.items() if k[0] != uid}
            self.pending.pop(uid, None)
            self.lab_ns.pop(ns, None)
        self.clients.drop_namespace(ns)

    def resync(self, namespaces: set[str]) -> int:
        """Hand the hosts of these namespaces again: forget they were done and end the watch the
        loop reads, whose next list brings every host (writes skip what exists). How many."""
        with self.lock:
            again = {k for k in self.done if self.namespace_of.get(k[0]) in namespaces}
            self.done -= again
            watch = self.current
        if watch is not None:
            watch.stop()
        return len(again)


def watch_mux(settings: Settings, mgmt: Client, st: _State) -> None:
    """Until stop: when lab-mux's start time changes (killed and restarted by supervisord, or the
    stack brought up again while this ran), hand every host of a mux cluster again, so what the
    kubelet and kubeadm would have written is back in the restarted process's empty store."""
    seen: str | None = None
    while not st.stop.wait(MUX_POLL_SECONDS):
        ctl = muxapi.control(settings, timeout=5.0)
        if ctl is None:  # lab-mux never ran in this lab home
            continue
        try:
            started = str(ctl.health().get("started", ""))
        except LabError:  # down, or restarting: ask again
            continue
        if seen is not None and started != seen:
            try:
                namespaces = {
                    n["metadata"]["name"]
                    for n in mgmt.list("v1", "Namespace", label_selector=f"{BACKING_LABEL}={MUX_BACKING}")
                }
            except (LabError, OSError) as e:
                log.warning("lab-mux restarted, its clusters not listed yet: %s (retrying)", e)
                continue  # seen stays: the next poll tries again
            n = st.resync(namespaces)
            log.info("lab-mux restarted (started %s): writing %d mux hosts' nodes again", started, n)
        seen = started


def watch_host_muxes(mgmt: Client, st: _State, starts: MuxStarts) -> None:
    """Until stop: as watch_mux, for lab-mux on backing hosts (each a registered backing of its
    own): when one's start time changes (the host's supervisord restarted it, or the host came back),
    hand every host of that backing's clusters again."""
    seen: dict[str, str] = {}
    while not st.stop.wait(HOST_MUX_POLL_SECONDS):
        try:
            now = starts()
        except (LabError, OSError) as e:
            log.warning("mux hosts not asked: %s (retrying)", e)
            continue
        for backing, started in now.items():
            if started is None:  # down, or restarting: ask again
                continue
            if backing in seen and seen[backing] != started:
                try:
                    namespaces = {
                        n["metadata"]["name"]
                        for n in mgmt.list("v1", "Namespace", label_selector=f"{BACKING_LABEL}={backing}")
                    }
                except (LabError, OSError) as e:
                    log.warning(
                        "lab-mux of %s restarted, its clusters not listed yet: %s (retrying)", backing, e
                    )
                    continue  # seen stays: the next poll tries again
                n = st.resync(namespaces)
                log.info(
                    "lab-mux of %s restarted (started %s): writing %d hosts' nodes again", backing, started, n
                )
            seen[backing] = started


def run(
    settings: Settings,
    mgmt: Client,
    stop_after: float | None = None,
    workers: int = WORKERS,
    stop: threading.Event | None = None,
    host_mux_starts: MuxStarts | None = None,
) -> None:
    """Watch BMHs; write nodes as hosts in lab cluster namespaces get provisioned, until `stop_after`
    seconds have passed or `stop` is set (run sets it when it returns).

    Done hosts (uid + consumer) are remembered in memory only: a restart lists everything again and
    converges, since writes skip what exists. Up to `workers` hosts are handled at once, one host
    never twice at once; failures are retried every RETRY_SECONDS, each with the host as the API
    has it then (a host deleted meanwhile is forgotten, not retried for ever). `host_mux_starts`:
    the start times of the registered mux hosts' lab-mux, watched like this machine's.
    """
    st = _State(stop)
    threading.Thread(target=st.stop_watch, name="nodesim-stop", daemon=True).start()
    threading.Thread(target=watch_mux, args=(settings, mgmt, st), name="nodesim-mux", daemon=True).start()
    if host_mux_starts is not None:
        threading.Thread(
            target=watch_host_muxes, args=(mgmt, st, host_mux_starts), name="nodesim-host-mux", daemon=True
        ).start()
    deadline = None if stop_after is None else time.monotonic() + stop_after
    try:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="nodesim") as pool:
            while (deadline is None or time.monotonic() < deadline) and not st.stop.is_set():
                with st.lock:
                    retry, st.pending = list(st.pending.values()), {}
                for bmh in retry:
                    pool.submit(_retry, settings, mgmt, bmh, st)
                # a short watch while something waits for a retry; a long one otherwise
                with st.lock:
                    waiting = bool(st.pending or st.inflight)
                span = RETRY_SECONDS if waiting else RETRY_SECONDS * 30
                left = span if deadline is None else max(0.1, min(span, deadline - time.monotonic()))
                watch = mgmt.watch(BMH_API, "BareMetalHost", timeout=left)
                st.watching(watch, long=not waiting)
                for ev in watch:
                    if ev.type == "DELETED":
                        st.forget(ev.object)
                    else:
                        pool.submit(_handle, settings, mgmt, ev.object, st)
    finally:
        st.stop.set()  # ends the stop_watch thread
        st.clients.close()


def _is_lab_namespace(mgmt: Client, name: str, cache: dict[str, bool]) -> bool:
    """Namespaces of lab clusters carry CLUSTER_LABEL; looked up once per namespace (until a host in
    it is deleted: State.forget)."""
    if name not in cache:
        ns = mgmt.get("v1", "Namespace", name)
        cache[name] = ns is not None and CLUSTER_LABEL in (ns["metadata"].get("labels") or {})
    return cache[name]


def _retry(settings: Settings, mgmt: Client, bmh: Obj, st: _State) -> None:
    """A failed host again, as the API has it now; forgotten when it is gone (or replaced)."""
    meta = bmh["metadata"]
    try:
        fresh = mgmt.get(BMH_API, "BareMetalHost", meta["name"], meta["namespace"])
    except (LabError, OSError) as e:
        log.warning("%s/%s: %s (retrying)", meta["namespace"], meta["name"], e)
        st.retry_later(bmh)
        return
    if fresh is None or fresh["metadata"]["uid"] != meta["uid"]:
        st.forget(bmh)
        return
    _handle(settings, mgmt, fresh, st)


def _handle(settings: Settings, mgmt: Client, bmh: Obj, st: _State) -> None:
    """One host, in a worker. A copy that arrives while the host is being handled is kept and
    handled right after (it may be the one that says `provisioned`), never at the same time."""
    meta = bmh["metadata"]
    key = (meta["uid"], ((bmh.get("spec") or {}).get("consumerRef") or {}).get("name", ""))
    with st.lock:
        if key in st.done or meta["uid"] in st.deleted:
            return
        if key in st.inflight:
            st.newer[key] = bmh
            return
        st.inflight.add(key)
    while True:
        failed = False
        try:
            if _is_lab_namespace(mgmt, meta["namespace"], st.lab_ns) and reconcile_host(
                settings, mgmt, bmh, st.clients
            ):
                with st.lock:
                    st.done.add(key)
                    st.namespace_of[meta["uid"]] = meta["namespace"]
        except (LabError, OSError) as e:
            log.warning("%s/%s: %s (retrying)", meta["namespace"], meta["name"], e)
            failed = True
        except Exception:  # a worker must not die silently: log it and retry like any failure
            log.exception("%s/%s: unexpected error (retrying)", meta["namespace"], meta["name"])
            failed = True
        if failed:
            st.retry_later(bmh)
        with st.lock:
            nxt = st.newer.pop(key, None)
            if nxt is None or key in st.done or meta["uid"] in st.deleted:
                st.inflight.discard(key)
                return
        bmh = nxt


def nodesim_program(settings: Settings) -> Program:
    """The supervised simulator (lab.clusters.simulate runs run() and KCP's etcd health reporter); it
    reads the management cluster through the lab's admin kubeconfig."""
    env = {"LAB_HOME": str(settings.home)}
    if settings.bin_cache:
        env["LAB_BIN_CACHE"] = str(settings.bin_cache)
    return Program(
        name=PROGRAM_NAME, argv=[sys.executable, "-m", "lab.clusters.simulate"], env=env, priority=700
    )
