from __future__ import annotations

from pathlib import Path

import pytest

from lab import config, versions
from lab.errors import LabError


def test_defaults_come_from_the_version_table(lab_env: dict[str, str]) -> None:
    s = config.load()
    assert s.prefix == "test"
    assert s.home == Path(lab_env["LAB_HOME"])
    for key, comp in versions.COMPONENTS.items():
        assert getattr(s.versions, key) == comp.default


def test_env_beats_file_and_file_beats_defaults(lab_env: dict[str, str], monkeypatch, tmp_path: Path) -> None:
    (tmp_path / "lab.yaml").write_text("prefix: scale\nversions:\n  capi: v1.13.4\n  bmo: v0.13.1\n")
    monkeypatch.setenv("LAB_VERSIONS__CAPI", "v1.13.5")
    s = config.load()
    assert s.prefix == "scale"
    assert s.versions.capi == "v1.13.5"
    assert s.versions.bmo == "v0.13.1"
    assert s.versions.capm3 == versions.COMPONENTS["capm3"].default


def test_lab_config_points_at_a_file(lab_env, monkeypatch, tmp_path: Path) -> None:
    other = tmp_path / "elsewhere.yaml"
    other.write_text("max_index: 500\n")
    monkeypatch.setenv("LAB_CONFIG", str(other))
    assert config.load().max_index == 500
    monkeypatch.setenv("LAB_CONFIG", str(tmp_path / "missing.yaml"))
    with pytest.raises(LabError, match="not a file"):
        config.load()


@pytest.mark.parametrize(
    ("yaml_text", "field"),
    [
        ("versions:\n  capi: latest\n", "versions.capi"),
        ("prefix: Test_1\n", "prefix"),
        ("max_index: 0\n", "max_index"),
        ("mode: docker\n", "mode"),
        ("colour: blue\n", "colour"),
        ("versions:\n  cabpk: v1.0.0\n", "versions.cabpk"),
        ("ports:\n  mgmt_apiserver: 70000\n", "ports.mgmt_apiserver"),
    ],
)
def test_invalid_settings_name_the_field(lab_env, tmp_path: Path, yaml_text: str, field: str) -> None:
    (tmp_path / "lab.yaml").write_text(yaml_text)
    with pytest.raises(LabError) as e:
        config.load()
    assert str(e.value).startswith(f"invalid setting {field}:")
    assert "\n" not in str(e.value)
    assert e.value.exit_code == 2


def test_broken_yaml_is_one_line(lab_env, tmp_path: Path) -> None:
    (tmp_path / "lab.yaml").write_text("versions: [unclosed\n")
    with pytest.raises(LabError) as e:
        config.load()
    assert "not valid YAML" in str(e.value) and "\n" not in str(e.value)


def test_invalid_setting_on_the_command_line_exits_2(run_lab, tmp_path: Path) -> None:
    (tmp_path / "lab.yaml").write_text("versions:\n  kubernetes: 1.35\n")
    r = run_lab("doctor")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        f"error: invalid setting versions.kubernetes: must look like v1.2.3, got 1.35 (lab.yaml: {tmp_path / 'lab.yaml'})"
    ]


def test_minor_parses_versions(lab_env) -> None:
    assert config.load(versions={"capi": "v1.12.3"}).versions.minor("capi") == (1, 12)
