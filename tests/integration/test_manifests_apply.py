"""`lab render` output applied to a real kube-apiserver holding the real upstream CRDs.

The apiserver checks what the unit tests' schema validator can only approximate: CEL rules, strict
field validation (an unknown or pruned field is an error, not a warning), and that every field lab
writes comes back exactly as written. No controllers run, so the objects just sit there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from support.apiserver import RunningApiserver

from lab import crds
from lab.config import Settings
from lab.manifests import serialize


def kubectl(api: RunningApiserver, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(
        ["kubectl", f"--kubeconfig={api.kubeconfig_path}", "--request-timeout=60s", *args],
        input=input,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, f"kubectl {' '.join(args)}: {out.stderr}"
    return out


@pytest.fixture(scope="module")
def with_crds(apiserver: RunningApiserver, tmp_path_factory: pytest.TempPathFactory) -> RunningApiserver:
    settings = Settings(home=tmp_path_factory.mktemp("crd-home"))
    docs = crds.crd_documents(settings)
    kubectl(
        apiserver,
        "apply",
        "--server-side",
        "--field-manager=lab-test",
        "-f",
        "-",
        input=serialize.to_yaml(docs),
    )
    names = [f"crd/{d['metadata']['name']}" for d in docs]
    kubectl(apiserver, "wait", "--for=condition=Established", "--timeout=120s", *names)
    return apiserver


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, str]]:
    home = tmp_path_factory.mktemp("lab-home")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAB_")}
    env["LAB_HOME"] = str(home)
    out = subprocess.run(
        [sys.executable, "-m", "lab", "render", "101", "--count", "3"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout, env


def _missing_or_changed(sent: Any, got: Any, path: str = "") -> list[str]:
    """Fields of `sent` that `got` lacks or holds differently (extra fields in `got` are fine)."""
    if isinstance(sent, dict):
        if not isinstance(got, dict):
            return [f"{path}: not an object"]
        return [
            e for k, v in sent.items() for e in _missing_or_changed(v, got.get(k, KeyError), f"{path}.{k}")
        ]
    if isinstance(sent, list):
        if not isinstance(got, list) or len(got) != len(sent):
            return [f"{path}: list differs"]
        return [
            e
            for i, (a, b) in enumerate(zip(sent, got, strict=True))
            for e in _missing_or_changed(a, b, f"{path}[{i}]")
        ]
    return [] if sent == got else [f"{path}: sent {sent!r}, stored {got!r}"]


def test_rendered_clusters_are_stored_exactly_as_written(
    with_crds: RunningApiserver, rendered: tuple[str, dict[str, str]]
) -> None:
    text, _ = rendered
    sent = list(yaml.safe_load_all(text))
    kubectl(
        with_crds, "apply", "--server-side", "--field-manager=lab", "--validate=strict", "-f", "-", input=text
    )
    stored = json.loads(kubectl(with_crds, "get", "-f", "-", "-o", "json", input=text).stdout)["items"]
    assert len(stored) == len(sent) == 3 * 18
    problems = []
    for s, g in zip(sent, stored, strict=True):
        assert (s["kind"], s["metadata"]["name"]) == (g["kind"], g["metadata"]["name"])
        body = {k: v for k, v in s.items() if k != "metadata"}
        body["metadata"] = {"labels": s["metadata"]["labels"]}
        problems += [f"{s['kind']} {s['metadata']['name']}{e}" for e in _missing_or_changed(body, g)]
    assert problems == []


def test_rendering_again_changes_nothing_on_the_server(
    with_crds: RunningApiserver, rendered: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    text, env = rendered
    kubectl(with_crds, "apply", "--server-side", "--field-manager=lab", "-f", "-", input=text)
    before = json.loads(kubectl(with_crds, "get", "-f", "-", "-o", "json", input=text).stdout)["items"]
    again = subprocess.run(
        [sys.executable, "-m", "lab", "render", "101", "--count", "3"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert again.returncode == 0 and again.stdout == text
    kubectl(with_crds, "apply", "--server-side", "--field-manager=lab", "-f", "-", input=again.stdout)
    after = json.loads(kubectl(with_crds, "get", "-f", "-", "-o", "json", input=text).stdout)["items"]
    # Server-side apply of identical content is a no-op: no new resourceVersion, no watch event.
    assert [o["metadata"]["resourceVersion"] for o in after] == [
        o["metadata"]["resourceVersion"] for o in before
    ]
