"""Scale-out with the `process` runtime, end to end: the session's local management stack, two
network-namespace SSH hosts (tests/support/hosts.py) provisioned by playbooks/backing-cluster.yml and
registered (h1 with `lab backing add NAME --host ...`, h2 by the playbook's own registration task,
backing_register), four clusters created across both and brought to Available by the real
controllers, then deleted leaving nothing on either host.

Issue 6 says `--start 1`; indexes are shared by every e2e test of one session (one management
cluster), and test_clusters.py owns 1-6, so this module uses 960-963. Its `delete-clusters --all`
runs after the other modules (file order) and deletes only what is left: these four.

The hosts share this machine's filesystem and process table (only the network is theirs), so the
test reads each host's lab home and processes directly to prove nothing is left.
"""

from __future__ import annotations

import json
import re
import shutil
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

from lab import build
from lab.backing import store
from lab.backing.process import ProcessBacking
from lab.clusters.residue import residue

START, COUNT = 960, 4
NAMES = [f"test-{i}" for i in range(START, START + COUNT)]
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
    targets = ("etcd", "kube-apiserver")
    paths = build.ensure(settings, list(targets), log=print)  # cached by lab up already
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
            for h in made:  # leave the stack's registry as it was; sshd and netns go next
                if store.load(settings, h.name) is not None:
                    stack.lab("backing", "remove", h.name, "--force", check=False)
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
