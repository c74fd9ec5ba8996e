"""Config: where and how to reach one apiserver, from a kubeconfig.

Two readers. The kubeconfigs lab writes itself (every certificate and key inline as `*-data`, no other
keys) are parsed here directly: that is every command's start-up path, and importing the official
client costs ~0.35 s of CPU. Any other kubeconfig (a user's, given to `lab backing add --kubeconfig`)
is resolved by the official client's loader, `kubernetes.config`, imported only then, so it is
accepted as kubectl accepts it: exec credential plugins, token files, certificates and CA by path
(relative to the kubeconfig's directory). What lab's client cannot carry is refused with one line.
"""

from __future__ import annotations

import base64
import logging
import os
import ssl
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from lab.errors import LabError

#: Keys the direct reader understands; a cluster or user entry with any other key goes to the loader.
_INLINE_CLUSTER = frozenset({"server", "certificate-authority-data", "insecure-skip-tls-verify"})
_INLINE_USER = frozenset({"client-certificate-data", "client-key-data", "token"})
#: Settings the loader understands but lab's client cannot honour: refused, never silently dropped.
_UNSUPPORTED_CLUSTER = {
    "proxy-url": "proxy-url (lab connects directly)",
    "tls-server-name": "tls-server-name",
}
_UNSUPPORTED_USER = {
    "auth-provider": "auth-provider (use an exec credential plugin, as kubectl 1.26+ does)",
    "username": "username/password (basic auth, gone from Kubernetes since 1.19)",
    "password": "username/password (basic auth, gone from Kubernetes since 1.19)",
    "as": "impersonation (as)",
    "as-groups": "impersonation (as-groups)",
    "as-uid": "impersonation (as-uid)",
    "as-user-extra": "impersonation (as-user-extra)",
}


@dataclass(frozen=True)
class Config:
    """Where and how to connect: what a kubeconfig context boils down to."""

    server: str
    ca_pem: bytes | None = None
    cert_pem: bytes | None = None
    key_pem: bytes | None = None
    token: str | None = None
    insecure: bool = False

    @classmethod
    def from_kubeconfig(cls, source: bytes | str | Path, context: str | None = None) -> Config:
        """From kubeconfig bytes/text or a path; the current context unless `context` is given."""
        base = Path(".")
        if isinstance(source, Path):
            path, base = source, source.parent
            try:
                source = path.read_bytes()
            except OSError as e:
                raise LabError(f"cannot read kubeconfig {path}: {e.strerror}") from None
        try:
            doc = yaml.safe_load(source) or {}
            ctx_name = context or doc["current-context"]
            ctx = _named(doc.get("contexts"), ctx_name, "context")
            cluster = _named(doc.get("clusters"), ctx["cluster"], "cluster")
            user = _named(doc.get("users"), ctx["user"], "user") if ctx.get("user") else {}
            server = cluster["server"].rstrip("/")
        except (yaml.YAMLError, KeyError, TypeError, AttributeError) as e:
            raise LabError(f"not a usable kubeconfig: {e}") from None
        if set(cluster) <= _INLINE_CLUSTER and set(user) <= _INLINE_USER:
            return cls(
                server=server,
                ca_pem=_b64(cluster.get("certificate-authority-data")),
                cert_pem=_b64(user.get("client-certificate-data")),
                key_pem=_b64(user.get("client-key-data")),
                token=user.get("token") or None,
                insecure=bool(cluster.get("insecure-skip-tls-verify")),
            )
        return _load_official(doc, ctx_name, cluster, user, base)

    def ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cadata=self.ca_pem.decode() if self.ca_pem else None)
        if self.insecure:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if self.cert_pem and self.key_pem:
            # The ssl module loads client keys from files only: a private 0600 file that lives for
            # the duration of one call.
            with tempfile.TemporaryDirectory(prefix="lab-kube-") as d:
                path = Path(d) / "client.pem"
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as f:
                    f.write(self.cert_pem + b"\n" + self.key_pem)
                ctx.load_cert_chain(path)
        return ctx


def _named(items: Any, name: str, what: str) -> dict[str, Any]:
    for item in items or []:
        if item.get("name") == name:
            return dict(item.get(what) or {})
    raise KeyError(f"no {what} named {name!r}")


def _b64(value: str | None) -> bytes | None:
    return base64.b64decode(value) if value else None


def unsupported(cluster: Mapping[str, Any], user: Mapping[str, Any]) -> list[str]:
    """Pure: what in a context's cluster and user entries lab's client cannot honour."""
    found = [why for key, why in _UNSUPPORTED_CLUSTER.items() if cluster.get(key)]
    found += [why for key, why in _UNSUPPORTED_USER.items() if user.get(key)]
    return list(dict.fromkeys(found))


@contextmanager
def _loader_errors() -> Iterator[list[str]]:
    """The loader logs a failed exec plugin and carries on without credentials: collect those lines."""
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    handler, root = Collect(level=logging.ERROR), logging.getLogger()
    root.addHandler(handler)
    try:
        yield lines
    finally:
        root.removeHandler(handler)


def _load_official(
    doc: dict[str, Any], context: str, cluster: Mapping[str, Any], user: Mapping[str, Any], base: Path
) -> Config:
    """Resolve a context with kubernetes.config, as kubectl would, into a Config; or one LabError."""
    refused = unsupported(cluster, user)
    if refused:
        raise LabError(f"kubeconfig context {context!r} uses what lab does not support: {'; '.join(refused)}")
    # Imported here only: ~0.35 s of CPU that lab's own kubeconfigs never pay.
    from kubernetes.client import Configuration
    from kubernetes.config.config_exception import ConfigException
    from kubernetes.config.kube_config import KubeConfigLoader

    resolved = Configuration()
    with _loader_errors() as errors:
        try:
            KubeConfigLoader(
                config_dict=doc, active_context=context, config_base_path=str(base.absolute())
            ).load_and_set(resolved)
        except (ConfigException, OSError, ValueError) as e:
            raise LabError(f"kubeconfig context {context!r}: {e}") from None
    # stripped as client-go strips a token file (a trailing newline is not part of the token)
    token = (resolved.api_key or {}).get("BearerToken", "").removeprefix("Bearer ").strip() or None
    cert_pem, key_pem = _read(resolved.cert_file), _read(resolved.key_file)
    if user and not token and not (cert_pem and key_pem):
        why = f": {errors[-1]}" if errors else ""
        raise LabError(f"kubeconfig context {context!r}: its user gave no token or client certificate{why}")
    return Config(
        server=resolved.host.rstrip("/"),
        ca_pem=_read(resolved.ssl_ca_cert),
        cert_pem=cert_pem,
        key_pem=key_pem,
        token=token,
        insecure=not resolved.verify_ssl,
    )


def _read(path: str | None) -> bytes | None:
    if not path:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise LabError(f"cannot read {path} named by the kubeconfig: {e.strerror}") from None
