"""`lab scale-clusters` planning (pure) and create's refusal of another --workers: which clusters go
up or down, which hosts are surplus, and bad input refused before anything changes."""

from __future__ import annotations

from typing import Any

import pytest
from support.fakes import DeadMetrics, FakeMgmt, live_stack

from lab import config, management, metrics, naming, records
from lab.clusters import create, scale, session
from lab.clusters.scale import plan_scale
from lab.errors import LabError, UsageError
from lab.manifests import workers
from lab.phases import Phase, RunKind

Obj = dict[str, Any]


def _ns(index: int, n_workers: int = 0, backing: str = "local") -> Obj:
    meta: Obj = {
        "name": f"test-{index}",
        "labels": {naming.CLUSTER_LABEL: f"test-{index}", naming.BACKING_LABEL: backing},
    }
    if n_workers:
        meta["annotations"] = {workers.ANNOTATION: str(n_workers)}
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": meta}


def _host(cluster: str, slot: int) -> Obj:
    return {"metadata": {"name": f"{cluster}-host-{slot}", "namespace": cluster}}


def test_plan_splits_up_down_and_unchanged_and_finds_the_surplus_hosts() -> None:
    namespaces = {1: _ns(1, 0), 2: _ns(2, 2), 3: _ns(3, 1, "mux"), 4: _ns(4, 1)}
    hosts = [
        _host("test-2", 1),
        _host("test-2", 2),
        _host("test-3", 1),
        _host("test-4", 1),
        _host("test-4", 2),
    ]
    plan = plan_scale("test", 1, None, namespaces, hosts)
    assert plan.up == [1] and plan.down == [2, 4] and plan.unchanged == [3]
    # test-4 says 1 but still has host-2: an interrupted scale-down, finished by this one
    assert plan.surplus == {2: ["test-2-host-2"], 4: ["test-4-host-2"]}
    assert plan.placement[3] == "mux" and plan.summary() == "1 up, 2 down, 1 already at 1 workers"
    assert plan_scale("test", 0, [2], namespaces, hosts).surplus == {2: ["test-2-host-1", "test-2-host-2"]}


def test_plan_refuses_missing_clusters_and_bad_counts_before_anything() -> None:
    namespaces = {1: _ns(1)}
    with pytest.raises(LabError, match=r"1 of the clusters do not exist \(test-2 first\)"):
        plan_scale("test", 1, [1, 2], namespaces, [])
    with pytest.raises(LabError, match="no clusters to scale"):
        plan_scale("test", 1, None, {}, [])
    with pytest.raises(UsageError, match="past the capacity"):
        plan_scale("test", workers.MAX_WORKERS + 1, [1], namespaces, [])


def test_create_refuses_existing_clusters_of_another_worker_count(
    lab_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An apply never deletes: converging to fewer workers would leave hosts behind."""
    settings = config.load()
    monkeypatch.setattr(create, "open_all", lambda _s, names: {})
    mgmt = FakeMgmt({"Namespace": [_ns(1, 2)]})
    with pytest.raises(
        LabError, match=r"test-1 first\) have --workers 2, not 0: change it with lab scale-clusters"
    ):
        create.make_plan(settings, mgmt, [1], [])  # type: ignore[arg-type]
    with pytest.raises(LabError, match="have --workers 2, not 3"):
        create.make_plan(settings, mgmt, [1], [], 0, 3)  # type: ignore[arg-type]


def test_a_scale_run_is_sampled_and_records_the_stack_as_create_s_is(
    lab_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A scale-down whose Machines are already gone (no Machine, no surplus host in the LISTs) is
    done on its first pass; its run carries resource samples, the idle window included, and metric
    samples, so its report has a components table and a bottleneck section. Create's convergence
    (scale._creators) is create's, tested there: here it applies nothing."""
    settings = config.load()
    monkeypatch.setattr(create, "check_stack", lambda _mgmt: None)
    monkeypatch.setattr(scale, "_creators", lambda *_a: [])
    monkeypatch.setattr(session, "IDLE_INTERVAL", 0.01)
    monkeypatch.setattr(management, "for_settings", lambda _s: DeadMetrics())
    live = live_stack(monkeypatch)
    mgmt = FakeMgmt({"Namespace": [_ns(1, 1)]})
    result = scale.scale_clusters(settings, mgmt, [1], 0, timeout=30)  # type: ignore[arg-type]
    assert result.done == ["test-1"] and result.stuck == {} and list(result.runs) == ["down"]
    with records.open_records(settings) as db:
        run = db.run(result.runs["down"])
        events = db.events(run.id)
        samples = db.samples(run.id)
        stored = db.metric_samples(run.id)
    assert run.kind is RunKind.scale and run.status == "ok" and run.settings["direction"] == "down"
    # what was live, as create's run records it: the report's client QPS, shards and patched builds
    assert {k: run.settings.get(k) for k in live} == live
    assert {e.phase for e in events} == {Phase.workers_removed, Phase.hosts_removed}
    assert len([s for s in samples if s.component == session.LAB_COMPONENT]) >= session.IDLE_SAMPLES
    assert metrics.SAMPLER_COMPONENT in {m.component for m in stored}
