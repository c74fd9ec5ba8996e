"""A kind backing's published NodePort block, and which cluster holds which port of it: pure.

kind opens a NodePort on the node container's address, not the VM's. Only the ports the playbook
publishes with extraPortMappings (playbooks/roles/backing_kind) reach the VM's internal IP, so lab
must hand out exactly those: the block `backing_kind_node_port_base` .. base+count-1, recorded in the
backing's entry by `lab backing add --node-ports`, plus etcd's one external port outside it.

Ports are handed out, not derived from the index: with placement spreading clusters over several
backings, the indexes on one backing are B apart, and any fold of the index into a small block
collides. The Service is what holds a port (the backing's apiserver refuses a second Service on
it), so a re-run after a crash finds every port that was really taken by listing Services.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lab import naming
from lab.errors import LabError, UsageError
from lab.manifests import etcd as etcd_manifests


@dataclass(frozen=True)
class PortBlock:
    """first..last, both included."""

    first: int
    last: int

    @property
    def size(self) -> int:
        return self.last - self.first + 1

    def __contains__(self, port: object) -> bool:
        return isinstance(port, int) and self.first <= port <= self.last

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.first, self.last + 1))

    def __str__(self) -> str:
        return f"{self.first}-{self.last}"


#: Kubernetes' default --service-node-port-range, which kind leaves as it is.
NODE_PORT_RANGE = PortBlock(30000, 32767)
#: The playbook's defaults: backing_kind_node_port_base 30000, backing_kind_node_port_count 100.
DEFAULT_BLOCK = PortBlock(30000, 30099)
#: The playbook's backing_kind_etcd_node_port: the top of the range, outside any apiserver block.
DEFAULT_ETCD_NODE_PORT = etcd_manifests.EXTERNAL_NODE_PORT

_BLOCK = re.compile(r"^\s*(\d{1,5})\s*-\s*(\d{1,5})\s*$")


def parse_block(text: str) -> PortBlock:
    """`FIRST-LAST`, as `lab backing add --node-ports` takes it and the entry's spec stores it."""
    m = _BLOCK.match(text)
    if not m or int(m[1]) > int(m[2]):
        raise UsageError(f"invalid NodePort block {text!r}: FIRST-LAST, e.g. {DEFAULT_BLOCK}")
    return PortBlock(int(m[1]), int(m[2]))


def check(block: PortBlock, etcd_port: int, capacity: int) -> None:
    """Everything `lab backing add` must refuse before it touches anything."""
    r = NODE_PORT_RANGE
    if block.first not in r or block.last not in r:
        raise UsageError(f"NodePort block {block} is outside Kubernetes' NodePort range {r}")
    if etcd_port not in r:
        raise UsageError(f"etcd NodePort {etcd_port} is outside Kubernetes' NodePort range {r}")
    if etcd_port in block:
        raise UsageError(f"etcd NodePort {etcd_port} lies inside the apiservers' NodePort block {block}")
    if capacity > block.size:
        raise UsageError(
            f"capacity {capacity} exceeds the {block.size} NodePorts of block {block}: one apiserver "
            "needs one published port; widen the block (kind config and --node-ports) or lower --capacity"
        )


@dataclass(frozen=True)
class InUse:
    """What one LIST of every Service in the backing cluster says about NodePorts."""

    #: cluster -> nodePort of lab's apiserver Service of that cluster
    held: dict[str, int]
    #: every nodePort any Service holds (lab's, etcd's, anyone else's)
    taken: frozenset[int]


def in_use(services: Iterable[Mapping[str, Any]], namespace: str) -> InUse:
    """Pure: lab's apiserver Services are the ones in `namespace` carrying the cluster label."""
    held: dict[str, int] = {}
    taken: set[int] = set()
    for s in services:
        ports = [p["nodePort"] for p in (s.get("spec") or {}).get("ports") or [] if p.get("nodePort")]
        taken.update(ports)
        meta = s.get("metadata") or {}
        cluster = (meta.get("labels") or {}).get(naming.CLUSTER_LABEL)
        if cluster and ports and meta.get("namespace") == namespace:
            held[cluster] = ports[0]
    return InUse(held, frozenset(taken))


def allocate(
    block: PortBlock,
    backing: str,
    clusters: Sequence[str],
    in_use: InUse,
    given: Mapping[str, int] | None = None,
) -> dict[str, int]:
    """cluster -> nodePort for each of `clusters`, never one port twice.

    A cluster keeps the port its Service holds; else the port this process gave it before (`given`,
    whose Service does not exist yet); else the lowest port of the block that no Service holds and
    nothing here gave out. Raises one LabError, with nothing allocated, when the block runs out.
    """
    given = dict(given or {})
    out: dict[str, int] = {}
    for c in clusters:
        if c in in_use.held:
            out[c] = in_use.held[c]
        elif c in given and given[c] not in in_use.taken:
            out[c] = given[c]
    busy = set(in_use.taken) | set(out.values()) | {p for c, p in given.items() if c not in out}
    free = (p for p in block if p not in busy)
    short = [c for c in clusters if c not in out]
    for c in short:
        port = next(free, None)
        if port is None:
            left = short[short.index(c) :]
            used = sum(1 for p in busy if p in block)
            raise LabError(
                f"backing {backing}: NodePort block {block} is full ({used} of {block.size} ports held), "
                f"no port for {left[0]}{f' and {len(left) - 1} more' if len(left) > 1 else ''}; "
                "place them on another backing, or publish a wider block (playbook "
                "backing_kind_node_port_count) and re-register it (lab backing add --node-ports)"
            )
        out[c] = port
    return out


def moved(given: Mapping[str, int], in_use: InUse) -> dict[str, str]:
    """cluster -> why, for ports this process gave out (and rendered certificates and objects with)
    that the backing no longer agrees with: another Service took the port, or the cluster's own
    Service (made by a concurrent run) holds another one."""
    out: dict[str, str] = {}
    for c, port in given.items():
        held = in_use.held.get(c)
        if held is not None and held != port:
            out[c] = f"its Service holds nodePort {held}, this run rendered {port}"
        elif held is None and port in in_use.taken:
            out[c] = f"nodePort {port} was taken by another Service meanwhile"
    return out
