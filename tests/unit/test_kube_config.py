"""lab.kube.config: lab's own kubeconfigs read directly (without importing the official client), and a
user's kubeconfig resolved as kubectl resolves it (token files, certificates and CA by path, exec
credential plugins), or refused with one line. The same kubeconfigs against a real apiserver:
tests/integration/test_kube_kubeconfig.py."""

from __future__ import annotations

import base64
import json
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from lab import pki
from lab.errors import LabError
from lab.kube import ApiError, Config, NotFound
from lab.kube.errors import api_error

SERVER = "https://127.0.0.1:6443"


def kubeconfig(cluster: dict[str, Any], user: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": cluster}],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "ctx", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "ctx",
    }


def write(path: Path, doc: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(doc))
    path.chmod(0o600)
    return path


def exec_plugin(path: Path, status: dict[str, Any], exit_code: int = 0) -> Path:
    """A credential plugin as kubectl runs them: prints an ExecCredential on stdout."""
    cred = {"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential", "status": status}
    path.write_text(
        f"#!{sys.executable}\nimport json, sys\nprint(json.dumps({cred!r}))\nsys.exit({exit_code})\n"
    )
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


@pytest.fixture(scope="module")
def ca() -> pki.KeyPair:
    return pki.new_ca("test-ca")


@pytest.fixture(scope="module")
def client_pair(ca: pki.KeyPair) -> pki.KeyPair:
    return pki.issue_client_cert(ca, "alice", ["devs"])


def test_lab_kubeconfig_is_read_without_the_official_client(tmp_path: Path, ca: pki.KeyPair) -> None:
    """Every command's start-up path: kubernetes must not be imported (it costs ~0.35 s)."""
    kp = pki.issue_client_cert(ca, "admin", ["system:masters"])
    path = tmp_path / "admin.kubeconfig"
    path.write_bytes(pki.render_kubeconfig("lab", SERVER, ca.cert_pem, kp))
    code = (
        "import sys; from pathlib import Path; from lab.kube import Config; "
        f"c = Config.from_kubeconfig(Path({str(path)!r})); "
        "print(c.server, c.cert_pem is not None, 'kubernetes' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == [SERVER, "True", "False"]


def test_token_file_and_ca_by_relative_path(tmp_path: Path, ca: pki.KeyPair) -> None:
    (tmp_path / "ca.crt").write_bytes(ca.cert_pem)
    (tmp_path / "token").write_text("abc.def\n")
    path = write(
        tmp_path / "kc",
        kubeconfig({"server": SERVER, "certificate-authority": "ca.crt"}, {"tokenFile": "token"}),
    )
    cfg = Config.from_kubeconfig(path)
    assert (cfg.server, cfg.ca_pem, cfg.token, cfg.cert_pem) == (SERVER, ca.cert_pem, "abc.def", None)


def test_client_certificate_by_path(tmp_path: Path, ca: pki.KeyPair, client_pair: pki.KeyPair) -> None:
    for name, data in (
        ("ca.crt", ca.cert_pem),
        ("u.crt", client_pair.cert_pem),
        ("u.key", client_pair.key_pem),
    ):
        (tmp_path / name).write_bytes(data)
    user = {"client-certificate": str(tmp_path / "u.crt"), "client-key": "u.key"}
    path = write(tmp_path / "kc", kubeconfig({"server": SERVER, "certificate-authority": "ca.crt"}, user))
    cfg = Config.from_kubeconfig(path)
    assert (cfg.ca_pem, cfg.cert_pem, cfg.key_pem, cfg.token) == (
        ca.cert_pem,
        client_pair.cert_pem,
        client_pair.key_pem,
        None,
    )
    cfg.ssl_context()  # the pair loads


def test_exec_plugin_token_and_certificate(tmp_path: Path, ca: pki.KeyPair, client_pair: pki.KeyPair) -> None:
    cluster = {"server": SERVER, "certificate-authority-data": base64.b64encode(ca.cert_pem).decode()}
    token_plugin = exec_plugin(tmp_path / "token-plugin", {"token": "from-plugin"})
    user = {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": str(token_plugin)}}
    cfg = Config.from_kubeconfig(write(tmp_path / "kc1", kubeconfig(cluster, user)))
    assert (cfg.token, cfg.ca_pem) == ("from-plugin", ca.cert_pem)

    status = {
        "clientCertificateData": client_pair.cert_pem.decode(),
        "clientKeyData": client_pair.key_pem.decode(),
    }
    cert_plugin = exec_plugin(tmp_path / "cert-plugin", status)
    user = {
        "exec": {
            "apiVersion": "client.authentication.k8s.io/v1",
            "command": "./cert-plugin",  # relative to the kubeconfig's directory, as kubectl resolves it
            "interactiveMode": "Never",
        }
    }
    cfg = Config.from_kubeconfig(write(tmp_path / "kc2", kubeconfig(cluster, user)))
    assert (cfg.token, cfg.cert_pem, cfg.key_pem) == (None, client_pair.cert_pem, client_pair.key_pem)
    assert cert_plugin.exists()


def test_failing_exec_plugin_is_one_error(tmp_path: Path) -> None:
    plugin = exec_plugin(tmp_path / "plugin", {"token": "x"}, exit_code=3)
    user = {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": str(plugin)}}
    with pytest.raises(LabError) as err:
        Config.from_kubeconfig(write(tmp_path / "kc", kubeconfig({"server": SERVER}, user)))
    assert "gave no token or client certificate" in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("cluster", "user", "said"),
    [
        ({"proxy-url": "http://proxy:3128"}, {"token": "t"}, "proxy-url"),
        ({}, {"auth-provider": {"name": "oidc", "config": {}}}, "auth-provider"),
        ({}, {"username": "a", "password": "b"}, "username/password"),
        ({}, {"token": "t", "as": "bob"}, "impersonation (as)"),
    ],
)
def test_unsupported_settings_are_refused_by_name(
    tmp_path: Path, cluster: dict[str, Any], user: dict[str, Any], said: str
) -> None:
    path = write(tmp_path / "kc", kubeconfig({"server": SERVER, **cluster}, user))
    with pytest.raises(LabError) as err:
        Config.from_kubeconfig(path)
    assert said in str(err.value) and "does not support" in str(err.value)


def test_backing_add_refuses_an_unsupported_kubeconfig_in_one_line(tmp_path: Path, run_lab: Any) -> None:
    path = write(tmp_path / "kc", kubeconfig({"server": SERVER}, {"auth-provider": {"name": "gcp"}}))
    r = run_lab("backing", "add", "b1", "--kubeconfig", str(path))
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: kubeconfig ") and "auth-provider" in lines[0]


def test_404_is_not_found() -> None:
    body = json.dumps({"kind": "Status", "reason": "NotFound", "message": 'configmaps "x" not found'})
    err = api_error(404, body.encode(), None, "GET /api/v1/namespaces/d/configmaps/x")
    assert isinstance(err, NotFound) and err.status == 404 and err.reason == "NotFound"
    other = api_error(403, b"forbidden", None, "GET /")
    assert isinstance(other, ApiError) and not isinstance(other, NotFound)
