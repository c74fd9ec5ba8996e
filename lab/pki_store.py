"""lab.pki's files: key pairs, CAs and each cluster's PKI kept under the lab home, so re-runs reuse
them. Keys 0600 from the first byte in 0700 directories (lab.runtime.files); a CA set is created
whole by a rename and guarded by a directory flock, so concurrent commands and crashes never leave
half of one. The certificates themselves are lab.pki's, which does no I/O.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import NameOID

from lab import pki
from lab.config import Settings
from lab.errors import LabError
from lab.runtime.files import write_private

_FILES = {
    "ca": "ca",
    "proxy": "front-proxy-ca",
    "etcd_client": "apiserver-etcd-client",
    "apiserver": "apiserver",
}
_SA_PUB, _SA_KEY, _ETCD_CA, _KUBECONFIG = "sa.pub", "sa.key", "etcd-ca.crt", "admin.kubeconfig"


def _mkdir_private(path: Path) -> None:
    """mkdir -p with every directory it creates (and `path` itself) at 0700, whatever the umask."""
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        with contextlib.suppress(FileExistsError):
            d.mkdir(mode=0o700)
        os.chmod(d, 0o700)
    os.chmod(path, 0o700)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_keypair(directory: Path, stem: str, kp: pki.KeyPair, durable: bool = False) -> None:
    """<stem>.key (0600) then <stem>.crt (0644) in a 0700 directory. Key first: a crash in between
    leaves a key without a cert, which readers treat as absent, never a cert whose key is missing."""
    _mkdir_private(directory)
    write_private(directory / f"{stem}.key", kp.key_pem, 0o600, durable)
    write_private(directory / f"{stem}.crt", kp.cert_pem, 0o644, durable)


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def load_keypair(directory: Path, stem: str) -> pki.KeyPair | None:
    """The pair written by write_keypair, or None unless both files are there."""
    cert, key = _read(directory / f"{stem}.crt"), _read(directory / f"{stem}.key")
    return pki.KeyPair(cert, key) if cert is not None and key is not None else None


def etcd_client(settings: Settings, name: str) -> pki.KeyPair | None:
    """The cluster's etcd client pair as its kube-apiserver got it (None when the home has none)."""
    return load_keypair(pki.cluster_pki_dir(settings, name), _FILES["etcd_client"])


@contextlib.contextmanager
def _dir_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive flock on directory `path` (created 0700 if missing).

    Locks between processes and between threads (each open() is its own lock owner). If someone
    removed and re-created the directory while we waited, lock the new one instead.
    """
    while True:
        _mkdir_private(path)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                now = os.stat(path)
            except FileNotFoundError:
                continue
            held = os.fstat(fd)
            if (now.st_dev, now.st_ino) != (held.st_dev, held.st_ino):
                continue
            yield
            return
        finally:
            os.close(fd)


def load_or_create_ca(
    directory: Path, common_name: str, *, algorithm: pki.KeyAlgorithm = pki.DEFAULT_ALGORITHM
) -> pki.KeyPair:
    """ca.crt/ca.key in `directory`: loaded when there, created once otherwise (e.g. the shared etcd CA)."""
    with _dir_lock(directory):
        cert, key = _read(directory / "ca.crt"), _read(directory / "ca.key")
        if cert is not None:
            if key is None:
                raise LabError(f"{directory}/ca.crt has no ca.key next to it; restore the key or remove both")
            kp = pki.KeyPair(cert, key)
            try:
                ok = kp.matches()
            except ValueError:  # not PEM, or not a key/cert at all
                ok = False
            if not ok:
                raise LabError(
                    f"{directory}/ca.key does not belong to ca.crt; restore the pair or remove both"
                )
            return kp
        kp = pki.new_ca(common_name, algorithm=algorithm)
        write_keypair(directory, "ca", kp, durable=True)
        _fsync_dir(directory)
        return kp


#: a stored leaf is re-issued this long before it expires
RENEW_BEFORE = dt.timedelta(days=7)


def _orgs(cert: x509.Certificate) -> list[str]:
    return sorted(str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME))


def _fresh(kp: pki.KeyPair | None, ca: pki.KeyPair, cn: str, orgs: list[str]) -> bool:
    if kp is None:
        return False
    try:
        return (
            kp.matches()
            and pki.signed_by(kp, ca.cert_pem)
            and kp.not_after > dt.datetime.now(dt.UTC) + RENEW_BEFORE
            and _cn(kp) == cn
            and _orgs(kp.cert) == sorted(orgs)
        )
    except ValueError:
        return False


def ensure_server(
    directory: Path,
    stem: str,
    ca: pki.KeyPair,
    cn: str,
    dns: list[str],
    ips: list[str],
    *,
    client_auth: bool = False,
    organizations: list[str] | None = None,
) -> pki.KeyPair:
    """A serving pair in directory/<stem>.{crt,key} (key 0600), re-issued only when it no longer fits
    (another CA, subject or names, damaged, or within RENEW_BEFORE of expiry): the one way lab keeps a
    serving certificate, for the local managers' webhooks and for kind mode's cert-manager stand-in."""
    orgs = list(organizations or [])
    kp = load_keypair(directory, stem)
    ok = _fresh(kp, ca, cn, orgs)
    if ok and kp is not None:
        try:
            san = kp.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            ok = False
        else:
            have = (
                set(san.get_values_for_type(x509.DNSName)),
                {str(i) for i in san.get_values_for_type(x509.IPAddress)},
            )
            ok = have == (set(dns), set(ips))
    if not ok or kp is None:
        kp = pki.issue_server_cert(ca, cn, dns, ips, client_auth=client_auth, organizations=orgs)
        write_keypair(directory, stem, kp)
    return kp


def ensure_client(directory: Path, stem: str, ca: pki.KeyPair, cn: str, orgs: list[str]) -> pki.KeyPair:
    """A client pair in directory/<stem>.{crt,key}, re-issued only when it no longer fits."""
    kp = load_keypair(directory, stem)
    if not _fresh(kp, ca, cn, orgs) or kp is None:
        kp = pki.issue_client_cert(ca, cn, orgs)
        write_keypair(directory, stem, kp)
    return kp


def _write_cluster(directory: Path, cp: pki.ClusterPKI) -> None:
    # Only the CAs and the SA key are fsync'd: the management cluster holds copies of them, so they
    # must survive a power cut; every leaf is re-issued on the next call if it did not.
    for field, stem in _FILES.items():
        write_keypair(directory, stem, getattr(cp, field), durable=field in ("ca", "proxy"))
    write_private(directory / _SA_KEY, cp.sa.key_pem, 0o600, durable=True)
    write_private(directory / _SA_PUB, cp.sa.cert_pem, 0o644, durable=True)
    write_private(directory / _ETCD_CA, cp.etcd_ca_cert_pem, 0o644)
    write_private(directory / _KUBECONFIG, cp.admin_kubeconfig, 0o600)


def cluster_pki(
    settings: Settings,
    name: str,
    host: str,
    port: int,
    etcd_ca: pki.KeyPair,
    *,
    algorithm: pki.KeyAlgorithm = pki.DEFAULT_ALGORITHM,
) -> pki.ClusterPKI:
    """The cluster's PKI, created on first use under <clusters_dir>/<name>/pki and loaded after that.

    A second call returns the same bytes. The first call writes everything into a temp directory and
    renames it into place, so a crash leaves either nothing or the complete set. Leaf certs are
    re-issued in place when the endpoint or etcd CA changed, or when they are damaged or expired.
    """
    directory = pki.cluster_pki_dir(settings, name)
    if not etcd_ca.key_pem:
        raise ValueError("etcd_ca needs its private key to sign the apiserver-etcd-client cert")
    with _dir_lock(directory.parent):
        for stale in directory.parent.glob(".pki.*.tmp"):
            shutil.rmtree(stale, ignore_errors=True)
        if not directory.exists():
            cp = pki.generate_cluster_pki(name, host, port, etcd_ca, algorithm=algorithm)
            tmp = directory.parent / f".pki.{uuid.uuid4().hex}.tmp"
            _mkdir_private(tmp)
            _write_cluster(tmp, cp)
            _fsync_dir(tmp)
            os.rename(tmp, directory)
            _fsync_dir(directory.parent)
            return cp
        return _load_cluster(directory, name, host, port, etcd_ca, algorithm)


def _load_cluster(
    directory: Path, name: str, host: str, port: int, etcd_ca: pki.KeyPair, algorithm: pki.KeyAlgorithm
) -> pki.ClusterPKI:
    def ca_pair(stem: str) -> pki.KeyPair:
        kp = load_keypair(directory, stem)
        try:
            if kp is not None and kp.matches():
                return kp
        except ValueError:
            pass
        raise LabError(
            f"{directory}/{stem}.crt/.key are missing or do not match; the cluster's CA cannot be rebuilt "
            f"(its secrets hold a copy): delete the cluster, or remove {directory} if it has none"
        )

    ca, proxy = ca_pair(_FILES["ca"]), ca_pair(_FILES["proxy"])
    sa_pub, sa_key = _read(directory / _SA_PUB), _read(directory / _SA_KEY)
    if sa_pub is None or sa_key is None:
        raise LabError(f"{directory}/sa.pub or sa.key is missing: delete the cluster, or remove {directory}")

    if _read(directory / _ETCD_CA) != etcd_ca.cert_pem:
        write_private(directory / _ETCD_CA, etcd_ca.cert_pem, 0o644)
    etcd_client = load_keypair(directory, _FILES["etcd_client"])
    if not (pki.leaf_ok(etcd_client, etcd_ca.cert_pem) and _cn(etcd_client) == name):
        etcd_client = pki.issue_client_cert(etcd_ca, name, algorithm=algorithm)
        write_keypair(directory, _FILES["etcd_client"], etcd_client)
    apiserver = load_keypair(directory, _FILES["apiserver"])
    if not pki.apiserver_ok(apiserver, ca, host):
        apiserver = pki.issue_apiserver(ca, host, algorithm)
        write_keypair(directory, _FILES["apiserver"], apiserver)
    kubeconfig = _read(directory / _KUBECONFIG)
    if not pki.kubeconfig_ok(kubeconfig, name, pki.endpoint_url(host, port), ca):
        kubeconfig = pki.issue_admin_kubeconfig(name, host, port, ca, algorithm)
        write_private(directory / _KUBECONFIG, kubeconfig, 0o600)
    assert etcd_client is not None and apiserver is not None and kubeconfig is not None
    return pki.ClusterPKI(
        name=name,
        ca=ca,
        proxy=proxy,
        sa=pki.KeyPair(sa_pub, sa_key),
        etcd_ca_cert_pem=etcd_ca.cert_pem,
        etcd_client=etcd_client,
        apiserver=apiserver,
        admin_kubeconfig=kubeconfig,
    )


def _cn(kp: pki.KeyPair | None) -> str | None:
    if kp is None:
        return None
    attrs = kp.cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else None


def remove_cluster_pki(settings: Settings, name: str) -> None:
    """Remove the cluster's PKI; the cluster directory goes too once nothing else is in it."""
    parent = pki.cluster_pki_dir(settings, name).parent
    if not parent.exists():
        return
    with _dir_lock(parent):
        if (parent / "pki").exists():
            shutil.rmtree(parent / "pki")
        for stale in parent.glob(".pki.*.tmp"):
            shutil.rmtree(stale, ignore_errors=True)
        try:
            parent.rmdir()
        except OSError as e:
            if e.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOENT):
                raise
