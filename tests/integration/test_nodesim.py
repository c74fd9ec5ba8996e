"""The node simulator against real processes: a real kube-apiserver with the upstream CAPI, CAPM3
and BMO CRDs stands in for the management cluster; the workload cluster is a real supervised
kube-apiserver on its tenant (lab.backing.local). The objects the controllers would have made
(Machine, Metal3Machine, KubeadmConfig, a provisioned BMH) are made by hand."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from support.apiserver import RunningApiserver
from support.etcd import RunningEtcd

from lab import build, crds, naming, nodesim, phases, pki, pki_store
from lab.backing import local
from lab.config import Settings, default_home
from lab.kube import Client
from lab.phases import Phase
from lab.runtime.supervise import ensure_running

M3_API = "infrastructure.cluster.x-k8s.io/v1beta2"

#: A Go program that parses a ClusterConfiguration with CAPI's own code (what KCP's
#: UpdateClusterConfiguration calls) and prints what it understood, as JSON.
CAPI_PARSER = """package main

import (
	"encoding/json"
	"io"
	"os"

	kubeadmtypes "sigs.k8s.io/cluster-api/bootstrap/kubeadm/types"
)

func main() {
	in, _ := io.ReadAll(os.Stdin)
	cc, data, err := kubeadmtypes.UnmarshalClusterConfiguration(string(in))
	if err != nil {
		os.Stderr.WriteString(err.Error() + "\\n")
		os.Exit(1)
	}
	_ = json.NewEncoder(os.Stdout).Encode(map[string]any{"cc": cc, "data": data})
}
"""


@pytest.fixture(scope="module")
def capi_parser(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """CAPI's ClusterConfiguration parser at the pinned CAPI version, built with the Go toolchain
    (module cache and build cache make it a few seconds when warm)."""
    go = shutil.which("go") or "/usr/local/go/bin/go"
    d = tmp_path_factory.mktemp("capi-parser")
    capi = Settings(home=d).versions.capi
    (d / "main.go").write_text(CAPI_PARSER)
    (d / "go.mod").write_text(f"module labcheck\n\ngo 1.25.0\n\nrequire sigs.k8s.io/cluster-api {capi}\n")
    env = {**os.environ, "GOFLAGS": "-mod=mod", "GONOSUMDB": "github.com/metal3-io"}
    for argv in ([go, "mod", "tidy"], [go, "build", "-o", "parse", "."]):
        proc = subprocess.run(argv, cwd=d, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-2000:]
    return d / "parse"


def capi_parse(parser: Path, text: str) -> dict[str, Any]:
    proc = subprocess.run([str(parser)], input=text, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return dict(json.loads(proc.stdout))


def _free_index() -> int:
    """An index whose 127.1.x.y:6443 is free, away from test_backing_local's range."""
    i = 56000 + (os.getpid() % 2000) * 4
    while True:
        with socket.socket() as s:
            try:
                s.bind((naming.local_endpoint(i)[0], naming.APISERVER_PORT))
                return i
            except OSError:
                i += 1


@pytest.fixture(scope="module")
def settings(tenant_etcd: RunningEtcd) -> Iterator[Settings]:
    build.ensure(Settings(home=default_home()), ["kube-apiserver"], log=print)
    s = tenant_etcd.settings.model_copy(update={"bin_cache": default_home() / "bin"})
    sup = ensure_running(s)
    yield s
    sup.shutdown()


@pytest.fixture(scope="module")
def workload(settings: Settings) -> Iterator[tuple[str, int]]:
    index = _free_index()
    [name] = local.ensure(settings, [index])
    local.wait_ready(settings, [name])
    yield name, index
    local.remove(settings, [name])


@pytest.fixture(scope="module")
def mgmt(apiserver: RunningApiserver, settings: Settings) -> Iterator[Client]:
    with Client.from_kubeconfig(apiserver.kubeconfig) as c:
        c.apply(crds.crd_documents(settings, components=["capi", "capm3", "bmo"]))
        deadline = time.monotonic() + 90
        while True:  # CRDs are served a moment after they are Established
            try:
                c.discover()
                for api, kind in ((M3_API, "Metal3Machine"), (nodesim.BMH_API, "BareMetalHost")):
                    c.resource(api, kind)
                c.resource(nodesim.BOOTSTRAP_API, "KubeadmConfig")
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)
        yield c


def _host(mgmt: Client, ns: str, cluster: str, machine: str, control_plane: bool) -> dict[str, Any]:
    """Machine -> Metal3Machine -> provisioned BMH (+ KubeadmConfig for control planes); the BMH."""
    labels = {nodesim.CLUSTER_NAME_LABEL: cluster}
    if control_plane:
        labels[nodesim.CONTROL_PLANE_MACHINE_LABEL] = ""
    kc_name = f"{machine}-kc"
    m = mgmt.apply_one(
        {
            "apiVersion": nodesim.CAPI_API,
            "kind": "Machine",
            "metadata": {"name": machine, "namespace": ns, "labels": labels},
            "spec": {
                "clusterName": cluster,
                "version": "v1.35.4",
                "bootstrap": {
                    "configRef": {
                        "apiGroup": "bootstrap.cluster.x-k8s.io",
                        "kind": "KubeadmConfig",
                        "name": kc_name,
                    }
                },
                "infrastructureRef": {
                    "apiGroup": "infrastructure.cluster.x-k8s.io",
                    "kind": "Metal3Machine",
                    "name": machine,
                },
            },
        }
    )
    owner = {"apiVersion": nodesim.CAPI_API, "kind": "Machine", "name": machine, "uid": m["metadata"]["uid"]}
    mgmt.apply_one(
        {
            "apiVersion": nodesim.BOOTSTRAP_API,
            "kind": "KubeadmConfig",
            "metadata": {"name": kc_name, "namespace": ns, "ownerReferences": [owner]},
            "spec": {"initConfiguration": {"nodeRegistration": {"name": "{{ ds.meta_data.name }}"}}},
        }
    )
    mgmt.apply_one(
        {
            "apiVersion": M3_API,
            "kind": "Metal3Machine",
            "metadata": {"name": machine, "namespace": ns, "labels": labels, "ownerReferences": [owner]},
            "spec": {"image": {"url": "http://172.22.0.1/images/node.img", "checksum": "abc"}},
        }
    )
    bmh_name = f"bmh-{machine}"
    bmh = mgmt.apply_one(
        {
            "apiVersion": nodesim.BMH_API,
            "kind": "BareMetalHost",
            "metadata": {"name": bmh_name, "namespace": ns},
            "spec": {
                "online": True,
                "consumerRef": {
                    "apiVersion": M3_API,
                    "kind": "Metal3Machine",
                    "name": machine,
                    "namespace": ns,
                },
            },
        }
    )
    res = mgmt.resource(nodesim.BMH_API, "BareMetalHost")
    status = {
        "apiVersion": nodesim.BMH_API,
        "kind": "BareMetalHost",
        "metadata": {"name": bmh_name, "namespace": ns},
        "status": {
            "operationalStatus": "OK",
            "errorCount": 0,
            "errorMessage": "",
            "poweredOn": True,
            "provisioning": {
                "state": "provisioned",
                "ID": str(uuid.uuid4()),
                "bootMode": "UEFI",
                "image": {"url": "http://x/i.img"},
            },
        },
    }
    mgmt.request(
        "PATCH",
        res.path(ns, bmh_name) + "/status",
        params={"fieldManager": "test", "force": "true"},
        body=status,
        content_type="application/apply-patch+yaml",
    )
    got = mgmt.get(nodesim.BMH_API, "BareMetalHost", bmh_name, ns)
    assert got is not None and got["status"]["provisioning"]["state"] == "provisioned"
    assert bmh["metadata"]["uid"] == got["metadata"]["uid"]
    return got


@pytest.fixture(scope="module")
def cluster_ns(mgmt: Client, workload: tuple[str, int]) -> str:
    name, index = workload
    host, port = naming.local_endpoint(index)
    mgmt.apply_one(
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": name, "labels": {naming.CLUSTER_LABEL: name}},
        }
    )
    mgmt.apply_one(
        {
            "apiVersion": nodesim.CAPI_API,
            "kind": "Cluster",
            "metadata": {"name": name, "namespace": name},
            "spec": {"controlPlaneEndpoint": {"host": host, "port": port}},
        }
    )
    return name


def test_builders_are_what_capi_reads() -> None:
    n = nodesim.node("m-1", "u-1", control_plane=True)
    assert n["metadata"]["labels"][nodesim.UUID_LABEL] == "u-1"
    assert "providerID" not in n["spec"]
    assert n["spec"]["taints"] == [{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]
    w = nodesim.node("m-2", "u-2", control_plane=False)
    assert nodesim.CP_ROLE_LABEL not in w["metadata"]["labels"] and "taints" not in w["spec"]
    cc = nodesim.cluster_configuration("c", "v1.35.4", "127.1.0.1:6443")
    assert cc["apiVersion"] == "kubeadm.k8s.io/v1beta4" and "external" in cc["etcd"]
    assert nodesim.kubeadm_api_version("v1.30.2") == "kubeadm.k8s.io/v1beta3"


def test_control_plane_host_gets_node_pods_config_and_annotation(
    settings: Settings, mgmt: Client, workload: tuple[str, int], cluster_ns: str, capi_parser: Path
) -> None:
    name, index = workload
    bmh = _host(mgmt, cluster_ns, name, f"{name}-cp-abcde", control_plane=True)
    before = time.time()
    assert nodesim.reconcile_host(settings, mgmt, bmh) is True
    after = time.time()
    stamped = mgmt.get(nodesim.BMH_API, "BareMetalHost", bmh["metadata"]["name"], cluster_ns)
    assert stamped is not None
    stamp = stamped["metadata"]["annotations"][phases.NODE_WRITTEN_ANNOTATION]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", stamp), stamp
    written_at = phases.node_written_at(stamped)
    assert written_at is not None and before - 0.001 <= written_at <= after
    assert Phase.node_written in phases.observed(stamped)

    with Client.from_kubeconfig(local.admin_kubeconfig(settings, name)) as wc:
        node = wc.get("v1", "Node", f"{name}-cp-abcde")
        assert node is not None
        assert node["metadata"]["labels"]["metal3.io/uuid"] == bmh["metadata"]["uid"]
        assert node["metadata"]["labels"]["node-role.kubernetes.io/control-plane"] == ""
        assert node["spec"]["taints"] == [
            {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}
        ]
        assert not node["spec"].get("providerID")
        assert {c["type"]: c["status"] for c in node["status"]["conditions"]} == {
            "Ready": "True",
            "MemoryPressure": "False",
            "DiskPressure": "False",
            "PIDPressure": "False",
        }
        assert node["status"]["nodeInfo"]["kubeletVersion"] == "v1.35.4"
        # what CAPM3 does: find by label, then patch the providerID
        found = wc.list("v1", "Node", label_selector=f"metal3.io/uuid={bmh['metadata']['uid']}")
        assert [n["metadata"]["name"] for n in found] == [f"{name}-cp-abcde"]

        # KCP's cached pod selector
        pods = wc.list(
            "v1",
            "Pod",
            "kube-system",
            label_selector="tier=control-plane,component in (etcd,kube-apiserver,kube-controller-manager,kube-scheduler)",
        )
        assert sorted(p["metadata"]["name"] for p in pods) == sorted(
            f"{c}-{name}-cp-abcde" for c in ("kube-apiserver", "kube-controller-manager", "kube-scheduler")
        )
        for p in pods:
            assert p["status"]["phase"] == "Running"
            assert {c["type"]: c["status"] for c in p["status"]["conditions"]}["Ready"] == "True"
            assert p["metadata"]["annotations"]["kubernetes.io/config.mirror"]
            assert p["spec"]["nodeName"] == f"{name}-cp-abcde"

        cm = wc.get("v1", "ConfigMap", "kubeadm-config", "kube-system")
        assert cm is not None
        cc = yaml.safe_load(cm["data"]["ClusterConfiguration"])
        host, port = naming.local_endpoint(index)
        assert cc["apiVersion"] == "kubeadm.k8s.io/v1beta4" and cc["kind"] == "ClusterConfiguration"
        assert cc["kubernetesVersion"] == "v1.35.4" and cc["controlPlaneEndpoint"] == f"{host}:{port}"
        assert cc["clusterName"] == name
        parsed = capi_parse(capi_parser, cm["data"]["ClusterConfiguration"])
        assert parsed["cc"]["controlPlaneEndpoint"] == f"{host}:{port}"
        assert parsed["cc"]["etcd"]["external"]["endpoints"]
        assert parsed["data"]["KubernetesVersion"] == "v1.35.4" and parsed["data"]["ClusterName"] == name
        assert parsed["data"]["ServiceSubnet"] == pki.SERVICE_CIDR

        # a second pass writes nothing and leaves what others changed (CAPM3's providerID) alone
        res = wc.resource("v1", "Node")
        wc.request(
            "PATCH",
            res.path(None, f"{name}-cp-abcde"),
            body={"spec": {"providerID": f"metal3://{name}/bmh/{name}-cp-abcde"}},
            content_type="application/strategic-merge-patch+json",
        )
        rv = wc.get("v1", "Node", f"{name}-cp-abcde")["metadata"]["resourceVersion"]  # type: ignore[index]
        assert nodesim.reconcile_host(settings, mgmt, bmh) is True
        again = wc.get("v1", "Node", f"{name}-cp-abcde")
        assert again is not None and again["metadata"]["resourceVersion"] == rv
        # ... and never moves the stamp, even when handed the host as it was before the first pass
        host = mgmt.get(nodesim.BMH_API, "BareMetalHost", bmh["metadata"]["name"], cluster_ns)
        assert host is not None
        assert host["metadata"]["annotations"][phases.NODE_WRITTEN_ANNOTATION] == stamp
        assert host["metadata"]["resourceVersion"] == stamped["metadata"]["resourceVersion"]

    kc = mgmt.get(nodesim.BOOTSTRAP_API, "KubeadmConfig", f"{name}-cp-abcde-kc", cluster_ns)
    assert kc is not None
    expiry = kc["metadata"]["annotations"][nodesim.CERT_EXPIRY_ANNOTATION]
    assert expiry == pki_store.load_keypair(
        pki.cluster_pki_dir(settings, name), "apiserver"
    ).not_after.strftime(  # type: ignore[union-attr]
        "%Y-%m-%dT%H:%M:%SZ"
    )


def test_capi_rejects_what_is_not_a_cluster_configuration(capi_parser: Path) -> None:
    """The parser check can fail: a ConfigMap is not a ClusterConfiguration."""
    proc = subprocess.run(
        [str(capi_parser)], input="apiVersion: v1\nkind: ConfigMap\n", capture_output=True, text=True
    )
    assert proc.returncode == 1 and "unknown kubeadm types" in proc.stderr


def test_not_provisioned_is_not_yet(settings: Settings, mgmt: Client) -> None:
    bmh = {
        "metadata": {"name": "x", "namespace": "y", "uid": "z"},
        "spec": {},
        "status": {"provisioning": {"state": "provisioning"}},
    }
    assert nodesim.reconcile_host(settings, mgmt, bmh) is False


def test_run_loop_writes_worker_nodes(
    settings: Settings, mgmt: Client, workload: tuple[str, int], cluster_ns: str
) -> None:
    """One host exists before the loop starts (the re-sync on start), one is provisioned while it
    watches (the event path); both workers get a Node and nothing else."""
    name, _ = workload
    before, during = f"{name}-md-0-before", f"{name}-md-0-during"
    bmhs = {before: _host(mgmt, cluster_ns, name, before, control_plane=False)}
    with Client.from_kubeconfig(local.admin_kubeconfig(settings, name)) as wc:
        t = threading.Thread(
            target=nodesim.run, args=(settings, mgmt), kwargs={"stop_after": 30.0}, daemon=True
        )
        t.start()
        time.sleep(2)
        bmhs[during] = _host(mgmt, cluster_ns, name, during, control_plane=False)
        deadline = time.monotonic() + 30
        nodes: dict[str, Any] = {}
        while len(nodes) < 2 and time.monotonic() < deadline:
            # created first, then given its status: wait for both
            nodes = {m: n for m in bmhs if (n := wc.get("v1", "Node", m)) and phases.condition(n, "Ready")}
            time.sleep(0.5)
        t.join(40)
        assert not t.is_alive()
        assert sorted(nodes) == sorted(bmhs)
        for machine, node in nodes.items():
            assert node["metadata"]["labels"]["metal3.io/uuid"] == bmhs[machine]["metadata"]["uid"]
            assert nodesim.CP_ROLE_LABEL not in node["metadata"]["labels"] and not node["spec"].get("taints")
            assert {c["type"]: c["status"] for c in node["status"]["conditions"]}["Ready"] == "True"
            assert wc.list("v1", "Pod", "kube-system", field_selector=f"spec.nodeName={machine}") == []
            host = mgmt.get(nodesim.BMH_API, "BareMetalHost", bmhs[machine]["metadata"]["name"], cluster_ns)
            assert host is not None and phases.node_written_at(host) is not None


def test_program_runs_the_module(settings: Settings, tmp_path: Path) -> None:
    p = nodesim.nodesim_program(settings)
    assert p.argv[-2:] == ["-m", "lab.clusters.simulate"] and p.env["LAB_HOME"] == str(settings.home)


def _delete_host(mgmt: Client, ns: str, machine: str) -> None:
    """What delete-clusters makes of one host: Machine, Metal3Machine, KubeadmConfig and BMH gone."""
    for api, kind, name in (
        (nodesim.BMH_API, "BareMetalHost", f"bmh-{machine}"),
        (M3_API, "Metal3Machine", machine),
        (nodesim.BOOTSTRAP_API, "KubeadmConfig", f"{machine}-kc"),
        (nodesim.CAPI_API, "Machine", machine),
    ):
        mgmt.delete(api, kind, name, ns)


def _wait_node(kubeconfig: bytes, node: str, timeout: float = 60) -> dict[str, Any]:
    with Client.from_kubeconfig(kubeconfig, attempts=1) as wc:
        deadline = time.monotonic() + timeout
        while True:
            got = wc.get("v1", "Node", node)
            if got is not None and (phases.condition(got, "Ready") or {}).get("status") == "True":
                return got
            assert time.monotonic() < deadline, f"no Ready node {node} within {timeout:.0f}s"
            time.sleep(0.5)


def test_a_cluster_created_again_under_its_name_gets_its_node_in_the_new_apiserver(
    settings: Settings, mgmt: Client, workload: tuple[str, int]
) -> None:
    """Same name, new CA: one running simulator writes the first cluster's node, the cluster is
    deleted (hosts, apiserver, tenant, PKI) and made again, and the simulator writes the second
    one's node into the new apiserver (before, it kept the first client: TLS verify failures)."""
    index = _free_index()
    name = naming.cluster_name(settings.prefix, index)
    host, port = naming.local_endpoint(index)
    stop = threading.Event()
    sim = threading.Thread(target=nodesim.run, args=(settings, mgmt), kwargs={"stop": stop}, daemon=True)
    try:
        local.ensure(settings, [index])
        local.wait_ready(settings, [name])
        for obj in (
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": name, "labels": {naming.CLUSTER_LABEL: name}},
            },
            {
                "apiVersion": nodesim.CAPI_API,
                "kind": "Cluster",
                "metadata": {"name": name, "namespace": name},
                "spec": {"controlPlaneEndpoint": {"host": host, "port": port}},
            },
        ):
            mgmt.apply_one(obj)
        first_kubeconfig = local.admin_kubeconfig(settings, name)
        sim.start()
        first = _host(mgmt, name, name, f"{name}-md-0-first", control_plane=False)
        node = _wait_node(first_kubeconfig, f"{name}-md-0-first")
        assert node["metadata"]["labels"][nodesim.UUID_LABEL] == first["metadata"]["uid"]

        _delete_host(mgmt, name, f"{name}-md-0-first")
        local.remove(settings, [name])
        local.ensure(settings, [index])  # a new CA, new client certs, an empty tenant
        local.wait_ready(settings, [name])
        second_kubeconfig = local.admin_kubeconfig(settings, name)
        assert pki.kubeconfig_client(second_kubeconfig)[1] != pki.kubeconfig_client(first_kubeconfig)[1]

        second = _host(mgmt, name, name, f"{name}-md-0-second", control_plane=False)
        node = _wait_node(second_kubeconfig, f"{name}-md-0-second", timeout=45)
        assert node["metadata"]["labels"][nodesim.UUID_LABEL] == second["metadata"]["uid"]
        with Client.from_kubeconfig(second_kubeconfig) as wc:  # the new apiserver has only its own node
            assert [n["metadata"]["name"] for n in wc.list("v1", "Node")] == [f"{name}-md-0-second"]
    finally:
        stop.set()
        sim.join(60)
        local.remove(settings, [name])
    assert not sim.is_alive()
