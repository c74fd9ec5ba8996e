"""lab.preflight: what N clusters need from this host against its limits (pure), and its reader."""

from __future__ import annotations

import os
from dataclasses import replace

import pytest

from lab import preflight
from lab.errors import LabError
from lab.preflight import Demand, Host, MiB

#: a roomy host with a small stack running: nothing here refuses 100 local clusters
ROOMY = Host(
    inotify_instances_limit=8192,
    inotify_instances_used=30,
    inotify_watches_limit=1048576,
    inotify_watches_used=200,
    process_files_limit=65536,
    process_files_used=300,
    file_max=1_000_000,
    files_used=5000,
    memory_available=24 * 1024 * MiB,
    ephemeral_ports=28232,
    etcd_connections=10,
    stack_running=True,
)


def by_name(checks: list[preflight.Check]) -> dict[str, preflight.Check]:
    return {c.name: c for c in checks}


def test_a_roomy_host_fits_100_local_clusters() -> None:
    assert preflight.failures(ROOMY, Demand(local_clusters=100)) == []


def test_debian_default_inotify_instances_refuse_100_local_clusters() -> None:
    host = replace(ROOMY, inotify_instances_limit=128)
    [short] = preflight.failures(host, Demand(local_clusters=100))
    assert short.name == "fs.inotify.max_user_instances"
    assert short.needed == 30 + 100 * preflight.WORKLOAD.inotify_instances
    # the suggested value covers the need with head room, as a power of two
    assert short.fix == "sysctl -w fs.inotify.max_user_instances=512"
    assert short.sysctl == ("fs.inotify.max_user_instances", "512")
    line = short.message(Demand(local_clusters=100))
    assert line == (
        "fs.inotify.max_user_instances is 128; this run needs 330 (30 in use + 300 for 100 local cluster(s)): "
        "sysctl -w fs.inotify.max_user_instances=512"
    )


def test_what_runs_already_counts_so_a_second_create_accounts_for_the_first() -> None:
    limit = 30 + 40 * preflight.WORKLOAD.inotify_instances
    host = replace(ROOMY, inotify_instances_limit=limit)
    assert not preflight.failures(host, Demand(local_clusters=40))
    # the first 40 are running now: their instances are in use
    after = replace(host, inotify_instances_used=limit)
    assert [c.name for c in preflight.failures(after, Demand(local_clusters=1))] == [
        "fs.inotify.max_user_instances"
    ]


def test_clusters_on_other_backings_cost_no_inotify_or_memory_here() -> None:
    host = replace(ROOMY, inotify_instances_limit=31, memory_available=10 * MiB)
    checks = by_name(preflight.checks(host, Demand(remote_clusters=500)))
    assert checks["fs.inotify.max_user_instances"].adds == 0
    assert checks["available memory (MemAvailable)"].adds == 0
    # ... but their clients' descriptors are this host's
    assert checks["fs.file-max"].adds == 500 * preflight.FILES_PER_REMOTE_CLUSTER_STACK
    assert (
        checks["open files per stack process (RLIMIT_NOFILE)"].adds
        == 500 * preflight.FILES_PER_REMOTE_CLUSTER_BUSIEST
    )


def test_memory_uses_the_measured_apiserver_figure() -> None:
    host = replace(ROOMY, memory_available=1000 * MiB)
    [short] = preflight.failures(host, Demand(local_clusters=6))
    assert short.name == "available memory (MemAvailable)"
    assert short.needed == 6 * 190 and short.limit == 1000
    assert short.sysctl is None and short.rlimit is None  # nothing --raise-limits can do
    assert "--backing" in short.fix


def test_the_stack_itself_counts_when_it_starts() -> None:
    host = replace(ROOMY, inotify_instances_used=0, inotify_instances_limit=5, stack_running=False)
    [short] = preflight.failures(host, Demand(stack=True))
    assert short.adds == preflight.STACK.inotify_instances


def test_open_files_per_process_grow_with_every_cluster() -> None:
    # the tenant etcd holds every local apiserver's connections: 60 descriptors per local cluster
    host = replace(ROOMY, process_files_limit=1024, process_files_used=300)
    fits = (1024 - 300) // preflight.FILES_PER_LOCAL_CLUSTER_BUSIEST
    assert fits == 12
    assert not preflight.failures(host, Demand(local_clusters=fits))
    [short] = preflight.failures(host, Demand(local_clusters=fits + 1))
    assert short.name.startswith("open files per stack process")
    assert short.rlimit is not None and short.rlimit >= preflight.SUPERVISED_FILES
    assert "ulimit -n" in short.fix
    # clusters elsewhere cost only the managers' clients here
    remote = (1024 - 300) // preflight.FILES_PER_REMOTE_CLUSTER_BUSIEST
    assert not preflight.failures(host, Demand(remote_clusters=remote))


def test_a_fresh_stack_starts_from_its_busiest_process() -> None:
    host = replace(ROOMY, process_files_limit=1024, process_files_used=0, stack_running=False)
    check = {c.name: c for c in preflight.checks(host, Demand(local_clusters=10, stack=True))}
    files = check["open files per stack process (RLIMIT_NOFILE)"]
    assert files.needed == preflight.BUSIEST_FILES + 10 * preflight.FILES_PER_LOCAL_CLUSTER_BUSIEST
    assert "ulimit -Hn" in files.fix


def test_ephemeral_ports_to_the_tenant_etcd() -> None:
    # every local apiserver keeps 60 connections from 127.0.0.1 to the one tenant etcd address
    host = replace(ROOMY, ephemeral_ports=28232, etcd_connections=100)
    fits = (28232 - 100) // preflight.ETCD_CONNECTIONS
    name = "ephemeral ports to the tenant etcd (net.ipv4.ip_local_port_range)"
    assert by_name(preflight.checks(host, Demand(local_clusters=fits)))[name].ok
    ports = by_name(preflight.checks(host, Demand(local_clusters=fits + 1)))[name]
    assert not ports.ok and ports.needed == 100 + (fits + 1) * 60
    assert ports.sysctl == ("net.ipv4.ip_local_port_range", "1024 65000")


def test_unknown_limits_never_refuse() -> None:
    host = replace(ROOMY, inotify_instances_limit=None, inotify_watches_limit=None, file_max=None)
    checks = by_name(preflight.checks(host, Demand(local_clusters=2000)))
    for name in ("fs.inotify.max_user_instances", "fs.inotify.max_user_watches", "fs.file-max"):
        assert checks[name].ok
    assert not checks["available memory (MemAvailable)"].ok  # known limits still do


def test_room_is_the_largest_count_that_fits() -> None:
    host = replace(ROOMY, inotify_instances_limit=128)
    fit, limit = preflight.room(host, 100)
    assert fit == (128 - 30) // preflight.WORKLOAD.inotify_instances
    assert limit == "fs.inotify.max_user_instances"
    assert not preflight.failures(host, Demand(local_clusters=fit))
    assert preflight.failures(host, Demand(local_clusters=fit + 1))
    assert preflight.room(ROOMY, 100) == (100, "")


def test_ensure_refuses_with_the_first_short_limit() -> None:
    host = replace(ROOMY, inotify_instances_limit=128)
    with pytest.raises(LabError) as e:
        preflight.ensure(lambda: host, Demand(local_clusters=100), raise_limits=False)
    assert str(e.value).startswith("fs.inotify.max_user_instances is 128;")
    # a run that adds nothing is not refused for what is in use
    over = replace(host, inotify_instances_used=500)
    assert preflight.ensure(lambda: over, Demand(), raise_limits=False) is over


def test_raise_limits_needs_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    host = replace(ROOMY, inotify_instances_limit=128)
    with pytest.raises(LabError, match="--raise-limits needs root"):
        preflight.ensure(lambda: host, Demand(local_clusters=100), raise_limits=True)


def test_suggested_values() -> None:
    assert preflight.suggested(330) == 512
    assert preflight.suggested(420) == 1024  # 100 clusters on top of a busy machine: the README's example
    assert preflight.suggested(10, floor=65536) == 65536


# --- the reader, on this very process ----------------------------------------------------------


def test_inotify_usage_counts_this_process_instances_and_watches(tmp_path) -> None:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.inotify_init1(os.O_CLOEXEC)
    assert fd >= 0
    try:
        for name in ("a", "b"):
            (tmp_path / name).touch()
            assert libc.inotify_add_watch(fd, str(tmp_path / name).encode(), 0x2) >= 0  # IN_MODIFY
        after = preflight.inotify_usage(os.getuid(), [os.getpid()])
    finally:
        os.close(fd)
    # other processes of this user may start or stop watching meanwhile: ours are at least counted
    assert after.instances >= 1 and after.watches >= 2
    mine = preflight.inotify_usage(os.getuid(), [os.getpid()])
    assert after.files[os.getpid()] == mine.files[os.getpid()] + 1


def test_read_host_reads_the_kernel_limits() -> None:
    host = preflight.read_host([os.getpid()], 1)
    with open("/proc/sys/fs/inotify/max_user_instances") as fh:
        assert host.inotify_instances_limit == int(fh.read())
    assert host.process_files_used > 0 and host.stack_running
    assert host.memory_available > 0 and host.files_used > 0
