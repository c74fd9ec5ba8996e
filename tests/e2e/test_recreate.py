"""Running the same range again, the most common thing a scale experimenter does, on the real local
stack (one node simulator process throughout):

- create test-4242..4243, delete them, create them again, twice: Available every time, each time
  with a new CA, and nothing left after the last delete;
- `lab render` writes PKI for the clusters it prints; `delete-clusters --all` sweeps it when no
  namespace points at it.

Indexes 4242-4243 and 4301-4303 keep clear of the other e2e modules. Tests run in file order.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import yaml
from support.stack import Stack

from lab import pki
from lab.clusters.residue import residue

NAMES = ["test-4242", "test-4243"]
RENDERED = ["test-4301", "test-4302", "test-4303"]
CREATE_TIMEOUT = 600
WAIT = "480"


def _create(stack: Stack) -> dict[str, Any]:
    out = stack.lab(
        "create-clusters", "2", "--start", "4242", "--wait", "--timeout", WAIT, "-o", "json",
        timeout=CREATE_TIMEOUT, check=False,
    )  # fmt: skip
    assert out.stdout, out.stderr
    res: dict[str, Any] = json.loads(out.stdout)
    assert out.returncode == 0 and res["stuck"] == {}, (res["stuck"], out.stderr[-2000:])
    return res


def _nodesim_pid(stack: Stack) -> int:
    sim = stack.status()["nodesim"]
    assert sim["pid"], sim
    return int(sim["pid"])


def _cas(stack: Stack) -> dict[str, bytes]:
    """cluster -> the CA its admin kubeconfig trusts."""
    return {n: pki.kubeconfig_client(stack.lab("kubeconfig", n).stdout.encode())[1] for n in NAMES}


def _files_of(home: Path, names: list[str]) -> list[Path]:
    """Paths under the lab home that name one of the clusters (its directory, its logs)."""
    return [p for p in home.rglob("*") if any(n in p.name for n in names)]


def test_delete_and_create_the_same_range_again_twice(stack: Stack) -> None:
    settings = stack.settings()
    sim = _nodesim_pid(stack)
    res = _create(stack)
    assert res["new"] == NAMES and res["available"] == NAMES
    seen_cas = [_cas(stack)]
    for round_ in (1, 2):
        stack.lab("delete-clusters", "--start", "4242", "--count", "2", "--wait", timeout=CREATE_TIMEOUT)
        assert residue(settings, NAMES) == {}, f"round {round_}"
        res = _create(stack)
        assert res["new"] == NAMES and res["available"] == NAMES, f"round {round_}"
        cas = _cas(stack)
        for before in seen_cas:  # the same names, really new clusters
            assert all(cas[n] != before[n] for n in NAMES), f"round {round_}"
        seen_cas.append(cas)
        hosts = {
            h["metadata"]["namespace"]: h["metadata"]["uid"]
            for h in stack.kubectl_json("get", "baremetalhosts", "-A")["items"]
            if h["metadata"]["namespace"] in NAMES
        }
        for name in NAMES:  # the Node is in the new apiserver, written for the new host
            kubeconfig = pki.cluster_pki_dir(settings, name) / "admin.kubeconfig"
            got = subprocess.run(
                ["kubectl", f"--kubeconfig={kubeconfig}", "get", "nodes", "-o", "json"],
                capture_output=True, text=True, check=True, timeout=60,
            )  # fmt: skip
            nodes = json.loads(got.stdout)["items"]
            assert [n["metadata"]["labels"]["metal3.io/uuid"] for n in nodes] == [hosts[name]]
    assert _nodesim_pid(stack) == sim  # one simulator served every round: no restart hid a stale cache
    stack.lab("delete-clusters", "--start", "4242", "--count", "2", "--wait", timeout=CREATE_TIMEOUT)
    assert residue(settings, NAMES) == {}
    assert _files_of(settings.home, NAMES) == []


def test_render_then_delete_all_leaves_no_file(stack: Stack) -> None:
    settings = stack.settings()
    docs = [d for d in yaml.safe_load_all(stack.lab("render", "4301", "--count", "3").stdout) if d]
    assert sorted(d["metadata"]["name"] for d in docs if d["kind"] == "Namespace") == RENDERED
    # the objects embed the PKI render wrote: that is what apply needs, and what delete must sweep
    assert sorted(p.name for p in _files_of(settings.home, RENDERED)) == RENDERED
    assert stack.kubectl("get", "ns", *RENDERED, check=False).returncode != 0  # nothing was applied
    out = stack.lab("delete-clusters", "--all", "--wait", "-o", "json", timeout=CREATE_TIMEOUT)
    assert set(RENDERED) <= set(json.loads(out.stdout)["leftovers"])
    assert _files_of(settings.home, RENDERED) == []
    assert residue(settings, RENDERED) == {}
    assert residue(settings, None) == {}
