"""The renderer of an upgrade (lab.manifests.controlplane): the spare control-plane host beside the
current one, with its own secret, MAC and BMC address and the control-plane role the KCP's
Metal3MachineTemplate selects; the KCP and MachineDeployment at the new version; the namespace
noting both; the default rendering unchanged (existing clusters' digests stay valid). Checked
against the real CRD schemas."""

from __future__ import annotations

from typing import Any

import pytest
from support.schema import Validate

from lab import manifests, naming, pki
from lab.clusters import create
from lab.config import Settings
from lab.manifests import controlplane, names, workers
from lab.manifests.controlplane import ControlPlane

Obj = dict[str, Any]


@pytest.fixture(scope="module")
def cluster_pki() -> pki.ClusterPKI:
    host, port = naming.local_endpoint(7)
    return pki.generate_cluster_pki("test-7", host, port, pki.new_ca("etcd-ca"))


def _render(settings: Settings, cp: pki.ClusterPKI, shape: ControlPlane | None = None) -> list[Obj]:
    kw = {} if shape is None else {"control_plane": shape}
    return manifests.cluster_objects(
        settings,
        7,
        naming.local_endpoint(7),
        cp,
        ["https://127.0.0.1:2379"],
        manifests.bmc_password(cp),
        **kw,
    )


def _kind(objs: list[Obj], kind: str) -> list[Obj]:
    return [o for o in objs if o["kind"] == kind]


def test_the_default_control_plane_renders_what_create_always_rendered(
    upstream_settings: Settings, cluster_pki: pki.ClusterPKI
) -> None:
    plain = _render(upstream_settings, cluster_pki)
    assert create.digest(plain) == create.digest(_render(upstream_settings, cluster_pki, ControlPlane()))
    assert [h["metadata"]["name"] for h in _kind(plain, "BareMetalHost")] == ["test-7-host-0"]
    assert "annotations" not in plain[0]["metadata"]


def test_an_upgrade_renders_the_spare_host_and_the_new_version(
    upstream_settings: Settings, schema_validator: Validate, cluster_pki: pki.ClusterPKI
) -> None:
    rolled = ControlPlane().rolled_to("v1.36.0")
    assert rolled == ControlPlane("v1.36.0", (0, 1))
    objs = _render(upstream_settings, cluster_pki, rolled)
    hosts = _kind(objs, "BareMetalHost")
    assert [h["metadata"]["name"] for h in hosts] == ["test-7-host-0", "test-7-host-cp1"]
    assert [workers.role_of(h) for h in hosts] == [workers.CONTROL_PLANE] * 2
    assert len({h["spec"]["bootMACAddress"] for h in hosts}) == 2
    assert len({h["spec"]["bmc"]["address"] for h in hosts}) == 2
    assert hosts[1]["spec"]["bootMACAddress"] == naming.control_plane_mac(7, 1)
    # never a worker slot, never a worker's or a standalone host's MAC
    assert names.worker_slot("test-7", "test-7-host-cp1") is None
    assert all(
        naming.control_plane_mac(7, 1) != naming.worker_mac(7, s)
        for s in range(1, naming.MAX_WORKER_SLOTS + 1)
    )
    secrets = [o["metadata"]["name"] for o in _kind(objs, "Secret")]
    assert "test-7-host-cp1-bmc-secret" in secrets
    order = [o["metadata"]["name"] for o in objs]
    assert order.index("test-7-host-cp1-bmc-secret") < order.index("test-7-host-cp1")
    # the control plane's template selects the role both hosts carry
    cp_template = next(
        t
        for t in _kind(objs, "Metal3MachineTemplate")
        if t["metadata"]["name"] == names.controlplane_template("test-7")
    )
    assert cp_template["spec"]["template"]["spec"]["hostSelector"] == workers.selector(workers.CONTROL_PLANE)
    assert _kind(objs, "KubeadmControlPlane")[0]["spec"]["version"] == "v1.36.0"
    assert _kind(objs, "MachineDeployment")[0]["spec"]["template"]["spec"]["version"] == "v1.36.0"
    ns = objs[0]
    assert controlplane.of_namespace(ns) == rolled
    for o in objs:
        assert schema_validator(o) == [], o["kind"]


def test_after_the_rollout_only_the_new_host_is_rendered_and_the_next_upgrade_goes_back_to_slot_0(
    upstream_settings: Settings, cluster_pki: pki.ClusterPKI
) -> None:
    settled = ControlPlane("v1.36.0", (0, 1)).settled()
    assert settled == ControlPlane("v1.36.0", (1,))
    objs = _render(upstream_settings, cluster_pki, settled)
    assert [h["metadata"]["name"] for h in _kind(objs, "BareMetalHost")] == ["test-7-host-cp1"]
    assert controlplane.of_namespace(objs[0]) == settled
    assert settled.rolled_to("v1.36.1") == ControlPlane("v1.36.1", (1, 0))
    again = _render(upstream_settings, cluster_pki, settled.rolled_to("v1.36.1"))
    assert [h["metadata"]["name"] for h in _kind(again, "BareMetalHost")] == [
        "test-7-host-cp1",
        "test-7-host-0",
    ]


@pytest.mark.parametrize("raw", ["", "2", "0,0", "x", "0,1,0", "-1"])
def test_a_hand_edited_hosts_annotation_falls_back_to_the_default(raw: str) -> None:
    ns = {
        "metadata": {
            "annotations": {controlplane.HOSTS_ANNOTATION: raw, controlplane.VERSION_ANNOTATION: "v1.36.0"}
        }
    }
    assert controlplane.of_namespace(ns) == ControlPlane("v1.36.0")
