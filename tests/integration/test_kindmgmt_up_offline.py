"""`lab up --mode kind --offline` for real, as far as it can run on a machine that cannot make
cert-manager's images: the CLI, a real Docker engine (the session's, cut off from the uplink), kind and
clusterctl built from their Go modules and found on PATH, kubectl and helm in lab's bin cache, the
node image (and kind's load-balancer stand-in) and every controller image built into the engine.

cert-manager's three images cannot be built here (lab.kindmgmt.offline says why), so the command
must stop at the image check with one error line naming exactly those three, before anything exists:
no kind cluster, no container, no kind network, no kubeconfig.

Not covered here: going past the check (a stand-in tagged as each cert-manager image) would create the
kind cluster and load the images, then fail only when clusterctl's cert-manager wait runs out, which is
clusterctl's default of 10 minutes (lab's offline clusterctl.yaml sets no cert-manager timeout):
too long for this suite.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import pytest
from support.docker import Engine
from support.kind import build_clusterctl

from lab import images, images_node
from lab.config import Settings, default_home
from lab.kindmgmt import cluster

pytestmark = pytest.mark.slow  # the node image and six controller images into a fresh engine


def _cert_manager_images(version: str) -> set[str]:
    """cert-manager's own release tags (its chart's image.repository values at the release version)."""
    return {f"quay.io/jetstack/cert-manager-{c}:{version}" for c in ("controller", "cainjector", "webhook")}


def _nothing_created(engine: Engine, kind: Path, env: dict[str, str], home: Path) -> None:
    got = subprocess.run([str(kind), "get", "clusters"], capture_output=True, text=True, timeout=60, env=env)
    assert got.returncode == 0, got.stderr
    assert cluster.CLUSTER_NAME not in got.stdout.split()
    client = engine.client
    assert client.json("GET", "/containers/json", {"all": "1"}) == []
    assert sorted(n["Name"] for n in client.json("GET", "/networks")) == ["bridge", "host", "none"]
    assert not (home / "kubeconfig").exists()


def test_offline_up_stops_at_the_image_check_naming_only_cert_managers_images(
    run_lab, lab_env: dict[str, str], docker_engine: Engine, base_image: str, kind: Path, tmp_path: Path
) -> None:
    shared = Settings(home=default_home())
    client = docker_engine.client
    started = time.monotonic()
    node = images_node.build_node(shared, client, print)
    built = {name: images.build_one(shared, client, name, print) for name in images.IMAGES}
    print(
        f"node image {node.action}, controller images "
        f"{', '.join(f'{n} {r.action}' for n, r in built.items())}: {time.monotonic() - started:.0f}s"
    )

    # the tools as a user has them: kind and clusterctl on PATH, kubectl and helm in lab's bin cache
    tools = tmp_path / "tools"
    tools.mkdir()
    (tools / "kind").symlink_to(kind)
    (tools / "clusterctl").symlink_to(build_clusterctl())
    env = {
        **docker_engine.env(),
        "LAB_BIN_CACHE": str(shared.bin_dir),
        "PATH": f"{tools}:{os.environ['PATH']}",
    }
    home = Path(lab_env["LAB_HOME"])
    settings = Settings(home=home)
    assert settings.kind_nodes > 1  # so kind's load balancer is one of the images checked

    started = time.monotonic()
    up = run_lab("up", "--mode", "kind", "--offline", env=env, timeout=900)
    print(f"lab up --mode kind --offline: exit {up.returncode} in {time.monotonic() - started:.1f}s")
    print(up.stderr)
    assert up.returncode == 1, up.stdout + up.stderr
    assert "Traceback" not in up.stderr
    errors = [line for line in up.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, up.stderr
    [error] = errors
    missing = set(re.findall(r"(\S+) \(docker load an archive of it\)", error))
    assert missing == _cert_manager_images(settings.versions.cert_manager), error
    assert "3 image(s) not in the Docker engine" in error
    present = [
        cluster.node_image(settings),
        images_node.lb_reference(settings),
        *(r.reference for r in built.values()),
    ]
    for ref in present:
        assert ref not in error, f"{ref} is in the engine but named missing: {error}"

    _nothing_created(docker_engine, kind, env, home)

    # as a user would after a failed up: lab down says nothing runs, and changes nothing
    down = run_lab("down", env={**env, "LAB_MODE": "kind"})
    assert down.returncode == 0, down.stderr
    assert "was not running" in down.stdout
    _nothing_created(docker_engine, kind, env, home)
