"""One create run end to end over fakes: plan, records, convergence, the tracker's wait and the
result, with the test playing the controllers on fake watches (no apiserver, no process)."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from support.fakes import DeadMetrics, FakeBacking, FakeMgmt, lifecycle, live_stack
from support.wait import wait_for

from lab import config, management, metrics, naming, phases, records
from lab.clusters import create, session
from lab.phases import RunKind
from lab.records import Phase


class Display:
    def __init__(self) -> None:
        self.seen: list[tuple[str, Any]] = []

    def planned(self, plan: create.Plan) -> None:
        self.seen.append(("planned", plan.summary()))

    def update(self, counts: dict[Phase, int], done: int, total: int) -> None:
        self.seen.append(("update", (done, total)))

    def message(self, text: str) -> None:
        self.seen.append(("message", text))


@pytest.fixture
def run(lab_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Any:
    settings = config.load()
    backing = FakeBacking(naming.LOCAL_BACKING)
    monkeypatch.setattr(create, "check_stack", lambda _mgmt: None)
    monkeypatch.setattr(create, "open_backing", lambda _s, _name: backing)
    monkeypatch.setattr(create, "open_all", lambda _s, names: dict.fromkeys(names, backing))
    monkeypatch.setattr(session, "IDLE_INTERVAL", 0.01)
    monkeypatch.setattr(management, "for_settings", lambda _s: DeadMetrics())

    def go(mgmt: FakeMgmt, indexes: list[int], play: list[str], **kw: Any) -> session.Result:
        def controllers() -> None:
            wait_for("the tracker's watches", lambda: len(mgmt.watches) == len(phases.WATCHED), 10, 0.01)
            wait_for("every cluster applied", lambda: len(mgmt.patches) >= len(indexes), 10, 0.01)
            for ns in play:
                for obj in lifecycle(ns):
                    mgmt.watches[obj["kind"]].push("ADDED", obj)

        player = threading.Thread(target=controllers, daemon=True)
        player.start()
        try:
            return session.create_clusters(settings, mgmt, indexes, [], display, **kw)  # type: ignore[arg-type]
        finally:
            player.join(timeout=15)

    display = Display()
    go.display = display  # type: ignore[attr-defined]
    go.settings = settings  # type: ignore[attr-defined]
    return go


def _ns(name: str, digest: str) -> dict[str, Any]:
    labels = {naming.CLUSTER_LABEL: name}
    meta = {"name": name, "labels": labels, "annotations": {create.DIGEST_ANNOTATION: digest}}
    return {"kind": "Namespace", "metadata": meta}


def test_a_run_converges_waits_and_records_only_what_it_created(run: Any) -> None:
    # test-1 exists, complete, but rendered by an older lab: converged again and followed, not timed
    mgmt = FakeMgmt({"Namespace": [_ns("test-1", "older")]})
    result = run(mgmt, [1, 2], ["test-1", "test-2"], parallel=2, timeout=30)
    assert result.as_dict()["new"] == ["test-2"] and result.as_dict()["unchanged"] == []
    assert result.as_dict()["finished"] == ["test-1"]  # stale: moved from complete to partial
    assert result.waited and result.done == ["test-1", "test-2"] and result.stuck == {}
    assert ("message", "1 existing cluster(s) render differently now: converging them") in run.display.seen
    assert run.display.seen[0] == ("planned", "1 new, 1 to finish") and ("update", (2, 2)) in run.display.seen
    assert sorted(p["metadata"]["name"] for p in mgmt.patches) == ["test-1", "test-2"]
    with records.open_records(run.settings) as db:
        [r] = db.runs()
        events = db.events(r.id)
        samples = db.samples(r.id)
        metric_samples = db.metric_samples(r.id)
    assert r.status == "ok"
    # the report's components table and bottleneck section: lab itself at least (no supervisor
    # here), its idle window included, and the metrics sampler's own rows
    assert len([s for s in samples if s.component == session.LAB_COMPONENT]) >= session.IDLE_SAMPLES
    assert metrics.SAMPLER_COMPONENT in {m.component for m in metric_samples}
    assert {e.cluster for e in events} == {"test-2"}
    assert [e.phase for e in events if e.phase is Phase.applied] == [Phase.applied]
    assert {e.phase for e in events} == {
        Phase.applied,
        Phase.bmh_provisioned,
        Phase.node_written,
        Phase.kcp_initialized,
        Phase.node_ref,
        Phase.kcp_available,
        Phase.cluster_available,
    }


def test_a_run_that_times_out_says_what_is_stuck(run: Any) -> None:
    mgmt = FakeMgmt()
    result = run(mgmt, [1, 2], ["test-1"], timeout=1.5)
    assert result.done == ["test-1"] and result.stuck == {"test-2": "waiting after applied: no nodeRef yet"}
    with records.open_records(run.settings) as db:
        assert db.runs()[0].status == "timeout"


def test_run_sampling_records_components_metrics_and_the_idle_window(
    lab_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The one way every recorded run (create/delete/scale/upgrade clusters, create/delete hosts)
    samples: both samplers write into that run, and idle() adds IDLE_SAMPLES resource samples."""
    settings = config.load()
    monkeypatch.setattr(session, "IDLE_INTERVAL", 0.01)
    monkeypatch.setattr(management, "for_settings", lambda _s: DeadMetrics())
    with records.open_records(settings) as db:
        other = db.start_run(RunKind.create, [], {})
        run_id = db.start_run(RunKind.scale, [], {})
        with session.RunSampling(settings, db, run_id) as sampling:
            before = len(db.samples(run_id))
            sampling.idle()
            during = len(db.samples(run_id))
        samples = db.samples(run_id)
        stored = db.metric_samples(run_id)
        assert db.samples(other) == [] and db.metric_samples(other) == []
    assert during - before >= session.IDLE_SAMPLES
    assert {s.component for s in samples} == {session.LAB_COMPONENT}
    assert all(s.rss_bytes > 0 for s in samples)
    assert {m.component for m in stored} == {metrics.SAMPLER_COMPONENT}
    assert "gone" in sampling.metrics.errors  # it did try the endpoint


def test_run_snapshot_carries_what_was_live_on_the_stack(
    lab_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every recorded run's settings (clusters and hosts) come from run_snapshot: the tuning profile
    (without it a report quotes upstream's default QPS), patched builds and the shard count."""
    settings = config.load()
    live = live_stack(monkeypatch, "seed", 3)
    snap = session.run_snapshot(settings, count=4, start=2)
    assert {k: snap[k] for k in live} == live
    assert (snap["count"], snap["start"], snap["prefix"]) == (4, 2, settings.prefix)
    # one KCP manager records no shards, as runs always did
    live_stack(monkeypatch, "high", 1)
    assert (
        "shards" not in session.run_snapshot(settings) and session.run_snapshot(settings)["tuning"] == "high"
    )


class HostsMgmt(FakeMgmt):
    """FakeMgmt with the hosts namespace present and no host in it (inventory.read's GET and LISTs,
    the hosts tracker's namespaced watch)."""

    def get(
        self, api_version: str, kind: str, name: str, namespace: str | None = None
    ) -> dict[str, Any] | None:
        return {"kind": kind, "metadata": {"name": name}} if kind == "Namespace" else None

    def list(self, api_version: str, kind: str, *_a: Any, **_kw: Any) -> list[dict[str, Any]]:
        return []

    def watch(self, api_version: str, kind: str, *_a: Any, **_kw: Any) -> Any:  # namespaced, as Client's
        return super().watch(api_version, kind)


class HostsDisplay:
    def planned(self, plan: Any) -> None: ...
    def update(self, counts: Any) -> None: ...


def test_a_hosts_run_records_the_tuning_profile_that_was_live(
    lab_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """create-hosts/delete-hosts runs recorded no tuning, so their reports quoted upstream's QPS for
    a stack tuned `high`. Here delete-hosts of an empty hosts namespace (one recorded run, no wait)."""
    from lab.hosts import delete as hosts_delete

    settings = config.load()
    live = live_stack(monkeypatch)
    monkeypatch.setattr(hosts_delete, "check_stack", lambda _mgmt: None)
    monkeypatch.setattr(management, "for_settings", lambda _s: DeadMetrics())
    result = hosts_delete.delete_hosts(settings, HostsMgmt(), None, HostsDisplay(), wait=False)  # type: ignore[arg-type]
    assert result.run_id is not None
    with records.open_records(settings) as db:
        run = db.run(result.run_id)
    assert run.kind is RunKind.delete_hosts and {k: run.settings.get(k) for k in live} == live
