"""BMO-only runs on the real local stack: `lab create-hosts` takes standalone BareMetalHosts to
`provisioned` through the session stack's BMO (test mode), converges on a re-run, refuses a
different state for the same hosts, reports per-state percentiles, and `lab delete-hosts --all`
leaves nothing (no host, no secret, no namespace).

Host indexes 701-703: standalone hosts are named <prefix>-bmh-<N> in <prefix>-hosts, so they never
meet a cluster's host whatever the index; these stay clear of every e2e cluster index anyway.
"""

from __future__ import annotations

import json
import time
from typing import Any

from support.stack import Stack

from lab import management, naming
from lab.manifests.metal3 import HOST_IMAGE as IMAGE

START, COUNT = 701, 3


def _names(prefix: str) -> list[str]:
    return [naming.host_name(prefix, i) for i in range(START, START + COUNT)]


def _phase(report: dict[str, Any], phase: str) -> dict[str, Any]:
    [row] = [p for p in report["phases"] if p["phase"] == phase]
    return row


def _ours(stack: Stack, kind: str, ns: str) -> list[dict[str, Any]]:
    """Objects of `kind` in every namespace labelled as lab's standalone hosts."""
    items = stack.kubectl_json("get", kind, "-A", "-l", naming.HOSTS_LABEL)["items"]
    return [o for o in items if o["metadata"]["namespace"] == ns]


def test_create_hosts_provisioned_converge_report_delete(stack: Stack) -> None:
    settings = stack.settings()
    ns = naming.hosts_namespace(settings.prefix)
    names = _names(settings.prefix)
    began = time.monotonic()

    out = stack.lab(
        "create-hosts", str(COUNT), "--start", str(START), "--state", "provisioned", "--wait",
        "--timeout", "180", "-o", "json", timeout=240,
    )  # fmt: skip
    created = json.loads(out.stdout)
    assert created["new"] == names and created["done"] == names and created["stuck"] == {}

    # what a user sees with kubectl
    bmhs = {b["metadata"]["name"]: b for b in stack.kubectl_json("get", "bmh", "-n", ns)["items"]}
    assert sorted(bmhs) == sorted(names)
    for b in bmhs.values():
        assert b["status"]["provisioning"]["state"] == "provisioned", b["status"]
        assert b["spec"]["image"]["url"] == IMAGE["url"]
        assert naming.CLUSTER_LABEL not in b["metadata"]["labels"]  # cluster commands never see it
        secret = stack.kubectl_json("get", "secret", "-n", ns, b["spec"]["bmc"]["credentialsName"])
        assert secret["data"]["username"] and secret["data"]["password"]
    one = stack.kubectl_json("get", "bmh", "-n", ns, names[0], "--show-managed-fields")
    secret_full = stack.kubectl_json(
        "get", "secret", "-n", ns, one["spec"]["bmc"]["credentialsName"], "--show-managed-fields"
    )
    sizes = [len(json.dumps(o, separators=(",", ":"))) for o in (one, secret_full)]
    print(f"a provisioned BareMetalHost is {sizes[0]} B as JSON, its secret {sizes[1]} B")
    macs = {b["spec"]["bootMACAddress"] for b in bmhs.values()}
    assert len(macs) == COUNT and not macs & {naming.boot_mac(i) for i in range(START, START + COUNT)}

    key = settings.pki_dir / "hosts-bmc.key"  # what the BMC passwords derive from
    assert key.stat().st_mode & 0o777 == 0o600
    status = json.loads(stack.lab("status", "-o", "json").stdout)
    assert status["hosts_by_state"] == {"provisioned": COUNT}

    # the report: percentiles per BMO state, from lab's apply
    report = json.loads(stack.lab("report", "--format", "json").stdout)
    assert report["run"]["id"] == created["run"] and report["run"]["kind"] == "create-hosts"
    assert report["final_phase"] == "provisioned" and report["done"] == COUNT
    # the profile the managers run with (the bottleneck section's client QPS), as a cluster run's
    profile = management.tuning_profile(settings)
    assert profile is not None and report["run"]["settings"]["tuning"] == profile, report["run"]
    for state in ("registering", "inspecting", "available", "provisioning", "provisioned"):
        row = _phase(report, state)
        assert row["reached"] >= 1, (state, report["phases"])
    final = _phase(report, "provisioned")["since_start"]
    assert final["count"] == COUNT and 0 < final["p50"] <= final["p90"] <= final["p99"] <= final["max"]
    md = stack.lab("report").stdout
    assert "create-hosts" in md and "| provisioned | 3 |" in md, md

    # converge: nothing new, nothing written
    versions = {s["metadata"]["name"]: s["metadata"]["resourceVersion"] for s in _ours(stack, "secrets", ns)}
    again = json.loads(
        stack.lab("create-hosts", str(COUNT), "--start", str(START), "-o", "json", timeout=120).stdout
    )
    assert again["new"] == [] and again["unchanged"] == names and again["done"] == names
    assert {s["metadata"]["name"]: s["metadata"]["resourceVersion"] for s in _ours(stack, "secrets", ns)} == (
        versions
    )

    # the same hosts for another state: one error line, nothing changed
    bad = stack.lab("create-hosts", "1", "--start", str(START), "--state", "available", check=False)
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and bad.stderr.startswith("error: ")
    assert "exist for state provisioned" in bad.stderr
    assert all(b["spec"].get("image") for b in stack.kubectl_json("get", "bmh", "-n", ns)["items"])

    # delete: zero residue, re-runnable
    gone = json.loads(stack.lab("delete-hosts", "--all", "-o", "json", timeout=240).stdout)
    assert gone["deleted"] == names and gone["pending"] == {} and gone["namespace_removed"]
    assert stack.kubectl("get", "namespace", ns, check=False).returncode != 0
    assert _ours(stack, "bmh", ns) == [] and _ours(stack, "secrets", ns) == []
    assert json.loads(stack.lab("status", "-o", "json").stdout)["hosts_by_state"] == {}
    assert not key.exists()
    report = json.loads(stack.lab("report", "--format", "json").stdout)
    assert report["run"]["kind"] == "delete-hosts" and report["done"] == COUNT
    assert report["run"]["settings"]["tuning"] == profile, report["run"]
    assert _phase(report, "deprovisioning")["reached"] >= 1
    assert stack.lab("delete-hosts", "--all").stderr.strip() == "nothing to delete"
    print(f"create, converge, delete of {COUNT} hosts: {time.monotonic() - began:.0f}s")
