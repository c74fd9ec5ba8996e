"""Tenants of the shared etcd: one user, one role and one key prefix per workload cluster.

Tenant T is the etcd user T (no password: etcd reads the CN of T's client certificate), the role T
with READWRITE on [/T/, /T0) and nothing else; T's kube-apiserver runs with --etcd-prefix=/T. The
prefix always ends with "/", so deleting test-1 never touches /test-10/ or /test-100/ (the Metal3
seed scripts' `del /test-1 --prefix` did). Every operation is idempotent and safe to re-run after a
crash at any step: create goes user, role, permission, grant; delete goes role, user, keys (Kamaji's
order: access is revoked before the data goes).

What tenant churn costs etcd (server v3.6, auth/range_perm_cache.go and auth/store.go): every auth
change (user add/delete, grants, role delete; not role add) rebuilds the permission cache of *all*
users in etcd's single apply loop, so a create (3 such changes) or delete (2) costs O(tenants), and
while it runs every tenant's request waits. And etcd refuses a KV request when an auth change lands
between its arrival and its apply ("revision of auth store is old"); Go clients (kube-apiserver)
resend it, lab's client too. Numbers: benchmarks/etcd_tenants.py.

What a tenant's kube-apiserver (v1.35) cannot do: Maintenance/Status is admin-only in etcd 3.6
(v3rpc/maintenance.go), so its RequestWatchProgress support check (storage/feature) and its db-size
metric are refused and logged; with RequestWatchProgress unknown, consistent LISTs are served by
etcd instead of the watch cache. Kamaji-style multi-tenancy has the same limit. Everything else it
does stays under /T/: with --etcd-compaction-interval=0 it starts no compactor, so it never touches
the un-prefixed compact_rev_key (storage/storagebackend/factory/etcd3.go).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

import grpc
from cryptography import x509

from lab import naming, pki
from lab.config import Settings
from lab.errors import LabError
from lab.etcd.client import PERMISSION_DENIED, EtcdClient, EtcdError, prefix_end
from lab.etcd.server import common_name
from lab.tenant_etcd import ROOT_USER, check_name
from lab.tenant_etcd import apiserver_etcd_flags as apiserver_etcd_flags  # lab.etcd's API, pure

T = TypeVar("T")


def key_prefix(name: str) -> bytes:
    """/<name>/: the slash on both sides keeps /test-1/ apart from /test-10/."""
    return f"/{check_name(name)}/".encode()


def bootstrap(root: EtcdClient) -> bool:
    """Create the root user and role and enable auth, using the CN=root certificate. Idempotent.

    Before auth is on, any certificate the CA signed is all-powerful; after it, only root is. Returns
    True if this call enabled auth.
    """
    if root.auth_enabled():
        return False
    root.user_add(ROOT_USER)
    root.role_add(ROOT_USER)
    root.user_grant_role(ROOT_USER, ROOT_USER)
    root.auth_enable()
    return True


def create(root: EtcdClient, name: str) -> None:
    """User, role, READWRITE on /<name>/, grant. Each step is re-runnable."""
    # Two rounds of concurrent calls: the grants need both the user and the role to exist.
    root.together([root.user_add_call(name), root.role_add_call(name)])
    grants = [root.role_grant_call(name, kind, key, end) for kind, key, end in tenant_permissions(name)]
    root.together([*grants, root.user_grant_role_call(name, name)])


def delete(root: EtcdClient, name: str) -> int:
    """Role, then user, then every key under /<name>/; returns the number of keys deleted."""
    revoke(root, name)
    return delete_keys(root, name)


def revoke(root: EtcdClient, name: str) -> None:
    """Delete the tenant's role and user: its certificate opens nothing from now on."""
    check_name(name)
    root.together([root.role_delete_call(name), root.user_delete_call(name)])


def delete_keys(root: EtcdClient, name: str) -> int:
    prefix = key_prefix(name)
    return root.delete_range(prefix, prefix_end(prefix))


def create_many(root: EtcdClient, names: list[str], parallel: int = 8) -> None:
    """create() for many tenants, `parallel` at a time on one channel (etcd batches the commits)."""
    _each(lambda n: create(root, n), names, parallel)


def delete_many(root: EtcdClient, names: list[str], parallel: int = 8) -> int:
    """delete() for many tenants, `parallel` at a time; returns the keys deleted.

    Every access is revoked first, then the keys go: etcd refuses a KV request when any auth change
    lands between its arrival and its apply ("revision of auth store is old"), so key deletes mixed
    with a stream of auth changes would mostly be refused and resent.
    """
    _each(lambda n: revoke(root, n), names, parallel)
    return sum(_each(lambda n: delete_keys(root, n), names, parallel))


def remove(root: EtcdClient, names: list[str], parallel: int = 8) -> int:
    """Every trace of each named tenant, whatever a half-done create or delete left: the user and
    role of every name that still has either are revoked first (as delete_many does), then the keys
    under every name's prefix go, with or without a tenant record (keys may outlive a half-done
    delete). Returns the number of keys deleted."""
    for n in names:
        check_name(n)  # every name, before anything changes
    recorded = set(root.users()) | set(root.roles())
    _each(lambda n: revoke(root, n), [n for n in names if n in recorded], parallel)
    return sum(_each(lambda n: delete_keys(root, n), names, parallel))


def _each(fn: Callable[[str], T], names: list[str], parallel: int) -> list[T]:
    for n in names:
        check_name(n)  # every name, before anything changes
    with ThreadPoolExecutor(max_workers=max(1, parallel), thread_name_prefix="etcd-tenant") as pool:
        return list(pool.map(fn, names))


@dataclass(frozen=True)
class Tenant:
    name: str
    prefix: str
    keys: int
    bytes: int  # sum of key and value lengths at the current revision
    #: user has its role and the role exactly READWRITE on the prefix; False after a crash mid-create
    complete: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _complete(root: EtcdClient, name: str, roles: list[str] | None) -> bool:
    if roles != [name]:
        return False
    perms = root.role_permissions(name) or []
    return sorted((p.kind, p.key, p.range_end) for p in perms) == sorted(tenant_permissions(name))


def tenant_permissions(name: str) -> list[tuple[str, bytes, bytes]]:
    """What a tenant's role holds: (kind, key, range_end)."""
    prefix = key_prefix(name)
    return [("READWRITE", prefix, prefix_end(prefix))]


def usage(root: EtcdClient, name: str) -> tuple[int, int]:
    """(keys, bytes) under /<name>/."""
    prefix = key_prefix(name)
    keys = size = 0
    for k, v in root.scan(prefix, prefix_end(prefix)):
        keys += 1
        size += len(k) + len(v)
    return keys, size


def list_tenants(root: EtcdClient) -> list[Tenant]:
    """Every etcd user except root that is a valid tenant name, with usage, test-2 before test-10."""
    out = []
    for name in sorted(root.users(), key=_natural):
        if name == ROOT_USER or not naming.DNS_LABEL.match(name):
            continue
        keys, size = usage(root, name)
        complete = _complete(root, name, root.user_roles(name))
        out.append(Tenant(name, key_prefix(name).decode(), keys, size, complete))
    return out


def _natural(name: str) -> list[tuple[int, int | str]]:
    return [(0, int(p)) if p.isdigit() else (1, p) for p in re.split(r"(\d+)", name)]


def exists(root: EtcdClient, name: str) -> bool:
    """User or role still there (a half-deleted tenant counts)."""
    return root.user_roles(name) is not None or root.role_permissions(name) is not None


# --- a tenant's own view --------------------------------------------------------------------


def diagnose(cert_pem: bytes, etcd_ca_pem: bytes, name: str, now: dt.datetime | None = None) -> str | None:
    """Why etcd would refuse this certificate for tenant `name`, judged locally; None if it looks fine."""
    now = now or dt.datetime.now(dt.UTC)
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError:
        return "the certificate is not valid PEM"
    if cert.not_valid_after_utc <= now:
        return f"certificate has expired (not after {cert.not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ})"
    if cert.not_valid_before_utc > now:
        return f"certificate is not valid yet (not before {cert.not_valid_before_utc:%Y-%m-%dT%H:%M:%SZ})"
    if not pki.signed_by(pki.KeyPair(cert_pem, b""), etcd_ca_pem):
        return f"certificate is not signed by the etcd CA (issuer {cert.issuer.rfc4514_string()})"
    cn = common_name(cert)
    if cn != name:
        return f"certificate CN is {cn!r}, not the tenant's user {name!r}"
    return None


def check_access(client: EtcdClient, name: str, cert_pem: bytes, etcd_ca_pem: bytes) -> None:
    """Read the tenant's own prefix with the tenant's certificate, as its kube-apiserver will.

    Raises one LabError naming the tenant and the cause when etcd refuses: at the TLS handshake
    (expired, foreign CA) or by RBAC (a certificate of another tenant, a missing grant).
    """
    prefix = key_prefix(name)
    try:
        client.count(prefix, prefix_end(prefix))
    except EtcdError as e:
        local = diagnose(cert_pem, etcd_ca_pem, name)
        if e.detail == PERMISSION_DENIED:
            cause = f"permission denied on {prefix.decode()}" + (f" ({local})" if local else "")
            raise LabError(f"etcd refused tenant {name}: {cause}") from None
        if e.code == grpc.StatusCode.UNAVAILABLE and local:
            raise LabError(f"etcd refused tenant {name}'s certificate: {local}") from None
        if e.code == grpc.StatusCode.UNAVAILABLE and "handshake" in e.detail.lower():
            raise LabError(f"etcd refused tenant {name}'s certificate: TLS handshake failed") from None
        raise LabError(f"tenant {name}: {e}") from None  # not about the certificate: etcd down, ...


# --- the kube-apiserver side ----------------------------------------------------------------


# --- health, as each tenant's kube-apiserver sees it -------------------------------------------

#: Seconds one tenant's read may take before it counts as not healthy. kube-apiserver's own etcd
#: health check gives etcd 2 s (--etcd-healthcheck-timeout); a loaded 2-core host needs more.
HEALTH_TIMEOUT = 5.0


def health(
    settings: Settings, endpoint: str, ca_pem: bytes, names: list[str], parallel: int = 8
) -> dict[str, str | None]:
    """Each tenant read as its kube-apiserver reads it: the cluster's own etcd client pair (the lab
    home's copy, the one its apiserver was given) counting the keys of its prefix on `endpoint`.
    None when that works, else why not (one line). A cluster whose pair the lab home does not hold
    is left out: there is nothing to judge it by."""
    from lab import pki_store
    from lab.etcd import proto

    api = proto.load(settings)

    def one(name: str) -> tuple[str, str | None] | None:
        identity = pki_store.etcd_client(settings, name)
        if identity is None:
            return None
        try:
            with EtcdClient(
                api, endpoint, ca_pem, identity.cert_pem, identity.key_pem, timeout=HEALTH_TIMEOUT
            ) as client:
                check_access(client, name, identity.cert_pem, ca_pem)
        except LabError as e:
            return name, str(e)
        return name, None

    return dict(r for r in _each(one, names, parallel) if r is not None)
