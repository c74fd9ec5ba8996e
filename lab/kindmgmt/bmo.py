"""BMO in test mode: a kustomize overlay over BMO's own config/ at the pinned version.

The overlay (manifests/bmo-test-mode/) only adds what test mode needs; everything else is upstream:
- `--test-mode` on the manager: BMO v0.13 main.go then uses the fixture provisioner ("disable ironic
  communication"), so no Ironic is deployed. The `ironic` ConfigMap of config/default stays, because
  the manager's envFrom needs it to start; nothing reads it in test mode.
- the image pinned to the configured BMO version (config/base names it without a tag, i.e. latest),
  pulled IfNotPresent instead of Always, so restarts need no registry.
This is what BMO's own config/overlays/fixture-release-0.13 does, with a version tag instead of a branch.

Where the base comes from: by default kustomize fetches it from GitHub at the version tag; with a
local source tree (an air-gapped host, or the Go module cache in the tests) it is read from there.
The version lives only in lab.versions, so the kustomization is rendered into the lab home.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import yaml

from lab.config import Settings
from lab.errors import LabError
from lab.kindmgmt import kind_dir, proc

OVERLAY_DIR = Path(__file__).resolve().parents[2] / "manifests" / "bmo-test-mode"
PATCH_FILE = "test-mode-patch.yaml"
REPO = "https://github.com/metal3-io/baremetal-operator"
IMAGE = "quay.io/metal3-io/baremetal-operator"
NAMESPACE = "baremetal-operator-system"
DEPLOYMENT = "baremetal-operator-controller-manager"
#: kinds of the build that have no namespace
CLUSTER_SCOPED = frozenset(
    {
        "Namespace",
        "CustomResourceDefinition",
        "ClusterRole",
        "ClusterRoleBinding",
        "ValidatingWebhookConfiguration",
    }
)
#: the upstream kustomizations the overlay stacks: the namespace, then everything else
BASES = ("config/namespace", "config/default")


def bases(settings: Settings, source: Path | None, overlay: Path) -> list[str]:
    """Resource entries for the base: GitHub at the version tag, or a local BMO source tree given
    relative to the overlay dir (kustomize refuses an absolute path as a kustomization root)."""
    if source is not None:
        return [os.path.relpath((source / b).resolve(), overlay.resolve()) for b in BASES]
    return [f"{REPO}/{b}?ref={settings.versions.bmo}" for b in BASES]


def kustomization(settings: Settings, source: Path | None, overlay: Path) -> dict[str, Any]:
    return {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": bases(settings, source, overlay),
        "patches": [{"path": PATCH_FILE, "target": {"kind": "Deployment", "name": DEPLOYMENT}}],
        "images": [{"name": IMAGE, "newTag": settings.versions.bmo}],
    }


def check_source(settings: Settings, source: Path) -> None:
    """A local base must be a BMO tree: refuse a wrong directory before anything is created."""
    missing = [b for b in BASES if not (source / b / "kustomization.yaml").is_file()]
    if missing:
        raise LabError(
            f"{source} is not a baremetal-operator {settings.versions.bmo} source tree "
            f"(no {', '.join(b + '/kustomization.yaml' for b in missing)})"
        )


def render_dir(settings: Settings, source: Path | None, out: Path | None = None) -> Path:
    """Write the overlay (kustomization + the committed patch) into a build dir and return it."""
    out = out or kind_dir(settings) / "bmo-test-mode"
    if source is not None:
        check_source(settings, source)
    out.mkdir(parents=True, exist_ok=True, mode=0o700)
    shutil.copyfile(OVERLAY_DIR / PATCH_FILE, out / PATCH_FILE)
    (out / "kustomization.yaml").write_text(
        yaml.safe_dump(kustomization(settings, source, out), sort_keys=False)
    )
    return out


def build(kubectl: str, overlay: Path) -> list[dict[str, Any]]:
    """`kubectl kustomize` (kustomize is built into kubectl): the objects the overlay produces."""
    out = proc.run([kubectl, "kustomize", str(overlay)], timeout=300)
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def manager(objects: list[dict[str, Any]]) -> dict[str, Any]:
    """The BMO manager Deployment of a build."""
    for o in objects:
        if o.get("kind") == "Deployment" and o["metadata"]["name"] == DEPLOYMENT:
            return o
    raise LabError(f"the BMO overlay produced no Deployment {DEPLOYMENT}")


def crds(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """BMO's CRDs alone: applied before clusterctl init, because CAPM3 watches BareMetalHosts and its
    components do not carry that CRD (the seed applied BMO's config/crd first for the same reason)."""
    return [o for o in objects if o.get("kind") == "CustomResourceDefinition"]
