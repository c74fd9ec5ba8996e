"""Worker hosts of a workload cluster (`--workers W`): W BareMetalHosts next to the control plane's
host-0 and a MachineDeployment of W replicas.

Control-plane and worker Machines must claim the right hosts: CAPM3 claims any available host its
Metal3Machine's hostSelector matches (an empty selector matches every host of the namespace), so a
control-plane Machine could otherwise take a worker host and leave a worker Machine with none. Every
host carries ROLE_LABEL and each Metal3MachineTemplate selects its role.

Capacity. Workers start no process on this host: each is objects in the management cluster (a
BareMetalHost, its Secret, a Machine, Metal3Machine, Metal3Data, KubeadmConfig and bootstrap Secret)
and one Node in the cluster's workload API, served by processes already running. So the host-limit
preflight of create-clusters (inotify, descriptors, memory per workload apiserver) does not change
with W. The bound is the address scheme: each worker slot has its own MAC octet and BMC subnet
(lab.naming.worker_mac), MAX_WORKERS of them.
"""

from __future__ import annotations

from typing import Any

from lab import naming
from lab.errors import UsageError

#: On a cluster's Namespace: the W it was created or last scaled with (absent: 0).
ANNOTATION = "scale-lab.metal3.io/workers"
#: On every cluster host: which Metal3MachineTemplate's Machines may claim it.
ROLE_LABEL = "scale-lab.metal3.io/host-role"
CONTROL_PLANE, WORKER = "control-plane", "worker"
MAX_WORKERS = naming.MAX_WORKER_SLOTS


def check_count(workers: int) -> int:
    """`workers` when lab can render that many worker hosts per cluster; else one UsageError."""
    if workers < 0:
        raise UsageError(f"--workers must be 0 or more, got {workers}")
    if workers > MAX_WORKERS:
        raise UsageError(
            f"--workers {workers} is past the capacity of {MAX_WORKERS} worker hosts per cluster "
            "(each worker slot has its own MAC octet and BMC subnet)"
        )
    return workers


def of_namespace(ns: dict[str, Any]) -> int:
    """The W an existing cluster was created or last scaled with, from its namespace (0: none)."""
    value = ((ns.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION, "0")
    return int(value) if isinstance(value, str) and value.isdigit() else 0


def selector(role: str) -> dict[str, Any]:
    """A Metal3MachineTemplate's hostSelector for hosts of `role`."""
    return {"matchLabels": {ROLE_LABEL: role}}


def role_of(bmh: dict[str, Any]) -> str | None:
    return ((bmh.get("metadata") or {}).get("labels") or {}).get(ROLE_LABEL)
