"""What kind mode applies, checked against a real kube-apiserver (the session `stack`, which has the
CAPI, CAPM3, IPAM and BMO CRDs) and the real manager binaries, since no kind cluster can run here.

- Each manager Deployment lab tunes is rendered from its module's config/ at the pinned version with
  `kubectl kustomize`, with clusterctl's variable defaults substituted (what `clusterctl init` would
  install); the tuning patch of each profile is applied by kubectl itself (`patch --local`), and the
  result passes `kubectl apply --dry-run=server` in its real namespace (created here, removed after).
- Every arg of every tuned manager, upstream's and lab's, goes through that manager's own flag
  parser (the built binary with the args and `--help`), so an unknown flag or a bad value fails here
  and not in a CrashLoopBackOff.
- BMO's test-mode overlay is built from the module cache and dry-run applied the way `lab up --mode
  kind` applies it (server-side, field manager lab). Its cert-manager Certificate and Issuer are
  left out: cert-manager's CRDs come from clusterctl at run time and are not in this apiserver.
- The control-plane untaint step runs against real Node objects.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from support.stack import Stack

from lab import build, config, gomod, kindmgmt, tuning
from lab.kindmgmt import bmo, cluster, clusterctl, patches, simulator, up
from lab.kube import Client

#: tuning component -> (lab.versions key, the kustomize dir of its config/default in that module)
UPSTREAM = {
    "capi-manager": ("capi", "config/default"),
    "kcp-manager": ("capi", "controlplane/kubeadm/config/default"),
    "cabpk-manager": ("capi", "bootstrap/kubeadm/config/default"),
    "capm3-manager": ("capm3", "config/default"),
}
CERT_MANAGER_KINDS = {"Certificate", "Issuer"}


def _kubectl() -> str:
    exe = shutil.which("kubectl")
    assert exe, "kubectl must be on PATH"
    return exe


@pytest.fixture(scope="module")
def settings(stack: Stack) -> config.Settings:
    return config.Settings(home=stack.home, bin_cache=Path(stack.env["LAB_BIN_CACHE"]))


@pytest.fixture(scope="module")
def bmo_objects(settings: config.Settings, tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    source = gomod.component_dir("bmo", settings.versions.bmo)
    overlay = bmo.render_dir(settings, source, tmp_path_factory.mktemp("bmo") / "overlay")
    return bmo.build(_kubectl(), overlay)


@pytest.fixture(scope="module")
def upstream(settings: config.Settings, bmo_objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """tuning component -> its Deployment as clusterctl (or the BMO overlay) would install it."""
    out = {}
    for component, (key, subdir) in UPSTREAM.items():
        root = gomod.component_dir(key, getattr(settings.versions, key))
        text = subprocess.run(
            [_kubectl(), "kustomize", str(root / subdir)],
            capture_output=True,
            text=True,
            check=True,
            timeout=300,
        ).stdout
        docs = [d for d in yaml.safe_load_all(clusterctl.substitute_defaults(text)) if d]
        found = [d for d in docs if d["kind"] == "Deployment" and patches.component_of(d) == component]
        assert len(found) == 1, (
            f"{component}: no Deployment {patches.DEPLOYMENTS[component]} in {root / subdir}"
        )
        out[component] = found[0]
    out["bmo-manager"] = bmo.manager(bmo_objects)
    return out


@pytest.fixture(scope="module")
def namespaces(stack: Stack) -> Any:
    """Create the managers' namespaces for real (dry-run cannot create the namespace its objects
    need); delete only the ones this test created."""
    existing = {i["metadata"]["name"] for i in stack.kubectl_json("get", "namespaces")["items"]}
    wanted = sorted({ns for ns, _ in patches.DEPLOYMENTS.values()})
    created = [ns for ns in wanted if ns not in existing]
    for ns in created:
        stack.kubectl("create", "namespace", ns)
    yield wanted
    for ns in created:
        stack.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def test_deployments_are_where_lab_patches_them(upstream: dict[str, dict[str, Any]]) -> None:
    assert set(upstream) == set(tuning.COMPONENTS)
    for component, deployment in upstream.items():
        assert (deployment["metadata"]["namespace"], deployment["metadata"]["name"]) == patches.DEPLOYMENTS[
            component
        ]
        assert patches.manager_args(deployment), f"{component}: the manager has no args"
    assert "--test-mode" in patches.manager_args(upstream["bmo-manager"])


def _patched(
    stack: Stack, deployment: dict[str, Any], patch: list[dict[str, Any]], tmp_path: Path
) -> dict[str, Any]:
    """kubectl applies the RFC 6902 patch (its `test` op included) to the manifest, offline."""
    manifest, patch_file = tmp_path / "deployment.json", tmp_path / "patch.json"
    manifest.write_text(json.dumps(deployment))
    patch_file.write_text(json.dumps(patch))
    out = stack.kubectl(
        "patch", "--local", "-f", str(manifest), "--type=json", f"--patch-file={patch_file}", "-o", "json"
    )
    return json.loads(out.stdout)


@pytest.mark.parametrize("profile", tuning.PROFILES)
@pytest.mark.parametrize("component", list(tuning.COMPONENTS))
def test_tuned_deployment_passes_server_dry_run(
    stack: Stack,
    settings: config.Settings,
    upstream: dict[str, dict[str, Any]],
    namespaces: list[str],
    component: str,
    profile: str,
    tmp_path: Path,
) -> None:
    deployment = upstream[component]
    patch = patches.render(settings, component, deployment, profile)
    want = patches.wanted_args(settings, component, patches.manager_args(deployment), profile)
    tuned = _patched(stack, deployment, patch, tmp_path) if patch else deployment
    assert patches.manager_args(tuned) == want
    out = stack.kubectl("apply", "--dry-run=server", "-o", "json", "-f", "-", input_text=json.dumps(tuned))
    accepted = json.loads(out.stdout)
    assert patches.manager_args(accepted) == want
    assert accepted["metadata"]["namespace"] == patches.DEPLOYMENTS[component][0]


def test_a_stale_patch_is_refused_by_its_test_op(
    stack: Stack, settings: config.Settings, upstream: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    """The `test` op is what keeps a concurrent edit of the args from being overwritten."""
    deployment = upstream["capi-manager"]
    patch = patches.render(settings, "capi-manager", deployment, "high")
    edited = patches.tuned(settings, "capi-manager", deployment, "seed")
    (tmp_path / "d.json").write_text(json.dumps(edited))
    (tmp_path / "p.json").write_text(json.dumps(patch))
    out = stack.kubectl(
        "patch",
        "--local",
        "-f",
        str(tmp_path / "d.json"),
        "--type=json",
        f"--patch-file={tmp_path / 'p.json'}",
        "-o",
        "json",
        check=False,
    )
    assert out.returncode != 0 and "test" in out.stderr.lower()


def _help_flags(binary: Path) -> set[str]:
    out = subprocess.run([str(binary), "--help"], capture_output=True, text=True, timeout=60)
    found = set(re.findall(r"(?m)^\s+(?:-\w, )?--?([a-z0-9][a-z0-9-]*)", out.stdout + out.stderr))
    assert len(found) > 10, f"{binary} --help printed no flag list"
    return found


@pytest.mark.parametrize("profile", tuning.PROFILES)
@pytest.mark.parametrize("component", list(tuning.COMPONENTS))
def test_every_arg_parses_in_the_real_manager(
    settings: config.Settings, upstream: dict[str, dict[str, Any]], component: str, profile: str
) -> None:
    binary = build.binary_path(settings, component)
    assert binary.is_file(), f"{binary} missing: the stack fixture builds it"
    args = patches.manager_args(patches.tuned(settings, component, upstream[component], profile))
    known = _help_flags(binary)
    unknown = [a for a in args if a.split("=", 1)[0].lstrip("-") not in known]
    assert not unknown, f"{component} {profile}: not in --help: {unknown}"
    run = subprocess.run([str(binary), *args, "--help"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, f"{component} rejected {args}:\n{run.stderr[-2000:]}"


def test_bmo_overlay_passes_server_dry_run(
    stack: Stack,
    settings: config.Settings,
    bmo_objects: list[dict[str, Any]],
    namespaces: list[str],
    tmp_path: Path,
) -> None:
    assert bmo.NAMESPACE in namespaces
    left_out = {o["kind"] for o in bmo_objects if o["kind"] in CERT_MANAGER_KINDS}
    assert left_out == CERT_MANAGER_KINDS  # the webhook's serving cert: cert-manager must exist at run time
    objects = [
        patches.tuned(settings, "bmo-manager", o, "high") if patches.component_of(o) == "bmo-manager" else o
        for o in bmo_objects
        if o["kind"] not in CERT_MANAGER_KINDS
    ]
    path = tmp_path / "bmo.json"
    path.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}))
    out = stack.kubectl(
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager=lab",
        "--dry-run=server",
        "-f",
        str(path),
        "-o",
        "json",
        timeout=300,
    )
    accepted = json.loads(out.stdout)["items"]
    assert len(accepted) == len(objects)
    manager = next(o for o in accepted if o["kind"] == "Deployment")
    assert "--test-mode" in patches.manager_args(manager)
    assert "--controller-concurrency=50" in patches.manager_args(manager)


def test_untaint_removes_only_the_control_plane_taint(stack: Stack) -> None:
    names = ["kindmgmt-cp-1", "kindmgmt-cp-2", "kindmgmt-cp-3"]
    label = {cluster.CONTROL_PLANE_TAINT: ""}
    nodes = [
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": n, "labels": {**label, "scale-lab.metal3.io/test": "kindmgmt"}},
            "spec": {
                "taints": [{"key": cluster.CONTROL_PLANE_TAINT, "effect": "NoSchedule"}]
                + ([{"key": "example.com/keep", "effect": "NoSchedule"}] if n.endswith("1") else [])
            },
        }
        for n in names
    ]
    stack.kubectl(
        "create", "-f", "-", input_text=json.dumps({"apiVersion": "v1", "kind": "List", "items": nodes})
    )
    try:
        with Client.from_kubeconfig(stack.kubeconfig) as client:
            cluster.untaint(client)
            cluster.untaint(client)  # a re-run finds nothing to remove and is fine
        for n in names:
            taints = stack.kubectl_json("get", "node", n)["spec"].get("taints") or []
            assert cluster.CONTROL_PLANE_TAINT not in {t["key"] for t in taints}
        kept = stack.kubectl_json("get", "node", names[0])["spec"]["taints"]
        assert {"key": "example.com/keep", "effect": "NoSchedule"} in kept
    finally:
        stack.kubectl("delete", "node", *names, "--wait=false", check=False)


def test_no_clusterctl_inventory_means_nothing_installed(stack: Stack) -> None:
    """This apiserver has no clusterctl Provider CRD, like a fresh kind cluster before clusterctl init."""
    raw = stack.kubectl("get", up.PROVIDER_RESOURCE, "-A", check=False)
    assert raw.returncode != 0 and "doesn't have a resource type" in raw.stderr
    with Client.from_kubeconfig(stack.kubeconfig) as client:
        inventory = up.providers(client)
    missing, drifted = clusterctl.plan(config.Settings(home=stack.home), clusterctl.installed(inventory))
    assert len(missing) == len(clusterctl.PROVIDERS) and not drifted


def test_kind_up_refuses_while_the_local_stack_runs(stack: Stack, tmp_path: Path) -> None:
    """Tools present (docker, kind and clusterctl stand-ins that answer like the real ones; no engine
    exists here), but this lab home runs the local stack: refused before anything, kubeconfig kept."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for name, script in {
        "docker": "[ \"$1\" = info ] && exit 0\necho 'Docker version 28.2.2, build x'",
        "kind": "echo 'kind v0.33.0 go1.25.0 linux/amd64'",
        "clusterctl": "echo 'v1.13.6'",
    }.items():
        (bindir / name).write_text(f"#!/bin/sh\n{script}\n")
        (bindir / name).chmod(0o755)
    before = stack.kubeconfig.read_bytes()
    env = {**stack.env, "PATH": f"{bindir}:{Path(_kubectl()).parent}:/usr/bin:/bin"}
    run = subprocess.run(
        [sys.executable, "-m", "lab", "up", "--mode", "kind"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert run.returncode == 1
    assert run.stderr.strip().splitlines() == [
        f"error: the local stack runs in this lab home ({stack.home}); run lab down first, "
        "or give kind mode its own LAB_HOME"
    ]
    assert stack.kubeconfig.read_bytes() == before
    assert not (stack.home / "kind").exists()


def test_simulator_runs_alone_against_a_management_kubeconfig(stack: Stack, tmp_path: Path) -> None:
    """kind mode's node simulator: a lab home whose admin kubeconfig points at a real management API
    (the stack's, standing in for the kind cluster) gets supervisord with the simulator and nothing
    else, even when a stopped local stack left its program files; a re-run changes nothing; lab down
    stops it."""
    from lab import nodesim
    from lab.runtime import supervise
    from lab.runtime.files import write_private

    home = tmp_path / "h"
    settings = config.Settings(home=home, bin_cache=Path(stack.env["LAB_BIN_CACHE"]))
    write_private(kindmgmt.kubeconfig_path(settings), stack.kubeconfig.read_bytes())
    supervise.programs_dir(settings).mkdir(parents=True)
    (supervise.programs_dir(settings) / "kube-apiserver.conf").write_text(
        "[program:kube-apiserver]\ncommand=/bin/false\n"
    )
    env = {**stack.env, "LAB_HOME": str(home)}
    try:
        assert simulator.ensure(settings, print) == [nodesim.PROGRAM_NAME]
        names = [p["name"] for p in supervise.Supervisor(settings).processes()]
        assert names == [nodesim.PROGRAM_NAME]
        assert simulator.ensure(settings, print) == []
        status = json.loads(
            subprocess.run(
                [sys.executable, "-m", "lab", "status", "-o", "json"],
                capture_output=True,
                text=True,
                env=env,
                timeout=120,
            ).stdout
        )
        assert [(c["name"], c["state"]) for c in status["components"]] == [(nodesim.PROGRAM_NAME, "RUNNING")]
    finally:
        down = subprocess.run(
            [sys.executable, "-m", "lab", "down"], capture_output=True, text=True, env=env, timeout=120
        )
    assert down.returncode == 0 and "stack stopped" in down.stdout
    assert not supervise.Supervisor(settings).alive()
