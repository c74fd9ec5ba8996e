"""Workload kube-apiservers as local processes: one per cluster, on its own loopback address
(127.1.x.y:6443, no configuration needed: Linux routes all of 127.0.0.0/8 to `lo`), backed by the
cluster's tenant in the multi-tenant etcd, supervised by the stack's supervisord as `wkl-<cluster>`.

Why processes and not one fake server: CAPI, KCP and CAPM3 then talk to a real apiserver (protobuf
bodies, watch-list, strategic merge) with no fidelity gap; the price is memory, which
lab.workload_apiserver's TRIM_FLAGS and ENV cut (figures in benchmarks/apiserver_rss.py).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence

from lab import build, naming, pki, pki_store
from lab.backing import ready
from lab.config import Settings
from lab.errors import LabError
from lab.runtime import logs
from lab.runtime.ports import bindable, listener_pid
from lab.runtime.supervise import (
    Program,
    Supervisor,
    ensure_running,
    log_file,
    programs_dir,
    remove_program_files,
)
from lab.workload_apiserver import ENV, TRIM_FLAGS, PkiPaths, apiserver_flags

PROGRAM_PREFIX = naming.WORKLOAD_PROGRAM_PREFIX
#: Workload apiservers start after the stack's core and managers when supervisord starts everything.
PRIORITY = 800
READY_TIMEOUT = ready.READY_TIMEOUT


def program_name(name: str) -> str:
    return f"{PROGRAM_PREFIX}{name}"


def apiserver_argv(
    settings: Settings,
    name: str,
    index: int,
    paths: PkiPaths,
    etcd_servers: str,
    trims: Iterable[str] = TRIM_FLAGS,
    endpoint: tuple[str, int] | None = None,
) -> list[str]:
    """Pure: the kube-apiserver command line of workload cluster `name` (index `index`), listening on
    `endpoint`: a process backing host passes its own address and port, local mode its loopback one."""
    host, port = endpoint or naming.local_endpoint(index)
    return [
        str(build.binary_path(settings, "kube-apiserver")),
        f"--bind-address={host}",
        f"--advertise-address={host}",
        f"--secure-port={port}",
        *apiserver_flags(name, paths, etcd_servers, trims),
    ]


def program(settings: Settings, name: str, index: int, endpoint: tuple[str, int] | None = None) -> Program:
    from lab.etcd import client_url

    paths = PkiPaths.of(settings, name)
    argv = apiserver_argv(settings, name, index, paths, client_url(settings), endpoint=endpoint)
    return Program(
        name=program_name(name),
        argv=argv,
        env=dict(ENV),
        directory=pki.cluster_pki_dir(settings, name).parent,
        priority=PRIORITY,
        stopwaitsecs=30,
    )


def ensure(settings: Settings, indexes: Iterable[int], sup: Supervisor | None = None) -> list[str]:
    """Tenant, PKI and a running supervised apiserver for each index; idempotent. The tenant etcd must
    be up (lab up). Returns the cluster names; readiness is wait_ready's job."""
    from lab import etcd

    idx = list(indexes)
    if not idx:
        return []
    for i in idx:
        naming.local_endpoint(i)  # range check before anything changes
    names = [naming.cluster_name(settings.prefix, i) for i in idx]
    exe = build.binary_path(settings, "kube-apiserver")
    if not exe.is_file():
        raise LabError(f"kube-apiserver is not built yet ({exe}): run lab build kube-apiserver")
    certs = etcd.ensure_pki(settings)
    for name, i in zip(names, idx, strict=True):
        host, port = naming.local_endpoint(i)
        pki_store.cluster_pki(settings, name, host, port, certs.ca)
    with etcd.root_client(settings) as root:
        from lab.etcd import tenants

        tenants.create_many(root, names)
    sup = sup or ensure_running(settings)
    # converge, not only apply: a program stopped or given up (STOPPED, EXITED, FATAL) starts again
    sup.converge([program(settings, n, i) for n, i in zip(names, idx, strict=True)])
    return names


def remove(settings: Settings, names: Iterable[str], sup: Supervisor | None = None) -> None:
    """Program, tenant (user, role, keys) and files of each cluster; what is already gone is fine."""
    from lab import etcd

    names = [pki.check_cluster_name(n) for n in names]
    if not names:
        return
    sup = sup or Supervisor(settings)
    if sup.alive():
        sup.remove([program_name(n) for n in names])
    else:
        remove_program_files(settings, [program_name(n) for n in names])
    with etcd.root_client(settings) as root:
        from lab.etcd import tenants

        tenants.remove(root, names)
    for n in names:
        pki_store.remove_cluster_pki(settings, n)
        with contextlib.suppress(FileNotFoundError):
            log_file(settings, program_name(n)).unlink()


def running(settings: Settings, sup: Supervisor | None = None) -> dict[str, int]:
    """Cluster name -> pid of every workload apiserver process supervisord has right now, STARTING
    and STOPPING included: such a process may already hold its port (a create killed within
    supervisord's startsecs left one STARTING, and the re-run took it for a stranger's)."""
    sup = sup or Supervisor(settings)
    if not sup.alive():
        return {}
    return {
        p["name"].removeprefix(PROGRAM_PREFIX): int(p["pid"])
        for p in sup.processes()
        if p["name"].startswith(PROGRAM_PREFIX) and p["pid"]
    }


def started(settings: Settings) -> bool:
    """Whether the local tenant etcd's certificates exist, i.e. lab up ran here."""
    from lab.etcd import server

    try:
        server.load_pki(settings)
    except LabError:
        return False
    return True


def admin_kubeconfig(settings: Settings, name: str) -> bytes:
    return PkiPaths.of(settings, name).kubeconfig.read_bytes()


def wait_ready(settings: Settings, names: Iterable[str], timeout: float = READY_TIMEOUT) -> None:
    """Until every named apiserver answers /readyz (lab.backing.ready); on timeout the first
    laggard's last log line says why."""
    ready.wait_ready(settings, names, timeout, why=lambda n: _log_reason(settings, n))


def _log_reason(settings: Settings, name: str) -> str:
    log = log_file(settings, program_name(name))
    return f"{logs.last_line(log)} (log: {log})"


class LocalBacking:
    """lab.backing.Backing for local mode: the functions above behind the shared contract."""

    name = naming.LOCAL_BACKING

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.capacity = settings.local_capacity

    def endpoint(self, _cluster: str, index: int) -> tuple[str, int]:
        return naming.local_endpoint(index)

    def etcd_servers(self) -> list[str]:
        from lab.etcd import client_url

        return [client_url(self.settings)]

    def etcd_ca(self) -> pki.KeyPair:
        from lab import etcd

        return etcd.ensure_pki(self.settings).ca

    def ensure(self, clusters: Sequence[tuple[str, int]]) -> None:
        self.preflight(clusters)
        ensure(self.settings, [i for _n, i in clusters])

    def preflight(self, clusters: Sequence[tuple[str, int]]) -> None:
        """Each new apiserver's loopback address is free: it is fixed by the index, so another lab
        home on this machine with the same cluster would otherwise cost a 300 s readiness timeout."""
        mine = running(self.settings)
        for name, index in clusters:
            if name in mine:
                continue
            host, port = naming.local_endpoint(index)
            if not bindable(port, host, reuse=True):
                pid = listener_pid(port, host)
                owner = f"pid {pid}" if pid else "another process"
                raise LabError(
                    f"{host}:{port} for {name} is in use by {owner}: is a cluster of the same index "
                    "running from another lab home?"
                )

    def wait_ready(self, names: Sequence[str], timeout: float) -> None:
        wait_ready(self.settings, names, timeout)

    def remove(self, names: Sequence[str]) -> None:
        remove(self.settings, names)

    def _running_or_stored(self) -> set[str]:
        """Clusters with a program file or an etcd tenant here."""
        from lab import etcd
        from lab.etcd import tenants

        found = {
            p.stem.removeprefix(PROGRAM_PREFIX)
            for p in programs_dir(self.settings).glob(f"{PROGRAM_PREFIX}*.conf")
        }
        with etcd.root_client(self.settings) as root:
            found |= {t.name for t in tenants.list_tenants(root)}
        return {n for n in found if naming.parse_index(self.settings.prefix, n) is not None}

    def present(self) -> set[str]:
        """Clusters of this prefix with a program file, an etcd tenant or a directory under lab home
        (clusters/ holds the PKI of every backing's clusters: delete --all sweeps orphaned ones here)."""
        found = self._running_or_stored()
        if self.settings.clusters_dir.is_dir():
            found |= {
                d.name
                for d in self.settings.clusters_dir.iterdir()
                if d.is_dir() and naming.parse_index(self.settings.prefix, d.name) is not None
            }
        return found

    def used(self) -> int:
        """Programs and tenants only: clusters/ also holds the PKI of clusters on other backings."""
        return len(self._running_or_stored())

    def tenant_health(self, names: Sequence[str]) -> dict[str, str | None]:
        from lab.etcd import tenants

        return tenants.health(self.settings, self.etcd_servers()[0], self.etcd_ca().cert_pem, list(names))
