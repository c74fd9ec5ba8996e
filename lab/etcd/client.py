"""A small etcd v3 client over gRPC with mutual TLS: the calls lab needs, and errors lab can name.

etcd takes the CN of the client certificate as the user when it runs with --client-cert-auth and
auth is enabled, so one channel == one identity (root, or a tenant). No passwords, no tokens.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import grpc

from lab.errors import LabError
from lab.etcd.proto import Api

#: Per-call deadline; a healthy local etcd answers in milliseconds.
TIMEOUT = 10.0
#: Keys fetched per Range page when adding up a prefix's bytes.
PAGE = 1000


class EtcdError(LabError):
    """An etcd call failed; `code` is the gRPC status, `detail` etcd's own message."""

    def __init__(self, message: str, code: grpc.StatusCode | None = None, detail: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.detail = detail


# etcd's error strings (api/v3rpc/rpctypes) that idempotent operations treat as "already done".
USER_EXISTS = "etcdserver: user name already exists"
ROLE_EXISTS = "etcdserver: role name already exists"
USER_NOT_FOUND = "etcdserver: user name not found"
ROLE_NOT_FOUND = "etcdserver: role name not found"
PERMISSION_DENIED = "etcdserver: permission denied"
AUTH_OLD_REVISION = "etcdserver: revision of auth store is old"
#: Resends of a call that raced an auth change, with jittered exponential back-off (at most ~1 s).
AUTH_RETRIES = 25
#: Marks a call whose `ignore` error etcd returned.
IGNORED = object()


def prefix_end(prefix: bytes) -> bytes:
    """The smallest key greater than every key that starts with `prefix` (etcd's GetPrefixRangeEnd)."""
    b = bytearray(prefix)
    for i in range(len(b) - 1, -1, -1):
        if b[i] < 0xFF:
            b[i] += 1
            return bytes(b[: i + 1])
    return b"\x00"  # all 0xff: to the end of the keyspace


@dataclass(frozen=True)
class Permission:
    kind: str  # READ, WRITE or READWRITE
    key: bytes
    range_end: bytes


def _short(detail: str) -> str:
    """gRPC's connection errors are long chains; keep the part a person acts on."""
    low = detail.lower()
    for needle, say in (("connection refused", "connection refused"), ("handshake", "TLS handshake failed")):
        if needle in low:
            return say
    return detail.splitlines()[0] if detail else "unavailable"


@dataclass(frozen=True)
class Call:
    """One unary call for EtcdClient.together; `ignore` is an etcd error meaning "already so"."""

    method: Any
    request: Any
    what: str
    ignore: str = ""


def grpc_target(endpoint: str) -> str:
    u = urlsplit(endpoint)
    if u.scheme != "https" or not u.hostname or not u.port:
        raise LabError(f"etcd endpoint must look like https://HOST:PORT, got {endpoint!r}", exit_code=2)
    return f"{u.hostname}:{u.port}"


class EtcdClient:
    """One TLS identity against one etcd endpoint. Use as a context manager."""

    def __init__(
        self,
        api: Api,
        endpoint: str,
        ca_pem: bytes,
        cert_pem: bytes,
        key_pem: bytes,
        *,
        timeout: float = TIMEOUT,
    ) -> None:
        self.api = api
        self.endpoint = endpoint
        self.timeout = timeout
        creds = grpc.ssl_channel_credentials(
            root_certificates=ca_pem, private_key=key_pem, certificate_chain=cert_pem
        )
        self._channel = grpc.secure_channel(grpc_target(endpoint), creds)
        self.kv = api.rpc_grpc.KVStub(self._channel)
        self.auth = api.rpc_grpc.AuthStub(self._channel)
        self.maintenance = api.rpc_grpc.MaintenanceStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> EtcdClient:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def call(self, method: Any, request: Any, what: str) -> Any:
        return self.together_results([Call(method, request, what)])[0]

    def error(self, e: grpc.RpcError, what: str) -> EtcdError:
        code: grpc.StatusCode = e.code()
        detail: str = e.details() or ""
        if code == grpc.StatusCode.UNAVAILABLE:
            return EtcdError(f"cannot reach etcd at {self.endpoint} ({what}): {_short(detail)}", code, detail)
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return EtcdError(
                f"etcd at {self.endpoint} did not answer within {self.timeout:.0f}s ({what})", code, detail
            )
        return EtcdError(f"etcd {what}: {detail.removeprefix('etcdserver: ')}", code, detail)

    def together(self, calls: list[Call]) -> list[bool]:
        """Send independent calls at once and wait for all: etcd commits them in one raft batch
        (one fsync) instead of one after the other. Each result is False if etcd answered the
        call's `ignore` error, True otherwise; the first other error is raised after all finished."""
        return [r is not IGNORED for r in self.together_results(calls)]

    def together_results(self, calls: list[Call]) -> list[Any]:
        """The responses of `calls` sent at once (IGNORED where etcd gave the call's `ignore` error).

        A call refused because the auth store changed between its arrival and its apply ("revision
        of auth store is old") had no effect and is sent again, as etcd's Go client does; that
        happens whenever another tenant is created or deleted at the same moment.
        """
        results: list[Any] = [None] * len(calls)
        pending = list(range(len(calls)))
        failure: EtcdError | None = None
        for attempt in range(AUTH_RETRIES + 1):
            futures = {i: calls[i].method.future(calls[i].request, timeout=self.timeout) for i in pending}
            pending = []
            for i, f in futures.items():
                try:
                    results[i] = f.result()
                except grpc.RpcError as e:
                    err = self.error(e, calls[i].what)
                    if err.detail == AUTH_OLD_REVISION and attempt < AUTH_RETRIES:
                        pending.append(i)
                    elif calls[i].ignore and err.detail == calls[i].ignore:
                        results[i] = IGNORED
                    else:
                        failure = failure or err
            if not pending:
                break
            time.sleep(random.uniform(0, min(0.05, 0.001 * 2**attempt)))
        if failure:
            raise failure
        return results

    # --- status -------------------------------------------------------------------------------

    def status(self) -> Any:
        return self.call(self.maintenance.Status, self.api.rpc.StatusRequest(), "status")

    def auth_enabled(self) -> bool:
        return bool(self.call(self.auth.AuthStatus, self.api.rpc.AuthStatusRequest(), "auth status").enabled)

    # --- KV -----------------------------------------------------------------------------------

    def put(self, key: bytes, value: bytes) -> None:
        self.call(self.kv.Put, self.api.rpc.PutRequest(key=key, value=value), f"put {key!r}")

    def get(self, key: bytes) -> bytes | None:
        r = self.call(self.kv.Range, self.api.rpc.RangeRequest(key=key), f"get {key!r}")
        return bytes(r.kvs[0].value) if r.kvs else None

    def count(self, key: bytes, range_end: bytes) -> int:
        req = self.api.rpc.RangeRequest(key=key, range_end=range_end, count_only=True)
        return int(self.call(self.kv.Range, req, f"count {key!r}").count)

    def scan(self, key: bytes, range_end: bytes) -> Iterator[tuple[bytes, bytes]]:
        """Every (key, value) in [key, range_end), in pages, at one revision."""
        start, revision = key, 0
        while True:
            req = self.api.rpc.RangeRequest(key=start, range_end=range_end, limit=PAGE, revision=revision)
            r = self.call(self.kv.Range, req, f"range {key!r}")
            revision = revision or r.header.revision
            for kv in r.kvs:
                yield bytes(kv.key), bytes(kv.value)
            if not r.more or not r.kvs:
                return
            start = bytes(r.kvs[-1].key) + b"\x00"

    def delete_range(self, key: bytes, range_end: bytes) -> int:
        req = self.api.rpc.DeleteRangeRequest(key=key, range_end=range_end)
        return int(self.call(self.kv.DeleteRange, req, f"delete {key!r}..").deleted)

    # --- auth ---------------------------------------------------------------------------------

    def user_add_call(self, name: str) -> Call:
        # No password: the CN of the client certificate is the identity, and a password would cost a
        # bcrypt hash on the server for nothing.
        req = self.api.rpc.AuthUserAddRequest(
            name=name, options=self.api.auth.UserAddOptions(no_password=True)
        )
        return Call(self.auth.UserAdd, req, f"add user {name}", USER_EXISTS)

    def role_add_call(self, name: str) -> Call:
        return Call(
            self.auth.RoleAdd, self.api.rpc.AuthRoleAddRequest(name=name), f"add role {name}", ROLE_EXISTS
        )

    def role_grant_call(self, role: str, kind: str, key: bytes, range_end: bytes = b"") -> Call:
        """READ, WRITE or READWRITE on [key, range_end), or on the single key if range_end is empty.
        Granting what the role already has is not an error."""
        kinds = self.api.auth.Permission.Type
        perm = self.api.auth.Permission(permType=kinds.Value(kind), key=key, range_end=range_end)
        req = self.api.rpc.AuthRoleGrantPermissionRequest(name=role, perm=perm)
        return Call(
            self.auth.RoleGrantPermission, req, f"grant {role} {kind} on {key.decode(errors='replace')}"
        )

    def user_grant_role_call(self, user: str, role: str) -> Call:
        # etcd ignores granting a role the user already has.
        req = self.api.rpc.AuthUserGrantRoleRequest(user=user, role=role)
        return Call(self.auth.UserGrantRole, req, f"grant role {role} to user {user}")

    def role_delete_call(self, name: str) -> Call:
        req = self.api.rpc.AuthRoleDeleteRequest(role=name)
        return Call(self.auth.RoleDelete, req, f"delete role {name}", ROLE_NOT_FOUND)

    def user_delete_call(self, name: str) -> Call:
        req = self.api.rpc.AuthUserDeleteRequest(name=name)
        return Call(self.auth.UserDelete, req, f"delete user {name}", USER_NOT_FOUND)

    def user_add(self, name: str) -> bool:
        return self.together([self.user_add_call(name)])[0]

    def role_add(self, name: str) -> bool:
        return self.together([self.role_add_call(name)])[0]

    def user_grant_role(self, user: str, role: str) -> None:
        self.together([self.user_grant_role_call(user, role)])

    def auth_enable(self) -> None:
        # etcd ignores a second enable; it refuses the first unless root exists with the root role.
        self.call(self.auth.AuthEnable, self.api.rpc.AuthEnableRequest(), "enable auth")

    def users(self) -> list[str]:
        return list(self.call(self.auth.UserList, self.api.rpc.AuthUserListRequest(), "list users").users)

    def roles(self) -> list[str]:
        return list(self.call(self.auth.RoleList, self.api.rpc.AuthRoleListRequest(), "list roles").roles)

    def user_roles(self, name: str) -> list[str] | None:
        """The user's roles; None when there is no such user."""
        try:
            r = self.call(self.auth.UserGet, self.api.rpc.AuthUserGetRequest(name=name), f"get user {name}")
        except EtcdError as e:
            if e.detail == USER_NOT_FOUND:
                return None
            raise
        return list(r.roles)

    def role_permissions(self, name: str) -> list[Permission] | None:
        """The role's permissions; None when there is no such role."""
        try:
            r = self.call(self.auth.RoleGet, self.api.rpc.AuthRoleGetRequest(role=name), f"get role {name}")
        except EtcdError as e:
            if e.detail == ROLE_NOT_FOUND:
                return None
            raise
        kinds = self.api.auth.Permission.Type
        return [Permission(kinds.Name(p.permType), bytes(p.key), bytes(p.range_end)) for p in r.perm]
