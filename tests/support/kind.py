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


def offline_tools(tools: Path, kind: Path) -> Path:
    """The tools `lab up --mode kind --offline` needs, as a user has them after building them while
    online: kind and clusterctl on PATH (symlinks in `tools`, created here), helm in the shared
    build cache. Built here, not left to another test: on a fresh machine no other test may have
    built helm yet (CI failed so: "helm v4.2.2 is not built"). Returns `tools`."""
    tools.mkdir(parents=True, exist_ok=True)
    (tools / "kind").symlink_to(kind)
    (tools / "clusterctl").symlink_to(build_clusterctl())
    build.build(Settings(home=default_home()), "helm", print)
    return tools


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


def create_backing_cluster(
    kind: Path, client: engine.Client, name: str, kubeconfig: Path, settings: Settings
) -> str:
    """A one-node kind cluster to register as a kind backing, made as lab makes its management
    cluster (lab.kindmgmt.cluster.render_config: the pinned node image, the cgroup v1 kubelet patch
    where the host needs it, lab's pod network on lab's own node image), under another name; the
    node container's address on the engine's network, which this machine and other kind clusters'
    pods reach. The playbook's kind runtime does the same on a VM."""
    import yaml

    from lab import doctor, images_node
    from lab.kindmgmt import podnet
    from lab.kube import Client

    own = images_node.is_lab_node_image(client, cluster.node_image(settings))
    cfg = cluster.render_config(
        settings.model_copy(update={"kind_nodes": 1}),
        cgroup_v1=doctor.host_cgroup_version() == "1",
        own_network=own,
    )
    cfg["name"] = name
    path = kubeconfig.with_suffix(".kind.yaml")
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    argv = cluster.create_argv(str(kind), path, kubeconfig, wait=not own)
    made = subprocess.run(
        argv, capture_output=True, text=True, timeout=900, env={**os.environ, "DOCKER_HOST": client.host}
    )
    assert made.returncode == 0, made.stderr[-3000:]
    if own:
        with Client.from_kubeconfig(kubeconfig) as kc:
            podnet.configure(client, kc, print)
            podnet.wait_ready(kc)
    node = f"{name}-control-plane"
    networks = client.json("GET", f"/containers/{node}/json")["NetworkSettings"]["Networks"]
    return str(networks[cluster.KIND_NETWORK]["IPAddress"])


def delete_named_cluster(kind: Path, client: engine.Client, name: str) -> subprocess.CompletedProcess[str]:
    """`kind delete cluster --name NAME` on the engine; kind's network stays (delete_cluster's note)."""
    return subprocess.run(
        [str(kind), "delete", "cluster", "--name", name],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "DOCKER_HOST": client.host},
    )
