"""The BMO test-mode overlay, built for real by `kubectl kustomize` (kustomize inside kubectl) over
BMO's own config/ at the pinned version, taken from the Go module cache (lab.gomod downloads it when
missing; the base is read in place, never copied into the repository)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from lab import config, gomod
from lab.errors import LabError
from lab.kindmgmt import bmo


@pytest.fixture(scope="module")
def bmo_source() -> Path:
    settings = config.Settings(home=Path("/nonexistent"))
    return gomod.component_dir("bmo", settings.versions.bmo)


@pytest.fixture
def settings(lab_env: dict[str, str]) -> config.Settings:
    return config.load()


@pytest.fixture
def built(settings: config.Settings, bmo_source: Path) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl must be on PATH (it carries kustomize)"
    return bmo.build(kubectl, bmo.render_dir(settings, bmo_source))


def test_default_base_is_github_at_the_version_tag(settings: config.Settings, tmp_path: Path) -> None:
    k = bmo.kustomization(settings, None, tmp_path)
    assert k["resources"] == [
        "https://github.com/metal3-io/baremetal-operator/config/namespace?ref=v0.13.2",
        "https://github.com/metal3-io/baremetal-operator/config/default?ref=v0.13.2",
    ]
    assert k["images"] == [{"name": "quay.io/metal3-io/baremetal-operator", "newTag": "v0.13.2"}]


def test_the_committed_patch_adds_test_mode() -> None:
    ops = yaml.safe_load((bmo.OVERLAY_DIR / bmo.PATCH_FILE).read_text())
    assert {"op": "add", "path": "/spec/template/spec/containers/0/args/-", "value": "--test-mode"} in ops


def test_overlay_puts_test_mode_on_the_manager(built: list[dict[str, Any]]) -> None:
    deployment = bmo.manager(built)
    assert deployment["metadata"]["namespace"] == bmo.NAMESPACE
    manager = deployment["spec"]["template"]["spec"]["containers"][0]
    assert manager["name"] == "manager"
    assert "--test-mode" in manager["args"]
    assert manager["image"] == "quay.io/metal3-io/baremetal-operator:v0.13.2"
    assert manager["imagePullPolicy"] == "IfNotPresent"


def test_overlay_brings_namespace_crds_webhook_and_no_ironic(built: list[dict[str, Any]]) -> None:
    kinds = {(o["kind"], o["metadata"]["name"]) for o in built}
    assert ("Namespace", bmo.NAMESPACE) in kinds
    assert {o["metadata"]["name"] for o in bmo.crds(built)} >= {
        "baremetalhosts.metal3.io",
        "hardwaredata.metal3.io",
    }
    assert any(k == "ValidatingWebhookConfiguration" for k, _ in kinds)
    # test mode deploys no Ironic: the only Deployment is BMO's manager
    assert [n for k, n in kinds if k == "Deployment"] == [bmo.DEPLOYMENT]
    namespaced = [o for o in built if o["kind"] not in bmo.CLUSTER_SCOPED]
    assert {o["metadata"].get("namespace") for o in namespaced} == {bmo.NAMESPACE}


def test_a_wrong_source_is_refused_before_anything(settings: config.Settings, tmp_path: Path) -> None:
    with pytest.raises(LabError, match=r"is not a baremetal-operator v0\.13\.2 source tree"):
        bmo.render_dir(settings, tmp_path, tmp_path / "out")
    assert not (tmp_path / "out").exists()
