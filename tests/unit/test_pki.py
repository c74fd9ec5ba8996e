"""lab.pki and lab.pki_store with real cryptography: chains, SANs, usages, file modes, idempotency, crash recovery."""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import json
import os
import shutil
import socket
import ssl
import stat
import subprocess
import threading
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509 import verification as v
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from lab import config, pki, pki_store
from lab.errors import LabError, UsageError

HOST, PORT = "127.1.0.7", 6443


@pytest.fixture
def settings(lab_env: dict[str, str]) -> config.Settings:
    return config.load()


@pytest.fixture(scope="module")
def etcd_ca() -> pki.KeyPair:
    return pki.new_ca("etcd-ca")


@pytest.fixture
def cluster(settings: config.Settings, etcd_ca: pki.KeyPair) -> pki.ClusterPKI:
    return pki_store.cluster_pki(settings, "test-7", HOST, PORT, etcd_ca)


def _ext(cert: x509.Certificate, cls: type) -> x509.Extension:
    return cert.extensions.get_extension_for_class(cls)


def _client_verifier(ca: pki.KeyPair) -> v.ClientVerifier:
    # The web-PKI profile wants a SAN on client certs; Kubernetes and etcd client certs have none.
    ee = v.ExtensionPolicy.webpki_defaults_ee().may_be_present(
        x509.SubjectAlternativeName, v.Criticality.AGNOSTIC, None
    )
    return (
        v.PolicyBuilder()
        .store(v.Store([ca.cert]))
        .extension_policies(ca_policy=v.ExtensionPolicy.webpki_defaults_ca(), ee_policy=ee)
        .build_client_verifier()
    )


def _server_verifier(ca: pki.KeyPair, name: str) -> v.ServerVerifier:
    try:
        subject: v.DNSName | v.IPAddress = v.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        subject = v.DNSName(name)
    return v.PolicyBuilder().store(v.Store([ca.cert])).build_server_verifier(subject)


def test_cas_are_ca_only_and_long_lived(cluster: pki.ClusterPKI) -> None:
    for ca in (cluster.ca, cluster.proxy):
        bc = _ext(ca.cert, x509.BasicConstraints)
        assert bc.critical and bc.value.ca and bc.value.path_length == 0
        ku = _ext(ca.cert, x509.KeyUsage).value
        assert ku.key_cert_sign and ku.crl_sign
        ca.cert.verify_directly_issued_by(ca.cert)
        life = ca.cert.not_valid_after_utc - ca.cert.not_valid_before_utc
        assert dt.timedelta(days=3650) <= life <= dt.timedelta(days=3650, minutes=10)
        assert isinstance(ca.private_key, ec.EllipticCurvePrivateKey)
        assert ca.key_pem.startswith(b"-----BEGIN EC PRIVATE KEY-----")
    assert cluster.ca.cert_pem != cluster.proxy.cert_pem


def test_apiserver_serving_cert(cluster: pki.ClusterPKI) -> None:
    cert = cluster.apiserver.cert
    for name in (
        HOST,
        "127.0.0.1",
        "10.96.0.1",
        "localhost",
        "kubernetes",
        "kubernetes.default.svc.cluster.local",
    ):
        _server_verifier(cluster.ca, name).verify(cert, [])
    san = _ext(cert, x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.DNSName)) == {
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
        "localhost",
    }
    assert {str(i) for i in san.get_values_for_type(x509.IPAddress)} == {HOST, "127.0.0.1", pki.SERVICE_IP}
    assert pki.SERVICE_IP == "10.96.0.1"
    assert list(_ext(cert, x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.SERVER_AUTH]
    ku = _ext(cert, x509.KeyUsage).value
    assert ku.digital_signature and not ku.key_encipherment and not ku.key_cert_sign
    assert not _ext(cert, x509.BasicConstraints).value.ca
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "kube-apiserver"
    life = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert dt.timedelta(days=365) <= life <= dt.timedelta(days=365, minutes=10)
    assert dt.datetime.now(dt.UTC) - cert.not_valid_before_utc >= dt.timedelta(minutes=4)
    assert cluster.apiserver.matches()
    assert cluster.certificates_expiry == cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert dt.datetime.fromisoformat(cluster.certificates_expiry) == cert.not_valid_after_utc


def test_apiserver_cert_does_not_verify_for_other_names_or_cas(
    cluster: pki.ClusterPKI, etcd_ca: pki.KeyPair
) -> None:
    with pytest.raises(v.VerificationError):
        _server_verifier(cluster.ca, "127.1.0.8").verify(cluster.apiserver.cert, [])
    with pytest.raises(v.VerificationError):
        _server_verifier(cluster.proxy, HOST).verify(cluster.apiserver.cert, [])
    with pytest.raises(v.VerificationError):
        _client_verifier(cluster.ca).verify(cluster.apiserver.cert, [])


def test_etcd_client_cert(cluster: pki.ClusterPKI, etcd_ca: pki.KeyPair) -> None:
    chain = _client_verifier(etcd_ca).verify(cluster.etcd_client.cert, []).chain
    assert chain[-1] == etcd_ca.cert
    cert = cluster.etcd_client.cert
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "test-7"
    assert list(_ext(cert, x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert cluster.etcd_ca_cert_pem == etcd_ca.cert_pem
    with pytest.raises(v.VerificationError):
        _client_verifier(cluster.ca).verify(cert, [])


def test_admin_kubeconfig(cluster: pki.ClusterPKI) -> None:
    doc = yaml.safe_load(cluster.admin_kubeconfig)
    assert doc["kind"] == "Config" and doc["current-context"] == "test-7-admin@test-7"
    (entry,) = doc["clusters"]
    assert entry["name"] == "test-7"
    assert entry["cluster"]["server"] == f"https://{HOST}:{PORT}"
    assert base64.b64decode(entry["cluster"]["certificate-authority-data"]) == cluster.ca.cert_pem
    (user,) = doc["users"]
    client = pki.KeyPair(
        base64.b64decode(user["user"]["client-certificate-data"]),
        base64.b64decode(user["user"]["client-key-data"]),
    )
    assert client.matches()
    _client_verifier(cluster.ca).verify(client.cert, [])
    subject = client.cert.subject
    assert subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "kubernetes-admin"
    assert [a.value for a in subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)] == ["system:masters"]


def test_sa_is_a_key_pair_in_capi_convention(cluster: pki.ClusterPKI) -> None:
    from cryptography.hazmat.primitives import serialization

    assert cluster.sa.cert_pem.startswith(b"-----BEGIN PUBLIC KEY-----")
    pub = serialization.load_pem_public_key(cluster.sa.cert_pem)
    assert pki._spki(pub) == pki._spki(cluster.sa.private_key.public_key())


def test_secret_data_is_what_capi_reads(cluster: pki.ClusterPKI) -> None:
    data = cluster.secret_data()
    assert set(data) == {
        "test-7-ca",
        "test-7-proxy",
        "test-7-sa",
        "test-7-etcd",
        "test-7-apiserver-etcd-client",
    }
    assert data["test-7-etcd"] == {"tls.crt": cluster.etcd_ca_cert_pem}  # never the etcd CA key
    assert data["test-7-ca"] == {"tls.crt": cluster.ca.cert_pem, "tls.key": cluster.ca.key_pem}
    assert cluster.secret_data(kubeconfig=True)["test-7-kubeconfig"] == {"value": cluster.admin_kubeconfig}


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_file_modes_ignore_umask(settings: config.Settings, etcd_ca: pki.KeyPair) -> None:
    old = os.umask(0)
    try:
        pki_store.cluster_pki(settings, "test-8", HOST, PORT, etcd_ca)
        d = pki.cluster_pki_dir(settings, "test-8")
        for p in (d, d.parent, settings.clusters_dir, settings.home):
            assert _mode(p) == 0o700, p
        for name in ("ca.key", "front-proxy-ca.key", "sa.key", "apiserver.key", "apiserver-etcd-client.key"):
            assert _mode(d / name) == 0o600, name
        assert _mode(d / "admin.kubeconfig") == 0o600
        for name in ("ca.crt", "front-proxy-ca.crt", "sa.pub", "apiserver.crt", "etcd-ca.crt"):
            assert _mode(d / name) == 0o644, name
        assert not (d / "etcd-ca.key").exists()
        assert sorted(p.name for p in d.iterdir() if p.name.startswith(".")) == []
    finally:
        os.umask(old)


def test_second_call_returns_same_bytes(settings: config.Settings, etcd_ca: pki.KeyPair) -> None:
    first = pki_store.cluster_pki(settings, "test-9", HOST, PORT, etcd_ca)
    # Different algorithm on the second call must not rotate anything that is still valid.
    second = pki_store.cluster_pki(
        settings, "test-9", HOST, PORT, etcd_ca, algorithm=pki.KeyAlgorithm.RSA2048
    )
    assert first == second


def test_changed_endpoint_reissues_leafs_only(settings: config.Settings, etcd_ca: pki.KeyPair) -> None:
    first = pki_store.cluster_pki(settings, "test-9", HOST, PORT, etcd_ca)
    moved = pki_store.cluster_pki(settings, "test-9", "127.1.0.99", 7443, etcd_ca)
    assert (moved.ca, moved.proxy, moved.sa, moved.etcd_client) == (
        first.ca,
        first.proxy,
        first.sa,
        first.etcd_client,
    )
    assert moved.apiserver != first.apiserver and moved.admin_kubeconfig != first.admin_kubeconfig
    _server_verifier(moved.ca, "127.1.0.99").verify(moved.apiserver.cert, [])
    assert pki.kubeconfig_client(moved.admin_kubeconfig)[0] == "https://127.1.0.99:7443"
    assert pki_store.cluster_pki(settings, "test-9", "127.1.0.99", 7443, etcd_ca) == moved


def test_new_etcd_ca_reissues_etcd_client(settings: config.Settings, etcd_ca: pki.KeyPair) -> None:
    first = pki_store.cluster_pki(settings, "test-9", HOST, PORT, etcd_ca)
    other = pki.new_ca("etcd-ca")
    again = pki_store.cluster_pki(settings, "test-9", HOST, PORT, other)
    assert again.ca == first.ca and again.apiserver == first.apiserver
    assert again.etcd_ca_cert_pem == other.cert_pem
    _client_verifier(other).verify(again.etcd_client.cert, [])
    d = pki.cluster_pki_dir(settings, "test-9")
    assert (d / "etcd-ca.crt").read_bytes() == other.cert_pem


def test_half_written_leaf_is_repaired(settings: config.Settings, etcd_ca: pki.KeyPair) -> None:
    first = pki_store.cluster_pki(settings, "test-9", HOST, PORT, etcd_ca)
    d = pki.cluster_pki_dir(settings, "test-9")
    # A crash between the key and the cert rename: new key, old cert.
    (d / "apiserver.key").write_bytes(pki.key_pem(pki.new_key()))
    (d / "admin.kubeconfig").write_bytes(b"clusters: [")
    again = pki_store.cluster_pki(settings, "test-9", HOST, PORT, etcd_ca)
    assert again.ca == first.ca and again.apiserver.matches() and again.apiserver != first.apiserver
    assert pki.kubeconfig_client(again.admin_kubeconfig)[2].matches()
    assert pki_store.cluster_pki(settings, "test-9", HOST, PORT, etcd_ca) == again


def test_crash_before_rename_leaves_nothing_half_done(
    settings: config.Settings, etcd_ca: pki.KeyPair
) -> None:
    d = pki.cluster_pki_dir(settings, "test-10")
    stale = d.parent / ".pki.deadbeef.tmp"
    stale.mkdir(parents=True)
    (stale / "ca.key").write_bytes(b"half")
    p = pki_store.cluster_pki(settings, "test-10", HOST, PORT, etcd_ca)
    assert not stale.exists() and p.ca.matches()


def test_damaged_ca_is_an_error_not_a_new_ca(settings: config.Settings, etcd_ca: pki.KeyPair) -> None:
    pki_store.cluster_pki(settings, "test-11", HOST, PORT, etcd_ca)
    d = pki.cluster_pki_dir(settings, "test-11")
    (d / "ca.key").unlink()
    with pytest.raises(LabError, match=r"ca\.crt/\.key"):
        pki_store.cluster_pki(settings, "test-11", HOST, PORT, etcd_ca)


def test_concurrent_first_calls_agree(settings: config.Settings, etcd_ca: pki.KeyPair) -> None:
    results: list[pki.ClusterPKI] = []
    threads = [
        threading.Thread(
            target=lambda: results.append(pki_store.cluster_pki(settings, "test-12", HOST, PORT, etcd_ca))
        )
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(results) == 4 and all(r == results[0] for r in results)


def test_remove_is_idempotent(settings: config.Settings, etcd_ca: pki.KeyPair) -> None:
    pki_store.cluster_pki(settings, "test-13", HOST, PORT, etcd_ca)
    pki_store.remove_cluster_pki(settings, "test-13")
    assert not (settings.clusters_dir / "test-13").exists()
    pki_store.remove_cluster_pki(settings, "test-13")
    pki_store.remove_cluster_pki(settings, "never-made")
    # Files other areas keep in the cluster directory survive.
    pki_store.cluster_pki(settings, "test-13", HOST, PORT, etcd_ca)
    (settings.clusters_dir / "test-13" / "apiserver.log").write_text("x")
    pki_store.remove_cluster_pki(settings, "test-13")
    assert not pki.cluster_pki_dir(settings, "test-13").exists()
    assert (settings.clusters_dir / "test-13" / "apiserver.log").exists()


@pytest.mark.parametrize("bad", ["", "../x", "Test-1", "a/b", "-a", "a" * 64])
def test_bad_names_are_usage_errors(settings: config.Settings, etcd_ca: pki.KeyPair, bad: str) -> None:
    with pytest.raises(UsageError):
        pki_store.cluster_pki(settings, bad, HOST, PORT, etcd_ca)
    assert not settings.clusters_dir.exists()


def test_load_or_create_ca(tmp_path: Path) -> None:
    d = tmp_path / "pki" / "etcd"
    first = pki_store.load_or_create_ca(d, "etcd-ca")
    assert pki_store.load_or_create_ca(d, "etcd-ca") == first
    assert _mode(d / "ca.key") == 0o600 and _mode(d) == 0o700
    assert first.cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "etcd-ca"
    (d / "ca.key").write_bytes(pki.key_pem(pki.new_key()))
    with pytest.raises(LabError, match="does not belong"):
        pki_store.load_or_create_ca(d, "etcd-ca")
    (d / "ca.key").write_bytes(b"not a key")
    with pytest.raises(LabError, match="does not belong"):
        pki_store.load_or_create_ca(d, "etcd-ca")
    (d / "ca.key").unlink()
    with pytest.raises(LabError, match=r"no ca\.key"):
        pki_store.load_or_create_ca(d, "etcd-ca")


def test_server_cert_for_etcd_peers_has_both_usages(etcd_ca: pki.KeyPair) -> None:
    kp = pki.issue_server_cert(etcd_ca, "etcd-0", ["localhost"], ["127.0.0.1", "::1"], client_auth=True)
    ekus = list(_ext(kp.cert, x509.ExtendedKeyUsage).value)
    assert ekus == [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    _server_verifier(etcd_ca, "::1").verify(kp.cert, [])
    _client_verifier(etcd_ca).verify(kp.cert, [])


def test_rsa_keys_get_key_encipherment_and_pkcs1() -> None:
    ca = pki.new_ca("kubernetes", algorithm=pki.KeyAlgorithm.RSA2048)
    leaf = pki.issue_server_cert(ca, "kube-apiserver", ["localhost"], [], algorithm=pki.KeyAlgorithm.RSA2048)
    assert isinstance(leaf.private_key, rsa.RSAPrivateKey) and leaf.private_key.key_size == 2048
    assert leaf.key_pem.startswith(b"-----BEGIN RSA PRIVATE KEY-----")
    assert _ext(leaf.cert, x509.KeyUsage).value.key_encipherment
    _server_verifier(ca, "localhost").verify(leaf.cert, [])


def test_p384_signs_with_sha384() -> None:
    ca = pki.new_ca("kubernetes", algorithm=pki.KeyAlgorithm.ECDSA_P384)
    leaf = pki.issue_client_cert(ca, "x", algorithm=pki.KeyAlgorithm.ECDSA_P384)
    assert leaf.cert.signature_hash_algorithm is not None
    assert leaf.cert.signature_hash_algorithm.name == "sha384"
    _client_verifier(ca).verify(leaf.cert, [])


def test_ipv6_endpoint_url() -> None:
    assert pki.endpoint_url("::1", 6443) == "https://[::1]:6443"
    assert pki.endpoint_url("api.example", 6443) == "https://api.example:6443"
    dns, ips = pki.apiserver_sans("api.example")
    assert "api.example" in dns and "api.example" not in ips


def test_openssl_agrees(settings: config.Settings, cluster: pki.ClusterPKI, etcd_ca: pki.KeyPair) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed; the cryptography verifier above covers the chains")
    d = pki.cluster_pki_dir(settings, "test-7")
    etcd_ca_file = settings.home / "etcd-ca.crt"
    etcd_ca_file.write_bytes(etcd_ca.cert_pem)
    checks = [
        ["-CAfile", str(d / "ca.crt"), "-purpose", "sslserver", "-verify_ip", HOST, str(d / "apiserver.crt")],
        ["-CAfile", str(etcd_ca_file), "-purpose", "sslclient", str(d / "apiserver-etcd-client.crt")],
    ]
    for args in checks:
        out = subprocess.run([openssl, "verify", *args], capture_output=True, text=True, timeout=30)
        assert out.returncode == 0 and out.stdout.strip().endswith(": OK"), out.stdout + out.stderr
    wrong = subprocess.run(
        [openssl, "verify", "-CAfile", str(d / "front-proxy-ca.crt"), str(d / "apiserver.crt")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert wrong.returncode != 0


def test_real_tls_handshake_with_admin_client(settings: config.Settings, cluster: pki.ClusterPKI) -> None:
    """OpenSSL's TLS stack accepts the files: server cert for the endpoint IP, admin client cert."""
    d = pki.cluster_pki_dir(settings, "test-7")
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(d / "apiserver.crt", d / "apiserver.key")
    server_ctx.load_verify_locations(cadata=cluster.ca.cert_pem.decode())
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    _, _, client = pki.kubeconfig_client(cluster.admin_kubeconfig)
    (settings.home / "admin.crt").write_bytes(client.cert_pem)
    (settings.home / "admin.key").write_bytes(client.key_pem)
    client_ctx = ssl.create_default_context(cadata=cluster.ca.cert_pem.decode())
    client_ctx.load_cert_chain(settings.home / "admin.crt", settings.home / "admin.key")

    peer: list[dict] = []
    with socket.create_server((HOST, 0)) as listener:
        listener.settimeout(10)

        def serve() -> None:
            conn, _ = listener.accept()
            with server_ctx.wrap_socket(conn, server_side=True) as tls:
                peer.append(tls.getpeercert())
                tls.sendall(b"ok")

        t = threading.Thread(target=serve)
        t.start()
        with (
            socket.create_connection(listener.getsockname(), timeout=10) as raw,
            client_ctx.wrap_socket(raw, server_hostname=HOST) as tls,
        ):
            assert tls.recv(2) == b"ok"
            assert dict(x[0] for x in tls.getpeercert()["subject"])["commonName"] == "kube-apiserver"
        t.join(timeout=10)
    assert dict(x[0] for x in peer[0]["subject"])["commonName"] == "kubernetes-admin"


def test_kubectl_reads_the_kubeconfig(settings: config.Settings, cluster: pki.ClusterPKI) -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not on PATH; PyYAML parsing above covers the structure")
    d = pki.cluster_pki_dir(settings, "test-7")
    out = subprocess.run(
        [kubectl, "--kubeconfig", str(d / "admin.kubeconfig"), "config", "view", "--raw", "-o", "json"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    view = json.loads(out.stdout)
    assert view["current-context"] == "test-7-admin@test-7"
    assert view["clusters"][0]["cluster"]["server"] == f"https://{HOST}:{PORT}"
    assert (
        base64.b64decode(view["users"][0]["user"]["client-key-data"])
        == pki.kubeconfig_client(cluster.admin_kubeconfig)[2].key_pem
    )


def test_ensure_server_keeps_a_fitting_pair_and_reissues_one_that_no_longer_fits(tmp_path: Path) -> None:
    """The one way lab keeps a serving cert (local managers' webhooks, kind mode's cert-manager
    stand-in): kept while CA, CN, organizations and names fit; re-issued when any changes."""
    ca = pki.new_ca("webhook-ca")
    names = ["svc.ns.svc", "svc.ns.svc.cluster.local"]
    first = pki_store.ensure_server(tmp_path, "tls", ca, "serving", names, [], organizations=["o"])
    assert stat.S_IMODE((tmp_path / "tls.key").stat().st_mode) == 0o600
    assert first.cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "o"
    assert pki_store.ensure_server(tmp_path, "tls", ca, "serving", names, [], organizations=["o"]) == first
    assert (
        pki_store.ensure_server(tmp_path, "tls", ca, "serving", names[:1], [], organizations=["o"]) != first
    )
    again = pki_store.ensure_server(tmp_path, "tls", ca, "serving", names[:1], [])  # organizations dropped
    assert again.cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME) == []
    other = pki.new_ca("other-ca")
    moved = pki_store.ensure_server(tmp_path, "tls", other, "serving", names[:1], [])
    assert pki.signed_by(moved, other.cert_pem)
