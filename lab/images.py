"""Container images for kind mode, built here from lab's cached binaries, never pulled.

Each controller image holds the binary `lab build` made from the pinned module, at the path and
with the user the upstream manifest runs (`command[0]` of its manager Deployment, uid 65532), and is
tagged with the name the upstream release manifests use, so no manifest is edited and clusterctl's
components find their image already present:

- the repository is the one the module's own manifest names (CAPI, CAPM3, IPAM: the manager image
  patch of config/default; BMO: config/base/manager.yaml), with CAPI's staging registry replaced by
  its production one as its release does (`manifest-modification`: REGISTRY=PROD_REGISTRY, both read
  from its Makefile);
- the tag is the pinned version, as in the release manifests (`MANIFEST_TAG=$(RELEASE_TAG)`) and in
  lab's BMO test-mode overlay.

The binaries are dynamically linked against glibc (cgo), so the images are FROM a minimal Debian
root made here by `debootstrap --variant=minbase` of the host's own Debian release (the glibc the
binaries were linked against) and imported into the engine: nothing comes from a registry.

The binary is `lab build`'s for the target with its default patches (patches/<component>/ and
patches/<target>/, lab.build), so a patched controller runs patched in kind mode too, under the
upstream tag: the record beside the archive names the patches, and a binary whose patches changed
has another sha256, so the image is rebuilt.

Every image is saved as an archive under <home>/images/<component>/<version>/, with a record of the
binary it holds (sha256) and the image id. A second build with the same binary costs nothing when the
engine still has the image, and a `docker load` of the archive when it does not (a fresh engine);
`kind load image-archive` takes the same files.

Measured here (2 cores shared, load 23-46): the base, debootstrap and import, 824 s once (mostly
downloading and configuring packages; cached as an 81 MB archive after); each controller image 31-67 s
cold, 0.4-4.6 s when present; archives ~130 MiB each, because every `docker save` carries the base layer
(one multi-image archive would share it).

The kind node image for the pinned Kubernetes, with the control-plane images inside, is
lab.images_node's (`lab images build node`), on the same base.
cert-manager's three images and the kind backing's apiserver and etcd images follow this module's
pattern.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from lab import build, gomod, versions
from lab.config import Settings
from lab.engine import Client, EngineError
from lab.errors import LabError
from lab.runtime.mounts import unmount_under

Log = Callable[[str], None]

#: the user every upstream controller image runs as (distroless nonroot; runAsUser in the manifests)
NONROOT = 65532
BASE_REPOSITORY = "lab.local/debian-minbase"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
#: what a minimal root need not carry into every image (docs, manuals, translations, apt's caches)
_BASE_TRIM = (
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
    "var/cache/apt",
    "var/lib/apt/lists",
)


@dataclass(frozen=True)
class ImageSpec:
    """One controller image: the binary it holds and where its module says how it runs."""

    name: str
    target: str  # lab.build target
    #: the manager Deployment (its container `manager` gives command[0]), relative to the module root
    manager_yaml: str
    #: the file that names the image repository (an image patch of config/default, or the Deployment)
    image_yaml: str
    what: str

    @property
    def component(self) -> str:
        return build.TARGETS[self.target].component


IMAGES: dict[str, ImageSpec] = {
    s.name: s
    for s in (
        ImageSpec(
            "capi",
            "capi-manager",
            "config/manager/manager.yaml",
            "config/default/manager_image_patch.yaml",
            "CAPI core",
        ),
        ImageSpec(
            "cabpk",
            "cabpk-manager",
            "bootstrap/kubeadm/config/manager/manager.yaml",
            "bootstrap/kubeadm/config/default/manager_image_patch.yaml",
            "kubeadm bootstrap",
        ),
        ImageSpec(
            "kcp",
            "kcp-manager",
            "controlplane/kubeadm/config/manager/manager.yaml",
            "controlplane/kubeadm/config/default/manager_image_patch.yaml",
            "kubeadm control plane",
        ),
        ImageSpec(
            "capm3",
            "capm3-manager",
            "config/manager/manager.yaml",
            "config/default/capm3/manager_image_patch.yaml",
            "CAPM3",
        ),
        ImageSpec(
            "ipam",
            "ipam-manager",
            "config/manager/manager.yaml",
            "config/default/manager_image_patch.yaml",
            "Metal3 IPAM",
        ),
        ImageSpec("bmo", "bmo-manager", "config/base/manager.yaml", "config/base/manager.yaml", "BMO"),
    )
}


def _manager_container(docs: list[Any], source: str) -> dict[str, Any]:
    for doc in docs:
        spec = (((doc or {}).get("spec") or {}).get("template") or {}).get("spec") or {}
        for c in spec.get("containers") or []:
            if c.get("name") == "manager":
                return dict(c)
    raise LabError(f"{source}: no container named manager")


def _registries(makefile: str) -> dict[str, str]:
    """Pure: `NAME ?= value` assignments of a Makefile that are plain strings."""
    return {
        m[1]: m[2].strip()
        for m in re.finditer(r"^([A-Z_]+_REGISTRY)\s*\?=\s*(\S+)\s*$", makefile, re.M)
        if "$" not in m[2]
    }


def repository(image: str, makefile: str) -> str:
    """Pure: the release repository of a manifest's image: the tag dropped, a staging registry
    replaced by the production one when the Makefile names both."""
    repo = re.sub(r":[\w.-]+$", "", image.split("@", 1)[0])
    regs = _registries(makefile)
    staging, prod = regs.get("STAGING_REGISTRY"), regs.get("PROD_REGISTRY")
    if staging and prod and repo.startswith(staging + "/"):
        repo = prod + repo.removeprefix(staging)
    return repo


@dataclass(frozen=True)
class Resolved:
    """What an image is, as the module at the pinned version says."""

    spec: ImageSpec
    version: str
    reference: str  # repository:tag
    command: str  # where the binary goes


def _module_root(settings: Settings, spec: ImageSpec) -> Path:
    comp = spec.component
    return gomod.module_dir(versions.COMPONENTS[comp].module, str(getattr(settings.versions, comp)))


def resolve(settings: Settings, name: str) -> Resolved:
    spec = IMAGES[name]
    root = _module_root(settings, spec)
    version = str(getattr(settings.versions, spec.component))
    try:
        manager = _manager_container(
            list(yaml.safe_load_all((root / spec.manager_yaml).read_text())), spec.manager_yaml
        )
        image = _manager_container(
            list(yaml.safe_load_all((root / spec.image_yaml).read_text())), spec.image_yaml
        )
        makefile = (root / "Makefile").read_text() if (root / "Makefile").is_file() else ""
    except (OSError, yaml.YAMLError) as e:
        raise LabError(f"cannot read the {name} manifests at {version}: {e}") from None
    command = (manager.get("command") or [None])[0]
    if not command or not str(image.get("image") or ""):
        raise LabError(f"{name} {version}: the manifests name no command or image")
    return Resolved(spec, version, f"{repository(str(image['image']), makefile)}:{version}", str(command))


def archive_path(settings: Settings, r: Resolved) -> Path:
    return settings.images_dir / r.spec.component / r.version / f"{r.spec.name}.tar"


def _record_path(archive: Path) -> Path:
    return archive.with_suffix(".json")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _read_record(path: Path) -> dict[str, Any]:
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return {}


# --- the base image ----------------------------------------------------------------------------


def debian_suite(os_release: Path = Path("/etc/os-release")) -> str:
    """The host's Debian release (its glibc is the one the cached binaries need); bookworm elsewhere."""
    with contextlib.suppress(OSError):
        fields = dict(line.split("=", 1) for line in os_release.read_text().splitlines() if "=" in line)
        if fields.get("ID", "").strip('"') == "debian" and fields.get("VERSION_CODENAME"):
            return fields["VERSION_CODENAME"].strip('"')
    return "bookworm"


def base_reference() -> str:
    return f"{BASE_REPOSITORY}:{debian_suite()}"


def base_archive(settings: Settings) -> Path:
    return settings.images_dir / "base" / f"debian-{debian_suite()}-minbase.tar"


def _import_root(client: Client, root: Path, reference: str, workdir: Path) -> None:
    """`docker import` of a directory tree: tar it (numeric owners, as on disk) and post it."""
    tarball = workdir / "rootfs.tar"
    with tarfile.open(tarball, "w", format=tarfile.PAX_FORMAT) as tar:
        for entry in sorted(root.iterdir()):
            tar.add(entry, arcname=entry.name)
    repo, tag = reference.rsplit(":", 1)
    with tarball.open("rb") as f:
        for _ in client.stream("POST", "/images/create", {"fromSrc": "-", "repo": repo, "tag": tag}, f):
            pass
    tarball.unlink()


def debootstrap_image(
    settings: Settings,
    client: Client,
    reference: str,
    archive: Path,
    what: str,
    log: Log = lambda _m: None,
    packages: tuple[str, ...] = (),
) -> str:
    """A Debian root as an image in the engine: present, loaded from its archive, or made by
    `debootstrap --variant=minbase` of the host's release (with `packages`; its downloads kept in
    <home>/images/debs for the next root), trimmed, imported and saved as `archive`."""
    if client.image_id(reference):
        return reference
    if archive.is_file():
        log(f"loading {reference} from {archive}")
        client.load(archive)
        return reference
    debootstrap = shutil.which("debootstrap")
    if debootstrap is None:
        raise LabError(f"the {what} needs debootstrap (Debian: apt-get install debootstrap)")
    if os.geteuid() != 0:
        raise LabError(f"making the {what} with debootstrap needs root")
    suite = debian_suite()
    work = settings.images_dir / "tmp"
    work.mkdir(parents=True, exist_ok=True)
    cache = settings.images_dir / "debs"
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=work) as tmp:
        root = Path(tmp) / "root"
        log(f"debootstrap --variant=minbase {suite} with {len(packages)} packages ({what} {reference})")
        started = time.monotonic()
        include = [f"--include={','.join(packages)}"] if packages else []
        cmd = [debootstrap, "--variant=minbase", *include, f"--cache-dir={cache}", suite, str(root)]
        try:
            out = subprocess.run(
                [*cmd, DEBIAN_MIRROR], capture_output=True, text=True, timeout=3600, check=False
            )
        finally:
            unmount_under(root)  # a failed second stage leaves /proc and /sys mounted in the root
        if out.returncode != 0:
            tail = " | ".join((out.stdout + out.stderr).strip().splitlines()[-2:])
            raise LabError(f"debootstrap {suite} ({what}) failed: {tail}")
        for rel in _BASE_TRIM:
            shutil.rmtree(root / rel, ignore_errors=True)
        _import_root(client, root, reference, Path(tmp))
        log(f"{what} {reference} made in {time.monotonic() - started:.0f}s")
    client.save(reference, archive)
    return reference


def ensure_base(settings: Settings, client: Client, log: Log = lambda _m: None) -> str:
    """The base image of every controller image in the engine (debootstrap_image)."""
    return debootstrap_image(settings, client, base_reference(), base_archive(settings), "base image", log)


# --- controller images -------------------------------------------------------------------------


def dockerfile(base: str, command: str, version: str, sha: str) -> str:
    """Pure: the image the upstream Dockerfiles make (binary at command[0], nonroot), on our base."""
    return "\n".join(
        [
            f"FROM {base}",
            f"COPY manager {command}",
            f"USER {NONROOT}:{NONROOT}",
            f'ENTRYPOINT ["{command}"]',
            f'LABEL org.opencontainers.image.version="{version}" lab.binary.sha256="{sha}"',
            "",
        ]
    )


def _build_image(client: Client, r: Resolved, base: str, binary: Path, sha: str, workdir: Path) -> str:
    context = workdir / f"{r.spec.name}-context.tar"
    with tarfile.open(context, "w") as tar:
        data = dockerfile(base, r.command, r.version, sha).encode()
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        tar.add(binary, arcname="manager")
    try:
        with context.open("rb") as f:
            for _ in client.stream("POST", "/build", {"t": r.reference, "rm": "1", "forcerm": "1"}, f):
                pass
    finally:
        context.unlink(missing_ok=True)
    image_id = client.image_id(r.reference)
    if image_id is None:
        raise EngineError(f"the engine built {r.reference} but does not list it")
    return image_id


@dataclass(frozen=True)
class Result:
    name: str
    reference: str
    archive: str
    #: what it cost: "present" (nothing), "loaded" (from the archive), "built"
    action: str
    seconds: float


def build_one(settings: Settings, client: Client, name: str, log: Log = lambda _m: None) -> Result:
    """One controller image in the engine and as an archive; the binary is built if missing."""
    started = time.monotonic()
    r = resolve(settings, name)
    binary = build.build(settings, r.spec.target, log)
    sha = _sha256(binary)
    archive = archive_path(settings, r)
    record = _read_record(_record_path(archive))
    fresh = archive.is_file() and record.get("sha256") == sha and record.get("reference") == r.reference
    if fresh:
        if client.image_id(r.reference) == record.get("image_id"):
            return Result(name, r.reference, str(archive), "present", time.monotonic() - started)
        log(f"loading {r.reference} from {archive}")
        client.load(archive)
        return Result(name, r.reference, str(archive), "loaded", time.monotonic() - started)
    base = ensure_base(settings, client, log)
    log(f"building {r.reference} from {binary}")
    work = settings.images_dir / "tmp"
    work.mkdir(parents=True, exist_ok=True)
    image_id = _build_image(client, r, base, binary, sha, work)
    client.save(r.reference, archive)
    _record_path(archive).write_text(
        json.dumps(
            {
                "reference": r.reference,
                "image_id": image_id,
                "sha256": sha,
                "binary": str(binary),
                "patched": build.patch_info(binary),
            },
            indent=2,
        )
        + "\n"
    )
    return Result(name, r.reference, str(archive), "built", time.monotonic() - started)


def build_images(
    settings: Settings, names: list[str], client: Client, log: Log = lambda _m: None
) -> list[Result]:
    unknown = [n for n in names if n not in IMAGES]
    if unknown:
        raise LabError(f"unknown image {', '.join(unknown)}; known: {', '.join(IMAGES)}", exit_code=2)
    client.info()  # one clear line when there is no engine, before anything is built
    return [build_one(settings, client, n, log) for n in names or list(IMAGES)]


def listing(settings: Settings) -> list[dict[str, object]]:
    """Every image: its reference, whether its binary and its archive are cached (no engine needed)."""
    rows: list[dict[str, object]] = []
    for name, spec in IMAGES.items():
        r = resolve(settings, name)
        archive = archive_path(settings, r)
        rows.append(
            {
                "name": name,
                "what": spec.what,
                "reference": r.reference,
                "binary_cached": build.is_cached(settings, spec.target),
                "patches": build.default_patches(settings, spec.target).names,
                "archive": str(archive) if archive.is_file() else None,
                "bytes": archive.stat().st_size if archive.is_file() else None,
            }
        )
    return rows
