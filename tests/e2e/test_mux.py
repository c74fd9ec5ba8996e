"""Workload clusters on the mux backing, through the CLI and the real controllers of the session's
stack: three clusters served by one lab-mux process reach Available (Cluster, KCP, Machine nodeRef)
with the node simulator writing into the in-memory API, `lab kubeconfig` reaches each, and
delete --all leaves zero residue (no registration, no listener, no file).

Indexes 7101-7103 keep clear of the other e2e modules (grep --start in tests/e2e).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest
from support.stack import Stack
from support.wait import wait_for

from lab import build, naming, phases
from lab.backing import mux
from lab.clusters.residue import residue
from lab.kube import Client
from lab.stack import mgmt

pytestmark = pytest.mark.slow

START, COUNT = 7101, 3
CAPI = "cluster.x-k8s.io/v1beta2"
KCP_API = "controlplane.cluster.x-k8s.io/v1beta2"
AVAILABLE_TIMEOUT = 600.0


def _true(obj: Any, type_: str) -> bool:
    return obj is not None and phases.is_true(obj, type_)


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((naming.MUX_HOST, port)) == 0


@pytest.fixture(scope="module")
def names(stack: Stack) -> Iterator[list[str]]:
    settings = stack.settings()
    build.ensure(settings, [mux.PROGRAM_NAME], log=print)
    out = [naming.cluster_name(settings.prefix, i) for i in range(START, START + COUNT)]
    try:
        stack.lab("create-clusters", str(COUNT), "--start", str(START), "--backing", "mux", timeout=900)
        yield out
    finally:
        if any(mux.registered(settings) & set(out)) or residue(settings, out):
            stack.lab(
                "delete-clusters",
                "--start",
                str(START),
                "--count",
                str(COUNT),
                "--wait",
                timeout=900,
                check=False,
            )


def test_clusters_become_available_on_mux(stack: Stack, names: list[str]) -> None:
    settings = stack.settings()
    assert mux.registered(settings) >= set(names)
    with Client.from_kubeconfig(mgmt.admin_kubeconfig_path(settings)) as client:
        for name in names:
            ns = client.get("v1", "Namespace", name)
            assert ns is not None and ns["metadata"]["labels"][naming.BACKING_LABEL] == naming.MUX_BACKING
            wait_for(
                f"{name} Available",
                lambda name=name: _true(client.get(CAPI, "Cluster", name, name), "Available"),
                AVAILABLE_TIMEOUT,
                2.0,
            )
            cluster = client.get(CAPI, "Cluster", name, name)
            index = naming.parse_index(settings.prefix, name)
            assert index is not None
            host, port = naming.mux_endpoint(index)
            assert cluster is not None and cluster["spec"]["controlPlaneEndpoint"] == {
                "host": host,
                "port": port,
            }
            assert _true(client.get(KCP_API, "KubeadmControlPlane", name, name), "Available")
            wait_for(
                f"{name}: the control-plane Machine has its nodeRef",
                lambda name=name: all(
                    (m.get("status") or {}).get("nodeRef")
                    for m in client.list(CAPI, "Machine", name, label_selector=phases.CONTROL_PLANE_LABEL)
                ),
                120,
                2.0,
            )


def test_lab_kubeconfig_reaches_each_cluster(stack: Stack, names: list[str], tmp_path: Any) -> None:
    for name in names:
        out = stack.lab("kubeconfig", name)
        path = tmp_path / f"{name}.kubeconfig"
        path.write_text(out.stdout)
        with Client.from_kubeconfig(path, attempts=3) as wc:
            namespaces = {n["metadata"]["name"] for n in wc.list("v1", "Namespace")}
            assert {"default", "kube-system"} <= namespaces
            [node] = wc.list("v1", "Node")
            assert _true(node, "Ready")
            assert node["spec"]["providerID"].startswith("metal3://")  # set by CAPM3 from the label
            pods = wc.list("v1", "Pod", "kube-system")
            assert {p["metadata"]["labels"]["component"] for p in pods} >= {
                "kube-apiserver",
                "kube-controller-manager",
                "kube-scheduler",
            }
            assert all(p["status"]["phase"] == "Running" for p in pods)


def test_delete_all_leaves_no_residue(stack: Stack, names: list[str]) -> None:
    settings = stack.settings()
    stack.lab("delete-clusters", "--all", "--wait", timeout=900)
    assert residue(settings, names) == {}
    assert residue(settings, None) == {}
    assert not (mux.registered(settings) & set(names))
    for i in range(START, START + COUNT):
        assert not _listening(naming.mux_endpoint(i)[1])
