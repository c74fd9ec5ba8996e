"""`lab up --mode kind --offline` for real, end to end: the CLI, a real Docker engine (the session's,
cut off from the uplink), kind and clusterctl built from their Go modules and found on PATH, kubectl
and helm in lab's bin cache, the node image (and kind's load-balancer stand-in) and every controller
image built into the engine, and no cert-manager image at all: offline, lab plays cert-manager's part
(lab.kindmgmt.certs: cert-manager's CRDs only, clusterctl init skips installing it, lab's CA issues
the providers' and BMO's webhook certificates and injects the CA bundles).

1. With one image lab builds missing from the engine (BMO's), the command stops at the image check:
   one error line naming that image and how to get it, never cert-manager's; nothing created (no
   kind cluster, container, kind network or kubeconfig).
2. With it back, on one node (three-node clusters and their pod network are
   test_kind_node_image's): every provider Deployment Available, clusterctl's inventory lists the
   five providers at the pinned versions, nothing of cert-manager runs; BMO's webhook rejects a
   BareMetalHost with a bad BMC address and accepts a good one; CAPI's conversion webhook takes a
   Cluster created as v1beta1 and serves it as v1beta2.
3. `lab up` again changes nothing: same Secrets, same caBundles, no Deployment rolled.
4. `lab down` deletes the kind cluster: no container, no kind network, no kubeconfig left.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
from support.docker import Engine
from support.kind import delete_cluster, offline_tools

from lab import images, images_node, tuning
from lab.config import Settings, default_home
from lab.kindmgmt import certs, cluster, clusterctl, up
from lab.kube import ApiError, Client

pytestmark = pytest.mark.slow  # the node image and six controller images into a fresh engine, a kind cluster

DEPLOYMENTS = [*tuning.DEPLOYMENTS.values(), up.IPAM_DEPLOYMENT]


def _nothing_created(engine: Engine, kind: Path, env: dict[str, str], home: Path) -> None:
    got = subprocess.run([str(kind), "get", "clusters"], capture_output=True, text=True, timeout=60, env=env)
    assert got.returncode == 0, got.stderr
    assert cluster.CLUSTER_NAME not in got.stdout.split()
    client = engine.client
    assert client.json("GET", "/containers/json", {"all": "1"}) == []
    assert sorted(n["Name"] for n in client.json("GET", "/networks")) == ["bridge", "host", "none"]
    assert not (home / "kubeconfig").exists()


def test_offline_up_runs_every_provider_without_cert_manager(
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
    tools = offline_tools(tmp_path / "tools", kind)
    # a short home: the node simulator's supervisord socket must stay under 100 bytes, and pytest's
    # tmp_path named after this test is too long for that
    home = Path(tempfile.mkdtemp(prefix="labk-", dir="/tmp")) / "home"
    env = {
        **docker_engine.env(),
        "LAB_HOME": str(home),
        "LAB_BIN_CACHE": str(shared.bin_dir),
        "PATH": f"{tools}:{os.environ['PATH']}",
    }
    settings = Settings(home=home)
    assert settings.kind_nodes > 1  # so kind's load balancer is one of the images checked

    # 1. one image missing: one error line naming it (and not cert-manager's), nothing created
    bmo_ref = built["bmo"].reference
    client.json("DELETE", f"/images/{bmo_ref}")  # the engine's tag only; the archive stays cached
    started = time.monotonic()
    refused = run_lab("up", "--mode", "kind", "--offline", env=env, timeout=900)
    print(f"lab up with {bmo_ref} missing: exit {refused.returncode} in {time.monotonic() - started:.1f}s")
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "Traceback" not in refused.stderr
    errors = [line for line in refused.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, refused.stderr
    [error] = errors
    assert "1 image(s) not in the Docker engine" in error, error
    assert re.findall(r"(\S+) \((?:lab images build \w+|docker load an archive of it)\)", error) == [bmo_ref]
    assert f"{bmo_ref} (lab images build bmo)" in error
    assert "cert-manager" not in error
    _nothing_created(docker_engine, kind, env, home)
    assert images.build_one(shared, client, "bmo", print).reference == bmo_ref  # back from its archive

    # 2. the whole bring-up, on one node
    one = {**env, "LAB_KIND_NODES": "1"}
    try:
        started = time.monotonic()
        first = run_lab("up", "--mode", "kind", "--offline", env=one, timeout=1800)
        seconds = time.monotonic() - started
        print(f"lab up --mode kind --offline: exit {first.returncode} in {seconds:.1f}s\n{first.stderr}")
        assert first.returncode == 0, first.stdout + first.stderr
        assert "Traceback" not in first.stderr
        assert "issued" in first.stdout and "webhook certificate(s) from lab's CA" in first.stdout
        with Client.from_kubeconfig(home / "kubeconfig") as kc:
            before = _check_cluster(settings, kc)
            _bmo_rejects_a_bad_bmc_address(kc)
            _capi_converts_a_v1beta1_cluster(kc)

        # 3. again: nothing changes
        started = time.monotonic()
        again = run_lab("up", "--mode", "kind", "--offline", env=one, timeout=1800)
        print(f"second lab up: exit {again.returncode} in {time.monotonic() - started:.1f}s\n{again.stderr}")
        assert again.returncode == 0, again.stdout + again.stderr
        assert "reused" in again.stdout and "issued" not in again.stdout and "installed" not in again.stdout
        assert "0 issued" in again.stderr and "injected into 0 object(s)" in again.stderr
        with Client.from_kubeconfig(home / "kubeconfig") as kc:
            assert _state(kc) == before
    finally:
        # 4. lab down deletes the kind cluster it made (LAB_MODE: the mode lab up was given)
        down = run_lab("down", env={**one, "LAB_MODE": "kind"}, timeout=600)
        if down.returncode != 0:
            delete_cluster(kind, client, env)  # leave the session's engine clean for the next test
    try:
        assert down.returncode == 0, down.stdout + down.stderr
        assert "stack stopped" in down.stdout
        _nothing_created(docker_engine, kind, env, home)
    finally:
        shutil.rmtree(home.parent, ignore_errors=True)


def _condition(obj: dict[str, Any], kind: str) -> str | None:
    found = [c for c in (obj.get("status") or {}).get("conditions") or [] if c.get("type") == kind]
    return found[0].get("status") if found else None


def _check_cluster(settings: Settings, kc: Client) -> dict[str, str]:
    """Every manager Available, the true inventory, nothing of cert-manager; the state to compare."""
    for namespace, name in DEPLOYMENTS:
        deployment = kc.get("apps/v1", "Deployment", name, namespace)
        assert deployment is not None, f"{namespace}/{name}"
        assert _condition(deployment, "Available") == "True", f"{namespace}/{name}: {deployment['status']}"
    inventory = kc.list("clusterctl.cluster.x-k8s.io/v1alpha3", "Provider")
    assert clusterctl.installed({"items": inventory}) == clusterctl.wanted(settings)
    assert not certs.cert_manager_runs(kc)
    pod_images = {c["image"] for p in kc.list("v1", "Pod") for c in p["spec"]["containers"]}
    assert not [i for i in pod_images if "cert-manager" in i], pod_images
    for cert in kc.list(certs.CERT_API, "Certificate"):
        assert _condition(cert, "Ready") == "True", cert["metadata"]
    return _state(kc)


def _state(kc: Client) -> dict[str, str]:
    """resourceVersion of every webhook Secret and webhook configuration lab injects a CA into, the
    conversion caBundle of every such CRD (CAPI's own CRD migrator may write to its CRDs at any time),
    and the generation of every manager Deployment (a rollout would bump it)."""
    out = {}
    for cert in kc.list(certs.CERT_API, "Certificate"):
        ns, secret_name = cert["metadata"]["namespace"], cert["spec"]["secretName"]
        secret = kc.get("v1", "Secret", secret_name, ns)
        assert secret is not None, f"{ns}/{secret_name}"
        out[f"Secret {ns}/{secret_name}"] = secret["metadata"]["resourceVersion"]
    for api, kind in (
        (certs.ADMISSION_API, "ValidatingWebhookConfiguration"),
        (certs.ADMISSION_API, "MutatingWebhookConfiguration"),
        (certs.CRD_API, "CustomResourceDefinition"),
    ):
        for obj in kc.list(api, kind):
            if certs.inject_target(obj) is None:
                continue
            if kind == "CustomResourceDefinition":
                conversion = obj["spec"].get("conversion") or {}
                bundle = ((conversion.get("webhook") or {}).get("clientConfig") or {}).get("caBundle")
                out[f"{kind} {obj['metadata']['name']}"] = str(bundle)
            else:
                out[f"{kind} {obj['metadata']['name']}"] = obj["metadata"]["resourceVersion"]
    for namespace, name in DEPLOYMENTS:
        deployment = kc.get("apps/v1", "Deployment", name, namespace)
        assert deployment is not None
        out[f"Deployment {namespace}/{name}"] = str(deployment["metadata"]["generation"])
    assert any(k.startswith("Secret baremetal-operator-system/") for k in out), out
    assert out["CustomResourceDefinition clusters.cluster.x-k8s.io"] != "None", out
    return out


def _retry_webhook(call: Any, timeout: float = 120) -> Any:
    """The call, retried while the webhook's server is not answering yet (a pod Ready a moment before
    its webhook listens); any other answer, error or not, is returned or raised."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return call()
        except ApiError as e:
            if "failed calling webhook" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(3)


def _bmh(name: str, address: str) -> dict[str, Any]:
    return {
        "apiVersion": "metal3.io/v1alpha1",
        "kind": "BareMetalHost",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "online": False,
            "bootMACAddress": "00:5c:52:31:3a:9c",
            "bmc": {"address": address, "credentialsName": f"{name}-bmc"},
        },
    }


def _bmo_rejects_a_bad_bmc_address(kc: Client) -> None:
    path = kc.resource("metal3.io/v1alpha1", "BareMetalHost").path("default")
    dry = {"dryRun": "All"}  # admission runs in full; nothing is stored
    good = _retry_webhook(
        lambda: kc.request("POST", path, params=dry, body=_bmh("good", "libvirt://192.168.122.1:6233/"))
    )
    assert good["metadata"]["name"] == "good"
    with pytest.raises(ApiError) as bad:
        _retry_webhook(
            lambda: kc.request("POST", path, params=dry, body=_bmh("bad", "nosuchbmc://192.168.122.1/"))
        )
    message = str(bad.value)
    print(f"BMO's webhook: {message}")
    assert "denied the request" in message and "nosuchbmc" in message, message


def _capi_converts_a_v1beta1_cluster(kc: Client) -> None:
    cluster_obj = {
        "apiVersion": "cluster.x-k8s.io/v1beta1",
        "kind": "Cluster",
        "metadata": {"name": "conversion", "namespace": "default"},
        "spec": {
            "paused": True,
            "clusterNetwork": {"pods": {"cidrBlocks": ["10.10.0.0/16"]}},
            "infrastructureRef": {
                "apiVersion": "infrastructure.cluster.x-k8s.io/v1beta1",
                "kind": "Metal3Cluster",
                "name": "conversion",
                "namespace": "default",
            },
        },
    }
    path = kc.resource("cluster.x-k8s.io/v1beta1", "Cluster").path("default")
    created = _retry_webhook(lambda: kc.request("POST", path, body=cluster_obj))
    assert created["apiVersion"] == "cluster.x-k8s.io/v1beta1"
    v2 = kc.get("cluster.x-k8s.io/v1beta2", "Cluster", "conversion", "default")
    assert v2 is not None and v2["apiVersion"] == "cluster.x-k8s.io/v1beta2"
    # v1beta2's reference names a group, not an apiVersion: only the conversion webhook makes it
    assert v2["spec"]["infrastructureRef"] == {
        "apiGroup": "infrastructure.cluster.x-k8s.io",
        "kind": "Metal3Cluster",
        "name": "conversion",
    }, v2["spec"]
    assert v2["spec"]["clusterNetwork"]["pods"]["cidrBlocks"] == ["10.10.0.0/16"]
