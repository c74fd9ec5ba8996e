"""The kind management cluster: its config (pure), and creating or reusing it with the kind CLI.

The config follows the Metal3 1000-cluster runs (reference/research/seed-scripts.md §2): only
control-plane nodes, three by default (settings.kind_nodes), and no apiserver flags, because the seed
ran kind's defaults. Unlike the seed, the node image is pinned to the configured Kubernetes version:
kind's default image moves with every kind release.

With more than one node kind keeps the control-plane NoSchedule taint (it only removes it for a
single node), and cert-manager does not tolerate it, so `untaint` removes it as the seed did.

On lab's own node image (`lab images build node`, told apart by its label) kind's default CNI
(kindnetd) is absent: the config disables it and lab.kindmgmt.podnet sets up the pod network after
create (and again on reuse, idempotently).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from lab import doctor, images_node
from lab.config import Settings
from lab.engine import Client as Engine
from lab.engine import EngineError
from lab.errors import LabError
from lab.kindmgmt import kind_dir, kubeconfig_path, podnet, proc
from lab.kube import Client
from lab.runtime.files import write_private

CLUSTER_NAME = "lab-mgmt"
CONFIG_API = "kind.x-k8s.io/v1alpha4"
CONTROL_PLANE_TAINT = "node-role.kubernetes.io/control-plane"

Log = Callable[[str], None]


def node_image(settings: Settings) -> str:
    return settings.kind_node_image or f"kindest/node:{settings.versions.kubernetes}"


#: kubelet >= 1.35 refuses to start on a cgroup v1 host unless told otherwise; applied only there
CGROUP_V1_PATCH = "kind: KubeletConfiguration\nfailCgroupV1: false\n"


def render_config(settings: Settings, cgroup_v1: bool = False, own_network: bool = False) -> dict[str, Any]:
    """The kind Cluster config: N control-plane nodes on the pinned node image; on a cgroup v1 host
    (`cgroup_v1`, detected by the caller) the kubelet patch that lets it start there; on lab's own
    node image (`own_network`) no default CNI, lab's pod network instead (lab.kindmgmt.podnet)."""
    image = node_image(settings)
    cfg: dict[str, Any] = {
        "kind": "Cluster",
        "apiVersion": CONFIG_API,
        "name": CLUSTER_NAME,
        "nodes": [{"role": "control-plane", "image": image} for _ in range(settings.kind_nodes)],
    }
    if own_network:
        cfg["networking"] = {"disableDefaultCNI": True}
    if cgroup_v1:
        cfg["kubeadmConfigPatches"] = [CGROUP_V1_PATCH]
    return cfg


def lab_node_image(settings: Settings) -> bool:
    """Whether the engine's node image is lab's own (no kindnetd); False when there is no engine (the
    create fails on that with kind's own message)."""
    try:
        return images_node.is_lab_node_image(Engine(), node_image(settings))
    except EngineError:
        return False


def host_config(settings: Settings) -> dict[str, Any]:
    """render_config for this host and engine: its workarounds only where their cause is detected."""
    return render_config(
        settings, cgroup_v1=doctor.host_cgroup_version() == "1", own_network=lab_node_image(settings)
    )


def config_yaml(settings: Settings) -> str:
    return yaml.safe_dump(host_config(settings), sort_keys=False)


def config_path(settings: Settings) -> Path:
    """The config the existing cluster was created with: kind cannot report it, so lab keeps it."""
    return kind_dir(settings) / "kind-config.yaml"


def config_change(old: dict[str, Any], new: dict[str, Any]) -> str | None:
    """What differs between the config a cluster was created with and the wanted one, or None."""
    if old == new:
        return None
    old_nodes, new_nodes = old.get("nodes") or [], new.get("nodes") or []
    if len(old_nodes) != len(new_nodes):
        return f"{len(old_nodes)} node(s) now, {len(new_nodes)} wanted"
    old_images = sorted({str(n.get("image")) for n in old_nodes})
    new_images = sorted({str(n.get("image")) for n in new_nodes})
    if old_images != new_images:
        return f"node image {', '.join(old_images)} now, {', '.join(new_images)} wanted"
    return "the kind config differs"


def existing_clusters(kind: str) -> list[str]:
    out = proc.run([kind, "get", "clusters"], timeout=60)
    # "No kind clusters found." goes to stderr; stdout has one name per line.
    return [line.strip() for line in out.stdout.splitlines() if line.strip()]


def plan(settings: Settings, existing: list[str]) -> str:
    """'create' or 'reuse'; a LabError when a cluster of that name exists with another config."""
    if CLUSTER_NAME not in existing:
        return "create"
    path = config_path(settings)
    if not path.is_file():
        raise LabError(
            f"a kind cluster named {CLUSTER_NAME} exists but this lab home ({settings.home}) did not create "
            f"it; delete it (kind delete cluster --name {CLUSTER_NAME}) or use its own lab home"
        )
    change = config_change(yaml.safe_load(path.read_text()) or {}, host_config(settings))
    if change:
        raise LabError(
            f"kind cluster {CLUSTER_NAME} was created with another config ({change}); lab does not "
            f"rebuild a management cluster: kind delete cluster --name {CLUSTER_NAME}, then lab up again"
        )
    return "reuse"


def create_argv(kind: str, config: Path, kubeconfig: Path, wait: bool = True) -> list[str]:
    """kind create, writing the kubeconfig into the lab home: without --kubeconfig kind would add a
    context to the user's ~/.kube/config and switch its current context. Not `--wait` on lab's own
    node image: its nodes turn Ready only once lab.kindmgmt.podnet has given them a pod network."""
    argv = [kind, "create", "cluster", "--config", str(config), "--kubeconfig", str(kubeconfig)]
    return [*argv, "--wait", "5m"] if wait else argv


def ensure(settings: Settings, kind: str, action: str, log: Log) -> Path:
    """Create the cluster (action 'create') or reuse it; write its kubeconfig (0600) either way."""
    cfg = host_config(settings)
    own_network = bool(cfg.get("networking", {}).get("disableDefaultCNI"))
    if action == "create":
        path = config_path(settings)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        log(f"creating kind cluster {CLUSTER_NAME} ({settings.kind_nodes} nodes, {node_image(settings)})")
        try:
            proc.run(create_argv(kind, path, kubeconfig_path(settings), wait=not own_network), timeout=900)
        except LabError:
            path.unlink(missing_ok=True)  # kind removed its half-made cluster: do not claim it
            raise
    else:
        log(f"kind cluster {CLUSTER_NAME} exists with the same config: reusing it")
    kubeconfig = proc.run([kind, "get", "kubeconfig", "--name", CLUSTER_NAME], timeout=60).stdout
    write_private(kubeconfig_path(settings), kubeconfig.encode())
    if own_network:
        with Client.from_kubeconfig(kubeconfig_path(settings)) as client:
            podnet.configure(Engine(), client, log)
            podnet.wait_ready(client)
    return kubeconfig_path(settings)


def untainted(taints: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Pure: the taints without the control-plane NoSchedule one."""
    return [
        t for t in taints if not (t.get("key") == CONTROL_PLANE_TAINT and t.get("effect") == "NoSchedule")
    ]


def untaint(client: Client) -> list[str]:
    """Remove the control-plane taint from every control-plane node that has it (what
    `kubectl taint nodes --selector ... :NoSchedule-` does; a re-run finds nothing); the nodes changed.
    The JSON patch tests the list it replaces, so a concurrent change fails instead of being lost."""
    changed = []
    for node in client.list("v1", "Node", label_selector=CONTROL_PLANE_TAINT):
        taints = (node.get("spec") or {}).get("taints") or []
        keep = untainted(taints)
        if keep == taints:
            continue
        patch = [
            {"op": "test", "path": "/spec/taints", "value": taints},
            {"op": "replace", "path": "/spec/taints", "value": keep},
        ]
        name = node["metadata"]["name"]
        path = client.resource("v1", "Node").path(None, name)
        client.request("PATCH", path, body=patch, content_type="application/json-patch+json")
        changed.append(name)
    return changed


#: kind's own Docker network, shared by every kind cluster of an engine; kind keeps it after delete
KIND_NETWORK = "kind"


def delete(settings: Settings, log: Log = lambda _m: None) -> bool:
    """`lab down` in kind mode: `kind delete cluster` of the cluster this lab home created (its
    kind-config.yaml says so; a cluster of that name from elsewhere is left alone, as `plan` refuses
    it), its kubeconfig, then kind's `kind` network when no container is left on it (kind keeps it
    for the next cluster). True when a cluster was deleted."""
    path = config_path(settings)
    if not path.is_file():
        return False
    [kind] = [doctor.probe_tool(s, "kind", settings) for s in doctor.TOOLS if s.name == "kind"]
    if kind.path is None:
        raise LabError(f"kind is not installed: cannot delete the kind cluster {CLUSTER_NAME} lab made")
    deleted = CLUSTER_NAME in existing_clusters(str(kind.path))
    if deleted:
        log(f"deleting kind cluster {CLUSTER_NAME}")
        proc.run([str(kind.path), "delete", "cluster", "--name", CLUSTER_NAME], timeout=300)
    path.unlink()
    kubeconfig_path(settings).unlink(missing_ok=True)
    engine = Engine()
    try:
        networks = {n["Name"]: n for n in engine.json("GET", "/networks")}
        if KIND_NETWORK in networks:
            held = engine.json("GET", f"/networks/{KIND_NETWORK}").get("Containers") or {}
            if not held:
                engine.json("DELETE", f"/networks/{KIND_NETWORK}")
    except EngineError as e:
        raise LabError(f"kind cluster {CLUSTER_NAME} deleted, but kind's network was not: {e}") from None
    return deleted
