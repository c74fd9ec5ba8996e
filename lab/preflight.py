"""What a run needs from this host, checked before anything changes.

`lab create-clusters` (and `lab up` for the stack itself) adds processes and connections to this
host. Below a kernel limit nothing fails at once: with Debian's fs.inotify.max_user_instances=128, a
create of 100 clusters went on, and from about test-36 the workload apiservers logged "error creating
fsnotify watcher: too many open files" (their certificate reload was dead), and managers crash-loop
once the instances run out. So the run is refused up front, with one line naming the limit, its value,
what the run needs and the command that raises it.

The figures below were measured by benchmarks/host_footprint.py: a stack started by `lab up`, then 10
clusters on the local backing, counting per process the `anon_inode:inotify` descriptors in
/proc/<pid>/fd, the `inotify wd:` lines of their /proc/<pid>/fdinfo entries (watches), every descriptor,
RSS, and TCP connections to the tenant etcd (v1.35.4 / CAPI v1.13.6 / CAPM3 v1.13.2 / BMO v0.13.2, 2
cores shared with other test runs, load average 5-8):

    per process            inotify  watches  fds alone -> 10 clusters   per cluster
    kube-apiserver (mgmt)     3        4        139 -> 159                  +2.0
    capi/kcp/cabpk/capm3      1 each   2 each    12 -> 23                   +1.1 each
    bmo, ipam, kcm            1 each   2 each    12, 12, 11 (flat)
    mgmt-etcd, nodesim        0        0        131 -> 143, 4 -> 17     +1.2, +1.3
    tenant-etcd               0        0         14 -> 614                 +60.0
    supervisord               0        0         39 -> 69                   +3.0
    stack alone: 10 inotify instances, 18 watches, 410 descriptors (busiest 139), 1291 MiB RSS
    workload kube-apiserver (median of 10): 3 instances, 4 watches, 78 descriptors, 187 MiB RSS,
      60 connections to the tenant etcd (one etcd client per resource type)

So a local cluster costs this host 3 inotify instances (the serving cert, client CA and request-header
CA reload watchers), 4 watches, 78 + 72 descriptors (its own, and the stack's: 60 of them the tenant
etcd's end of its connections), 60 ephemeral ports (every connection goes from 127.0.0.1 to the one
tenant etcd address) and ~190 MiB (lab.backing.local, benchmarks/apiserver_rss.py). A cluster on
another backing costs none of that here, only the managers' and the node simulator's clients of its
API: 72 - 60 (tenant etcd) - 3 (supervisord's pipes of the local apiserver) = 9 descriptors, at most 2
in one process (the management kube-apiserver), and the management side's memory (below). With Debian's default of 128 inotify instances the
stack and (128 - 10) / 3 = 39 local clusters fit: the "from about test-36" above.

A cluster on the `mux` backing has no apiserver of its own, but its API is served here: lab-mux (one
process under the stack's supervisord, lab.backing.mux) holds it. So it costs what a cluster on
another backing costs the stack, plus, in lab-mux:
- memory: 1.21 MiB of lab-mux RSS per registered cluster at 500 clusters (1.54 at 100, 1.37 at 250:
  lab-mux's own share is in each; from 250 to 500 the marginal cost was 1.05 MiB; issue 12's goal
  is <= 1 MiB). Measured by issue 12's first mux scale run, `benchmarks/scale_local.py --backing mux
  --steps 100,250,500,1000`, alone on 2 vCPU / 23.5 GiB; its table is in stop 18's closing note on
  the issue tracker, not in this repository;
- descriptors: one listening socket per cluster (lab/mux/main.go: a net.Listen per registration) and
  the server end of each of the stack's connections to that cluster's API. Not measured on lab-mux:
  1 + the 9 descriptors a cluster on another backing adds to the stack = 10 is an upper bound (some
  of those 9 are the management side's own, not clients of the workload API). lab-mux runs under
  supervisord, so its RLIMIT_NOFILE is the stack's (supervisord's minfds, lab.runtime.supervise);
- a port: cluster N listens on 127.2.0.1:(20000 + N) (naming.mux_endpoint), 12767 ports in all,
  shared by every lab home of this host.
Every cluster, on any backing, also grows the management side here (its objects are the same
whatever the backing): the management kube-apiserver's RSS grew by 5.6 MiB per cluster from 100 to
500 mux clusters (2468 -> 3865 MiB, the same run; 185 clusters were still being created at 500, so
under load). Below 100 it grew faster (2468 MiB at 100; that run has no figure at 0), so from an
empty stack this slope undercounts. The management etcd's growth is not counted: it was not
measured apart.

What is already in use is read, not estimated: inotify instances and watches of every process of
this user (the kernel counts them per user, so another lab home or a kind cluster run by the same
user counts too), the system's open files (fs.file-nr), MemAvailable, connections to the tenant
etcd, lab-mux's descriptors and the listeners on the mux range. A second create therefore accounts
for the first. `lab doctor` shows the same checks for full local and mux backings (`local_capacity`
and `mux_capacity` clusters) and, for each backing alone, how many more clusters fit (room).
"""

from __future__ import annotations

import math
import os
import resource
from collections.abc import Callable, Collection, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from lab import naming
from lab.errors import LabError

MiB = 2**20


@dataclass(frozen=True)
class Footprint:
    """What one thing costs this host when it runs here."""

    inotify_instances: int
    inotify_watches: int
    files: int
    memory_bytes: int


#: one local-backing workload kube-apiserver, idle after its cluster became Available (measured)
WORKLOAD = Footprint(inotify_instances=3, inotify_watches=4, files=78, memory_bytes=190 * MiB)
#: the whole local stack when `lab up` starts it, no clusters (measured: 10, 18, 410, 1291 MiB)
STACK = Footprint(inotify_instances=10, inotify_watches=18, files=410, memory_bytes=1300 * MiB)
#: descriptors of the stack's busiest process right after `lab up`, no clusters (the kube-apiserver)
BUSIEST_FILES = 140
#: descriptors a local cluster adds to the stack's processes together, and to the busiest (tenant etcd)
FILES_PER_LOCAL_CLUSTER_STACK, FILES_PER_LOCAL_CLUSTER_BUSIEST = 72, 60
#: descriptors a cluster on another backing adds to the stack's processes, and to the busiest one
FILES_PER_REMOTE_CLUSTER_STACK, FILES_PER_REMOTE_CLUSTER_BUSIEST = 9, 2
#: lab-mux's RSS per registered cluster at 500 mux clusters (measured, see above)
MUX_MEMORY = round(1.21 * MiB)
#: descriptors one mux cluster adds to lab-mux: its listener and the far end of the stack's clients
#: (an estimate, the upper bound above: not measured on lab-mux)
MUX_FILES = 1 + FILES_PER_REMOTE_CLUSTER_STACK
#: ports of the mux range: one listener each on naming.MUX_HOST (naming.mux_endpoint)
MUX_PORTS = naming.MUX_MAX_PORT - naming.MUX_PORT_BASE
#: management kube-apiserver RSS growth per cluster, any backing (measured at 100 -> 500 mux clusters)
MANAGEMENT_MEMORY = round(5.6 * MiB)
#: TCP connections one local workload apiserver keeps to the tenant etcd; all come from 127.0.0.1
#: to one address and port, so each takes an ephemeral port of net.ipv4.ip_local_port_range
ETCD_CONNECTIONS = 60
#: supervisord raises the soft open-files limit of itself and its children to this (lab.runtime.supervise)
SUPERVISED_FILES = 65536
#: what doctor has always suggested for the ephemeral port range
WIDE_PORT_RANGE = "1024 65000"
#: head room the suggested sysctl value leaves over what the run needs, for everything else
HEADROOM = 1.25


@dataclass(frozen=True)
class Host:
    """The limits of this host and what is in use now (read by read_host; built by hand in tests)."""

    inotify_instances_limit: int | None
    inotify_instances_used: int
    inotify_watches_limit: int | None
    inotify_watches_used: int
    #: soft RLIMIT_NOFILE the stack's processes have (running) or will get from supervisord
    process_files_limit: int
    #: descriptors of the stack's busiest process now but lab-mux (0 when the stack is not running)
    process_files_used: int
    file_max: int | None
    files_used: int
    memory_available: int
    ephemeral_ports: int | None
    #: connections to the tenant etcd now (each holds an ephemeral port)
    etcd_connections: int
    #: RLIMIT_NOFILE hard limit of this process: what supervisord may raise its soft limit to
    files_hard_limit: int = SUPERVISED_FILES
    stack_running: bool = False
    #: descriptors of lab-mux now (0 when it is not running)
    mux_files_used: int = 0
    #: listeners on the mux range now (naming.MUX_HOST), of every lab home of this host
    mux_listeners: int = 0


@dataclass(frozen=True)
class Demand:
    """What a run adds: workload apiservers started here, clusters served by this host's lab-mux,
    clusters on other backings, the stack itself."""

    local_clusters: int = 0
    remote_clusters: int = 0
    stack: bool = False
    mux_clusters: int = 0

    def describe(self) -> str:
        parts = []
        if self.stack:
            parts.append("the stack")
        if self.local_clusters:
            parts.append(f"{self.local_clusters} local cluster(s)")
        if self.mux_clusters:
            parts.append(f"{self.mux_clusters} mux cluster(s)")
        if self.remote_clusters:
            parts.append(f"{self.remote_clusters} cluster(s) on other backings")
        return " + ".join(parts) or "nothing new"


@dataclass(frozen=True)
class Check:
    """One limit against what the run needs."""

    name: str
    limit: int | None  # None: unknown here (not Linux), never refuses
    used: int
    adds: int
    unit: str
    fix: str  # the command (or action) that raises the limit
    #: sysctl name and value that `--raise-limits` writes, or the RLIMIT_NOFILE value it sets
    sysctl: tuple[str, str] | None = None
    rlimit: int | None = None

    @property
    def needed(self) -> int:
        return self.used + self.adds

    @property
    def ok(self) -> bool:
        return self.limit is None or self.needed <= self.limit

    def message(self, demand: Demand) -> str:
        """The one line a refusal prints: limit, value, what is needed (in use + this run), the fix."""
        u, what = self.unit, demand.describe()
        detail = f"{self.used}{u} in use + {self.adds}{u} for {what}" if self.used else f"for {what}"
        return f"{self.name} is {self.limit}{u}; this run needs {self.needed}{u} ({detail}): {self.fix}"

    def as_dict(self) -> dict[str, object]:
        return asdict(self) | {"needed": self.needed, "ok": self.ok}


def suggested(needed: int, floor: int = 0) -> int:
    """Pure: the value to raise a limit to: a power of two with HEADROOM over what is needed."""
    exponent: int = math.ceil(math.log2(max(needed * HEADROOM, 1)))
    return max(floor, 1 << max(exponent, 0))


def _sysctl_check(name: str, limit: int | None, used: int, adds: int, floor: int = 0) -> Check:
    value = suggested(used + adds, floor)
    return Check(name, limit, used, adds, "", f"sysctl -w {name}={value}", sysctl=(name, str(value)))


def _files_check(name: str, host: Host, now: int, adds: int) -> Check:
    """RLIMIT_NOFILE of one process under supervisord (it inherits supervisord's soft limit)."""
    want = suggested(now + adds, SUPERVISED_FILES)
    if host.stack_running:
        fix = f"ulimit -n {want} in the shell that runs `lab down && lab up` (or --raise-limits as root)"
    else:
        fix = f"ulimit -Hn {want}, then lab up again from that shell"
    return Check(name, host.process_files_limit, now, adds, "", fix, rlimit=want)


def checks(host: Host, demand: Demand) -> list[Check]:
    """Pure: every limit this host has against what `demand` adds to what is in use."""
    local, mux = demand.local_clusters, demand.mux_clusters
    # the stack holds only clients of a cluster whose API is not a local apiserver
    clients = demand.remote_clusters + mux
    stack = STACK if demand.stack else Footprint(0, 0, 0, 0)
    out = [
        _sysctl_check(
            "fs.inotify.max_user_instances",
            host.inotify_instances_limit,
            host.inotify_instances_used,
            local * WORKLOAD.inotify_instances + stack.inotify_instances,
        ),
        _sysctl_check(
            "fs.inotify.max_user_watches",
            host.inotify_watches_limit,
            host.inotify_watches_used,
            local * WORKLOAD.inotify_watches + stack.inotify_watches,
        ),
        _sysctl_check(
            "fs.file-max",
            host.file_max,
            host.files_used,
            local * (WORKLOAD.files + FILES_PER_LOCAL_CLUSTER_STACK)
            + clients * FILES_PER_REMOTE_CLUSTER_STACK
            + mux * MUX_FILES
            + stack.files,
        ),
    ]
    # The busiest process grows with every cluster; a stack that starts now starts from STACK's.
    busiest_now = host.process_files_used if host.stack_running else 0
    busiest_adds = (
        local * FILES_PER_LOCAL_CLUSTER_BUSIEST
        + clients * FILES_PER_REMOTE_CLUSTER_BUSIEST
        + (0 if host.stack_running else BUSIEST_FILES)
    )
    out.append(_files_check("open files per stack process (RLIMIT_NOFILE)", host, busiest_now, busiest_adds))
    out.append(
        _files_check("open files of lab-mux (RLIMIT_NOFILE)", host, host.mux_files_used, mux * MUX_FILES)
    )
    out.append(
        Check(
            f"ports of the mux range ({naming.MUX_HOST}:{naming.MUX_PORT_BASE + 1}-{naming.MUX_MAX_PORT})",
            MUX_PORTS,
            host.mux_listeners,
            mux,
            "",
            "place the rest on another backing (--backing NAME), e.g. lab-mux on another host "
            "(lab backing add NAME --host ADDRESS --runtime mux)",
        )
    )
    if host.ephemeral_ports is not None:
        out.append(
            Check(
                "ephemeral ports to the tenant etcd (net.ipv4.ip_local_port_range)",
                host.ephemeral_ports,
                host.etcd_connections,
                local * ETCD_CONNECTIONS,
                "",
                f'sysctl -w net.ipv4.ip_local_port_range="{WIDE_PORT_RANGE}"',
                sysctl=("net.ipv4.ip_local_port_range", WIDE_PORT_RANGE),
            )
        )
    clusters = local + clients
    mem_adds = (
        local * WORKLOAD.memory_bytes + mux * MUX_MEMORY + clusters * MANAGEMENT_MEMORY + stack.memory_bytes
    ) // MiB
    out.append(
        Check(
            "available memory (MemAvailable)",
            host.memory_available // MiB,
            0,
            mem_adds,
            " MiB",
            "create fewer clusters, or place them on a backing on another host (--backing NAME)",
        )
    )
    return out


def room(host: Host, limit_to: int, stack: bool = False, mux: bool = False) -> tuple[int, str]:
    """Pure: how many more local clusters (mux ones with `mux`), at most limit_to, fit under every
    limit, with the stack started first when `stack`, and which limit stops the next one ("" when
    limit_to fit)."""

    def short(n: int) -> list[Check]:
        return failures(
            host, Demand(local_clusters=0 if mux else n, mux_clusters=n if mux else 0, stack=stack)
        )

    if short(0):
        return 0, short(0)[0].name
    low, high = 0, limit_to
    while low < high:  # checks() is monotonic in the number of clusters
        mid = (low + high + 1) // 2
        low, high = (mid, high) if not short(mid) else (low, mid - 1)
    return low, "" if low == limit_to else short(low + 1)[0].name


def failures(host: Host, demand: Demand) -> list[Check]:
    return [c for c in checks(host, demand) if not c.ok]


# --- reading this host -----------------------------------------------------------------------


def _read(path: str | Path) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def sysctl_path(name: str) -> Path:
    return Path("/proc/sys", name.replace(".", "/"))


def _sysctl_int(name: str) -> int | None:
    raw = _read(sysctl_path(name))
    try:
        return int(raw.split()[0]) if raw else None
    except ValueError:
        return None


@dataclass(frozen=True)
class Usage:
    """inotify instances and watches of one user's processes, and the descriptors of some of them."""

    instances: int
    watches: int
    files: dict[int, int]  # pid -> open descriptors, for the pids asked about


def process_usage(pid: int) -> tuple[int, int, int] | None:
    """(inotify instances, inotify watches, open descriptors) of one process; None once it is gone."""
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return None
    instances = watches = 0
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") != "anon_inode:inotify":
                continue
            info = Path(f"/proc/{pid}/fdinfo/{fd}").read_text()
        except OSError:
            continue
        instances += 1
        watches += sum(line.startswith("inotify wd:") for line in info.splitlines())
    return instances, watches, len(fds)


def inotify_usage(uid: int, pids: Collection[int] = ()) -> Usage:
    """Count, over every process of `uid`, the inotify descriptors and their watches; the kernel
    charges both to the user (fs.inotify.max_user_*). Processes that exit while we look are skipped."""
    instances = watches = 0
    files: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            if entry.stat().st_uid != uid:
                continue
        except OSError:
            continue
        found = process_usage(int(entry.name))
        if found is None:
            continue
        instances += found[0]
        watches += found[1]
        if int(entry.name) in pids:
            files[int(entry.name)] = found[2]
    return Usage(instances, watches, files)


def _tcp() -> list[list[str]]:
    """/proc/net/tcp's sockets: sl, local_address, rem_address, st, ... (addresses as hex IP:port)."""
    return [
        f for f in (line.split() for line in (_read("/proc/net/tcp") or "").splitlines()[1:]) if len(f) > 3
    ]


def _hex_ip(address: str) -> str:
    """IPv4 as /proc/net/tcp writes it: four bytes little-endian, hex (127.0.0.1 -> 0100007F)."""
    return "".join(f"{int(b):02X}" for b in reversed(address.split(".")))


def connections_to(port: int) -> int:
    """TCP connections (any state but LISTEN) from this host to 127.0.0.1:port, from /proc/net/tcp."""
    want = f"{_hex_ip('127.0.0.1')}:{port:04X}"  # rem_address, the third field
    return sum(1 for f in _tcp() if f[2] == want)


def listeners(address: str, low: int, high: int) -> int:
    """TCP sockets listening on address:low..high (state 0A), from /proc/net/tcp."""
    ip = _hex_ip(address)
    found = (f[1].split(":") for f in _tcp() if f[3] == "0A")
    return sum(1 for a, port in found if a == ip and low <= int(port, 16) <= high)


def _soft_files(pid: int) -> int | None:
    for line in (_read(f"/proc/{pid}/limits") or "").splitlines():
        if line.startswith("Max open files"):
            soft = line.split()[3]
            return resource.RLIM_INFINITY if soft == "unlimited" else int(soft)
    return None


def read_host(stack_pids: Collection[int], tenant_etcd_port: int, mux_pid: int | None = None) -> Host:
    """This host's limits and what is in use; stack_pids: the running stack's processes (none when
    it is not running), lab-mux's among them as mux_pid when it runs."""
    import psutil

    usage = inotify_usage(os.getuid(), stack_pids)
    stack_files = [n for pid, n in usage.files.items() if pid != mux_pid]  # lab-mux: its own check
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    hard_eff = SUPERVISED_FILES if hard == resource.RLIM_INFINITY else hard
    limits = [s for s in (_soft_files(p) for p in stack_pids) if s is not None]
    file_nr = _read("/proc/sys/fs/file-nr")
    port_range = _read("/proc/sys/net/ipv4/ip_local_port_range")
    span = None
    if port_range:
        low, high = (int(p) for p in port_range.split())
        span = high - low + 1
    return Host(
        inotify_instances_limit=_sysctl_int("fs.inotify.max_user_instances"),
        inotify_instances_used=usage.instances,
        inotify_watches_limit=_sysctl_int("fs.inotify.max_user_watches"),
        inotify_watches_used=usage.watches,
        process_files_limit=min(limits) if limits else min(hard_eff, SUPERVISED_FILES),
        process_files_used=max(stack_files, default=0),
        file_max=_sysctl_int("fs.file-max"),
        files_used=int(file_nr.split()[0]) if file_nr else 0,
        memory_available=int(psutil.virtual_memory().available),
        ephemeral_ports=span,
        etcd_connections=connections_to(tenant_etcd_port),
        files_hard_limit=hard_eff,
        stack_running=bool(stack_pids),
        mux_files_used=usage.files.get(mux_pid, 0) if mux_pid is not None else 0,
        mux_listeners=listeners(naming.MUX_HOST, naming.MUX_PORT_BASE + 1, naming.MUX_MAX_PORT),
    )


# --- refusing, or raising ----------------------------------------------------------------------


def write_sysctl(name: str, value: str) -> None:
    sysctl_path(name).write_text(f"{value}\n")


def raise_files(pids: Iterable[int], value: int) -> None:
    """RLIMIT_NOFILE of this process (so a supervisord it starts inherits it) and of the running
    stack's processes (prlimit), soft and hard; root only."""
    import psutil

    resource.setrlimit(resource.RLIMIT_NOFILE, (value, value))
    for pid in pids:
        try:
            psutil.Process(pid).rlimit(psutil.RLIMIT_NOFILE, (value, value))
        except psutil.NoSuchProcess:
            continue


def ensure(
    read: Callable[[], Host],
    demand: Demand,
    raise_limits: bool,
    stack_pids: Collection[int] = (),
    log: Callable[[str], None] = lambda _m: None,
) -> Host:
    """Refuse (one LabError line: the first limit that is short) unless this host has room for
    `demand`; with raise_limits, as root, raise what a command can raise and check again."""
    host = read()
    short = failures(host, demand)
    if not short or demand == Demand():
        return host  # a run that adds nothing is not refused for what others use
    raisable = [c for c in short if c.sysctl or c.rlimit]
    if raise_limits and raisable:
        if os.geteuid() != 0:
            raise LabError(f"--raise-limits needs root; as this user: {short[0].message(demand)}")
        for c in raisable:
            try:
                if c.sysctl:
                    write_sysctl(*c.sysctl)
                    log(f"raised {c.sysctl[0]} from {c.limit} to {c.sysctl[1]}")
                elif c.rlimit:
                    raise_files(stack_pids, c.rlimit)
                    log(f"raised open files per process from {c.limit} to {c.rlimit}")
            except (OSError, ValueError) as e:
                raise LabError(f"could not raise {c.name}: {e}; {c.fix}") from None
        host = read()
        short = failures(host, demand)
        if not short:
            return host
    raise LabError(short[0].message(demand))
