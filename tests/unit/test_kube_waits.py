"""The pure rules behind lab.kube.waits (kubectl's `rollout status` and `wait --for=condition=Established`)
and kind mode's untaint; the watches themselves run against real apiservers in tests/e2e."""

from __future__ import annotations

from typing import Any

import pytest

from lab.errors import LabError
from lab.kindmgmt import cluster
from lab.kube import waits


def _deployment(generation: int = 2, want: int = 1, **status: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "m", "namespace": "ns", "generation": generation},
        "spec": {"replicas": want},
        "status": {"observedGeneration": 2, **status},
    }


@pytest.mark.parametrize(
    ("deployment", "done", "why"),
    [
        (_deployment(generation=3), False, "has not seen the latest spec"),
        (_deployment(updatedReplicas=0, replicas=1), False, "0 of 1 new replicas updated"),
        (_deployment(updatedReplicas=1, replicas=2, availableReplicas=1), False, "1 old replicas pending"),
        (_deployment(updatedReplicas=1, replicas=1, availableReplicas=0), False, "0 of 1 updated replicas"),
        (_deployment(updatedReplicas=1, replicas=1, availableReplicas=1), True, "rolled out"),
        (_deployment(want=0), True, "rolled out"),
    ],
)
def test_rollout_state_follows_kubectl(deployment: dict[str, Any], done: bool, why: str) -> None:
    got_done, got_why = waits.rollout_state(deployment)
    assert got_done is done and why in got_why


def test_a_stuck_rollout_is_one_error() -> None:
    stuck = _deployment(conditions=[{"type": "Progressing", "reason": "ProgressDeadlineExceeded"}])
    with pytest.raises(LabError, match="ns/m exceeded its progress deadline"):
        waits.rollout_state(stuck)


def test_established() -> None:
    assert waits.established({"status": {"conditions": [{"type": "Established", "status": "True"}]}})
    assert not waits.established({"status": {"conditions": [{"type": "Established", "status": "False"}]}})
    assert not waits.established({})


def test_untainted_drops_only_the_control_plane_noschedule_taint() -> None:
    cp = {"key": cluster.CONTROL_PLANE_TAINT, "effect": "NoSchedule"}
    other = {"key": "example.com/keep", "effect": "NoSchedule"}
    cp_noexec = {"key": cluster.CONTROL_PLANE_TAINT, "effect": "NoExecute"}
    assert cluster.untainted([cp, other, cp_noexec]) == [other, cp_noexec]
    assert cluster.untainted([other]) == [other]
