"""`lab up --mode kind --offline` for real, as far as it can run on a machine that cannot make
cert-manager's images: the CLI, a real Docker engine (the session's, cut off from the uplink), kind and
clusterctl built from their Go modules and found on PATH, kubectl and helm in lab's bin cache, the
node image (and kind's load-balancer stand-in) and every controller image built into the engine.

cert-manager's three images cannot be built here (lab.kindmgmt.offline says why), so the command
must stop at the image check with one error line naming exactly those three, before anything exists:
no kind cluster, no container, no kind network, no kubeconfig.

Then, with a stand-in tagged as each cert-manager image, the same command (one node, to keep it
short) gets past the check: it creates the kind cluster and loads every image into the node, then
runs clusterctl init, which waits for cert-manager's webhook. That wait is clusterctl's own default
of 10 minutes (lab's offline clusterctl.yaml sets no cert-manager timeout), too long for this suite,
so the test stops lab there as a user would, with Ctrl-C (SIGINT to its process group): one error line,
non-zero exit. kind delete cluster and lab down leave nothing behind.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.docker import Engine
from support.kind import build_clusterctl, delete_cluster

from lab import images, images_node
from lab.config import Settings, default_home
from lab.kindmgmt import cluster
from lab.kube import Client

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


def test_offline_up_stops_at_the_image_check_then_loads_the_images_into_the_nodes(
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
    assert "3 image(s) not in the Docker engine" in error and "lab images build" not in error
    present = [
        cluster.node_image(settings),
        images_node.lb_reference(settings),
        *(r.reference for r in built.values()),
    ]
    for ref in present:
        assert ref not in error, f"{ref} is in the engine but named missing: {error}"

    _nothing_created(docker_engine, kind, env, home)
    try:
        _past_the_check(kind, env, lab_env, missing, built)
    finally:
        deleted = delete_cluster(kind, client, env)
    assert deleted.returncode == 0, deleted.stderr
    (home / "kubeconfig").unlink()  # kind's kubeconfig of the deleted cluster

    # as a user would after a failed up (LAB_MODE: the mode lab up was given): lab down says nothing
    # runs (the node simulator starts only after clusterctl init), and changes nothing
    down = run_lab("down", env={**env, "LAB_MODE": "kind"})
    assert down.returncode == 0, down.stderr
    assert "was not running" in down.stdout
    _nothing_created(docker_engine, kind, env, home)


def _node_images(node: str, env: dict[str, str]) -> set[str]:
    out = subprocess.run(
        ["docker", "exec", node, "ctr", "-n", "k8s.io", "images", "ls", "-q"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
    )
    assert out.returncode == 0, out.stderr
    return set(out.stdout.split())


def _past_the_check(
    kind: Path,
    env: dict[str, str],
    lab_env: dict[str, str],
    missing: set[str],
    built: dict[str, images.Result],
) -> None:
    # A stand-in only to get past the image check: lab's base image tagged as each cert-manager
    # reference. Nothing runs it as cert-manager: its pods fail to start, and clusterctl waits.
    for ref in sorted(missing):
        tag = subprocess.run(
            ["docker", "tag", images.base_reference(), ref],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, **env},
        )
        assert tag.returncode == 0, tag.stderr
    one = {**lab_env, **env, "LAB_KIND_NODES": "1", "COLUMNS": "200"}
    started = time.monotonic()
    up = subprocess.Popen(
        [sys.executable, "-m", "lab", "up", "--mode", "kind", "--offline"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=one,
        start_new_session=True,  # its own process group, as a shell gives a foreground job
    )
    assert up.stderr is not None
    seen: list[str] = []
    try:
        for line in up.stderr:  # lab logs each step to stderr as it starts it
            seen.append(line.rstrip())
            print(f"  [{time.monotonic() - started:5.1f}s] {line.rstrip()}")
            if "clusterctl init:" in line or line.startswith("error:"):
                break
            assert time.monotonic() - started < 420, "\n".join(seen)
        assert any("clusterctl init:" in s for s in seen), "\n".join(seen)
        assert not any(line.startswith("error:") for line in seen)
        assert any("image(s) into the kind nodes" in s for s in seen), "\n".join(seen)
        nodes = subprocess.run(
            [str(kind), "get", "nodes", "--name", cluster.CLUSTER_NAME],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, **env},
        ).stdout.split()
        assert nodes == [f"{cluster.CLUSTER_NAME}-control-plane"]
        for node in nodes:
            held = _node_images(node, env)
            wanted = {r.reference for r in built.values()} | missing
            assert wanted <= held, f"{node} lacks {sorted(wanted - held)}"
        # clusterctl has applied cert-manager and waits for its webhook, which never answers
        kubeconfig = Path(lab_env["LAB_HOME"]) / "kubeconfig"
        with Client.from_kubeconfig(kubeconfig) as kc:
            while kc.get("apps/v1", "Deployment", "cert-manager-webhook", "cert-manager") is None:
                assert up.poll() is None and time.monotonic() - started < 480, "no cert-manager applied"
                time.sleep(2)
        os.killpg(up.pid, signal.SIGINT)  # Ctrl-C
        out, rest = up.communicate(timeout=120)
    finally:
        if up.poll() is None:
            os.killpg(up.pid, signal.SIGKILL)
            up.wait()
    seconds = time.monotonic() - started
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(f"second lab up: cluster, images loaded, clusterctl init interrupted after {seconds:.0f}s; {load}")
    print(f"exit {up.returncode}; stdout {out!r}; stderr {rest!r}")
    assert up.returncode != 0
    errors = [line for line in rest.splitlines() if line.startswith("error:")]
    assert errors == ["error: aborted"], rest
    assert "Traceback" not in rest
    # Ctrl-C reached the whole foreground job: clusterctl did not outlive lab
    left = [p for p in Path("/proc").glob("[0-9]*") if _cmdline_has(p, lab_env["LAB_HOME"])]
    assert left == [], f"processes of this lab home left running: {left}"


def _cmdline_has(proc: Path, text: str) -> bool:
    try:
        return text.encode() in (proc / "cmdline").read_bytes()
    except OSError:
        return False
