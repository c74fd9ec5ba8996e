"""Standalone hosts (`lab create-hosts`): what is rendered, checked against BMO's real CRD schema."""

from __future__ import annotations

import pytest
from support.schema import Validate

from lab import naming
from lab.manifests import hosts, metal3
from lab.manifests.hosts import HostState

KEY = b"k" * 32


@pytest.mark.parametrize("state", list(HostState))
def test_hosts_are_valid_bmh_and_secret_objects(schema_validator: Validate, state: HostState) -> None:
    objs = [hosts.namespace("test"), *hosts.host_objects("test", 7, state, KEY)]
    assert [o["kind"] for o in objs] == ["Namespace", "Secret", "BareMetalHost"]
    assert [e for o in objs for e in schema_validator(o)] == []


def test_provisioned_hosts_carry_an_image_and_available_ones_none() -> None:
    _s, prov = hosts.host_objects("test", 7, HostState.provisioned, KEY)
    _s, avail = hosts.host_objects("test", 7, HostState.available, KEY)
    assert prov["spec"]["image"] == metal3.HOST_IMAGE and "format" in prov["spec"]["image"]
    assert "image" not in avail["spec"]
    assert hosts.state_of(prov) is HostState.provisioned and hosts.state_of(avail) is HostState.available
    assert prov["spec"]["online"] is True


def test_rendering_is_deterministic_and_the_password_depends_on_the_key() -> None:
    a = hosts.host_objects("test", 7, HostState.provisioned, KEY)
    assert a == hosts.host_objects("test", 7, HostState.provisioned, KEY)
    other = hosts.host_objects("test", 7, HostState.provisioned, b"x" * 32)
    assert a[0]["data"]["password"] != other[0]["data"]["password"]
    assert hosts.password(KEY, "test", 7) != hosts.password(KEY, "test", 8)
    assert len(hosts.password(KEY, "test", 7)) == 32


def test_hosts_never_collide_with_the_clusters_hosts() -> None:
    """Same index, cluster host vs standalone host: other namespace, name, MAC and BMC address, and
    no cluster label (cluster commands and the node simulator select on it)."""
    for i in (1, 7, 254, 255, 9999):
        secret, bmh = hosts.host_objects("test", i, HostState.provisioned, KEY)
        cluster_host = metal3.baremetal_host(naming.cluster_name("test", i), i)
        assert bmh["metadata"]["namespace"] == "test-hosts" != cluster_host["metadata"]["namespace"]
        assert bmh["metadata"]["name"] == f"test-bmh-{i}" != cluster_host["metadata"]["name"]
        assert bmh["spec"]["bootMACAddress"] != cluster_host["spec"]["bootMACAddress"]
        assert bmh["spec"]["bmc"]["address"] != cluster_host["spec"]["bmc"]["address"]
        assert bmh["spec"]["bmc"]["credentialsName"] == secret["metadata"]["name"]
        for o in (secret, bmh):
            assert naming.CLUSTER_LABEL not in o["metadata"]["labels"]
            assert o["metadata"]["labels"][naming.HOSTS_LABEL] == "test"
        assert secret["metadata"]["labels"]["environment.metal3.io"] == "baremetal"
    assert naming.parse_index("test", naming.hosts_namespace("test")) is None
    assert naming.parse_index("test", naming.host_name("test", 5)) is None
    assert naming.parse_host_index("test", naming.host_name("test", 5)) == 5
    assert naming.parse_host_index("test", "test-5-host-0") is None
