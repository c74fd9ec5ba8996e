"""Waits on what kubectl waits on (`wait --for=condition=Established`, `rollout status`), watched
rather than polled, so lab needs no kubectl subprocess for them."""

from __future__ import annotations

from typing import Any

from lab.errors import LabError
from lab.kube.client import Client

CRD_API = "apiextensions.k8s.io/v1"


def established(crd: dict[str, Any]) -> bool:
    """Pure: the CRD's kinds are served."""
    conditions = (crd.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions)


def wait_established(client: Client, names: list[str], timeout: float = 120.0) -> None:
    """Until every named CRD is Established."""
    pending = set(names)
    if not pending:
        return
    watch = client.watch(CRD_API, "CustomResourceDefinition", timeout=timeout)
    for event in watch:
        if event.type != "DELETED" and established(event.object):
            pending.discard(event.object["metadata"]["name"])
        if not pending:
            watch.stop()
            return
    raise LabError(f"CRDs not Established after {timeout:.0f}s: {', '.join(sorted(pending))}")


def rollout_state(deployment: dict[str, Any]) -> tuple[bool, str]:
    """Pure: (rolled out, what it waits for), by the rules of `kubectl rollout status`."""
    meta, spec, status = deployment["metadata"], deployment.get("spec") or {}, deployment.get("status") or {}
    if meta.get("generation", 0) > status.get("observedGeneration", 0):
        return False, "the controller has not seen the latest spec"
    for c in status.get("conditions") or []:
        if c.get("type") == "Progressing" and c.get("reason") == "ProgressDeadlineExceeded":
            raise LabError(f"deployment {meta['namespace']}/{meta['name']} exceeded its progress deadline")
    want = spec.get("replicas", 1)
    updated, total, available = (
        status.get(k, 0) for k in ("updatedReplicas", "replicas", "availableReplicas")
    )
    if updated < want:
        return False, f"{updated} of {want} new replicas updated"
    if total > updated:
        return False, f"{total - updated} old replicas pending termination"
    if available < updated:
        return False, f"{available} of {updated} updated replicas available"
    return True, "rolled out"


def wait_rolled_out(client: Client, namespace: str, name: str, timeout: float = 600.0) -> None:
    """Until the Deployment's rollout is complete, or one LabError saying what it still waits for."""
    why = "not found"
    watch = client.watch(
        "apps/v1", "Deployment", namespace, field_selector=f"metadata.name={name}", timeout=timeout
    )
    for event in watch:
        if event.type == "DELETED":
            why = "deleted"
            continue
        done, why = rollout_state(event.object)
        if done:
            watch.stop()
            return
    raise LabError(f"deployment {namespace}/{name} not rolled out after {timeout:.0f}s: {why}")
