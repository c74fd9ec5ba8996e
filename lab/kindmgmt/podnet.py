"""The pod network of a kind cluster on lab's own node image, which has no kindnetd (its module is not
served by the Go module proxy, so it cannot be built here).

What kindnetd does for IPv4, done once by lab after `kind create cluster` (and again on reuse: every
step replaces what is there, so a re-run changes nothing):

- on each node, a CNI conflist (ptp + host-local + portmap, Debian's containernetworking-plugins in
  the node image) whose host-local range is that node's `spec.podCIDR`, so pod IPs never collide
  across nodes; `ipMasq` off, as in kindnetd's own conflist: pods see each other's real IPs;
- on each node, a route to every other node's podCIDR via that node's InternalIP (they share kind's
  Docker network, so the next hop is one bridge away): `ip route replace`, idempotent;
- on each node, kindnetd's masquerade (its ip-masq-agent part): pod traffic to anything outside the
  cluster's podCIDRs leaves with the node's address. Without it a pod of the management cluster
  reaching a backing kind cluster's NodePort (a workload apiserver) sends from its pod IP, and the
  answer never comes back: every kind cluster has the same default pod subnet (10.244.0.0/16), so
  the backing node routes it to a pod of its own. Seen for real: CAPI's cluster cache timing out on
  `<backing node>:<nodePort>` until this rule was added. One chain (MASQ_CHAIN), flushed and
  refilled on every run, and one jump to it, added once.

The kubelet picks the conflist up within seconds and the nodes turn Ready; until then they are
NotReady, which is why `kind create cluster --wait` is not used for lab's image (lab.kindmgmt.cluster).
"""

from __future__ import annotations

import io
import ipaddress
import json
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lab.engine import Client as Engine
from lab.errors import LabError
from lab.kube import Client

Log = Callable[[str], None]

CNI_DIR = "/etc/cni/net.d"
CONFLIST = "10-lab-ptp.conflist"
#: what kindnetd's conflist declares; Debian bookworm's plugins (v1.1.1) speak it
CNI_VERSION = "0.3.1"
#: nat chain of the masquerade rules (kindnetd's is KIND-MASQ-AGENT)
MASQ_CHAIN = "LAB-MASQ"


@dataclass(frozen=True)
class Node:
    name: str
    ip: str
    pod_cidr: str


def nodes_of(objects: list[dict[str, Any]]) -> list[Node]:
    """Pure: name, InternalIP (IPv4) and podCIDR of each Node object, sorted by name; a LabError
    naming a node the controller manager has not given a podCIDR yet."""
    out = []
    for obj in objects:
        name = str(obj["metadata"]["name"])
        spec, status = obj.get("spec") or {}, obj.get("status") or {}
        cidr = spec.get("podCIDR") or ""
        ips = [
            str(a.get("address"))
            for a in status.get("addresses") or []
            if a.get("type") == "InternalIP" and ipaddress.ip_address(str(a.get("address"))).version == 4
        ]
        if not cidr or not ips:
            raise LabError(f"node {name} has no {'podCIDR' if not cidr else 'IPv4 InternalIP'} yet")
        out.append(Node(name, ips[0], str(ipaddress.ip_network(cidr))))
    return sorted(out, key=lambda n: n.name)


def conflist(pod_cidr: str) -> dict[str, Any]:
    """Pure: one node's CNI config: point-to-point veths, addresses from its own podCIDR."""
    return {
        "cniVersion": CNI_VERSION,
        "name": "lab-ptp",
        "plugins": [
            {
                "type": "ptp",
                "ipMasq": False,
                "ipam": {
                    "type": "host-local",
                    "dataDir": "/run/cni-ipam-state",
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "ranges": [[{"subnet": pod_cidr}]],
                },
                "mtu": 1500,
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def routes(nodes: list[Node], node: Node) -> list[list[str]]:
    """Pure: the `ip route replace` commands of one node: every other node's podCIDR via its IP."""
    return [["ip", "route", "replace", n.pod_cidr, "via", n.ip] for n in nodes if n.name != node.name]


def masquerade_script(nodes: list[Node]) -> str:
    """Pure: the shell script that (re)writes one node's masquerade rules: pod traffic to any
    destination that is neither local nor in a node's podCIDR leaves with the node's address.
    Idempotent: the chain is flushed and refilled, the jump added only when missing."""
    jump = f"POSTROUTING -m addrtype ! --dst-type LOCAL -j {MASQ_CHAIN}"
    lines = [
        "set -e",
        f"iptables -t nat -N {MASQ_CHAIN} 2>/dev/null || true",
        f"iptables -t nat -F {MASQ_CHAIN}",
        *(f"iptables -t nat -A {MASQ_CHAIN} -d {n.pod_cidr} -j RETURN" for n in nodes),
        f"iptables -t nat -A {MASQ_CHAIN} -j MASQUERADE",
        f"iptables -t nat -C {jump} 2>/dev/null || iptables -t nat -A {jump}",
    ]
    return "\n".join(lines) + "\n"


def _tar_one(name: str, data: bytes) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size, info.mode = len(data), 0o644
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _nodes(client: Client, timeout: float) -> list[Node]:
    """The nodes once each has a podCIDR (the controller manager assigns them seconds after join)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return nodes_of(list(client.list("v1", "Node")))
        except LabError:
            if time.monotonic() > deadline:
                raise
            time.sleep(2)


def configure(engine: Engine, client: Client, log: Log, timeout: float = 300) -> list[Node]:
    """Write each node's conflist, routes and masquerade rules (the node containers are named after
    the nodes)."""
    nodes = _nodes(client, timeout)
    for node in nodes:
        text = json.dumps(conflist(node.pod_cidr), indent=2) + "\n"
        engine.put_archive(node.name, CNI_DIR, _tar_one(CONFLIST, text.encode()))
        for cmd in [*routes(nodes, node), ["sh", "-c", masquerade_script(nodes)]]:
            code, out = engine.exec(node.name, cmd, timeout=60)
            if code != 0:
                raise LabError(f"{' '.join(cmd)} on {node.name} failed: {out.strip()}")
        log(f"pod network on {node.name}: {node.pod_cidr}, {len(nodes) - 1} route(s), masquerade")
    return nodes


def ready(obj: dict[str, Any]) -> bool:
    """Pure: a Node object's Ready condition is True."""
    conds = (obj.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds)


def wait_ready(client: Client, timeout: float = 300) -> None:
    """Every node Ready (what `kind create cluster --wait` waits for), or a LabError naming the rest."""
    deadline = time.monotonic() + timeout
    while True:
        waiting = [o["metadata"]["name"] for o in client.list("v1", "Node") if not ready(o)]
        if not waiting:
            return
        if time.monotonic() > deadline:
            raise LabError(f"kind nodes not Ready after {timeout:.0f}s: {', '.join(waiting)}")
        time.sleep(2)
