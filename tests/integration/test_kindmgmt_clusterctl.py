"""The clusterctl lab runs, for real: built from the CAPI module at the pinned version (clusterctl is
part of the CAPI release, so no separate pin), it must accept every flag of lab's `clusterctl init`
line, know the providers lab names as built-ins, and read lab's clusterctl.yaml. `clusterctl init`
itself needs GitHub release assets and a cluster with nodes, which this machine cannot offer.

The binary is built once into the shared build cache (as the managers are), with lab.build's own
wrapper-module machinery; cold: a few minutes on 2 cores, warm: nothing.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
from support.kind import build_clusterctl

from lab import config, doctor
from lab.kindmgmt import clusterctl, preflight

pytestmark = pytest.mark.slow  # builds clusterctl from the CAPI module when not cached: minutes cold


@pytest.fixture(scope="module")
def binary() -> Path:
    # The shared build cache, like tests/integration/test_tuning_flags.py; nothing else of the user's home.
    return build_clusterctl()


@pytest.fixture
def settings(lab_env: dict[str, str]) -> config.Settings:
    return config.load()


def _run(binary: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(binary), *args], capture_output=True, text=True, timeout=120, env=env)


def test_clusterctl_is_the_capi_release(binary: Path, settings: config.Settings) -> None:
    out = _run(binary, "version", "-o", "short")
    assert out.stdout.strip() == settings.versions.capi


def test_every_init_flag_exists(binary: Path, settings: config.Settings, tmp_path: Path) -> None:
    help_text = _run(binary, "init", "--help").stdout
    known = set(re.findall(r"(?m)^\s+(?:-\w, )?--([a-z0-9-]+)", help_text))
    argv = clusterctl.init_argv(settings, str(binary), tmp_path / "kc", tmp_path / "cc.yaml")
    used = {a[2:] for a in argv if a.startswith("--")}
    assert used <= known, f"not in clusterctl init --help: {used - known}"


def test_metal3_providers_are_built_in(binary: Path, settings: config.Settings) -> None:
    """`--infrastructure metal3` and `--ipam metal3` need no providers list in lab's config file."""
    out = _run(
        binary, "config", "repositories", "-o", "yaml", "--config", str(clusterctl.write_config(settings))
    )
    assert out.returncode == 0, out.stderr
    listed = {(m["Name"], m["ProviderType"]) for m in _providers(out.stdout)}
    for p in clusterctl.PROVIDERS:
        assert (p.name, p.type) in listed, f"{p.name} {p.type} is not a clusterctl built-in provider"


def _providers(text: str) -> list[dict[str, str]]:
    import yaml

    return list(yaml.safe_load(text) or [])


def test_doctor_and_preflight_read_the_real_clusterctl(
    binary: Path, settings: config.Settings, monkeypatch
) -> None:
    monkeypatch.setenv("PATH", f"{binary.parent}:{os.environ['PATH']}")
    spec = next(s for s in doctor.TOOLS if s.name == "clusterctl")
    result = doctor.probe_tool(spec, "kind", settings)
    assert (result.status, result.version) == ("ok", settings.versions.capi.lstrip("v"))
    assert preflight.problems([result], settings) == []
