"""The managers' liveness and readiness probes in the kind management cluster, widened for small hosts.

Why: with the leader-election deadlines widened (lab.kindmgmt.lease), the 50-cluster kind benchmark
on this 2-vCPU host (load ~100) still restarted CAPI core and CABPK once each: "Liveness probe
failed: ... context deadline exceeded", exit 137. Their probes are upstream's 1 s timeout x 3
failures. BMO's own (2 s x 10) kept it alive through the same run. lab raises each probe to at least
a 10 s timeout and 6 failures, so a manager is restarted after about a minute without an answer, the
same minute of apiserver disruption the lease deadlines ride out. A value upstream already set
higher is kept.
"""

from __future__ import annotations

import copy
from typing import Any

from lab.tuning import CONTAINER_PATH

TIMEOUT_SECONDS, FAILURE_THRESHOLD = 10, 6
PROBES = ("livenessProbe", "readinessProbe")


def widened(probe: dict[str, Any]) -> dict[str, Any]:
    """The probe with timeoutSeconds and failureThreshold raised to lab's floor (Kubernetes'
    defaults, 1 and 3, when unset)."""
    out = dict(probe)
    out["timeoutSeconds"] = max(int(probe.get("timeoutSeconds", 1)), TIMEOUT_SECONDS)
    out["failureThreshold"] = max(int(probe.get("failureThreshold", 3)), FAILURE_THRESHOLD)
    return out


def patch_ops(container: dict[str, Any]) -> list[dict[str, Any]]:
    """JSON-patch ops for container 0's probes that are narrower than lab's; [] when none is."""
    ops: list[dict[str, Any]] = []
    for name in PROBES:
        probe = container.get(name)
        if probe is None:
            continue
        wider = widened(probe)
        if wider != probe:
            ops.append({"op": "replace", "path": f"{CONTAINER_PATH}/{name}", "value": wider})
    return ops


def widen(container: dict[str, Any]) -> dict[str, Any]:
    """A copy of the container with its probes widened (a probe it lacks stays absent)."""
    out = copy.deepcopy(container)
    for name in PROBES:
        if out.get(name) is not None:
            out[name] = widened(out[name])
    return out
