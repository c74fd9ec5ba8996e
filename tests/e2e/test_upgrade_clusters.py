"""`lab upgrade-clusters` on the real local stack, checked the way a user would with kubectl: the
KubeadmControlPlane at the new version (spec and status), exactly one control-plane Machine, at the
new version with a nodeRef, on the spare host; the old Machine, its host and its Node gone (the old
Node's mirror pods too); kubeadm-config rewritten by KCP; the Cluster Available. Then a re-run
changes nothing, bad versions are refused with nothing changed, a second upgrade rolls back onto
the first host slot, and delete leaves zero residue.
Index 8951: clear of every other e2e module's clusters."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import yaml
from support.stack import Stack

from lab import versions
from lab.clusters.residue import residue
from lab.manifests import workers

INDEX = 8951
NAME = f"test-{INDEX}"
TIMEOUT = 1200
CP_LABEL = "cluster.x-k8s.io/control-plane"
PINNED = versions.COMPONENTS["kubernetes"].default
_MAJOR, _MINOR, _ = versions.parse_release(PINNED) or (0, 0, 0)
#: the next minor's first release: a supported upgrade from the pinned Kubernetes (the version table)
TO = f"v{_MAJOR}.{_MINOR + 1}.0"


def _true(obj: dict[str, Any], type_: str) -> bool:
    return any(c["type"] == type_ and c["status"] == "True" for c in obj["status"].get("conditions", []))


def _cp_machines(stack: Stack) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = stack.kubectl_json("get", "machines", "-n", NAME, "-l", CP_LABEL)["items"]
    return items


def _workload(stack: Stack, tmp: Path, *args: str) -> Any:
    path = tmp / f"{NAME}.kubeconfig"
    if not path.exists():
        path.write_text(stack.lab("kubeconfig", NAME).stdout)
        os.chmod(path, 0o600)
    return stack.kubectl_json("--kubeconfig", str(path), *args)


def test_upgrade_rolls_the_control_plane_to_a_new_machine_and_host_then_deletes_to_zero_residue(
    stack: Stack, tmp_path: Path
) -> None:
    settings = stack.settings()
    started = time.monotonic()
    out = stack.lab(
        "create-clusters", "1", "--start", str(INDEX), "--timeout", "600", "-o", "json", timeout=TIMEOUT
    )  # fmt: skip
    assert json.loads(out.stdout)["available"] == [NAME]
    print(f"create: {time.monotonic() - started:.0f}s")
    (old_machine,) = _cp_machines(stack)
    old_node = old_machine["status"]["nodeRef"]["name"]
    kcp = stack.kubectl_json("get", "kcp", "-n", NAME, NAME)
    assert kcp["spec"]["version"] == PINNED

    # versions the table does not support, a cluster that does not exist: one line, nothing changed
    for args, code, says in [
        (("--to", f"v{_MAJOR}.{_MINOR + 2}.0"), 2, "skips a minor"),
        (("--to", PINNED), 2, "is not newer"),
        (("--to", TO, "--count", "2"), 1, "do not exist"),
    ]:
        argv = ["upgrade-clusters", "--start", str(INDEX), *args]
        if "--count" not in args:
            argv += ["--count", "1"]
        bad = stack.lab(*argv, check=False)
        assert bad.returncode == code and bad.stderr.startswith("error: ") and bad.stderr.count("\n") == 1, (
            bad.stderr
        )
        assert says in bad.stderr
    assert (
        stack.kubectl_json("get", "kcp", "-n", NAME, NAME)["metadata"]["generation"]
        == kcp["metadata"]["generation"]
    )
    assert [h["metadata"]["name"] for h in stack.kubectl_json("get", "bmh", "-n", NAME)["items"]] == [
        f"{NAME}-host-0"
    ]

    started = time.monotonic()
    out = stack.lab(
        "upgrade-clusters", "--start", str(INDEX), "--count", "1", "--to", TO, "--wait", "--timeout", "900",
        "-o", "json", timeout=TIMEOUT,
    )  # fmt: skip
    res = json.loads(out.stdout)
    print(f"upgrade {PINNED} -> {TO}: {time.monotonic() - started:.0f}s")
    assert res["upgraded"] == [NAME] and res["stuck"] == {}, res

    kcp = stack.kubectl_json("get", "kcp", "-n", NAME, NAME)
    assert kcp["spec"]["version"] == TO and kcp["status"]["version"] == TO
    assert _true(kcp, "Available")
    assert _true(stack.kubectl_json("get", "cluster", "-n", NAME, NAME), "Available")
    (machine,) = _cp_machines(stack)
    assert machine["metadata"]["name"] != old_machine["metadata"]["name"]
    assert machine["spec"]["version"] == TO
    new_node = machine["status"]["nodeRef"]["name"]
    assert new_node != old_node
    # the old host is gone with its secret; the Machine runs on the spare, a control-plane host
    (host,) = stack.kubectl_json("get", "bmh", "-n", NAME)["items"]
    assert host["metadata"]["name"] == f"{NAME}-host-cp1"
    assert host["metadata"]["labels"][workers.ROLE_LABEL] == workers.CONTROL_PLANE
    assert host["status"]["provisioning"]["state"] == "provisioned"
    # CAPM3's providerID names the host the new Machine claimed: the spare
    assert machine["spec"]["providerID"].startswith(f"metal3://{NAME}/{NAME}-host-cp1/")
    secrets = {s["metadata"]["name"] for s in stack.kubectl_json("get", "secrets", "-n", NAME)["items"]}
    assert {s for s in secrets if s.endswith("-bmc-secret")} == {f"{NAME}-host-cp1-bmc-secret"}

    # in the workload API: one Node at the new version, its mirror pods only, kubeadm-config by KCP
    (node,) = _workload(stack, tmp_path, "get", "nodes")["items"]
    assert node["metadata"]["name"] == new_node
    assert node["status"]["nodeInfo"]["kubeletVersion"] == TO
    assert node["spec"]["providerID"] == machine["spec"]["providerID"]
    pods = _workload(stack, tmp_path, "get", "pods", "-n", "kube-system", "-l", "tier=control-plane")["items"]
    assert len(pods) == 3
    for p in pods:
        assert p["spec"]["nodeName"] == new_node
        assert p["spec"]["containers"][0]["image"].endswith(f":{TO}")
    cm = _workload(stack, tmp_path, "get", "configmap", "-n", "kube-system", "kubeadm-config")
    assert yaml.safe_load(cm["data"]["ClusterConfiguration"])["kubernetesVersion"] == TO

    report = stack.lab("report", "--run", str(res["run"])).stdout
    for phase in (
        "upgrade_applied", "cp_host_provisioned", "cp_node_written", "cp_node_ref", "old_machine_deleted",
        "old_host_removed", "cluster_upgraded",
    ):  # fmt: skip
        assert f"| {phase} | 1 |" in report, report[:3000]
    stack.check_sampled(res["run"])  # components, idle window and metrics, as create's run

    # converged: a re-run and a create of the same index change nothing
    again = json.loads(
        stack.lab("upgrade-clusters", "--start", str(INDEX), "--count", "1", "--to", TO, "-o", "json").stdout
    )
    assert again["run"] is None and again["unchanged"] == [NAME]
    gen = stack.kubectl_json("get", "kcp", "-n", NAME, NAME)["metadata"]["generation"]
    stack.lab("create-clusters", "1", "--start", str(INDEX), "--timeout", "300", timeout=TIMEOUT)
    kcp = stack.kubectl_json("get", "kcp", "-n", NAME, NAME)
    assert kcp["spec"]["version"] == TO and kcp["metadata"]["generation"] == gen
    assert len(stack.kubectl_json("get", "bmh", "-n", NAME)["items"]) == 1

    # the next upgrade (a patch) rolls back onto slot 0: two host slots carry any number of upgrades
    patch = f"v{_MAJOR}.{_MINOR + 1}.1"
    started = time.monotonic()
    out = stack.lab(
        "upgrade-clusters", "--start", str(INDEX), "--count", "1", "--to", patch, "--timeout", "900",
        "-o", "json", timeout=TIMEOUT,
    )  # fmt: skip
    print(f"upgrade {TO} -> {patch}: {time.monotonic() - started:.0f}s")
    assert json.loads(out.stdout)["upgraded"] == [NAME]
    (machine,) = _cp_machines(stack)
    assert machine["spec"]["version"] == patch and machine["status"]["nodeRef"]["name"]
    assert machine["spec"]["providerID"].startswith(f"metal3://{NAME}/{NAME}-host-0/")
    assert [h["metadata"]["name"] for h in stack.kubectl_json("get", "bmh", "-n", NAME)["items"]] == [
        f"{NAME}-host-0"
    ]
    assert stack.kubectl_json("get", "kcp", "-n", NAME, NAME)["status"]["version"] == patch
    (node,) = _workload(stack, tmp_path, "get", "nodes")["items"]
    assert node["status"]["nodeInfo"]["kubeletVersion"] == patch

    stack.lab("delete-clusters", "--start", str(INDEX), "--count", "1", "--wait", timeout=TIMEOUT)
    assert residue(settings, [NAME]) == {}
