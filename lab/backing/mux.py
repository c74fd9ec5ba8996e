"""Multiplexed workload APIs: one lab-mux process (lab/mux, built by `lab build lab-mux` on CAPI's
in-memory API server library) serves every cluster of this backing, each on its own port of
naming.MUX_HOST (naming.mux_endpoint), with TLS from the cluster's own CA, so the admin kubeconfig
lab writes and CAPI's `<cluster>-kubeconfig` work unchanged.

Why: a real kube-apiserver per cluster costs ~200 MiB, so the local backing stops near 100 clusters
on 24 GiB; a cluster in lab-mux is a resource group of a few in-memory objects.

Security: each cluster's listener binds naming.MUX_HOST only (loopback) and requires a client
certificate signed by that cluster's CA, as a kube-apiserver with --client-ca-file does; the
listener, not the request's Host header, decides which cluster a request reaches.

The process runs under the stack's supervisord as `lab-mux`, started on demand by the first create
on this backing (a stack that never uses it pays nothing, and `lab up` needs no extra build); once
its program file exists supervisord starts it again with the stack. Its control API (lab.muxapi)
listens on 127.0.0.1 (settings.ports.mux_control) and wants the token of <home>/mux/token (0600).

Restart without loss: lab-mux keeps its registrations (name, index, port, CA file paths) in
<home>/mux/clusters.json and registers them again when it starts, before its control API answers,
so every endpoint and kubeconfig is back as it was. The objects are not kept: the node simulator
sees lab-mux's start time change (health) and writes each mux cluster's Node, mirror pods and
kubeadm-config again from the management cluster's view (with the providerID CAPM3 had set), and
CAPI's controllers write theirs again as they reconcile. Measured: 3 clusters whole
(Node, mirror pods) and Available again 1.4-4.8 s after a kill -9 (tests/e2e/test_mux.py); after
`lab down` / `lab up`, 3 clusters whole and Available 16.9 s after `up` began (`up` itself 11.9 s).

Etcd: a cluster's objects live in lab-mux's memory, not in etcd. The manifests still declare
external etcd (the same tenant etcd endpoint and etcd CA as the local backing, so the secrets and
KCP spec are one shape for every backing); KCP with external etcd never dials it, and no tenant is
created. Stacked etcd (KCP's etcd path through the library's fake etcd) is not wired. KCP's
EtcdClusterHealthy (lab.clusters.etcd_health) is True while lab-mux serves the cluster.

CAs are lab's default (ECDSA P-256) as on the local backing: lab-mux signs each cluster's serving
certificate itself, with an RSA or ECDSA CA key alike.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from pathlib import Path

from lab import build, naming, pki, pki_store
from lab.backing import ready
from lab.config import Settings
from lab.errors import LabError
from lab.muxapi import Control, control, control_url, token_path
from lab.runtime import logs, poll
from lab.runtime.files import write_private
from lab.runtime.ports import LOOPBACK, bindable, listener_pid
from lab.runtime.supervise import Program, Supervisor, ensure_running, log_file

PROGRAM_NAME = "lab-mux"
#: after the tenant etcd (100) and before the workload apiservers (800) when supervisord starts all
PRIORITY = 750
#: the process answers its control API within this long of being started (measured: under 1 s idle)
START_TIMEOUT = 60.0


def ensure_token(settings: Settings) -> bytes:
    """The control API's token, created once (0600, 32 random bytes as hex)."""
    path = token_path(settings)
    if not path.is_file():
        write_private(path, secrets.token_hex(32).encode() + b"\n", 0o600, durable=True)
    return path.read_bytes().strip()


def state_path(settings: Settings) -> Path:
    """Where lab-mux keeps its registrations across restarts (0600: names, ports, CA file paths)."""
    return settings.home / "mux" / "clusters.json"


def saved(settings: Settings) -> int:
    """How many clusters lab-mux keeps in its state file: the ones it serves now (it writes the file
    on every register and unregister), or serves again when it next starts. Read without asking it."""
    try:
        return len(json.loads(state_path(settings).read_text()) or [])
    except (OSError, ValueError, TypeError):
        return 0


def program(settings: Settings, host: str | None = None) -> Program:
    """The supervised lab-mux. `host`: the address its clusters' listeners bind; None for this
    machine's mux backing (naming.MUX_HOST, its ports); a process backing host's own address for
    the mux on that host (lab.backing.host), whose ports the controller range-checks."""
    if host is None:
        where = [
            f"--host={naming.MUX_HOST}",
            f"--min-port={naming.MUX_PORT_BASE + 1}",
            f"--max-port={naming.MUX_MAX_PORT}",
        ]
    else:
        where = [f"--host={host}", "--external-host", "--min-port=1025", "--max-port=65535"]
    return Program(
        name=PROGRAM_NAME,
        argv=[
            str(build.binary_path(settings, PROGRAM_NAME)),
            f"--control-address={LOOPBACK}:{settings.ports.mux_control}",
            f"--token-file={token_path(settings)}",
            f"--state-file={state_path(settings)}",
            *where,
        ],
        priority=PRIORITY,
        stopwaitsecs=15,
    )


def start(settings: Settings, sup: Supervisor | None = None, host: str | None = None) -> Control:
    """lab-mux running under supervisord and answering; built beforehand by `lab build lab-mux`
    (on a backing host: installed by the playbook). `host` as for program()."""
    exe = build.binary_path(settings, PROGRAM_NAME)
    if not exe.is_file():
        if host is not None:
            raise LabError(
                f"{PROGRAM_NAME} is not installed at {exe}: run the backing playbook with backing_process_mux: true"
            )
        raise LabError(f"{PROGRAM_NAME} is not built yet ({exe}): run lab build {PROGRAM_NAME}")
    ctl = Control(control_url(settings), ensure_token(settings))
    if ctl.alive() and host is None:  # a host's converges: its address may have been re-registered
        return ctl
    sup = sup or ensure_running(settings)
    sup.converge([program(settings, host)])
    if not poll.until(ctl.alive, START_TIMEOUT, 0.2):
        log = log_file(settings, PROGRAM_NAME)
        raise LabError(
            f"{PROGRAM_NAME} did not answer within {START_TIMEOUT:.0f}s: {logs.last_line(log)} (log: {log})"
        )
    return ctl


def registered(settings: Settings) -> set[str]:
    """Names lab-mux serves now; empty when it is not running."""
    ctl = control(settings)
    if ctl is None or not ctl.alive():
        return set()
    return {c["name"] for c in ctl.clusters()}


class MuxBacking:
    """lab.backing.Backing for the multiplexer: the functions above behind the shared contract."""

    name = naming.MUX_BACKING

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.capacity = settings.mux_capacity

    def endpoint(self, _cluster: str, index: int) -> tuple[str, int]:
        return naming.mux_endpoint(index)

    def etcd_servers(self) -> list[str]:
        """The local tenant etcd, as the local backing declares it: KCP with external etcd never
        dials it, and lab-mux keeps the objects in memory."""
        from lab.etcd import client_url

        return [client_url(self.settings)]

    def etcd_ca(self) -> pki.KeyPair:
        from lab import etcd

        return etcd.ensure_pki(self.settings).ca

    def preflight(self, clusters: Sequence[tuple[str, int]]) -> None:
        """Each new cluster's port is free on naming.MUX_HOST, the one address lab-mux binds (a
        listener on that address or on every interface would fail the registration)."""
        mine = registered(self.settings)
        for name, index in clusters:
            if name in mine:
                continue
            host, port = naming.mux_endpoint(index)
            if not bindable(port, host, reuse=True):
                pid = listener_pid(port, host)
                owner = f"pid {pid}" if pid else "another process"
                raise LabError(
                    f"port {port} for {name} ({host}:{port}) is in use by {owner}: is a cluster of the "
                    "same index running on the mux backing of another lab home?"
                )

    def ensure(self, clusters: Sequence[tuple[str, int]]) -> None:
        """PKI, lab-mux running, and each cluster registered on its port; idempotent."""
        if not clusters:
            return
        self.preflight(clusters)
        ca = self.etcd_ca()
        ctl = start(self.settings)
        for name, index in clusters:
            host, port = naming.mux_endpoint(index)
            pki_store.cluster_pki(self.settings, name, host, port, ca)
            directory = pki.cluster_pki_dir(self.settings, name)
            ctl.register(name, index, port, directory / "ca.crt", directory / "ca.key")

    def wait_ready(self, names: Sequence[str], timeout: float) -> None:
        """Until each cluster answers GET / (the library serves no /readyz) through its kubeconfig."""
        ready.wait_ready(
            self.settings, names, timeout, why=lambda _n: self._reason(), where=" on mux", path="/"
        )

    def _reason(self) -> str:
        log = log_file(self.settings, PROGRAM_NAME)
        return f"{logs.last_line(log)} (log: {log})"

    def remove(self, names: Sequence[str]) -> None:
        """Unregister (listener and objects gone) and the cluster's files; what is gone is fine."""
        names = [pki.check_cluster_name(n) for n in names]
        ctl = control(self.settings)
        if ctl is not None and ctl.alive():
            for n in names:
                ctl.unregister(n)
        for n in names:
            pki_store.remove_cluster_pki(self.settings, n)

    def present(self) -> set[str]:
        return {
            n for n in registered(self.settings) if naming.parse_index(self.settings.prefix, n) is not None
        }

    def used(self) -> int:
        return len(self.present())

    def tenant_health(self, names: Sequence[str]) -> dict[str, str | None]:
        """A mux cluster's store is lab-mux's memory, not an etcd: healthy while lab-mux answers and
        serves the cluster (KCP's EtcdClusterHealthy then says its objects have a home)."""
        if not names:
            return {}
        ctl = control(self.settings, timeout=10.0)
        if ctl is None or not ctl.alive():
            return {n: f"{PROGRAM_NAME} is not answering its control API" for n in names}
        served = {c["name"] for c in ctl.clusters()}
        return {n: None if n in served else f"{PROGRAM_NAME} does not serve it (no store)" for n in names}
