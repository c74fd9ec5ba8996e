"""The product's main job on the real local stack: create clusters until Available, re-run, report,
crash and converge, delete to zero residue.

The controllers are the real CAPI, KCP, CABPK, CAPM3, IPAM and BMO (test mode) managers of the
session stack; the node simulator is part of that stack. Indexes 1-3 are the issue's; the crash
test uses 4-5. Order matters inside this module (one shared stack), so the tests run in file order.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
from support.stack import Stack

from lab.clusters.residue import residue

CREATE_TIMEOUT = 600
WAIT = "480"


def _create(stack: Stack, *args: str) -> dict[str, Any]:
    out = stack.lab("create-clusters", *args, "--timeout", WAIT, "-o", "json", timeout=CREATE_TIMEOUT)
    return json.loads(out.stdout)


def _lab_fields(stack: Stack, namespaces: list[str]) -> dict[tuple[str, str, str, str], str]:
    """(namespace, kind, name, manager) -> time of lab's last write that changed a field there."""
    out = {}
    kinds = "namespaces,secrets,baremetalhosts,metal3datatemplates,metal3machinetemplates,kubeadmconfigtemplates,metal3clusters,kubeadmcontrolplanes,machinedeployments,clusters.cluster.x-k8s.io"
    for item in stack.kubectl_json("get", kinds, "-A", "--show-managed-fields")["items"]:
        meta = item["metadata"]
        ns = meta.get("namespace") or meta["name"]
        if ns not in namespaces:
            continue
        for mf in meta.get("managedFields") or []:
            if mf.get("manager") in ("lab", "lab-create"):
                out[(ns, item["kind"], meta["name"], mf["manager"])] = mf.get("time", "")
    return out


def _apiserver_pids(names: list[str]) -> dict[str, list[int]]:
    """cluster -> pids of kube-apiserver processes serving it (found by its --etcd-prefix)."""
    out: dict[str, list[int]] = {n: [] for n in names}
    for p in psutil.process_iter(["pid", "cmdline"]):
        cmd = p.info["cmdline"] or []
        for n in names:
            if f"--etcd-prefix=/{n}" in cmd:
                out[n].append(p.info["pid"])
    return out


def test_bad_input_is_one_line_and_creates_nothing(stack: Stack) -> None:
    settings = stack.settings()

    def made() -> tuple[
        list[str], str
    ]:  # cluster dirs (another module may have rendered some) and namespaces
        dirs = (
            sorted(p.name for p in settings.clusters_dir.iterdir()) if settings.clusters_dir.exists() else []
        )
        return dirs, stack.kubectl("get", "ns", "-l", "scale-lab.metal3.io/cluster", "-o", "name").stdout

    before = made()
    for args, expected in [
        (("0",), "count must be at least 1"),
        (("1", "--start", "0"), "start index must be at least 1"),
        (("2", "--start", str(settings.max_index)), "past the configured maximum index"),
        ((str(settings.local_capacity + 1), "--start", "500"), "do not fit: free capacity is"),
        (("1", "--backing", "nowhere"), "no backing named 'nowhere'"),
    ]:
        out = stack.lab("create-clusters", *args, check=False)
        assert out.returncode != 0, args
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], out.stderr
    assert made() == before


def test_create_three_until_available_then_report(stack: Stack, tmp_path: Path) -> None:
    res = _create(stack, "3", "--start", "1", "--wait")
    names = ["test-1", "test-2", "test-3"]
    assert res["available"] == names and res["stuck"] == {} and res["new"] == names
    for cluster in stack.kubectl_json("get", "clusters.cluster.x-k8s.io", "-A")["items"]:
        if cluster["metadata"]["namespace"] in names:
            conds = {c["type"]: c["status"] for c in cluster["status"]["conditions"]}
            assert conds["Available"] == "True", cluster["status"]
    for m in stack.kubectl_json("get", "machines.cluster.x-k8s.io", "-A")["items"]:
        if m["metadata"]["namespace"] in names:
            assert m["status"]["nodeRef"]["name"] == m["metadata"]["name"]
    # the workload cluster's own API has the Node the simulator wrote, named after the Machine
    kc = stack.lab("kubeconfig", "test-2").stdout
    path = tmp_path / "test-2.kubeconfig"
    path.write_text(kc)
    path.chmod(0o600)
    nodes = json.loads(
        subprocess.run(
            ["kubectl", f"--kubeconfig={path}", "get", "nodes", "-o", "json"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )["items"]
    assert len(nodes) == 1 and nodes[0]["metadata"]["labels"]["metal3.io/uuid"]

    rep = json.loads(stack.lab("report", "--format", "json").stdout)
    assert rep["run"]["kind"] == "create" and rep["clusters"] == 3 and rep["done"] == 3
    assert rep["incomplete"] == [] and len(rep["timeline"]) == 3
    for phase in rep["phases"]:  # every phase of every cluster was timed
        assert phase["reached"] == 3, phase
    rows = {c["component"]: c for c in rep["components"]}
    assert rows["workload kube-apiserver (each)"]["processes"] == 3
    assert {"kube-apiserver", "capi-manager", "capm3-manager", "bmo-manager", "lab"} <= set(rows)


def test_rerun_changes_nothing(stack: Stack) -> None:
    names = ["test-1", "test-2", "test-3"]
    fields, pids = _lab_fields(stack, names), _apiserver_pids(names)
    assert len(fields) >= 3 * 12 and all(len(p) == 1 for p in pids.values()), pids
    res = _create(stack, "3", "--start", "1", "--wait")
    assert res["new"] == [] and res["finished"] == [] and res["unchanged"] == names
    assert res["available"] == names
    assert _lab_fields(stack, names) == fields
    assert _apiserver_pids(names) == pids


def test_overlapping_range_creates_only_what_is_missing(stack: Stack) -> None:
    res = _create(stack, "2", "--start", "3", "--no-wait")
    assert res["unchanged"] == ["test-3"] and res["new"] == ["test-4"]


def test_kill_mid_create_then_rerun_converges_without_leaks(stack: Stack) -> None:
    """kill -9 while test-5..test-6 are half made (namespaces and apiservers exist, the rest may not),
    then the same command again: every cluster Available, one apiserver each, nothing twice."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "lab", "create-clusters", "2", "--start", "5", "--no-wait"],
        env={**stack.env, "COLUMNS": "200"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if any(_apiserver_pids(["test-5", "test-6"]).values()):
                break
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    res = _create(stack, "3", "--start", "4", "--wait")
    assert res["available"] == ["test-4", "test-5", "test-6"] and res["stuck"] == {}
    assert all(len(p) == 1 for p in _apiserver_pids(["test-4", "test-5", "test-6"]).values())
    for name in ("test-5", "test-6"):
        secrets = stack.kubectl_json("get", "secrets", "-n", name)["items"]
        assert len({s["metadata"]["name"] for s in secrets}) == len(secrets)
        assert len(stack.kubectl_json("get", "baremetalhosts", "-n", name)["items"]) == 1


def test_delete_all_leaves_no_residue(stack: Stack) -> None:
    names = [f"test-{i}" for i in range(1, 7)]
    stack.lab("delete-clusters", "--all", "--wait", timeout=CREATE_TIMEOUT)
    settings = stack.settings()
    assert residue(settings, names) == {}
    assert residue(settings, None) == {}
    assert stack.kubectl("get", "ns", "-l", "scale-lab.metal3.io/cluster", "-o", "name").stdout == ""
    assert not any(_apiserver_pids(names).values())
    leftovers = [p for p in Path(settings.home).rglob("*") if any(n in p.name for n in names)]
    assert leftovers == []
