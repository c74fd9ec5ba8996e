"""lab's own kind node image, end to end and offline: `lab.images_node` builds kindest/node:<pinned> from
lab's builds (cached in the shared lab home, so only the first run pays), then `kind create cluster`
with lab's config rendering and lab.kindmgmt.cluster.ensure brings up three control-plane nodes on
the session's engine, nothing pulled: every node Ready, every kube-system pod Running, two pods on
different nodes reach each other by pod IP (lab.kindmgmt.podnet's conflists and routes), cluster DNS
resolves kubernetes.default; `kind delete cluster` leaves no container and no network behind.

Measured here (2 cores shared, load average 14-20): the node image loaded from its archive into the
session's fresh engine in 32-37 s, present the second time in 1-2.4 s; kind create of 3 control-plane
nodes, lab's pod network and every node Ready in 132-135 s; the whole test about 4 minutes.
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from support import busybox
from support.docker import Engine
from support.kind import delete_cluster

from lab import build, config, images_node
from lab.config import Settings, default_home
from lab.kindmgmt import cluster, podnet
from lab.kube import Client

pytestmark = pytest.mark.slow  # Go builds and a debootstrap the first time, a 3-node cluster always


def _kubectl(kubeconfig: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    kubectl = build.binary_path(Settings(home=default_home()), "kubectl")
    return subprocess.run(
        [str(kubectl), "--kubeconfig", str(kubeconfig), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _wait(what: str, check: Any, timeout: float = 300) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        assert time.monotonic() < deadline, f"{what}: not after {timeout:.0f}s"
        time.sleep(2)


def _pod(name: str, node: str, args: list[str], restart: str = "Never") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "nodeName": node,
            "restartPolicy": restart,
            "containers": [
                {"name": "c", "image": busybox.REFERENCE, "imagePullPolicy": "Never", "args": args}
            ],
        },
    }


@pytest.fixture
def kind_env(docker_engine: Engine, kind: Path, lab_env: dict[str, str], monkeypatch) -> Iterator[Settings]:  # type: ignore[no-untyped-def]
    """Settings of a fresh lab home whose kind and docker talk to the session's engine; the kind
    cluster deleted at the end, and the engine checked to hold none of it."""
    monkeypatch.setenv("DOCKER_HOST", docker_engine.host)
    monkeypatch.setenv("PATH", f"{kind.parent}:{os.environ['PATH']}")
    settings = config.load()
    try:
        yield settings
    finally:
        client = docker_engine.client
        deleted = delete_cluster(kind, client)
        left = [c["Names"] for c in client.json("GET", "/containers/json", {"all": "1"})]
        networks = sorted(n["Name"] for n in client.json("GET", "/networks"))
        assert deleted.returncode == 0, deleted.stderr
        assert left == [], f"kind delete cluster left containers {left}"
        assert networks == ["bridge", "host", "none"]


def test_a_three_node_kind_cluster_runs_offline_on_labs_node_image(
    docker_engine: Engine, base_image: str, kind_env: Settings, kind: Path
) -> None:
    """Prints what each step cost (the module docstring has the numbers measured here)."""
    shared = Settings(home=default_home())
    client = docker_engine.client
    node = images_node.build_node(shared, client, print)
    print(f"node image {node.reference}: {node.action} in {node.seconds:.1f}s")
    again = images_node.build_node(shared, client, print)
    print(f"node image again: {again.action} in {again.seconds:.1f}s")
    assert again.action == "present" and again.key == node.key
    inspect = client.json("GET", f"/images/{urllib.parse.quote(node.reference, safe='')}/json")
    assert inspect["Config"]["Entrypoint"] == images_node.ENTRYPOINT
    assert inspect["Config"]["Labels"][images_node.NODE_LABEL] == node.key
    assert node.reference == cluster.node_image(kind_env) == "kindest/node:v1.35.4"
    assert set(node.images) >= {"registry.k8s.io/kube-apiserver:v1.35.4", "registry.k8s.io/etcd:3.6.6-0"}

    settings = kind_env
    assert settings.kind_nodes == 3
    assert cluster.plan(settings, cluster.existing_clusters(str(kind))) == "create"
    started = time.monotonic()
    kubeconfig = cluster.ensure(settings, str(kind), "create", print)
    created = time.monotonic() - started
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(f"kind create (3 nodes) + pod network + Ready: {created:.0f}s; {load}")
    assert yaml.safe_load(cluster.config_path(settings).read_text())["networking"] == {
        "disableDefaultCNI": True
    }

    with Client.from_kubeconfig(kubeconfig) as kc:
        nodes = list(kc.list("v1", "Node"))
        assert len(nodes) == 3 and all(podnet.ready(n) for n in nodes)

        def all_running() -> bool:
            pods = list(kc.list("v1", "Pod", namespace="kube-system"))
            return len(pods) >= 17 and all((p.get("status") or {}).get("phase") == "Running" for p in pods)

        _wait("every kube-system pod Running", all_running)

        # a re-run (lab up again) reuses the cluster and rewrites the same network: nothing changes
        assert cluster.plan(settings, cluster.existing_clusters(str(kind))) == "reuse"
        cluster.ensure(settings, str(kind), "reuse", print)

        ref = busybox.build_image(client, base_image, default_home() / "images" / "test")
        loaded = subprocess.run(
            [str(kind), "load", "docker-image", ref, "--name", cluster.CLUSTER_NAME],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert loaded.returncode == 0, loaded.stderr
        net = podnet.nodes_of(nodes)
        server, other = net[0], net[1]
        kc.apply_one(_pod("server", server.name, ["httpd", "-f", "-p", "8080", "-h", "/etc"], "Always"))

        def server_ip() -> str:
            pod = kc.get("v1", "Pod", "server", "default") or {}
            status = pod.get("status") or {}
            return str(status.get("podIP") or "") if status.get("phase") == "Running" else ""

        ip = _wait("the server pod Running with an IP", server_ip)
        # ptp: each pod's address comes from its own node's podCIDR
        assert ipaddress.ip_address(ip) in ipaddress.ip_network(server.pod_cidr)
        script = (
            f"/bin/busybox wget -q -O - http://{ip}:8080/hostname"
            " && /bin/busybox nslookup kubernetes.default.svc.cluster.local"
            # the short name through the search path: glibc's resolver (busybox's nslookup has none)
            " && getent hosts kubernetes.default"
        )
        kc.apply_one(_pod("client", other.name, ["sh", "-c", script]))

        def client_done() -> str:
            pod = kc.get("v1", "Pod", "client", "default") or {}
            phase = str((pod.get("status") or {}).get("phase") or "")
            return phase if phase in ("Succeeded", "Failed") else ""

        phase = _wait("the client pod done", client_done)
        logs = _kubectl(kubeconfig, "logs", "-n", "default", "client").stdout
        print(logs)
        assert phase == "Succeeded", logs
        assert logs.splitlines()[0] == "server"  # the server pod's /etc/hostname, over the pod network
        # the kubernetes Service's ClusterIP, resolved by cluster DNS by its full and its short name
        assert "Address: 10.96.0.1" in logs
        assert logs.strip().splitlines()[-1].split()[:2] == [
            "10.96.0.1",
            "kubernetes.default.svc.cluster.local",
        ]
