"""Phase derivation of `lab status` and delete: from namespaces and listed objects to phases."""

from __future__ import annotations

from typing import Any

import pytest

from lab import naming
from lab.clusters import inventory as inv

Obj = dict[str, Any]


def _ns(name: str, backing: str | None = None, deleting: bool = False) -> Obj:
    labels = {naming.CLUSTER_LABEL: name}
    if backing:
        labels[naming.BACKING_LABEL] = backing
    meta: Obj = {"name": name, "labels": labels}
    if deleting:
        meta["deletionTimestamp"] = "2026-11-21T19:00:00Z"
    return {"kind": "Namespace", "metadata": meta}


def _obj(kind: str, ns: str, name: str | None = None, status: Obj | None = None, **meta: Any) -> Obj:
    return {"kind": kind, "metadata": {"name": name or ns, "namespace": ns, **meta}, "status": status or {}}


def _cond(type_: str, status: str, reason: str = "", message: str = "") -> Obj:
    return {"conditions": [{"type": type_, "status": status, "reason": reason, "message": message}]}


CP = {"labels": {"cluster.x-k8s.io/control-plane": ""}}


def _one(**objs: Any) -> inv.ClusterInfo:
    [info] = inv.derive(
        "test",
        [objs.pop("ns", _ns("test-1"))],
        objs.get("clusters", []),
        objs.get("kcps", []),
        objs.get("machines", []),
        objs.get("hosts", []),
    )
    return info


def test_namespace_without_cluster_is_pending() -> None:
    info = _one()
    assert (info.name, info.index, info.backing, info.phase) == ("test-1", 1, "local", inv.PENDING)
    assert "create did not finish" in (info.reason or "")


def test_backing_comes_from_the_namespace_label() -> None:
    assert _one(ns=_ns("test-1", backing="vm1")).backing == "vm1"


@pytest.mark.parametrize(
    ("host_state", "phase"),
    [
        (None, inv.APPLIED),
        ("available", inv.APPLIED),
        ("provisioning", inv.PROVISIONING),
        ("provisioned", inv.PROVISIONED),
    ],
)
def test_host_state_moves_an_applied_cluster(host_state: str | None, phase: str) -> None:
    cluster = _obj("Cluster", "test-1", status=_cond("Available", "False", "NotReady", "waiting"))
    hosts = (
        []
        if host_state is None
        else [_obj("BareMetalHost", "test-1", "test-1-host-0", {"provisioning": {"state": host_state}})]
    )
    info = _one(clusters=[cluster], hosts=hosts)
    assert info.phase == phase
    if host_state == "available":
        assert info.reason == "BareMetalHost available"


def test_initialized_node_and_available_follow_kcp_machine_and_cluster() -> None:
    cluster = _obj("Cluster", "test-1", status=_cond("Available", "False", "Waiting", "for control plane"))
    host = _obj("BareMetalHost", "test-1", "test-1-host-0", {"provisioning": {"state": "provisioned"}})
    kcp = _obj("KubeadmControlPlane", "test-1", status={"initialization": {"controlPlaneInitialized": True}})
    assert _one(clusters=[cluster], hosts=[host], kcps=[kcp]).phase == inv.INITIALIZED

    machine = _obj("Machine", "test-1", "test-1-abcde", {"nodeRef": {"name": "test-1-abcde"}}, **CP)
    info = _one(clusters=[cluster], hosts=[host], kcps=[kcp], machines=[machine])
    assert info.phase == inv.NODE and info.reason == "KubeadmControlPlane no Available condition yet"

    worker = _obj("Machine", "test-1", "w", {"nodeRef": {"name": "w"}})  # no control-plane label
    assert _one(clusters=[cluster], hosts=[host], kcps=[kcp], machines=[worker]).phase == inv.INITIALIZED

    done = _obj("Cluster", "test-1", status=_cond("Available", "True"))
    info = _one(clusters=[done], hosts=[host], kcps=[kcp], machines=[machine])
    assert (info.phase, info.reason) == (inv.AVAILABLE, None)


def test_a_deletion_timestamp_wins_over_everything() -> None:
    done = _obj(
        "Cluster", "test-1", status=_cond("Available", "True"), deletionTimestamp="2026-11-21T19:00:00Z"
    )
    assert _one(clusters=[done]).phase == inv.DELETING
    info = _one(ns=_ns("test-1", deleting=True))
    assert (info.phase, info.reason) == (inv.DELETING, "namespace is being deleted")


def test_only_this_prefix_and_lab_named_objects_count() -> None:
    infos = inv.derive(
        "test",
        [_ns("test-10"), _ns("test-2"), _ns("other-1"), _ns("test-01")],
        [_obj("Cluster", "test-2", "not-lab", status=_cond("Available", "True"))],
    )
    assert [(i.name, i.phase) for i in infos] == [("test-2", inv.PENDING), ("test-10", inv.PENDING)]


def test_counts_by_phase_keep_every_phase_in_order() -> None:
    infos = [
        inv.ClusterInfo("test-1", 1, "local", inv.AVAILABLE),
        inv.ClusterInfo("test-2", 2, "local", inv.AVAILABLE),
    ]
    counts = inv.by_phase(infos)
    assert list(counts) == list(inv.ORDER)
    assert counts[inv.AVAILABLE] == 2 and sum(counts.values()) == 2
    assert inv.by_phase([]) == dict.fromkeys(inv.ORDER, 0)


def test_a_worker_host_never_stands_for_the_control_planes() -> None:
    from lab.manifests import workers

    cluster = _obj("Cluster", "test-1", status=_cond("Available", "False", "NotReady", "waiting"))
    cp = _obj("BareMetalHost", "test-1", "test-1-host-0", {"provisioning": {"state": "provisioning"}})
    worker = _obj(
        "BareMetalHost",
        "test-1",
        "test-1-host-1",
        {"provisioning": {"state": "available"}},
        labels={workers.ROLE_LABEL: workers.WORKER},
    )
    assert _one(clusters=[cluster], hosts=[cp, worker]).phase == inv.PROVISIONING
