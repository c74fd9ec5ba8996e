"""lab's pod network for kind clusters on its own node image: per-node conflists and cross-node routes
computed from the Node objects, and the kind config that turns kindnetd off only for that image."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from lab import config
from lab.errors import LabError
from lab.kindmgmt import cluster, podnet


def _node(name: str, ip: str, cidr: str | None, ready: bool = False) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {"podCIDR": cidr} if cidr else {},
        "status": {
            "addresses": [
                {"type": "Hostname", "address": name},
                {"type": "InternalIP", "address": "fc00:f853:ccd:e793::2"},
                {"type": "InternalIP", "address": ip},
            ],
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


THREE = [
    _node("lab-mgmt-control-plane3", "172.18.0.4", "10.244.2.0/24"),
    _node("lab-mgmt-control-plane", "172.18.0.2", "10.244.0.0/24"),
    _node("lab-mgmt-control-plane2", "172.18.0.3", "10.244.1.0/24"),
]


def test_nodes_are_read_sorted_with_their_ipv4_and_podcidr() -> None:
    nodes = podnet.nodes_of(THREE)
    assert [n.name for n in nodes] == [
        "lab-mgmt-control-plane",
        "lab-mgmt-control-plane2",
        "lab-mgmt-control-plane3",
    ]
    assert nodes[0] == podnet.Node("lab-mgmt-control-plane", "172.18.0.2", "10.244.0.0/24")


def test_a_node_without_podcidr_is_named() -> None:
    with pytest.raises(LabError, match="node lab-mgmt-control-plane2 has no podCIDR yet"):
        podnet.nodes_of([THREE[1], _node("lab-mgmt-control-plane2", "172.18.0.3", None)])


def test_each_node_routes_every_other_podcidr_via_that_node() -> None:
    nodes = podnet.nodes_of(THREE)
    assert podnet.routes(nodes, nodes[0]) == [
        ["ip", "route", "replace", "10.244.1.0/24", "via", "172.18.0.3"],
        ["ip", "route", "replace", "10.244.2.0/24", "via", "172.18.0.4"],
    ]
    # every podCIDR is reached from every other node, never from its own
    for node in nodes:
        dsts = {r[3] for r in podnet.routes(nodes, node)}
        assert node.pod_cidr not in dsts and len(dsts) == len(nodes) - 1
    assert podnet.routes(nodes[:1], nodes[0]) == []  # one node: nothing to route


def test_the_conflist_hands_out_addresses_from_the_nodes_own_podcidr() -> None:
    conf = podnet.conflist("10.244.1.0/24")
    ptp, portmap = conf["plugins"]
    assert ptp["type"] == "ptp" and portmap["type"] == "portmap"
    assert ptp["ipMasq"] is False  # pods see each other's real addresses
    [[rng]] = ptp["ipam"]["ranges"]
    assert ipaddress.ip_network(rng["subnet"]) == ipaddress.ip_network("10.244.1.0/24")
    assert ptp["ipam"]["type"] == "host-local" and conf["cniVersion"] == podnet.CNI_VERSION


def test_ready_reads_the_ready_condition() -> None:
    assert podnet.ready(_node("a", "172.18.0.2", "10.244.0.0/24", ready=True))
    assert not podnet.ready(_node("a", "172.18.0.2", "10.244.0.0/24"))
    assert not podnet.ready({"metadata": {"name": "a"}})


def test_kindnetd_is_disabled_only_for_labs_own_node_image(lab_env: dict[str, str]) -> None:
    settings = config.load()
    own = cluster.render_config(settings, own_network=True)
    assert own.pop("networking") == {"disableDefaultCNI": True}
    assert own == cluster.render_config(settings)
    assert "networking" not in cluster.render_config(settings, cgroup_v1=True)


def test_create_waits_with_kind_only_when_kind_brings_the_network(tmp_path) -> None:  # type: ignore[no-untyped-def]
    argv = cluster.create_argv("kind", tmp_path / "c.yaml", tmp_path / "kc")
    assert argv[-2:] == ["--wait", "5m"]
    assert "--wait" not in cluster.create_argv("kind", tmp_path / "c.yaml", tmp_path / "kc", wait=False)


def test_no_engine_means_not_labs_image(lab_env: dict[str, str], monkeypatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/nothing.sock")
    assert cluster.lab_node_image(config.load()) is False


_FAKE_IPTABLES = r"""#!/bin/sh
# iptables -t nat OP CHAIN [RULE...]: chains and rules kept as lines of $STATE; -N and -C fail as the
# real one does (chain exists / rule missing); every call logged to $STATE.log
echo "$*" >> "$STATE.log"
shift 2
op=$1; shift
chain=$1; shift
touch "$STATE"
case $op in
  -N) grep -qx ":$chain" "$STATE" && exit 1; echo ":$chain" >> "$STATE";;
  -F) grep -v "^-A $chain " "$STATE" > "$STATE.tmp" || true; mv "$STATE.tmp" "$STATE";;
  -A) echo "-A $chain $*" >> "$STATE";;
  -C) grep -qxF -- "-A $chain $*" "$STATE" || exit 1;;
esac
"""


def test_masquerade_rules_skip_every_podcidr_and_are_written_once(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The script run twice against a stand-in iptables that keeps its rules: the same rules after
    the second run, the jump from POSTROUTING once, pod-to-pod traffic never masqueraded."""
    import os
    import subprocess

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "iptables").write_text(_FAKE_IPTABLES)
    (bin_dir / "iptables").chmod(0o755)
    nodes = podnet.nodes_of(
        [_node("b", "172.18.0.3", "10.244.1.0/24"), _node("a", "172.18.0.2", "10.244.0.0/24")]
    )
    script = podnet.masquerade_script(nodes)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "STATE": str(tmp_path / "nat")}
    states = []
    for _ in range(2):
        run = subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True, timeout=30)
        assert run.returncode == 0, run.stderr
        states.append((tmp_path / "nat").read_text().splitlines())
    assert sorted(states[0]) == sorted(states[1])
    chain = podnet.MASQ_CHAIN
    assert [ln for ln in states[1] if ln.startswith(f"-A {chain} ")] == [
        f"-A {chain} -d 10.244.0.0/24 -j RETURN",
        f"-A {chain} -d 10.244.1.0/24 -j RETURN",
        f"-A {chain} -j MASQUERADE",
    ]
    assert states[1].count(f"-A POSTROUTING -m addrtype ! --dst-type LOCAL -j {chain}") == 1
