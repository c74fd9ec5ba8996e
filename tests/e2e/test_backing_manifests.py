"""End-to-end: the kind backing's objects and `lab backing add|list|remove` against a real apiserver.

No kind cluster, no Docker and no kubelet here: the local stack's management kube-apiserver stands
in for the backing kind cluster. Objects are created and validated for real (schema, defaulting,
NodePort allocation, namespace lifecycle), but no Pod ever runs: the stack's controller manager
runs no StatefulSet or Deployment controller, so the etcd and the workload apiservers are never
started and nothing here waits for a Pod. Where ensure needs the backing's etcd, a real etcd process
trusting the backing's etcd CA stands in for the etcd Pod behind its NodePort (fixture backing_etcd).
NodePorts are really held by the Services lab creates (the apiserver refuses a second Service on a
port), which is what lab's port hand-out rests on; that kind publishes them on the VM is the
playbook's part (tests/integration/test_playbooks.py checks the rendered kind config).
"""

from __future__ import annotations

import base64
import json
import stat
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml
from support.stack import Stack

from lab import naming, pki
from lab.backing import kind, node_ports, store
from lab.config import Settings
from lab.errors import LabError
from lab.manifests import backing_apiserver as apiserver_manifests
from lab.manifests import etcd as etcd_manifests

pytestmark = pytest.mark.slow

BACKING = "b1"
LAB_NAMESPACES = (etcd_manifests.NAMESPACE, apiserver_manifests.NAMESPACE)
#: Ports of the dry run and the hand-out tests: far from the default block the other tests use.
DRY_RUN_PORT = 30099


def _wait_gone(stack: Stack, *namespaces: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    left: list[str] = list(namespaces)
    while time.monotonic() < deadline:
        left = [ns for ns in namespaces if stack.kubectl("get", "namespace", ns, check=False).returncode == 0]
        if not left:
            return
        time.sleep(1)
    raise AssertionError(f"namespaces {left} still there after {timeout:.0f}s")


def _settings(stack: Stack) -> Settings:
    return Settings(home=stack.home)


@pytest.fixture(scope="module")
def added(stack: Stack) -> Iterator[store.Entry]:
    """`lab backing add b1` with the stack's own admin kubeconfig; removed (and waited for) after."""
    r = stack.lab("backing", "add", BACKING, "--kubeconfig", str(stack.kubeconfig), "--capacity", "3")
    assert f"backing {BACKING} (kind, capacity 3) at 127.0.0.1" in r.stderr, r.stderr
    entry = store.load(_settings(stack), BACKING)
    assert entry is not None
    try:
        yield entry
    finally:
        if store.load(_settings(stack), BACKING) is not None:
            stack.lab("backing", "remove", BACKING, "--force", check=False)
        _wait_gone(stack, *LAB_NAMESPACES)


def test_add_installs_the_etcd_and_keeps_every_secret_file_private(stack: Stack, added: store.Entry) -> None:
    assert added.runtime == "kind" and added.capacity == 3
    assert added.spec["node_address"] == "127.0.0.1"
    # the playbook's default block and etcd port, recorded in the entry
    assert (added.spec["node_ports"], added.spec["etcd_node_port"]) == ("30000-30099", 32767)
    sts = stack.kubectl_json("get", "statefulset", etcd_manifests.NAME, "-n", etcd_manifests.NAMESPACE)
    assert sts["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.k8s.io/etcd:3.6.6-0"
    ext = stack.kubectl_json(
        "get", "service", etcd_manifests.EXTERNAL_SERVICE, "-n", etcd_manifests.NAMESPACE
    )
    assert ext["spec"]["type"] == "NodePort" and ext["spec"]["ports"][0]["nodePort"] == 32767
    stack.kubectl("get", "namespace", apiserver_manifests.NAMESPACE)
    d = store.backing_dir(_settings(stack), BACKING)
    private = [d / kind.KUBECONFIG, d / "etcd-ca" / "ca.key", d / "etcd-root.key", d / "etcd-server.key"]
    private += [d / store.SPEC_FILE]
    for f in private:
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    # the copy answers on its own
    assert yaml.safe_load((d / kind.KUBECONFIG).read_text())["current-context"] == BACKING
    secrets = stack.kubectl_json("get", "secrets", "-n", etcd_manifests.NAMESPACE)["items"]
    ca_key = (d / "etcd-ca" / "ca.key").read_bytes()
    for s in secrets:
        for v in (s.get("data") or {}).values():
            assert base64.b64decode(v) != ca_key


def test_every_backing_manifest_passes_server_dry_run(
    stack: Stack, added: store.Entry, tmp_path: Path
) -> None:
    """etcd objects (fresh certificates) and one rendered cluster's apiserver objects."""
    settings = _settings(stack)
    ca = pki.new_ca("dry-run-etcd-ca")
    server, _root = etcd_manifests.certificates(ca, node_addresses=["127.0.0.1"])
    cp = pki.generate_cluster_pki("test-4242", "127.0.0.1", DRY_RUN_PORT, ca)
    objs: list[dict[str, Any]] = [
        *kind.etcd_objects(settings, ca, server),
        *apiserver_manifests.objects(settings, cp, 4242, DRY_RUN_PORT),
    ]
    doc = {"apiVersion": "v1", "kind": "List", "items": objs}
    out = stack.kubectl("apply", "--dry-run=server", "-o", "name", "-f", "-", input_text=json.dumps(doc))
    applied = out.stdout.split()
    expected = [
        f"{o['kind'].lower()}{'.apps' if o['apiVersion'] == 'apps/v1' else '.batch' if o['apiVersion'] == 'batch/v1' else ''}/{o['metadata']['name']}"
        for o in objs
    ]
    assert sorted(applied) == sorted(expected), out.stderr
    # a dry run creates nothing
    assert (
        stack.kubectl(
            "get", "deployment", "test-4242", "-n", apiserver_manifests.NAMESPACE, check=False
        ).returncode
        != 0
    )


def test_list_shows_capacity_use_and_address(stack: Stack, added: store.Entry) -> None:
    rows = json.loads(stack.lab("backing", "list", "-o", "json").stdout)
    [b1] = [r for r in rows if r["name"] == BACKING]
    assert b1 == {"name": BACKING, "runtime": "kind", "capacity": 3, "used": 0, "address": "127.0.0.1"}
    table = stack.lab("backing", "list").stdout
    assert BACKING in table and "127.0.0.1" in table


def _with_block(entry: store.Entry, block: str) -> store.Entry:
    return store.Entry(entry.name, entry.runtime, entry.capacity, {**entry.spec, "node_ports": block})


def _foreign_service(name: str, port: int) -> dict[str, Any]:
    """A NodePort Service that is not lab's (no cluster label, another namespace)."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"type": "NodePort", "ports": [{"port": 443, "nodePort": port, "protocol": "TCP"}]},
    }


def _taken(stack: Stack) -> set[int]:
    items = stack.kubectl_json("get", "services", "--all-namespaces")["items"]
    return {p["nodePort"] for s in items for p in s["spec"].get("ports", []) if p.get("nodePort")}


def test_ports_come_from_the_block_and_a_full_block_is_refused_before_any_change(
    stack: Stack, added: store.Entry
) -> None:
    """Block 32000-32005 of b1. A Service of test-1 holds 32001 and someone else's 32000: test-1
    keeps 32001; test-2..5, asked from four threads at once, get the four other ports, each once;
    test-6 finds the block full. ensure refuses, before creating anything, a cluster on a full block
    and a cluster whose handed-out port another Service took meanwhile."""
    settings = _settings(stack)
    ns = apiserver_manifests.NAMESPACE
    held = apiserver_manifests.service("test-1", 1, 32001)
    foreign = _foreign_service("np-foreign", 32000)
    for o in (held, foreign):
        stack.kubectl("apply", "-f", "-", input_text=json.dumps(o))
    try:
        b = kind.KindBacking(settings, _with_block(added, "32000-32005"))
        assert b.present() == {"test-1"} and b.used() == 1
        rows = json.loads(stack.lab("backing", "list", "-o", "json").stdout)
        assert [r["used"] for r in rows if r["name"] == BACKING] == [1]
        assert b.endpoint("test-1", 1) == ("127.0.0.1", 32001)
        names = [(f"test-{i}", i) for i in range(2, 6)]
        with ThreadPoolExecutor(4) as pool:
            got = dict(zip([n for n, _ in names], pool.map(lambda c: b.endpoint(*c)[1], names), strict=True))
        assert sorted(got.values()) == [32002, 32003, 32004, 32005]
        assert {n: b.endpoint(n, i)[1] for n, i in names} == got  # the same answer every time
        with pytest.raises(
            LabError, match=r"^backing b1: NodePort block 32000-32005 is full .* no port for test-6"
        ):
            b.endpoint("test-6", 6)

        # someone takes test-2's port before its Service exists: ensure refuses, nothing created
        stack.kubectl("apply", "-f", "-", input_text=json.dumps(_foreign_service("np-late", got["test-2"])))
        with pytest.raises(LabError, match="lost the NodePort handed out to them, first test-2"):
            b.ensure([("test-2", 2), ("test-3", 3)])
        full = kind.KindBacking(settings, _with_block(added, "32000-32001"))
        assert full.endpoint("test-1", 1)[1] == 32001
        with pytest.raises(LabError, match="NodePort block 32000-32001 is full"):
            full.ensure([("test-7", 7)])
        for n in ("test-2", "test-3", "test-7"):
            assert not pki.cluster_pki_dir(settings, n).exists()
            assert stack.kubectl("get", "secret", f"{n}-pki", "-n", ns, check=False).returncode != 0
    finally:
        stack.kubectl("delete", "service", "test-1", "-n", ns, "--ignore-not-found")
        stack.kubectl("delete", "service", "np-foreign", "np-late", "-n", "default", "--ignore-not-found")
    assert kind.KindBacking(settings, added).used() == 0


@pytest.fixture
def backing_etcd(stack: Stack, added: store.Entry, tmp_path: Path) -> Iterator[str]:
    """A real etcd standing in for the backing's etcd Pod: it trusts the backing's etcd CA (the CA
    lab keeps for b1) and serves on loopback, where KindBacking dials it instead of the NodePort."""
    import shutil

    from support import etcd as etcd_local

    from lab import build
    from lab.config import default_home
    from lab.etcd.server import etcd_ca_dir

    binary = build.ensure(Settings(home=default_home()), ["etcd"], log=print)["etcd"]
    home = tmp_path / "etcd-home"
    ca_dir = etcd_ca_dir(Settings(home=home))
    ca_dir.mkdir(parents=True, mode=0o700)
    for f in ("ca.crt", "ca.key"):
        shutil.copy2(store.backing_dir(_settings(stack), BACKING) / "etcd-ca" / f, ca_dir / f)
    with etcd_local.scratch(home, binary, bootstrap=False) as running:
        yield running.endpoint


def test_ensure_and_remove_a_cluster_on_the_backing(
    stack: Stack, added: store.Entry, backing_etcd: str
) -> None:
    """ensure: Secret, tenant (bootstrapping auth on a fresh etcd), Deployment, Service; wait_ready
    names why no apiserver answers (no Pod: no ReplicaSet controller here); remove leaves nothing."""
    from lab.etcd import tenants

    settings = _settings(stack)
    entry = store.Entry(
        added.name, added.runtime, added.capacity, {**added.spec, "etcd_endpoint": backing_etcd}
    )
    b = kind.KindBacking(settings, entry)
    ns = apiserver_manifests.NAMESPACE
    with b.root_etcd() as root:
        assert not root.auth_enabled()  # nothing in the backing cluster turns it on: lab does
    lowest = min(p for p in node_ports.DEFAULT_BLOCK if p not in _taken(stack))
    try:
        assert b.endpoint("test-5", 5) == ("127.0.0.1", lowest)  # asked first, as create-clusters does
        b.ensure([("test-5", 5)])
        b.wait_etcd(10)
        b.ensure([("test-5", 5)])  # idempotent
        dep = stack.kubectl_json("get", "deployment", "test-5", "-n", ns)
        args = dep["spec"]["template"]["spec"]["containers"][0]["args"]
        assert "--etcd-prefix=/test-5" in args
        svc = stack.kubectl_json("get", "service", "test-5", "-n", ns)
        assert svc["spec"]["ports"][0]["nodePort"] == b.endpoint("test-5", 5)[1] == lowest
        # a later run (a new backing object, as after a crash) finds the port its Service holds
        again = kind.KindBacking(settings, entry)
        assert again.endpoint("test-5", 5) == ("127.0.0.1", lowest)
        assert again.endpoint("test-6", 6)[1] == min(
            p for p in node_ports.DEFAULT_BLOCK if p not in _taken(stack)
        )
        kubeconfig = yaml.safe_load(
            (pki.cluster_pki_dir(settings, "test-5") / "admin.kubeconfig").read_text()
        )
        [c] = kubeconfig["clusters"]
        assert c["cluster"]["server"] == f"https://127.0.0.1:{lowest}"  # what CAPI dials
        stack.kubectl("get", "secret", "test-5-pki", "-n", ns)
        with b.root_etcd() as root:
            assert root.auth_enabled()
            assert [t.name for t in tenants.list_tenants(root) if t.complete] == ["test-5"]
        assert b.present() == {"test-5"} and b.used() == 1
        with pytest.raises(LabError, match="test-5: no Pod"):
            b.wait_ready(["test-5"], timeout=2)
    finally:
        b.remove(["test-5"])
    for what in ("deployment", "service"):
        assert stack.kubectl("get", what, "test-5", "-n", ns, check=False).returncode != 0
    assert stack.kubectl("get", "secret", "test-5-pki", "-n", ns, check=False).returncode != 0
    with b.root_etcd() as root:
        assert tenants.list_tenants(root) == []
    assert not pki.cluster_pki_dir(settings, "test-5").exists()
    assert b.present() == set()
    b.remove(["test-5"])  # what is gone is fine


def test_remove_is_refused_while_a_cluster_is_placed_then_uninstalls(
    stack: Stack, added: store.Entry
) -> None:
    probe = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": "backing-probe", "labels": {naming.BACKING_LABEL: BACKING}},
    }
    stack.kubectl("apply", "-f", "-", input_text=json.dumps(probe))
    try:
        r = stack.lab("backing", "remove", BACKING, check=False)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 1 and len(lines) == 1, r.stderr
        assert lines[0].startswith(f"error: 1 cluster(s) are placed on backing {BACKING}")
        assert store.load(_settings(stack), BACKING) is not None
        stack.kubectl("get", "namespace", etcd_manifests.NAMESPACE)  # nothing uninstalled
    finally:
        stack.kubectl("delete", "namespace", "backing-probe", "--ignore-not-found", "--wait=false")
    _wait_gone(stack, "backing-probe")  # a terminating namespace still counts as placed
    stack.lab("backing", "remove", BACKING)
    assert store.load(_settings(stack), BACKING) is None
    assert not store.backing_dir(_settings(stack), BACKING).exists()
    rows = json.loads(stack.lab("backing", "list", "-o", "json").stdout)
    assert BACKING not in [r["name"] for r in rows]
    _wait_gone(stack, *LAB_NAMESPACES)
