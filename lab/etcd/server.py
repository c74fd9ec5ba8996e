"""The local multi-tenant etcd: its certificates, its data directory and its command line.

lab.stack supervises the process; this module only says how to run it. One member, listening on
loopback only, TLS on both the client and the peer port, client certificates required.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import NameOID

from lab import build, pki, pki_store
from lab.config import Settings
from lab.errors import LabError
from lab.tenant_etcd import (
    COMPACTION_MODE,
    COMPACTION_RETENTION,
    QUOTA_BACKEND_BYTES,
    ROOT_USER,
    SNAPSHOT_COUNT,
)

MEMBER_NAME = "lab-tenants"
ETCD_CA_CN = "etcd-ca"
LOOPBACK = "127.0.0.1"
#: Re-issue the server and root certs this long before they expire, so a running etcd never trips.
RENEW_BEFORE = dt.timedelta(days=7)


@dataclass(frozen=True)
class EtcdPKI:
    ca: pki.KeyPair
    server: pki.KeyPair  # serving + peer (clientAuth too)
    root: pki.KeyPair  # CN=root: the admin identity, no password


def etcd_ca_dir(settings: Settings) -> Path:
    return settings.pki_dir / "etcd-ca"


def etcd_pki_dir(settings: Settings) -> Path:
    return settings.pki_dir / "etcd"


def data_dir(settings: Settings) -> Path:
    return settings.home / "etcd" / "tenants"


def client_url(settings: Settings) -> str:
    """What every local workload kube-apiserver puts in --etcd-servers."""
    return f"https://{LOOPBACK}:{settings.ports.tenant_etcd}"


def peer_url(settings: Settings) -> str:
    return f"https://{LOOPBACK}:{settings.ports.tenant_etcd_peer}"


def server_sans(extra_dns: tuple[str, ...] = ()) -> tuple[list[str], list[str]]:
    return ["localhost", *extra_dns], [LOOPBACK]


def common_name(cert: x509.Certificate) -> str | None:
    attrs = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else None


def _usable(
    kp: pki.KeyPair | None, ca: pki.KeyPair, cn: str, sans: tuple[list[str], list[str]] | None
) -> bool:
    """Still good to use: our key, signed by this CA, unexpired, same CN and (for servers) SANs."""
    if kp is None:
        return False
    try:
        fresh = kp.not_after > dt.datetime.now(dt.UTC) + RENEW_BEFORE
        if not (kp.matches() and pki.signed_by(kp, ca.cert_pem) and fresh and common_name(kp.cert) == cn):
            return False
        if sans is None:
            return True
        san = kp.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        ips = {str(i) for i in san.get_values_for_type(x509.IPAddress)}
        return set(san.get_values_for_type(x509.DNSName)) == set(sans[0]) and ips == set(sans[1])
    except (ValueError, x509.ExtensionNotFound):
        return False


def ensure_pki(settings: Settings) -> EtcdPKI:
    """The shared etcd CA, the server cert and the root client cert; created or re-issued as needed."""
    ca = pki_store.load_or_create_ca(etcd_ca_dir(settings), ETCD_CA_CN)
    d = etcd_pki_dir(settings)
    sans = server_sans()
    server = pki_store.load_keypair(d, "server")
    if not _usable(server, ca, MEMBER_NAME, sans):
        server = pki.issue_server_cert(ca, MEMBER_NAME, sans[0], sans[1], client_auth=True)
        pki_store.write_keypair(d, "server", server)
    root = pki_store.load_keypair(d, "root")
    if not _usable(root, ca, ROOT_USER, None):
        root = pki.issue_client_cert(ca, ROOT_USER)
        pki_store.write_keypair(d, "root", root)
    assert server is not None and root is not None
    return EtcdPKI(ca=ca, server=server, root=root)


def load_pki(settings: Settings) -> EtcdPKI:
    """The existing certs, never creating any: for commands that only talk to a running etcd."""
    ca = pki_store.load_keypair(etcd_ca_dir(settings), "ca")
    d = etcd_pki_dir(settings)
    server, root = pki_store.load_keypair(d, "server"), pki_store.load_keypair(d, "root")
    if ca is None or server is None or root is None:
        raise LabError(
            f"the lab's etcd has no certificates under {settings.pki_dir}: start the lab first (lab up)"
        )
    return EtcdPKI(ca=ca, server=server, root=root)


def etcd_command(settings: Settings, binary: Path | None = None) -> list[str]:
    """argv of the local tenant etcd. Certificates must exist first (ensure_pki)."""
    certs, ca = etcd_pki_dir(settings), etcd_ca_dir(settings) / "ca.crt"
    exe = binary or build.binary_path(settings, "etcd")
    return [
        str(exe),
        f"--name={MEMBER_NAME}",
        f"--data-dir={data_dir(settings)}",
        f"--listen-client-urls={client_url(settings)}",
        f"--advertise-client-urls={client_url(settings)}",
        f"--listen-peer-urls={peer_url(settings)}",
        f"--initial-advertise-peer-urls={peer_url(settings)}",
        f"--initial-cluster={MEMBER_NAME}={peer_url(settings)}",
        "--initial-cluster-state=new",
        f"--initial-cluster-token={MEMBER_NAME}",
        f"--cert-file={certs / 'server.crt'}",
        f"--key-file={certs / 'server.key'}",
        f"--trusted-ca-file={ca}",
        "--client-cert-auth=true",
        f"--peer-cert-file={certs / 'server.crt'}",
        f"--peer-key-file={certs / 'server.key'}",
        f"--peer-trusted-ca-file={ca}",
        "--peer-client-cert-auth=true",
        f"--auto-compaction-mode={COMPACTION_MODE}",
        f"--auto-compaction-retention={COMPACTION_RETENTION}",
        f"--quota-backend-bytes={QUOTA_BACKEND_BYTES}",
        f"--snapshot-count={SNAPSHOT_COUNT}",
        "--log-level=warn",
    ]
