"""Certificates lab.pki never issues (expired, not yet valid), minted for tests that need them."""

from __future__ import annotations

import datetime as dt

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from lab import pki


def client_cert(ca: pki.KeyPair, cn: str, not_before: dt.datetime, not_after: dt.datetime) -> pki.KeyPair:
    """A client certificate signed by `ca` with exactly the validity given."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca.private_key, hashes.SHA256())
    )
    return pki.KeyPair(cert.public_bytes(serialization.Encoding.PEM), pki.key_pem(key))
