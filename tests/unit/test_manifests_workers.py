"""`create-clusters --workers W`: the worker hosts, their secrets, the role selectors of the two
Metal3MachineTemplates and the MachineDeployment's replicas, checked against the real CRD schemas;
the bound on W."""

from __future__ import annotations

from typing import Any

import pytest
from support.schema import Validate

from lab import manifests, naming, pki
from lab.config import Settings
from lab.errors import UsageError
from lab.manifests import names, workers

Obj = dict[str, Any]


@pytest.fixture(scope="module")
def cluster_pki() -> pki.ClusterPKI:
    host, port = naming.local_endpoint(7)
    return pki.generate_cluster_pki("test-7", host, port, pki.new_ca("etcd-ca"))


def _render(settings: Settings, cp: pki.ClusterPKI, n: int) -> list[Obj]:
    return manifests.cluster_objects(
        settings,
        7,
        naming.local_endpoint(7),
        cp,
        ["https://127.0.0.1:2379"],
        manifests.bmc_password(cp),
        n_workers=n,
    )


def _kind(objs: list[Obj], kind: str) -> list[Obj]:
    return [o for o in objs if o["kind"] == kind]


def test_w_workers_render_w_hosts_with_own_secrets_macs_and_bmcs(
    upstream_settings: Settings, schema_validator: Validate, cluster_pki: pki.ClusterPKI
) -> None:
    objs = _render(upstream_settings, cluster_pki, 3)
    hosts = _kind(objs, "BareMetalHost")
    assert [h["metadata"]["name"] for h in hosts] == [
        "test-7-host-0",
        "test-7-host-1",
        "test-7-host-2",
        "test-7-host-3",
    ]
    assert [workers.role_of(h) for h in hosts] == ["control-plane", "worker", "worker", "worker"]
    assert len({h["spec"]["bootMACAddress"] for h in hosts}) == 4
    assert len({h["spec"]["bmc"]["address"] for h in hosts}) == 4
    secrets = {o["metadata"]["name"] for o in _kind(objs, "Secret")}
    assert {h["spec"]["bmc"]["credentialsName"] for h in hosts} <= secrets
    # every secret a host names comes before the host (BMO looks it up)
    order = [o["metadata"]["name"] for o in objs]
    for h in hosts:
        assert order.index(h["spec"]["bmc"]["credentialsName"]) < order.index(h["metadata"]["name"])
    assert all(names.worker_slot("test-7", h["metadata"]["name"]) == i for i, h in enumerate(hosts) if i)
    assert names.worker_slot("test-7", "test-7-host-0") is None
    assert names.worker_slot("test-7", "test-70-host-1") is None
    [md] = _kind(objs, "MachineDeployment")
    assert md["spec"]["replicas"] == 3
    [ns] = _kind(objs, "Namespace")
    assert workers.of_namespace(ns) == 3
    for o in [*hosts, md, ns, *_kind(objs, "Metal3MachineTemplate")]:
        assert schema_validator(o) == [], o["metadata"]["name"]


def test_each_template_selects_the_hosts_of_its_role(
    upstream_settings: Settings, cluster_pki: pki.ClusterPKI
) -> None:
    objs = _render(upstream_settings, cluster_pki, 2)
    selectors = {
        t["metadata"]["name"]: t["spec"]["template"]["spec"]["hostSelector"]["matchLabels"]
        for t in _kind(objs, "Metal3MachineTemplate")
    }
    assert selectors == {
        names.controlplane_template("test-7"): {workers.ROLE_LABEL: workers.CONTROL_PLANE},
        names.workers_template("test-7"): {workers.ROLE_LABEL: workers.WORKER},
    }


def test_zero_workers_is_todays_cluster(upstream_settings: Settings, cluster_pki: pki.ClusterPKI) -> None:
    objs = _render(upstream_settings, cluster_pki, 0)
    assert [h["metadata"]["name"] for h in _kind(objs, "BareMetalHost")] == ["test-7-host-0"]
    assert _kind(objs, "MachineDeployment")[0]["spec"]["replicas"] == 0
    assert "annotations" not in _kind(objs, "Namespace")[0]["metadata"]


def test_worker_addresses_never_meet_other_hosts() -> None:
    macs = {naming.boot_mac(i) for i in (1, 2, 300)} | {
        naming.boot_mac(i, naming.STANDALONE_MAC_OCTET) for i in (1, 2)
    }
    bmcs = {naming.bmc_address(i) for i in (1, 2, 300)} | {
        naming.bmc_address(i, naming.STANDALONE_BMC_SUBNET) for i in (1, 2)
    }
    for slot in range(1, workers.MAX_WORKERS + 1):
        for i in (1, 2, 300):
            assert naming.worker_mac(i, slot) not in macs
            assert naming.worker_bmc_address(i, slot) not in bmcs
            macs.add(naming.worker_mac(i, slot))
            bmcs.add(naming.worker_bmc_address(i, slot))
    with pytest.raises(ValueError):
        naming.worker_mac(1, workers.MAX_WORKERS + 1)


@pytest.mark.parametrize("bad", [-1, workers.MAX_WORKERS + 1, 1000])
def test_a_count_past_the_capacity_is_one_usage_error(bad: int) -> None:
    with pytest.raises(UsageError, match="--workers"):
        workers.check_count(bad)
    assert workers.check_count(workers.MAX_WORKERS) == workers.MAX_WORKERS
