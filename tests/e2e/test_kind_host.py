"""Scale-out with the `kind` runtime, end to end: one network-namespace SSH host (tests/support/hosts.py)
with its own Docker engine, provisioned by playbooks/backing-cluster.yml over real SSH, offline, and
registered by the playbook's own task (backing_register); three clusters on it Available through the
session's local management stack; their delete leaves nothing on the host; a second playbook run
changes nothing.

The host's engine: lab's own (`lab engine start`, lab.engine), started by the fixture inside the
host's network namespace, standing in for the VM's system service (docker.io under systemd, which the
playbook starts with backing_host_container_runtime). A namespace host has no init to run a service,
and the playbook does not start engines itself: on a real VM that is the init system's job. So the
inventory says the engine is managed elsewhere (backing_host_container_runtime: false) and where it
listens (backing_kind_docker_host); the playbook checks it answers before anything uses it. Its
bridges, kind's network, the published ports' DNAT rules and ip_forward are the namespace's own.

Offline, as an air-gapped VM: kind (built from its Go module) and kubectl from the artifacts
directory, the node image from lab's archive (`lab images build node`), loaded by the playbook; the
workload apiserver and etcd images from whatever archive of lab's image directory holds them, loaded
into the node by the playbook (kind load image-archive) when the node image does not carry them.

One host, one kind node, a NodePort block of 3 (CI time). Indexes 970-972: other e2e modules own
theirs (test_two_hosts 960-966).

Measured in this module's runs (2 cores shared, load about 4): playbook cold 165-183 s (the 1.5 GB
archive copied over SSH and loaded, kind create), warm 16-24 s with 0 changed; create-clusters 3
--wait 57-60 s, delete-clusters --wait 58-61 s; the module 348-364 s after the session's stack is up. From a
scratch driver at load 2-4: engine start ~3 s; the engine's teardown, kind cluster still running,
in seconds.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
import yaml
from support.docker import ensure_docker_io
from support.hosts import (
    HostEngine,
    NsHost,
    Provisioned,
    namespace_engine,
    namespace_hosts,
    provision_hosts,
    task_results,
    unavailable_reason,
)
from support.kind import build_kind
from support.stack import Stack

from lab import images_node
from lab.backing import node_ports, store
from lab.backing.kind import KindBacking
from lab.clusters.residue import residue
from lab.config import Settings, default_home
from lab.engine import Client
from lab.etcd import tenants
from lab.etcd.client import prefix_end
from lab.kindmgmt import podnet
from lab.manifests import backing_apiserver as apiserver_manifests
from lab.manifests import etcd as etcd_manifests

START, COUNT = 970, 3
NAMES = [f"test-{i}" for i in range(START, START + COUNT)]
BACKING = "kh1"
CLUSTER = "lab-backing"  # the role's default kind cluster name
CREATE_TIMEOUT = 900
WAIT = "600"


@dataclass(frozen=True)
class KindHost:
    ns: NsHost
    engine: HostEngine
    work: Path
    cold: Provisioned
    warm: Provisioned
    #: images the backing's pods run that the playbook loaded from archives (beyond the node image)
    loaded: list[str]

    @property
    def kubeconfig(self) -> Path:
        return self.work / "kubeconfigs" / f"{self.ns.name}.yaml"

    def kubectl(self, *args: str) -> str:
        res = self.engine.run("kubectl", f"--kubeconfig={self.kubeconfig}", *args, timeout=120)
        assert res.returncode == 0, res.stderr
        return res.stdout


def _node_archive(engine: HostEngine) -> tuple[Path, list[str]]:
    """lab's node image archive (the shared lab home's, as `lab images build node` leaves it) and the
    images it carries; built with the host's engine when missing, then removed from that engine so
    the playbook loads it from the archive as on a fresh VM."""
    shared = Settings(home=default_home())
    archive = images_node.archive_path(shared)
    if not archive.is_file():
        client = Client(engine.docker_host, timeout=600)
        built = images_node.build_node(shared, client, print)
        client.json("DELETE", f"/images/{urllib.parse.quote(built.reference, safe='')}", {"force": "1"})
    record = json.loads(archive.with_suffix(".json").read_text())
    return archive, list(record["images"])


def _repo_tags(archive: Path) -> list[str]:
    """The tags a `docker save` archive holds (its manifest.json), [] for anything else."""
    try:
        with tarfile.open(archive) as tar:
            member = tar.extractfile("manifest.json")
            if member is None:
                return []
            return [t for entry in json.load(member) for t in entry.get("RepoTags") or []]
    except (OSError, KeyError, tarfile.TarError, ValueError):
        return []


def _image_archives(settings: Settings, carried: list[str]) -> list[dict[str, str]]:
    """{archive, image} of the backing's images the node image does not carry, from lab's image
    directory; an image no archive holds is left out (its pod then reports ErrImagePull)."""
    wanted = {etcd_manifests.image(settings), apiserver_manifests.image(settings)} - set(carried)
    found: dict[str, Path] = {}
    for archive in sorted(Settings(home=default_home()).images_dir.rglob("*.tar")):
        if archive.stat().st_size > 1 << 30:  # node images: not what a pod runs
            continue
        for tag in _repo_tags(archive):
            if tag in wanted and tag not in found:
                found[tag] = archive
    missing = sorted(wanted - set(found))
    if missing:
        print(f"no image archive holds {', '.join(missing)}: its pods cannot start on the kind host")
    return [{"archive": str(a), "image": tag} for tag, a in sorted(found.items())]


@pytest.fixture(scope="module")
def kind_host(stack: Stack) -> Iterator[KindHost]:
    reason = unavailable_reason()
    if reason:
        print(f"skipping the kind host end to end: {reason}")
        pytest.skip(reason)
    ensure_docker_io()  # Debian's docker.io, as the engine tests install it (fails under CI if it cannot)
    settings = stack.settings()
    work = Path(tempfile.mkdtemp(prefix="lkh", dir="/tmp"))  # short: containerd's socket paths
    try:
        artifacts = work / "artifacts"
        artifacts.mkdir()
        build_kind(artifacts)  # `go install sigs.k8s.io/kind@<pin>` into the artifacts directory
        with namespace_hosts(1, work / "h") as hosts, namespace_engine(hosts[0]) as engine:
            archive, carried = _node_archive(engine)
            (artifacts / "node.tar").symlink_to(archive)
            extra = _image_archives(settings, carried)
            for i, item in enumerate(extra):
                (artifacts / f"image-{i}.tar").symlink_to(item["archive"])
            group_vars: dict[str, object] = {
                "backing_runtime": "kind",
                "backing_kind_docker_host": engine.docker_host,
                "backing_kind_docker_daemon_file": str(engine.layout.config),
                "backing_kind_node_image_archive": "node.tar",
                "backing_kind_node_image": images_node.node_reference(settings),
                "backing_kind_image_archives": [
                    {"archive": f"image-{i}.tar", "image": item["image"]} for i, item in enumerate(extra)
                ],
                "backing_kind_node_port_count": COUNT,
                "backing_capacity": COUNT,
                "backing_register": True,
                "backing_name": BACKING,
                "backing_lab_command": [sys.executable, "-m", "lab"],
            }
            try:
                cold = provision_hosts(hosts, work, artifacts, group_vars, env=stack.env)
                warm = provision_hosts(hosts, work, artifacts, group_vars, env=stack.env)
                print(
                    f"kind host: playbook cold {cold.seconds:.1f}s {cold.recap}, warm {warm.seconds:.1f}s {warm.recap}"
                )
                yield KindHost(hosts[0], engine, work, cold, warm, [i["image"] for i in extra])
            finally:
                if store.load(settings, BACKING) is not None:
                    stack.lab("backing", "remove", BACKING, "--force", check=False)
                kind = hosts[0].root / "usr/local/bin/kind"
                if kind.exists():
                    deleted = engine.run(str(kind), "delete", "cluster", "--name", CLUSTER)
                    print(f"kind delete cluster: {deleted.returncode} {deleted.stderr.strip()[-300:]}")
        # the namespace went with its Docker chains, DNAT rules and ip_forward
        netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=30).stdout
        assert hosts[0].netns not in netns, netns
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_playbook_creates_the_kind_cluster_and_registers_it(stack: Stack, kind_host: KindHost) -> None:
    out, host = kind_host.cold.output, kind_host.ns.name
    for task in (
        "Copy the node image archive to the host",
        "Load the node image into the engine",
        "Create the kind cluster",
    ):
        assert task_results(out, f"backing_kind : {task}") == {host: "changed"}, task
    # registration runs on the controller (delegate_to: localhost), which the callback names so
    assert task_results(out, "backing_kind : Register the kind cluster with the controller's lab") == {
        f"{host} -> localhost": "changed"
    }
    # the engine's daemon.json already has the proxy off (in its own layout): left as it is
    assert task_results(out, "backing_kind : Turn docker's userland proxy off") == {host: "skipping"}
    # the engine's daemon.json already had the userland proxy off: nothing to restart
    assert "RUNNING HANDLER [backing_kind : Restart docker]" not in out
    assert kind_host.kubeconfig.stat().st_mode & 0o777 == 0o600
    # lab's node image has no kindnetd: kind's CNI off, lab's pod network (the same conflist as
    # lab.kindmgmt.podnet's, over the whole pod subnet of the one node) mounted into the node
    config_dir = kind_host.ns.root / "etc/metal3-scale-lab"
    cfg = yaml.safe_load((config_dir / "kind-config.yaml").read_text())
    assert cfg["networking"]["disableDefaultCNI"] is True
    subnet = cfg["networking"]["podSubnet"]
    assert json.loads((config_dir / "10-lab-ptp.conflist").read_text()) == podnet.conflist(subnet)
    cgroup_v1 = not Path("/sys/fs/cgroup/cgroup.controllers").exists()
    assert ("failCgroupV1: false" in cfg["nodes"][0]["kubeadmConfigPatches"][0]) == cgroup_v1
    # the 1.5 GB copy of the node image is not kept on the host
    assert not list((kind_host.ns.root / "opt/metal3-scale-lab/images").glob("*.tar"))
    nodes = json.loads(kind_host.kubectl("get", "nodes", "-o", "json"))["items"]
    assert len(nodes) == 1
    assert any(c["type"] == "Ready" and c["status"] == "True" for c in nodes[0]["status"]["conditions"])
    # the API and the NodePort block listen on the host's internal address, through DNAT (no proxy)
    assert (
        json.loads(kind_host.kubectl("config", "view", "--raw", "-o", "json"))["clusters"][0]["cluster"][
            "server"
        ]
        == f"https://{kind_host.ns.address}:6443"
    )
    proxies = [
        " ".join(p.info["cmdline"] or [])
        for p in psutil.process_iter(["name", "cmdline"])
        if p.info["name"] == "docker-proxy" and kind_host.ns.address in (p.info["cmdline"] or [])
    ]
    assert proxies == [], "docker-proxy publishes the host's ports: the userland proxy is on"
    rows = {r["name"]: r for r in json.loads(stack.lab("backing", "list", "-o", "json").stdout)}
    assert rows[BACKING]["runtime"] == "kind" and rows[BACKING]["capacity"] == COUNT
    assert rows[BACKING]["used"] == 0
    entry = store.load(stack.settings(), BACKING)
    assert entry is not None and entry.spec["node_address"] == kind_host.ns.address
    assert entry.spec["node_ports"] == str(node_ports.parse_block(f"30000-{30000 + COUNT - 1}"))


def test_second_playbook_run_changes_nothing(kind_host: KindHost) -> None:
    out, host = kind_host.warm.output, kind_host.ns.name
    _ok, changed, unreachable, failed = kind_host.warm.recap[host]
    assert (changed, unreachable, failed) == (0, 0, 0), kind_host.warm.recap
    # the engine has the image, kind has the cluster, lab knows the backing: each step found so
    assert task_results(out, "backing_kind : Look for the node image in the engine") == {host: "ok"}
    for task in (
        "Copy the node image archive to the host",
        "Create the kind cluster",
        "Register the kind cluster with the controller's lab",
    ):
        assert task_results(out, f"backing_kind : {task}") == {host: "skipping"}, task
    assert kind_host.warm.seconds < kind_host.cold.seconds


def test_three_clusters_available_on_the_kind_host(stack: Stack, kind_host: KindHost) -> None:
    started = time.monotonic()
    out = stack.lab(
        "create-clusters",
        str(COUNT),
        "--start",
        str(START),
        "--backing",
        BACKING,
        "--wait",
        "--timeout",
        WAIT,
        "-o",
        "json",
        check=False,
        timeout=CREATE_TIMEOUT,
    )
    print(f"create-clusters {COUNT} on the kind host: {time.monotonic() - started:.1f}s")
    if out.returncode != 0:
        pods = kind_host.kubectl("get", "pods", "-A", "-o", "wide")
        pytest.fail(
            f"create-clusters exited {out.returncode}: {out.stderr.strip()[-2000:]}\n"
            f"images loaded from archives: {kind_host.loaded}\n{pods}"
        )
    res = json.loads(out.stdout)
    assert res["available"] == NAMES and res["stuck"] == {}, res
    endpoints = {
        c["metadata"]["namespace"]: c["spec"]["controlPlaneEndpoint"]
        for c in stack.kubectl_json("get", "clusters.cluster.x-k8s.io", "-A")["items"]
        if c["metadata"]["namespace"] in NAMES
    }
    ports = {e["port"] for e in endpoints.values()}
    assert {e["host"] for e in endpoints.values()} == {kind_host.ns.address}
    assert ports == set(range(30000, 30000 + COUNT))
    deployments = json.loads(kind_host.kubectl("get", "deployments", "-A", "-o", "json"))["items"]
    assert sorted(d["metadata"]["name"] for d in deployments if d["metadata"]["name"] in NAMES) == NAMES
    sts = json.loads(kind_host.kubectl("get", "statefulsets", "-A", "-o", "json"))["items"]
    assert [s["metadata"]["name"] for s in sts] == [etcd_manifests.NAME]
    entry = store.load(stack.settings(), BACKING)
    assert entry is not None
    assert KindBacking(stack.settings(), entry).present() == set(NAMES)


def test_delete_leaves_nothing_on_the_kind_host(stack: Stack, kind_host: KindHost) -> None:
    """By range, not --all: the session's stack is shared by every e2e module, and --all would also
    take clusters a later module waits on; on the kind host the two are the same (only these three
    live there)."""
    started = time.monotonic()
    stack.lab(
        "delete-clusters", "--start", str(START), "--count", str(COUNT), "--wait", timeout=CREATE_TIMEOUT
    )
    print(f"delete-clusters {COUNT} on the kind host: {time.monotonic() - started:.1f}s")
    settings = stack.settings()
    assert residue(settings, NAMES) == {}
    entry = store.load(settings, BACKING)
    assert entry is not None
    backing = KindBacking(settings, entry)
    assert backing.present() == set()
    with backing.root_etcd() as root:
        for n in NAMES:  # no key under the tenant's prefix, no user, no role
            prefix = tenants.key_prefix(n)
            assert root.count(prefix, prefix_end(prefix)) == 0, n
        assert set(root.users()).isdisjoint(NAMES) and set(root.roles()).isdisjoint(NAMES)
    left = json.loads(
        kind_host.kubectl(
            "get", "deployments,services,secrets", "-n", apiserver_manifests.NAMESPACE, "-o", "json"
        )
    )["items"]
    assert [o["metadata"]["name"] for o in left if any(n in o["metadata"]["name"] for n in NAMES)] == []
