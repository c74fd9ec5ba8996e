"""NodePort blocks of kind backings: parsing, checks, and handing ports out (lab.backing.node_ports).

The same allocation against a real kube-apiserver (Services that really hold their ports, endpoint()
from many threads, ensure refusing a full block) is in tests/e2e/test_backing_manifests.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from lab import naming
from lab.backing import node_ports as np
from lab.errors import LabError, UsageError
from lab.manifests import backing_apiserver as m

REPO = Path(__file__).resolve().parents[2]
ROLE = REPO / "playbooks" / "roles" / "backing_kind"
BLOCK = np.PortBlock(30000, 30004)


def svc(name: str, port: int, namespace: str = m.NAMESPACE, cluster: str | None = None) -> dict[str, Any]:
    labels = {naming.CLUSTER_LABEL: cluster} if cluster else {}
    return {
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {"type": "NodePort", "ports": [{"port": 6443, "nodePort": port}]},
    }


def in_use(*services: dict[str, Any]) -> np.InUse:
    return np.in_use(services, m.NAMESPACE)


# --- blocks ----------------------------------------------------------------------------------


def test_parse_block() -> None:
    b = np.parse_block("30000-30099")
    assert (b.first, b.last, b.size, str(b)) == (30000, 30099, 100, "30000-30099")
    assert 30000 in b and 30099 in b and 30100 not in b and 29999 not in b
    assert list(np.parse_block("31000-31002")) == [31000, 31001, 31002]
    assert np.parse_block(" 30005 - 30005 ").size == 1
    for bad in ("", "30000", "30099-30000", "a-b", "30000-30099-1", "-30000"):
        with pytest.raises(UsageError, match="invalid NodePort block"):
            np.parse_block(bad)


def test_check_refuses_what_cannot_be_published_or_served() -> None:
    np.check(np.DEFAULT_BLOCK, np.DEFAULT_ETCD_NODE_PORT, 100)
    np.check(np.PortBlock(30000, 32766), 32767, 2767)  # the whole range but etcd's port
    cases = [
        (np.PortBlock(29999, 30098), 32767, 1, "outside Kubernetes' NodePort range 30000-32767"),
        (np.PortBlock(32700, 32768), 30000, 1, "outside Kubernetes' NodePort range"),
        (np.DEFAULT_BLOCK, 32768, 1, "etcd NodePort 32768 is outside"),
        (np.DEFAULT_BLOCK, 30099, 1, "etcd NodePort 30099 lies inside the apiservers' NodePort block"),
        (np.DEFAULT_BLOCK, 32767, 101, "capacity 101 exceeds the 100 NodePorts of block 30000-30099"),
    ]
    for block, etcd, capacity, message in cases:
        with pytest.raises(UsageError, match=message):
            np.check(block, etcd, capacity)


def test_playbook_defaults_are_labs_defaults() -> None:
    """One fact: the block the role publishes by default is the one `lab backing add` assumes."""
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    base, count = defaults["backing_kind_node_port_base"], defaults["backing_kind_node_port_count"]
    assert np.PortBlock(base, base + count - 1) == np.DEFAULT_BLOCK
    assert defaults["backing_kind_etcd_node_port"] == np.DEFAULT_ETCD_NODE_PORT == 32767


# --- what a LIST of Services says ------------------------------------------------------------


def test_in_use_tells_labs_services_from_others() -> None:
    use = in_use(
        svc("test-1", 30003, cluster="test-1"),
        svc("etcd-external", 32767, namespace="etcd-system"),
        svc("someone", 30001, namespace="default", cluster="test-9"),  # labelled, wrong namespace
        svc("plain", 30002, namespace=m.NAMESPACE),  # lab's namespace, no cluster label
        {"metadata": {"name": "clusterip", "namespace": "default"}, "spec": {"ports": [{"port": 80}]}},
    )
    assert use.held == {"test-1": 30003}
    assert use.taken == {30001, 30002, 30003, 32767}


# --- handing out -----------------------------------------------------------------------------


def test_an_existing_service_keeps_its_port_even_outside_the_block() -> None:
    use = in_use(svc("test-3", 30004, cluster="test-3"), svc("test-9", 31999, cluster="test-9"))
    assert np.allocate(BLOCK, "b1", ["test-3", "test-9"], use) == {"test-3": 30004, "test-9": 31999}


def test_new_clusters_get_the_lowest_free_ports() -> None:
    use = in_use(svc("test-1", 30001, cluster="test-1"), svc("other", 30002, namespace="default"))
    got = np.allocate(BLOCK, "b1", ["test-5", "test-1", "test-9"], use)
    assert got == {"test-5": 30000, "test-1": 30001, "test-9": 30003}


def test_a_batch_never_repeats_a_port_and_earlier_hand_outs_stay_reserved() -> None:
    block = np.PortBlock(30000, 30099)
    use = in_use(*(svc(f"test-{i}", 30000 + 2 * i, cluster=f"test-{i}") for i in range(20)))
    given = {"test-100": 30001, "test-101": 30003}  # handed out earlier, no Service yet
    names = [f"test-{i}" for i in range(200, 260)] + ["test-101", "test-4"]
    got = np.allocate(block, "b1", names, use, given)
    assert len(set(got.values())) == len(got) == len(names)
    assert got["test-101"] == 30003 and got["test-4"] == 30008
    assert not set(got.values()) & ({*use.taken, given["test-100"]} - {30003, 30008})
    assert all(p in block for p in got.values())
    # lowest first: the new ones take the odd ports above 30003, then from 30040 up
    fresh = [got[f"test-{i}"] for i in range(200, 260)]
    assert fresh == sorted(fresh) and fresh[0] == 30005


def test_a_full_block_is_one_error_and_nothing_is_handed_out() -> None:
    use = in_use(*(svc(f"test-{i}", 30000 + i, cluster=f"test-{i}") for i in range(4)))
    given = {"test-7": 30004}
    with pytest.raises(LabError) as e:
        np.allocate(BLOCK, "b1", ["test-3", "test-8", "test-9"], use, given)
    msg = str(e.value)
    assert msg.startswith(
        "backing b1: NodePort block 30000-30004 is full (5 of 5 ports held), no port for test-8"
    )
    assert "test-8 and 1 more" in msg and "lab backing add --node-ports" in msg
    assert "\n" not in msg
    assert given == {"test-7": 30004}  # the caller's record is untouched


def test_a_port_handed_out_earlier_that_moved_is_reported() -> None:
    use = in_use(svc("test-1", 30002, cluster="test-1"), svc("x", 30003, namespace="default"))
    given = {"test-1": 30001, "test-2": 30003, "test-3": 30004}
    assert np.moved(given, use) == {
        "test-1": "its Service holds nodePort 30002, this run rendered 30001",
        "test-2": "nodePort 30003 was taken by another Service meanwhile",
    }
    assert np.moved({"test-1": 30002, "test-3": 30004}, use) == {}
