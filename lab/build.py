"""Build upstream Go programs from their modules into a cache keyed by component and version.

Why wrapper modules: upstream go.mod files carry local `replace` directives (`./staging/src/...`,
`./api`), which `go install pkg@version` refuses. So every target is built from a small generated
module under <home>/src whose go.mod requires the upstream module at the pinned version. Replace
directives only count in the main module, so ours decide: every *local* upstream replace is turned
into a pin of that sibling module to a published version, read from the upstream go.mod in the
module cache at build time (never copied into this repository):

- k8s.io/kubernetes v1.Y.Z: each `k8s.io/<staging> => ./staging/src/k8s.io/<staging>` becomes
  `k8s.io/<staging> => k8s.io/<staging> v0.Y.Z` (the published staging release of the same tag).
- metal3 (CAPM3 `api`, IPAM `api`, BMO `apis` and `pkg/hardwareutils`): the sibling at the parent's
  own version, else the newest earlier patch of the same minor that the proxy serves (BMO v0.13.2
  ships no `pkg/hardwareutils/v0.13.2` tag; v0.13.1 is used and the build log says so).
- non-local upstream replaces are copied verbatim; the wrapper's `go` and `godebug` lines copy the
  upstream ones, so runtime GODEBUG defaults match an upstream build.

Binaries land in <home>/bin/<component>/<version>/<name>, with <name>.json beside each (build
seconds, Go version, ldflags), and are reused until the version changes.

Patched builds: the patches of a target are `<patches>/<component>/*.patch` (every binary of that
module: `capi` patches capi-, kcp- and cabpk-manager) then `<patches>/<target>/*.patch` (that binary
only), each set sorted by name; `<patches>` is the repository's patches/ unless settings.patches
says otherwise, and `lab build NAME --patch FILE...` replaces the set for one build. They are
applied to a COPY of the module (the module cache is read-only and shared) that the wrapper's go.mod
then replaces the module with, and the binary goes to <component>/<version>-patched-<digest>/, the
digest being that of the patches' names and bytes in order: the unpatched and each patched build
live side by side, and the same patches again cost nothing. Only the module's own files can be
patched: Go's module zips leave out nested modules (CAPM3's api/, Kubernetes' staging/), which are
built from their published versions as above. Cost, measured on 2 busy cores: a patched
kcp-manager in 11.5 s when Go's build cache holds the upstream build's packages (only the patched
package and its importers compile), 466 s with an empty one.

lab's own Go programs (lab-mux, the `mux` backing's server) are modules shipped inside this package
(`source`), built in place from a copy; their "version" is a digest of the module's files (go.mod,
go.sum and the non-test .go files), not the upstream version they pin: the binary must change when
lab's own code changes, which an upstream version in the cache key would miss (a stale binary reused
after an edit), and a bump of the pinned upstream version changes go.mod, so the digest too.

Running the managers outside a cluster (for lab.stack; read from each main.go at the pinned
versions, CAPI v1.13 / CAPM3 and IPAM v1.13 / BMO v0.13). Every manager binds the same default
ports, so a local stack must give each its own:

- capi-manager (package sigs.k8s.io/cluster-api), kcp-manager (.../controlplane/kubeadm),
  cabpk-manager (.../bootstrap/kubeadm), pflag: `--kubeconfig` (controller-runtime, from the Go
  flag set), `--leader-elect` (default false), `--namespace` (watch one namespace; default all),
  `--watch-filter`, `--webhook-port` (9443), `--webhook-cert-dir`
  (/tmp/k8s-webhook-server/serving-certs/, must hold tls.crt and tls.key; names via
  `--webhook-cert-name/--webhook-key-name`), `--diagnostics-address` (:8443, HTTPS with
  authn/authz unless `--insecure-diagnostics`), `--health-addr` (:9440), `--feature-gates`,
  `--sync-period`, `--skip-crd-migration-phases` (the v1.13 managers run a CRD migrator over their
  own CRDs at start). All three register conversion/validation webhooks, so their CRDs and webhook
  configurations must point at the webhook port with the CA of the serving cert.
- capm3-manager (github.com/metal3-io/cluster-api-provider-metal3), pflag: the same set
  (`--leader-elect`, `--namespace`, `--webhook-port`, `--webhook-cert-dir`, `--diagnostics-address`,
  `--insecure-diagnostics`, `--health-addr`). It needs the BareMetalHost CRD. It does NOT need IPAM:
  Metal3DataReconciler lists IPClaim/IPAddressClaim at start and skips those watches when the CRDs
  are absent; IPAM (controller and CRDs) is only needed when Metal3DataTemplates reference IP pools.
- ipam-manager (github.com/metal3-io/ip-address-manager), pflag: `--leader-elect`, `--namespace`,
  `--webhook-port`, `--webhook-cert-dir`, `--diagnostics-address`, `--health-addr`,
  `--ippool-concurrency`, `--kube-api-qps/burst`.
- bmo-manager (github.com/metal3-io/baremetal-operator), Go flag package (single or double dash):
  `-test-mode` (fixture provisioner: no Ironic), `-namespace` (default $WATCH_NAMESPACE; empty =
  all), `-enable-leader-election` (default false), `-metrics-addr` (:8443, HTTPS), `-health-addr`
  (:9440), `-webhook-port` (9443; 0 disables the webhook server, as upstream `make run-test-mode`
  does), `-dev` (human-readable logs), `--controller-concurrency`, `--kube-api-qps/burst`, and
  `-kubeconfig` from controller-runtime. Environment: KUBECONFIG, WATCH_NAMESPACE, BMO_CONCURRENCY
  (used only when --controller-concurrency is 0), POD_NAMESPACE (leader-election namespace, and the
  Ironic CR namespace when IRONIC_NAME is set; leave IRONIC_NAME unset in test mode). None of the
  Ironic variables (IRONIC_ENDPOINT, DEPLOY_*) are read in test mode.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lab import gomod, versions
from lab.config import Settings
from lab.errors import LabError
from lab.runtime import lock

Log = Callable[[str], None]


@dataclass(frozen=True)
class Target:
    """One binary: which component's version pins it, which package to build, and extra go.mod lines."""

    name: str
    component: str
    package: str
    #: Extra go.mod lines (require/replace), computed from settings when needed.
    extra_gomod: Callable[[Settings], list[str]] = field(default=lambda _s: [])
    #: `-X` ldflags that stamp the version the way upstream's Makefile does.
    stamp: Callable[[Settings], list[str]] = field(default=lambda _s: [])
    what: str = ""
    #: A Go module shipped inside this package (lab's own program): built from a copy of it, and
    #: versioned by source_version's digest instead of a pinned upstream version.
    source: Path | None = None
    #: Built by a bare `lab build`; False for what only `lab images build node` needs (20+ CPU-minutes).
    default: bool = True


#: The Go module of lab-mux, inside the package (lab/mux).
MUX_SOURCE = Path(__file__).resolve().parent / "mux"


def _source_files(source: Path) -> list[Path]:
    """What a build of an in-package module reads: go.mod, go.sum and the non-test .go files."""
    files = [source / "go.mod", source / "go.sum"]
    files += sorted(p for p in source.glob("*.go") if not p.name.endswith("_test.go"))
    return [p for p in files if p.is_file()]


@functools.cache
def source_version(source: Path) -> str:
    """src-<12 hex>: a digest of the module's files (names and contents), so any edit rebuilds."""
    h = hashlib.sha256()
    for p in _source_files(source):
        h.update(p.name.encode() + b"\0" + p.read_bytes() + b"\0")
    return f"src-{h.hexdigest()[:12]}"


def _version(settings: Settings, component: str) -> str:
    return str(getattr(settings.versions, component))


def target_version(settings: Settings, name: str | Target) -> str:
    """The version a target's binary is cached under: the pinned upstream one, or an in-package
    module's digest."""
    t = _target(name)
    return source_version(t.source) if t.source is not None else _version(settings, t.component)


def _k8s_stamp(s: Settings) -> list[str]:
    # hack/lib/version.sh sets the same keys in both packages; /version and --version read them.
    v = s.versions.kubernetes
    major, minor = s.versions.minor("kubernetes")
    keys = {"gitVersion": v, "gitMajor": str(major), "gitMinor": str(minor), "gitTreeState": "clean"}
    return [
        f"-X {pkg}.{k}={val}"
        for pkg in ("k8s.io/client-go/pkg/version", "k8s.io/component-base/version")
        for k, val in keys.items()
    ]


def _capi_stamp(s: Settings) -> list[str]:
    # hack/version.sh; the managers log this version at start-up.
    v = s.versions.capi
    major, minor = s.versions.minor("capi")
    keys = {"gitVersion": v, "gitMajor": str(major), "gitMinor": str(minor), "gitTreeState": "clean"}
    return [f"-X sigs.k8s.io/cluster-api/version.{k}={val}" for k, val in keys.items()]


def _bmo_stamp(s: Settings) -> list[str]:
    # Makefile LDFLAGS: pkg/version.Raw is what BMO logs as its version.
    return [f"-X github.com/metal3-io/baremetal-operator/pkg/version.Raw={s.versions.bmo}"]


def _k8s_staging_candidates(_module: str, parent: str) -> list[str]:
    # Kubernetes v1.Y.Z publishes every staging module as v0.Y.Z from the same commit.
    return ["v0." + parent.removeprefix("v1.")]


def _same_minor_candidates(_module: str, parent: str) -> list[str]:
    # Sibling modules are tagged with the parent's version, but not always every patch.
    major, minor, patch = (int(p) for p in parent.lstrip("v").split("."))
    return [f"v{major}.{minor}.{p}" for p in range(patch, -1, -1)]


def _siblings(component: str, candidates: Callable[[str, str], list[str]]) -> Callable[[Settings], list[str]]:
    """go.mod lines that replace the upstream module's local replaces with published versions, and
    pin metal3-io requirements the proxy does not serve to the nearest published patch."""

    def lines(s: Settings) -> list[str]:
        version = _version(s, component)
        upstream = gomod.read_gomod(gomod.component_dir(component, version) / "go.mod")
        out = []
        replaced = set()
        for old, new in upstream.replaces:
            module = old.split()[0]
            replaced.add(module)
            if not new.startswith(("./", "../")):
                out.append(f"replace {old} => {new}")
                continue
            out.append(
                f"replace {module} => {module} {_first_published(module, candidates(module, version))}"
            )
        for module, wanted in upstream.requires:
            if module in replaced or not module.startswith(versions.NOSUMDB):
                continue
            # Only these bypass the sum database, and a partial mirror may lack a patch release.
            got = _first_published(module, _same_minor_candidates(module, wanted))
            if got != wanted:
                out.append(
                    f"// lab: {module} {wanted} is not served by the module proxy; nearest earlier patch {got}"
                )
                out.append(f"replace {module} => {module} {got}")
        return out

    return lines


def _first_published(module: str, tried: list[str]) -> str:
    for v in tried:
        try:
            gomod.module_dir(module, v)
        except LabError:
            continue
        return v
    raise LabError(f"no published version of {module} among {', '.join(tried)}")


_K8S = _siblings("kubernetes", _k8s_staging_candidates)
_CAPM3 = _siblings("capm3", _same_minor_candidates)
_IPAM = _siblings("ipam", _same_minor_candidates)
_BMO = _siblings("bmo", _same_minor_candidates)

TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        # Build order matters for whoever waits: the stack needs the Kubernetes binaries first.
        Target("etcd", "etcd", "go.etcd.io/etcd/server/v3", what="etcd server"),
        Target(
            "etcdctl",
            "etcd",
            "go.etcd.io/etcd/etcdctl/v3",
            lambda s: [f"require go.etcd.io/etcd/etcdctl/v3 {s.versions.etcd}"],
            what="etcd client",
        ),
        Target("kube-apiserver", "kubernetes", "k8s.io/kubernetes/cmd/kube-apiserver", _K8S, _k8s_stamp),
        Target(
            "kube-controller-manager",
            "kubernetes",
            "k8s.io/kubernetes/cmd/kube-controller-manager",
            _K8S,
            _k8s_stamp,
        ),
        Target("capi-manager", "capi", "sigs.k8s.io/cluster-api", stamp=_capi_stamp, what="CAPI core"),
        Target(
            "kcp-manager",
            "capi",
            "sigs.k8s.io/cluster-api/controlplane/kubeadm",
            stamp=_capi_stamp,
            what="kubeadm control plane",
        ),
        Target(
            "cabpk-manager",
            "capi",
            "sigs.k8s.io/cluster-api/bootstrap/kubeadm",
            stamp=_capi_stamp,
            what="kubeadm bootstrap",
        ),
        Target("bmo-manager", "bmo", "github.com/metal3-io/baremetal-operator", _BMO, _bmo_stamp, "BMO"),
        Target(
            "capm3-manager", "capm3", "github.com/metal3-io/cluster-api-provider-metal3", _CAPM3, what="CAPM3"
        ),
        Target("ipam-manager", "ipam", "github.com/metal3-io/ip-address-manager", _IPAM, what="Metal3 IPAM"),
        # kind mode offline only: renders cert-manager's release manifest from its chart (lab.kindmgmt.offline)
        Target("helm", "helm", "helm.sh/helm/v4/cmd/helm", what="helm template of cert-manager's chart"),
        # kind mode's node image only (lab.images_node): not built by a bare `lab build`.
        *(
            Target(
                n,
                "kubernetes",
                f"k8s.io/kubernetes/cmd/{n}",
                _K8S,
                _k8s_stamp,
                "kind node image",
                default=False,
            )
            for n in ("kubeadm", "kubelet", "kubectl", "kube-scheduler", "kube-proxy")
        ),
        Target(
            "node-etcd",
            "node_etcd",
            "go.etcd.io/etcd/server/v3",
            what="kind node image's etcd",
            default=False,
        ),
        Target(
            "coredns", "coredns", "github.com/coredns/coredns", what="kind node image's DNS", default=False
        ),
        # last: only the mux backing needs it (CAPI's in-memory API server library, imported by lab/mux)
        Target("lab-mux", "lab-mux", ".", what="multiplexed workload APIs", source=MUX_SOURCE),
    )
}


def _target(name: str | Target) -> Target:
    """A table entry by name, or a Target given whole (a tool only the tests build, e.g. clusterctl)."""
    return name if isinstance(name, Target) else TARGETS[name]


# --- patches -------------------------------------------------------------------------------------

#: The tool that applies patches, and why this one: `git apply` is all-or-nothing (a patch with one
#: bad hunk leaves the copy untouched, where GNU patch applies the hunks that fit and leaves .rej
#: files), refuses fuzz (GNU patch's default fuzz 2 can put a hunk at the wrong place in a changed
#: file), never writes outside the tree, and names the first failing hunk as `patch failed:
#: <file>:<line>`. Run outside any repository (GIT_CEILING_DIRECTORIES), it behaves like patch -p1.
PATCH_TOOL = "git apply"


@dataclass(frozen=True)
class Patches:
    """The ordered patch files of one build; empty means the upstream source as published."""

    files: tuple[Path, ...] = ()

    @property
    def names(self) -> list[str]:
        """`<dir>/<file>` (patches/kcp-manager/x.patch -> kcp-manager/x.patch): what status shows."""
        return [f"{p.parent.name}/{p.name}" for p in self.files]

    @property
    def digest(self) -> str:
        """12 hex digits of sha256 over each patch's name and bytes, in order ("" when none)."""
        if not self.files:
            return ""
        h = hashlib.sha256()
        for name, path in zip(self.names, self.files, strict=True):
            h.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
        return h.hexdigest()[:12]


def patch_dirs(settings: Settings, name: str | Target) -> list[Path]:
    """Where a target's default patches live: its module's directory, then its own."""
    t = _target(name)
    root = settings.patches_dir
    return [root / t.component] + ([root / t.name] if t.name != t.component else [])


def default_patches(settings: Settings, name: str | Target) -> Patches:
    """Every *.patch in the target's patch directories, each directory sorted by file name."""
    return Patches(
        tuple(p for d in patch_dirs(settings, name) for p in sorted(d.glob("*.patch")) if p.is_file())
    )


#: A directory of the patches' root that is never applied: worked examples, run by pointing the
#: `patches` setting at it (LAB_PATCHES=<clone>/patches/examples).
EXAMPLES = "examples"


def check_patch_dirs(settings: Settings) -> None:
    """A directory of patches that names no component or target would be ignored silently: refuse it
    (examples/ aside)."""
    root = settings.patches_dir
    known = {*versions.COMPONENTS, *TARGETS, EXAMPLES}
    stray = sorted(
        d.name
        for d in (root.iterdir() if root.is_dir() else [])
        if d.is_dir() and d.name not in known and any(d.glob("*.patch"))
    )
    if stray:
        raise LabError(
            f"{root}/{stray[0]}: patches for an unknown component or target; use one of {', '.join(sorted(known))}",
            exit_code=2,
        )


def given_patches(files: Sequence[Path]) -> Patches:
    """`lab build --patch FILE...`: the files as given, in that order; each must be a readable file."""
    for f in files:
        if not f.is_file():
            raise LabError(f"patch {f} is not a file", exit_code=2)
    return Patches(tuple(f.absolute() for f in files))


def _patches(settings: Settings, name: str | Target, patches: Patches | None) -> Patches:
    return default_patches(settings, name) if patches is None else patches


def _first_failing_hunk(patch_text: str, stderr: str) -> str:
    """Pure: git apply's first complaint, with the hunk header it means when it names one."""
    errors = [ln.removeprefix("error: ").strip() for ln in stderr.splitlines() if ln.startswith("error: ")]
    if not errors:
        return stderr.strip().splitlines()[0] if stderr.strip() else "git apply failed"
    m = re.match(r"patch failed: (.+):(\d+)$", errors[0])
    if not m:
        return errors[0]
    path, line = m[1], m[2]
    current = None
    for ln in patch_text.splitlines():
        if ln.startswith("+++ "):
            current = ln[4:].split("\t")[0].strip()
            current = current[2:] if current.startswith(("a/", "b/")) else current
        elif current == path and ln.startswith((f"@@ -{line},", f"@@ -{line} ")):
            return f"hunk {ln.split(' @@')[0]} @@ of {path} does not match"
    return f"hunk at {path}:{line} does not match"


def apply_patches(source: Path, patches: Patches, label: str) -> None:
    """Apply each patch in order to the tree at `source` (a writable copy); the first that does not
    apply raises one line naming it and its first failing hunk."""
    git = shutil.which("git")
    if git is None:
        raise LabError(f"git is not installed: lab applies source patches with {PATCH_TOOL}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env["GIT_CEILING_DIRECTORIES"] = str(source.parent)  # never a repository above the copy
    for name, path in zip(patches.names, patches.files, strict=True):
        out = subprocess.run(
            [git, "apply", "--whitespace=nowarn", str(path)],
            cwd=source,
            env=env,
            capture_output=True,
            text=True,
        )
        if out.returncode != 0:
            text = path.read_text(errors="replace")
            raise LabError(f"patch {name} does not apply to {label}: {_first_failing_hunk(text, out.stderr)}")


def _writable_copy(pristine: Path, dest: Path) -> None:
    """Copy a module out of the (read-only) module cache, every file and directory writable."""
    shutil.copytree(pristine, dest, symlinks=True)
    for root, dirs, files in os.walk(dest):
        for d in dirs:
            os.chmod(os.path.join(root, d), 0o755)
        for f in files:
            p = os.path.join(root, f)
            if not os.path.islink(p):
                os.chmod(p, 0o644 | (os.stat(p).st_mode & 0o111))
    os.chmod(dest, 0o755)


def _rmtree(path: Path) -> None:
    """Remove a tree that may hold read-only directories (an interrupted copy)."""

    def writable(func: Callable[..., object], p: str, _exc: object) -> None:
        os.chmod(os.path.dirname(p), 0o755)
        os.chmod(p, 0o755)
        func(p)

    if path.exists():
        shutil.rmtree(path, onerror=writable)  # onexc from Python 3.12


# --- the cache ------------------------------------------------------------------------------------


def _variant(settings: Settings, t: Target, patches: Patches | None) -> str:
    """The cache directory's version part: `<version>`, or `<version>-patched-<digest>`."""
    digest = _patches(settings, t, patches).digest
    version = target_version(settings, t)
    return f"{version}-patched-{digest}" if digest else version


def binary_path(settings: Settings, name: str | Target, patches: Patches | None = None) -> Path:
    """Where the binary of a target lives; `patches` None means the target's default patches."""
    t = _target(name)
    return settings.bin_dir / t.component / _variant(settings, t, patches) / t.name


def log_path(settings: Settings, name: str | Target, patches: Patches | None = None) -> Path:
    t = _target(name)
    return settings.log_dir / "build" / f"{t.name}-{_variant(settings, t, patches)}.log"


def is_cached(settings: Settings, name: str | Target, patches: Patches | None = None) -> bool:
    out = binary_path(settings, name, patches)
    return out.is_file() and os.access(out, os.X_OK)


def read_info(binary: Path) -> dict[str, object]:
    """What was recorded beside a binary when it was built ({} when unknown)."""
    try:
        return dict(json.loads(binary.with_suffix(".json").read_text()))
    except (OSError, ValueError):
        return {}


def build_info(settings: Settings, name: str, patches: Patches | None = None) -> dict[str, object]:
    """What was recorded when the cached binary was built ({} when unknown)."""
    return read_info(binary_path(settings, name, patches))


def patch_info(binary: Path) -> dict[str, Any] | None:
    """{"patches": [names], "digest": ...} of a binary lab built with patches; None for an upstream one."""
    info = read_info(binary)
    names = info.get("patches")
    if not names:
        return None
    return {"patches": names, "digest": info.get("patch_digest")}


def describe_patches(info: dict[str, Any] | None) -> str:
    """Pure: `a.patch, b.patch (digest)` for status and report; "" when upstream."""
    if not info:
        return ""
    return f"{', '.join(map(str, info.get('patches') or []))} ({info.get('digest')})"


def go_version() -> tuple[int, int]:
    try:
        out = subprocess.run(
            [gomod.go_binary(), "env", "GOVERSION"], capture_output=True, text=True, check=False, timeout=60
        )
    except OSError as e:
        raise LabError(f"cannot run go: {e}") from e
    m = re.match(r"go(\d+)\.(\d+)", out.stdout.strip())
    if not m:
        raise LabError(f"cannot tell the Go version (go env GOVERSION said {out.stdout.strip()!r})")
    return int(m[1]), int(m[2])


def _go_version_string() -> str:
    out = subprocess.run([gomod.go_binary(), "env", "GOVERSION"], capture_output=True, text=True, check=False)
    return out.stdout.strip()


def check_go() -> None:
    have = go_version()
    if have < versions.GO_MIN:
        need = ".".join(map(str, versions.GO_MIN))
        raise LabError(f"Go {have[0]}.{have[1]} is too old: building the pinned components needs Go {need}+")


#: the patched copy of the upstream module, inside the wrapper module's directory
PATCHED_SOURCE = "upstream"


def wrapper_gomod(settings: Settings, t: Target, patched: bool = False) -> str:
    if t.source is not None:  # lab's own module: its go.mod as shipped
        return (t.source / "go.mod").read_text()
    comp = versions.COMPONENTS[t.component]
    version = _version(settings, t.component)
    upstream = gomod.module_dir(comp.module, version) / "go.mod"
    lines = [f"module lab.local/build/{t.name}", "", *gomod.read_gomod(upstream).directives(), ""]
    lines += [f"require {comp.module} {version}", *t.extra_gomod(settings)]
    if patched:
        lines.append(f"replace {comp.module} => ./{PATCHED_SOURCE}")
    return "\n".join(lines) + "\n"


def ldflags(settings: Settings, t: Target) -> str:
    return " ".join(["-s", "-w", *t.stamp(settings)])


def _patched_copy(t: Target, patches: Patches, version: str, src: Path, log: Log) -> None:
    """The module's copy with the patches applied, at src/PATCHED_SOURCE, before anything is cached:
    a patch that does not apply changes nothing in the cache (and leaves no copy)."""
    if t.source is not None:
        raise LabError(
            f"{t.name} is lab's own module ({t.source}): edit it there rather than patch it", exit_code=2
        )
    _rmtree(src)
    src.mkdir(parents=True)
    module = versions.COMPONENTS[t.component].module
    log(
        f"applying {len(patches.files)} patch(es) to a copy of {module} {version}: {', '.join(patches.names)}"
    )
    try:
        _writable_copy(gomod.module_dir(module, version), src / PATCHED_SOURCE)
        apply_patches(src / PATCHED_SOURCE, patches, f"{module} {version}")
    except BaseException:
        _rmtree(src)
        raise


def build(
    settings: Settings, name: str | Target, log: Log = lambda _m: None, patches: Patches | None = None
) -> Path:
    """Build one target (a name in TARGETS, or a Target) if its binary is not cached yet; return its
    path. `patches` None: the target's default patches (settings.patches_dir)."""
    if isinstance(name, str) and name not in TARGETS:
        raise LabError(f"unknown build target {name!r}; known: {', '.join(TARGETS)}", exit_code=2)
    t = _target(name)
    name = t.name
    if patches is None:
        check_patch_dirs(settings)
    patches = _patches(settings, t, patches)
    out = binary_path(settings, t, patches)
    if is_cached(settings, t, patches):
        return out
    check_go()
    # The bin cache may be shared (LAB_BIN_CACHE): two lab homes building the same binary at once
    # wrote one temp file and one of them failed (seen: two test workers' cold `lab up`). One builder
    # per cache: go build already uses both cores, so parallel builds of different binaries gain little.
    with lock.waiting(settings.bin_dir, lambda: log(f"waiting for another build in {settings.bin_dir}")):
        if is_cached(settings, t, patches):
            return out  # built by the holder we waited for
        return _build_locked(settings, t, patches, out, log)


def _build_locked(settings: Settings, t: Target, patches: Patches, out: Path, log: Log) -> Path:
    name = t.name
    version = target_version(settings, t)
    variant = _variant(settings, t, patches)
    src = settings.src_dir / f"{name}-{variant}"
    if patches.files:
        _patched_copy(t, patches, version, src, log)
    logfile = log_path(settings, t, patches)
    logfile.parent.mkdir(parents=True, exist_ok=True)
    try:
        gomod_text = wrapper_gomod(settings, t, patched=bool(patches.files))
    except LabError as e:
        logfile.write_text(f"preparing the wrapper module failed: {e}\n")
        raise LabError(f"building {name} {variant} failed: {e} (log: {logfile})") from None
    src.mkdir(parents=True, exist_ok=True)
    if t.source is not None:  # a copy: the package directory may be read-only (site-packages)
        for f in _source_files(t.source):
            shutil.copyfile(f, src / f.name)
    (src / "go.mod").write_text(gomod_text)
    try:
        return _compile(settings, t, src, out, gomod_text, logfile, patches, log)
    finally:
        if patches.files:  # the copy is only for this build (tens of MiB); go.mod stays for the log
            _rmtree(src / PATCHED_SOURCE)


def _compile(
    settings: Settings,
    t: Target,
    src: Path,
    out: Path,
    gomod_text: str,
    logfile: Path,
    patches: Patches,
    log: Log,
) -> Path:
    name, version, variant = t.name, target_version(settings, t), _variant(settings, t, patches)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{name}.tmp")
    flags = ldflags(settings, t)
    log(f"building {name} {variant} (log: {logfile})")
    started = time.monotonic()
    with logfile.open("w") as fh:
        fh.write(f"# wrapper go.mod\n{gomod_text}\n")
        for cmd in (
            [gomod.go_binary(), "mod", "download"],
            [
                gomod.go_binary(),
                "build",
                "-mod=mod",
                "-trimpath",
                f"-ldflags={flags}",
                "-o",
                str(tmp),
                t.package,
            ],
        ):
            # download fills go.sum for the requirements; build adds what the package needs.
            fh.write(f"$ {' '.join(cmd)}\n")
            fh.flush()
            rc = subprocess.run(
                cmd, cwd=src, env=gomod.go_env(), stdout=fh, stderr=subprocess.STDOUT
            ).returncode
            if rc != 0 and cmd[1] == "build":
                raise LabError(f"building {name} {variant} failed (go build exit {rc}); see {logfile}")
    seconds = time.monotonic() - started
    tmp.rename(out)
    info = {
        "name": name,
        "version": version,
        "package": t.package,
        "seconds": round(seconds, 1),
        "go": _go_version_string(),
        "ldflags": flags,
        "built": datetime.now(UTC).isoformat(timespec="seconds"),
        "bytes": out.stat().st_size,
    }
    if patches.files:
        info |= {"patches": patches.names, "patch_digest": patches.digest, "patch_tool": PATCH_TOOL}
    out.with_suffix(".json").write_text(json.dumps(info, indent=2) + "\n")
    log(f"built {name} {variant} in {seconds:.0f}s")
    return out


def ensure(settings: Settings, names: list[str], log: Log = lambda _m: None) -> dict[str, Path]:
    return {n: build(settings, n, log) for n in names}


# --- pause: the one C program ---------------------------------------------------------------------

#: where the pinned Kubernetes module keeps pause's source, and the flags its Makefile compiles it with
PAUSE_SOURCE = "build/pause/linux/pause.c"
PAUSE_CFLAGS = ("-Os", "-Wall", "-Werror", "-static")


def pause_path(settings: Settings) -> Path:
    return settings.bin_dir / "pause" / versions.PAUSE / "pause"


def build_pause(settings: Settings, log: Log = lambda _m: None) -> Path:
    """The pause program of the kind node image, compiled from the pinned Kubernetes module's C source
    as its Makefile does (static, so it runs FROM scratch); cached like the Go binaries."""
    out = pause_path(settings)
    if out.is_file() and os.access(out, os.X_OK):
        return out
    with lock.waiting(settings.bin_dir, lambda: log(f"waiting for another build in {settings.bin_dir}")):
        if out.is_file() and os.access(out, os.X_OK):
            return out
        return _build_pause_locked(settings, out, log)


def _build_pause_locked(settings: Settings, out: Path, log: Log) -> Path:
    cc = shutil.which("gcc")
    if cc is None:
        raise LabError(
            "building pause needs gcc and the static C library (Debian: apt-get install gcc libc6-dev)"
        )
    source = (
        gomod.module_dir(versions.COMPONENTS["kubernetes"].module, settings.versions.kubernetes)
        / PAUSE_SOURCE
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(".pause.tmp")
    started = time.monotonic()
    cmd = [cc, *PAUSE_CFLAGS, f"-DVERSION=v{versions.PAUSE}-lab", "-o", str(tmp), str(source)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    if res.returncode != 0:
        raise LabError(f"building pause failed: {' '.join(res.stderr.strip().splitlines()[-2:])}")
    tmp.rename(out)
    seconds = time.monotonic() - started
    info = {
        "name": "pause",
        "version": versions.PAUSE,
        "source": f"{settings.versions.kubernetes}/{PAUSE_SOURCE}",
        "seconds": round(seconds, 1),
        "cc": " ".join(cmd[:-4]),
        "bytes": out.stat().st_size,
        "built": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    out.with_suffix(".json").write_text(json.dumps(info, indent=2) + "\n")
    log(f"built pause {versions.PAUSE} in {seconds:.1f}s")
    return out
