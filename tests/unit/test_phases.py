"""lab.phases: what each watched object's status proves."""

from __future__ import annotations

from typing import Any

from lab.manifests import workers
from lab.phases import (
    NODE_WRITTEN_ANNOTATION,
    PHASES,
    WATCHED,
    Phase,
    RunKind,
    blocking,
    cluster_of,
    format_timestamp,
    node_written_at,
    observed,
    run_phases,
)


def _obj(kind: str, status: dict[str, Any], ns: str = "test-7", **labels: str) -> dict[str, Any]:
    return {"kind": kind, "metadata": {"name": "x", "namespace": ns, "labels": labels}, "status": status}


def _cond(type_: str, status: str, reason: str = "", message: str = "") -> dict[str, Any]:
    return {
        "conditions": [
            {"type": "Ready", "status": "False"},
            {"type": type_, "status": status, "reason": reason, "message": message},
        ]
    }


def test_bmh_provisioned_only_in_that_state() -> None:
    assert observed(_obj("BareMetalHost", {"provisioning": {"state": "provisioning"}})) == []
    assert observed(_obj("BareMetalHost", {"provisioning": {"state": "provisioned"}})) == [
        Phase.bmh_provisioned
    ]
    assert observed(_obj("BareMetalHost", {})) == []


def _written(value: str, state: str = "provisioned") -> dict[str, Any]:
    bmh = _obj("BareMetalHost", {"provisioning": {"state": state}})
    bmh["metadata"]["annotations"] = {NODE_WRITTEN_ANNOTATION: value}
    return bmh


def test_node_written_is_read_from_the_simulators_annotation() -> None:
    bmh = _written("2026-11-21T19:30:01.123Z")
    assert observed(bmh) == [Phase.bmh_provisioned, Phase.node_written]
    assert node_written_at(bmh) == 1795289401.123
    assert node_written_at(_obj("BareMetalHost", {})) is None
    for bad in ("", "yesterday", "2026-11-21T19:30:01"):  # no zone: not a measurement
        assert node_written_at(_written(bad)) is None
        assert observed(_written(bad)) == [Phase.bmh_provisioned]


def test_format_timestamp_is_rfc3339_utc_with_milliseconds_and_round_trips() -> None:
    assert format_timestamp(1795289401.123456) == "2026-11-21T19:30:01.123Z"
    assert format_timestamp(1795289401.0) == "2026-11-21T19:30:01.000Z"
    assert node_written_at(_written(format_timestamp(1795289401.5))) == 1795289401.5


def test_node_ref_only_for_control_plane_machines() -> None:
    ref = {"nodeRef": {"name": "test-7-abcde"}}
    assert observed(_obj("Machine", ref, **{"cluster.x-k8s.io/control-plane": ""})) == [Phase.node_ref]
    assert observed(_obj("Machine", ref)) == []  # a worker
    assert observed(_obj("Machine", {}, **{"cluster.x-k8s.io/control-plane": ""})) == []


def test_kcp_initialized_and_available() -> None:
    init = {"initialization": {"controlPlaneInitialized": True}}
    assert observed(_obj("KubeadmControlPlane", init)) == [Phase.kcp_initialized]
    both = {**init, **_cond("Available", "True")}
    assert observed(_obj("KubeadmControlPlane", both)) == [Phase.kcp_initialized, Phase.kcp_available]
    assert observed(_obj("KubeadmControlPlane", _cond("Available", "False"))) == []


def test_cluster_available_and_what_blocks_it() -> None:
    stuck = _obj("Cluster", _cond("Available", "False", "NotAvailable", "* ControlPlaneAvailable: not yet"))
    assert observed(stuck) == []
    assert blocking(stuck) == "Available=False NotAvailable: * ControlPlaneAvailable: not yet"
    assert blocking(_obj("Cluster", {})) == "no Available condition yet"
    done = _obj("Cluster", _cond("Available", "True"))
    assert observed(done) == [Phase.cluster_available] and blocking(done) is None


def test_cluster_of_reads_the_namespace() -> None:
    assert cluster_of(_obj("Machine", {}, ns="test-42"), "test") == ("test-42", 42)
    assert cluster_of(_obj("Machine", {}, ns="kube-system"), "test") is None
    assert cluster_of({"kind": "Namespace", "metadata": {"name": "test-1"}}, "test") is None


def test_every_controller_driven_create_phase_has_a_watched_kind() -> None:
    """With workers: workers_provisioned and workers_written add hosts up (lab.clusters.tracker)."""
    driven = set(run_phases(RunKind.create, {"workers": 2})) - {
        Phase.applied,
        Phase.workers_provisioned,
        Phase.workers_written,
    }
    samples = [
        _written("2026-11-21T19:30:01.123Z"),
        _obj("Machine", {"nodeRef": {"name": "n"}}, **{"cluster.x-k8s.io/control-plane": ""}),
        _obj(
            "KubeadmControlPlane",
            {"initialization": {"controlPlaneInitialized": True}, **_cond("Available", "True")},
        ),
        _obj("Cluster", _cond("Available", "True")),
        _md(2, 2, "True"),
    ]
    assert {s["kind"] for s in samples} == {k for _v, k in WATCHED}
    assert {p for s in samples for p in observed(s)} == driven


def _md(want: int, available: int, cond: str, replicas: int | None = None) -> dict[str, Any]:
    md = _obj(
        "MachineDeployment",
        {
            "availableReplicas": available,
            "replicas": available if replicas is None else replicas,
            **_cond("Available", cond),
        },
    )
    md["spec"] = {"replicas": want}
    return md


def test_machine_deployment_is_available_with_all_w_replicas_and_no_surplus() -> None:
    assert observed(_md(2, 2, "True")) == [Phase.md_available]
    assert observed(_md(2, 1, "True")) == []
    assert observed(_md(2, 2, "False")) == []
    assert observed(_md(1, 1, "True", replicas=2)) == []  # scaling down: a surplus Machine is left
    assert observed(_md(0, 0, "True")) == []  # no workers: nothing to time


def test_worker_hosts_never_show_the_control_planes_phases() -> None:
    host = _written("2026-11-21T19:30:01.123Z")
    assert observed(host) == [Phase.bmh_provisioned, Phase.node_written]
    host["metadata"]["labels"] = {workers.ROLE_LABEL: workers.WORKER}
    assert observed(host) == []


def test_run_phases_of_workers_and_scale_runs() -> None:
    create = PHASES[RunKind.create]
    assert run_phases(RunKind.create, {}) == run_phases(RunKind.create, {"workers": 0}) == create
    with_workers = run_phases(RunKind.create, {"workers": 3})
    assert with_workers[-1] == Phase.cluster_available  # Cluster Available waits for WorkersAvailable
    assert with_workers[-4:-1] == (Phase.workers_provisioned, Phase.workers_written, Phase.md_available)
    assert run_phases(RunKind.scale, {"direction": "up"})[-1] == Phase.md_available
    assert run_phases(RunKind.scale, {"direction": "down"}) == (
        Phase.scale_applied,
        Phase.workers_removed,
        Phase.hosts_removed,
    )


def test_a_create_run_with_workers_measures_the_first_worker_step_from_kcp_initialized() -> None:
    from lab.phases import previous

    order = run_phases(RunKind.create, {"workers": 1})
    assert previous(Phase.workers_provisioned, order) == Phase.kcp_initialized
    assert previous(Phase.workers_written, order) == Phase.workers_provisioned
    assert (
        previous(Phase.workers_provisioned, run_phases(RunKind.scale, {"direction": "up"}))
        == Phase.scale_applied
    )
    assert previous(Phase.applied, order) is None
