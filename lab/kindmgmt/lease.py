"""Leader-election deadlines of the managers in the kind management cluster, widened for small hosts.

Why: the managers clusterctl and BMO's config install run with leader election on, and a manager
that cannot renew its Lease within the renew deadline exits. On this 2-vCPU host, 50 clusters
created against a 3-node kind management cluster drove the load to 85; CAPI core (15 s lease /
10 s renew upstream) restarted 7 times, BMO 5, CABPK 3, KCP (60 s / 40 s) once, and while BMO was
down its webhook refused lab's apply: 0 of 50 clusters Available after 546 s
(benchmarks/kind_vs_local.py, issue 11's closing note of stop 21). The local stack has no such
failure because it runs every manager with leader election off.

Leader election stays on (one replica each, but a rollout briefly runs two pods); only its
deadlines change, to the values OpenShift's library-go uses for every operator lease
(pkg/config/leaderelection: 137 s lease, 107 s renew deadline, 26 s retry), chosen there to ride
out 60 s of kube-apiserver disruption without a restart. client-go requires lease > renew >
1.2 x retry: 137 > 107 > 31.2.

The cost of a long lease is the handover: the CAPI managers and CAPM3 do not release their Lease
when they stop, so after a rollout (`lab tune`) the new pod would wait out the old pod's 137 s.
`release_stale` deletes a Lease whose holder pod is gone, which is what an operator would do.

With them, the same 50-cluster run (load ~100) lost no lease: 46 of 50 clusters Available, the
other 4 held by KCP's cleanup after an etcd timeout (stop 22's closing note).

CAPM3 as clusterctl installs v1.13.2 runs without leader election (its manager.yaml passes no
--leader-elect), so it gets none of these flags. IPAM v1.13.2 has no flags for its deadlines
(controller-runtime's 15 s / 10 s / 2 s stay); it idles in lab's clusters (no IP pools) and did not
restart in either run.
"""

from __future__ import annotations

import time
from typing import Any

from lab import tuning
from lab.config import Settings
from lab.kube.client import Client
from lab.kube.errors import ApiError, NotFound

LEASE_SECONDS, RENEW_SECONDS, RETRY_SECONDS = 137, 107, 26

#: The three CAPI managers and CAPM3 (pflag durations), read from each main.go at the pinned
#: versions (CAPI v1.13.6, CAPM3 v1.13.2).
_PFLAG = (
    f"--leader-elect-lease-duration={LEASE_SECONDS}s",
    f"--leader-elect-renew-deadline={RENEW_SECONDS}s",
    f"--leader-elect-retry-period={RETRY_SECONDS}s",
)
#: BMO's Go flags are whole seconds (main.go of v0.13.2; absent from v0.6.0).
_BMO = (
    f"--lease-duration-seconds={LEASE_SECONDS}",
    f"--renew-deadline-seconds={RENEW_SECONDS}",
    f"--retry-period-seconds={RETRY_SECONDS}",
)

#: component -> (oldest minor seen with these flags, the flags). An older configured version gets
#: none, because an unknown flag stops a manager at start-up.
FLAGS: dict[str, tuple[tuple[int, int], tuple[str, ...]]] = {
    "capi-manager": ((1, 5), _PFLAG),
    "kcp-manager": ((1, 5), _PFLAG),
    "cabpk-manager": ((1, 5), _PFLAG),
    "capm3-manager": ((1, 13), _PFLAG),
    "bmo-manager": ((0, 13), _BMO),
}


#: the flag that turns a manager's leader election on (pflag/Go bool: bare, or =true/=false)
ENABLE_FLAG: dict[str, str] = {"bmo-manager": "enable-leader-election"}


def leads(component: str, args: list[str]) -> bool:
    """Whether these args turn leader election on (the last occurrence wins, as in pflag). CAPM3's
    config/manager/manager.yaml at v1.13.2 passes no --leader-elect, so it runs without it."""
    name, on = ENABLE_FLAG.get(component, "leader-elect"), False
    for arg in args:
        flag, eq, value = arg.lstrip("-").partition("=")
        if arg.startswith("-") and flag == name:
            on = not eq or value.lower() in ("true", "1", "t")
    return on


def flags(settings: Settings, component: str) -> list[str]:
    """The deadline flags for one manager at its configured version ([] when too old to have them)."""
    since, values = FLAGS[component]
    return list(values) if settings.versions.minor(tuning.COMPONENTS[component]) >= since else []


def widen(settings: Settings, component: str, args: list[str]) -> list[str]:
    """args with this manager's deadline flags set (replacing earlier values, never duplicating);
    unchanged for a manager that runs without leader election."""
    return tuning.merge_args(args, flags(settings, component)) if leads(component, args) else args


#: component -> its Lease (LeaderElectionID in main.go) in the manager's namespace. These managers do
#: not release the Lease when they stop (no LeaderElectionReleaseOnCancel), so after a rollout the new
#: pod would wait out the old pod's 137 s. BMO releases it (main.go of v0.13.2) and is absent.
LEASES: dict[str, str] = {
    "capi-manager": "controller-leader-election-capi",
    "kcp-manager": "kubeadm-control-plane-manager-leader-election-capi",
    "cabpk-manager": "kubeadm-bootstrap-manager-leader-election-capi",
    "capm3-manager": "controller-leader-election-capm3",
}

#: the managers' terminationGracePeriodSeconds is 10 (config/manager/manager.yaml); twice that and a margin
HOLDER_GONE_TIMEOUT = 30.0


def holder_pod(lease: dict[str, Any]) -> str | None:
    """The pod holding a Lease: controller-runtime's identity is `<hostname>_<uuid>`, and a pod's
    hostname is its name."""
    holder = (lease.get("spec") or {}).get("holderIdentity") or ""
    return holder.rsplit("_", 1)[0] if "_" in holder else None


def release_stale(
    client: Client, component: str, namespace: str, timeout: float = HOLDER_GONE_TIMEOUT
) -> bool:
    """After a rollout: once the pod holding this manager's Lease is gone, delete the Lease so the new
    pod leads within one retry period (26 s) instead of the lease's 137 s. Safe: a deleted pod
    reconciles nothing, and a Lease that changed hands meanwhile fails the resourceVersion
    precondition. True when a Lease was deleted."""
    name = LEASES.get(component)
    if name is None:
        return False
    deadline = time.monotonic() + timeout
    while True:
        lease_obj = client.get("coordination.k8s.io/v1", "Lease", name, namespace)
        pod = holder_pod(lease_obj) if lease_obj else None
        if lease_obj is None or pod is None:
            return False
        holder = client.get("v1", "Pod", pod, namespace)
        if holder is not None and not holder["metadata"].get("deletionTimestamp"):
            return False  # held by a running pod: the new one already leads, or the rollout left it
        if holder is None:
            path = client.resource("coordination.k8s.io/v1", "Lease").path(namespace, name)
            precondition = {"resourceVersion": lease_obj["metadata"]["resourceVersion"]}
            body = {"apiVersion": "v1", "kind": "DeleteOptions", "preconditions": precondition}
            try:
                client.request("DELETE", path, body=body)
            except NotFound:
                return False
            except ApiError as e:
                if e.status != 409:
                    raise
                continue  # it changed hands between the read and the delete: look again
            return True
        if time.monotonic() > deadline:
            return False  # still terminating: the new pod takes over when the lease expires
        time.sleep(1.0)
