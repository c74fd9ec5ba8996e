"""lab's kind config, read by kind's own loader and validator at the pinned kind version.

kind cannot create a cluster here (no Docker engine), and `kind create cluster` checks for a
container runtime before it reads the config. So the test builds a small program inside a temporary
copy of the kind module (from the Go module proxy, never committed) that calls kind's internal
`encoding.Load` (strict YAML decoding of v1alpha4, defaulting, conversion) and `Cluster.Validate`,
exactly what `kind create cluster --config` runs first. The real kind CLI, built the same way, shows
that every flag lab passes exists and that lab doctor reads its version. Cold: a minute or two to fetch kind's
dependencies and build; warm: seconds.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from support import kindconfig

from lab import config, doctor
from lab.kindmgmt import cluster

pytestmark = pytest.mark.slow  # builds kind's validator and the kind CLI from the module proxy


@pytest.fixture(scope="module")
def validate(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return kindconfig.build(tmp_path_factory.mktemp("kind"))


def _check(validate: Path, text: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "kind-config.yaml"
    path.write_text(text)
    return kindconfig.check(validate, path, "name", "role", "image")


def test_kind_accepts_the_default_config(validate: Path, lab_env, tmp_path: Path) -> None:
    run = _check(validate, cluster.config_yaml(config.load()), tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == ["lab-mgmt control-plane kindest/node:v1.35.4"] * 3


def test_kind_accepts_one_node_and_another_image(
    validate: Path, lab_env, monkeypatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("LAB_KIND_NODES", "1")
    monkeypatch.setenv("LAB_KIND_NODE_IMAGE", "registry.local:5000/kindest/node:v1.35.4")
    run = _check(validate, cluster.config_yaml(config.load()), tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == ["lab-mgmt control-plane registry.local:5000/kindest/node:v1.35.4"]


def test_the_validator_can_fail(validate: Path, lab_env, tmp_path: Path) -> None:
    """A misspelt field and a bad name are refused, so the passes above mean something."""
    cfg = cluster.render_config(config.load())
    cfg["node"] = cfg.pop("nodes")
    assert _check(validate, yaml.safe_dump(cfg), tmp_path).returncode == 1
    cfg = cluster.render_config(config.load())
    cfg["name"] = "Lab_Mgmt"
    run = _check(validate, yaml.safe_dump(cfg), tmp_path)
    assert run.returncode == 1 and "not a valid cluster name" in run.stderr


@pytest.fixture(scope="module")
def kind_binary(kind: Path) -> Path:
    return kind


def _flags(binary: Path, *cmd: str) -> set[str]:
    out = subprocess.run([str(binary), *cmd, "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return set(re.findall(r"--([a-z][a-z0-9-]*)", out.stdout))


def test_kind_commands_lab_runs_exist(kind_binary: Path, lab_env, tmp_path: Path) -> None:
    create = cluster.create_argv(str(kind_binary), tmp_path / "c.yaml", tmp_path / "kc")
    assert {a[2:] for a in create if a.startswith("--")} <= _flags(kind_binary, "create", "cluster")
    assert "name" in _flags(kind_binary, "get", "kubeconfig")
    assert _flags(kind_binary, "get", "clusters")  # the subcommand exists


def test_doctor_reads_the_real_kind_version(kind_binary: Path, lab_env, monkeypatch) -> None:
    monkeypatch.setenv("PATH", f"{kind_binary.parent}:{os.environ['PATH']}")
    spec = next(s for s in doctor.TOOLS if s.name == "kind")
    result = doctor.probe_tool(spec, "kind", config.load())
    assert (result.status, result.version) == ("ok", config.load().versions.kind.lstrip("v"))
