"""KCP's EtcdClusterHealthy, reported by the tool that manages the etcd: lab.

With external etcd, KCP (CAPI v1.13, controlplane/kubeadm/internal/workload_cluster_conditions.go,
updateExternalEtcdConditions) sets only the v1beta1 condition and leaves the v1beta2
`EtcdClusterHealthy` to "tools managing the external etcd instance"; until one does, it stays
Unknown/InspectionFailed with KCP's first message ("Waiting for Cluster status.infrastructureReady")
on every cluster, and `clusterctl describe cluster --show-conditions all` shows it so. lab manages each
cluster's etcd tenant, so it reports it: each pass reads every tenant as its kube-apiserver does (the
cluster's own client pair, on the backing's etcd: Backing.tenant_health) and writes the condition,
True/Healthy or False/NotHealthy with etcd's reason, where it differs from what the KCP shows.

Only initialized control planes are reported: before that KCP itself sets the condition on every
reconcile (the infrastructure and endpoint waits), and a write of ours would only flap with it.
KCP's patch helper keeps a condition it did not change, so a write stays until the next verdict; when
KCP cannot reach a workload apiserver it marks the condition Unknown itself (it cannot tell etcd from
the apiserver), and the next pass writes the tenant's real health again.

The write is a server-side apply of the one condition on the status subresource (conditions are a map
list keyed by type), under lab's own field manager: nothing else of the status is touched.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from lab import naming
from lab.config import Settings
from lab.errors import LabError
from lab.kube import APPLY_PATCH, Client
from lab.manifests.kinds import API_VERSIONS

log = logging.getLogger(__name__)

CONDITION = "EtcdClusterHealthy"
HEALTHY, NOT_HEALTHY = "Healthy", "NotHealthy"  # KCP's own reasons (api/controlplane/kubeadm/v1beta2)
FIELD_MANAGER = "scale-lab-etcd-health"
KCP_API = API_VERSIONS["KubeadmControlPlane"]
#: Seconds between passes. A pass over 100 local tenants (100 TLS connections, 100 count-only ranges)
#: took 0.38 s and 0.27 s of lab's CPU (median of 5, load 3.4, 2 cores): under 1 % of a core at 30 s.
INTERVAL = 30.0

Obj = dict[str, Any]
#: backing name -> (cluster names -> verdict); the factory keeps lab.clusters free of the runtimes.
Judge = Callable[[str, Sequence[str]], Mapping[str, str | None]]


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def current(kcp: Mapping[str, Any]) -> Obj | None:
    for c in (kcp.get("status") or {}).get("conditions") or []:
        if c.get("type") == CONDITION:
            return dict(c)
    return None


def initialized(kcp: Mapping[str, Any]) -> bool:
    return bool(((kcp.get("status") or {}).get("initialization") or {}).get("controlPlaneInitialized"))


def condition(verdict: str | None, kcp: Mapping[str, Any], at: str) -> Obj:
    """Pure: the condition a verdict (None: healthy) makes; the transition time moves only when the
    status does, as Kubernetes conditions require."""
    status = "True" if verdict is None else "False"
    was = current(kcp)
    since = (
        was["lastTransitionTime"]
        if was and was.get("status") == status and was.get("lastTransitionTime")
        else at
    )
    return {
        "type": CONDITION,
        "status": status,
        "reason": HEALTHY if verdict is None else NOT_HEALTHY,
        "message": "" if verdict is None else verdict[:32768],
        "lastTransitionTime": since,
        "observedGeneration": int(kcp["metadata"].get("generation") or 0),
    }


def stale(kcp: Mapping[str, Any], want: Mapping[str, Any]) -> bool:
    """Pure: does the KCP show something else than `want` (time aside)?"""
    was = current(kcp) or {}
    keys = ("status", "reason", "message", "observedGeneration")
    return any(was.get(k) != want.get(k) for k in keys)


def write(mgmt: Client, kcp: Mapping[str, Any], cond: Mapping[str, Any]) -> None:
    meta = kcp["metadata"]
    body = {
        "apiVersion": KCP_API,
        "kind": "KubeadmControlPlane",
        "metadata": {"name": meta["name"], "namespace": meta["namespace"]},
        "status": {"conditions": [dict(cond)]},
    }
    res = mgmt.resource(KCP_API, "KubeadmControlPlane")
    mgmt.request(
        "PATCH",
        res.path(meta["namespace"], meta["name"]) + "/status",
        params={"fieldManager": FIELD_MANAGER, "force": "true"},
        body=body,
        content_type=APPLY_PATCH,
    )


def report(mgmt: Client, judge: Judge) -> dict[str, str | None]:
    """One pass over every lab cluster with an initialized, live KCP; the verdicts it wrote or kept.

    A backing that cannot be judged now (unreachable, an error) is skipped for this pass and logged:
    the condition stays as it was rather than turning False on a lab-side failure."""
    backing_of: dict[str, str] = {}
    for ns in mgmt.list("v1", "Namespace", label_selector=naming.CLUSTER_LABEL, cached=True):
        labels = ns["metadata"].get("labels") or {}
        if ns["metadata"].get("deletionTimestamp") is None:
            backing_of[ns["metadata"]["name"]] = labels.get(naming.BACKING_LABEL, naming.LOCAL_BACKING)
    kcps = [
        k
        for k in mgmt.list(KCP_API, "KubeadmControlPlane", cached=True)
        if k["metadata"]["namespace"] in backing_of
        and k["metadata"].get("deletionTimestamp") is None
        and initialized(k)
    ]
    by_backing: dict[str, list[str]] = {}
    for k in kcps:
        ns = k["metadata"]["namespace"]
        by_backing.setdefault(backing_of[ns], []).append(ns)
    verdicts: dict[str, str | None] = {}
    for backing, names in sorted(by_backing.items()):
        try:
            verdicts |= judge(backing, sorted(set(names)))
        except (LabError, OSError) as e:
            log.warning("etcd health of backing %s: %s (skipped this pass)", backing, e)
    at = now()
    for k in kcps:
        ns = k["metadata"]["namespace"]
        if ns not in verdicts:
            continue
        want = condition(verdicts[ns], k, at)
        if stale(k, want):
            try:
                write(mgmt, k, want)
            except LabError as e:  # deleted meanwhile, or the apiserver is busy: the next pass
                log.warning("%s/%s: %s", ns, k["metadata"]["name"], e)
    return verdicts


def loop(mgmt: Client, judge: Judge, stop: threading.Event, interval: float = INTERVAL) -> None:
    """report() every `interval` seconds until `stop`; a failed pass is logged, never fatal."""
    while not stop.is_set():
        try:
            report(mgmt, judge)
        except (LabError, OSError) as e:
            log.warning("etcd health pass: %s", e)
        except Exception:  # the thread must not die silently
            log.exception("etcd health pass: unexpected error")
        stop.wait(interval)


def backing_judge(settings: Settings) -> Judge:
    """Backing.tenant_health of each backing by name (opened per pass: registrations change)."""
    from lab import backing

    def judge(name: str, names: Sequence[str]) -> Mapping[str, str | None]:
        return backing.open_backing(settings, name).tenant_health(names)

    return judge
