"""The create tracker: phases stamped from what the watches show, the records it writes, why a cluster
is still pending, and --wait over fake watches (no apiserver: the test plays the controllers)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from support.fakes import FakeMgmt, bmh, cluster, kcp, lifecycle, machine

from lab import phases
from lab.clusters.tracker import Tracker
from lab.errors import LabError
from lab.manifests import workers
from lab.records import Phase, Records, RunKind

CLUSTERS = {"test-1": 1, "test-2": 2}


def _tracker(**kw: Any) -> Tracker:
    return Tracker(FakeMgmt(), "test", CLUSTERS, **kw)  # type: ignore[arg-type]


def test_observe_stamps_each_phase_once_and_node_written_at_the_simulators_time() -> None:
    t = _tracker()
    t.observe(bmh("test-1", state="provisioning", written=None))
    assert t.state["test-1"].reached == set()
    t.observe(bmh("test-1"))
    assert t.state["test-1"].reached == {Phase.bmh_provisioned, Phase.node_written}
    for obj in lifecycle("test-1"):
        t.observe(obj)
    assert t.state["test-1"].reached == {
        Phase.bmh_provisioned,
        Phase.node_written,
        Phase.kcp_initialized,
        Phase.node_ref,
        Phase.kcp_available,
        Phase.cluster_available,
    }
    assert t.state["test-1"].done and not t.state["test-2"].done
    assert t.done() == 1 and t.counts()[Phase.cluster_available] == 1 and t.counts()[Phase.applied] == 0


def test_observe_ignores_what_is_not_one_of_its_clusters() -> None:
    t = _tracker()
    for ns in ("test-3", "other-1", "test-01"):
        t.observe(cluster(ns))
    t.observe({"kind": "Cluster", "metadata": {"name": "x"}, "status": {}})  # not namespaced
    assert t.counts() == dict.fromkeys(Phase, 0)


def test_records_hold_the_recorded_clusters_phases_once(tmp_path: Path) -> None:
    with Records(tmp_path / "records.sqlite") as db:
        run = db.start_run(RunKind.create, ["lab"], {}, host={})
        t = _tracker(records=db, run_id=run, record=["test-1"])  # test-2 existed: followed, not timed
        t.mark("test-1", Phase.applied, ts=100.0)
        t.mark("test-2", Phase.applied, ts=100.0)
        for obj in [*lifecycle("test-1"), *lifecycle("test-2"), *lifecycle("test-1")]:
            t.observe(obj)
        events = db.events(run)
    assert {e.cluster for e in events} == {"test-1"}
    assert sorted(e.phase for e in events) == sorted(
        [
            Phase.applied,
            Phase.bmh_provisioned,
            Phase.node_written,
            Phase.kcp_initialized,
            Phase.node_ref,
            Phase.kcp_available,
            Phase.cluster_available,
        ]
    )
    by_phase = {e.phase: e.ts for e in events}
    assert by_phase[Phase.applied] == 100.0
    assert by_phase[Phase.node_written] == phases.node_written_at(bmh("test-1"))


def test_pending_says_what_holds_each_cluster() -> None:
    t = _tracker()
    assert t.pending() == {
        "test-1": "waiting after nothing: no nodeRef yet",
        "test-2": "waiting after nothing: no nodeRef yet",
    }
    t.observe(bmh("test-1"))
    assert t.pending()["test-1"] == "waiting after node_written: no nodeRef yet"
    t.observe(machine("test-1", ready=False))
    assert t.pending()["test-1"] == "control-plane Machine not Ready"
    t.observe(machine("test-1"))
    t.observe(kcp("test-1", available=False))
    assert t.pending()["test-1"] == "KubeadmControlPlane Available=False NotReady: 1 replica"
    t.observe(kcp("test-1"))
    t.observe(cluster("test-1", available=False))
    assert t.pending()["test-1"] == "Cluster Available=False Waiting: control plane"
    t.observe(cluster("test-1"))
    assert list(t.pending()) == ["test-2"]


def test_wait_follows_the_watches_until_every_cluster_is_done() -> None:
    changes: list[int] = []
    mgmt = FakeMgmt()
    t = Tracker(mgmt, "test", CLUSTERS, on_change=lambda: changes.append(t.done()))  # type: ignore[arg-type]
    with t:
        assert sorted(mgmt.watches) == sorted(kind for _, kind in phases.WATCHED)

        def controllers() -> None:
            for ns in CLUSTERS:
                for obj in lifecycle(ns):
                    time.sleep(0.01)
                    mgmt.watches[obj["kind"]].push("MODIFIED", obj)

        mgmt.watches["Cluster"].push("DELETED", cluster("test-1"))  # a deletion proves nothing
        player = threading.Thread(target=controllers)
        player.start()
        assert t.wait(time.monotonic() + 10) is True
        player.join()
    assert t.done() == 2 and t.pending() == {}
    assert changes[-1] == 2 and 1 in changes
    assert all(w.stopped.is_set() for w in mgmt.watches.values())


def test_wait_gives_up_at_the_deadline_with_what_is_pending() -> None:
    mgmt = FakeMgmt()
    with Tracker(mgmt, "test", CLUSTERS) as t:  # type: ignore[arg-type]
        for obj in lifecycle("test-1"):
            mgmt.watches[obj["kind"]].push("ADDED", obj)
        started = time.monotonic()
        assert t.wait(started + 0.5) is False
        assert 0.4 <= time.monotonic() - started < 3
    assert list(t.pending()) == ["test-2"]


def test_a_lost_watch_ends_the_wait_with_an_error() -> None:
    mgmt = FakeMgmt()
    with Tracker(mgmt, "test", CLUSTERS) as t:  # type: ignore[arg-type]
        mgmt.watches["Machine"].fail(LabError("connection refused"))
        with pytest.raises(LabError, match="lost the watch on the management cluster: connection refused"):
            t.wait(time.monotonic() + 10)


def _worker(ns: str, slot: int, state: str = "provisioned", written: str | None = None) -> dict[str, Any]:
    host = bmh(ns, written=written, state=state)
    host["metadata"]["name"] = f"{ns}-host-{slot}"
    host["metadata"]["labels"] = {workers.ROLE_LABEL: workers.WORKER}
    return host


def _md(ns: str, want: int, available: int) -> dict[str, Any]:
    cond = {"type": "Available", "status": "True" if available == want else "False"}
    return {
        "kind": "MachineDeployment",
        "metadata": {"name": ns, "namespace": ns},
        "spec": {"replicas": want},
        "status": {"replicas": available, "availableReplicas": available, "conditions": [cond]},
    }


def test_worker_phases_wait_for_all_w_hosts_and_the_last_nodes_own_time() -> None:
    t = _tracker(workers=2)
    for obj in [bmh("test-1"), *lifecycle("test-1")]:
        t.observe(obj)
    assert not t.state["test-1"].done  # Available, but the workers are not there yet
    t.observe(_worker("test-1", 1, written="2026-11-21T19:30:01.000Z"))
    t.observe(_worker("test-1", 3))  # past W: not one of this run's hosts
    assert Phase.workers_provisioned not in t.state["test-1"].reached
    t.observe(_worker("test-1", 2, state="provisioning"))
    assert Phase.workers_provisioned not in t.state["test-1"].reached
    t.observe(_worker("test-1", 2, written="2026-11-21T19:30:05.000Z"))
    st = t.state["test-1"]
    assert {Phase.workers_provisioned, Phase.workers_written} <= st.reached
    assert Phase.bmh_provisioned in st.reached  # from host-0 only
    t.observe(_md("test-1", 1, 1))  # an MD of another W (before a scale's apply): not this run's
    assert not st.done
    t.observe(_md("test-1", 2, 2))
    assert st.done and "2 of 2 worker hosts" in t.state["test-1"].holding()


def test_records_of_a_scale_run_hold_only_its_phases(tmp_path: Path) -> None:
    with Records(tmp_path / "records.sqlite") as db:
        run = db.start_run(RunKind.scale, ["lab"], {"direction": "up"}, host={})
        t = _tracker(
            records=db,
            run_id=run,
            record=["test-1"],
            workers=1,
            goal={"test-1": Phase.md_available, "test-2": Phase.md_available},
            phases=phases.SCALE_UP,
        )
        t.mark("test-1", Phase.scale_applied, ts=100.0)
        for obj in [
            *lifecycle("test-1"),
            _worker("test-1", 1, written="2026-11-21T19:30:05.000Z"),
            _md("test-1", 1, 1),
        ]:
            t.observe(obj)
        assert t.state["test-1"].done and not t.state["test-2"].done
        got = {e.phase for e in db.events(run)}
        assert got == set(phases.SCALE_UP)
