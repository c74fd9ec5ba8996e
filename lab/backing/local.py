"""Workload kube-apiservers as local processes: one per cluster, on its own loopback address
(127.1.x.y:6443, no configuration needed: Linux routes all of 127.0.0.0/8 to `lo`), backed by the
cluster's tenant in the multi-tenant etcd, supervised by the stack's supervisord as `wkl-<cluster>`.

Why processes and not one fake server: CAPI, KCP and CAPM3 then talk to a real apiserver (protobuf
bodies, watch-list, strategic merge) with no fidelity gap; the price is memory, which TRIM_FLAGS cuts
(figures in benchmarks/apiserver_rss.py).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import urllib3

from lab import build, naming, pki
from lab.config import Settings
from lab.errors import LabError
from lab.kube import Config
from lab.stack.supervise import Program, Supervisor, ensure_running, log_file

PROGRAM_PREFIX = "wkl-"
#: Workload apiservers start after the stack's core and managers when supervisord starts everything.
PRIORITY = 800
READY_TIMEOUT = 180.0

#: Admission plugins a fake cluster needs none of: no kubelet, no controllers, no webhooks, no quota.
#: NamespaceLifecycle stays (it keeps kube-system undeletable, as on a real cluster).
DISABLED_ADMISSION = (
    "LimitRanger",
    "ServiceAccount",
    "TaintNodesByCondition",
    "PodSecurity",
    "Priority",
    "DefaultTolerationSeconds",
    "DefaultStorageClass",
    "StorageObjectInUseProtection",
    "PersistentVolumeClaimResize",
    "RuntimeClass",
    "CertificateApproval",
    "CertificateSigning",
    "ClusterTrustBundleAttest",
    "CertificateSubjectRestriction",
    "DefaultIngressClass",
    "PodTopologyLabels",
    "NodeDeclaredFeatureValidator",
    "MutatingAdmissionPolicy",
    "MutatingAdmissionWebhook",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionWebhook",
    "ResourceQuota",
)

#: The memory trims (benchmarks/apiserver_rss.py: 266 -> 248 MiB median idle RSS before GOGC; the
#: seed's set alone gives 251). Groups CAPI, KCP and CAPM3 call (core v1, apps/v1, rbac,
#: storage.k8s.io/v1, policy/v1, coordination) are GA and stay; alpha and beta groups are off.
TRIM_FLAGS = (
    "--profiling=false",
    "--watch-cache=false",
    "--enable-priority-and-fairness=false",
    "--enable-garbage-collector=false",
    "--etcd-count-metric-poll-period=0",
    "--etcd-db-metric-poll-interval=0",
    "--runtime-config=api/alpha=false,api/beta=false",
    f"--disable-admission-plugins={','.join(DISABLED_ADMISSION)}",
    # No Service endpoints to keep (no kube-proxy) and no lease churn in the tenant etcd.
    "--endpoint-reconciler-type=none",
    "--event-ttl=10m",
)

#: Go heap target: GOGC=25 cut the median idle RSS 248 -> 190 MiB for ~1 mCPU more per idle apiserver;
#: GOGC=10 saves 10 MiB more for 45% more idle CPU, GOMEMLIMIT=150MiB less than GOGC=50 (benchmark).
ENV = {"GOGC": "25"}


def program_name(name: str) -> str:
    return f"{PROGRAM_PREFIX}{name}"


@dataclass(frozen=True)
class PkiPaths:
    """The files lab.pki.cluster_pki writes, as the apiserver reads them."""

    ca: Path
    cert: Path
    key: Path
    sa_pub: Path
    sa_key: Path
    etcd_ca: Path
    etcd_cert: Path
    etcd_key: Path
    kubeconfig: Path

    @classmethod
    def of(cls, settings: Settings, name: str) -> PkiPaths:
        d = pki.cluster_pki_dir(settings, name)
        return cls(
            ca=d / "ca.crt",
            cert=d / "apiserver.crt",
            key=d / "apiserver.key",
            sa_pub=d / "sa.pub",
            sa_key=d / "sa.key",
            etcd_ca=d / "etcd-ca.crt",
            etcd_cert=d / "apiserver-etcd-client.crt",
            etcd_key=d / "apiserver-etcd-client.key",
            kubeconfig=d / "admin.kubeconfig",
        )


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


def apiserver_flags(
    name: str, paths: PkiPaths, etcd_servers: str, trims: Iterable[str] = TRIM_FLAGS
) -> list[str]:
    """Pure: every flag but the listen address, shared by the local processes and the kind backing's
    Deployments (lab.manifests.backing_apiserver), so both run the same trimmed apiserver."""
    from lab.etcd import apiserver_etcd_flags  # lab.etcd.tenants needs grpc; the flags do not

    return [
        f"--tls-cert-file={paths.cert}",
        f"--tls-private-key-file={paths.key}",
        # CAPI's <cluster>-kubeconfig and lab's admin kubeconfig carry client certs of this CA.
        f"--client-ca-file={paths.ca}",
        "--authorization-mode=RBAC",
        f"--service-account-issuer=https://kubernetes.default.svc.{pki.CLUSTER_DOMAIN}",
        f"--service-account-key-file={paths.sa_pub}",
        f"--service-account-signing-key-file={paths.sa_key}",
        f"--service-cluster-ip-range={pki.SERVICE_CIDR}",
        *apiserver_etcd_flags(name, etcd_servers, paths.etcd_ca, paths.etcd_cert, paths.etcd_key),
        *trims,
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
        pki.cluster_pki(settings, name, host, port, certs.ca)
    with etcd.root_client(settings) as root:
        from lab.etcd import tenants

        tenants.create_many(root, names)
    sup = sup or ensure_running(settings)
    sup.apply([program(settings, n, i) for n, i in zip(names, idx, strict=True)])
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
        from lab.stack.supervise import remove_program_files

        remove_program_files(settings, [program_name(n) for n in names])
    with etcd.root_client(settings) as root:
        from lab.etcd import tenants

        present = {t.name for t in tenants.list_tenants(root)}
        gone = [n for n in names if n in present]
        if gone:
            tenants.delete_many(root, gone)
        else:  # keys may outlive a half-done delete
            for n in names:
                tenants.delete_keys(root, n)
    for n in names:
        pki.remove_cluster_pki(settings, n)
        with contextlib.suppress(FileNotFoundError):
            log_file(settings, program_name(n)).unlink()


def running(settings: Settings, sup: Supervisor | None = None) -> dict[str, int]:
    """Cluster name -> pid of every workload apiserver supervisord runs right now."""
    sup = sup or Supervisor(settings)
    if not sup.alive():
        return {}
    return {
        p["name"].removeprefix(PROGRAM_PREFIX): int(p["pid"])
        for p in sup.processes()
        if p["name"].startswith(PROGRAM_PREFIX) and p["statename"] == "RUNNING" and p["pid"]
    }


def admin_kubeconfig(settings: Settings, name: str) -> bytes:
    return PkiPaths.of(settings, name).kubeconfig.read_bytes()


def is_ready(settings: Settings, name: str, timeout: float = 5.0) -> bool:
    """GET /readyz with the admin kubeconfig's client cert: 200 means served and etcd reachable."""
    try:
        cfg = Config.from_kubeconfig(admin_kubeconfig(settings, name))
    except (OSError, LabError):
        return False
    pool = urllib3.PoolManager(ssl_context=cfg.ssl_context(), retries=False)
    try:
        return pool.request("GET", f"{cfg.server}/readyz", timeout=timeout).status == 200
    except urllib3.exceptions.HTTPError:
        return False
    finally:
        pool.clear()


def wait_ready(
    settings: Settings,
    names: Iterable[str],
    timeout: float = READY_TIMEOUT,
    *,
    why: Callable[[str], str] | None = None,
    where: str = "",
    interval: float = 0.5,
) -> None:
    """Until every named apiserver answers /readyz with its admin kubeconfig, probed from here as the
    management cluster will. On timeout the error names the first laggard and `why` it lags (default:
    the last line of its local log); every backing shares this loop and brings its own `why`."""
    pending = list(names)
    deadline = time.monotonic() + timeout
    while pending:
        pending = [n for n in pending if not is_ready(settings, n)]
        if not pending:
            return
        if time.monotonic() > deadline:
            reason = (why or (lambda n: _log_reason(settings, n)))(pending[0])
            raise LabError(
                f"{len(pending)} workload apiserver(s){where} not ready within {timeout:.0f}s, "
                f"first {pending[0]}: {reason}"
            )
        time.sleep(interval)


def _log_reason(settings: Settings, name: str) -> str:
    log = log_file(settings, program_name(name))
    return f"{_last_line(log)} (log: {log})"


def _last_line(path: Path) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(max(0, os.path.getsize(path) - 4096))
            lines = fh.read().decode(errors="replace").strip().splitlines()
        return lines[-1] if lines else "(empty log)"
    except OSError:
        return "(no log)"


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
        self.check_addresses(clusters)
        ensure(self.settings, [i for _n, i in clusters])

    def check_addresses(self, clusters: Sequence[tuple[str, int]]) -> None:
        """Each new apiserver's loopback address is free: it is fixed by the index, so another lab
        home on this machine with the same cluster would otherwise cost a 300 s readiness timeout."""
        from lab.stack.ports import bindable, listener_pid

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
        from lab.stack.supervise import programs_dir

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
