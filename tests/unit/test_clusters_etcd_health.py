"""KCP's EtcdClusterHealthy as lab reports it (lab.clusters.etcd_health): the pure condition rules,
and one pass over a fake management cluster. The real write, on a real KCP whose controller runs,
is checked end to end (tests/e2e/test_cluster_available.py)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from support.fakes import FakeBacking, FakeMgmt

from lab import naming
from lab.clusters import etcd_health as eh
from lab.errors import LabError


def _kcp(
    ns: str, *, initialized: bool = True, cond: dict[str, Any] | None = None, generation: int = 1
) -> dict[str, Any]:
    status: dict[str, Any] = {"initialization": {"controlPlaneInitialized": initialized}}
    if cond is not None:
        status["conditions"] = [{"type": "Available", "status": "True"}, cond]
    return {
        "apiVersion": eh.KCP_API,
        "kind": "KubeadmControlPlane",
        "metadata": {"name": ns, "namespace": ns, "generation": generation},
        "status": status,
    }


def _ns(name: str, backing: str | None = None, deleting: bool = False) -> dict[str, Any]:
    labels = {naming.CLUSTER_LABEL: name}
    if backing:
        labels[naming.BACKING_LABEL] = backing
    meta: dict[str, Any] = {"name": name, "labels": labels}
    if deleting:
        meta["deletionTimestamp"] = "2026-11-30T00:00:00Z"
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": meta}


UNKNOWN = {
    "type": eh.CONDITION,
    "status": "Unknown",
    "reason": "InspectionFailed",
    "message": "Waiting for Cluster status.infrastructureReady to be true",
    "lastTransitionTime": "2026-11-30T10:00:00Z",
}


def test_healthy_condition_takes_kcp_reasons_and_moves_time_only_on_a_status_change() -> None:
    kcp = _kcp("test-1", cond=UNKNOWN, generation=3)
    c = eh.condition(None, kcp, "2026-11-30T12:00:00Z")
    assert c == {
        "type": "EtcdClusterHealthy",
        "status": "True",
        "reason": "Healthy",
        "message": "",
        "lastTransitionTime": "2026-11-30T12:00:00Z",
        "observedGeneration": 3,
    }
    again = eh.condition(None, _kcp("test-1", cond=c, generation=3), "2026-11-30T12:30:00Z")
    assert again["lastTransitionTime"] == "2026-11-30T12:00:00Z"
    assert not eh.stale(_kcp("test-1", cond=c, generation=3), again)
    sick = eh.condition(
        "etcd refused tenant test-1: permission denied", _kcp("test-1", cond=c), "2026-11-30T13:00:00Z"
    )
    assert (sick["status"], sick["reason"], sick["lastTransitionTime"]) == (
        "False",
        "NotHealthy",
        "2026-11-30T13:00:00Z",
    )
    assert "permission denied" in sick["message"]


def test_stale_compares_what_a_user_reads_not_the_time() -> None:
    want = eh.condition(None, _kcp("a"), "2026-11-30T12:00:00Z")
    assert eh.stale(_kcp("a"), want)  # no condition yet
    assert eh.stale(_kcp("a", cond=UNKNOWN), want)
    shown = {**want, "lastTransitionTime": "2026-11-30T09:00:00Z"}
    assert not eh.stale(_kcp("a", cond=shown), want)
    assert eh.stale(_kcp("a", cond=shown, generation=2), eh.condition(None, _kcp("a", generation=2), "t"))


def _judge(backings: Mapping[str, FakeBacking]) -> eh.Judge:
    def judge(name: str, names: Sequence[str]) -> Mapping[str, str | None]:
        return backings[name].tenant_health(names)

    return judge


def test_one_pass_writes_only_initialized_live_lab_kcps_whose_condition_differs() -> None:
    healthy_already = eh.condition(None, _kcp("test-4"), "2026-11-30T11:00:00Z")
    mgmt = FakeMgmt(
        {
            "Namespace": [
                _ns("test-1"),
                _ns("test-2", "kind-a"),
                _ns("test-3"),  # not initialized yet: KCP sets the condition itself
                _ns("test-4"),  # already right: no write
                _ns("test-5", deleting=True),
            ],
            "KubeadmControlPlane": [
                _kcp("test-1", cond=UNKNOWN),
                _kcp("test-2", cond=UNKNOWN),
                _kcp("test-3", initialized=False, cond=UNKNOWN),
                _kcp("test-4", cond=healthy_already),
                _kcp("test-5", cond=UNKNOWN),
                _kcp("other", cond=UNKNOWN),  # not a lab namespace
            ],
        }
    )
    local = FakeBacking("local", carries=["test-1", "test-3", "test-4", "test-5"])
    kind = FakeBacking("kind-a", carries=["test-2"])
    kind.sick["test-2"] = "etcd refused tenant test-2's certificate: TLS handshake failed"
    verdicts = eh.report(mgmt, _judge({"local": local, "kind-a": kind}))
    assert verdicts == {"test-1": None, "test-4": None, "test-2": kind.sick["test-2"]}
    assert ("local", "tenant_health", ["test-1", "test-4"]) in local.log
    assert ("kind-a", "tenant_health", ["test-2"]) in kind.log
    patched = sorted(path for method, path, _ in mgmt.calls if method == "PATCH")
    assert patched == [
        f"/api/v1/namespaces/{n}/kubeadmcontrolplanes/{n}/status" for n in ("test-1", "test-2")
    ], mgmt.calls


def test_a_backing_that_cannot_be_judged_leaves_its_clusters_alone() -> None:
    mgmt = FakeMgmt({"Namespace": [_ns("test-1")], "KubeadmControlPlane": [_kcp("test-1", cond=UNKNOWN)]})

    def judge(name: str, names: Sequence[str]) -> Mapping[str, str | None]:
        raise LabError("backing local: etcd not answering")

    assert eh.report(mgmt, judge) == {}
    assert [c for c in mgmt.calls if c[0] == "PATCH"] == []
