"""Workload kube-apiservers as supervised local processes: real tenant etcd, real kube-apiserver,
real supervisord, in a tmp lab home (binaries from the shared cache)."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from support.etcd import RunningEtcd

from lab import build, naming, pki, workload_apiserver
from lab.backing import local
from lab.config import Settings, default_home
from lab.etcd import tenants
from lab.kube import ApiError, Client
from lab.runtime.ports import listener_pid
from lab.runtime.supervise import Program, Supervisor, ensure_running, programs_dir


def _free_indexes(count: int) -> list[int]:
    """Indexes whose 127.1.x.y:6443 nobody listens on (other test runs may share the host)."""
    out, i = [], 40000 + (os.getpid() % 2000) * 4
    while len(out) < count:
        host, port = naming.local_endpoint(i)
        with socket.socket() as s:
            try:
                s.bind((host, port))
                out.append(i)
            except OSError:
                pass
        i += 1
    return out


@pytest.fixture(scope="module")
def apiserver_bin() -> Path:
    return build.ensure(Settings(home=default_home()), ["kube-apiserver"], log=print)["kube-apiserver"]


@pytest.fixture(scope="module")
def settings(tenant_etcd: RunningEtcd, apiserver_bin: Path) -> Iterator[Settings]:
    """The tenant etcd's lab home, with the shared binary cache; supervisord stopped at the end."""
    s = tenant_etcd.settings.model_copy(update={"bin_cache": default_home() / "bin"})
    assert local.apiserver_argv(s, "x", 1, workload_apiserver.PkiPaths.of(s, "x"), "")[0] == str(
        apiserver_bin
    )
    sup = ensure_running(s)
    yield s
    sup.shutdown()


@pytest.fixture(scope="module")
def clusters(settings: Settings) -> Iterator[list[str]]:
    idx = _free_indexes(2)
    names = local.ensure(settings, idx)
    local.wait_ready(settings, names)
    yield names
    local.remove(settings, names)


def _help_flags(binary: Path) -> set[str]:
    out = subprocess.run([str(binary), "--help"], capture_output=True, text=True, timeout=60).stdout
    return set(re.findall(r"^\s+(?:-\w, )?(--[a-z0-9-]+)", out, re.M))


def test_every_flag_exists_in_the_real_help(apiserver_bin: Path, tmp_path: Path) -> None:
    s = Settings(home=tmp_path)
    argv = local.apiserver_argv(
        s, "test-1", 1, workload_apiserver.PkiPaths.of(s, "test-1"), "https://127.0.0.1:2379"
    )
    known = _help_flags(apiserver_bin)
    assert len(known) > 100
    used = {a.split("=", 1)[0] for a in argv[1:]}
    assert used - known == set()
    help_text = subprocess.run([str(apiserver_bin), "--help"], capture_output=True, text=True).stdout
    for plugin in workload_apiserver.DISABLED_ADMISSION:
        assert re.search(rf"\b{plugin}\b", help_text), plugin


def test_loopback_aliases_need_no_configuration() -> None:
    host, _ = naming.local_endpoint(0x1234)
    assert host == "127.1.18.52"
    with socket.socket() as s:
        s.bind((host, 0))
        s.listen()
        with socket.create_connection(s.getsockname(), timeout=5):
            pass


def test_apiservers_run_supervised_on_their_own_address(settings: Settings, clusters: list[str]) -> None:
    pids = local.running(settings)
    for name in clusters:
        index = naming.parse_index(settings.prefix, name)
        assert index is not None
        host, port = naming.local_endpoint(index)
        conns = psutil.Process(pids[name]).net_connections(kind="tcp")
        assert any(c.laddr.ip == host and c.laddr.port == port and c.status == "LISTEN" for c in conns)
        kubeconfig = pki.cluster_pki_dir(settings, name) / "admin.kubeconfig"
        assert kubeconfig.stat().st_mode & 0o777 == 0o600
        with Client.from_kubeconfig(kubeconfig) as c:
            assert c.config.server == f"https://{host}:{port}"
            names = {n["metadata"]["name"] for n in c.list("v1", "Namespace")}
            assert {"default", "kube-system"} <= names
            # Trims in effect: no alpha/beta groups
            groups = {g["name"] for g in c.request("GET", "/apis")["groups"]}
            assert "policy" in groups and "storage.k8s.io" in groups and "apps" in groups
            assert "resource.k8s.io" in groups  # GA in 1.34
            assert all(
                "alpha" not in v["version"]
                for g in c.request("GET", "/apis")["groups"]
                for v in g["versions"]
            )


def test_ensure_again_changes_nothing(settings: Settings, clusters: list[str]) -> None:
    before = local.running(settings)
    idx = [naming.parse_index(settings.prefix, n) for n in clusters]
    assert local.ensure(settings, [i for i in idx if i is not None]) == clusters
    assert {n: before[n] for n in clusters} == {n: local.running(settings)[n] for n in clusters}


def test_tenants_are_isolated(settings: Settings, clusters: list[str], tenant_etcd: RunningEtcd) -> None:
    a, b = clusters
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "only-a", "namespace": "default"}}
    with Client.from_kubeconfig(local.admin_kubeconfig(settings, a)) as ca:
        ca.apply_one(cm)
        assert ca.get("v1", "ConfigMap", "only-a", "default") is not None
    with Client.from_kubeconfig(local.admin_kubeconfig(settings, b)) as cb:
        assert cb.get("v1", "ConfigMap", "only-a", "default") is None
    with tenant_etcd.root() as root:
        assert root.get(f"/{a}/configmaps/default/only-a".encode()) is not None
        assert root.get(f"/{b}/configmaps/default/only-a".encode()) is None


def test_a_foreign_client_cert_is_refused(settings: Settings, clusters: list[str]) -> None:
    """Cluster a's admin cert does not open cluster b: each apiserver trusts only its own CA."""
    a, b = clusters
    _server, _ca, client_a = pki.kubeconfig_client(local.admin_kubeconfig(settings, a))
    server_b, ca_b, _client = pki.kubeconfig_client(local.admin_kubeconfig(settings, b))
    kc = pki.render_kubeconfig("x", server_b, ca_b, client_a)
    with Client.from_kubeconfig(kc, attempts=1) as c, pytest.raises(ApiError) as err:
        c.list("v1", "Namespace")
    assert err.value.status == 401


def test_remove_leaves_nothing(settings: Settings, tenant_etcd: RunningEtcd) -> None:
    [index] = _free_indexes(1)
    [name] = local.ensure(settings, [index])
    local.wait_ready(settings, [name])
    pid = local.running(settings)[name]
    with Client.from_kubeconfig(local.admin_kubeconfig(settings, name)) as c:
        c.apply_one(
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "namespace": "default"}}
        )
    local.remove(settings, [name])
    assert name not in local.running(settings)
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert Supervisor(settings).process(local.program_name(name)) is None
    assert not (programs_dir(settings) / f"{local.program_name(name)}.conf").exists()
    assert not (settings.clusters_dir / name).exists()
    with tenant_etcd.root() as root:
        assert name not in {t.name for t in tenants.list_tenants(root)}
        assert root.count(f"/{name}/".encode(), f"/{name}0".encode()) == 0
    local.remove(settings, [name])  # again: nothing left to remove is fine


def test_remove_of_a_mixed_batch_leaves_no_orphaned_keys(tenant_etcd: RunningEtcd) -> None:
    """One batch with a cluster that has its tenant record and one that a half-done delete left as
    keys only (user and role gone): every key of both goes, and the tenant with it."""
    with tenant_etcd.root() as root:
        tenants.create(root, "mixed-1")
        root.put(b"/mixed-1/registry/configmaps/default/a", b"1")
        root.put(b"/mixed-2/registry/configmaps/default/b", b"2")  # no user, no role: an orphan
    local.remove(tenant_etcd.settings, ["mixed-1", "mixed-2"])
    with tenant_etcd.root() as root:
        assert root.count(b"/mixed-1/", b"/mixed-10") == 0
        assert root.count(b"/mixed-2/", b"/mixed-20") == 0
        assert not tenants.exists(root, "mixed-1")


@pytest.fixture
def stand_in_home(tenant_etcd: RunningEtcd, tmp_path: Path) -> Iterator[Settings]:
    """A short lab home of its own that reaches the tenant etcd (its PKI copied) and whose
    kube-apiserver is a stand-in that only sleeps: what supervision does, without the real binary."""
    home = Path(os.environ.get("TMPDIR", "/tmp")) / f"labwkl-{os.getpid()}-{tmp_path.name[-12:]}"
    shutil.copytree(tenant_etcd.settings.pki_dir, home / "pki")
    s = tenant_etcd.settings.model_copy(update={"home": home, "bin_cache": tmp_path / "bin"})
    exe = build.binary_path(s, "kube-apiserver")
    exe.parent.mkdir(parents=True)
    exe.write_text(f"#!{sys.executable}\nimport time\ntime.sleep(600)\n")
    exe.chmod(0o755)
    sup = ensure_running(s)
    try:
        yield s
    finally:
        sup.shutdown()
        shutil.rmtree(home, ignore_errors=True)


def _pid_when_running(sup: Supervisor, name: str, timeout: float = 20) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = sup.process(name)
        if info and info["statename"] == "RUNNING" and info["pid"]:
            return int(info["pid"])
        time.sleep(0.1)
    raise AssertionError(f"{name} not RUNNING within {timeout}s: {sup.process(name)}")


def test_ensure_again_restarts_a_stopped_apiserver(stand_in_home: Settings) -> None:
    """create-clusters run again converges: an apiserver program left STOPPED runs again."""
    [index] = _free_indexes(1)
    sup = Supervisor(stand_in_home)
    [name] = local.ensure(stand_in_home, [index], sup)
    program = local.program_name(name)
    try:
        first = _pid_when_running(sup, program)
        sup.rpc.stopProcess(program, True)
        assert sup.process(program)["statename"] == "STOPPED"  # type: ignore[index]
        assert local.ensure(stand_in_home, [index], sup) == [name]
        assert _pid_when_running(sup, program) != first
    finally:
        local.remove(stand_in_home, [name], sup)


def test_preflight_owns_an_apiserver_still_starting(settings: Settings) -> None:
    """A create killed within supervisord's startsecs leaves its apiserver STARTING and already
    listening; the re-run's address check must take it for this home's own, not a stranger's."""
    [index] = _free_indexes(1)
    name = naming.cluster_name(settings.prefix, index)
    host, port = naming.local_endpoint(index)
    holder = f"import socket,time;s=socket.socket();s.bind(({host!r},{port}));s.listen();time.sleep(120)"
    sup = Supervisor(settings)
    sup.converge([Program(local.program_name(name), [sys.executable, "-c", holder])])
    try:
        deadline = time.monotonic() + 10
        while listener_pid(port, host) is None:
            assert time.monotonic() < deadline, "the holder never listened"
            time.sleep(0.02)
        state = sup.process(local.program_name(name))
        assert state is not None
        local.LocalBacking(settings).preflight([(name, index)])  # STARTING or RUNNING: ours either way
        print(f"preflight passed with the program {state['statename']}")
    finally:
        local.remove(settings, [name])
