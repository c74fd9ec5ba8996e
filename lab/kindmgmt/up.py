"""`lab up --mode kind`: the steps in order, each safe to re-run.

preflight (tools; nothing is written before it passes) -> BMO overlay built (a wrong base or no
network fails here, still before any cluster exists) -> kind cluster created or reused -> control-
plane taint removed -> BMO CRDs -> clusterctl init of the providers not yet installed -> BMO -> wait
for every manager -> tuning patches -> wait for the patched ones -> the node simulator (a local
supervised process as in local mode: it writes the Nodes when hosts are provisioned).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab import tuning
from lab.config import Settings
from lab.errors import LabError
from lab.kindmgmt import (
    bmo,
    cluster,
    clusterctl,
    kind_dir,
    kubeconfig_path,
    patches,
    preflight,
    proc,
    simulator,
)
from lab.kube import FIELD_MANAGER

Log = Callable[[str], None]
ROLLOUT_TIMEOUT = "600s"
#: clusterctl installs IPAM too; lab waits for it but does not tune it (lab.tuning has no IPAM rows)
IPAM_DEPLOYMENT = ("metal3-ipam-system", "ipam-controller-manager")
PROVIDER_RESOURCE = "providers.clusterctl.cluster.x-k8s.io"


@dataclass
class KindUpResult:
    seconds: float
    kubeconfig: Path
    profile: str
    cluster: str  # "created" | "reused"
    installed: list[str] = field(default_factory=list)
    patched: list[str] = field(default_factory=list)
    started: list[str] = field(default_factory=list)
    state = "ready"  # every manager Deployment rolled out

    def done(self) -> list[str]:
        what = [f"kind cluster {self.cluster}"]
        if self.installed:
            what.append(f"installed {', '.join(self.installed)}")
        if self.patched:
            what.append(f"tuned {', '.join(self.patched)}")
        if self.started:
            what.append(f"started {', '.join(self.started)}")
        return what


def state_path(settings: Settings) -> Path:
    return kind_dir(settings) / "state.json"


def read_state(settings: Settings) -> dict[str, Any]:
    path = state_path(settings)
    return json.loads(path.read_text()) if path.is_file() else {}


class Kubectl:
    """kubectl against the kind management cluster."""

    def __init__(self, exe: str, kubeconfig: Path) -> None:
        self.exe, self.kubeconfig = exe, kubeconfig

    def __call__(self, *args: str, input_text: str | None = None, timeout: float = 300) -> str:
        return proc.run(
            [self.exe, f"--kubeconfig={self.kubeconfig}", *args], input_text=input_text, timeout=timeout
        ).stdout

    def apply(self, objects: list[dict[str, Any]], path: Path) -> None:
        path.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}))
        self(
            "apply", "--server-side", "--force-conflicts", f"--field-manager={FIELD_MANAGER}", "-f", str(path)
        )

    def rollout(self, namespace: str, name: str) -> None:
        self(
            "-n",
            namespace,
            "rollout",
            "status",
            f"deployment/{name}",
            f"--timeout={ROLLOUT_TIMEOUT}",
            timeout=660,
        )

    def providers(self) -> dict[str, Any]:
        out = proc.run(
            [self.exe, f"--kubeconfig={self.kubeconfig}", "get", PROVIDER_RESOURCE, "-A", "-o", "json"],
            check=False,
            timeout=60,
        )
        if out.returncode != 0:
            if "doesn't have a resource type" in out.stderr:
                return {}  # no clusterctl inventory yet: nothing installed
            raise LabError(
                f"kubectl get {PROVIDER_RESOURCE} failed: {(out.stderr.strip().splitlines() or ['?'])[-1]}"
            )
        return json.loads(out.stdout)


def _check_profile(settings: Settings, profile: str) -> None:
    for component in tuning.COMPONENTS:
        tuning.knobs(settings, component, profile)  # unknown profile or too-old version: LabError


def _tune_bmo(settings: Settings, objects: list[dict[str, Any]], profile: str) -> list[dict[str, Any]]:
    return [
        patches.tuned(settings, "bmo-manager", o, profile) if patches.component_of(o) == "bmo-manager" else o
        for o in objects
    ]


def up(
    settings: Settings, profile: str | None = None, log: Log = lambda _m: None, bmo_source: Path | None = None
) -> KindUpResult:
    started = time.monotonic()
    tools = preflight.check(settings)
    profile = profile or read_state(settings).get("profile") or "default"
    _check_profile(settings, profile)
    action = cluster.plan(settings, cluster.existing_clusters(tools.kind))

    where = str(bmo_source) if bmo_source else f"GitHub {bmo.REPO} at {settings.versions.bmo}"
    log(f"building the BMO test-mode overlay from {where}")
    overlay = bmo.render_dir(settings, bmo_source)
    objects = _tune_bmo(settings, bmo.build(tools.kubectl, overlay), profile)
    bmo.manager(objects)  # the overlay must produce the manager before anything is created

    kubeconfig = cluster.ensure(settings, tools.kind, action, log)
    kubectl = Kubectl(tools.kubectl, kubeconfig)
    cluster.untaint(tools.kubectl, kubeconfig)
    result = KindUpResult(0.0, kubeconfig, profile, "created" if action == "create" else "reused")

    missing, drifted = clusterctl.plan(settings, clusterctl.installed(kubectl.providers()))
    if drifted:
        raise LabError(
            f"providers installed at other versions: {'; '.join(drifted)}; run clusterctl upgrade "
            "or recreate the kind cluster"
        )
    log("applying BMO's CRDs (CAPM3 watches BareMetalHosts)")
    kubectl.apply(bmo.crds(objects), kind_dir(settings) / "bmo-crds.json")
    kubectl(
        "wait",
        "--for=condition=Established",
        "--timeout=120s",
        *(f"crd/{o['metadata']['name']}" for o in bmo.crds(objects)),
    )
    if missing:
        log(f"clusterctl init: {', '.join(missing)} (and cert-manager {settings.versions.cert_manager})")
        config_file = clusterctl.write_config(settings)
        proc.run(
            clusterctl.init_argv(settings, tools.clusterctl, kubeconfig, config_file),
            env=clusterctl.init_env(),
            timeout=clusterctl.WAIT_PROVIDERS_SECONDS + 600,
        )
        result.installed = missing
    else:
        log("clusterctl providers already installed at the pinned versions")
    log(f"applying BMO {settings.versions.bmo} in test mode")
    kubectl.apply(objects, kind_dir(settings) / "bmo.json")

    for namespace, name in (*patches.DEPLOYMENTS.values(), IPAM_DEPLOYMENT):
        log(f"waiting for {namespace}/{name}")
        kubectl.rollout(namespace, name)

    result.patched = apply_tuning(settings, kubectl, profile, log)

    log("starting the node simulator")
    result.started = simulator.ensure(settings, log)
    write_state(settings, profile)
    result.seconds = time.monotonic() - started
    return result


def apply_tuning(settings: Settings, kubectl: Kubectl, profile: str, log: Log) -> list[str]:
    """JSON-patch each tuned manager Deployment whose args differ from the profile, then wait for
    their rollouts; the components patched."""
    patch_dir = kind_dir(settings) / "patches"
    patch_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    patched = []
    for component, (namespace, name) in patches.DEPLOYMENTS.items():
        deployment = json.loads(kubectl("-n", namespace, "get", "deployment", name, "-o", "json"))
        patch = patches.render(settings, component, deployment, profile)
        if not patch:
            continue
        path = patch_dir / f"{component}.json"
        path.write_text(json.dumps(patch, indent=2) + "\n")
        log(f"tuning {namespace}/{name} to profile {profile}")
        kubectl("-n", namespace, "patch", "deployment", name, "--type=json", f"--patch-file={path}")
        patched.append(component)
    for component in patched:
        kubectl.rollout(*patches.DEPLOYMENTS[component])
    return patched


def tune(settings: Settings, profile: str, log: Log = lambda _m: None) -> list[str]:
    """Store the profile; when kind mode's cluster has been brought up here, patch the managers whose
    flags change and wait for them. The components patched."""
    _check_profile(settings, profile)
    if not state_path(settings).is_file():
        write_state(settings, profile)  # no cluster yet: the next lab up --mode kind uses it
        return []
    tools = preflight.check(settings)
    patched = apply_tuning(settings, Kubectl(tools.kubectl, kubeconfig_path(settings)), profile, log)
    write_state(settings, profile)
    return patched


def write_state(settings: Settings, profile: str) -> None:
    kind_dir(settings).mkdir(parents=True, exist_ok=True, mode=0o700)
    state_path(settings).write_text(json.dumps({"profile": profile, "cluster": cluster.CLUSTER_NAME}))
