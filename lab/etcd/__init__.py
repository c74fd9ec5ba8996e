"""The multi-tenant etcd that stores every workload cluster's data (Kamaji / Metal3 scale style).

How lab talks to etcd, chosen by measurement (benchmarks/etcd_tenants.py; numbers in its
docstring): gRPC through stubs generated here from etcd's own protos (lab.etcd.proto), one channel
per identity. One etcdctl process per call costs a Go process start and a TLS handshake each time,
and a tenant needs four auth calls, which etcdctl cannot batch (`etcdctl txn` only does KV). The
HTTP gateway cannot authenticate by certificate CN, and the PyPI etcd3 client is unmaintained and
breaks on protobuf >= 4.

Modules: server (certs, data dir, argv of the local etcd), client (gRPC calls, errors), tenants
(bootstrap, create, delete, list, access check, kube-apiserver flags), proto (stub generation).
"""

from __future__ import annotations

import importlib
import os
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lab import pki
from lab.config import Settings
from lab.errors import LabError
from lab.etcd.server import EtcdPKI, client_url, ensure_pki, etcd_command
from lab.runtime import logs, poll

# gRPC's C core logs a failed TLS handshake at INFO on stderr ("I1201 ... ssl_transport_security.cc
# Handshake failed ..."), a second line beside lab's one error line (seen when a backing's etcd still
# ran on another CA); lab names the failure itself. Set here, before any module of this package
# loads grpc; a user's own setting wins.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

if TYPE_CHECKING:
    from lab.etcd.client import EtcdClient, EtcdError
    from lab.etcd.tenants import (
        Tenant,
        apiserver_etcd_flags,
        bootstrap,
        check_access,
        create,
        delete,
        key_prefix,
        list_tenants,
    )

# What needs grpc is imported on first use, so `lab` commands that only need paths, argv or flags
# (render, stack argv) work before grpcio is installed.
_LAZY = {
    "EtcdClient": "lab.etcd.client",
    "EtcdError": "lab.etcd.client",
    "Tenant": "lab.etcd.tenants",
    "apiserver_etcd_flags": "lab.etcd.tenants",
    "bootstrap": "lab.etcd.tenants",
    "check_access": "lab.etcd.tenants",
    "create": "lab.etcd.tenants",
    "delete": "lab.etcd.tenants",
    "key_prefix": "lab.etcd.tenants",
    "list_tenants": "lab.etcd.tenants",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "EtcdClient",
    "EtcdError",
    "EtcdPKI",
    "Tenant",
    "apiserver_etcd_flags",
    "bootstrap",
    "check_access",
    "client_url",
    "connect",
    "create",
    "delete",
    "ensure_pki",
    "etcd_command",
    "key_prefix",
    "list_tenants",
    "root_client",
    "wait_ready",
]

#: Seconds a freshly started etcd gets to answer.
READY_TIMEOUT = 60.0


def connect(
    settings: Settings, ca_pem: bytes, identity: pki.KeyPair, endpoint: str | None = None
) -> EtcdClient:
    """A client with `identity`'s certificate (its CN is the etcd user)."""
    from lab.etcd import proto
    from lab.etcd.client import EtcdClient

    return EtcdClient(
        proto.load(settings), endpoint or client_url(settings), ca_pem, identity.cert_pem, identity.key_pem
    )


def root_client(settings: Settings, endpoint: str | None = None) -> EtcdClient:
    """The administrator of the local tenant etcd (CN=root)."""
    certs = ensure_pki(settings)
    return connect(settings, certs.ca.cert_pem, certs.root, endpoint)


def wait_ready(
    settings: Settings, proc: subprocess.Popen[bytes] | None, log: Path, timeout: float = READY_TIMEOUT
) -> None:
    """Until a root Status call succeeds; fails early, with the log's tail, if `proc` exits."""
    from lab.etcd.client import EtcdError

    last: list[Exception] = []

    def answers() -> bool:
        if proc is not None and proc.poll() is not None:
            raise LabError(f"etcd exited with {proc.returncode}; log {log}:\n{logs.tail(log)}")
        try:
            with root_client(settings) as root:
                root.status()
            return True
        except EtcdError as e:
            last[:] = [e]
            return False

    if not poll.until(answers, timeout, 0.2):
        why = last[0] if last else None
        raise LabError(f"etcd did not answer within {timeout:.0f}s ({why}); log {log}:\n{logs.tail(log)}")
