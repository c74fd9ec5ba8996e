"""Pure functions from a cluster index to its names and addresses.

Same index, same settings -> same names, MACs and endpoints, on every machine and every run: this is
what lets create and delete be re-run and resumed.
"""

from __future__ import annotations

import re

from lab.errors import UsageError

APISERVER_PORT = 6443
#: Label on the Namespace of every workload cluster; the management cluster is the source of truth.
CLUSTER_LABEL = "scale-lab.metal3.io/cluster"
INDEX_LABEL = "scale-lab.metal3.io/index"
#: Label on the Namespace naming the backing that carries the cluster's apiserver and etcd tenant.
BACKING_LABEL = "scale-lab.metal3.io/backing"
#: The backing of local mode: processes on this machine (lab.backing.local).
LOCAL_BACKING = "local"
#: The built-in multiplexed backing: one lab-mux process serves many workload APIs (lab.backing.mux).
MUX_BACKING = "mux"
#: Names of the backings lab carries built in; `lab backing add` refuses them.
BUILT_IN_BACKINGS = (LOCAL_BACKING, MUX_BACKING)
#: Every mux cluster's endpoint host: the in-memory server library issues one serving certificate per
#: listener for one host (its IP SAN) and routes requests by port, so the clusters share this address
#: and differ by port. 127.2.0.0/16 is apart from the local backing's 127.1.0.0/16.
MUX_HOST = "127.2.0.1"
#: mux cluster N listens on MUX_PORT_BASE + N: never the local backing's APISERVER_PORT, below the
#: kernel's ephemeral range (32768+), above the stack's fixed ports (lab.config.Ports).
MUX_PORT_BASE = 20000
MUX_MAX_PORT = 32767
#: supervisord program (and log file) of a workload apiserver: wkl-<cluster>.
WORKLOAD_PROGRAM_PREFIX = "wkl-"
#: RFC 1123 label: what clusters, tenants and backings are named (a namespace, a label value, an etcd
#: user and a directory name at once).
DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\Z")  # \Z: $ would allow a final newline


def check_dns_label(what: str, value: str) -> str:
    """`value` when it is a lowercase DNS label; else one UsageError naming `what` it was to be."""
    if not DNS_LABEL.match(value):
        raise UsageError(f"invalid {what} {value!r}: must be a lowercase DNS label")
    return value


def cluster_name(prefix: str, index: int) -> str:
    """test-101 for index 101; the cluster's namespace has the same name."""
    return f"{prefix}-{index}"


def parse_index(prefix: str, name: str) -> int | None:
    """Inverse of cluster_name; None when the name is not one of ours."""
    head, _, tail = name.rpartition("-")
    return int(tail) if head == prefix and tail.isdigit() and not tail.startswith("0") else None


def check_range(start: int, count: int, max_index: int, what: str = "clusters") -> range:
    """Validate a --start/--count pair before anything is touched."""
    if count < 1:
        raise UsageError(f"count must be at least 1, got {count}")
    if start < 1:
        raise UsageError(f"start index must be at least 1, got {start}")
    last = start + count - 1
    if last > max_index:
        raise UsageError(
            f"{what} {start}..{last} go past the configured maximum index {max_index} (setting max_index)"
        )
    return range(start, last + 1)


#: Third octet of the boot MACs: 0x61 ("a") for the clusters' hosts, 0x62 for `lab create-hosts`'
#: standalone hosts, so no two hosts of one lab ever share a MAC.
CLUSTER_MAC_OCTET, STANDALONE_MAC_OCTET = 0x61, 0x62
#: Third octet of the BMC addresses' subnet, by the same split.
CLUSTER_BMC_SUBNET, STANDALONE_BMC_SUBNET = 122, 123


#: Worker host `slot` (1..MAX_WORKER_SLOTS) of a cluster: MAC octet WORKER_MAC_OCTET + slot and BMC
#: subnet WORKER_BMC_SUBNET + slot, apart from the control-plane host's (0x61, 122) and the standalone
#: hosts' (0x62, 123), so every host of one lab has its own MAC and BMC address.
WORKER_MAC_OCTET, WORKER_BMC_SUBNET = 0x70, 130
MAX_WORKER_SLOTS = 15  # 0x71..0x7f, 192.168.131..145


#: Control-plane host slot 1 of a cluster (the spare `lab upgrade-clusters` renders, so KCP's rollout
#: has a host for the new Machine before the old one goes): its own MAC octet and BMC subnet, apart
#: from slot 0's (the CLUSTER_* pair), the standalone hosts' and the workers'.
SPARE_MAC_OCTET, SPARE_BMC_SUBNET = 0x63, 124
CONTROL_PLANE_SLOTS = (0, 1)


def control_plane_mac(index: int, slot: int) -> str:
    """Boot MAC of control-plane host `slot` (0 or 1) of cluster `index`."""
    if slot not in CONTROL_PLANE_SLOTS:
        raise ValueError(f"control-plane slot {slot} out of range {CONTROL_PLANE_SLOTS}")
    return boot_mac(index, SPARE_MAC_OCTET if slot else CLUSTER_MAC_OCTET)


def control_plane_bmc_address(index: int, slot: int) -> str:
    if slot not in CONTROL_PLANE_SLOTS:
        raise ValueError(f"control-plane slot {slot} out of range {CONTROL_PLANE_SLOTS}")
    return bmc_address(index, SPARE_BMC_SUBNET if slot else CLUSTER_BMC_SUBNET)


def worker_mac(index: int, slot: int) -> str:
    """Boot MAC of worker host `slot` of cluster `index`."""
    if not 0 < slot <= MAX_WORKER_SLOTS:
        raise ValueError(f"worker slot {slot} out of range 1..{MAX_WORKER_SLOTS}")
    return boot_mac(index, WORKER_MAC_OCTET + slot)


def worker_bmc_address(index: int, slot: int) -> str:
    if not 0 < slot <= MAX_WORKER_SLOTS:
        raise ValueError(f"worker slot {slot} out of range 1..{MAX_WORKER_SLOTS}")
    return bmc_address(index, WORKER_BMC_SUBNET + slot)


def boot_mac(index: int, octet: int = CLUSTER_MAC_OCTET) -> str:
    """A locally administered unicast MAC (02:...) with the index in the low 24 bits."""
    if not 0 < index < 1 << 24:
        raise ValueError(f"index {index} out of range for a MAC")
    low = index.to_bytes(3, "big")
    return f"02:6c:{octet:02x}:" + ":".join(f"{b:02x}" for b in low)


def bmc_address(index: int, subnet: int = CLUSTER_BMC_SUBNET) -> str:
    """A VirtualBMC-style address; BMO in test mode parses it but never dials it.

    Indexes 1..254 get libvirt://192.168.122.N:6233/; past that the port moves on, as VirtualBMC does
    when it serves many domains from one host.
    """
    host = 1 + (index - 1) % 254
    port = 6233 + (index - 1) // 254
    return f"libvirt://192.168.{subnet}.{host}:{port}/"


#: Label on the namespace and every object of `lab create-hosts` (value: the lab's prefix). Not
#: CLUSTER_LABEL: cluster commands, `lab status` and the node simulator never see these hosts.
HOSTS_LABEL = "scale-lab.metal3.io/hosts"


def hosts_namespace(prefix: str) -> str:
    """test-hosts: one namespace for every standalone host; never a cluster name (parse_index
    reads no index in it)."""
    return f"{prefix}-hosts"


def host_name(prefix: str, index: int) -> str:
    """test-bmh-7; clusters' hosts are test-<N>-host-0 in their own namespaces, so names never meet."""
    return f"{prefix}-bmh-{index}"


def parse_host_index(prefix: str, name: str) -> int | None:
    """Inverse of host_name; None when the name is not one of ours."""
    return parse_index(f"{prefix}-bmh", name)


def local_endpoint(index: int) -> tuple[str, int]:
    """In local mode every workload apiserver listens on its own loopback address: 127.1.x.y:6443."""
    if not 0 < index < 1 << 16:
        raise ValueError(f"index {index} out of range for a loopback endpoint")
    return f"127.1.{index >> 8}.{index & 0xFF}", APISERVER_PORT


def mux_endpoint(index: int) -> tuple[str, int]:
    """The endpoint of cluster `index` on the mux backing: MUX_HOST:(MUX_PORT_BASE + index)."""
    if not 0 < index <= MUX_MAX_PORT - MUX_PORT_BASE:
        raise ValueError(f"index {index} out of range for a mux endpoint (1..{MUX_MAX_PORT - MUX_PORT_BASE})")
    return MUX_HOST, MUX_PORT_BASE + index
