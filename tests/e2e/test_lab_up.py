"""End-to-end: the real management stack started by `lab up` (see conftest.py)."""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import time

import pytest
import yaml
from support.stack import Stack
from support.wait import wait_for

pytestmark = pytest.mark.slow

COMPONENTS = {
    "mgmt-etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "capi-manager",
    "kcp-manager",
    "cabpk-manager",
    "capm3-manager",
    "ipam-manager",
    "bmo-manager",
    "nodesim",
}
#: no health endpoint: RUNNING past supervisord's startsecs is what "up" means for these
NO_PROBE = {"nodesim"}


def test_up_prints_healthy_and_every_component_is_up(stack: Stack) -> None:
    assert "healthy" in stack.up_stdout
    status = stack.status()
    assert set(status) >= COMPONENTS, f"missing: {COMPONENTS - set(status)}"
    for name, c in status.items():
        assert c["state"] == "RUNNING", (name, c)
        assert c["healthy"] is (None if name in NO_PROBE else True), (name, c)
        assert c["pid"] and c["rss_bytes"] > 0, (name, c)


def test_crds_of_capi_capm3_ipam_bmo_are_established(stack: Stack) -> None:
    names = set(stack.kubectl("get", "crds", "-o", "name").stdout.split())
    for crd in (
        "clusters.cluster.x-k8s.io",
        "machines.cluster.x-k8s.io",
        "kubeadmcontrolplanes.controlplane.cluster.x-k8s.io",
        "kubeadmconfigs.bootstrap.cluster.x-k8s.io",
        "metal3clusters.infrastructure.cluster.x-k8s.io",
        "metal3machines.infrastructure.cluster.x-k8s.io",
        "ippools.ipam.metal3.io",
        "baremetalhosts.metal3.io",
    ):
        assert f"customresourcedefinition.apiextensions.k8s.io/{crd}" in names
    crd = stack.kubectl_json("get", "crd", "clusters.cluster.x-k8s.io")
    conv = crd["spec"]["conversion"]
    assert conv["strategy"] == "Webhook"
    assert re.fullmatch(r"https://127\.0\.0\.1:\d+/convert", conv["webhook"]["clientConfig"]["url"])


def test_second_up_converges_without_restarts(stack: Stack) -> None:
    before = {n: c["pid"] for n, c in stack.status().items()}
    started = time.monotonic()
    out = stack.lab("up", timeout=300)
    took = time.monotonic() - started
    after = {n: c["pid"] for n, c in stack.status().items()}
    assert after == before
    assert "nothing to change" in out.stdout, out.stdout
    assert took < 60, f"second lab up took {took:.1f}s"


def test_kubeconfig_prints_the_admin_kubeconfig(stack: Stack) -> None:
    out = stack.lab("kubeconfig").stdout
    doc = yaml.safe_load(out)
    assert (
        doc["clusters"][0]["cluster"]["server"]
        == f"https://127.0.0.1:{stack.env['LAB_PORTS__MGMT_APISERVER']}"
    )
    assert oct(stack.kubeconfig.stat().st_mode & 0o777) == "0o600"


def test_kube_controller_manager_finishes_namespace_deletion(stack: Stack) -> None:
    stack.kubectl("create", "namespace", "e2e-gone")
    wait_for(
        "kube-root-ca.crt published",
        lambda: (
            stack.kubectl("get", "configmap", "kube-root-ca.crt", "-n", "e2e-gone", check=False).returncode
            == 0
        ),
        30,
    )
    stack.kubectl("delete", "namespace", "e2e-gone", "--wait=true", "--timeout=60s", timeout=90)


def _bmh(name: str, ns: str, address: str, mac: str, secret: str) -> dict:
    return {
        "apiVersion": "metal3.io/v1alpha1",
        "kind": "BareMetalHost",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "online": True,
            "bootMACAddress": mac,
            "bmc": {"address": address, "credentialsName": secret},
            "image": {
                "url": "http://192.168.122.1/images/node.qcow2",
                "checksum": secrets.token_hex(32),
                "checksumType": "sha256",
            },
        },
    }


def test_baremetalhost_reaches_provisioned_in_test_mode(stack: Stack) -> None:
    ns = "e2e-bmh"
    stack.kubectl("create", "namespace", ns)
    password = secrets.token_urlsafe(18)
    stack.kubectl(
        "create", "secret", "generic", "host-0-bmc", "-n", ns, "--from-literal=username=admin",
        f"--from-literal=password={password}",
    )  # fmt: skip
    bmh = _bmh("host-0", ns, "libvirt://192.168.122.10:6233/", "00:60:2f:00:00:0a", "host-0-bmc")
    stack.kubectl("apply", "-f", "-", input_text=json.dumps(bmh))

    def state() -> str | None:
        got = stack.kubectl_json("get", "baremetalhost", "host-0", "-n", ns)
        s = (got.get("status") or {}).get("provisioning", {}).get("state")
        return s if s == "provisioned" else None

    wait_for("BareMetalHost provisioned", state, 180, interval=2)


def test_bmo_webhook_rejects_a_bad_bmc_address(stack: Stack) -> None:
    ns = "e2e-bmh-bad"
    stack.kubectl("create", "namespace", ns)
    bmh = _bmh("host-bad", ns, "nonsense://192.168.122.11:6233/", "00:60:2f:00:00:0b", "none")
    out = stack.kubectl("apply", "--dry-run=server", "-f", "-", input_text=json.dumps(bmh), check=False)
    assert out.returncode != 0
    assert "admission webhook" in out.stderr and "baremetalhost" in out.stderr.lower(), out.stderr


def test_capi_webhook_defaults_a_machine(stack: Stack) -> None:
    # internal/webhooks/machine.go Default(): cluster-name label from spec.clusterName, "v" prefix on
    # the version, nodeDeletionTimeoutSeconds 10. (Cluster's own defaulting only touches
    # spec.topology, which the ClusterTopology feature gate, off by default, forbids.)
    machine = {
        "apiVersion": "cluster.x-k8s.io/v1beta2",
        "kind": "Machine",
        "metadata": {"name": "m-0", "namespace": "default"},
        "spec": {
            "clusterName": "c-0",
            "version": "1.35.4",
            "bootstrap": {"dataSecretName": "m-0-bootstrap"},
            "infrastructureRef": {
                "apiGroup": "infrastructure.cluster.x-k8s.io",
                "kind": "Metal3Machine",
                "name": "m-0",
            },
        },
    }
    out = stack.kubectl("create", "--dry-run=server", "-o", "json", "-f", "-", input_text=json.dumps(machine))
    got = json.loads(out.stdout)
    assert got["metadata"]["labels"]["cluster.x-k8s.io/cluster-name"] == "c-0"
    assert got["spec"]["version"] == "v1.35.4"
    assert got["spec"]["deletion"]["nodeDeletionTimeoutSeconds"] == 10


def test_capi_webhook_rejects_a_cluster_without_refs_and_converts_a_valid_one(stack: Stack) -> None:
    bad = {
        "apiVersion": "cluster.x-k8s.io/v1beta2",
        "kind": "Cluster",
        "metadata": {"name": "bad", "namespace": "default"},
        # Enough for the CRD schema (spec needs one property), not for the webhook.
        "spec": {"paused": True},
    }
    out = stack.kubectl("create", "--dry-run=server", "-f", "-", input_text=json.dumps(bad), check=False)
    assert out.returncode != 0
    assert "one of spec.controlPlaneRef, spec.infrastructureRef or spec.topology must be set" in out.stderr

    good = {
        "apiVersion": "cluster.x-k8s.io/v1beta2",
        "kind": "Cluster",
        "metadata": {"name": "good", "namespace": "default"},
        "spec": {
            "infrastructureRef": {
                "apiGroup": "infrastructure.cluster.x-k8s.io",
                "kind": "Metal3Cluster",
                "name": "good",
            }
        },
    }
    stack.kubectl("create", "-f", "-", input_text=json.dumps(good))
    # Reading the stored v1beta2 object as v1beta1 goes through CAPI's conversion webhook.
    old = stack.kubectl_json("get", "clusters.v1beta1.cluster.x-k8s.io", "good", "-n", "default")
    assert old["apiVersion"] == "cluster.x-k8s.io/v1beta1"
    assert old["spec"]["infrastructureRef"]["kind"] == "Metal3Cluster"
    stack.kubectl("delete", "cluster", "good", "-n", "default", "--wait=false")


def test_rendered_cluster_passes_server_side_dry_run(stack: Stack) -> None:
    rendered = stack.lab("render", "1", "-o", "yaml", timeout=120).stdout
    docs = [d for d in yaml.safe_load_all(rendered) if d]
    namespaces = [d["metadata"]["name"] for d in docs if d["kind"] == "Namespace"]
    for ns in namespaces:  # objects in a namespace that a dry run only pretends to create would fail
        stack.kubectl("create", "namespace", ns)
    try:
        out = stack.kubectl(
            "apply", "--server-side", "--dry-run=server", "-f", "-", input_text=rendered, check=False
        )
    finally:  # later modules check that no namespace of a cluster name is left
        for ns in namespaces:
            stack.kubectl("delete", "namespace", ns, "--wait=true", "--timeout=60s", check=False, timeout=90)
    assert out.returncode == 0, out.stderr
    assert len(out.stdout.strip().splitlines()) == len(docs)


def test_tune_restarts_only_the_managers_whose_flags_change(stack: Stack) -> None:
    before = {n: c["pid"] for n, c in stack.status().items()}
    try:
        out = json.loads(stack.lab("tune", "--profile", "seed", "-o", "json", timeout=400).stdout)
        restarted = set(out["restarted"])
        assert restarted == {"capi-manager", "kcp-manager", "cabpk-manager"}
        after = stack.status()
        for name in COMPONENTS:
            changed = after[name]["pid"] != before[name]
            assert changed == (name in restarted), name
        with open(f"/proc/{after['capi-manager']['pid']}/cmdline", "rb") as fh:
            assert b"--cluster-concurrency=100" in fh.read().split(b"\0")
    finally:
        stack.lab("tune", "--profile", "default", timeout=400)


def test_killed_manager_is_back_and_healthy_within_30s(stack: Stack) -> None:
    old = stack.status()["capi-manager"]["pid"]
    os.kill(old, signal.SIGKILL)
    killed = time.monotonic()

    def back() -> dict | None:
        c = stack.status()["capi-manager"]
        return c if c["pid"] not in (None, old) and c["state"] == "RUNNING" and c["healthy"] else None

    wait_for("capi-manager back and healthy", back, 30, interval=0.5)
    assert time.monotonic() - killed <= 30
