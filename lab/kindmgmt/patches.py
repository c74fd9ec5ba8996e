"""Tuning patches for the managers in the kind management cluster, rendered from lab.tuning.

Why at run time and not committed files: a patch that is right for every re-run must replace the
manager's args with the profile applied to the args it has now (lab.tuning.apply_profile drops every
flag the table manages, so switching back to `default` really restores upstream defaults). Those args
are clusterctl's rendering of the provider components (variables substituted), known only from the
live Deployment. A static `add .../args/-` patch would pile up duplicates on each run and could never
remove a flag. So the one fact stays in lab.tuning's table; lab writes every patch it applies to
<lab home>/kind/patches/<component>.json, which is what you would commit if you wanted a record.

Every profile, `default` included, also carries lab.kindmgmt.lease's leader-election deadlines and
lab.kindmgmt.probes' probe timeouts: they keep the managers alive on a small host rather than tune
their throughput.
"""

from __future__ import annotations

import copy
from typing import Any

from lab import tuning
from lab.config import Settings
from lab.errors import LabError
from lab.kindmgmt import lease, probes

#: tuning component -> (namespace, Deployment): the five managers lab tunes
DEPLOYMENTS = tuning.DEPLOYMENTS
MANAGER_CONTAINER = "manager"


def manager_container(deployment: dict[str, Any]) -> dict[str, Any]:
    """Container 0, which tuning.CONTAINER_PATH patches; it must be the manager container."""
    containers = deployment["spec"]["template"]["spec"]["containers"]
    name = deployment["metadata"]["name"]
    if not containers or containers[0].get("name") != MANAGER_CONTAINER:
        raise LabError(f"Deployment {name}: container 0 is not {MANAGER_CONTAINER!r}; refusing to patch it")
    return dict(containers[0])


def manager_args(deployment: dict[str, Any]) -> list[str]:
    """Args of the manager container (tuning.ARGS_PATH)."""
    return list(manager_container(deployment).get("args") or [])


def wanted_args(settings: Settings, component: str, args: list[str], profile: str) -> list[str]:
    """A manager's args in kind mode: the profile applied, then the widened leader-election deadlines."""
    return lease.widen(settings, component, tuning.apply_profile(args, settings, component, profile))


def render(
    settings: Settings, component: str, deployment: dict[str, Any], profile: str
) -> list[dict[str, Any]]:
    """The JSON patch that brings this Deployment to the profile (args, then any probe narrower than
    lab's); [] when it is there already."""
    container = manager_container(deployment)
    args = list(container.get("args") or [])
    want = wanted_args(settings, component, args, profile)
    probe_ops = probes.patch_ops(container)
    if want == args and not probe_ops:
        return []
    return [*tuning.deployment_patch(args, want), *probe_ops]


def tuned(settings: Settings, component: str, deployment: dict[str, Any], profile: str) -> dict[str, Any]:
    """A copy of the Deployment with the profile applied (for manifests lab applies itself, BMO's,
    so that re-applying them never undoes the tuning)."""
    out = copy.deepcopy(deployment)
    containers = out["spec"]["template"]["spec"]["containers"]
    containers[0] = probes.widen(containers[0])
    containers[0]["args"] = wanted_args(settings, component, manager_args(deployment), profile)
    return out


def component_of(deployment: dict[str, Any]) -> str | None:
    """The tuning component an object is (a Deployment, by namespace and name), or None."""
    if deployment.get("kind") != "Deployment":
        return None
    key = (deployment["metadata"].get("namespace"), deployment["metadata"]["name"])
    return next((c for c, where in DEPLOYMENTS.items() if where == key), None)
