"""A kind backing for real: a kind cluster on lab's engine (the node image built here, offline), its
multi-tenant etcd StatefulSet and workload apiserver Deployments running as pods on images the node
already holds (never pulled), first under the local management stack, then under the management
cluster in kind. One backing cluster for the module (one node: NodePorts are open on every node, so
more nodes add nothing here); each test has its own lab home and registers it anew.

1. Local management stack: `lab backing add kb --kubeconfig F --wait` (no --node-address: kind's
   kubeconfig names 127.0.0.1, lab takes the node's InternalIP), `lab create-clusters 3 --backing kb
   --wait` -> Available (the node simulator writes each Node through its NodePort endpoint), `lab
   delete-clusters --all --wait` -> nothing left in the backing cluster's namespace or its etcd;
   `lab backing remove` -> lab's namespaces gone.
2. Management cluster in kind (`lab up --mode kind --offline`, one node): local and mux backings
   refused with one line (controllers in pods cannot reach 127.x) and nothing created; `lab tune
   --profile high` (no LAB_MODE: the home is in kind mode) rolls the five managers with the new
   args; the same backing, registered from this home (a new etcd CA: the etcd pod rolls), carries
   3 clusters to Available (the management pods reach the backing node's NodePorts through lab's
   pod network masquerade); delete -> zero residue; `lab down` -> no management container left.
   The module's teardown deletes the backing cluster: no container and no kind network left.

Measured here (2 cores shared, load average 5-6): the backing kind cluster in 25 s; 3 clusters
Available in 47 s under the local stack, 65 s under kind management; `lab up --mode kind --offline`
(one node) 94 s; the whole module 8.4 minutes.
"""

from __future__ import annotations

import base64
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from support.docker import Engine
from support.kind import create_backing_cluster, delete_named_cluster, offline_tools
from support.stack import Stack, run_lab, stack_env

from lab import images, images_node, naming, tuning
from lab.backing import kind as kind_backing
from lab.backing import store
from lab.config import Settings, default_home
from lab.etcd import tenants
from lab.kindmgmt import cluster as kind_cluster
from lab.kindmgmt import lease, probes
from lab.kindmgmt import up as kind_up
from lab.kube import Client
from lab.manifests import backing_apiserver
from lab.manifests import etcd as etcd_manifests
from lab.tenant_etcd import ROOT_USER

pytestmark = pytest.mark.slow  # a kind cluster, a local stack, then a kind management cluster

BACKING = "kb"
BACKING_CLUSTER = "lab-backing"
COUNT, START = 3, 1
CREATE_TIMEOUT = 900


@pytest.fixture(scope="module")
def node_image(docker_engine: Engine, base_image: str) -> str:
    """kindest/node:<pinned> in the session engine, from the shared cache's archive (built there
    the first time: see lab.images_node's docstring for the cost)."""
    return images_node.build_node(Settings(home=default_home()), docker_engine.client, print).reference


@pytest.fixture(scope="module")
def backing_cluster(
    docker_engine: Engine, kind: Path, node_image: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Path, str]]:
    """The backing kind cluster: its kubeconfig (server on 127.0.0.1, as kind writes it) and its node
    container's address on the engine's network. Deleted at the end, kind's network with it."""
    kubeconfig = tmp_path_factory.mktemp("kb") / "kubeconfig"
    client = docker_engine.client
    started = time.monotonic()
    node_ip = create_backing_cluster(kind, client, BACKING_CLUSTER, kubeconfig, Settings(home=default_home()))
    print(f"backing kind cluster {BACKING_CLUSTER} at {node_ip} in {time.monotonic() - started:.0f}s")
    try:
        yield kubeconfig, node_ip
    finally:
        gone = delete_named_cluster(kind, client, BACKING_CLUSTER)
        if any(n["Name"] == kind_cluster.KIND_NETWORK for n in client.json("GET", "/networks")):
            client.json("DELETE", f"/networks/{kind_cluster.KIND_NETWORK}")
    assert gone.returncode == 0, gone.stderr
    assert client.json("GET", "/containers/json", {"all": "1"}) == []
    assert sorted(n["Name"] for n in client.json("GET", "/networks")) == ["bridge", "host", "none"]


def _home(prefix: str) -> Path:
    """A short lab home: supervisord's socket path under it must stay below 100 bytes."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp")) / "home"


def _lab(stack: Stack, *args: str, timeout: float = 300) -> str:
    """`lab ARGS` in the stack's environment; its stdout+stderr, asserted: exit 0, no traceback."""
    started = time.monotonic()
    r = run_lab(stack.env, *args, timeout=timeout)
    print(
        f"lab {' '.join(args)}: exit {r.returncode} in {time.monotonic() - started:.1f}s\n{r.stderr[-1500:]}"
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    return r.stdout + r.stderr


def _leave_what_an_earlier_lab_registered(kubeconfig: Path) -> None:
    """The Job and root Secret a registration by an earlier lab version put in the etcd namespace."""
    ns = etcd_manifests.NAMESPACE
    meta = {"namespace": ns, "labels": dict(etcd_manifests.LABELS)}
    pod = {
        "restartPolicy": "Never",
        "containers": [{"name": "bootstrap", "image": etcd_manifests.image(Settings(home=default_home())),
                        "imagePullPolicy": "Never", "command": ["etcd", "--version"]}],
    }  # fmt: skip
    with Client.from_kubeconfig(kubeconfig) as kc:
        kc.apply(
            [
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
                {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "etcd-root-client", **meta},
                 "data": {"note": base64.b64encode(b"left by an earlier lab").decode()}},
                {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "etcd-bootstrap-auth", **meta},
                 "spec": {"backoffLimit": 0, "template": {"spec": pod}}},
            ]
        )  # fmt: skip
        assert kc.get("batch/v1", "Job", "etcd-bootstrap-auth", ns) is not None


def _register(stack: Stack, kubeconfig: Path, node_ip: str) -> kind_backing.KindBacking:
    """`lab backing add` without --node-address: the node's InternalIP, not kind's 127.0.0.1; what
    earlier lab versions registered (kind_backing.RETIRED) gone."""
    assert yaml.safe_load(kubeconfig.read_text())["clusters"][0]["cluster"]["server"].startswith(
        "https://127.0.0.1:"
    )
    out = _lab(stack, "backing", "add", BACKING, "--kubeconfig", str(kubeconfig), "--capacity", "5", "--wait")
    assert f"at {node_ip}," in out, out
    settings = stack.settings()
    entry = store.load(settings, BACKING)
    assert entry is not None and entry.spec["node_address"] == node_ip
    backing = kind_backing.KindBacking(settings, entry)
    with backing.root_etcd() as root:
        assert root.auth_enabled()  # lab bootstrapped it through the NodePort: no Job in the cluster
    with backing.client() as kc:
        [sts] = kc.list("apps/v1", "StatefulSet", etcd_manifests.NAMESPACE)
        [container] = sts["spec"]["template"]["spec"]["containers"]
        assert (container["image"], container["imagePullPolicy"]) == (etcd_manifests.image(settings), "Never")
        assert kc.list("batch/v1", "Job", etcd_manifests.NAMESPACE) == []
        for api, kind_, name in kind_backing.RETIRED:
            assert kc.get(api, kind_, name, etcd_manifests.NAMESPACE) is None, name
    return backing


def _created_and_available(stack: Stack, backing: kind_backing.KindBacking, node_ip: str) -> None:
    """create-clusters on the backing; every apiserver a Deployment Available on its NodePort, and
    each cluster's Node written by the node simulator through that endpoint."""
    out = _lab(
        stack,
        "create-clusters", str(COUNT), "--start", str(START), "--backing", BACKING,
        "--wait", "--timeout", str(CREATE_TIMEOUT),
        timeout=CREATE_TIMEOUT + 120,
    )  # fmt: skip
    assert f"{COUNT} of {COUNT} Available" in out, out
    names = [naming.cluster_name(stack.settings().prefix, i) for i in range(START, START + COUNT)]
    with backing.client() as kc:
        deployments = {
            d["metadata"]["name"]: d for d in kc.list("apps/v1", "Deployment", backing_apiserver.NAMESPACE)
        }
        assert sorted(deployments) == sorted(names)
        for d in deployments.values():
            [c] = d["spec"]["template"]["spec"]["containers"]
            assert c["imagePullPolicy"] == "Never" and c["image"] == backing_apiserver.image(stack.settings())
            assert d["status"].get("availableReplicas") == 1, d["status"]
        ports = {s["metadata"]["name"]: s["spec"]["ports"][0]["nodePort"]
                 for s in kc.list("v1", "Service", backing_apiserver.NAMESPACE)}  # fmt: skip
    assert sorted(ports) == sorted(names) and all(p in backing.block for p in ports.values())
    for name in names:
        r = run_lab(stack.env, "kubeconfig", name, timeout=60)
        assert r.returncode == 0, r.stderr
        doc = yaml.safe_load(r.stdout)
        assert doc["clusters"][0]["cluster"]["server"] == f"https://{node_ip}:{ports[name]}"
        path = stack.home / f"{name}.kubeconfig"
        path.write_text(r.stdout)
        with Client.from_kubeconfig(path) as wc:
            [node] = wc.list("v1", "Node")
            ready = [c for c in node["status"]["conditions"] if c["type"] == "Ready"]
            assert ready and ready[0]["status"] == "True", node["status"]
            assert wc.get("v1", "ConfigMap", "kubeadm-config", "kube-system") is not None
        path.unlink()


def _deleted_without_residue(stack: Stack, backing: kind_backing.KindBacking) -> None:
    """delete-clusters --all --wait: no Deployment, Service, Secret or Pod (not even Terminating) in the
    backing's apiserver namespace, no tenant, user, role or key in its etcd, no namespace in the
    management cluster placed on it."""
    out = _lab(stack, "delete-clusters", "--all", "--wait", timeout=CREATE_TIMEOUT)
    assert f"{COUNT} of {COUNT} deleted" in out, out
    ns = backing_apiserver.NAMESPACE
    with backing.client() as kc:
        for api, kind_ in (("apps/v1", "Deployment"), ("v1", "Service"), ("v1", "Secret")):
            left = [o["metadata"]["name"] for o in kc.list(api, kind_, ns)]
            assert left == [], f"{kind_}: {left}"
        pods = [p["metadata"]["name"] for p in kc.list("v1", "Pod", ns)]
        assert pods == [], pods  # remove waited for them: not even Terminating
    with backing.root_etcd() as root:
        assert tenants.list_tenants(root) == []
        assert root.users() == [ROOT_USER] and root.roles() == [ROOT_USER]
        assert root.count(b"\0", b"\0") == 0  # not one key
    assert backing.present() == set()
    placed = stack.kubectl_json("get", "namespaces", "-l", f"{naming.BACKING_LABEL}={BACKING}")["items"]
    assert placed == []


def test_kind_backing_under_the_local_stack(docker_engine: Engine, backing_cluster: tuple[Path, str]) -> None:
    kubeconfig, node_ip = backing_cluster
    home = _home("labkbl-")
    env = {**stack_env(home), **docker_engine.env()}
    stack = Stack(env=env, home=home, up_seconds=0.0, up_stdout="")
    try:
        _lab(stack, "up", timeout=3600)
        _leave_what_an_earlier_lab_registered(kubeconfig)
        backing = _register(stack, kubeconfig, node_ip)
        _created_and_available(stack, backing, node_ip)
        _deleted_without_residue(stack, backing)
        _lab(stack, "backing", "remove", BACKING)
        with Client.from_kubeconfig(kubeconfig) as kc:
            deadline = time.monotonic() + 300
            names = {etcd_manifests.NAMESPACE, backing_apiserver.NAMESPACE}
            while names & {n["metadata"]["name"] for n in kc.list("v1", "Namespace")}:
                assert time.monotonic() < deadline, "lab's namespaces still in the backing cluster"
                time.sleep(3)
    finally:
        down = run_lab(stack.env, "down", "--purge", timeout=300)
        shutil.rmtree(home.parent, ignore_errors=True)
    assert down.returncode == 0, down.stderr


def _timestamp(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def _tuned_and_rolled(stack: Stack, settings: Settings) -> None:
    """`lab tune --profile high` without LAB_MODE: every tuned manager's live Deployment has the
    profile's flags, a new generation observed, and only pods created after the tune, all Ready."""
    with Client.from_kubeconfig(stack.kubeconfig) as kc:
        before = {c: kc.get("apps/v1", "Deployment", n, ns) for c, (ns, n) in tuning.DEPLOYMENTS.items()}
    started = time.time()
    _lab(stack, "tune", "--profile", "high", timeout=900)
    assert kind_up.read_state(settings)["profile"] == "high"
    with Client.from_kubeconfig(stack.kubeconfig) as kc:
        for component, (ns, name) in tuning.DEPLOYMENTS.items():
            old = before[component]
            assert old is not None
            wanted = tuning.flags(settings, component, "high")
            assert wanted, component
            deadline = time.monotonic() + 300
            while True:
                dep = kc.get("apps/v1", "Deployment", name, ns)
                assert dep is not None
                status, replicas = dep.get("status") or {}, dep["spec"].get("replicas", 1)
                selector = ",".join(f"{k}={v}" for k, v in dep["spec"]["selector"]["matchLabels"].items())
                pods = [p for p in kc.list("v1", "Pod", ns, label_selector=selector)
                        if not p["metadata"].get("deletionTimestamp")]  # fmt: skip
                rolled = (
                    status.get("observedGeneration") == dep["metadata"]["generation"]
                    and status.get("updatedReplicas") == status.get("availableReplicas") == replicas
                    and len(pods) == replicas
                )
                if rolled or time.monotonic() > deadline:
                    break
                time.sleep(3)
            container = dep["spec"]["template"]["spec"]["containers"][0]
            args = container["args"]
            assert set(wanted) <= set(args), f"{component}: {sorted(set(wanted) - set(args))} not in {args}"
            assert probes.patch_ops(container) == [], f"{component}: probes not widened: {container}"
            leads = lease.leads(component, args)
            assert leads == (component != "capm3-manager"), f"{component}: leader election in {args}"
            if leads:
                assert set(lease.flags(settings, component)) <= set(args), f"{component}: {args}"
            assert dep["metadata"]["generation"] > old["metadata"]["generation"], component
            assert rolled, f"{ns}/{name} not rolled out: {status}"
            for pod in pods:
                assert _timestamp(pod["metadata"]["creationTimestamp"]) >= started - 2, pod["metadata"][
                    "name"
                ]
                ready = [c for c in pod["status"].get("conditions") or [] if c["type"] == "Ready"]
                assert ready and ready[0]["status"] == "True", pod["metadata"]["name"]
            if leads and component in lease.LEASES:
                _leads_with_widened_lease(kc, ns, component, {p["metadata"]["name"] for p in pods})


def _leads_with_widened_lease(kc: Client, ns: str, component: str, pods: set[str]) -> None:
    """The new pod holds the manager's Lease with lab's duration within one retry period of the
    rollout (lab released the old pod's Lease), so the manager accepted the deadline flags."""
    name, deadline = lease.LEASES[component], time.monotonic() + 2 * lease.RETRY_SECONDS + 10
    held: dict = {}
    while time.monotonic() < deadline:
        held = kc.get("coordination.k8s.io/v1", "Lease", name, ns) or {}
        if held and lease.holder_pod(held) in pods:
            break
        time.sleep(2)
    assert held and lease.holder_pod(held) in pods, f"{ns}/{name}: {held.get('spec')} not held by {pods}"
    assert held["spec"].get("leaseDurationSeconds") == lease.LEASE_SECONDS, held["spec"]


def _refused(stack: Stack, backing_name: str) -> None:
    """One error line before anything is created (no namespace for the cluster, no run recorded)."""
    r = run_lab(stack.env, "create-clusters", "1", "--start", "50", "--backing", backing_name, timeout=120)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2 and len(lines) == 1, r.stdout + r.stderr
    assert lines[0].startswith(f"error: backing {backing_name} (") and "loopback" in lines[0], lines
    assert stack.kubectl("get", "namespace", "test-50", check=False).returncode != 0


def test_kind_backing_under_the_kind_management_cluster(
    docker_engine: Engine, backing_cluster: tuple[Path, str], kind: Path, tmp_path: Path
) -> None:
    kubeconfig, node_ip = backing_cluster
    shared = Settings(home=default_home())
    client = docker_engine.client
    for name in images.IMAGES:  # loaded from the shared cache's archives (built there when missing)
        print(f"{name}: {images.build_one(shared, client, name, print).action}")
    tools = offline_tools(tmp_path / "tools", kind)
    home = _home("labkbk-")
    env = {
        **stack_env(home),
        **docker_engine.env(),
        "LAB_KIND_NODES": "1",
        "PATH": f"{tools}:{os.environ['PATH']}",
    }
    stack = Stack(env=env, home=home, up_seconds=0.0, up_stdout="")
    settings = stack.settings()
    down: Any = None
    try:
        _lab(stack, "up", "--mode", "kind", "--offline", timeout=1800)
        for builtin in naming.BUILT_IN_BACKINGS:
            _refused(stack, builtin)
        _tuned_and_rolled(stack, settings)
        backing = _register(stack, kubeconfig, node_ip)
        _created_and_available(stack, backing, node_ip)
        _deleted_without_residue(stack, backing)
        _lab(stack, "backing", "remove", BACKING)
        down = run_lab(stack.env, "down", timeout=600)  # no LAB_MODE: the home knows it is in kind
    finally:
        if down is None or down.returncode != 0:  # leave the engine to the backing fixture's checks
            delete_named_cluster(kind, client, kind_cluster.CLUSTER_NAME)
        shutil.rmtree(home.parent, ignore_errors=True)
    assert down.returncode == 0, down.stdout + down.stderr
    assert "stack stopped" in down.stdout
    names = [c["Names"][0].lstrip("/") for c in client.json("GET", "/containers/json", {"all": "1"})]
    assert names == [f"{BACKING_CLUSTER}-control-plane"], names  # the management cluster's node is gone
