"""lab.phases: what each watched object's status proves."""

from __future__ import annotations

from typing import Any

from lab.phases import WATCHED, blocking, cluster_of, observed
from lab.records import PHASES, Phase, RunKind


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
    driven = set(PHASES[RunKind.create]) - {Phase.applied, Phase.node_written}
    samples = [
        _obj("BareMetalHost", {"provisioning": {"state": "provisioned"}}),
        _obj("Machine", {"nodeRef": {"name": "n"}}, **{"cluster.x-k8s.io/control-plane": ""}),
        _obj(
            "KubeadmControlPlane",
            {"initialization": {"controlPlaneInitialized": True}, **_cond("Available", "True")},
        ),
        _obj("Cluster", _cond("Available", "True")),
    ]
    assert {s["kind"] for s in samples} == {k for _v, k in WATCHED}
    assert {p for s in samples for p in observed(s)} == driven
