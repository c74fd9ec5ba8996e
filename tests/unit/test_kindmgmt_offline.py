"""The offline clusterctl repository's pure parts: clusterctl's local-repository layout, the config
that points every provider and cert-manager at it, the release's image substitution, the metadata
series check, and the CRD split of cert-manager's rendered chart. The rendering itself (kubectl
kustomize, helm template, clusterctl reading the result) is tests/integration/test_kindmgmt_offline_repo.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lab import config
from lab.errors import LabError
from lab.kindmgmt import clusterctl, offline


@pytest.fixture
def settings(lab_env: dict[str, str]) -> config.Settings:
    return config.load()


def test_every_provider_lab_installs_has_a_source() -> None:
    assert [s.provider for s in offline.SOURCES] == list(clusterctl.PROVIDERS)


@pytest.mark.parametrize(
    ("ptype", "name", "label"),
    [
        ("CoreProvider", "cluster-api", "cluster-api"),
        ("BootstrapProvider", "kubeadm", "bootstrap-kubeadm"),
        ("ControlPlaneProvider", "kubeadm", "control-plane-kubeadm"),
        ("InfrastructureProvider", "metal3", "infrastructure-metal3"),
        ("IPAMProvider", "metal3", "ipam-metal3"),
    ],
)
def test_the_manifest_label_is_clusterctls(ptype: str, name: str, label: str) -> None:
    assert offline.manifest_label(clusterctl.Provider("--x", ptype, name, "capi")) == label


def test_the_layout_is_base_label_version_file(settings: config.Settings, tmp_path: Path) -> None:
    paths = {
        str(offline.components_path(tmp_path, s, offline.version_of(settings, s)).relative_to(tmp_path))
        for s in offline.SOURCES
    }
    assert paths == {
        "cluster-api/v1.13.6/core-components.yaml",
        "bootstrap-kubeadm/v1.13.6/bootstrap-components.yaml",
        "control-plane-kubeadm/v1.13.6/control-plane-components.yaml",
        "infrastructure-metal3/v1.13.2/infrastructure-components.yaml",
        "ipam-metal3/v1.13.2/ipam-components.yaml",
    }
    assert (
        offline.cert_manager_path(tmp_path, "v1.21.1") == tmp_path / "cert-manager/v1.21.1/cert-manager.yaml"
    )


def test_the_config_overrides_every_provider_and_cert_manager_with_file_urls(
    settings: config.Settings, tmp_path: Path
) -> None:
    cfg = offline.config(settings, tmp_path)
    assert set(cfg) == {"providers", "cert-manager"}
    got = {(p["name"], p["type"]): p["url"] for p in cfg["providers"]}
    assert set(got) == {(p.name, p.type) for p in clusterctl.PROVIDERS}
    assert got["metal3", "IPAMProvider"] == f"file://{tmp_path}/ipam-metal3/v1.13.2/ipam-components.yaml"
    assert all(u.startswith("file:///") for u in got.values())
    assert cfg["cert-manager"] == {
        "url": f"file://{tmp_path}/cert-manager/v1.21.1/cert-manager.yaml",
        "version": "v1.21.1",
        "timeout": "600s",  # clusterctl's default, explicit: lab's limit on the whole init counts it
    }
    # clusterctl reads the config as YAML; the dump must round-trip
    assert yaml.safe_load(yaml.safe_dump(cfg)) == cfg


def test_a_version_override_moves_the_urls(lab_env: dict[str, str], monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LAB_VERSIONS__CAPM3", "v1.13.1")
    cfg = offline.config(config.load(), tmp_path)
    urls = {p["url"] for p in cfg["providers"] if p["type"] == "InfrastructureProvider"}
    assert urls == {f"file://{tmp_path}/infrastructure-metal3/v1.13.1/infrastructure-components.yaml"}


RENDERED = """\
apiVersion: apps/v1
kind: Deployment
spec:
  template:
    spec:
      containers:
      - args:
        - --diagnostics-address=${CAPI_DIAGNOSTICS_ADDRESS:=:8443}
        image: gcr.io/k8s-staging-cluster-api/cluster-api-controller:main
        imagePullPolicy: Always
        name: manager
---
kind: CustomResourceDefinition
spec:
  properties:
    imagePullPolicy:
      description: imagePullPolicy specifies the policy
    image:
      type: string
"""


def test_the_manager_image_becomes_labs_tag_and_variables_stay() -> None:
    ref = "registry.k8s.io/cluster-api/cluster-api-controller:v1.13.6"
    out = offline.set_manager_image(
        RENDERED, "gcr.io/k8s-staging-cluster-api/cluster-api-controller:main", ref, "capi"
    )
    assert f"        image: {ref}\n        imagePullPolicy: IfNotPresent\n" in out
    assert "${CAPI_DIAGNOSTICS_ADDRESS:=:8443}" in out
    assert "main" not in out and "Always" not in out
    # the CRD schema's keys are not values: untouched
    assert "    imagePullPolicy:\n      description" in out and "    image:\n      type: string" in out


def test_a_quoted_image_is_replaced_too() -> None:
    text = 'containers:\n- image: "quay.io/metal3-io/ip-address-manager:main"\n  name: manager\n'
    out = offline.set_manager_image(text, "quay.io/metal3-io/ip-address-manager:main", "q/ipam:v1", "ipam")
    assert out == "containers:\n- image: q/ipam:v1\n  name: manager\n"


@pytest.mark.parametrize("copies", [0, 2])
def test_not_exactly_one_manager_image_is_an_error(copies: int) -> None:
    text = "image: other:main\n" + "image: a/b:main\n" * copies
    with pytest.raises(LabError, match=f"expected one manager image a/b:main .* found {copies}"):
        offline.set_manager_image(text, "a/b:main", "a/b:v1", "x")


def test_the_manager_image_is_read_from_the_patch() -> None:
    patch = (
        "spec:\n  template:\n    spec:\n      containers:\n      - image: q/x:main\n        name: manager\n"
    )
    assert offline.manager_image(patch) == "q/x:main"
    with pytest.raises(LabError):
        offline.manager_image(patch.replace("manager", "other"))


def test_release_series_and_minor() -> None:
    meta = "releaseSeries:\n- major: 1\n  minor: 13\n  contract: v1beta2\n- major: 0\n  minor: 4\n- bad: x\n"
    assert offline.release_series(meta) == {(1, 13), (0, 4)}
    assert offline.release_series("{") == set()
    assert offline.minor_of("v1.13.6") == (1, 13)


def test_crds_are_split_from_the_rest_and_comment_only_docs_dropped() -> None:
    text = (
        "---\n# Source: a.yaml\n---\n# Source: crd.yaml\napiVersion: apiextensions.k8s.io/v1\n"
        "kind: CustomResourceDefinition\nmetadata:\n  name: c\n---\nkind: Deployment\nmetadata:\n  name: d\n"
    )
    crds, other = offline.split_crds(text)
    assert [yaml.safe_load(d)["metadata"]["name"] for d in crds] == ["c"]
    assert [yaml.safe_load(d)["metadata"]["name"] for d in other] == ["d"]
    joined = offline.join_docs([*crds, *other])
    assert [d["kind"] for d in yaml.safe_load_all(joined)] == ["CustomResourceDefinition", "Deployment"]


def test_offline_is_for_kind_mode_only(run_lab) -> None:
    out = run_lab("up", "--mode", "local", "--offline")
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip() == "error: --offline is for kind mode (lab up --mode kind --offline)"
