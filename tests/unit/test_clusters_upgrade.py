"""`lab upgrade-clusters` planning (pure): which clusters roll, which are done or resumed, and every
refusal before anything changes (missing cluster, workers, a version the table does not support
from the cluster's own, an upgrade to another version under way)."""

from __future__ import annotations

from typing import Any

import pytest

from lab import naming, versions
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
