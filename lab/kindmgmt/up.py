"""`lab up --mode kind`: the steps in order, each safe to re-run.

preflight (tools; nothing is written before it passes) -> offline only: the local clusterctl
repository rendered from the module cache (lab.kindmgmt.offline; a module missing offline is an
error here) -> BMO overlay built (a wrong base or no network fails here, still before any cluster
exists; offline, from BMO's module in the module cache) -> offline only: every image the nodes will
run present in the Docker engine (lab.kindmgmt.offline_images; one error line naming the missing
ones) -> kind cluster created or reused -> offline only: those images loaded into its nodes -> control-
plane taint removed -> BMO CRDs -> offline only: cert-manager's CRDs -> clusterctl init of the
providers not yet installed -> BMO -> offline only: the certificates issued and CA bundles injected
by lab (lab.kindmgmt.certs) -> wait for every manager -> tuning patches -> wait for the patched ones
-> the node simulator (a local supervised process as in local mode: it writes the Nodes when hosts are
provisioned).

Offline, lab always plays cert-manager's part (its images cannot be built from the module proxy,
lab.kindmgmt.certs says why and how clusterctl stays real), unless a cert-manager controller already
runs in the reused cluster. Online, clusterctl installs cert-manager itself, as upstream documents.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab import engine, tuning
from lab.config import Settings
from lab.errors import LabError
from lab.kindmgmt import (
    bmo,
    certs,
    cluster,
    clusterctl,
    kind_dir,
    kubeconfig_path,
    lease,
    offline,
    offline_images,
    patches,
    preflight,
    proc,
    simulator,
)
from lab.kube import Client, NotServed, waits

Log = Callable[[str], None]
#: seconds a manager Deployment may take to roll out (image pulls on a fresh kind cluster included)
ROLLOUT_TIMEOUT = 600.0
JSON_PATCH = "application/json-patch+json"
#: clusterctl installs IPAM too; lab waits for it but does not tune it (lab.tuning has no IPAM rows)
IPAM_DEPLOYMENT = ("metal3-ipam-system", "ipam-controller-manager")
PROVIDER_RESOURCE = "providers.clusterctl.cluster.x-k8s.io"
PROVIDER_API = "clusterctl.cluster.x-k8s.io/v1alpha3"


@dataclass
class KindUpResult:
    seconds: float
    kubeconfig: Path
    profile: str
    cluster: str  # "created" | "reused"
    installed: list[str] = field(default_factory=list)
    issued: list[str] = field(default_factory=list)  # Secrets lab wrote in cert-manager's place
    patched: list[str] = field(default_factory=list)
    started: list[str] = field(default_factory=list)
    n_shards = 1  # one KCP manager: kind mode does not shard (lab.shards)
    state = "ready"  # every manager Deployment rolled out

    def done(self) -> list[str]:
        what = [f"kind cluster {self.cluster}"]
        if self.installed:
            what.append(f"installed {', '.join(self.installed)}")
        if self.issued:
            what.append(f"issued {len(self.issued)} webhook certificate(s) from lab's CA")
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


def providers(client: Client) -> dict[str, Any]:
    """clusterctl's inventory (its Provider objects) as a List; empty before clusterctl init has
    installed the Provider CRD."""
    try:
        return {"items": client.list(PROVIDER_API, "Provider")}
    except NotServed:
        return {}


def _record(path: Path, objects: list[dict[str, Any]]) -> None:
    """Keep what is applied, as a List kubectl can read back, for a look after the fact."""
    path.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}))


def _check_profile(settings: Settings, profile: str) -> None:
    for component in tuning.COMPONENTS:
        tuning.knobs(settings, component, profile)  # unknown profile or too-old version: LabError


def _tune_bmo(settings: Settings, objects: list[dict[str, Any]], profile: str) -> list[dict[str, Any]]:
    return [
        patches.tuned(settings, "bmo-manager", o, profile) if patches.component_of(o) == "bmo-manager" else o
        for o in objects
    ]


def up(
    settings: Settings,
    profile: str | None = None,
    log: Log = lambda _m: None,
    bmo_source: Path | None = None,
    offline_mode: bool = False,
) -> KindUpResult:
    """offline_mode: clusterctl reads a repository rendered here from the module cache (no GitHub),
    and BMO's overlay is built from BMO's module unless bmo_source says otherwise."""
    started = time.monotonic()
    tools = preflight.check(settings)
    profile = profile or read_state(settings).get("profile") or "default"
    _check_profile(settings, profile)
    action = cluster.plan(settings, cluster.existing_clusters(tools.kind))
    config_file: Path | None = None
    cm_yaml: Path | None = None  # offline: cert-manager.yaml, whose CRDs lab applies
    if offline_mode:
        rendered = offline.render(settings, tools.kubectl, log)
        log(f"clusterctl repository rendered offline in {rendered.seconds:.1f}s ({rendered.config})")
        config_file, cm_yaml = rendered.config, rendered.cert_manager
        bmo_source = bmo_source or offline.bmo_module(settings)

    where = str(bmo_source) if bmo_source else f"GitHub {bmo.REPO} at {settings.versions.bmo}"
    log(f"building the BMO test-mode overlay from {where}")
    overlay = bmo.render_dir(settings, bmo_source)
    objects = _tune_bmo(settings, bmo.build(tools.kubectl, overlay), profile)
    bmo.manager(objects)  # the overlay must produce the manager before anything is created
    preload: list[str] = []
    if offline_mode:
        preload = offline_images.needed(rendered.providers, objects)
        offline_images.check(settings, engine.Client(), preload, cluster.node_image(settings))

    kubeconfig = cluster.ensure(settings, tools.kind, action, log)
    if preload:
        offline_images.load(tools.kind, cluster.CLUSTER_NAME, preload, log)
    result = KindUpResult(0.0, kubeconfig, profile, "created" if action == "create" else "reused")
    with Client.from_kubeconfig(kubeconfig) as client:
        cluster.untaint(client)
        lab_certs = offline_mode and not certs.cert_manager_runs(client)
        if offline_mode and not lab_certs:
            log("cert-manager runs in this cluster: it issues the certificates, not lab")
        cm_crds = cm_yaml if lab_certs else None
        result.installed = install(settings, client, tools, objects, log, config_file, cm_crds)
        if lab_certs:
            result.issued = certs.ensure(settings, client, log).issued
        for namespace, name in (*patches.DEPLOYMENTS.values(), IPAM_DEPLOYMENT):
            log(f"waiting for {namespace}/{name}")
            waits.wait_rolled_out(client, namespace, name, ROLLOUT_TIMEOUT)
        result.patched = apply_tuning(settings, client, profile, log)

    log("starting the node simulator")
    result.started = simulator.ensure(settings, log)
    write_state(settings, profile)
    result.seconds = time.monotonic() - started
    return result


def install(
    settings: Settings,
    client: Client,
    tools: preflight.Tools,
    objects: list[dict[str, Any]],
    log: Log,
    config_file: Path | None = None,
    cert_manager_crds: Path | None = None,
) -> list[str]:
    """BMO's CRDs, `clusterctl init` of the providers not installed yet, then BMO; the providers
    installed. Providers at another version are an error (upgrading is the user's decision).
    config_file: clusterctl's config (offline: lab.kindmgmt.offline's); default the online one.
    cert_manager_crds: lab plays cert-manager (lab.kindmgmt.certs): only the CRDs of this
    cert-manager.yaml are applied, and clusterctl does not wait for the providers."""
    missing, drifted = clusterctl.plan(settings, clusterctl.installed(providers(client)))
    if drifted:
        raise LabError(
            f"providers installed at other versions: {'; '.join(drifted)}; run clusterctl upgrade "
            "or recreate the kind cluster"
        )
    log("applying BMO's CRDs (CAPM3 watches BareMetalHosts)")
    crds = bmo.crds(objects)
    _record(kind_dir(settings) / "bmo-crds.json", crds)
    client.apply(crds)
    waits.wait_established(client, [o["metadata"]["name"] for o in crds])
    if cert_manager_crds is not None:
        certs.install_crds(client, cert_manager_crds, log)
    if missing:
        cm = (
            "lab issues the certificates"
            if cert_manager_crds
            else f"and cert-manager {settings.versions.cert_manager}"
        )
        log(f"clusterctl init: {', '.join(missing)} ({cm})")
        config_file = config_file or clusterctl.write_config(settings)
        kubeconfig = kubeconfig_path(settings)
        wait = cert_manager_crds is None
        proc.run(
            clusterctl.init_argv(settings, tools.clusterctl, kubeconfig, config_file, wait),
            env=clusterctl.init_env(),
            timeout=clusterctl.INIT_TIMEOUT_SECONDS,
        )
    else:
        log("clusterctl providers already installed at the pinned versions")
    log(f"applying BMO {settings.versions.bmo} in test mode")
    _record(kind_dir(settings) / "bmo.json", objects)
    client.apply(objects)
    return missing


def apply_tuning(settings: Settings, client: Client, profile: str, log: Log) -> list[str]:
    """JSON-patch each tuned manager Deployment whose args differ from the profile, then wait for
    their rollouts; the components patched. Each patch is kept under kind/patches."""
    patch_dir = kind_dir(settings) / "patches"
    patch_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    patched = []
    for component, (namespace, name) in patches.DEPLOYMENTS.items():
        deployment = client.get("apps/v1", "Deployment", name, namespace)
        if deployment is None:
            raise LabError(
                f"deployment {namespace}/{name} is not in the kind cluster (run lab up --mode kind)"
            )
        patch = patches.render(settings, component, deployment, profile)
        if not patch:
            continue
        (patch_dir / f"{component}.json").write_text(json.dumps(patch, indent=2) + "\n")
        log(f"tuning {namespace}/{name} to profile {profile}")
        path = client.resource("apps/v1", "Deployment").path(namespace, name)
        client.request("PATCH", path, body=patch, content_type=JSON_PATCH)
        patched.append(component)
    for component in patched:
        namespace, name = patches.DEPLOYMENTS[component]
        waits.wait_rolled_out(client, namespace, name, ROLLOUT_TIMEOUT)
        if lease.release_stale(client, component, namespace):
            log(f"{namespace}/{name}: the old pod's leader Lease released for the new pod")
    return patched


def tune(settings: Settings, profile: str, log: Log = lambda _m: None) -> list[str]:
    """Store the profile; when kind mode's cluster has been brought up here, patch the managers whose
    flags change and wait for them. The components patched."""
    _check_profile(settings, profile)
    if not state_path(settings).is_file():
        write_state(settings, profile)  # no cluster yet: the next lab up --mode kind uses it
        return []
    with Client.from_kubeconfig(kubeconfig_path(settings)) as client:
        patched = apply_tuning(settings, client, profile, log)
    write_state(settings, profile)
    return patched


def write_state(settings: Settings, profile: str) -> None:
    kind_dir(settings).mkdir(parents=True, exist_ok=True, mode=0o700)
    state_path(settings).write_text(json.dumps({"profile": profile, "cluster": cluster.CLUSTER_NAME}))
