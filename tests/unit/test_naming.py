from __future__ import annotations

import ipaddress
import re

import pytest

from lab import naming
from lab.errors import UsageError


def test_cluster_name_round_trips() -> None:
    assert naming.cluster_name("test", 101) == "test-101"
    assert naming.parse_index("test", "test-101") == 101
    assert naming.parse_index("test", "test-0101") is None
    assert naming.parse_index("test", "other-101") is None
    assert naming.parse_index("test", "test-x") is None


def test_thousand_indexes_are_distinct_and_stable() -> None:
    idx = range(1, 1001)
    macs = [naming.boot_mac(i) for i in idx]
    bmcs = [naming.bmc_address(i) for i in idx]
    eps = [naming.local_endpoint(i) for i in idx]
    assert len(set(macs)) == len(set(bmcs)) == len(set(eps)) == 1000
    assert macs == [naming.boot_mac(i) for i in idx]
    for mac in macs:
        assert re.fullmatch(r"02(:[0-9a-f]{2}){5}", mac)  # locally administered, unicast
    for host, port in eps:
        assert ipaddress.ip_address(host).is_loopback and port == naming.APISERVER_PORT


def test_bmc_address_matches_the_test_mode_pattern() -> None:
    assert naming.bmc_address(1) == "libvirt://192.168.122.1:6233/"
    assert naming.bmc_address(254) == "libvirt://192.168.122.254:6233/"
    assert naming.bmc_address(255) == "libvirt://192.168.122.1:6234/"


@pytest.mark.parametrize(
    ("start", "count", "message"),
    [
        (1, 0, "count must be at least 1"),
        (0, 3, "start index must be at least 1"),
        (99, 3, "maximum index 100"),
    ],
)
def test_bad_ranges_are_usage_errors(start: int, count: int, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        naming.check_range(start, count, max_index=100)


def test_good_range() -> None:
    assert list(naming.check_range(101, 3, 9999)) == [101, 102, 103]


def test_mux_endpoints_are_distinct_and_never_the_local_backings() -> None:
    last = naming.MUX_MAX_PORT - naming.MUX_PORT_BASE
    seen = {naming.mux_endpoint(i) for i in range(1, last + 1)}
    assert len(seen) == last
    assert naming.mux_endpoint(1) == ("127.2.0.1", 20001) and naming.mux_endpoint(last)[1] == 32767
    assert all(port != naming.APISERVER_PORT for _h, port in seen)
    assert naming.local_endpoint(1)[0] != naming.MUX_HOST
    for bad in (0, last + 1):
        with pytest.raises(ValueError):
            naming.mux_endpoint(bad)
