"""`lab upgrade-clusters` planning (pure): which clusters roll, which are done or resumed, and every
refusal before anything changes (missing cluster, workers, a version the table does not support
from the cluster's own, an upgrade to another version under way)."""

from __future__ import annotations

from typing import Any

import pytest
from support import fakes

from lab import naming, phases, versions
from lab.clusters.upgrade import plan_upgrade
from lab.errors import LabError, UsageError
from lab.manifests import controlplane, workers
from lab.manifests.controlplane import ControlPlane

Obj = dict[str, Any]
CAPI = versions.COMPONENTS["capi"].default


def _ns(index: int, cp: ControlPlane = ControlPlane(), n_workers: int = 0) -> Obj:
    annotations = cp.annotations()
    if n_workers:
        annotations[workers.ANNOTATION] = str(n_workers)
    meta: Obj = {
        "name": f"test-{index}",
        "labels": {naming.CLUSTER_LABEL: f"test-{index}", naming.BACKING_LABEL: "local"},
        "annotations": annotations,
    }
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": meta}


def _kcp(index: int, spec: str, status: str | None = None) -> Obj:
    return {
        "metadata": {"name": f"test-{index}"},
        "spec": {"version": spec},
        "status": {"version": status or spec},
    }


def test_plan_rolls_new_ones_resumes_interrupted_ones_and_skips_upgraded_ones() -> None:
    namespaces = {
        1: _ns(1),
        2: _ns(2, ControlPlane("v1.36.0", (0, 1))),  # interrupted mid-rollout
        3: _ns(3, ControlPlane("v1.36.0", (1,))),  # done
        4: _ns(4, ControlPlane("v1.36.0", (1,))),  # settled, KCP status not there yet
    }
    kcps = {
        "test-1": _kcp(1, "v1.35.4"),
        "test-2": _kcp(2, "v1.36.0", "v1.35.4"),
        "test-3": _kcp(3, "v1.36.0"),
        "test-4": _kcp(4, "v1.36.0", "v1.35.4"),
    }
    plan = plan_upgrade("test", "v1.36.0", CAPI, None, namespaces, kcps)
    assert plan.todo == [1, 2, 4] and plan.done == {3}
    assert plan.rolled(1) == ControlPlane("v1.36.0", (0, 1))
    assert plan.rolled(2) == ControlPlane("v1.36.0", (0, 1))  # as it was: never a third host
    assert plan.rolled(4) == ControlPlane("v1.36.0", (1,))
    assert plan.summary() == "1 to upgrade to v1.36.0, 2 to finish, 1 already at v1.36.0"
    # the next upgrade of an upgraded cluster goes back to slot 0
    again = plan_upgrade("test", "v1.36.1", CAPI, [3], namespaces, kcps)
    assert again.rolled(3) == ControlPlane("v1.36.1", (1, 0))


@pytest.mark.parametrize(
    ("indexes", "namespaces", "kcps", "error", "says"),
    [
        ([1, 2], {1: _ns(1)}, {"test-1": _kcp(1, "v1.35.4")}, LabError, "1 of the clusters do not exist (test-2 first)"),
        (None, {}, {}, LabError, "no clusters to upgrade"),
        ([1], {1: _ns(1, n_workers=2)}, {"test-1": _kcp(1, "v1.35.4")}, LabError, "have workers"),
        ([1], {1: _ns(1)}, {}, LabError, "test-1 has no KubeadmControlPlane yet"),
        ([1], {1: _ns(1, ControlPlane("v1.35.5", (0, 1)))}, {"test-1": _kcp(1, "v1.35.5")}, LabError,
         "test-1 is being upgraded to v1.35.5: finish that first"),
        ([1], {1: _ns(1, ControlPlane("v1.36.2", (1,)))}, {"test-1": _kcp(1, "v1.36.2")}, UsageError,
         "test-1 at v1.36.2: --to v1.36.0 is not newer than v1.36.2"),
    ],
)  # fmt: skip
def test_refusals_name_the_cluster_and_why(
    indexes: list[int] | None,
    namespaces: dict[int, Obj],
    kcps: dict[str, Obj],
    error: type[LabError],
    says: str,
) -> None:
    with pytest.raises(error) as e:
        plan_upgrade("test", "v1.36.0", CAPI, indexes, namespaces, kcps)
    assert says in str(e.value) and "\n" not in str(e.value)


def test_the_namespace_notes_what_the_plan_reads() -> None:
    ns = _ns(5, ControlPlane("v1.36.0", (0, 1)))
    assert controlplane.of_namespace(ns).rolling


# --- the rollout as lab follows it, pass by pass, against fakes of what the controllers write -------


def _cp_host(ns: str, slot: int, state: str, consumer: bool, written: bool = False) -> Obj:
    name = f"{ns}-host-0" if slot == 0 else f"{ns}-host-cp{slot}"
    meta: Obj = {"name": name, "namespace": ns, "labels": {workers.ROLE_LABEL: workers.CONTROL_PLANE}}
    if written:
        meta["annotations"] = {phases.NODE_WRITTEN_ANNOTATION: fakes.WRITTEN}
    spec: Obj = {"bmc": {"credentialsName": f"{name}-bmc-secret"}}
    if consumer:
        spec["consumerRef"] = {"kind": "Metal3Machine", "name": "m"}
    return {
        "kind": "BareMetalHost",
        "metadata": meta,
        "spec": spec,
        "status": {"provisioning": {"state": state}},
    }


def _machine(ns: str, name: str, version: str, node: str | None) -> Obj:
    m = fakes.machine(ns, node)
    m["metadata"]["name"] = name
    m["spec"] = {"version": version}
    return m


def test_the_upgrader_follows_kcps_rollout_deletes_the_old_host_and_settles(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lab.clusters.tracker import Tracker
    from lab.clusters.upgrade import Upgrader
    from lab.config import Settings
    from lab.phases import PHASES, Phase, RunKind

    ns = "test-7"
    settings = Settings(home=tmp_path)
    namespaces = {7: _ns(7)}
    kcp = fakes.kcp(ns)
    kcp["spec"] = {"version": "v1.35.4"}
    kcp["status"]["version"] = "v1.35.4"
    plan = plan_upgrade("test", "v1.36.0", CAPI, [7], namespaces, {ns: kcp})
    mgmt = fakes.FakeMgmt()
    tracker = Tracker(mgmt, "test", {ns: 7}, phases=PHASES[RunKind.upgrade])  # type: ignore[arg-type]
    up = Upgrader(settings, mgmt, plan, tracker, namespaces, parallel=2)  # type: ignore[arg-type]
    up._backings["local"] = fakes.FakeBacking("local")
    collected: list[str] = []
    monkeypatch.setattr(Upgrader, "_collect", lambda self, c: collected.append(c.name) or True)

    up.apply()
    applied = [e for e in mgmt.log if e[1] == "apply"]
    hosts_applied = [n for k, n in applied[-1][2] if k == "BareMetalHost"]
    assert hosts_applied == ["test-7-host-0", "test-7-host-cp1"]
    assert ("KubeadmControlPlane", ns) in applied[-1][2]

    def state(hosts: list[Obj], machines: list[Obj], kcp_version: str = "v1.35.4") -> None:
        k = fakes.kcp(ns)
        k["status"]["version"] = kcp_version
        mgmt.objects = {
            "BareMetalHost": hosts,
            "Machine": machines,
            "KubeadmControlPlane": [k],
            "Cluster": [fakes.cluster(ns)],
        }

    old = _machine(ns, "test-7-old", "v1.35.4", "test-7-old")
    new = _machine(ns, "test-7-new", "v1.36.0", "test-7-new")
    state([_cp_host(ns, 0, "provisioned", True), _cp_host(ns, 1, "inspecting", False)], [old])
    assert up.pass_() == set() and up.clusters[ns].hold == "spare host test-7-host-cp1 inspecting"
    state(
        [_cp_host(ns, 0, "provisioned", True), _cp_host(ns, 1, "provisioned", True, written=True)], [old, new]
    )
    assert up.pass_() == set() and "has not deleted the old Machine test-7-old" in up.clusters[ns].hold
    # KCP deleted the old Machine; BMO is still deprovisioning its host: lab waits
    state(
        [_cp_host(ns, 0, "deprovisioning", True), _cp_host(ns, 1, "provisioned", True, written=True)], [new]
    )
    assert up.pass_() == set() and "test-7-host-0 deprovisioning" in up.clusters[ns].hold
    assert not [c for c in mgmt.calls if c[0] == "BareMetalHost"]
    # available, no consumer: lab deletes it and its secret
    state([_cp_host(ns, 0, "available", False), _cp_host(ns, 1, "provisioned", True, written=True)], [new])
    assert up.pass_() == set()
    assert ("BareMetalHost", "test-7-host-0", ns) in mgmt.calls
    assert ("Secret", "test-7-host-0-bmc-secret", ns) in mgmt.calls
    # gone: the cluster is applied again with the spare only, noted on its namespace
    state([_cp_host(ns, 1, "provisioned", True, written=True)], [new])
    assert up.pass_() == set() and up.clusters[ns].settled
    last = [e for e in mgmt.log if e[1] == "apply"]
    assert [n for k, n in last[-1][2] if k == "BareMetalHost"] == ["test-7-host-cp1"]
    settled_ns = [e for e in mgmt.log if e[1] == "apply" and e[2] and e[2][0][0] == "Namespace"]
    assert settled_ns
    # KCP's status follows: upgraded, every phase recorded once, in order
    state([_cp_host(ns, 1, "provisioned", True, written=True)], [new], kcp_version="v1.36.0")
    assert up.pass_() == {ns}
    assert tracker.state[ns].reached == set(PHASES[RunKind.upgrade])
    assert Phase.cluster_upgraded in tracker.state[ns].reached and collected
    assert up.pass_() == set()  # not looked at again


def test_an_upgrade_run_is_sampled_and_records_the_stack_as_create_s_is(
    lab_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """upgrade_clusters' recorded run carries resource samples (the idle window included once
    every cluster is upgraded) and metric samples, so its report has a components table and a
    bottleneck section. The rollout itself (Upgrader.apply/wait) is the test above's: here it
    applies nothing and finds every cluster upgraded."""
    from lab import config, management, metrics, records
    from lab.clusters import create, session, upgrade
    from lab.phases import RunKind

    settings = config.load()
    ns = "test-7"
    kcp = fakes.kcp(ns)
    kcp["spec"] = {"version": "v1.35.4"}
    kcp["status"]["version"] = "v1.35.4"
    mgmt = fakes.FakeMgmt({"Namespace": [_ns(7)], "KubeadmControlPlane": [kcp]})
    monkeypatch.setattr(create, "check_stack", lambda _mgmt: None)
    monkeypatch.setattr(upgrade.Upgrader, "apply", lambda self: None)
    monkeypatch.setattr(upgrade.Upgrader, "wait", lambda self, deadline: {})
    monkeypatch.setattr(session, "IDLE_INTERVAL", 0.01)
    monkeypatch.setattr(management, "for_settings", lambda _s: fakes.DeadMetrics())
    live = fakes.live_stack(monkeypatch)
    result = upgrade.upgrade_clusters(settings, mgmt, [7], "v1.36.0", timeout=30)  # type: ignore[arg-type]
    assert result.run is not None and result.done == [ns] and result.stuck == {}
    with records.open_records(settings) as db:
        run = db.run(result.run)
        samples = db.samples(run.id)
        stored = db.metric_samples(run.id)
    assert run.kind is RunKind.upgrade and run.status == "ok" and run.settings["to"] == "v1.36.0"
    assert {k: run.settings.get(k) for k in live} == live  # tuning, shards, patched: as create's run
    assert len([s for s in samples if s.component == session.LAB_COMPONENT]) >= session.IDLE_SAMPLES
    assert metrics.SAMPLER_COMPONENT in {m.component for m in stored}
