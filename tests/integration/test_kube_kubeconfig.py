"""A user's kubeconfig against a real kube-apiserver, as kubectl would use it: a token file, a client
certificate and CA by path, exec credential plugins printing a token or a certificate; who the server
says we are comes from a SelfSubjectReview. Also Client.probe and NotFound."""

from __future__ import annotations

import stat
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from support.apiserver import RunningApiserver

from lab import pki
from lab.kube import Client, Config, NotFound

EXEC_API = "client.authentication.k8s.io/v1"


def _kubeconfig(dir: Path, server: str, ca_pem: bytes, user: dict[str, Any]) -> Path:
    (dir / "ca.crt").write_bytes(ca_pem)
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": server, "certificate-authority": "ca.crt"}}],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "ctx", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "ctx",
    }
    path = dir / "config"
    path.write_text(yaml.safe_dump(doc))
    path.chmod(0o600)
    return path


def _plugin(path: Path, status: dict[str, Any]) -> Path:
    cred = {"apiVersion": EXEC_API, "kind": "ExecCredential", "status": status}
    path.write_text(f"#!{sys.executable}\nimport json\nprint(json.dumps({cred!r}))\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def _whoami(kubeconfig: Path) -> str:
    review = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
    with Client.from_kubeconfig(kubeconfig, attempts=1) as c:
        out = c.request("POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews", body=review)
    return str(out["status"]["userInfo"]["username"])


@pytest.fixture(scope="module")
def sa_token(apiserver: RunningApiserver) -> tuple[str, str]:
    """(username, token) of a fresh ServiceAccount, from the TokenRequest API."""
    ns, sa = f"t-{uuid.uuid4().hex[:8]}", "reader"
    with Client.from_kubeconfig(apiserver.kubeconfig) as admin:
        admin.apply(
            [
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
                {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": sa, "namespace": ns}},
            ]
        )
        req = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}}
        out = admin.request("POST", f"/api/v1/namespaces/{ns}/serviceaccounts/{sa}/token", body=req)
    return f"system:serviceaccount:{ns}:{sa}", out["status"]["token"]


def test_token_file(tmp_path: Path, apiserver: RunningApiserver, sa_token: tuple[str, str]) -> None:
    who, token = sa_token
    (tmp_path / "token").write_text(token + "\n")
    path = _kubeconfig(tmp_path, apiserver.url, apiserver.ca.cert_pem, {"tokenFile": "token"})
    assert _whoami(path) == who


def test_client_certificate_by_path(tmp_path: Path, apiserver: RunningApiserver) -> None:
    kp = pki.issue_client_cert(apiserver.ca, "alice", ["devs"])
    (tmp_path / "alice.crt").write_bytes(kp.cert_pem)
    (tmp_path / "alice.key").write_bytes(kp.key_pem)
    user = {"client-certificate": "alice.crt", "client-key": str(tmp_path / "alice.key")}
    assert _whoami(_kubeconfig(tmp_path, apiserver.url, apiserver.ca.cert_pem, user)) == "alice"


def test_exec_plugin_with_a_token(
    tmp_path: Path,
    apiserver: RunningApiserver,
    sa_token: tuple[str, str],
) -> None:
    who, token = sa_token
    plugin = _plugin(tmp_path / "plugin", {"token": token})
    user = {"exec": {"apiVersion": EXEC_API, "command": str(plugin)}}
    assert _whoami(_kubeconfig(tmp_path, apiserver.url, apiserver.ca.cert_pem, user)) == who


def test_exec_plugin_with_a_certificate(tmp_path: Path, apiserver: RunningApiserver) -> None:
    kp = pki.issue_client_cert(apiserver.ca, "bob", [])
    _plugin(
        tmp_path / "plugin",
        {"clientCertificateData": kp.cert_pem.decode(), "clientKeyData": kp.key_pem.decode()},
    )
    user = {"exec": {"apiVersion": EXEC_API, "command": "./plugin", "args": ["--cluster", "x"]}}
    assert _whoami(_kubeconfig(tmp_path, apiserver.url, apiserver.ca.cert_pem, user)) == "bob"


def test_probe_and_not_found(apiserver: RunningApiserver) -> None:
    with Client.from_kubeconfig(apiserver.kubeconfig, attempts=1) as c:
        assert c.probe("/readyz") == (True, "HTTP 200")
        ok, why = c.probe("/no-such-path")
        assert not ok and "404" in why
        assert c.get("v1", "ConfigMap", "nope", "default") is None
        with pytest.raises(NotFound):
            c.request("GET", "/api/v1/namespaces/default/configmaps/nope")
    unreachable = Config(apiserver.url.rsplit(":", 1)[0] + ":1", ca_pem=apiserver.ca.cert_pem)
    with Client(unreachable, attempts=1) as c:
        ok, why = c.probe("/readyz", timeout=2)
        assert not ok and "cannot reach" in why
