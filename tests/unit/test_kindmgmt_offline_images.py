"""The images an offline kind `lab up` needs: read from the objects it will apply, and refused in one
line, before any cluster exists, when the engine lacks any (with how to get each)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from lab import config, images, images_node
from lab.errors import LabError
from lab.kindmgmt import offline_images


def _deployment(*containers: str, init: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "kind": "Deployment",
        "spec": {
            "template": {
                "spec": {
                    "initContainers": [{"name": f"i{n}", "image": i} for n, i in enumerate(init)],
                    "containers": [{"name": f"c{n}", "image": c} for n, c in enumerate(containers)],
                }
            }
        },
    }


def test_images_of_reads_every_pod_template_once_in_order() -> None:
    objs = [
        {"kind": "Namespace", "metadata": {"name": "x"}},
        _deployment("a:1", "b:1", init=("i:1",)),
        {"kind": "DaemonSet", "spec": {"template": {"spec": {"containers": [{"image": "a:1"}]}}}},
        {"kind": "Job", "spec": {"template": {"spec": {"containers": [{"image": "j:1"}]}}}},
        {"kind": "Pod", "spec": {"containers": [{"image": "p:1"}]}},
        {"kind": "ConfigMap", "data": {"image": "not-a-pod:1"}},
    ]
    assert offline_images.images_of(objs) == ["i:1", "a:1", "b:1", "j:1", "p:1"]


def test_needed_reads_the_rendered_files_and_bmos_objects(tmp_path: Path) -> None:
    f = tmp_path / "core-components.yaml"
    f.write_text(yaml.safe_dump_all([_deployment("capi:v1"), {"kind": "Service"}]))
    meta = tmp_path / "metadata.yaml"
    meta.write_text("apiVersion: clusterctl.cluster.x-k8s.io/v1alpha3\nkind: Metadata\n")
    assert offline_images.needed([f, meta], [_deployment("bmo:v1")]) == ["capi:v1", "bmo:v1"]


class _Engine:
    host = "unix:///tmp/test.sock"

    def __init__(self, present: set[str]) -> None:
        self.present = present
        self.asked: list[str] = []

    def image_id(self, ref: str) -> str | None:
        self.asked.append(ref)
        return "sha256:1" if ref in self.present else None


@pytest.fixture
def settings(lab_env: dict[str, str]) -> config.Settings:
    return config.load()


def test_all_present_passes(settings: config.Settings) -> None:
    lb = images_node.lb_reference(settings)
    eng = _Engine({"node:v1", lb, "a:1"})
    offline_images.check(settings, eng, ["a:1"], "node:v1")  # type: ignore[arg-type]
    assert settings.kind_nodes == 3 and eng.asked == ["node:v1", lb, "a:1"]


def test_one_node_needs_no_load_balancer(lab_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAB_KIND_NODES", "1")
    eng = _Engine({"node:v1"})
    offline_images.check(config.load(), eng, [], "node:v1")  # type: ignore[arg-type]
    assert eng.asked == ["node:v1"]


def test_the_node_image_and_load_balancer_name_lab_images_build_node(settings: config.Settings) -> None:
    hints = offline_images.how_to_get(settings)
    assert hints[images_node.node_reference(settings)] == "lab images build node"
    assert hints[images_node.lb_reference(settings)] == "lab images build node"


def test_missing_images_are_one_line_with_how_to_get_each(settings: config.Settings) -> None:
    capi = images.resolve(settings, "capi").reference
    cm = "quay.io/jetstack/cert-manager-controller:v1.21.1"
    lb = images_node.lb_reference(settings)
    with pytest.raises(LabError) as e:
        offline_images.check(settings, _Engine({capi, lb}), [capi, cm], "kindest/node:v1.35.4")  # type: ignore[arg-type]
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith(
        "lab up --mode kind --offline: 2 image(s) not in the Docker engine at unix:///tmp/test.sock"
    )
    assert f"{cm} (docker load an archive of it)" in msg
    assert "kindest/node:v1.35.4 (lab images build node)" in msg and capi not in msg


def test_an_image_lab_builds_names_its_build_command(settings: config.Settings) -> None:
    kcp = images.resolve(settings, "kcp").reference
    with pytest.raises(LabError, match=rf"{kcp} \(lab images build kcp\)"):
        offline_images.check(
            settings, _Engine({"node:v1", images_node.lb_reference(settings)}), [kcp], "node:v1"
        )  # type: ignore[arg-type]
