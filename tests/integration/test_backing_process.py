"""The process backing over real SSH: one network-namespace host (tests/support/hosts.py) provisioned by
playbooks/backing-cluster.yml with backing_runtime=process (lab from a wheel, offline; the real etcd
and kube-apiserver from the binary cache), registered with lab.backing.process.register, then driven
through the Backing contract from this machine as the controller.

What is real: sshd, the playbook, lab and supervisord on the host, the host's multi-tenant etcd (TLS,
client-cert auth) and its kube-apiservers on the host's own address; /readyz is asked from here, as the
management cluster's controllers would. The host shares this machine's filesystem and process table
(only the network is its own), which lets the test look for leftovers directly.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
import urllib3
from support.hosts import (
    NsHost,
    build_lab_wheels,
    namespace_hosts,
    provision_process_hosts,
    unavailable_reason,
)

from lab import build, pki
from lab.backing import local, open_backing, store
from lab.backing.process import ProcessBacking, register
from lab.config import Settings, default_home
from lab.errors import LabError
from lab.kube import Config

BINARIES = ("etcd", "kube-apiserver")
CLUSTERS = [("test-961", 961), ("test-962", 962)]


@dataclass(frozen=True)
class ProcessHost:
    host: NsHost
    settings: Settings  # the controller's
    home: Path  # the host's lab home
    provision_seconds: float


def cache_binaries() -> tuple[Path, list[str]]:
    """The shared binary cache and the paths in it the host needs (built first when missing)."""
    cache = Settings(home=default_home())
    paths = build.ensure(cache, list(BINARIES), log=print)
    return cache.bin_dir, [str(paths[b].relative_to(cache.bin_dir)) for b in BINARIES]


@pytest.fixture(scope="module")
def process_host() -> Iterator[ProcessHost]:
    reason = unavailable_reason()
    if reason:
        print(f"skipping process backing tests: {reason}")
        pytest.skip(reason)
    bin_cache, binaries = cache_binaries()
    # Short: the host's supervisord socket lives under <work>/<host>/root/var/lib/metal3-scale-lab/run.
    work = Path(tempfile.mkdtemp(prefix="lbp", dir="/tmp"))
    try:
        wheel, artifacts = build_lab_wheels(work)
        with namespace_hosts(1, work / "h") as hosts:
            prov = provision_process_hosts(hosts, work, wheel, artifacts, bin_cache, binaries)
            print(f"provisioned 1 host in {prov.seconds:.1f}s: {prov.recap}")
            settings = Settings(home=work / "ctl", bin_cache=bin_cache)
            home = hosts[0].root / "var/lib/metal3-scale-lab"
            yield ProcessHost(hosts[0], settings, home, prov.seconds)
            if store.load(settings, "h1") is not None:
                ProcessBacking(settings, store.load(settings, "h1")).down()  # type: ignore[arg-type]
    finally:
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="module")
def backing(process_host: ProcessHost) -> ProcessBacking:
    h = process_host.host
    started = time.monotonic()
    entry = register(process_host.settings, "h1", host=h.address, identity=h.client_key, capacity=5)
    print(f"register (ssh lab --version, then lab host up: etcd started): {time.monotonic() - started:.2f}s")
    b = open_backing(process_host.settings, "h1")
    assert isinstance(b, ProcessBacking) and entry.runtime == "process"
    return b


def _host_processes(home: Path) -> list[str]:
    """Command lines of processes that run from the host's lab home (shared process table)."""
    out = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if str(home) in cmd:
            out.append(cmd)
    return out


def test_register_refuses_a_host_without_lab_and_saves_nothing(process_host: ProcessHost) -> None:
    h = process_host.host
    with pytest.raises(LabError) as err:
        register(
            process_host.settings,
            "nolab",
            host=h.address,
            identity=h.client_key,
            capacity=1,
            env_file="/nonexistent/lab.env",
        )
    msg = str(err.value)
    assert "\n" not in msg and f"root@{h.address}:22 does not answer 'lab --version'" in msg
    assert store.load(process_host.settings, "nolab") is None
    assert not store.backing_dir(process_host.settings, "nolab").exists()


def test_register_records_the_host_and_starts_its_etcd(
    process_host: ProcessHost, backing: ProcessBacking
) -> None:
    entry = store.load(process_host.settings, "h1")
    assert entry is not None and entry.capacity == 5
    assert entry.spec["host"] == process_host.host.address and entry.spec["user"] == "root"
    assert entry.spec["identity"] == str(process_host.host.client_key)
    known = backing.known_hosts
    assert known.stat().st_mode & 0o777 == 0o600
    # the host key learned at registration is the host's real key (the line may be hashed)
    real = process_host.host.known_hosts.read_text().split()[1:3]
    assert [ln.split()[1:3] for ln in known.read_text().splitlines()] == [real]
    # the host's etcd runs under its supervisord, with auth on (tenant list needs the root cert)
    assert json.loads(backing.run(["etcd", "tenants", "-o", "json"])) == []
    assert any("--name=lab-tenants" in c for c in _host_processes(process_host.home))
    # the host's CA is the backing's own, not this machine's local etcd CA
    host_ca = (process_host.home / "pki/etcd-ca/ca.crt").read_bytes()
    assert host_ca == backing.etcd_ca().cert_pem
    assert backing.etcd_servers() == ["https://127.0.0.1:2379"]


def test_two_clusters_answer_readyz_from_here_then_remove_leaves_nothing(
    process_host: ProcessHost, backing: ProcessBacking
) -> None:
    settings, home, address = process_host.settings, process_host.home, process_host.host.address
    names = [n for n, _i in CLUSTERS]
    backing.timings.clear()
    backing.ensure(CLUSTERS)
    backing.wait_ready(names, 120)
    for name, index in CLUSTERS:
        assert backing.endpoint(name, index) == (address, 20000 + index)
        cfg = Config.from_kubeconfig(local.admin_kubeconfig(settings, name))
        assert cfg.server == f"https://{address}:{20000 + index}"
        pool = urllib3.PoolManager(ssl_context=cfg.ssl_context(), retries=False)
        res = pool.request("GET", f"{cfg.server}/readyz", timeout=10)
        assert (res.status, res.data) == (200, b"ok")
        # the host got exactly the PKI made here
        assert (home / f"clusters/{name}/pki/apiserver.crt").read_bytes() == (
            pki.cluster_pki_dir(settings, name) / "apiserver.crt"
        ).read_bytes()
    assert backing.present() == set(names) and backing.used() == 2
    tenants = json.loads(backing.run(["etcd", "tenants", "-o", "json"]))
    assert sorted(t["name"] for t in tenants) == names and all(t["keys"] > 0 for t in tenants)
    pids = {n: [c for c in _host_processes(home) if f"/{n}/pki/" in c] for n in names}
    assert all(len(v) == 1 for v in pids.values()), pids

    backing.ensure(CLUSTERS)  # idempotent: nothing restarts
    assert {n: [c for c in _host_processes(home) if f"/{n}/pki/" in c] for n in names} == pids
    print(f"ssh batches: {[(what, round(s, 2)) for what, s in backing.timings]}")

    backing.remove(names)
    assert backing.present() == set()
    assert json.loads(backing.run(["etcd", "tenants", "-o", "json"])) == []
    assert [c for c in _host_processes(home) if "/clusters/" in c] == []
    assert not any((home / "clusters").glob("test-*")) if (home / "clusters").exists() else True
    assert not list((home / "logs").glob("wkl-*"))
    assert not list((home / "run/supervisor/programs").glob("wkl-*"))
    assert not any(pki.cluster_pki_dir(settings, n).exists() for n in names)
    backing.remove(names)  # what is gone already is fine


def test_wait_ready_names_the_laggard_with_its_log_line(
    process_host: ProcessHost, backing: ProcessBacking
) -> None:
    name, index = "test-963", 963
    backing.ensure([(name, index)])
    try:
        # the host loses the apiserver (as after a crash); this machine still holds the PKI
        backing.run(["host", "remove", name])
        with pytest.raises(LabError) as err:
            backing.wait_ready([name], 2)
        assert f"first {name}" in str(err.value) and "\n" not in str(err.value)
    finally:
        backing.remove([name])
