"""kind and clusterctl for the tests, built from their Go modules at the pinned versions (never a
release download), the way a user without network access to GitHub releases would get them."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path

from lab import build, engine, gomod
from lab.config import Settings, default_home
from lab.kindmgmt import cluster

#: clusterctl is a test tool here, not a stack target: built from this Target, outside build.TARGETS
#: (clusterctl is part of the CAPI release, so it has no pin of its own)
CLUSTERCTL = build.Target(
    "clusterctl", "capi", "sigs.k8s.io/cluster-api/cmd/clusterctl", stamp=build._capi_stamp, what="clusterctl"
)


def build_kind(gobin: Path) -> Path:
    """`go install sigs.k8s.io/kind@<pinned>` into gobin (Go's build cache makes a re-run seconds)."""
    version = Settings(home=Path("/nonexistent")).versions.kind
    run = subprocess.run(
        [gomod.go_binary(), "install", f"sigs.k8s.io/kind@{version}"],
        env={**gomod.go_env(), "GOBIN": str(gobin), "GOFLAGS": ""},
        cwd=gobin,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return gobin / "kind"


def build_clusterctl() -> Path:
    """clusterctl in the shared build cache (built once from the CAPI module, reused after)."""
    return build.build(Settings(home=default_home()), CLUSTERCTL, print)


def delete_cluster(
    kind: Path, client: engine.Client, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`kind delete cluster` of lab's management cluster, then kind's `kind` network, which kind keeps
    for the next cluster by design (a user removes it by hand); the caller asserts on the result."""
    deleted = subprocess.run(
        [str(kind), "delete", "cluster", "--name", cluster.CLUSTER_NAME],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )
    if any(n["Name"] == "kind" for n in client.json("GET", "/networks")):
        client.json("DELETE", "/networks/kind")
    return deleted
