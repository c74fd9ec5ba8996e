"""Sharded KCP on the real local stack (issue 13, item 3): `lab up --shards 2` on the session stack,
two clusters (8901 falls to shard-1, 8902 to shard-0: index mod 2), each KCP manager reconciling
only the clusters labelled for it, status and report per shard, another K refused while clusters
exist, delete to zero residue; the module's teardown puts the stack back to one unfiltered KCP
manager (`lab up --shards 1`, checked). Indexes 8901-8902 are no other e2e module's.

Which clusters a manager works on is read from its own metrics endpoint: CAPI's ClusterCache
exports `capi_cluster_cache_connection_up{cluster_name=...}` for each cluster it connects to (the
same filter as the controller's: only labelled Clusters), and controller-runtime counts each
controller's reconciles, so both KCP managers having reconciled, each connected to its cluster and
not the other, is what "each reconciles only its shard" means, without reading logs.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families
from support.stack import Stack
from support.wait import wait_for

from lab import naming, shards
from lab.clusters.residue import residue
from lab.stack import ports, up

INDEXES = (8901, 8902)
NAMES = [f"test-{i}" for i in INDEXES]
#: 8901 mod 2 = 1, 8902 mod 2 = 0
OWNER = {"test-8901": 1, "test-8902": 0}
TIMEOUT = 900
KCP = "kubeadmcontrolplanes.controlplane.cluster.x-k8s.io"


def _cmdline(row: dict[str, Any]) -> list[str]:
    return list(psutil.Process(int(row["pid"])).cmdline())


def _metrics(stack: Stack, shard: int) -> dict[str, list[tuple[dict[str, str], float]]]:
    """name -> [(labels, value)] of one shard manager's Prometheus endpoint."""
    port = ports.shard(stack.settings(), shard).metrics
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, []).append((dict(s.labels), s.value))
    return out


def _connected(m: dict[str, list[tuple[dict[str, str], float]]]) -> set[str]:
    return {lab["cluster_name"] for lab, v in m.get("capi_cluster_cache_connection_up", []) if v == 1}


def _reconciles(m: dict[str, list[tuple[dict[str, str], float]]], controller: str) -> float:
    return sum(
        v for lab, v in m.get("controller_runtime_reconcile_total", []) if lab["controller"] == controller
    )


@pytest.fixture(scope="module")
def sharded(stack: Stack) -> Iterator[Stack]:
    """The session stack with two KCP shards; one unfiltered KCP manager again afterwards.

    Another K is refused while any cluster exists, so this first waits for the clusters an earlier
    module of the session stack asked to delete without waiting (test_render_apply's test-101) to go.
    """
    wait_for(
        "no cluster left on the session stack by earlier modules",
        lambda: not stack.kubectl_json("get", "namespaces", "-l", naming.CLUSTER_LABEL)["items"],
        TIMEOUT,
        interval=5,
    )
    try:
        out = stack.lab("up", "--shards", "2", timeout=TIMEOUT)
        assert "2 KCP shards" in out.stdout, out.stdout
        yield stack
    finally:
        # nothing to do when the delete test ran; what it left otherwise
        stack.lab(
            "delete-clusters", "--start", "8901", "--count", "2", "--wait", check=False, timeout=TIMEOUT
        )
        back = stack.lab("up", "--shards", "1", check=False, timeout=TIMEOUT)
    assert back.returncode == 0, back.stderr
    rows = stack.status()
    assert not [n for n in rows if n in shards.EXTRA_PROGRAMS], sorted(rows)
    assert rows["kcp-manager"]["healthy"] is True
    assert not [a for a in _cmdline(rows["kcp-manager"]) if a.startswith("--watch-filter")]
    assert up.current_shards(stack.settings()) == 1


def test_up_shards_runs_one_filtered_kcp_manager_per_shard(sharded: Stack) -> None:
    rows = sharded.status()
    for n in (0, 1):
        row = rows[shards.program(n)]
        assert row["state"] == "RUNNING" and row["healthy"] is True, row
        argv = _cmdline(row)
        assert f"--watch-filter=shard-{n}" in argv, argv
        assert f"--webhook-port={ports.shard(sharded.settings(), n).webhook}" in argv
    assert shards.program(2) not in rows
    # kept like the tuning profile: a plain `lab up` converges to the same two shards, restarting nothing
    pids = {n: rows[n]["pid"] for n in shards.programs(2)}
    again = sharded.lab("up", timeout=TIMEOUT)
    assert "2 KCP shards" in again.stdout and "started" not in again.stdout, again.stdout
    assert {n: sharded.status()[n]["pid"] for n in shards.programs(2)} == pids


@pytest.fixture(scope="module")
def created(sharded: Stack) -> dict[str, Any]:
    out = sharded.lab(
        "create-clusters", "2", "--start", str(INDEXES[0]), "--timeout", "720", "-o", "json", timeout=TIMEOUT
    )
    res: dict[str, Any] = json.loads(out.stdout)
    assert sorted(res["available"]) == NAMES and res["stuck"] == {}, res
    return res


def test_each_kcp_manager_reconciles_only_the_clusters_labelled_for_it(
    sharded: Stack, created: dict[str, Any]
) -> None:
    for name, n in OWNER.items():
        want = f"shard-{n}"
        kcp = sharded.kubectl_json("get", KCP, "-n", name, name)
        assert kcp["metadata"]["labels"][shards.WATCH_LABEL] == want
        assert kcp["spec"]["machineTemplate"]["metadata"]["labels"][shards.WATCH_LABEL] == want
        available = [c for c in kcp["status"]["conditions"] if c["type"] == "Available"]
        assert available and available[0]["status"] == "True", kcp["status"]["conditions"]
        cluster = sharded.kubectl_json("get", "clusters.cluster.x-k8s.io", "-n", name, name)
        assert cluster["metadata"]["labels"][shards.WATCH_LABEL] == want
        [machine] = sharded.kubectl_json("get", "machines.cluster.x-k8s.io", "-n", name)["items"]
        assert machine["metadata"]["labels"][shards.WATCH_LABEL] == want  # copied by KCP
    for name, n in OWNER.items():
        m = _metrics(sharded, n)
        # its ClusterCache reaches its own cluster's API and not the other shard's
        assert _connected(m) == {name}, (shards.program(n), _connected(m))
        assert _reconciles(m, "kubeadmcontrolplane") > 0, shards.program(n)
        assert _reconciles(m, "clustercache") > 0, shards.program(n)


def test_status_shows_each_shard_and_the_clusters_it_owns(sharded: Stack, created: dict[str, Any]) -> None:
    data = json.loads(sharded.lab("status", "-o", "json").stdout)
    assert [(s["shard"], s["manager"], s["clusters"], s["healthy"]) for s in data["shards"]] == [
        ("shard-0", "kcp-manager", 1, True),
        ("shard-1", "kcp-manager-shard-1", 1, True),
    ]
    mine = {c["name"]: c["shard"] for c in data["clusters"] if c["name"] in NAMES}
    assert mine == OWNER
    table = sharded.lab("status").stdout
    assert "KCP shards: 2\n" in table, table
    assert "shard-0: kcp-manager RUNNING, 1 cluster(s)" in table
    assert "shard-1: kcp-manager-shard-1 RUNNING, 1 cluster(s)" in table


def test_another_shard_count_is_refused_while_clusters_exist(sharded: Stack, created: dict[str, Any]) -> None:
    before = {n: sharded.status()[n]["pid"] for n in shards.programs(2)}
    state = up.state_path(sharded.settings()).read_text()
    bad = sharded.lab("up", "--shards", "3", check=False, timeout=TIMEOUT)
    assert bad.returncode == 1 and bad.stdout == "", bad
    assert bad.stderr.startswith("error: 2 cluster(s) (test-8901 first) exist with --shards 2")
    assert bad.stderr.count("\n") == 1, bad.stderr
    rows = sharded.status()
    assert {n: rows[n]["pid"] for n in shards.programs(2)} == before and shards.program(2) not in rows
    assert up.state_path(sharded.settings()).read_text() == state


def test_report_shows_each_shard(sharded: Stack, created: dict[str, Any]) -> None:
    run = str(created["run"])
    md = sharded.lab("report", "--run", run).stdout
    assert "## KCP shards (2; a cluster's shard is its index mod 2)" in md, md
    rows = json.loads(sharded.lab("report", "--run", run, "--format", "json").stdout)["shards"]
    assert [(r["shard"], r["manager"], r["clusters"], r["done"]) for r in rows] == [
        ("shard-0", "kcp-manager", 1, 1),
        ("shard-1", "kcp-manager-shard-1", 1, 1),
    ]
    for r in rows:  # each manager was sampled (RSS/CPU) and scraped (its reconciles) during the run
        assert r["rss_bytes"] and r["cpu_percent"] is not None and r["reconciles"] is not None, r


def test_delete_leaves_nothing(sharded: Stack, created: dict[str, Any]) -> None:
    sharded.lab("delete-clusters", "--start", str(INDEXES[0]), "--count", "2", "--wait", timeout=TIMEOUT)
    assert residue(sharded.settings(), NAMES) == {}
    data = json.loads(sharded.lab("status", "-o", "json").stdout)
    assert [s["clusters"] for s in data["shards"]] == [0, 0]
