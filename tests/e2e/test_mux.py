"""Workload clusters on the mux backing, through the CLI and the real controllers of the session's
stack: three clusters served by one lab-mux process reach Available (Cluster, KCP, Machine nodeRef)
with the node simulator writing into the in-memory API; `lab kubeconfig` reaches each (kubectl shows
the Ready node and the mirror pods); `kill -9` of lab-mux: supervisord starts it again, every cluster
is back at its endpoint with its objects and Available within 60 s; `lab down` then `lab up`: the
same, with no other command; a mixed `--backing local --backing mux` create puts one cluster on
each; delete --all leaves zero residue (no registration, no listener, no file).

Indexes 101-105 keep clear of the other e2e modules (grep --start in tests/e2e), and their mux
ports (20101-20105) of every test stack's ports (support.ports.free_block starts at 21000).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from support.mux import CAPI, KCP_API, cluster_available, is_true, listening, workload_whole
from support.stack import Stack, run_lab
from support.wait import wait_for

from lab import build, naming, nodesim, phases
from lab.backing import mux
from lab.clusters.residue import residue
from lab.kube import Client
from lab.runtime.ports import listener_pid
from lab.runtime.supervise import log_file
from lab.stack import mgmt

pytestmark = pytest.mark.slow

START, COUNT = 101, 3
#: the mixed create: one cluster on each backing
MIXED_START, MIXED_COUNT = 104, 2
AVAILABLE_TIMEOUT = 600.0
#: issue 12: every cluster Available again within 60 s of lab-mux's restart, with no user command
RESTART_BUDGET = 60.0


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
                str(COUNT + MIXED_COUNT),
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
                lambda name=name: is_true(client.get(CAPI, "Cluster", name, name), "Available"),
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
            assert is_true(client.get(KCP_API, "KubeadmControlPlane", name, name), "Available")
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
        # what a user runs: kubectl --kubeconfig <(lab kubeconfig NAME) get nodes,pods -A; the
        # library's table has NAME and AGE only, so the state is read from -o json
        got = subprocess.run(
            ["kubectl", f"--kubeconfig={path}", "get", "nodes,pods", "-A", "--no-headers"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert got.returncode == 0, got.stderr
        listed = {t for line in got.stdout.splitlines() for t in line.split() if "/" in t}
        assert sum(t.startswith("node/") for t in listed) == 1, got.stdout
        for component in ("kube-apiserver", "kube-controller-manager", "kube-scheduler"):
            assert any(t.startswith(f"pod/{component}-") for t in listed), got.stdout
        got = subprocess.run(
            ["kubectl", f"--kubeconfig={path}", "get", "nodes,pods", "-A", "-o", "json"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert got.returncode == 0, got.stderr
        items = json.loads(got.stdout)["items"]
        assert [is_true(i, "Ready") for i in items if i["kind"] == "Node"] == [True], got.stdout[-2000:]
        pods = [i for i in items if i["kind"] == "Pod"]
        assert len(pods) == 3 and all(p["metadata"]["namespace"] == "kube-system" for p in pods)
        assert all(p["status"]["phase"] == "Running" for p in pods), got.stdout[-2000:]
        with Client.from_kubeconfig(path, attempts=3) as wc:
            namespaces = {n["metadata"]["name"] for n in wc.list("v1", "Namespace")}
            assert {"default", "kube-system"} <= namespaces
            [node] = wc.list("v1", "Node")
            assert is_true(node, "Ready")
            assert node["spec"]["providerID"].startswith("metal3://")  # set by CAPM3 from the label
            pods = wc.list("v1", "Pod", "kube-system")
            assert {p["metadata"]["labels"]["component"] for p in pods} >= {
                "kube-apiserver",
                "kube-controller-manager",
                "kube-scheduler",
            }
            assert all(p["status"]["phase"] == "Running" for p in pods)


def test_kill_9_of_lab_mux_recovers_within_60s(stack: Stack, names: list[str], tmp_path: Path) -> None:
    """No user command: supervisord starts lab-mux again, lab-mux registers its clusters again from
    its state file, the node simulator writes their objects again from the management cluster's
    view, and every cluster is whole and Available within RESTART_BUDGET of the kill."""
    settings = stack.settings()
    ctl = mux.control(settings)
    assert ctl is not None
    before = ctl.health()["started"]
    pid = listener_pid(settings.ports.mux_control)
    assert pid is not None
    kubeconfigs = {}
    for name in names:
        kubeconfigs[name] = tmp_path / f"{name}.kubeconfig"
        kubeconfigs[name].write_text(stack.lab("kubeconfig", name).stdout)
    with Client.from_kubeconfig(mgmt.admin_kubeconfig_path(settings)) as client:
        assert all(cluster_available(client, n) for n in names)
        killed = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        wait_for(
            "lab-mux back (another pid)", lambda: ctl.alive() and ctl.health()["started"] != before, 30, 0.2
        )
        assert mux.registered(settings) >= set(names)
        for name in names:
            port = naming.mux_endpoint(naming.parse_index(settings.prefix, name) or 0)[1]
            assert listening(port) and not listening(port, "127.0.0.1")

        def left() -> float:
            return max(1.0, RESTART_BUDGET - (time.monotonic() - killed))

        for name in names:
            wait_for(
                f"{name}: node and mirror pods back",
                lambda n=name: workload_whole(kubeconfigs[n]),
                left(),
                1.0,
            )
        for name in names:
            wait_for(f"{name} Available again", lambda n=name: cluster_available(client, n), left(), 1.0)
        took = time.monotonic() - killed
    print(f"lab-mux kill -9 -> {len(names)} clusters whole and Available again in {took:.1f}s")
    assert took <= RESTART_BUDGET
    assert listener_pid(settings.ports.mux_control) not in (None, pid)
    # the objects came back through the simulator's resync (a new process starts with none)
    log = log_file(settings, nodesim.PROGRAM_NAME).read_text()
    assert "lab-mux restarted" in log, log[-2000:]


def test_down_then_up_serves_every_cluster_again(stack: Stack, names: list[str], tmp_path: Path) -> None:
    """`lab down` then `lab up`: with no other command, every mux cluster is served again at the same
    endpoint (lab-mux registers them again from its state file when supervisord starts it with the
    stack) and becomes whole and Available again (the node simulator, started with the stack, hands
    every provisioned host again and writes into the new process's empty store)."""
    settings = stack.settings()
    ctl = mux.control(settings)
    assert ctl is not None
    before = ctl.health()["started"]
    servers = {
        n: yaml.safe_load(stack.lab("kubeconfig", n).stdout)["clusters"][0]["cluster"]["server"]
        for n in names
    }
    with Client.from_kubeconfig(mgmt.admin_kubeconfig_path(settings)) as client:
        assert all(cluster_available(client, n) for n in names)
    stack.lab("down", timeout=300)
    assert not ctl.alive()
    for name in names:
        assert not listening(naming.mux_endpoint(naming.parse_index(settings.prefix, name) or 0)[1])
    started = time.monotonic()
    stack.lab("up", timeout=600)
    up_took = time.monotonic() - started
    assert ctl.alive() and ctl.health()["started"] != before
    assert mux.registered(settings) >= set(names)
    for name in names:
        index = naming.parse_index(settings.prefix, name) or 0
        host, port = naming.mux_endpoint(index)
        assert servers[name] == f"https://{host}:{port}"
        assert listening(port)
        # what a user runs, read again after up: the same endpoint, and the Ready node behind it
        path = tmp_path / f"{name}.kubeconfig"
        path.write_text(stack.lab("kubeconfig", name).stdout)
        assert yaml.safe_load(path.read_text())["clusters"][0]["cluster"]["server"] == servers[name]
        wait_for(f"{name}: node and mirror pods back after up", lambda p=path: workload_whole(p), 120, 1.0)
    with Client.from_kubeconfig(mgmt.admin_kubeconfig_path(settings)) as client:
        for name in names:
            cluster = client.get(CAPI, "Cluster", name, name)
            host, port = naming.mux_endpoint(naming.parse_index(settings.prefix, name) or 0)
            assert cluster is not None and cluster["spec"]["controlPlaneEndpoint"] == {
                "host": host,
                "port": port,
            }
            wait_for(f"{name} Available after up", lambda n=name: cluster_available(client, n), 300, 2.0)
    took = time.monotonic() - started
    print(
        f"lab up took {up_took:.1f}s; {len(names)} mux clusters whole and Available {took:.1f}s after it began"
    )


def test_mixed_local_and_mux_create(stack: Stack, names: list[str]) -> None:
    """`--backing local --backing mux`: one cluster on each, both Available. Placement gives each new
    cluster the backing with the most free room, ties to the first named: with one free place on
    each (capacities set for this command only), the first goes to local and the second to mux."""
    settings = stack.settings()
    used_mux = len(mux.registered(settings))
    env = {**stack.env, "LAB_LOCAL_CAPACITY": "1", "LAB_MUX_CAPACITY": str(used_mux + 1)}
    out = run_lab(
        env,
        "create-clusters",
        str(MIXED_COUNT),
        "--start",
        str(MIXED_START),
        "--backing",
        "local",
        "--backing",
        "mux",
        timeout=900,
    )
    assert out.returncode == 0, out.stderr
    mixed = [naming.cluster_name(settings.prefix, i) for i in range(MIXED_START, MIXED_START + MIXED_COUNT)]
    with Client.from_kubeconfig(mgmt.admin_kubeconfig_path(settings)) as client:
        backings = set()
        for name in mixed:
            ns = client.get("v1", "Namespace", name)
            assert ns is not None
            backings.add(ns["metadata"]["labels"][naming.BACKING_LABEL])
            wait_for(f"{name} Available", lambda n=name: cluster_available(client, n), AVAILABLE_TIMEOUT, 2.0)
    assert backings == {naming.LOCAL_BACKING, naming.MUX_BACKING}
    assert mux.registered(settings) & set(mixed) == {mixed[1]}


def test_delete_all_leaves_no_residue(stack: Stack, names: list[str]) -> None:
    settings = stack.settings()
    stack.lab("delete-clusters", "--all", "--wait", timeout=900)
    everything = names + [
        naming.cluster_name(settings.prefix, i) for i in range(MIXED_START, MIXED_START + MIXED_COUNT)
    ]
    assert residue(settings, everything) == {}
    assert residue(settings, None) == {}
    assert not (mux.registered(settings) & set(everything))
    assert not mux.registered(settings)
    for i in range(START, MIXED_START + MIXED_COUNT):
        assert not listening(naming.mux_endpoint(i)[1])
