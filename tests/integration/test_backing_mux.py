"""The mux backing against the real lab-mux binary (built into the shared cache), under a real
supervisord in a tmp lab home: two clusters registered, served with their own CAs through the
kubeconfigs lab writes, only to a client certificate of their own CA and only on loopback,
unregistered to nothing (no listener, no objects)."""

from __future__ import annotations

import os
import signal
import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from support.ports import free_block

from lab import build, naming, pki
from lab.backing import mux, open_backing
from lab.config import Ports, Settings, default_home
from lab.errors import LabError
from lab.kube import Client
from lab.runtime import poll
from lab.runtime.ports import listener_pid
from lab.runtime.supervise import ensure_running, log_file


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def _free_indexes(count: int) -> list[int]:
    """Indexes whose mux port nobody holds (other runs may share the host)."""
    out, i = [], 8000 + (os.getpid() % 500) * 4
    while len(out) < count:
        if _port_free(naming.mux_endpoint(i)[1]):
            out.append(i)
        i += 1
    return out


def _listening(port: int, host: str = naming.MUX_HOST) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((host, port)) == 0


def _get(port: int, ca_pem: bytes, client: pki.KeyPair | None, tmp: Path) -> bytes:
    """GET /api over TLS trusting ca_pem, with the client certificate given (none when None): the
    first bytes of the answer, or raises the ssl error."""
    ctx = ssl.create_default_context(cadata=ca_pem.decode())
    if client is not None:
        cert, key = tmp / "client.crt", tmp / "client.key"
        cert.write_bytes(client.cert_pem)
        key.write_bytes(client.key_pem)
        key.chmod(0o600)
        ctx.load_cert_chain(cert, key)
    with (
        socket.create_connection((naming.MUX_HOST, port), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname=naming.MUX_HOST) as tls,
    ):
        tls.sendall(b"GET /api HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        return tls.recv(64)


@contextmanager
def _registered(settings: Settings, count: int) -> Iterator[tuple[mux.MuxBacking, list[tuple[str, int]]]]:
    """`count` clusters registered with lab-mux on free ports and ready to serve: (the backing,
    [(name, index)]); removed at the end, also when the test fails."""
    backing = mux.MuxBacking(settings)
    clusters = [(naming.cluster_name(settings.prefix, i), i) for i in _free_indexes(count)]
    try:
        backing.ensure(clusters)
        backing.wait_ready([n for n, _ in clusters], 60)
        yield backing, clusters
    finally:
        backing.remove([n for n, _ in clusters])


def _admin(settings: Settings, name: str) -> Path:
    """The admin kubeconfig lab writes for a cluster."""
    return pki.cluster_pki_dir(settings, name) / "admin.kubeconfig"


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """A tmp lab home with the shared binary cache and its own control port; supervisord stopped at
    the end (lab-mux with it)."""
    build.ensure(Settings(home=default_home()), [mux.PROGRAM_NAME], log=print)
    s = Settings(
        home=tmp_path_factory.mktemp("muxhome"),
        bin_cache=default_home() / "bin",
        ports=Ports(mux_control=free_block(1)),
    )
    sup = ensure_running(s)
    yield s
    sup.shutdown()


def test_two_clusters_served_then_unregistered_to_nothing(settings: Settings) -> None:
    backing = open_backing(settings, naming.MUX_BACKING)
    assert isinstance(backing, mux.MuxBacking)
    indexes = _free_indexes(2)
    clusters = [(naming.cluster_name(settings.prefix, i), i) for i in indexes]
    names = [n for n, _ in clusters]

    backing.ensure(clusters)
    backing.ensure(clusters)  # a re-run registers nothing new and fails nothing
    backing.wait_ready(names, 60)
    assert backing.present() == set(names) and backing.used() == 2

    token = mux.token_path(settings)
    assert token.stat().st_mode & 0o777 == 0o600
    for name, i in clusters:
        kubeconfig = _admin(settings, name)
        assert kubeconfig.stat().st_mode & 0o777 == 0o600
        with Client.from_kubeconfig(kubeconfig, attempts=2) as client:
            assert client.config.server == f"https://{naming.MUX_HOST}:{naming.mux_endpoint(i)[1]}"
            got = {ns["metadata"]["name"] for ns in client.list("v1", "Namespace")}
            assert got == {"default", "kube-system", "kube-public", "kube-node-lease"}
            client.request(
                "POST",
                "/api/v1/namespaces/kube-system/configmaps",
                body={"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"only-{name}"}},
            )
    # each cluster's objects are its own
    first, second = (_admin(settings, n) for n in names)
    with Client.from_kubeconfig(second) as client:
        assert client.get("v1", "ConfigMap", f"only-{names[0]}", "kube-system") is None
        assert client.get("v1", "ConfigMap", f"only-{names[1]}", "kube-system") is not None

    # a wrong token is refused
    wrong = mux.Control(mux.control_url(settings), b"x" * 64)
    with pytest.raises(LabError, match="401"):
        wrong.clusters()

    # KCP's EtcdClusterHealthy for a mux cluster: its store is lab-mux's, healthy while it serves it
    assert backing.tenant_health(names) == {names[0]: None, names[1]: None}

    backing.remove([names[0]])
    assert backing.tenant_health(names) == {names[0]: "lab-mux does not serve it (no store)", names[1]: None}
    assert not _listening(naming.mux_endpoint(indexes[0])[1])
    assert _listening(naming.mux_endpoint(indexes[1])[1])
    assert backing.present() == {names[1]}
    assert not pki.cluster_pki_dir(settings, names[0]).exists()

    # registered again under the same name: a fresh cluster, none of the old objects
    backing.ensure([clusters[0]])
    backing.wait_ready([names[0]], 60)
    with Client.from_kubeconfig(first) as client:
        assert client.get("v1", "ConfigMap", f"only-{names[0]}", "kube-system") is None

    backing.remove(names)
    backing.remove(names)  # idempotent
    for i in indexes:
        assert not _listening(naming.mux_endpoint(i)[1])
    assert backing.present() == set() and backing.used() == 0
    log = log_file(settings, mux.PROGRAM_NAME).read_text()
    assert f'"msg"="registered" "cluster"="{names[0]}"' in log, log[-2000:]


def test_only_the_clusters_own_client_certificate_gets_in(settings: Settings, tmp_path: Path) -> None:
    """No client certificate, or one from another cluster's CA, is refused in the TLS handshake; the
    admin kubeconfig's gets in; nothing answers on 127.0.0.1 at the cluster's port (loopback
    127.2.0.1 only). The CAs are lab's ECDSA default."""
    with _registered(settings, 2) as (_backing, [(one, i1), (two, _)]):
        port = naming.mux_endpoint(i1)[1]
        _, ca_one, admin_one = pki.kubeconfig_client(_admin(settings, one).read_bytes())
        _, _, admin_two = pki.kubeconfig_client(_admin(settings, two).read_bytes())
        ca_key = x509.load_pem_x509_certificate(ca_one).public_key()
        assert isinstance(ca_key, ec.EllipticCurvePublicKey)  # lab's default, not RSA
        assert _get(port, ca_one, admin_one, tmp_path).startswith(b"HTTP/1.1 200")
        for client in (None, admin_two):
            with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)):
                _get(port, ca_one, client, tmp_path)
        assert _listening(port) and not _listening(port, "127.0.0.1")


def test_the_node_simulator_writes_into_a_mux_cluster(settings: Settings) -> None:
    """What the simulator writes (no server-side apply: creates and merge patches, status through
    the object where no status subresource is served) lands in the in-memory API as on a real one."""
    from lab import nodesim

    with _registered(settings, 1) as (_backing, [(name, i)]):
        kubeconfig = _admin(settings, name)
        with Client.from_kubeconfig(kubeconfig, attempts=2) as client:
            version = settings.versions.kubernetes
            host, port = naming.mux_endpoint(i)
            args = (client, f"{name}-cp", "uid-1", version, True, name, f"{host}:{port}")
            assert nodesim.write_node(*args) is True
            assert nodesim.write_node(*args) is False  # all there: nothing written again
            node = client.get("v1", "Node", f"{name}-cp")
            assert node is not None and node["metadata"]["labels"][nodesim.UUID_LABEL] == "uid-1"
            assert any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"]["conditions"])
            pods = client.list("v1", "Pod", "kube-system")
            assert sorted(p["metadata"]["labels"]["component"] for p in pods) == sorted(nodesim.COMPONENTS)
            assert all(p["status"]["phase"] == "Running" for p in pods)
            assert client.get("v1", "ConfigMap", "kubeadm-config", "kube-system") is not None


def test_kill_9_brings_the_same_endpoints_back_with_a_fresh_store(settings: Settings) -> None:
    """supervisord starts lab-mux again after a kill; lab-mux registers its clusters again from its
    state file (0600) before its control API answers: same port, same CA (the kubeconfig works as
    before); the objects are not kept (the node simulator writes them again, tested in e2e)."""
    with _registered(settings, 1) as (backing, [(name, _i)]):
        kubeconfig = _admin(settings, name)
        with Client.from_kubeconfig(kubeconfig, attempts=2) as client:
            client.request(
                "POST",
                "/api/v1/namespaces/kube-system/configmaps",
                body={"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "before-kill"}},
            )
        assert mux.state_path(settings).stat().st_mode & 0o777 == 0o600
        ctl = mux.control(settings)
        assert ctl is not None
        before = ctl.health()["started"]
        pid = listener_pid(settings.ports.mux_control)
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        assert poll.until(lambda: ctl.alive() and ctl.health()["started"] != before, 30, 0.2)
        assert listener_pid(settings.ports.mux_control) not in (None, pid)
        assert backing.present() == {name}
        with Client.from_kubeconfig(kubeconfig, attempts=3) as client:
            namespaces = {n["metadata"]["name"] for n in client.list("v1", "Namespace")}
            assert namespaces == {"default", "kube-system", "kube-public", "kube-node-lease"}
            assert client.get("v1", "ConfigMap", "before-kill", "kube-system") is None
    assert name not in mux.registered(settings)
