"""Scale-out with the `process` runtime, end to end: the session's local management stack, two
network-namespace SSH hosts (tests/support/hosts.py) provisioned by playbooks/backing-cluster.yml and
registered (h1 with `lab backing add NAME --host ...`, h2 by the playbook's own registration task,
backing_register), four clusters created across both and brought to Available by the real
controllers, then deleted leaving nothing on either host. h2 also carries the multiplexer
(backing_process_mux: the playbook installs lab-mux like the apiserver binary and registers it as
backing h2-mux, which starts it under h2's supervisord): three clusters on h2-mux reach Available
at h2's address, come back whole and Available after a kill -9 of h2's lab-mux with no command,
and their delete leaves nothing of them on h2. The warm playbook run (both
hosts, the mux included) changes nothing.

Issue 6 says `--start 1`; indexes are shared by every e2e test of one session (one management
cluster), and test_clusters.py owns 1-6, so this module uses 960-963 (964-966 on h2-mux). Its `delete-clusters --all`
runs after the other modules (file order) and deletes only what is left: these four.

The hosts share this machine's filesystem and process table (only the network is theirs), so the
test reads each host's lab home and processes directly to prove nothing is left.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest
from support.hosts import (
    NsHost,
    build_lab_wheels,
    namespace_hosts,
    provision_process_hosts,
    unavailable_reason,
)
from support.stack import Stack
from support.wait import wait_for

from lab import build, nodesim
from lab.backing import mux, store
from lab.backing.hostmux import HostMuxBacking
from lab.backing.process import ProcessBacking
from lab.clusters.residue import residue
from lab.runtime.supervise import log_file

START, COUNT = 960, 4
NAMES = [f"test-{i}" for i in range(START, START + COUNT)]
MUX_START, MUX_COUNT = 964, 3
MUX_NAMES = [f"test-{i}" for i in range(MUX_START, MUX_START + MUX_COUNT)]
CREATE_TIMEOUT = 900
WAIT = "600"
HOST_HOME = "var/lib/metal3-scale-lab"


@dataclass(frozen=True)
class Host:
    name: str  # the backing's name
    ns: NsHost

    @property
    def home(self) -> Path:
        return self.ns.root / HOST_HOME


@pytest.fixture(scope="module")
def hosts(stack: Stack) -> Iterator[list[Host]]:
    reason = unavailable_reason()
    if reason:
        print(f"skipping the two-host end to end: {reason}")
        pytest.skip(reason)
    settings = stack.settings()
    targets = ("etcd", "kube-apiserver", mux.PROGRAM_NAME)
    paths = build.ensure(settings, list(targets), log=print)  # cached already (lab-mux: lab build lab-mux)
    binaries = [str(paths[t].relative_to(settings.bin_dir)) for t in targets]
    # Short: each host's supervisord socket lives under <work>/h/<host>/root/var/lib/metal3-scale-lab/run.
    work = Path(tempfile.mkdtemp(prefix="lbe", dir="/tmp"))
    made: list[Host] = []
    try:
        started = time.monotonic()
        wheel, artifacts = build_lab_wheels(work)
        wheels_s = time.monotonic() - started
        with namespace_hosts(2, work / "h") as ns:
            made = [Host(f"h{i}", h) for i, h in enumerate(ns, start=1)]
            # h2 is registered by the playbook's own task (on the controller, with the stack's
            # LAB_* environment); h1 by `lab backing add` in the first test.
            register = {
                ns[1].name: {
                    "backing_register": True,
                    "backing_name": "h2",
                    "backing_capacity": 4,
                    "backing_lab_command": [sys.executable, "-m", "lab"],
                    "backing_process_mux": True,
                    "backing_process_mux_capacity": MUX_COUNT,
                }
            }
            args = (ns, work, wheel, artifacts, settings.bin_dir, binaries)
            cold = provision_process_hosts(*args, host_vars=register, env=stack.env)
            warm = provision_process_hosts(*args, host_vars=register, env=stack.env)
            print(
                f"two hosts: lab wheels {wheels_s:.1f}s, playbook cold {cold.seconds:.1f}s {cold.recap}, "
                f"warm {warm.seconds:.1f}s {warm.recap}"
            )
            assert all(r[1] == 0 for r in warm.recap.values()), warm.recap  # a re-run changes nothing
            yield made
            # leave the stack's registry as it was; sshd and netns go next
            for name in ("h2-mux", *(h.name for h in made)):
                if store.load(settings, name) is not None:
                    stack.lab("backing", "remove", name, "--force", check=False)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _host_processes(h: Host) -> list[str]:
    out = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if str(h.home) in cmd:
            out.append(cmd)
    return out


def _apiservers(h: Host) -> dict[str, str]:
    """cluster -> command line of the kube-apiserver serving it from this host's lab home."""
    out = {}
    for cmd in _host_processes(h):
        m = re.search(r"--etcd-prefix=/([a-z0-9-]+)", cmd)
        if m:
            out[m[1]] = cmd
    return out


def _backing(stack: Stack, h: Host) -> ProcessBacking:
    settings = stack.settings()
    entry = store.load(settings, h.name)
    assert entry is not None
    return ProcessBacking(settings, entry)


def test_register_both_hosts(stack: Stack, hosts: list[Host]) -> None:
    h1, h2 = hosts
    # the playbook registered h2 (its registration task ran in the cold run, was skipped in the warm)
    assert store.load(stack.settings(), h2.name) is not None
    for h in [h1]:
        stack.lab(
            "backing",
            "add",
            h.name,
            "--host",
            h.ns.address,
            "--identity",
            str(h.ns.client_key),
            "--capacity",
            "4",
        )
    rows = {r["name"]: r for r in json.loads(stack.lab("backing", "list", "-o", "json").stdout)}
    for h in hosts:
        assert rows[h.name]["runtime"] == "process" and rows[h.name]["capacity"] == 4
        assert rows[h.name]["used"] == 0, rows[h.name]
        # lab host up ran: the host's own etcd is up under its supervisord
        assert any("--name=lab-tenants" in c for c in _host_processes(h))


def test_create_four_across_two_hosts_until_available(stack: Stack, hosts: list[Host]) -> None:
    started = time.monotonic()
    out = stack.lab(
        "create-clusters",
        str(COUNT),
        "--start",
        str(START),
        "--backing",
        "h1",
        "--backing",
        "h2",
        "--wait",
        "--timeout",
        WAIT,
        "-o",
        "json",
        timeout=CREATE_TIMEOUT,
    )
    print(f"create-clusters {COUNT} on two hosts until Available: {time.monotonic() - started:.1f}s")
    res = json.loads(out.stdout)
    assert res["available"] == NAMES and res["stuck"] == {}, res

    placed: dict[str, list[str]] = {}
    for ns in stack.kubectl_json("get", "ns", "-l", "scale-lab.metal3.io/cluster")["items"]:
        if ns["metadata"]["name"] in NAMES:
            placed.setdefault(ns["metadata"]["labels"]["scale-lab.metal3.io/backing"], []).append(
                ns["metadata"]["name"]
            )
    assert {b: len(v) for b, v in placed.items()} == {"h1": 2, "h2": 2}, placed

    endpoints = {
        c["metadata"]["namespace"]: c["spec"]["controlPlaneEndpoint"]
        for c in stack.kubectl_json("get", "clusters.cluster.x-k8s.io", "-A")["items"]
        if c["metadata"]["namespace"] in NAMES
    }
    for h in hosts:
        mine = sorted(placed[h.name])
        # each cluster's apiserver runs on its host, from the host's lab home, on the host's address
        running = _apiservers(h)
        assert sorted(running) == mine, running
        for name in mine:
            index = int(name.rsplit("-", 1)[1])
            assert endpoints[name] == {"host": h.ns.address, "port": 20000 + index}
            assert f"--bind-address={h.ns.address}" in running[name]
            assert f"--secure-port={20000 + index}" in running[name]
        assert _backing(stack, h).present() == set(mine)
    rows = {r["name"]: r for r in json.loads(stack.lab("backing", "list", "-o", "json").stdout)}
    assert (rows["h1"]["used"], rows["h2"]["used"]) == (2, 2)


def _lab_mux_pids(h: Host) -> list[tuple[int, str]]:
    """(pid, command line) of lab-mux processes running from this host's lab home."""
    out = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if str(h.home) in cmd and f"/{mux.PROGRAM_NAME} " in cmd:
            out.append((p.info["pid"], cmd))
    return out


def _lab_mux(h: Host) -> list[str]:
    return [cmd for _pid, cmd in _lab_mux_pids(h)]


def _node_ready(kubeconfig: Path) -> bool:
    """One Node, Ready, in the workload API behind the kubeconfig (what `lab kubeconfig` gives)."""
    res = subprocess.run(
        ["kubectl", f"--kubeconfig={kubeconfig}", "get", "nodes", "-o", "json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if res.returncode != 0:
        return False
    nodes = json.loads(res.stdout)["items"]
    return len(nodes) == 1 and any(
        c["type"] == "Ready" and c["status"] == "True" for c in nodes[0]["status"].get("conditions") or []
    )


def _available(stack: Stack, name: str) -> bool:
    """The Cluster and its KubeadmControlPlane Available, as the management cluster says."""
    for kind in ("clusters.cluster.x-k8s.io", "kubeadmcontrolplanes.controlplane.cluster.x-k8s.io"):
        obj = stack.kubectl_json("get", kind, name, "-n", name)
        if not any(
            c["type"] == "Available" and c["status"] == "True" for c in obj["status"].get("conditions") or []
        ):
            return False
    return True


def _listening(ns: NsHost, port: int) -> bool:
    """Whether anything accepts on the host's address and port (reached from here, as lab does)."""
    with socket.socket() as s:
        s.settimeout(2)
        return s.connect_ex((ns.address, port)) == 0


def test_three_on_the_hosts_mux_until_available_then_delete_leaves_nothing(
    stack: Stack, hosts: list[Host], tmp_path: Path
) -> None:
    """h2-mux (registered by the playbook): lab-mux runs on h2 from its lab home, clusters listen on
    h2's address at 20000 + index, Available through the real controllers with the Ready node behind
    `lab kubeconfig`; their delete leaves no registration, file or listener on h2, and lab-mux stays
    up for the next ones."""
    _h1, h2 = hosts
    settings = stack.settings()
    entry = store.load(settings, "h2-mux")
    assert entry is not None and entry.runtime == "mux" and entry.capacity == MUX_COUNT
    [cmd] = _lab_mux(h2)
    assert f"--host={h2.ns.address}" in cmd and "--external-host" in cmd
    assert "--control-address=127.0.0.1:" in cmd  # the control API on h2's loopback only
    started = time.monotonic()
    out = stack.lab(
        "create-clusters",
        str(MUX_COUNT),
        "--start",
        str(MUX_START),
        "--backing",
        "h2-mux",
        "--wait",
        "--timeout",
        WAIT,
        "-o",
        "json",
        timeout=CREATE_TIMEOUT,
    )
    print(f"create-clusters {MUX_COUNT} on h2's lab-mux until Available: {time.monotonic() - started:.1f}s")
    res = json.loads(out.stdout)
    assert res["available"] == MUX_NAMES and res["stuck"] == {}, res
    endpoints = {
        c["metadata"]["namespace"]: c["spec"]["controlPlaneEndpoint"]
        for c in stack.kubectl_json("get", "clusters.cluster.x-k8s.io", "-A")["items"]
        if c["metadata"]["namespace"] in MUX_NAMES
    }
    for name in MUX_NAMES:
        index = int(name.rsplit("-", 1)[1])
        assert endpoints[name] == {"host": h2.ns.address, "port": 20000 + index}
        ns = stack.kubectl_json("get", "ns", name)
        assert ns["metadata"]["labels"]["scale-lab.metal3.io/backing"] == "h2-mux"
        # the Ready node through what a user runs, served by h2's lab-mux
        kubeconfig = tmp_path / f"{name}.kubeconfig"
        kubeconfig.write_text(stack.lab("kubeconfig", name).stdout)
        assert _node_ready(kubeconfig)
    b = HostMuxBacking(settings, entry)
    assert b.present() == set(MUX_NAMES)

    # kill -9 of h2's lab-mux: h2's supervisord starts it again, it serves each cluster again at its
    # endpoint from its state file, and the node simulator, asking h2 when lab-mux started, writes
    # their Nodes and mirror pods again: each whole and Available again with no command
    [(pid, _)] = _lab_mux_pids(h2)
    killed = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    wait_for(
        "h2's lab-mux back (another pid)",
        lambda: [p for p, _ in _lab_mux_pids(h2) if p != pid] != [],
        60,
        0.5,
    )
    for name in MUX_NAMES:
        kubeconfig = tmp_path / f"{name}.kubeconfig"
        wait_for(f"{name}: Ready node back on h2's lab-mux", lambda k=kubeconfig: _node_ready(k), 120, 1.0)
        wait_for(f"{name} Available again", lambda n=name: _available(stack, n), 120, 2.0)
    print(
        f"h2's lab-mux kill -9 -> {MUX_COUNT} clusters whole and Available again in {time.monotonic() - killed:.1f}s"
    )
    log = log_file(settings, nodesim.PROGRAM_NAME).read_text()
    assert "lab-mux of h2-mux restarted" in log, log[-2000:]
    assert sorted(b.listing()["served"]) == MUX_NAMES
    assert _apiservers(h2).keys().isdisjoint(MUX_NAMES)  # no kube-apiserver for a mux cluster
    rows = {r["name"]: r for r in json.loads(stack.lab("backing", "list", "-o", "json").stdout)}
    assert rows["h2-mux"]["runtime"] == "mux" and rows["h2-mux"]["used"] == MUX_COUNT

    started = time.monotonic()
    stack.lab(
        "delete-clusters",
        "--start",
        str(MUX_START),
        "--count",
        str(MUX_COUNT),
        "--wait",
        timeout=CREATE_TIMEOUT,
    )
    print(f"delete-clusters {MUX_COUNT} on h2's lab-mux: {time.monotonic() - started:.1f}s")
    assert residue(settings, MUX_NAMES) == {}
    assert b.present() == set()
    assert b.listing() | {"started": None} == {"served": [], "state": [], "files": [], "started": None}
    assert [p for p in h2.home.rglob("*") if any(n in p.name for n in MUX_NAMES)] == []
    for name in MUX_NAMES:
        assert not _listening(h2.ns, 20000 + int(name.rsplit("-", 1)[1]))
    assert len(_lab_mux(h2)) == 1  # still up for the next clusters


def test_delete_all_leaves_nothing_on_either_host(stack: Stack, hosts: list[Host]) -> None:
    started = time.monotonic()
    stack.lab("delete-clusters", "--all", "--wait", timeout=CREATE_TIMEOUT)
    print(f"delete-clusters --all on two hosts: {time.monotonic() - started:.1f}s")
    settings = stack.settings()
    assert residue(settings, NAMES) == {}
    for h in hosts:
        b = _backing(stack, h)
        assert b.present() == set()
        tenants: list[dict[str, Any]] = json.loads(b.run(["etcd", "tenants", "-o", "json"]))
        assert tenants == []
        assert _apiservers(h) == {}
        leftovers = [p for p in h.home.rglob("*") if any(n in p.name for n in NAMES)]
        assert leftovers == []
        # the host's etcd stays up for the next clusters
        assert any("--name=lab-tenants" in c for c in _host_processes(h))
