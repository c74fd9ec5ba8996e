"""The mux backing against the real lab-mux binary (built into the shared cache), under a real
supervisord in a tmp lab home: two clusters registered, served with their own CAs through the
kubeconfigs lab writes, unregistered to nothing (no listener, no objects)."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.ports import free_block

from lab import build, naming, pki
from lab.backing import mux, open_backing
from lab.config import Ports, Settings, default_home
from lab.errors import LabError
from lab.kube import Client
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


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((naming.MUX_HOST, port)) == 0


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
        kubeconfig = pki.cluster_pki_dir(settings, name) / "admin.kubeconfig"
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
    first, second = (pki.cluster_pki_dir(settings, n) / "admin.kubeconfig" for n in names)
    with Client.from_kubeconfig(second) as client:
        assert client.get("v1", "ConfigMap", f"only-{names[0]}", "kube-system") is None
        assert client.get("v1", "ConfigMap", f"only-{names[1]}", "kube-system") is not None

    # a wrong token is refused
    wrong = mux.Control(mux.control_url(settings), b"x" * 64)
    with pytest.raises(LabError, match="401"):
        wrong.clusters()

    backing.remove([names[0]])
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
    assert "WorkloadClusterListener successfully started" in log, log[-2000:]


def test_an_ecdsa_ca_is_refused_with_one_line(settings: Settings, tmp_path: Path) -> None:
    """The library signs with RSA only: a cluster whose PKI lab made for another backing is refused."""
    from lab import pki_store

    backing = mux.MuxBacking(settings)
    (i,) = _free_indexes(1)
    name = naming.cluster_name(settings.prefix, i)
    host, port = naming.mux_endpoint(i)
    pki_store.cluster_pki(settings, name, host, port, backing.etcd_ca())  # lab's ECDSA default
    try:
        with pytest.raises(LabError, match="not RSA"):
            backing.ensure([(name, i)])
        assert name not in backing.present()
    finally:
        backing.remove([name])


def test_the_node_simulator_writes_into_a_mux_cluster(settings: Settings) -> None:
    """What the simulator writes (no server-side apply: creates and merge patches, status through
    the object where no status subresource is served) lands in the in-memory API as on a real one."""
    from lab import nodesim

    backing = mux.MuxBacking(settings)
    (i,) = _free_indexes(1)
    name = naming.cluster_name(settings.prefix, i)
    try:
        backing.ensure([(name, i)])
        backing.wait_ready([name], 60)
        kubeconfig = pki.cluster_pki_dir(settings, name) / "admin.kubeconfig"
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
    finally:
        backing.remove([name])
