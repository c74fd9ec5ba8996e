"""lab.preflight: what N clusters need from this host against its limits (pure), and its reader."""

from __future__ import annotations

import os
from dataclasses import replace

import pytest
from support.host_limits import ROOMY

from lab import naming, preflight
from lab.errors import LabError
from lab.preflight import Demand, MiB


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


def test_clusters_on_other_backings_cost_no_inotify_here_only_the_management_side() -> None:
    host = replace(ROOMY, inotify_instances_limit=31, memory_available=10 * MiB)
    checks = by_name(preflight.checks(host, Demand(remote_clusters=500)))
    assert checks["fs.inotify.max_user_instances"].adds == 0
    # the management kube-apiserver here grows with every cluster, wherever its API lives
    assert checks["available memory (MemAvailable)"].adds == 500 * preflight.MANAGEMENT_MEMORY // MiB
    # ... and their clients' descriptors are this host's
    assert checks["fs.file-max"].adds == 500 * preflight.FILES_PER_REMOTE_CLUSTER_STACK
    assert (
        checks["open files per stack process (RLIMIT_NOFILE)"].adds
        == 500 * preflight.FILES_PER_REMOTE_CLUSTER_BUSIEST
    )


def test_memory_uses_the_measured_apiserver_figure() -> None:
    host = replace(ROOMY, memory_available=1000 * MiB)
    [short] = preflight.failures(host, Demand(local_clusters=6))
    assert short.name == "available memory (MemAvailable)"
    assert short.needed == 6 * (190 * MiB + preflight.MANAGEMENT_MEMORY) // MiB and short.limit == 1000
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


# --- the mux backing: one lab-mux here serves every mux cluster ---------------------------------

MUX_FILES_CHECK = "open files of lab-mux (RLIMIT_NOFILE)"


def test_a_mux_cluster_costs_lab_mux_memory_and_the_management_side_but_no_inotify_or_etcd_port() -> None:
    checks = by_name(preflight.checks(ROOMY, Demand(mux_clusters=1000)))
    assert checks["fs.inotify.max_user_instances"].adds == 0
    assert checks["ephemeral ports to the tenant etcd (net.ipv4.ip_local_port_range)"].adds == 0
    memory = checks["available memory (MemAvailable)"]
    # lab-mux 1.21 MiB + the management kube-apiserver 5.6 MiB per cluster (measured, lab.preflight)
    assert memory.adds == 1000 * (preflight.MUX_MEMORY + preflight.MANAGEMENT_MEMORY) // MiB == 6810
    assert memory.ok  # 1000 fit a roomy 24 GiB host
    assert preflight.failures(ROOMY, Demand(mux_clusters=1000)) == []


def test_mux_clusters_cost_the_stack_what_remote_ones_do_and_lab_mux_its_own_descriptors() -> None:
    mux = by_name(preflight.checks(ROOMY, Demand(mux_clusters=100)))
    remote = by_name(preflight.checks(ROOMY, Demand(remote_clusters=100)))
    busiest = "open files per stack process (RLIMIT_NOFILE)"
    assert mux[busiest].adds == remote[busiest].adds == 100 * preflight.FILES_PER_REMOTE_CLUSTER_BUSIEST
    assert mux["fs.file-max"].adds == remote["fs.file-max"].adds + 100 * preflight.MUX_FILES
    assert mux[MUX_FILES_CHECK].adds == 100 * preflight.MUX_FILES and remote[MUX_FILES_CHECK].adds == 0


def test_lab_mux_open_files_refuse_one_cluster_past_its_limit_with_one_line() -> None:
    # lab-mux runs under supervisord: its RLIMIT_NOFILE is the stack's (process_files_limit)
    host = replace(ROOMY, process_files_limit=1024, mux_files_used=24)
    fits = (1024 - 24) // preflight.MUX_FILES
    assert fits == 100
    assert not preflight.failures(host, Demand(mux_clusters=fits))
    [short] = preflight.failures(host, Demand(mux_clusters=fits + 1))
    assert short.name == MUX_FILES_CHECK and short.rlimit == preflight.SUPERVISED_FILES
    assert short.message(Demand(mux_clusters=fits + 1)) == (
        "open files of lab-mux (RLIMIT_NOFILE) is 1024; this run needs 1034 (24 in use + 1010 for "
        "101 mux cluster(s)): ulimit -n 65536 in the shell that runs `lab down && lab up` "
        "(or --raise-limits as root)"
    )
    with pytest.raises(LabError, match=r"^open files of lab-mux \(RLIMIT_NOFILE\) is 1024;"):
        preflight.ensure(lambda: host, Demand(mux_clusters=fits + 1), raise_limits=False)


def test_the_mux_range_holds_one_port_per_cluster_of_every_lab_home() -> None:
    assert preflight.MUX_PORTS == naming.MUX_MAX_PORT - naming.MUX_PORT_BASE == 12767
    host = replace(ROOMY, mux_listeners=preflight.MUX_PORTS - 5)  # e.g. another lab home's clusters
    assert not preflight.failures(host, Demand(mux_clusters=5))
    [short] = preflight.failures(host, Demand(mux_clusters=6))
    assert short.name == "ports of the mux range (127.2.0.1:20001-32767)"
    assert "--runtime mux" in short.fix and short.sysctl is None and short.rlimit is None


def test_room_for_mux_clusters_and_the_limit_that_stops_the_next() -> None:
    assert preflight.room(ROOMY, 1000, mux=True) == (1000, "")
    host = replace(ROOMY, memory_available=2000 * MiB)
    fit, limit = preflight.room(host, 1000, mux=True)
    assert fit == 2000 * MiB // (preflight.MUX_MEMORY + preflight.MANAGEMENT_MEMORY) == 293
    assert limit == "available memory (MemAvailable)"
    assert not preflight.failures(host, Demand(mux_clusters=fit))
    assert preflight.failures(host, Demand(mux_clusters=fit + 1))
    # a stack that starts first takes its share
    cold = replace(host, stack_running=False, process_files_used=0)
    assert preflight.room(cold, 1000, stack=True, mux=True)[0] < fit


def test_create_counts_the_clusters_placed_on_mux_as_mux_clusters(lab_env) -> None:
    from lab import config
    from lab.cli import _preflight

    # one more than the mux range holds: whichever limit of this host is short first, the line says why
    new = set(range(1, preflight.MUX_PORTS + 2))
    placement = dict.fromkeys(new, naming.MUX_BACKING)
    with pytest.raises(LabError, match=rf"for {len(new)} mux cluster\(s\)\): "):
        _preflight.for_create(config.load(), placement, new, raise_limits=False)


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


def test_listeners_counts_sockets_listening_in_a_port_range() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        assert preflight.listeners("127.0.0.1", port, port) == 0  # bound, not listening
        s.listen()
        assert preflight.listeners("127.0.0.1", port, port) == 1
        assert preflight.listeners("127.0.0.2", port, port) == 0


def test_read_host_counts_lab_mux_descriptors_apart() -> None:
    host = preflight.read_host([os.getpid()], 1, mux_pid=os.getpid())
    assert host.mux_files_used > 0 and host.process_files_used == 0


def test_read_host_reads_the_kernel_limits() -> None:
    host = preflight.read_host([os.getpid()], 1)
    with open("/proc/sys/fs/inotify/max_user_instances") as fh:
        assert host.inotify_instances_limit == int(fh.read())
    assert host.process_files_used > 0 and host.stack_running
    assert host.memory_available > 0 and host.files_used > 0
