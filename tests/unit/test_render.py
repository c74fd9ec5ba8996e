"""`lab render` through the real console entry point (a subprocess), as a user runs it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

Run = Callable[..., Any]


def test_render_yaml_prints_valid_objects_of_each_cluster(
    run_lab: Run, lab_env: dict[str, str], schema_validator
) -> None:
    out = run_lab("render", "101", "--count", "3", "-o", "yaml")
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""
    docs = list(yaml.safe_load_all(out.stdout))
    namespaces = [d["metadata"]["name"] for d in docs if d["kind"] == "Namespace"]
    assert namespaces == ["test-101", "test-102", "test-103"]
    assert len(docs) == 3 * 18
    assert [e for d in docs for e in schema_validator(d)] == []
    # The lab home now holds the PKI the objects embed; a second render reuses it byte for byte.
    assert (Path(lab_env["LAB_HOME"]) / "clusters/test-102/pki/ca.key").is_file()
    again = run_lab("render", "101", "--count", "3")
    assert again.returncode == 0 and again.stdout == out.stdout


def test_render_json_is_a_v1_list_of_the_same_objects(run_lab: Run) -> None:
    as_yaml = run_lab("render", "7")
    as_json = run_lab("render", "7", "--output", "json")
    assert as_yaml.returncode == as_json.returncode == 0, as_json.stderr
    doc = json.loads(as_json.stdout)
    assert doc["apiVersion"] == "v1" and doc["kind"] == "List"
    assert doc["items"] == list(yaml.safe_load_all(as_yaml.stdout))


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["0"], {}, "start index must be at least 1, got 0"),
        (["-1"], {}, "start index must be at least 1, got -1"),
        (["abc"], {}, "INDEX must be a whole number, got 'abc'"),
        (["1.5"], {}, "INDEX must be a whole number"),
        (["1_0"], {}, "INDEX must be a whole number"),
        (["10000"], {}, "past the configured maximum index 9999"),
        (["101", "--count", "0"], {}, "count must be at least 1, got 0"),
        (["101", "--count", "-3"], {}, "count must be at least 1, got -3"),
        (["101", "--count", "many"], {}, "--count must be a whole number, got 'many'"),
        (
            ["199", "--count", "3"],
            {"LAB_MAX_INDEX": "200"},
            "clusters 199..201 go past the configured maximum index 200",
        ),
    ],
)
def test_bad_index_or_count_is_one_line_exit_2_and_writes_nothing(
    run_lab: Run, lab_env: dict[str, str], args: list[str], env: dict[str, str], message: str
) -> None:
    out = run_lab("render", *args, env=env)
    assert out.returncode == 2
    assert out.stdout == ""
    lines = out.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], out.stderr
    assert not Path(lab_env["LAB_HOME"]).exists()


def test_render_refuses_kind_mode_before_writing(run_lab: Run, lab_env: dict[str, str]) -> None:
    out = run_lab("render", "5", env={"LAB_MODE": "kind"})
    assert out.returncode != 0 and out.stdout == ""
    assert out.stderr.splitlines() == [out.stderr.strip()] and "rendering needs mode local" in out.stderr
    assert not Path(lab_env["LAB_HOME"]).exists()


def test_local_objects_is_what_the_command_prints(run_lab: Run, lab_env: dict[str, str]) -> None:
    from lab import config, render
    from lab.errors import LabError

    settings = config.load()  # LAB_HOME is the test's tmp home
    objs = render.local_objects(settings, 5)
    out = run_lab("render", "5", "-o", "json")
    assert out.returncode == 0 and json.loads(out.stdout)["items"] == objs
    kcp = next(o for o in objs if o["kind"] == "KubeadmControlPlane")
    port = settings.ports.tenant_etcd
    assert kcp["spec"]["kubeadmConfigSpec"]["clusterConfiguration"]["etcd"]["external"]["endpoints"] == [
        f"https://127.0.0.1:{port}"
    ]
    with pytest.raises(LabError, match="needs mode local"):
        render.local_objects(config.load(mode="kind"), 5)
