"""lab.preflight.Host values built by hand, shared by the preflight and doctor unit tests."""

from __future__ import annotations

from lab.preflight import Host, MiB

#: a roomy host with a small stack running: nothing here refuses 100 local or 1000 mux clusters
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
