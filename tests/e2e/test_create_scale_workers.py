"""`lab create-clusters --workers 2` and `lab scale-clusters` on the real local stack, checked the way
a user would with kubectl: the MachineDeployment's replicas and Available condition, the hosts in the
management cluster, the Nodes in each workload API (through `lab kubeconfig`). Then scale down to 1
and 0 (hosts deprovisioned and deleted, Nodes removed), back up to 1 on one cluster, bad input
refused with nothing changed, and delete to zero residue. Indexes 8801-8802: clear of every other
e2e module's clusters."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from support.stack import Stack

from lab.clusters.residue import residue
from lab.manifests import workers

START, COUNT = 8801, 2
NAMES = [f"test-{START + k}" for k in range(COUNT)]
TIMEOUT = 900
CP_ROLE = "node-role.kubernetes.io/control-plane"


def _md(stack: Stack, name: str) -> dict[str, Any]:
    md: dict[str, Any] = stack.kubectl_json("get", "machinedeployment", "-n", name, name)
    return md


def _available(obj: dict[str, Any]) -> bool:
    return any(
        c["type"] == "Available" and c["status"] == "True" for c in obj["status"].get("conditions", [])
    )


def _hosts(stack: Stack, name: str) -> dict[str, dict[str, Any]]:
    return {h["metadata"]["name"]: h for h in stack.kubectl_json("get", "bmh", "-n", name)["items"]}


def _nodes(stack: Stack, name: str, tmp: Path) -> list[dict[str, Any]]:
    """The Nodes of the cluster's workload API, through the kubeconfig `lab kubeconfig` prints."""
    path = tmp / f"{name}.kubeconfig"
    path.write_text(stack.lab("kubeconfig", name).stdout)
    os.chmod(path, 0o600)
    items: list[dict[str, Any]] = stack.kubectl_json("--kubeconfig", str(path), "get", "nodes")["items"]
    return items


def _check(stack: Stack, name: str, n: int, tmp: Path) -> None:
    """The cluster has exactly n workers: MD, hosts (provisioned, claimed by the right Machines), Nodes."""
    md = _md(stack, name)
    assert md["spec"]["replicas"] == n
    assert md["status"].get("availableReplicas", 0) == n and md["status"].get("replicas", 0) == n
    if n:
        assert _available(md), md["status"].get("conditions")
    hosts = _hosts(stack, name)
    assert sorted(hosts) == [f"{name}-host-{s}" for s in range(n + 1)]
    machines = stack.kubectl_json("get", "machines", "-n", name)["items"]
    worker_machines = {
        m["metadata"]["name"]
        for m in machines
        if "cluster.x-k8s.io/control-plane" not in m["metadata"].get("labels", {})
    }
    assert len(worker_machines) == n
    for hname, h in hosts.items():
        assert h["status"]["provisioning"]["state"] == "provisioned", (hname, h["status"]["provisioning"])
        want = workers.CONTROL_PLANE if hname.endswith("-host-0") else workers.WORKER
        assert h["metadata"]["labels"][workers.ROLE_LABEL] == want
    secrets = {s["metadata"]["name"] for s in stack.kubectl_json("get", "secrets", "-n", name)["items"]}
    assert {s for s in secrets if s.endswith("-bmc-secret")} == {f"{h}-bmc-secret" for h in hosts}
    nodes = _nodes(stack, name, tmp)
    cp = [x for x in nodes if CP_ROLE in x["metadata"]["labels"]]
    assert len(cp) == 1 and len(nodes) == n + 1
    assert {x["metadata"]["name"] for x in nodes if x not in cp} == worker_machines
    for x in nodes:
        assert any(c["type"] == "Ready" and c["status"] == "True" for c in x["status"]["conditions"])
        assert x["spec"]["providerID"].startswith("metal3://")


def _scale(stack: Stack, n: int, count: int = COUNT) -> dict[str, Any]:
    started = time.monotonic()
    out = stack.lab(
        "scale-clusters", "--start", str(START), "--count", str(count), "--workers", str(n), "-o", "json",
        "--timeout", "600", timeout=TIMEOUT,
    )  # fmt: skip
    res: dict[str, Any] = json.loads(out.stdout)
    print(f"scale to {n}: {time.monotonic() - started:.0f}s")
    assert sorted(res["done"]) == NAMES[:count] and res["stuck"] == {}
    return res


def test_workers_created_scaled_down_and_up_then_deleted_to_zero_residue(
    stack: Stack, tmp_path: Path
) -> None:
    settings = stack.settings()
    started = time.monotonic()
    out = stack.lab(
        "create-clusters", str(COUNT), "--start", str(START), "--workers", "2", "--timeout", "600",
        "-o", "json", timeout=TIMEOUT,
    )  # fmt: skip
    res = json.loads(out.stdout)
    print(f"create {COUNT} clusters with 2 workers: {time.monotonic() - started:.0f}s")
    assert sorted(res["available"]) == NAMES and res["stuck"] == {}
    for name in NAMES:
        _check(stack, name, 2, tmp_path)
    report = stack.lab("report", "--run", str(res["run"])).stdout
    assert "- workers: 2 per cluster" in report
    for phase in ("workers_provisioned", "workers_written", "md_available", "cluster_available"):
        assert f"| {phase} | {COUNT} |" in report, report[:3000]

    # another W for existing clusters, a W past the capacity, a cluster that does not exist:
    # one line each, nothing changed
    generation = _md(stack, NAMES[0])["metadata"]["generation"]
    for args, code, says in [
        (
            ("create-clusters", str(COUNT), "--start", str(START), "--workers", "1"),
            1,
            "have --workers 2, not 1",
        ),
        (
            ("scale-clusters", "--start", str(START), "--count", "1", "--workers", "16"),
            2,
            "past the capacity",
        ),
        (
            ("scale-clusters", "--start", str(START), "--count", str(COUNT + 1), "--workers", "1"),
            1,
            "do not exist",
        ),
    ]:
        bad = stack.lab(*args, check=False)
        assert bad.returncode == code and bad.stderr.startswith("error: ") and bad.stderr.count("\n") == 1, (
            bad.stderr
        )
        assert says in bad.stderr
    assert _md(stack, NAMES[0])["metadata"]["generation"] == generation

    down = _scale(stack, 1)
    for name in NAMES:
        _check(stack, name, 1, tmp_path)
    report = stack.lab("report", "--run", str(down["runs"]["down"])).stdout
    for phase in ("scale_applied", "workers_removed", "hosts_removed"):
        assert f"| {phase} | {COUNT} |" in report, report[:3000]
    stack.check_sampled(down["runs"]["down"])  # components, idle window and metrics, as create's run
    stack.check_sampled(_scale(stack, 0)["runs"]["down"])
    for name in NAMES:
        _check(stack, name, 0, tmp_path)
    up = _scale(stack, 1, count=1)
    _check(stack, NAMES[0], 1, tmp_path)
    report = stack.lab("report", "--run", str(up["runs"]["up"])).stdout
    assert "| md_available | 1 |" in report, report[:3000]
    stack.check_sampled(up["runs"]["up"])

    stack.lab("delete-clusters", "--start", str(START), "--count", str(COUNT), "--wait", timeout=TIMEOUT)
    assert residue(settings, NAMES) == {}
