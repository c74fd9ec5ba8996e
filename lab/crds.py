"""Upstream CRDs, read from the Go module cache at the configured versions.

The CRDs are never copied into this repository: each component's own kustomization says which CRD
files it ships, and the module cache (lab.gomod) holds them for exactly the pinned version. The same
documents serve two users: tests validate rendered objects against their openAPIV3Schema, and the
stack installs them into the management kube-apiserver.

The kustomization `labels` are applied as kustomize would. They are not cosmetic: CAPI resolves a
v1beta2 reference (apiGroup + kind) to an apiVersion through the CRD's contract label
`cluster.x-k8s.io/v1beta2: <versions>` (CAPI internal/contract/version.go), so a provider CRD
installed without it leaves every Cluster stuck. The conversion-webhook and CA-injection patches are
NOT applied: they point at in-cluster Services, which is the installer's decision.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from lab import gomod
from lab.config import Settings
from lab.errors import LabError

#: Where each component keeps its CRD kustomizations, relative to its module directory.
#: libyaml when present: the CRDs are large (KCP's alone is 360 kB) and the pure-Python loader takes ~10s for all.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

CRD_DIRS: dict[str, tuple[str, ...]] = {
    "capi": ("config/crd", "bootstrap/kubeadm/config/crd", "controlplane/kubeadm/config/crd"),
    "capm3": ("config/crd",),
    "ipam": ("config/crd",),
    "bmo": ("config/base/crds",),
}
COMPONENTS = tuple(CRD_DIRS)


def _kustomization(directory: Path) -> dict[str, Any]:
    path = directory / "kustomization.yaml"
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise LabError(f"cannot read {path}: {e}") from e
    if not isinstance(data, dict) or not isinstance(data.get("resources"), list):
        raise LabError(f"{path}: no resources list; the upstream layout changed")
    return data


def _kustomize_labels(kustomization: dict[str, Any]) -> dict[str, str]:
    """Labels a kustomization adds to every resource (`labels[].pairs` and the older `commonLabels`)."""
    labels: dict[str, str] = dict(kustomization.get("commonLabels") or {})
    for entry in kustomization.get("labels") or []:
        labels.update(entry.get("pairs") or {})
    return {str(k): str(v) for k, v in labels.items()}


def load_dir(directory: Path) -> list[dict[str, Any]]:
    """The CRDs one kustomization directory lists, with its labels applied, in its order."""
    kustomization = _kustomization(directory)
    labels = _kustomize_labels(kustomization)
    out: list[dict[str, Any]] = []
    for resource in kustomization["resources"]:
        path = directory / resource
        try:
            docs = [d for d in yaml.load_all(path.read_text(), Loader=_LOADER) if d]
        except (OSError, yaml.YAMLError) as e:
            raise LabError(f"cannot read CRD {path}: {e}") from e
        for doc in docs:
            if doc.get("kind") != "CustomResourceDefinition":
                raise LabError(f"{path}: expected a CustomResourceDefinition, found {doc.get('kind')}")
            if labels:
                meta = doc.setdefault("metadata", {})
                meta["labels"] = {**(meta.get("labels") or {}), **labels}
            out.append(doc)
    return out


@functools.cache
def _component_crds(key: str, version: str) -> tuple[dict[str, Any], ...]:
    root = gomod.component_dir(key, version)
    return tuple(crd for sub in CRD_DIRS[key] for crd in load_dir(root / sub))


def component_crds(settings: Settings, key: str) -> list[dict[str, Any]]:
    """Parsed CRDs of one component at its configured version (deep copies: callers may edit them)."""
    if key not in CRD_DIRS:
        raise LabError(f"unknown component {key!r}; known: {', '.join(COMPONENTS)}")
    return copy.deepcopy(list(_component_crds(key, getattr(settings.versions, key))))


def crd_documents(settings: Settings, components: Iterable[str] = COMPONENTS) -> list[dict[str, Any]]:
    """Every CRD the given components ship, ready to apply (no conversion webhooks, see module doc)."""
    return [crd for key in components for crd in component_crds(settings, key)]


def served_versions(crd: dict[str, Any]) -> list[str]:
    return [v["name"] for v in crd["spec"]["versions"] if v.get("served")]


def storage_version(crd: dict[str, Any]) -> str:
    (name,) = [str(v["name"]) for v in crd["spec"]["versions"] if v.get("storage")]
    return name


def find_crd(settings: Settings, group: str, kind: str) -> dict[str, Any]:
    """The CRD of group/kind among all components; LabError when no component ships it."""
    for key in COMPONENTS:
        for crd in _component_crds(key, getattr(settings.versions, key)):
            if crd["spec"]["group"] == group and crd["spec"]["names"]["kind"] == kind:
                return copy.deepcopy(crd)
    raise LabError(f"no component ships a CRD for {kind}.{group}")


def schema_for(settings: Settings, api_version: str, kind: str) -> dict[str, Any]:
    """openAPIV3Schema of kind at api_version ("group/version"); LabError if that version is not served."""
    group, _, version = api_version.rpartition("/")
    crd = find_crd(settings, group, kind)
    for v in crd["spec"]["versions"]:
        if v["name"] == version:
            if not v.get("served"):
                raise LabError(f"{kind}.{group} {version} exists but is not served")
            schema: dict[str, Any] = v["schema"]["openAPIV3Schema"]
            return schema
    raise LabError(f"{kind}.{group} has no version {version}; served: {', '.join(served_versions(crd))}")
