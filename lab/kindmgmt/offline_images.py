"""The images `lab up --mode kind --offline` runs, checked in the Docker engine before anything is
created, then loaded into the kind nodes with `kind load docker-image`.

Offline, kubelet can pull nothing: an image missing from a node leaves its pod in ErrImagePull and
lab's wait for its Deployment runs out. So the whole list is read from what will be applied (the
rendered providers' components and BMO's overlay; not cert-manager.yaml, whose controllers do not run
offline: lab.kindmgmt.certs plays their part) plus the node image (and kind's load balancer), and
every image not in the engine is named in one line with how to get it: `lab images build NAME` for
the images lab builds from the pinned modules, `docker load` of an archive for any other.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import yaml

from lab import images, images_node
from lab.config import Settings
from lab.engine import Client
from lab.errors import LabError
from lab.kindmgmt import proc

Log = Callable[[str], None]

#: workload kinds whose pod template names images
_POD_TEMPLATE_KINDS = {"Deployment", "DaemonSet", "StatefulSet", "Job", "ReplicaSet"}


def _pod_images(obj: dict[str, Any]) -> list[str]:
    if obj.get("kind") == "Pod":
        spec = obj.get("spec") or {}
    elif obj.get("kind") in _POD_TEMPLATE_KINDS:
        spec = ((obj.get("spec") or {}).get("template") or {}).get("spec") or {}
    else:
        return []
    containers = [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]
    return [str(c["image"]) for c in containers if c.get("image")]


def images_of(objects: Iterable[dict[str, Any]]) -> list[str]:
    """Every container image the objects' pods run, once each, in order of appearance."""
    seen: dict[str, None] = {}
    for obj in objects:
        for image in _pod_images(obj):
            seen.setdefault(image, None)
    return list(seen)


def objects_in(files: Iterable[Path]) -> list[dict[str, Any]]:
    """The YAML documents of the rendered files (metadata.yaml and the like carry no pods)."""
    return [d for f in files for d in yaml.safe_load_all(f.read_text()) if isinstance(d, dict)]


def how_to_get(settings: Settings) -> dict[str, str]:
    """image reference -> the command that makes it here, for the images lab builds."""
    out = {images.resolve(settings, name).reference: f"lab images build {name}" for name in images.IMAGES}
    node = f"lab images build {images_node.NAME}"
    return out | {images_node.node_reference(settings): node, images_node.lb_reference(settings): node}


def host_images(settings: Settings, node_image: str) -> list[str]:
    """What kind itself runs from the engine: the node image, and with several control-plane nodes
    its load balancer (lab's stand-in, built with the node image)."""
    return [node_image, *([images_node.lb_reference(settings)] if settings.kind_nodes > 1 else [])]


def needed(files: Iterable[Path], bmo_objects: list[dict[str, Any]]) -> list[str]:
    """What the kind nodes must hold: the images of the providers' files given and BMO's."""
    return images_of([*objects_in(files), *bmo_objects])


def check(settings: Settings, engine: Client, refs: list[str], node_image: str) -> None:
    """One LabError line naming every image the engine lacks, with how to get each, before any
    cluster exists."""
    hints = how_to_get(settings)
    missing = [r for r in [*host_images(settings, node_image), *refs] if engine.image_id(r) is None]
    if not missing:
        return

    def hint(ref: str) -> str:
        if ref in hints:
            return f"{ref} ({hints[ref]})"
        return f"{ref} (docker load an archive of it)"

    raise LabError(
        f"lab up --mode kind --offline: {len(missing)} image(s) not in the Docker engine at "
        f"{engine.host}, and nothing can be pulled offline: {', '.join(hint(r) for r in missing)}"
    )


def load(kind: str, cluster: str, refs: list[str], log: Log = lambda _m: None) -> None:
    """`kind load docker-image` of every image into every node of the cluster (re-run: kind skips
    an image a node already has)."""
    log(f"loading {len(refs)} image(s) into the kind nodes")
    proc.run([kind, "load", "docker-image", "--name", cluster, *refs], timeout=1800)
