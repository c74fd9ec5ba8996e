"""A real etcd + kube-apiserver pair for integration tests: TLS everywhere, client-cert auth, free
loopback ports, every file in a tmp dir.

Binaries come from the shared build cache under the default lab home (`lab.build.ensure`, built once
and reused); certificates come from lab.pki. tests/integration/conftest.py starts one per session as
the `apiserver` fixture.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import urllib3

from lab import pki
from lab.kube import Config
from support.ports import free_port

__all__ = ["RunningApiserver", "free_port", "running_apiserver"]

READY_TIMEOUT = 180.0  # a cold kube-apiserver on a busy 2-core host takes a while


@dataclass(frozen=True)
class RunningApiserver:
    url: str
    kubeconfig: bytes  # admin (system:masters)
    kubeconfig_path: Path
    ca: pki.KeyPair
    workdir: Path

    def user_kubeconfig(self, user: str, groups: list[str]) -> bytes:
        client = pki.issue_client_cert(self.ca, user, groups)
        return pki.render_kubeconfig("test", self.url, self.ca.cert_pem, client, user)


def _write(path: Path, data: bytes, mode: int = 0o600) -> Path:
    path.write_bytes(data)
    path.chmod(mode)
    return path


def _pair(d: Path, stem: str, kp: pki.KeyPair) -> tuple[Path, Path]:
    return _write(d / f"{stem}.crt", kp.cert_pem, 0o644), _write(d / f"{stem}.key", kp.key_pem)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_ready(url: str, cfg: Config, procs: list[tuple[str, subprocess.Popen[bytes], Path]]) -> None:
    pool = urllib3.PoolManager(ssl_context=cfg.ssl_context(), retries=False)
    deadline = time.monotonic() + READY_TIMEOUT
    last = ""
    while time.monotonic() < deadline:
        for name, proc, log in procs:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"{name} exited {proc.returncode}:\n{log.read_text(errors='replace')[-3000:]}"
                )
        try:
            resp = pool.request("GET", f"{url}/readyz", timeout=5)
            if resp.status == 200:
                return
            last = resp.data.decode(errors="replace")[-500:]
        except urllib3.exceptions.HTTPError as e:
            last = str(e)
        time.sleep(0.5)
    raise RuntimeError(f"kube-apiserver not ready within {READY_TIMEOUT:.0f}s: {last}")


@contextmanager
def running_apiserver(workdir: Path, etcd_bin: Path, apiserver_bin: Path) -> Iterator[RunningApiserver]:
    workdir.mkdir(parents=True, exist_ok=True)
    etcd_ca = pki.new_ca("etcd-ca")
    ca = pki.new_ca("kubernetes")
    etcd_port, peer_port, api_port = free_port(), free_port(), free_port()
    etcd_crt, etcd_key = _pair(
        workdir, "etcd-server", pki.issue_server_cert(etcd_ca, "etcd", ["localhost"], ["127.0.0.1"], True)
    )
    etcd_ca_crt, _ = _pair(workdir, "etcd-ca", etcd_ca)
    cli_crt, cli_key = _pair(workdir, "etcd-client", pki.issue_client_cert(etcd_ca, "kube-apiserver"))
    api_crt, api_key = _pair(
        workdir, "apiserver", pki.issue_server_cert(ca, "kube-apiserver", *pki.apiserver_sans("127.0.0.1"))
    )
    ca_crt, _ = _pair(workdir, "ca", ca)
    sa = pki.new_sa_keypair()
    sa_pub, sa_key = _write(workdir / "sa.pub", sa.cert_pem, 0o644), _write(workdir / "sa.key", sa.key_pem)

    etcd_url = f"https://127.0.0.1:{etcd_port}"
    peer_url = f"https://127.0.0.1:{peer_port}"
    etcd_argv = [
        str(etcd_bin),
        "--name=test",
        f"--data-dir={workdir / 'etcd-data'}",
        f"--listen-client-urls={etcd_url}",
        f"--advertise-client-urls={etcd_url}",
        f"--listen-peer-urls={peer_url}",
        f"--initial-advertise-peer-urls={peer_url}",
        f"--initial-cluster=test={peer_url}",
        f"--cert-file={etcd_crt}",
        f"--key-file={etcd_key}",
        f"--trusted-ca-file={etcd_ca_crt}",
        "--client-cert-auth=true",
        f"--peer-cert-file={etcd_crt}",
        f"--peer-key-file={etcd_key}",
        f"--peer-trusted-ca-file={etcd_ca_crt}",
        "--peer-client-cert-auth=true",
        "--listen-metrics-urls=http://127.0.0.1:0",
        "--log-level=warn",
    ]
    url = f"https://127.0.0.1:{api_port}"
    api_argv = [
        str(apiserver_bin),
        f"--etcd-servers={etcd_url}",
        f"--etcd-cafile={etcd_ca_crt}",
        f"--etcd-certfile={cli_crt}",
        f"--etcd-keyfile={cli_key}",
        "--bind-address=127.0.0.1",
        "--advertise-address=127.0.0.1",
        f"--secure-port={api_port}",
        f"--tls-cert-file={api_crt}",
        f"--tls-private-key-file={api_key}",
        f"--client-ca-file={ca_crt}",
        "--service-account-issuer=https://kubernetes.default.svc",
        f"--service-account-key-file={sa_pub}",
        f"--service-account-signing-key-file={sa_key}",
        f"--service-cluster-ip-range={pki.SERVICE_CIDR}",
        "--authorization-mode=RBAC",
        "--endpoint-reconciler-type=none",
        "--profiling=false",
    ]
    admin = pki.issue_client_cert(ca, pki.ADMIN_CN, [pki.ADMIN_ORG])
    kubeconfig = pki.render_kubeconfig("test", url, ca.cert_pem, admin)
    kubeconfig_path = _write(workdir / "admin.kubeconfig", kubeconfig)

    etcd_log, api_log = workdir / "etcd.log", workdir / "kube-apiserver.log"
    procs: list[tuple[str, subprocess.Popen[bytes], Path]] = []
    try:
        with etcd_log.open("wb") as fh:
            procs.append(("etcd", subprocess.Popen(etcd_argv, stdout=fh, stderr=subprocess.STDOUT), etcd_log))
        with api_log.open("wb") as fh:
            procs.append(
                ("kube-apiserver", subprocess.Popen(api_argv, stdout=fh, stderr=subprocess.STDOUT), api_log)
            )
        _wait_ready(url, Config.from_kubeconfig(kubeconfig), procs)
        yield RunningApiserver(url, kubeconfig, kubeconfig_path, ca, workdir)
    finally:
        for _name, proc, _log in reversed(procs):
            _stop(proc)
