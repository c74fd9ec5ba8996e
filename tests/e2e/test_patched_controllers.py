"""Patched controllers on the real local stack (issue 13, item 6).

The session stack (conftest.py) sets no LAB_PATCHES, so it runs upstream controllers: the repository's
patches/ holds only examples/, never applied by default. This module does what its README tells a
user: `LAB_PATCHES=<clone>/patches/examples lab tune` builds the example (KCP stamps
`scale-lab.metal3.io/kcp-first-reconciled` on each KubeadmControlPlane; in the shared binary cache
after the first run) and restarts only kcp-manager on it; status names it, the KCP of a new cluster
carries the stamp (kubectl), the run's report says KCP ran patched, the delete leaves nothing; and a
plain `lab up` puts upstream KCP back (the fixture's teardown, checked). Index 1301 keeps clear of
the other e2e modules.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil
import pytest
from support.stack import Stack, run_lab

from lab import build, config
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


EXAMPLES = Path(__file__).resolve().parents[2] / "patches" / build.EXAMPLES


def _rows(env: dict[str, str]) -> dict[str, dict[str, object]]:
    out = run_lab(env, "status", "-o", "json", timeout=60)
    assert out.returncode == 0, out.stderr
    return {c["name"]: c for c in json.loads(out.stdout)["components"]}


@pytest.fixture(scope="module")
def patched(stack: Stack) -> Iterator[dict[str, str]]:
    """The stack with the example patches (its env); upstream KCP again afterwards, by `lab up`."""
    settings = stack.settings()
    env = {**stack.env, "LAB_PATCHES": str(EXAMPLES)}
    before = stack.status()
    try:
        out = run_lab(env, "tune", "--profile", up.current_profile(settings), "-o", "json", timeout=TIMEOUT)
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["restarted"] == ["kcp-manager"]
        after = stack.status()
        assert after["capi-manager"]["pid"] == before["capi-manager"]["pid"]  # only KCP's binary changed
        yield env
    finally:
        stack.lab("up", timeout=TIMEOUT)
    rows = _rows(stack.env)
    assert rows["kcp-manager"]["patched"] is None and rows["kcp-manager"]["healthy"] is True
    upstream = build.binary_path(settings, "kcp-manager")
    assert upstream == build.binary_path(settings, "kcp-manager", build.Patches())
    assert psutil.Process(int(rows["kcp-manager"]["pid"])).exe() == str(upstream)


def test_status_shows_kcp_runs_the_example_patch(stack: Stack, patched: dict[str, str]) -> None:
    settings = stack.settings()
    ex = config.Settings(home=settings.home, bin_cache=settings.bin_cache, patches=EXAMPLES)
    patches = build.default_patches(ex, "kcp-manager")
    assert patches.names == ["kcp-manager/0001-kcp-first-reconciled-annotation.patch"]
    assert build.default_patches(settings, "kcp-manager").files == ()  # nothing without LAB_PATCHES
    rows = _rows(patched)
    assert rows["kcp-manager"]["patched"] == {"patches": patches.names, "digest": patches.digest}
    assert [n for n, r in rows.items() if r["patched"]] == ["kcp-manager"]
    table = run_lab(patched, "status", timeout=60).stdout
    assert f"patched: kcp-manager runs {patches.names[0]} ({patches.digest})" in table, table
    # what runs is the patched build, beside the upstream one in the cache, and only it has the change
    built = build.binary_path(ex, "kcp-manager")
    upstream = build.binary_path(settings, "kcp-manager", build.Patches())
    assert psutil.Process(int(rows["kcp-manager"]["pid"])).exe() == str(built)
    assert built.parent.name == f"{settings.versions.capi}-patched-{patches.digest}"
    assert ANNOTATION.encode() in built.read_bytes()
    assert ANNOTATION.encode() not in upstream.read_bytes()


def test_patched_kcp_stamps_the_first_reconcile_then_delete_leaves_nothing(
    stack: Stack, patched: dict[str, str]
) -> None:
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
        ex = config.Settings(home=settings.home, patches=EXAMPLES)
        patches = build.default_patches(ex, "kcp-manager")
        assert f"- patched: kcp-manager ({patches.names[0]}; digest {patches.digest})" in report, report
    finally:
        stack.lab(
            "delete-clusters", "--start", INDEX, "--count", "1", "--wait", "--timeout", "600", timeout=TIMEOUT
        )
    assert residue(settings, [NAME]) == {}
