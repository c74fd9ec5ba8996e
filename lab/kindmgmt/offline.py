"""`lab up --mode kind --offline`: a local clusterctl repository rendered from the pinned modules.

Online, `clusterctl init` fetches each provider's release assets (components YAML, metadata.yaml) and
cert-manager.yaml from GitHub. Offline, lab makes the same files from the Go module cache, the way
each release makes them, and writes a clusterctl config whose `providers:` entries and `cert-manager`
URL point at them (`file://`), so clusterctl reads nothing from the network:

- components: `kubectl kustomize` of the directory each release Makefile's `release-manifests`
  builds (CAPI: config/default, bootstrap/kubeadm/config/default, controlplane/kubeadm/config/default;
  CAPM3 and IPAM: config/default), with the manager image set to the name `lab images build` tags
  (lab.images: the release's repository and the pinned version, what the release's
  `set-manifest-image` writes) and `imagePullPolicy: IfNotPresent` (CAPI's `manifest-modification`;
  an `Always` would make kubelet try a registry it cannot reach). clusterctl's `${VAR:=default}`
  variables are kept as the release keeps them: clusterctl substitutes them at init.
- metadata.yaml: the module's own, which must list the release series of the pinned version
  (clusterctl refuses a version its metadata does not know, with a less clear message).
- cert-manager.yaml: `helm template` of the chart in the cert-manager module
  (deploy/charts/cert-manager), with the flags of cert-manager's make/manifests.mk: kube-version
  1.29.0, no api-versions, namespace cert-manager, creator=static, startupapicheck disabled; the
  namespace (deploy/manifests/namespace.yaml), then the CRDs (from a render with crds.enabled=true),
  then the rest (a render without CRDs), as the release concatenates them. The chart's version and
  appVersion are the pinned version, as the release's yq edit of Chart.yaml sets them, so the image
  tags are `quay.io/jetstack/cert-manager-*:<version>`.

Layout (clusterctl's local repository, `{base}/{provider-label}/{version}/{file}`, under
<home>/kind/clusterctl-repository). Measured here (2 cores shared by other builds, load average 11.9
by `uptime`): the five providers and cert-manager render in 14.0 s (kubectl kustomize 1.2-4.4 s
each, helm template twice); 12.8 s again in a network namespace with no network at all. helm
itself (`lab build helm`, v4.2.2 from its module) built cold in 290 s, load 2.2 rising to 10.8.

cert-manager's three images cannot be built here: cmd/controller, cmd/cainjector and cmd/webhook
are nested modules (module paths .../controller-binary etc., which do not match their directories)
that the Go module proxy does not serve, and the controller imports github.com/Venafi/vcert/v5, which
the proxy refuses (403) at every version. So offline, only cert-manager.yaml's CRDs are applied and
lab plays cert-manager's part (lab.kindmgmt.certs); the chart is still rendered whole, as the release
file clusterctl's config names.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from lab import build, gomod, images, versions
from lab.config import Settings
from lab.errors import LabError
from lab.kindmgmt import clusterctl, kind_dir

Log = Callable[[str], None]

REPOSITORY = "clusterctl-repository"
CONFIG_FILE = "clusterctl-offline.yaml"
CERT_MANAGER_LABEL = "cert-manager"  # clusterctl's fake provider for cert-manager has no type
CERT_MANAGER_FILE = "cert-manager.yaml"
CERT_MANAGER_NAMESPACE = "cert-manager"
CHART = "deploy/charts/cert-manager"
NAMESPACE_YAML = "deploy/manifests/namespace.yaml"
#: make/manifests.mk's `helm template` flags (cert-manager v1.21); crds.enabled is added per render
HELM_FLAGS = (
    "--kube-version=1.29.0",
    "--api-versions=",
    f"--namespace={CERT_MANAGER_NAMESPACE}",
    "--set=creator=static",
    "--set=startupapicheck.enabled=false",
)


@dataclass(frozen=True)
class Source:
    """Where one provider's release files come from in its module."""

    provider: clusterctl.Provider
    #: the directory the release Makefile's `release-manifests` kustomizes, relative to the module
    kustomize: str
    #: the lab.images image that runs the provider's manager
    image: str
    #: the components file name clusterctl reads for this provider type
    components: str


_P = {(p.type, p.name): p for p in clusterctl.PROVIDERS}
SOURCES: tuple[Source, ...] = (
    Source(_P["CoreProvider", "cluster-api"], "config/default", "capi", "core-components.yaml"),
    Source(
        _P["BootstrapProvider", "kubeadm"],
        "bootstrap/kubeadm/config/default",
        "cabpk",
        "bootstrap-components.yaml",
    ),
    Source(
        _P["ControlPlaneProvider", "kubeadm"],
        "controlplane/kubeadm/config/default",
        "kcp",
        "control-plane-components.yaml",
    ),
    Source(
        _P["InfrastructureProvider", "metal3"], "config/default", "capm3", "infrastructure-components.yaml"
    ),
    Source(_P["IPAMProvider", "metal3"], "config/default", "ipam", "ipam-components.yaml"),
)

# --- pure ----------------------------------------------------------------------------------------

_LABEL_PREFIX = {
    "BootstrapProvider": "bootstrap-",
    "ControlPlaneProvider": "control-plane-",
    "InfrastructureProvider": "infrastructure-",
    "IPAMProvider": "ipam-",
}


def manifest_label(p: clusterctl.Provider) -> str:
    """clusterctl's ManifestLabel: the directory a local repository keeps a provider under."""
    return _LABEL_PREFIX.get(p.type, "") + p.name


def version_of(settings: Settings, src: Source) -> str:
    return str(getattr(settings.versions, src.provider.version_key))


def components_path(base: Path, src: Source, version: str) -> Path:
    return base / manifest_label(src.provider) / version / src.components


def cert_manager_path(base: Path, version: str) -> Path:
    return base / CERT_MANAGER_LABEL / version / CERT_MANAGER_FILE


def config(settings: Settings, base: Path) -> dict[str, Any]:
    """clusterctl's config: every provider overridden by a file:// URL into `base`, cert-manager too."""
    providers = [
        {
            "name": s.provider.name,
            "type": s.provider.type,
            "url": components_path(base, s, version_of(settings, s)).as_uri(),
        }
        for s in SOURCES
    ]
    version = settings.versions.cert_manager
    return {
        "providers": providers,
        "cert-manager": {
            "url": cert_manager_path(base, version).as_uri(),
            "version": version,
            "timeout": f"{clusterctl.CERT_MANAGER_WAIT_SECONDS}s",
        },
    }


def set_manager_image(text: str, upstream: str, reference: str, what: str) -> str:
    """The release's `set-manifest-image` on rendered components: the one `image:` line naming the
    module's development image becomes `reference`; every `imagePullPolicy: Always` IfNotPresent."""
    line = re.compile(rf"""(?m)^(\s*(?:- )?image:\s*)["']?{re.escape(upstream)}["']?\s*$""")
    found = len(line.findall(text))
    if found != 1:
        raise LabError(
            f"{what}: expected one manager image {upstream} in the rendered components, found {found}"
        )
    text = line.sub(lambda m: f"{m.group(1)}{reference}", text)
    return re.sub(r"(?m)^(\s*imagePullPolicy:\s*)Always\s*$", r"\1IfNotPresent", text)


def release_series(metadata_text: str) -> set[tuple[int, int]]:
    """(major, minor) of every releaseSeries entry of a clusterctl metadata.yaml."""
    try:
        doc = yaml.safe_load(metadata_text) or {}
    except yaml.YAMLError:
        return set()
    out = set()
    for s in doc.get("releaseSeries") or []:
        try:
            out.add((int(s["major"]), int(s["minor"])))
        except (KeyError, TypeError, ValueError):
            continue
    return out


def minor_of(version: str) -> tuple[int, int]:
    major, minor = version.lstrip("v").split(".")[:2]
    return int(major), int(minor)


def manager_image(doc_text: str) -> str:
    """The image of the container named `manager` in a YAML file (an image patch or a Deployment)."""
    for doc in yaml.safe_load_all(doc_text):
        spec = (((doc or {}).get("spec") or {}).get("template") or {}).get("spec") or {}
        for c in spec.get("containers") or []:
            if c.get("name") == "manager" and c.get("image"):
                return str(c["image"])
    raise LabError("no container named manager with an image")


def split_crds(text: str) -> tuple[list[str], list[str]]:
    """(CRD documents, other documents) of a multi-document YAML text, each kept as its text."""
    crds: list[str] = []
    other: list[str] = []
    for doc in re.split(r"(?m)^---\s*$", text):
        if not doc.strip():
            continue
        try:
            kind = (yaml.safe_load(doc) or {}).get("kind")
        except yaml.YAMLError:
            kind = None
        if kind is None:  # a comment-only document (helm's `# Source:` of an empty template)
            continue
        (crds if kind == "CustomResourceDefinition" else other).append(doc.strip("\n"))
    return crds, other


def join_docs(docs: list[str]) -> str:
    return "".join(f"---\n{d}\n" for d in docs)


# --- checks, before anything is created ------------------------------------------------------------


def _module(key: str, version: str) -> Path:
    """The module in the Go module cache; offline, a module missing there is one line saying what to do
    (and, when the settings moved the version off lab's table, which version the table pins)."""
    module = versions.COMPONENTS[key].module
    try:
        return gomod.module_dir(module, version)
    except LabError:
        pinned = versions.COMPONENTS[key].default
        moved = f" (versions.{key} is {version}; lab's table pins {pinned})" if version != pinned else ""
        raise LabError(
            f"offline: {module}@{version} is not in the Go module cache{moved}; run `go mod download "
            f"{module}@{version}` while online first"
        ) from None


def module_for(settings: Settings, src: Source) -> Path:
    return _module(src.provider.version_key, version_of(settings, src))


def check(settings: Settings) -> list[str]:
    """Every problem that would stop an offline init, one phrase each: a module missing from the
    module cache, a pinned version that its module's metadata.yaml does not list, helm not built."""
    problems = []
    for src in SOURCES:
        version = version_of(settings, src)
        try:
            root = module_for(settings, src)
        except LabError as e:
            problems.append(str(e).removeprefix("offline: "))
            continue
        series = release_series(_read(root / "metadata.yaml"))
        if minor_of(version) not in series:
            problems.append(
                f"{versions.COMPONENTS[src.provider.version_key].module} {version}: its metadata.yaml lists no "
                f"release series v{'.'.join(map(str, minor_of(version)))} (set versions.{src.provider.version_key} "
                f"to a release of that module, e.g. {versions.COMPONENTS[src.provider.version_key].default})"
            )
    for key in ("cert_manager", "bmo"):
        try:
            _module(key, str(getattr(settings.versions, key)))
        except LabError as e:
            problems.append(str(e).removeprefix("offline: "))
    if not build.is_cached(settings, "helm"):
        problems.append(f"helm {settings.versions.helm} is not built (run `lab build helm` while online)")
    return problems


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


# --- rendering -----------------------------------------------------------------------------------


def repository_dir(settings: Settings) -> Path:
    return kind_dir(settings) / REPOSITORY


def config_path(settings: Settings) -> Path:
    return kind_dir(settings) / CONFIG_FILE


def _run(argv: list[str], what: str, cwd: Path | None = None) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False, cwd=cwd)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise LabError(f"{what} failed: {e}") from None
    if out.returncode != 0:
        tail = " | ".join(out.stderr.strip().splitlines()[-2:]) or f"exit {out.returncode}"
        raise LabError(f"{what} failed: {tail}")
    return out.stdout


def render_provider(settings: Settings, kubectl: str, src: Source) -> str:
    """One provider's components YAML, as its release renders it, with lab's image name."""
    root = module_for(settings, src)
    version = version_of(settings, src)
    what = f"{src.provider.name} ({src.provider.type}) {version}"
    spec = images.IMAGES[src.image]
    upstream = manager_image(_read(root / spec.image_yaml))
    text = _run(
        [kubectl, "kustomize", str(root / src.kustomize)], f"kubectl kustomize {src.kustomize} of {what}"
    )
    return set_manager_image(text, upstream, images.resolve(settings, src.image).reference, what)


def _chart_copy(settings: Settings, root: Path, dest: Path) -> Path:
    """The chart, writable, with version and appVersion set as cert-manager's release sets them."""
    chart = dest / "cert-manager"
    shutil.copytree(root / CHART, chart)
    for p in chart.rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)
    chart.chmod(0o755)
    meta = yaml.safe_load((chart / "Chart.yaml").read_text())
    meta["version"] = meta["appVersion"] = settings.versions.cert_manager
    (chart / "Chart.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))
    return chart


def render_cert_manager(settings: Settings, helm: Path) -> str:
    """cert-manager.yaml as its release makes it: namespace, CRDs, then everything else."""
    root = _module("cert_manager", settings.versions.cert_manager)
    with tempfile.TemporaryDirectory(prefix="lab-cert-manager-") as tmp:
        chart = _chart_copy(settings, root, Path(tmp))
        base = [str(helm), "template", *HELM_FLAGS]
        every = _run([*base, "--set=crds.enabled=true", "cert-manager", str(chart)], "helm template (CRDs)")
        rest = _run([*base, "cert-manager", str(chart)], "helm template")
    crds, _ = split_crds(every)
    no_crds, others = split_crds(rest)
    if not crds or no_crds:
        raise LabError(
            f"helm template of cert-manager {settings.versions.cert_manager}: unexpected CRD split"
        )
    namespace = _read(root / NAMESPACE_YAML)
    ns_docs = split_crds(namespace)[1]
    if not ns_docs:
        raise LabError(f"cert-manager {settings.versions.cert_manager}: {NAMESPACE_YAML} holds no namespace")
    return join_docs([*ns_docs, *crds, *others])


@dataclass(frozen=True)
class Rendered:
    config: Path
    files: list[Path]
    seconds: float

    @property
    def cert_manager(self) -> Path:
        """cert-manager.yaml: offline, only its CRDs are applied (lab.kindmgmt.certs)."""
        return next(f for f in self.files if f.name == CERT_MANAGER_FILE)

    @property
    def providers(self) -> list[Path]:
        """The providers' files, without cert-manager.yaml."""
        return [f for f in self.files if f.name != CERT_MANAGER_FILE]


def render(settings: Settings, kubectl: str, log: Log = lambda _m: None) -> Rendered:
    """The whole repository and its config, after check() found nothing missing."""
    problems = check(settings)
    if problems:
        raise LabError(f"lab up --mode kind --offline cannot start: {'; '.join(problems)}")
    started = time.monotonic()
    base = repository_dir(settings)
    files = []
    for src in SOURCES:
        version = version_of(settings, src)
        log(f"rendering {src.provider.name} ({src.provider.type}) {version} from its module")
        path = components_path(base, src, version)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render_provider(settings, kubectl, src))
        shutil.copyfile(module_for(settings, src) / "metadata.yaml", path.parent / "metadata.yaml")
        (path.parent / "metadata.yaml").chmod(0o644)
        files += [path, path.parent / "metadata.yaml"]
    log(f"rendering cert-manager {settings.versions.cert_manager} from its chart")
    cm = cert_manager_path(base, settings.versions.cert_manager)
    cm.parent.mkdir(parents=True, exist_ok=True)
    cm.write_text(render_cert_manager(settings, build.binary_path(settings, "helm")))
    files.append(cm)
    cfg = config_path(settings)
    cfg.write_text(yaml.safe_dump(config(settings, base), sort_keys=False))
    return Rendered(cfg, files, time.monotonic() - started)


def bmo_module(settings: Settings) -> Path:
    """BMO's source offline: its module in the module cache (the overlay's base, lab.kindmgmt.bmo)."""
    return _module("bmo", settings.versions.bmo)
