"""End-to-end: `lab render` output driven by the real CAPI, CAPM3 and BMO (test mode) of `lab up`.

No node simulator and no workload apiserver here: this follows one cluster up to the point where
the fake workload cluster takes over. The admission webhooks run, so every object also passes
upstream's defaulting and validation. What it proves about the manifests: BMO registers and
inspects the host (BMC address, MAC, credentials are right), KCP creates the control-plane Machine
with lab's annotations, CAPM3 claims the host and writes the template's image onto it (the host
itself carries none), and BMO "provisions" it.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from support.stack import Stack
from support.wait import wait_for

from lab.manifests import capi, metal3, names

pytestmark = pytest.mark.slow

CLUSTER = "test-101"


def _get(stack: Stack, *args: str) -> dict[str, Any]:
    out = stack.kubectl("get", "-n", CLUSTER, *args, "-o", "json", check=False)
    return {} if out.returncode else json.loads(out.stdout)


def test_a_rendered_cluster_gets_its_host_claimed_and_provisioned_with_the_template_image(
    stack: Stack,
) -> None:
    rendered = stack.lab("render", "101").stdout
    stack.kubectl("apply", "--server-side", "--field-manager=lab", "-f", "-", input_text=rendered)
    try:
        host = names.host(CLUSTER)

        def state() -> str:
            return ((_get(stack, "bmh", host).get("status") or {}).get("provisioning") or {}).get("state", "")

        wait_for(
            "host available or beyond",
            lambda: state() in ("available", "provisioning", "provisioned"),
            600,
            interval=2,
        )

        machines = wait_for(
            "a control-plane Machine",
            lambda: _get(stack, "machines", "-l", "cluster.x-k8s.io/control-plane").get("items"),
            600,
            interval=2,
        )
        assert len(machines) == 1
        annotations = machines[0]["metadata"].get("annotations") or {}
        assert capi.CERT_EXPIRY_ANNOTATION in annotations  # copied from the KCP machine template

        wait_for("host provisioned for the Metal3Machine", lambda: state() == "provisioned", 900, interval=2)
        bmh = _get(stack, "bmh", host)
        assert bmh["spec"]["consumerRef"]["kind"] == "Metal3Machine"
        assert bmh["spec"]["image"]["url"] == metal3.IMAGE["url"]
        assert bmh["spec"]["image"]["checksum"] == metal3.IMAGE["checksum"]
    finally:
        stack.kubectl("delete", "namespace", CLUSTER, "--wait=false", check=False)
