"""The kind node image's pure parts: which image kubeadm names is made how, the pins checked against
kubeadm's list, kind's containerd config as lab changes it, and the Dockerfiles."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from lab import config, gomod, images_node, versions
from lab.errors import LabError

#: what `kubeadm config images list --kubernetes-version v1.35.4` printed here
KUBEADM_LIST = [
    "registry.k8s.io/kube-apiserver:v1.35.4",
    "registry.k8s.io/kube-controller-manager:v1.35.4",
    "registry.k8s.io/kube-scheduler:v1.35.4",
    "registry.k8s.io/kube-proxy:v1.35.4",
    "registry.k8s.io/coredns/coredns:v1.13.1",
    "registry.k8s.io/pause:3.10.1",
    "registry.k8s.io/etcd:3.6.6-0",
]


def test_every_image_kubeadm_names_has_a_recipe() -> None:
    got = {ref: images_node.recipe(ref) for ref in KUBEADM_LIST}
    assert got["registry.k8s.io/kube-apiserver:v1.35.4"] == (
        "kube-apiserver",
        "/usr/local/bin/kube-apiserver",
        "base",
        (),
        "",
    )
    assert got["registry.k8s.io/kube-proxy:v1.35.4"][2] == "root"  # iptables and conntrack userspace
    assert got["registry.k8s.io/etcd:3.6.6-0"][:2] == ("node-etcd", "/usr/local/bin/etcd")
    assert got["registry.k8s.io/coredns/coredns:v1.13.1"][3] == ("/coredns",)
    assert got["registry.k8s.io/pause:3.10.1"] == ("pause", "/pause", "scratch", ("/pause",), "65535:65535")
    with pytest.raises(LabError, match=re.escape("kubeadm expects registry.k8s.io/kindnetd:v1")):
        images_node.recipe("registry.k8s.io/kindnetd:v1")


def test_the_pins_match_what_kubeadm_expects(lab_env: dict[str, str]) -> None:
    settings = config.load()
    images_node.check_pins(KUBEADM_LIST, settings)
    other = [r.replace("etcd:3.6.6-0", "etcd:3.6.7-0") for r in KUBEADM_LIST]
    with pytest.raises(
        LabError, match=re.escape("expects etcd 3.6.7-0, lab pins 3.6.6-0: update lab/versions.py")
    ):
        images_node.check_pins(other, settings)
    assert versions.PAUSE == "3.10.1"


def test_kind_containerd_config_gets_restricted_oom_and_kubeadms_pause() -> None:
    upstream = (
        '[plugins."io.containerd.grpc.v1.cri"]\n'
        '  sandbox_image = "registry.k8s.io/pause:3.10"\n'
        "  tolerate_missing_hugepages_controller = true\n"
        "  restrict_oom_score_adj = false\n"
    )
    out = images_node.containerd_config(upstream, "registry.k8s.io/pause:3.10.1")
    assert '  sandbox_image = "registry.k8s.io/pause:3.10.1"' in out.splitlines()
    assert "  restrict_oom_score_adj = true" in out.splitlines()
    assert "tolerate_missing_hugepages_controller = true" in out
    with pytest.raises(LabError, match="no restrict_oom_score_adj"):
        images_node.containerd_config("version = 2\n", "registry.k8s.io/pause:3.10.1")


def test_kinds_own_containerd_config_at_the_pinned_kind_is_changeable(lab_env: dict[str, str]) -> None:
    """The real file from the kind module (in the module cache, fetched if missing)."""
    settings = config.load()
    try:
        files = images_node.kind_files(settings)
    except LabError as e:
        pytest.fail(f"kind {settings.versions.kind} module not available: {e}")
    text = (files / "etc/containerd/config.toml").read_text()
    out = images_node.containerd_config(text, "registry.k8s.io/pause:3.10.1")
    assert out.count("restrict_oom_score_adj = true") == 1
    assert (files / "etc/systemd/system/kubelet.service").is_file()
    assert gomod.module_dir("sigs.k8s.io/kind", settings.versions.kind) in files.parents


def test_control_plane_dockerfiles() -> None:
    pause = images_node.ControlPlaneImage(
        "registry.k8s.io/pause:3.10.1", Path("/x/pause"), "/pause", "scratch", ("/pause",), "65535:65535"
    )
    text = images_node.cp_dockerfile(pause, "scratch")
    assert text.splitlines() == [
        "FROM scratch",
        "COPY program /pause",
        "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "USER 65535:65535",
        'ENTRYPOINT ["/pause"]',
    ]
    api = images_node.ControlPlaneImage(
        "registry.k8s.io/kube-apiserver:v1.35.4", Path("/x"), "/usr/local/bin/kube-apiserver", "base"
    )
    lines = images_node.cp_dockerfile(api, "lab.local/debian-minbase:bookworm").splitlines()
    assert lines[0] == "FROM lab.local/debian-minbase:bookworm"
    assert not any(line.startswith(("USER", "ENTRYPOINT")) for line in lines)  # kubeadm runs it by name


def test_the_node_dockerfile_has_kinds_entrypoint_version_and_label() -> None:
    text = images_node.node_dockerfile("lab.local/kind-node-root:x", "v1.35.4", "abc123")
    lines = text.splitlines()
    assert lines[0] == "FROM lab.local/kind-node-root:x"
    assert lines[-1] == 'ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]'
    assert 'LABEL lab.kind-node="abc123"' in lines and "STOPSIGNAL SIGRTMIN+3" in lines
    assert "echo -n v1.35.4 > /kind/version" in text
    assert "systemctl enable kubelet.service containerd.service" in text


def test_the_node_root_is_named_by_its_packages() -> None:
    ref = images_node.root_reference()
    assert ref.startswith(images_node.ROOT_REPOSITORY + ":")
    for pkg in ("systemd", "containerd", "runc", "containernetworking-plugins", "iptables", "conntrack"):
        assert pkg in images_node.NODE_PACKAGES


def test_node_is_listed_and_needs_an_engine_before_any_build(run_lab, lab_env, tmp_path) -> None:  # type: ignore[no-untyped-def]
    r = run_lab("images", "build", "--list", "-o", "json", env={"DOCKER_HOST": "unix:///nonexistent.sock"})
    assert r.returncode == 0, r.stderr
    [node] = [row for row in json.loads(r.stdout) if row["name"] == "node"]
    assert node["reference"] == "kindest/node:v1.35.4" and node["archive"] is None
    r = run_lab("images", "build", "node", env={"DOCKER_HOST": f"unix://{tmp_path}/none.sock"})
    assert r.returncode == 1
    assert (
        r.stderr
        == f"error: no Docker engine at unix://{tmp_path}/none.sock: {tmp_path}/none.sock does not exist\n"
    )


def test_the_load_balancer_stand_in_takes_the_name_kind_runs(lab_env: dict[str, str]) -> None:
    """kind v0.33.0 names its load balancer image in pkg/cluster/internal/loadbalancer/const.go."""
    assert images_node.lb_reference(config.load()) == "docker.io/envoyproxy/envoy:v1.36.2"
    lines = images_node.lb_dockerfile("lab.local/kind-node-root:x", "k1").splitlines()
    assert lines[0] == "FROM lab.local/kind-node-root:x" and 'LABEL lab.kind-node-lb="k1"' in lines
    assert not any(line.startswith("ENTRYPOINT") for line in lines)  # kind runs `bash -c ...` in it
