"""lab.images without an engine: the image names read from the pinned modules' manifests, the
Dockerfile, and `lab images build --list` / bad names through the real CLI."""

from __future__ import annotations

import json

import pytest

from lab import config, images
from lab.kindmgmt import bmo

MAKEFILE = (
    "STAGING_REGISTRY ?= gcr.io/k8s-staging-cluster-api\nPROD_REGISTRY ?= registry.k8s.io/cluster-api\n"
)


def test_a_staging_image_becomes_the_release_one_and_loses_its_tag() -> None:
    assert (
        images.repository("gcr.io/k8s-staging-cluster-api/cluster-api-controller:main", MAKEFILE)
        == "registry.k8s.io/cluster-api/cluster-api-controller"
    )
    assert images.repository(
        "quay.io/metal3-io/ip-address-manager:main", "REGISTRY ?= quay.io/metal3-io\n"
    ) == ("quay.io/metal3-io/ip-address-manager")
    assert (
        images.repository("quay.io/metal3-io/baremetal-operator", "")
        == "quay.io/metal3-io/baremetal-operator"
    )
    # a registry with a port is not a tag
    assert images.repository("registry.local:5000/x/y:v1", "") == "registry.local:5000/x/y"


def test_every_image_is_named_as_the_upstream_release_manifests_name_it(lab_env) -> None:
    settings = config.load()
    v = settings.versions
    got = {
        name: (images.resolve(settings, name).reference, images.resolve(settings, name).command)
        for name in images.IMAGES
    }
    assert got == {
        "capi": (f"registry.k8s.io/cluster-api/cluster-api-controller:{v.capi}", "/manager"),
        "cabpk": (f"registry.k8s.io/cluster-api/kubeadm-bootstrap-controller:{v.capi}", "/manager"),
        "kcp": (f"registry.k8s.io/cluster-api/kubeadm-control-plane-controller:{v.capi}", "/manager"),
        "capm3": (f"quay.io/metal3-io/cluster-api-provider-metal3:{v.capm3}", "/manager"),
        "ipam": (f"quay.io/metal3-io/ip-address-manager:{v.ipam}", "/manager"),
        "bmo": (f"quay.io/metal3-io/baremetal-operator:{v.bmo}", "/baremetal-operator"),
    }
    # the BMO test-mode overlay pins the same image
    assert got["bmo"][0] == f"{bmo.IMAGE}:{v.bmo}"


def test_the_image_runs_the_binary_where_and_as_whom_the_manifest_says() -> None:
    text = images.dockerfile("lab.local/debian-minbase:bookworm", "/manager", "v1.13.2", "ab" * 32)
    assert text.splitlines()[:4] == [
        "FROM lab.local/debian-minbase:bookworm",
        "COPY manager /manager",
        "USER 65532:65532",
        'ENTRYPOINT ["/manager"]',
    ]


def test_the_base_is_the_hosts_debian_release(tmp_path) -> None:
    osr = tmp_path / "os-release"
    osr.write_text('PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_CODENAME=bookworm\n')
    assert images.debian_suite(osr) == "bookworm"
    osr.write_text("ID=ubuntu\nVERSION_CODENAME=noble\n")
    assert images.debian_suite(osr) == "bookworm"


def test_list_needs_no_engine_and_names_every_image(run_lab) -> None:
    r = run_lab("images", "build", "--list", "-o", "json", env={"DOCKER_HOST": "unix:///nonexistent.sock"})
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert [row["name"] for row in rows] == [*images.IMAGES, "node"]  # node: lab.images_node
    assert all(row["archive"] is None for row in rows)  # a fresh lab home


@pytest.mark.parametrize("args", [["build", "nosuch"], ["build", "--list", "nosuch"], ["build", "ipam", ""]])
def test_an_unknown_image_is_one_usage_error(run_lab, lab_env, args: list[str]) -> None:
    r = run_lab("images", *args, env={"DOCKER_HOST": "unix:///nonexistent.sock"})
    assert r.returncode == 2
    assert r.stderr.startswith("error: unknown image ") and r.stderr.count("\n") == 1, r.stderr
    assert "known: capi, cabpk, kcp, capm3, ipam, bmo" in r.stderr


def test_no_engine_is_one_line_before_anything_is_built(run_lab, lab_env, tmp_path) -> None:
    r = run_lab("images", "build", "ipam", env={"DOCKER_HOST": f"unix://{tmp_path}/none.sock"})
    assert r.returncode == 1
    assert (
        r.stderr
        == f"error: no Docker engine at unix://{tmp_path}/none.sock: {tmp_path}/none.sock does not exist\n"
    )
    assert not (tmp_path / "labhome" / "images").exists()
