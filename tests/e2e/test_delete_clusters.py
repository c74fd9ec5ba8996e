"""delete-clusters on the real local stack: CAPI, KCP, CAPM3 and BMO (test mode) take the clusters
apart, then lab removes namespaces, apiservers, etcd tenants and files; residue() checks etcd, the
management API, the process table and lab home. Indexes 900-902 keep clear of the other e2e modules.

The clusters are made with the library (backing.local.ensure + wait_ready + server-side apply of
render.local_objects), not `lab create-clusters`, so this module tests delete on its own. Tests run
in file order on one set of clusters.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from support.stack import Stack
from support.wait import wait_for

from lab import config, render
from lab.backing import local
from lab.clusters import inventory
from lab.clusters.residue import residue
from lab.kube import Client
from lab.stack import mgmt

INDEXES = (900, 901, 902)
NAMES = [f"test-{i}" for i in INDEXES]
AVAILABLE_TIMEOUT = 480.0
DELETE_TIMEOUT = "420"


@pytest.fixture(scope="module")
def clusters(stack: Stack) -> Iterator[config.Settings]:
    """test-900..902 created by the library and Available; whatever a test leaves is deleted after."""
    settings = stack.settings()
    client = Client.from_kubeconfig(mgmt.admin_kubeconfig_path(settings), parallel=8)
    try:
        ca = render.etcd_ca(settings)
        objs = {i: render.local_objects(settings, i, ca) for i in INDEXES}
        client.apply([o[0] for o in objs.values()])  # namespaces first, as create does
        local.ensure(settings, INDEXES)
        local.wait_ready(settings, NAMES, timeout=300)
        client.apply([o for i in INDEXES for o in objs[i][1:]])

        last: list[object] = []

        def available() -> bool:
            infos = {c.name: c for c in inventory.list_clusters(settings, client)}
            last[:] = [infos.get(n) for n in NAMES]
            return all(n in infos and infos[n].phase == inventory.AVAILABLE for n in NAMES)

        wait_for(
            "clusters 900-902 Available", available, AVAILABLE_TIMEOUT, interval=2.0, detail=lambda: last
        )
        yield settings
    finally:
        client.close()
        if residue(settings, NAMES):  # a test failed half-way: leave nothing to the modules after this
            stack.lab("delete-clusters", "--start", "900", "--count", "3", check=False, timeout=600)


def _delete(stack: Stack, *args: str) -> dict[str, Any]:
    out = stack.lab("delete-clusters", *args, "--timeout", DELETE_TIMEOUT, "-o", "json", timeout=600)
    return json.loads(out.stdout)


def test_status_shows_the_clusters_by_phase(stack: Stack, clusters: config.Settings) -> None:
    data = json.loads(stack.lab("status", "-o", "json").stdout)
    mine = {c["name"]: c for c in data["clusters"] if c["name"] in NAMES}
    assert [mine[n]["phase"] for n in NAMES] == ["available"] * 3, mine
    assert mine["test-900"] == {
        "name": "test-900",
        "index": 900,
        "backing": "local",
        "phase": "available",
        "reason": None,
        "shard": None,  # an unsharded stack (lab up --shards 1): no KCP shard label
    }
    assert data["clusters_by_phase"]["available"] >= 3 and data["clusters_error"] is None
    table = stack.lab("status").stdout
    assert "available" in table and "wkl-* x3" in table


def test_no_wait_only_requests_then_a_crash_leaves_a_backing_without_namespace(
    stack: Stack, clusters: config.Settings
) -> None:
    res = _delete(stack, "--start", "902", "--count", "1", "--no-wait")
    assert res["requested"] == ["test-902"] and res["deleted"] == [] and not res["waited"]
    cluster = stack.kubectl_json("get", "clusters.cluster.x-k8s.io", "-n", "test-902", "test-902")
    assert cluster["metadata"]["deletionTimestamp"]
    # A delete that "crashed" right after the namespace went: done by hand, backing untouched.
    wait_for(
        "Cluster test-902 gone",
        lambda: (
            stack.kubectl("get", "clusters.cluster.x-k8s.io", "-n", "test-902", "-o", "name").stdout == ""
        ),
        300,
    )
    stack.kubectl("delete", "namespace", "test-902", "--wait=true", "--timeout=300s", timeout=330)
    left = residue(clusters, ["test-902"])["test-902"]
    kinds = {w.split(" ")[0] for w in left}
    assert {"etcd", "etcd:", "process", "supervisord", "file"} <= kinds, left
    assert not any(w.startswith("namespace") for w in left)


def test_delete_a_range_leaves_no_residue(stack: Stack, clusters: config.Settings) -> None:
    res = _delete(stack, "--start", "900", "--count", "2", "--wait")
    assert res["deleted"] == ["test-900", "test-901"] and res["pending"] == {}
    assert res["requested"] == ["test-900", "test-901"] and res["leftovers"] == []
    assert residue(clusters, ["test-900", "test-901"]) == {}
    rep = json.loads(stack.lab("report", "--run", str(res["run"]), "--format", "json").stdout)
    assert rep["run"]["kind"] == "delete" and rep["clusters"] == 2 and rep["done"] == 2
    for phase in rep["phases"]:
        assert phase["reached"] == 2, phase
    # the figures for the record (pytest -s shows them)
    print("\ndelete of 2 clusters, seconds from delete_requested:")
    for phase in rep["phases"]:
        print(f"  {phase['phase']:<18} p50 {phase['since_start']['p50']}  max {phase['since_start']['max']}")


def test_deleting_again_is_nothing_to_do(stack: Stack, clusters: config.Settings) -> None:
    res = _delete(stack, "--start", "900", "--count", "2")
    assert res["run"] is None and res["clusters"] == [] and res["deleted"] == []
    out = stack.lab("delete-clusters", "--start", "900", "--count", "2")
    assert out.returncode == 0 and "nothing to delete" in out.stderr


def test_delete_all_sweeps_the_leftover(stack: Stack, clusters: config.Settings) -> None:
    res = _delete(stack, "--all", "--wait")
    assert "test-902" in res["leftovers"] and "test-902" in res["deleted"] and res["pending"] == {}
    assert residue(clusters, NAMES) == {}
    assert residue(clusters, None) == {}  # --all: nothing of any cluster of this stack either
    data = json.loads(stack.lab("status", "-o", "json").stdout)
    assert data["clusters"] == [] and sum(data["clusters_by_phase"].values()) == 0
