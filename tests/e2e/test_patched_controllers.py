"""Patched controllers on the real local stack (issue 13, item 6).

The session stack (conftest.py) sets no LAB_PATCHES, so lab's default applies: the repository's
patches/, whose one example makes KCP stamp `scale-lab.metal3.io/kcp-first-reconciled` on each
KubeadmControlPlane. So every e2e session runs that patched kcp-manager, built once into the shared
binary cache (11.5 s with Go's build cache warm; nothing on a warm run). This module checks what a
user would: status names the patched component, the KCP of a new cluster carries the stamp
(kubectl), the run's report says KCP ran patched, and the delete leaves nothing. Index 1301 keeps
clear of the other e2e modules.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil
from support.stack import Stack, run_lab

from lab import build
from lab.clusters.residue import residue
from lab.stack import up

INDEX = "1301"
NAME = f"test-{INDEX}"
ANNOTATION = "scale-lab.metal3.io/kcp-first-reconciled"
KCP = "kubeadmcontrolplanes.controlplane.cluster.x-k8s.io"
TIMEOUT = 900


def _time(stamp: str) -> datetime:
    """RFC 3339 with up to nanoseconds (Go's RFC3339Nano) or none (creationTimestamp)."""
    m = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?Z", stamp)
    assert m, stamp
    frac = (m[2] or "0")[:6].ljust(6, "0")
    return datetime.strptime(f"{m[1]}.{frac}", "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=UTC)


def test_status_shows_kcp_runs_the_repository_patch(stack: Stack) -> None:
    settings = stack.settings()
    patches = build.default_patches(settings, "kcp-manager")
    assert patches.names == ["kcp-manager/0001-kcp-first-reconciled-annotation.patch"]
    rows = {c["name"]: c for c in json.loads(stack.lab("status", "-o", "json").stdout)["components"]}
    assert rows["kcp-manager"]["patched"] == {"patches": patches.names, "digest": patches.digest}
    assert [n for n, r in rows.items() if r["patched"]] == ["kcp-manager"]
    table = stack.lab("status").stdout
    assert f"patched: kcp-manager runs {patches.names[0]} ({patches.digest})" in table, table
    # what runs is the patched build, beside the upstream one in the cache, and only it has the change
    patched = build.binary_path(settings, "kcp-manager")
    upstream = build.binary_path(settings, "kcp-manager", build.Patches())
    assert psutil.Process(rows["kcp-manager"]["pid"]).exe() == str(patched)
    assert patched.parent.name == f"{settings.versions.capi}-patched-{patches.digest}"
    assert ANNOTATION.encode() in patched.read_bytes()
    assert ANNOTATION.encode() not in upstream.read_bytes()


def test_patched_kcp_stamps_the_first_reconcile_then_delete_leaves_nothing(stack: Stack) -> None:
    settings = stack.settings()
    try:
        out = stack.lab(
            "create-clusters",
            "1",
            "--start",
            INDEX,
            "--wait",
            "--timeout",
            "600",
            "-o",
            "json",
            timeout=TIMEOUT,
        )
        res = json.loads(out.stdout)
        assert res["available"] == [NAME], res
        (kcp,) = stack.kubectl_json("get", KCP, "-n", NAME)["items"]
        meta = kcp["metadata"]
        stamp = meta["annotations"][ANNOTATION]
        created, first = _time(meta["creationTimestamp"]), _time(stamp)
        # creationTimestamp has whole seconds; KCP got to it within the create's wait
        assert created <= first < created + timedelta(seconds=600), (meta["creationTimestamp"], stamp)
        # the command patches/README.md gives users
        columns = (
            "custom-columns=NS:.metadata.namespace,CREATED:.metadata.creationTimestamp,"
            "FIRST:.metadata.annotations.scale-lab\\.metal3\\.io/kcp-first-reconciled"
        )
        table = stack.kubectl("get", "kcp", "-n", NAME, "-o", columns).stdout.splitlines()
        assert table[1].split() == [NAME, meta["creationTimestamp"], stamp], table
        # stamped once, at the first reconcile: every condition KCP set since (Available after the
        # Machine was provisioned and the Node came up, seconds later) is not before it, which a
        # stamp rewritten at each reconcile would be
        times = [_time(c["lastTransitionTime"]) for c in kcp["status"]["conditions"]]
        assert first < max(times), (stamp, kcp["status"]["conditions"])
        available = [c for c in kcp["status"]["conditions"] if c["type"] == "Available"]
        assert (
            available
            and available[0]["status"] == "True"
            and first < _time(available[0]["lastTransitionTime"])
        )
        report = stack.lab("report", "--run", str(res["run"])).stdout
        patches = build.default_patches(settings, "kcp-manager")
        assert f"- patched: kcp-manager ({patches.names[0]}; digest {patches.digest})" in report, report
    finally:
        stack.lab(
            "delete-clusters", "--start", INDEX, "--count", "1", "--wait", "--timeout", "600", timeout=TIMEOUT
        )
    assert residue(settings, [NAME]) == {}


def test_up_and_tune_restart_kcp_when_its_patches_change(stack: Stack, tmp_path: Path) -> None:
    """`lab up` with no patches puts the upstream kcp-manager back (a restart, like a version change;
    the other managers keep running), `lab tune` with the repository's patches the patched one."""
    settings = stack.settings()
    before = stack.status()
    empty = tmp_path / "no-patches"
    empty.mkdir()
    upstream_env = {**stack.env, "LAB_PATCHES": str(empty)}
    try:
        out = run_lab(upstream_env, "up", timeout=TIMEOUT)
        assert out.returncode == 0, out.stderr
        rows = {
            c["name"]: c
            for c in json.loads(run_lab(upstream_env, "status", "-o", "json", timeout=60).stdout)[
                "components"
            ]
        }
        assert (
            rows["kcp-manager"]["patched"] is None
            and rows["kcp-manager"]["pid"] != before["kcp-manager"]["pid"]
        )
        upstream = build.binary_path(settings, "kcp-manager", build.Patches())
        assert psutil.Process(rows["kcp-manager"]["pid"]).exe() == str(upstream)
        assert rows["capi-manager"]["pid"] == before["capi-manager"]["pid"]
        assert rows["kcp-manager"]["healthy"] is True
    finally:
        tuned = stack.lab("tune", "--profile", up.current_profile(settings), "-o", "json", timeout=TIMEOUT)
    assert "kcp-manager" in json.loads(tuned.stdout)["restarted"]
    after = stack.status()
    patches = build.default_patches(settings, "kcp-manager")
    assert after["kcp-manager"]["patched"] == {"patches": patches.names, "digest": patches.digest}
    assert after["kcp-manager"]["healthy"] is True
    assert after["capi-manager"]["pid"] == before["capi-manager"]["pid"]
