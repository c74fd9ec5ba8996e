"""A throw-away tenant etcd with lab's own argv (TLS, client-cert auth, auth on) on free loopback
ports: what integration tests and benchmarks start, stop and hold on to."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from lab.config import Ports, Settings
from lab.errors import LabError
from lab.etcd import root_client, wait_ready
from lab.etcd.client import EtcdClient
from lab.etcd.server import EtcdPKI, client_url, ensure_pki, etcd_ca_dir, etcd_command, load_pki
from support.ports import free_port

__all__ = ["RunningEtcd", "client_url", "free_port", "scratch", "start", "stop"]


def start(settings: Settings, binary: Path, log: Path) -> subprocess.Popen[bytes]:
    """Spawn etcd with lab's argv (certs created first); the caller owns the process."""
    ensure_pki(settings)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as fh:
        return subprocess.Popen(etcd_command(settings, binary), stdout=fh, stderr=subprocess.STDOUT)


def stop(proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@dataclass(frozen=True)
class RunningEtcd:
    """A started, bootstrapped tenant etcd: what tests and benchmarks hold on to."""

    settings: Settings
    certs: EtcdPKI
    endpoint: str
    etcdctl: Path | None
    log: Path
    pid: int | None = None

    def root(self) -> EtcdClient:
        return root_client(self.settings)

    def etcdctl_argv(self, cert: Path, key: Path, *args: str) -> list[str]:
        """etcdctl against this etcd with the given client certificate."""
        if self.etcdctl is None:
            raise LabError("no etcdctl binary was given")
        tls = [f"--cacert={etcd_ca_dir(self.settings) / 'ca.crt'}", f"--cert={cert}", f"--key={key}"]
        return [str(self.etcdctl), f"--endpoints={self.endpoint}", *tls, "--command-timeout=10s", *args]


@contextmanager
def scratch(
    home: Path, etcd_binary: Path, etcdctl: Path | None = None, *, bootstrap: bool = True
) -> Iterator[RunningEtcd]:
    """A throw-away tenant etcd under `home` on free loopback ports: started, bootstrapped, stopped."""
    from lab.etcd import tenants

    settings = Settings(home=home, ports=Ports(tenant_etcd=free_port(), tenant_etcd_peer=free_port()))
    log = home / "etcd.log"
    proc = start(settings, etcd_binary, log)
    try:
        wait_ready(settings, proc, log)
        if bootstrap:
            with root_client(settings) as root:
                tenants.bootstrap(root)
        yield RunningEtcd(settings, load_pki(settings), client_url(settings), etcdctl, log, proc.pid)
    finally:
        stop(proc)
