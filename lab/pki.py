"""Workload-cluster PKI: the CAs, keys, certificates and kubeconfig that Cluster API expects in a
cluster's secrets, made in-process without I/O (lab.pki_store keeps them under the lab home, so
re-runs reuse them).

Key algorithm: ECDSA P-256 by default, chosen by measurement (benchmarks/pki_bench.py, 2 busy
cores): one cluster's material (6 keys, 5 signatures, one kubeconfig) costs about 3 ms of CPU with
P-256 against about 0.6 s with RSA-2048, whose key generation dominates: 3 s against 10 minutes for
1000 clusters (RSA-4096: hours). Every consumer takes P-256: CAPI's DecodePrivateKeyPEM reads SEC1
"EC PRIVATE KEY" and KCP signs its kubeconfig client certs with an ECDSA CA key; kube-apiserver 1.35
accepts ECDSA serving, etcd-client and service-account keys; and it is one of CAPI's own
EncryptionAlgorithm values. The RSA sizes and P-384 stay selectable for comparison.

Layout on disk (lab.pki_store; one directory per cluster, created whole by a rename so a crash never leaves half a CA set):
``<clusters_dir>/<name>/pki/{ca,front-proxy-ca,apiserver,apiserver-etcd-client}.{crt,key}``,
``sa.{pub,key}``, ``etcd-ca.crt`` (never the etcd CA key) and ``admin.kubeconfig``. CAs are never
replaced once written (the management cluster holds copies); leaf certificates are re-issued when
they no longer match their CA, endpoint or etcd CA, or have expired.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from lab import naming
from lab.config import Settings

#: The workload clusters' service network (kubeadm's default); the apiserver's Service takes the first IP.
SERVICE_CIDR = "10.96.0.0/12"
SERVICE_IP = str(ipaddress.ip_network(SERVICE_CIDR)[1])
CLUSTER_DOMAIN = "cluster.local"

CA_VALIDITY = dt.timedelta(days=3650)
LEAF_VALIDITY = dt.timedelta(days=365)
#: NotBefore is moved back this much so a peer with a slightly slow clock still accepts a fresh cert.
BACKDATE = dt.timedelta(minutes=5)

#: What CAPI's own controllers put on the secrets they create (util/secret AsSecret): KCP caches only
#: secrets with the cluster-name label, and adopts (owns) only secrets of this type.
SECRET_TYPE = "cluster.x-k8s.io/secret"

ADMIN_CN = "kubernetes-admin"
ADMIN_ORG = "system:masters"
APISERVER_CN = "kube-apiserver"


PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey

# libyaml when PyYAML has it: the pure-Python emitter spends ~4 ms on a kubeconfig's base64 lines,
# more than all the cryptography of a cluster.
_Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class KeyAlgorithm(StrEnum):
    """The values of CAPI's EncryptionAlgorithmType, so a KCP spec and the lab can name the same thing."""

    RSA2048 = "RSA-2048"
    RSA3072 = "RSA-3072"
    RSA4096 = "RSA-4096"
    ECDSA_P256 = "ECDSA-P256"
    ECDSA_P384 = "ECDSA-P384"


DEFAULT_ALGORITHM = KeyAlgorithm.ECDSA_P256


@dataclass(frozen=True)
class KeyPair:
    """PEM bytes, exactly what goes into a secret's tls.crt / tls.key."""

    cert_pem: bytes
    key_pem: bytes

    @cached_property
    def cert(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_pem)

    @cached_property
    def private_key(self) -> PrivateKey:
        key = serialization.load_pem_private_key(self.key_pem, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
            raise ValueError(f"unsupported private key type {type(key).__name__}")
        return key

    @property
    def not_after(self) -> dt.datetime:
        return self.cert.not_valid_after_utc

    def matches(self) -> bool:
        """The key is the certificate's key (a crash between two renames could break that)."""
        return _spki(self.private_key.public_key()) == _spki(self.cert.public_key())


@dataclass(frozen=True)
class ClusterPKI:
    name: str  # cluster name == etcd user == tenant
    ca: KeyPair  # <cluster>-ca
    proxy: KeyPair  # <cluster>-proxy (front-proxy CA)
    sa: KeyPair  # <cluster>-sa: cert_pem is the PUBLIC KEY PEM (CAPI's convention)
    etcd_ca_cert_pem: bytes  # <cluster>-etcd: the etcd CA certificate only
    etcd_client: KeyPair  # <cluster>-apiserver-etcd-client, CN = cluster name
    apiserver: KeyPair  # serving cert signed by ca
    admin_kubeconfig: bytes  # CN=kubernetes-admin, O=system:masters

    @property
    def certificates_expiry(self) -> str:
        """RFC 3339 NotAfter of the serving cert: the value of machine.cluster.x-k8s.io/certificates-expiry."""
        return self.apiserver.not_after.strftime("%Y-%m-%dT%H:%M:%SZ")

    def secret_data(self, kubeconfig: bool = False) -> dict[str, dict[str, bytes]]:
        """Secret name -> data, as CAPI reads them (util/secret, util/kubeconfig).

        `<cluster>-etcd` carries tls.crt only: with no tls.key KCP connects to etcd with the
        apiserver-etcd-client pair instead of minting its own client cert. The key must be absent,
        not empty. `<cluster>-kubeconfig` is optional; without it KCP writes its own.
        """
        n = self.name
        out = {
            f"{n}-ca": _tls(self.ca),
            f"{n}-proxy": _tls(self.proxy),
            f"{n}-sa": _tls(self.sa),
            f"{n}-etcd": {"tls.crt": self.etcd_ca_cert_pem},
            f"{n}-apiserver-etcd-client": _tls(self.etcd_client),
        }
        if kubeconfig:
            out[f"{n}-kubeconfig"] = {"value": self.admin_kubeconfig}
        return out


def _tls(kp: KeyPair) -> dict[str, bytes]:
    return {"tls.crt": kp.cert_pem, "tls.key": kp.key_pem}


# --- keys and certificates (pure) --------------------------------------------------------------


def new_key(algorithm: KeyAlgorithm = DEFAULT_ALGORITHM) -> PrivateKey:
    match KeyAlgorithm(algorithm):
        case KeyAlgorithm.ECDSA_P256:
            return ec.generate_private_key(ec.SECP256R1())
        case KeyAlgorithm.ECDSA_P384:
            return ec.generate_private_key(ec.SECP384R1())
        case rsa_alg:
            return rsa.generate_private_key(public_exponent=65537, key_size=int(rsa_alg.value[4:]))


def key_pem(key: PrivateKey) -> bytes:
    """PKCS#1 "RSA PRIVATE KEY" or SEC1 "EC PRIVATE KEY", as CAPI's EncodePrivateKeyPEMFromSigner
    writes them; kube-apiserver's keyutil matches the PEM type to the encoding."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def public_key_pem(key: PrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _spki(public_key: CertificatePublicKeyTypes) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _name(common_name: str, organizations: Sequence[str] = ()) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
    return x509.Name([*attrs, x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def _signing_hash(key: PrivateKey) -> hashes.SHA256 | hashes.SHA384:
    # Go picks SHA-384 for P-384 keys; match it so both sides agree on the signature algorithm.
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.key_size > 256:
        return hashes.SHA384()
    return hashes.SHA256()


def new_ca(
    common_name: str,
    organizations: Sequence[str] = (),
    *,
    algorithm: KeyAlgorithm = DEFAULT_ALGORITHM,
    validity: dt.timedelta = CA_VALIDITY,
) -> KeyPair:
    """A self-signed CA that may sign leaf certificates only (path length 0)."""
    key = new_key(algorithm)
    now = _now()
    name = _name(common_name, organizations)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + validity)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(digital_signature=True, cert_sign=True), critical=True)
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(key, _signing_hash(key))
    )
    return KeyPair(cert.public_bytes(serialization.Encoding.PEM), key_pem(key))


def _key_usage(
    *, digital_signature: bool, cert_sign: bool = False, key_encipherment: bool = False
) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=key_encipherment,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _issue(
    ca: KeyPair,
    subject: x509.Name,
    ekus: list[x509.ObjectIdentifier],
    san: x509.SubjectAlternativeName | None,
    algorithm: KeyAlgorithm,
    validity: dt.timedelta,
) -> KeyPair:
    if not ca.key_pem:
        raise ValueError(f"CA {ca.cert.subject.rfc4514_string()} has no private key to sign with")
    key = new_key(algorithm)
    now = _now()
    ca_key = ca.private_key
    ca_ski = ca.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        # A leaf never outlives its CA: Go rejects such a chain once the CA expires anyway.
        .not_valid_after(min(now + validity, ca.not_after))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        # keyEncipherment only means something for RSA key exchange; for ECDSA it is wrong.
        .add_extension(
            _key_usage(digital_signature=True, key_encipherment=isinstance(key, rsa.RSAPrivateKey)),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(ekus), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
    )
    if san is not None:
        builder = builder.add_extension(san, critical=False)
    cert = builder.sign(ca_key, _signing_hash(ca_key))
    return KeyPair(cert.public_bytes(serialization.Encoding.PEM), key_pem(key))


def issue_server_cert(
    ca: KeyPair,
    common_name: str,
    dns: Sequence[str],
    ips: Sequence[str],
    client_auth: bool = False,
    *,
    organizations: Sequence[str] = (),
    algorithm: KeyAlgorithm = DEFAULT_ALGORITHM,
    validity: dt.timedelta = LEAF_VALIDITY,
) -> KeyPair:
    """A serving cert; client_auth=True adds clientAuth too, as etcd peer certs need; organizations
    as a cert-manager Certificate's spec.subject.organizations asks."""
    ekus = [ExtendedKeyUsageOID.SERVER_AUTH] + ([ExtendedKeyUsageOID.CLIENT_AUTH] if client_auth else [])
    names: list[x509.GeneralName] = [x509.DNSName(d) for d in dict.fromkeys(dns)]
    names += [x509.IPAddress(ipaddress.ip_address(i)) for i in dict.fromkeys(ips)]
    if not names:
        raise ValueError("a serving certificate needs at least one DNS name or IP address")
    subject = _name(common_name, organizations)
    return _issue(ca, subject, ekus, x509.SubjectAlternativeName(names), algorithm, validity)


def issue_client_cert(
    ca: KeyPair,
    common_name: str,
    organizations: Sequence[str] = (),
    *,
    algorithm: KeyAlgorithm = DEFAULT_ALGORITHM,
    validity: dt.timedelta = LEAF_VALIDITY,
) -> KeyPair:
    """A client cert: Kubernetes reads CN as the user and O as groups; etcd reads CN as the user."""
    subject = _name(common_name, organizations)
    return _issue(ca, subject, [ExtendedKeyUsageOID.CLIENT_AUTH], None, algorithm, validity)


def new_sa_keypair(algorithm: KeyAlgorithm = DEFAULT_ALGORITHM) -> KeyPair:
    """The service-account signing key; cert_pem holds the PUBLIC KEY, as in CAPI's <cluster>-sa."""
    key = new_key(algorithm)
    return KeyPair(public_key_pem(key), key_pem(key))


def endpoint_url(host: str, port: int) -> str:
    try:
        is_v6 = ipaddress.ip_address(host).version == 6
    except ValueError:
        is_v6 = False
    return f"https://[{host}]:{port}" if is_v6 else f"https://{host}:{port}"


def apiserver_sans(host: str) -> tuple[list[str], list[str]]:
    """(DNS names, IPs) of a workload kube-apiserver reached at `host`, like kubeadm's apiserver cert."""
    dns = [
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        f"kubernetes.default.svc.{CLUSTER_DOMAIN}",
        "localhost",
    ]
    ips = [SERVICE_IP, "127.0.0.1"]
    try:
        ips.append(str(ipaddress.ip_address(host)))
    except ValueError:
        dns.append(host)
    return list(dict.fromkeys(dns)), list(dict.fromkeys(ips))


def render_kubeconfig(
    name: str, server: str, ca_cert_pem: bytes, client: KeyPair, user: str | None = None
) -> bytes:
    """A kubeconfig shaped like CAPI's generated one: cluster entry named after the cluster (KCP's
    rotation looks it up by that name), user <name>-admin, context <user>@<name>."""
    user = user or f"{name}-admin"
    context = f"{user}@{name}"

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": name, "cluster": {"server": server, "certificate-authority-data": b64(ca_cert_pem)}}
        ],
        "contexts": [{"name": context, "context": {"cluster": name, "user": user}}],
        "current-context": context,
        "preferences": {},
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate-data": b64(client.cert_pem),
                    "client-key-data": b64(client.key_pem),
                },
            }
        ],
    }
    return yaml.dump(doc, Dumper=_Dumper, sort_keys=False).encode()


def generate_cluster_pki(
    name: str, host: str, port: int, etcd_ca: KeyPair, *, algorithm: KeyAlgorithm = DEFAULT_ALGORITHM
) -> ClusterPKI:
    """Fresh material for one cluster, in memory."""
    ca = new_ca("kubernetes", [name], algorithm=algorithm)
    return ClusterPKI(
        name=name,
        ca=ca,
        proxy=new_ca("front-proxy-ca", [name], algorithm=algorithm),
        sa=new_sa_keypair(algorithm),
        etcd_ca_cert_pem=etcd_ca.cert_pem,
        etcd_client=issue_client_cert(etcd_ca, name, algorithm=algorithm),
        apiserver=issue_apiserver(ca, host, algorithm),
        admin_kubeconfig=issue_admin_kubeconfig(name, host, port, ca, algorithm),
    )


def issue_apiserver(ca: KeyPair, host: str, algorithm: KeyAlgorithm) -> KeyPair:
    dns, ips = apiserver_sans(host)
    return issue_server_cert(ca, APISERVER_CN, dns, ips, algorithm=algorithm)


def issue_admin_kubeconfig(name: str, host: str, port: int, ca: KeyPair, algorithm: KeyAlgorithm) -> bytes:
    admin = issue_client_cert(ca, ADMIN_CN, [ADMIN_ORG], algorithm=algorithm)
    return render_kubeconfig(name, endpoint_url(host, port), ca.cert_pem, admin)


# --- checks on stored material ------------------------------------------------------------------


def signed_by(kp: KeyPair, ca_cert_pem: bytes) -> bool:
    try:
        kp.cert.verify_directly_issued_by(x509.load_pem_x509_certificate(ca_cert_pem))
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def leaf_ok(kp: KeyPair | None, ca_cert_pem: bytes) -> bool:
    if kp is None:
        return False
    try:
        return kp.matches() and signed_by(kp, ca_cert_pem) and kp.not_after > _now()
    except ValueError:  # unparsable PEM: re-issue
        return False


def _sans(kp: KeyPair) -> tuple[set[str], set[str]]:
    san = kp.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return set(san.get_values_for_type(x509.DNSName)), {
        str(i) for i in san.get_values_for_type(x509.IPAddress)
    }


def apiserver_ok(kp: KeyPair | None, ca: KeyPair, host: str) -> bool:
    if not leaf_ok(kp, ca.cert_pem):
        return False
    assert kp is not None
    dns, ips = apiserver_sans(host)
    try:
        return _sans(kp) == (set(dns), set(ips))
    except x509.ExtensionNotFound:
        return False


def kubeconfig_client(kubeconfig: bytes) -> tuple[str, bytes, KeyPair]:
    """(server, CA cert PEM, client pair) of a single-cluster kubeconfig such as render_kubeconfig's."""
    return _kubeconfig_parts(yaml.load(kubeconfig, Loader=_Loader))[1:]


def _kubeconfig_parts(doc: dict[str, Any]) -> tuple[str, str, bytes, KeyPair]:
    (entry,), (user,) = doc["clusters"], doc["users"]
    cluster, creds = entry["cluster"], user["user"]
    client = KeyPair(
        base64.b64decode(creds["client-certificate-data"]), base64.b64decode(creds["client-key-data"])
    )
    return entry["name"], cluster["server"], base64.b64decode(cluster["certificate-authority-data"]), client


def kubeconfig_ok(data: bytes | None, name: str, server: str, ca: KeyPair) -> bool:
    if data is None:
        return False
    try:
        got_name, got_server, ca_pem, client = _kubeconfig_parts(yaml.load(data, Loader=_Loader))
    except (yaml.YAMLError, KeyError, TypeError, ValueError):  # ValueError: also bad base64, bad unpacking
        return False
    return (
        got_name == name and got_server == server and ca_pem == ca.cert_pem and leaf_ok(client, ca.cert_pem)
    )


def check_cluster_name(name: str) -> str:
    return naming.check_dns_label("cluster name", name)


def cluster_pki_dir(settings: Settings, name: str) -> Path:
    return settings.clusters_dir / check_cluster_name(name) / "pki"
