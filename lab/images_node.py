"""kind's node image for the pinned Kubernetes, and the control-plane images inside it, built here from
lab's builds, never pulled: what `kind build node-image` makes, which cannot run offline (it always
fetches etcd, CoreDNS, pause and kindnetd).

The steps are kind's own (its images/base Dockerfile and pkg/build/nodeimage), done without a registry:

1. a node root by `debootstrap --variant=minbase --include=<NODE_PACKAGES>` of the host's Debian release
   (systemd, containerd, runc, the CNI plugins, iptables, conntrack, iproute2, mount, ...), imported
   into the engine and saved as an archive (the slow step, cached by the package list);
2. FROM that root: kind's `images/base/files` from the kind module at the pinned version (entrypoint,
   units and drop-ins, containerd's config), the base Dockerfile's set-up (units enabled, `/sbin/init`,
   containerd's `cri-base.json`), kubeadm/kubelet/kubectl in /usr/bin and /kind/version, and two
   changes to kind's containerd config: `restrict_oom_score_adj = true` (nothing inside a node can lower
   oom_score_adj on a host without CAP_SYS_RESOURCE) and the sandbox image kubeadm's own pause;
3. the control-plane images (below) imported into the node's containerd the way kind's importer does
   (`ctr -n k8s.io images import --no-unpack`, in a container of the step-2 image), committed with kind's
   ENTRYPOINT as `kindest/node:<kubernetes version>`, the name lab.kindmgmt.cluster.node_image uses.

The control-plane images are the ones `kubeadm config images list` names at the pinned version (read
from the built kubeadm, so a version bump that changes them cannot go unnoticed): the Kubernetes
programs, etcd and CoreDNS on lab's minimal Debian base (lab.images; the binaries are dynamically
linked), kube-proxy on the node root (it needs iptables and conntrack userspace), pause FROM scratch
(static). The binaries go where the upstream images keep them, so kubeadm's manifests need no edit.

The image carries the label NODE_LABEL (its recipe), which is how lab.kindmgmt tells lab's own node
image, which has no pod network (no kindnetd: its module is not served), from a kindest/node from a
registry.

The archive (<home>/images/node/<version>/node.tar) is keyed by everything the image holds: the sha256 of
each binary, the kind version, the node packages and RECIPE; a second build with the same key costs
nothing when the engine has the image, and a `docker load` when it does not.

Measured here (2 cores shared with other builds and tests, load average 12-16 throughout):
- Go builds (`lab build`, Go's build cache already holding kube-apiserver's packages): kubeadm 27 s,
  kubelet 28 s, kubectl 131 s, kube-scheduler 20 s, kube-proxy 33 s, etcd v3.6.6 58 s, CoreDNS 782 s
  (its plugins' dependencies were not in the cache); pause (gcc -static) 0.2 s;
- the node root (debootstrap of 20 packages and their dependencies, import, save): 230 s once, a
  276 MB archive;
- the node image with the base and root loaded from their archives: 105 s (seven control-plane
  images, the staged root, the import, the commit and the save); the archive is 1.5 GB (1513 MiB);
  `lab images build node` in a new lab home, base and root from their archives: 69 s (load 7-11);
  warm: 1-2.4 s when the engine has it (hashing the binaries for the key), 32-37 s to load the archive
  into a fresh engine;
- `kind create cluster` with 3 control-plane nodes on it: 130 s, every node Ready 14 s after lab's
  pod network (lab.kindmgmt.podnet), every kube-system pod Running (132-135 s for the two together in
  tests/integration/test_kind_node_image.py, load average 14-20).
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import tarfile
import tempfile
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lab import build, gomod, images, versions
from lab.config import Settings
from lab.engine import Client, EngineError
from lab.errors import LabError

Log = Callable[[str], None]

NAME = "node"
NODE_REPOSITORY = "kindest/node"
ROOT_REPOSITORY = "lab.local/kind-node-root"
#: the label that marks lab's own node image; its value is the key of what the image holds
NODE_LABEL = "lab.kind-node"
#: bump when the recipe below changes what an image holds without changing a binary or a package
RECIPE = 1
#: kind's ENTRYPOINT (images/base/Dockerfile; pkg/build/nodeimage commits it again)
ENTRYPOINT = ["/usr/local/bin/entrypoint", "/sbin/init"]

#: kind's base image package set (images/base/Dockerfile) for what a node here runs, with Debian's
#: containerd, runc and CNI plugins in place of kind's own builds; leaving out storage-test packages
#: (nfs-common, open-iscsi) and fuse-overlayfs (rootless only)
NODE_PACKAGES = (
    "systemd",
    "containerd",
    "runc",
    "containernetworking-plugins",
    "conntrack",
    "iptables",
    "nftables",
    "iproute2",
    "ethtool",
    "util-linux",
    "mount",
    "kmod",
    "libseccomp2",
    "pigz",
    "e2fsprogs",
    "bash",
    "ca-certificates",
    "jq",
    "procps",
    "socat",
)
#: kube-proxy needs these from the node root; everything else runs on lab's minimal base
_ON_NODE_ROOT = ("kube-proxy",)


@dataclass(frozen=True)
class ControlPlaneImage:
    """One image kubeadm expects, and how lab makes it."""

    reference: str
    binary: Path
    #: where the upstream image keeps the program
    path: str
    #: "base" (lab's minimal Debian), "root" (the node root), "scratch"
    base: str
    entrypoint: tuple[str, ...] = ()
    user: str = ""


def recipe(reference: str) -> tuple[str, str, str, tuple[str, ...], str]:
    """Pure: (lab build target or "pause", path in the image, base, ENTRYPOINT, USER) of an image
    kubeadm names, by its repository's last element; a LabError for one lab cannot make."""
    repo = reference.rsplit(":", 1)[0].rsplit("/", 1)[-1]
    if repo in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy"):
        # kubeadm's static pods and kube-proxy's DaemonSet run the program by name from PATH
        base = "root" if repo in _ON_NODE_ROOT else "base"
        return repo, f"/usr/local/bin/{repo}", base, (), ""
    if repo == "etcd":
        return "node-etcd", "/usr/local/bin/etcd", "base", (), ""
    if repo == "coredns":
        # kubeadm's Deployment passes only args; root, so it binds :53 without the file capability the
        # upstream binary has (the Deployment adds NET_BIND_SERVICE)
        return "coredns", "/coredns", "base", ("/coredns",), ""
    if repo == "pause":
        return "pause", "/pause", "scratch", ("/pause",), "65535:65535"
    raise LabError(f"kubeadm expects {reference}, which lab does not know how to build")


def expected_images(kubeadm: Path, version: str) -> list[str]:
    """What `kubeadm config images list` names for the pinned version: the images a node must hold."""
    out = subprocess.run(
        [str(kubeadm), "config", "images", "list", "--kubernetes-version", version],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    refs = [line.strip() for line in out.stdout.splitlines() if line.strip()]
    if out.returncode != 0 or not refs:
        raise LabError(f"kubeadm config images list failed: {out.stderr.strip()[-300:]}")
    return refs


def check_pins(refs: list[str], settings: Settings) -> None:
    """The etcd, CoreDNS and pause tags kubeadm names must be the versions lab.versions pins."""
    tags = {r.rsplit(":", 1)[0].rsplit("/", 1)[-1]: r.rsplit(":", 1)[1] for r in refs}
    want = {
        "etcd": settings.versions.node_etcd.lstrip("v") + "-0",
        "coredns": settings.versions.coredns,
        "pause": versions.PAUSE,
    }
    for repo, tag in want.items():
        if tags.get(repo) != tag:
            raise LabError(
                f"kubeadm {settings.versions.kubernetes} expects {repo} {tags.get(repo)}, lab pins {tag}: "
                "update lab/versions.py"
            )


def control_plane_images(settings: Settings, log: Log) -> list[ControlPlaneImage]:
    """Every image kubeadm expects, with its binary built (cached) first."""
    kubeadm = build.build(settings, "kubeadm", log)
    refs = expected_images(kubeadm, settings.versions.kubernetes)
    check_pins(refs, settings)
    out = []
    for ref in refs:
        target, path, base, entrypoint, user = recipe(ref)
        binary = build.build_pause(settings, log) if target == "pause" else build.build(settings, target, log)
        out.append(ControlPlaneImage(ref, binary, path, base, entrypoint, user))
    return out


# --- the node root -----------------------------------------------------------------------------


def root_reference() -> str:
    digest = hashlib.sha256(" ".join(NODE_PACKAGES).encode()).hexdigest()[:12]
    return f"{ROOT_REPOSITORY}:{images.debian_suite()}-{digest}"


def root_archive(settings: Settings) -> Path:
    return settings.images_dir / "base" / f"{root_reference().rsplit('/', 1)[-1].replace(':', '-')}.tar"


def ensure_root(settings: Settings, client: Client, log: Log = lambda _m: None) -> str:
    """The node root in the engine: present, loaded from its archive, or made by debootstrap with
    NODE_PACKAGES (images.debootstrap_image)."""
    return images.debootstrap_image(
        settings, client, root_reference(), root_archive(settings), "node root", log, NODE_PACKAGES
    )


# --- control-plane images ----------------------------------------------------------------------


def cp_dockerfile(image: ControlPlaneImage, base: str) -> str:
    """Pure: one control-plane image: the program where upstream keeps it, on its base."""
    lines = [
        f"FROM {base}",
        f"COPY program {image.path}",
        "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    ]
    if image.user:
        lines.append(f"USER {image.user}")
    if image.entrypoint:
        lines.append(f"ENTRYPOINT {json.dumps(list(image.entrypoint))}")
    return "\n".join([*lines, ""])


def _modes(info: tarfile.TarInfo) -> tarfile.TarInfo:
    """Root-owned, directories and programs 0755, other files 0644: the module cache's files are
    read-only, and a COPY keeps modes (kind's Dockerfile sets them with --chmod)."""
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    info.mode = 0o755 if info.isdir() or info.mode & 0o111 else 0o644
    return info


def _context(files: dict[str, bytes | Path], workdir: Path, name: str) -> Path:
    """A build context tar: name -> bytes, or a file/directory on disk."""
    context = workdir / f"{name}-context.tar"
    with tarfile.open(context, "w") as tar:
        for arcname, src in files.items():
            if isinstance(src, Path):
                tar.add(src, arcname=arcname, filter=_modes)
                continue
            info = tarfile.TarInfo(arcname)
            info.size = len(src)
            info.mode = 0o755 if arcname.startswith("bin/") else 0o644
            tar.addfile(info, io.BytesIO(src))
    return context


def _build(client: Client, context: Path, reference: str) -> str:
    try:
        with context.open("rb") as f:
            for _ in client.stream("POST", "/build", {"t": reference, "rm": "1", "forcerm": "1"}, f):
                pass
    finally:
        context.unlink(missing_ok=True)
    image_id = client.image_id(reference)
    if image_id is None:
        raise EngineError(f"the engine built {reference} but does not list it")
    return image_id


def _build_cp(client: Client, image: ControlPlaneImage, bases: dict[str, str], workdir: Path) -> None:
    base = bases[image.base]
    files: dict[str, bytes | Path] = {
        "Dockerfile": cp_dockerfile(image, base).encode(),
        "program": image.binary,
    }
    _build(client, _context(files, workdir, "cp"), image.reference)


# --- the node image ----------------------------------------------------------------------------


def kind_files(settings: Settings) -> Path:
    """kind's images/base/files at the pinned kind version (read from the module cache)."""
    root = gomod.module_dir(versions.COMPONENTS["kind"].module, settings.versions.kind)
    files = root / "images" / "base" / "files"
    if not (files / "usr" / "local" / "bin" / "entrypoint").is_file():
        raise LabError(f"kind {settings.versions.kind} has no images/base/files/usr/local/bin/entrypoint")
    return files


def containerd_config(upstream: str, pause: str) -> str:
    """Pure: kind's containerd config with restrict_oom_score_adj on and kubeadm's pause as the sandbox."""
    lines = []
    for line in upstream.splitlines():
        key = line.split("=", 1)[0].strip()
        if key == "restrict_oom_score_adj":
            line = line.split("=", 1)[0] + "= true"
        elif key == "sandbox_image":
            line = line.split("=", 1)[0] + f'= "{pause}"'
        lines.append(line)
    text = "\n".join(lines) + "\n"
    if "restrict_oom_score_adj = true" not in text or f'sandbox_image = "{pause}"' not in text:
        raise LabError("kind's containerd config has no restrict_oom_score_adj or sandbox_image to set")
    return text


#: images/base/Dockerfile's RUN steps, for Debian's packages (its containerd is /usr/bin/containerd,
#: its CNI plugins are in /usr/lib/cni)
_SETUP = " && ".join(
    [
        "chmod 755 /kind /kind/bin /kind/bin/* /usr/local/bin/*",
        "ln -sf /usr/bin/containerd /usr/local/bin/containerd",
        "mkdir -p /opt/cni && ln -sfn /usr/lib/cni /opt/cni/bin",
        "find /lib/systemd/system/sysinit.target.wants/ -name systemd-tmpfiles-setup.service -delete",
        "rm -f /lib/systemd/system/multi-user.target.wants/*",
        "rm -f /etc/systemd/system/*.wants/*",
        "rm -f /lib/systemd/system/local-fs.target.wants/*",
        "rm -f /lib/systemd/system/sockets.target.wants/*udev*",
        "rm -f /lib/systemd/system/sockets.target.wants/*initctl*",
        "rm -f /lib/systemd/system/basic.target.wants/*",
        "echo ReadKMsg=no >> /etc/systemd/journald.conf",
        "ln -sf /usr/lib/systemd/systemd /sbin/init",
        "systemctl enable kubelet.service containerd.service undo-mount-hacks.service",
        "systemctl mask systemd-binfmt.service",
        "mkdir -p /etc/kubernetes/manifests /etc/cni/net.d",
        "ctr oci spec"
        ' | jq \'.hooks.createContainer[.hooks.createContainer| length] |= . + {"path": "/kind/bin/mount-product-files.sh"}\''
        " | jq 'del(.process.rlimits)' > /etc/containerd/cri-base.json",
        "chmod 755 /usr/bin/kubeadm /usr/bin/kubelet /usr/bin/kubectl",
    ]
)


def node_dockerfile(root: str, kubernetes: str, key: str) -> str:
    """Pure: step 2, kind's base image on the node root, with the Kubernetes binaries."""
    return "\n".join(
        [
            f"FROM {root}",
            "COPY files/ /",
            "COPY bin/ /usr/bin/",
            "COPY config.toml /etc/containerd/config.toml",
            f"RUN {_SETUP} && echo -n {kubernetes} > /kind/version",
            "ENV container=docker",
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "STOPSIGNAL SIGRTMIN+3",
            f'LABEL {NODE_LABEL}="{key}"',
            f"ENTRYPOINT {json.dumps(ENTRYPOINT)}",
            "",
        ]
    )


#: step 3 inside the build container: containerd started as kind's importer does, the images
#: imported without unpacking (kubelet unpacks what it runs), containerd stopped again
IMPORT_SCRIPT = """set -e
containerd >/tmp/containerd.log 2>&1 &
pid=$!
for i in $(seq 150); do ctr version >/dev/null 2>&1 && break; sleep 0.2; done
ctr -n k8s.io images import --all-platforms --no-unpack --digests /kind/control-plane.tar
ctr -n k8s.io images ls -q
kill $pid; wait $pid || true
rm -f /kind/control-plane.tar /tmp/containerd.log
"""


def node_reference(settings: Settings) -> str:
    return f"{NODE_REPOSITORY}:{settings.versions.kubernetes}"


def archive_path(settings: Settings) -> Path:
    return settings.images_dir / NAME / settings.versions.kubernetes / f"{NAME}.tar"


def node_key(settings: Settings, cp: list[ControlPlaneImage], binaries: dict[str, Path]) -> str:
    """What the image holds, as 16 hex digits: every binary's sha256, kind's version, the packages,
    the recipe. Equal keys, equal images."""
    h = hashlib.sha256()
    parts = [f"recipe={RECIPE}", f"kind={settings.versions.kind}", f"root={root_reference()}"]
    parts += [f"{c.reference}={images._sha256(c.binary)}" for c in cp]
    parts += [f"{n}={images._sha256(p)}" for n, p in sorted(binaries.items())]
    h.update("\n".join(parts).encode())
    return h.hexdigest()[:16]


def _import_and_commit(client: Client, staged: str, cp_archive: Path, reference: str) -> list[str]:
    """Step 3: a container of the staged image imports the control-plane images into its containerd;
    committed with kind's ENTRYPOINT. The images the node's containerd lists."""
    cid = client.json(
        "POST",
        "/containers/create",
        body={
            "Image": staged,
            "Entrypoint": ["sleep"],
            "Cmd": ["infinity"],
            "HostConfig": {"SecurityOpt": ["seccomp=unconfined"]},
        },
    )["Id"]
    try:
        client.json("POST", f"/containers/{cid}/start")
        upload = cp_archive.with_name("upload.tar")
        with tarfile.open(upload, "w") as tar:
            tar.add(cp_archive, arcname="control-plane.tar")
        with upload.open("rb") as f:
            client.put_archive(cid, "/kind", f)
        upload.unlink()
        code, output = client.exec(cid, ["bash", "-c", IMPORT_SCRIPT], timeout=1800)
        if code != 0:
            raise LabError(
                f"importing the control-plane images into the node failed: {output.strip()[-500:]}"
            )
        client.commit(cid, reference, [f"ENTRYPOINT {json.dumps(ENTRYPOINT)}", "CMD []"])
        return [ln for ln in output.splitlines() if ln.startswith("registry.k8s.io/")]
    finally:
        client.json("DELETE", f"/containers/{cid}", {"force": "1", "v": "1"})


@dataclass(frozen=True)
class NodeResult:
    reference: str
    archive: str
    action: str  # present, loaded, built
    seconds: float
    key: str
    images: tuple[str, ...]


def build_node(settings: Settings, client: Client, log: Log = lambda _m: None) -> NodeResult:
    """kindest/node:<kubernetes> in the engine and as an archive; every binary built first if missing."""
    started = time.monotonic()
    client.info()  # one clear line when there is no engine, before anything is built
    ensure_lb(settings, client, log)
    reference = node_reference(settings)
    cp = control_plane_images(settings, log)
    binaries = {n: build.build(settings, n, log) for n in ("kubeadm", "kubelet", "kubectl")}
    key = node_key(settings, cp, binaries)
    archive = archive_path(settings)
    record_path = archive.with_suffix(".json")
    record = images._read_record(record_path)
    refs = tuple(c.reference for c in cp)
    if archive.is_file() and record.get("key") == key:
        action = "present"
        if client.image_id(reference) != record.get("image_id"):
            log(f"loading {reference} from {archive}")
            client.load(archive)
            action = "loaded"
        return NodeResult(reference, str(archive), action, time.monotonic() - started, key, refs)
    bases = {
        "base": images.ensure_base(settings, client, log),
        "root": ensure_root(settings, client, log),
        "scratch": "scratch",
    }
    work = settings.images_dir / "tmp"
    work.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=work) as tmp:
        for c in cp:
            log(f"building {c.reference} from {c.binary}")
            _build_cp(client, c, bases, Path(tmp))
        cp_archive = Path(tmp) / "control-plane.tar"
        client.save_all(list(refs), cp_archive)
        pause = next(r for r in refs if r.rsplit(":", 1)[0].endswith("/pause"))
        upstream = (kind_files(settings) / "etc" / "containerd" / "config.toml").read_text()
        files: dict[str, bytes | Path] = {
            "Dockerfile": node_dockerfile(bases["root"], settings.versions.kubernetes, key).encode(),
            "files": kind_files(settings),
            "config.toml": containerd_config(upstream, pause).encode(),
            **{f"bin/{n}": p for n, p in binaries.items()},
        }
        staged = f"{ROOT_REPOSITORY}-staged:{key}"
        log(f"building the node root with kind {settings.versions.kind}'s files and kubeadm/kubelet/kubectl")
        _build(client, _context(files, Path(tmp), "node"), staged)
        log(f"importing {len(refs)} control-plane images into the node's containerd")
        listed = _import_and_commit(client, staged, cp_archive, reference)
    missing = [r for r in refs if r not in listed]
    if missing:
        raise LabError(f"the node's containerd does not list {', '.join(missing)} after the import")
    client.json("DELETE", f"/images/{urllib.parse.quote(staged, safe='')}", {"noprune": "0"})
    image_id = client.image_id(reference)
    log(f"saving {reference} to {archive}")
    client.save(reference, archive)
    record_path.write_text(
        json.dumps({"reference": reference, "image_id": image_id, "key": key, "images": list(refs)}, indent=2)
        + "\n"
    )
    return NodeResult(reference, str(archive), "built", time.monotonic() - started, key, refs)


def is_lab_node_image(client: Client, reference: str) -> bool:
    """Whether the engine's image of that name is lab's own node image (no pod network of its own)."""
    try:
        inspect = client.json("GET", f"/images/{urllib.parse.quote(reference, safe='')}/json")
    except EngineError as e:
        if " 404 " in str(e):
            return False
        raise
    return NODE_LABEL in ((inspect.get("Config") or {}).get("Labels") or {})


#: the lab build targets the node image holds (pause aside, compiled with gcc)
TARGETS = (
    "kubeadm",
    "kubelet",
    "kubectl",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kube-proxy",
    "node-etcd",
    "coredns",
)


def listing_row(settings: Settings) -> dict[str, object]:
    """The node image's row of `lab images build --list` (no engine needed)."""
    archive = archive_path(settings)
    cached = all(build.is_cached(settings, t) for t in TARGETS) and build.pause_path(settings).is_file()
    return {
        "name": NAME,
        "what": f"kind node (Kubernetes {settings.versions.kubernetes}, kind {settings.versions.kind})",
        "reference": node_reference(settings),
        "binary_cached": cached,
        "patches": [],
        "archive": str(archive) if archive.is_file() else None,
        "bytes": archive.stat().st_size if archive.is_file() else None,
    }


def build_result(settings: Settings, client: Client, log: Log = lambda _m: None) -> images.Result:
    """build_node as a row of `lab images build`."""
    r = build_node(settings, client, log)
    return images.Result(NAME, r.reference, r.archive, r.action, r.seconds)


# --- kind's load balancer ----------------------------------------------------------------------

#: kind's load balancer in front of several control-plane nodes is an envoy image it pulls
#: (pkg/cluster/internal/loadbalancer: `const Image`), configured by files it writes into the
#: container: /home/envoy/lds.yaml (the listener's port_value) and cds.yaml (one socket_address per
#: control-plane node). envoy cannot be built here (C++, Bazel), so lab tags a stand-in with that name:
#: the node root (bash, socat) and this `envoy`, which reads the same files every second and forwards
#: TCP connections to the backends, starting each at a random one and moving to the next when a
#: connect fails (a node not yet serving), which is all kind and kubeadm need of it.
LB_ENVOY = r"""#!/bin/bash
# lab's stand-in for envoy in kind's load balancer (lab.images_node): plain TCP forwarding.
set -u
cds=/home/envoy/cds.yaml lds=/home/envoy/lds.yaml pid="" seen=""
while true; do
  port=$(grep -o 'port_value: *[0-9]*' "$lds" 2>/dev/null | head -1 | grep -o '[0-9]*$')
  backends=$(tr -d '\r' < "$cds" 2>/dev/null | awk '/address: /{a=$2} /port_value: /{if (a!="") print a":"$2; a=""}' | tr '\n' ' ')
  now="$port|$backends"
  if [ "$now" != "$seen" ]; then
    [ -n "$pid" ] && kill "$pid" 2>/dev/null
    pid=""
    if [ -n "$port" ] && [ -n "$backends" ]; then
      echo "lab lb: :$port -> $backends"
      LB_BACKENDS="$backends" socat TCP-LISTEN:"$port",fork,reuseaddr EXEC:/usr/local/bin/lab-lb-connect &
      pid=$!
    fi
    seen="$now"
  fi
  sleep 1
done
"""
LB_CONNECT = r"""#!/bin/bash
# one connection: the backends in turn from a random one, the first that accepts it
read -r -a all <<< "$LB_BACKENDS"
n=${#all[@]}
start=$((RANDOM % n))
for ((i = 0; i < n; i++)); do
  b=${all[$(((start + i) % n))]}
  socat STDIO TCP:"$b",connect-timeout=1 && exit 0
done
exit 1
"""


def lb_reference(settings: Settings) -> str:
    """The image kind runs its load balancer from, as its module at the pinned version names it."""
    root = gomod.module_dir(versions.COMPONENTS["kind"].module, settings.versions.kind)
    const = root / "pkg" / "cluster" / "internal" / "loadbalancer" / "const.go"
    for line in const.read_text().splitlines():
        if line.strip().startswith("const Image"):
            return line.split("=", 1)[1].strip().strip('"')
    raise LabError(f"kind {settings.versions.kind}: no load balancer image in {const}")


def lb_dockerfile(root: str, key: str) -> str:
    """Pure: the stand-in: kind runs `bash -c '... envoy -c /home/envoy/envoy.yaml'` in it."""
    return "\n".join(
        [
            f"FROM {root}",
            "COPY bin/ /usr/local/bin/",
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            f'LABEL {NODE_LABEL}-lb="{key}"',
            "",
        ]
    )


def ensure_lb(settings: Settings, client: Client, log: Log = lambda _m: None) -> str:
    """kind's load balancer image (the stand-in) in the engine: present, loaded, or built."""
    reference = lb_reference(settings)
    key = hashlib.sha256((root_reference() + LB_ENVOY + LB_CONNECT).encode()).hexdigest()[:16]
    archive = settings.images_dir / NAME / "lb" / f"{key}.tar"
    try:
        inspect = client.json("GET", f"/images/{urllib.parse.quote(reference, safe='')}/json")
    except EngineError as e:
        if " 404 " not in str(e):
            raise
        inspect = {}
    if ((inspect.get("Config") or {}).get("Labels") or {}).get(f"{NODE_LABEL}-lb") == key:
        return reference
    if archive.is_file():
        log(f"loading {reference} (lab's stand-in) from {archive}")
        client.load(archive)
        return reference
    root = ensure_root(settings, client, log)
    work = settings.images_dir / "tmp"
    work.mkdir(parents=True, exist_ok=True)
    log(f"building {reference}: lab's stand-in for kind's load balancer")
    with tempfile.TemporaryDirectory(dir=work) as tmp:
        files: dict[str, bytes | Path] = {
            "Dockerfile": lb_dockerfile(root, key).encode(),
            "bin/envoy": LB_ENVOY.encode(),
            "bin/lab-lb-connect": LB_CONNECT.encode(),
        }
        _build(client, _context(files, Path(tmp), "lb"), reference)
    client.save(reference, archive)
    return reference
