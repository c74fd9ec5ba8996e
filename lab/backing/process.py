"""The `process` backing runtime: a host prepared by playbooks/backing-cluster.yml (lab in a venv,
the built binaries in its lab home) runs the multi-tenant etcd and the workload apiservers as lab's
own supervised processes (lab.backing.host), driven from here over SSH.

One `ssh` per batch, never one per cluster: each call runs one `lab host ...` command on the host,
with whatever files it needs as a tar on stdin. The controller issues every certificate; the host
gets the backing's etcd CA (with its key, so its lab issues the etcd server and root certs itself:
the CA is the backing's own and trusted by nothing but that host's etcd, whose data root on the host
can read anyway) and each cluster's PKI, made here with the host's endpoint.

SSH: BatchMode (never a prompt), the registered identity, and a known_hosts file of the backing's
own under <home>/backings/<name>/: the host key is learned at registration (accept-new) and pinned
from then on, without touching the user's ~/.ssh.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from lab import naming, pki, pki_store
from lab.backing import ready, store
from lab.backing.host import tar_files
from lab.backing.store import Entry, check_name
from lab.config import Ports, Settings
from lab.errors import LabError, UsageError
from lab.runtime import ports

#: Where the playbook writes lab's environment on the host (backing_config_dir/lab.env); a host laid
#: out otherwise names its file in LAB_ENV_FILE (e.g. sshd's SetEnv) or at registration.
DEFAULT_ENV_FILE = "/etc/metal3-scale-lab/lab.env"
#: apiserver port = base + cluster index: stable per index, no state to keep; 20000 + max_index 9999
#: stays below the kernel's default ephemeral range and clear of etcd's 2379/2380.
APISERVER_BASE_PORT = 20000
CONNECT_TIMEOUT = 10
#: A batch starts etcd on first use and up to `parallel` apiservers: generous, but bounded.
COMMAND_TIMEOUT = 600.0
KNOWN_HOSTS = "known_hosts"


@dataclass(frozen=True)
class Spec:
    """What backing.yaml holds for a process backing."""

    host: str
    ssh_port: int = 22
    user: str = "root"
    identity: str | None = None
    #: the address the host's apiservers listen on and the management cluster reaches (default: host)
    address: str | None = None
    apiserver_base_port: int = APISERVER_BASE_PORT
    #: the host's tenant etcd client port (its peer port is the next one), on the host's loopback
    etcd_port: int = Ports().tenant_etcd
    env_file: str | None = None

    @property
    def listen_address(self) -> str:
        return self.address or self.host

    @classmethod
    def of(cls, entry: Entry) -> Spec:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in entry.spec.items() if k in known})

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


def check_port_range(spec: Spec, max_index: int) -> None:
    """Every index this lab may create must get a port below the ephemeral range."""
    low, _high = ports.ephemeral_range()
    top = spec.apiserver_base_port + max_index
    if spec.apiserver_base_port < 1024 or top >= low:
        raise UsageError(
            f"apiserver ports {spec.apiserver_base_port + 1}-{top} (base + index up to max_index "
            f"{max_index}) must lie within 1025-{low - 1}, below the ephemeral range; choose another base port"
        )
    if spec.apiserver_base_port < spec.etcd_port + 1 <= top:
        raise UsageError(
            f"apiserver ports {spec.apiserver_base_port + 1}-{top} overlap etcd's {spec.etcd_port}"
        )


def ssh_argv(spec: Spec, known_hosts: Path, remote: str, *, accept_new: bool = False) -> list[str]:
    """Pure: the ssh command line running `remote` (one shell command string) on the host."""
    argv = [
        "ssh",
        "-T",
        "-o",
        "BatchMode=yes",
        "-o",
        f"ConnectTimeout={CONNECT_TIMEOUT}",
        "-o",
        f"UserKnownHostsFile={known_hosts}",
        "-o",
        "GlobalKnownHostsFile=/dev/null",
        "-o",
        f"StrictHostKeyChecking={'accept-new' if accept_new else 'yes'}",
        "-o",
        "LogLevel=ERROR",
        "-p",
        str(spec.ssh_port),
    ]
    if spec.identity:
        argv += ["-o", "IdentitiesOnly=yes", "-i", spec.identity]
    return [*argv, "-l", spec.user, spec.host, "--", remote]


def remote_command(spec: Spec, settings: Settings, args: Sequence[str]) -> str:
    """Pure: the shell command that loads lab's environment on the host and runs `lab ARGS` with this
    controller's prefix and the host etcd's ports (so both sides agree on names and URLs)."""
    env_file = shlex.quote(spec.env_file) if spec.env_file else f'"${{LAB_ENV_FILE:-{DEFAULT_ENV_FILE}}}"'
    overrides = {
        "LAB_PREFIX": settings.prefix,
        "LAB_MAX_INDEX": str(settings.max_index),
        "LAB_PORTS__TENANT_ETCD": str(spec.etcd_port),
        "LAB_PORTS__TENANT_ETCD_PEER": str(spec.etcd_port + 1),
    }
    env = " ".join(f"{k}={shlex.quote(v)}" for k, v in overrides.items())
    return f"set -a && . {env_file} && set +a && exec env {env} lab {shlex.join(args)}"


class ProcessBacking:
    """lab.backing.Backing on a process host."""

    def __init__(self, settings: Settings, entry: Entry) -> None:
        self.settings = settings
        self.entry = entry
        self.name = entry.name
        self.capacity = entry.capacity
        self.spec = Spec.of(entry)
        #: seconds each ssh call took, newest last (benchmarks and tests read it)
        self.timings: list[tuple[str, float]] = []

    @property
    def known_hosts(self) -> Path:
        return store.backing_dir(self.settings, self.name) / KNOWN_HOSTS

    # --- the contract --------------------------------------------------------------------------

    def endpoint(self, cluster: str, index: int) -> tuple[str, int]:
        port = self.spec.apiserver_base_port + index
        low, _high = ports.ephemeral_range()
        if not 1 <= index <= self.settings.max_index or port >= low:
            raise LabError(
                f"{cluster} on backing {self.name}: port {port} (base {self.spec.apiserver_base_port} + index) "
                f"is not below the ephemeral range ({low}); re-register with a lower base port"
            )
        return self.spec.listen_address, port

    def etcd_servers(self) -> list[str]:
        # The host's own loopback: lab.etcd.server.LOOPBACK on the host.
        return [f"https://127.0.0.1:{self.spec.etcd_port}"]

    def etcd_ca(self) -> pki.KeyPair:
        return store.etcd_ca(self.settings, self.name)

    def preflight(self, new: Sequence[tuple[str, int]]) -> None:
        """Nothing to check before create: each index has its own port (endpoint() range-checks it)."""

    def ensure(self, clusters: Sequence[tuple[str, int]]) -> None:
        """One ssh: every cluster's PKI (made here if create did not yet) as a tar, then the host
        creates the tenants and starts the apiservers."""
        if not clusters:
            return
        ca = self.etcd_ca()
        files, specs = [], []
        for name, index in clusters:
            host, port = self.endpoint(name, index)
            pki_store.cluster_pki(self.settings, name, host, port, ca)
            files.append((pki.cluster_pki_dir(self.settings, name), f"clusters/{name}/pki"))
            specs.append(f"{name}:{port}")
        self.run(["host", "ensure", "--address", self.spec.listen_address, *specs], stdin=tar_files(files))

    def wait_ready(self, names: Sequence[str], timeout: float) -> None:
        """Probe /readyz from here, as the management cluster will, with each cluster's admin
        kubeconfig; on timeout one ssh fetches the first laggard's last log line."""
        ready.wait_ready(
            self.settings, names, timeout, why=self._last_log_line, where=f" on backing {self.name}"
        )

    def _last_log_line(self, cluster: str) -> str:
        try:
            return self.run(["host", "log", cluster], timeout=60).strip()
        except LabError as e:
            return f"(log unavailable: {e})"

    def remove(self, names: Sequence[str]) -> None:
        names = [pki.check_cluster_name(n) for n in names]
        if not names:
            return
        self.run(["host", "remove", *names])
        for n in names:
            pki_store.remove_cluster_pki(self.settings, n)

    def present(self) -> set[str]:
        return set(json.loads(self.run(["host", "present"])))

    def used(self) -> int:
        return len(self.present())

    def tenant_health(self, names: Sequence[str]) -> dict[str, str | None]:
        """One ssh: the host's lab reads each tenant on the host's own etcd (its loopback only)."""
        if not names:
            return {}
        out: dict[str, str | None] = json.loads(self.run(["host", "etcd-health", *names]))
        return out

    # --- beyond the contract -------------------------------------------------------------------

    def up(self) -> None:
        """Send the etcd CA and the etcd API stubs, start supervisord and the host's etcd."""
        from lab.etcd import proto, server

        ca_dir = store.backing_dir(self.settings, self.name) / "etcd-ca"
        self.etcd_ca()  # created on first use
        stubs = proto.generate(self.settings)  # the host has no Go module cache to make them from
        files = [
            (ca_dir / "ca.crt", "pki/etcd-ca/ca.crt"),
            (ca_dir / "ca.key", "pki/etcd-ca/ca.key"),
            (stubs, f"src/{stubs.name}"),
        ]
        assert server.etcd_ca_dir(self.settings).relative_to(self.settings.home) == Path("pki/etcd-ca")
        self.run(["host", "up"], stdin=tar_files(files))

    def down(self) -> None:
        """Stop everything lab runs on the host (its data stays)."""
        self.run(["host", "down"])

    def run(self, args: Sequence[str], *, stdin: bytes = b"", timeout: float = COMMAND_TIMEOUT) -> str:
        """`lab ARGS` on the host; its stdout, or a LabError with the host's one error line."""
        argv = ssh_argv(self.spec, self.known_hosts, remote_command(self.spec, self.settings, args))
        started = time.monotonic()
        res = _ssh(argv, stdin, timeout, f"backing {self.name} ({self.spec.host})")
        self.timings.append((" ".join(args[:2]), time.monotonic() - started))
        if res.returncode != 0:
            raise LabError(f"backing {self.name} ({self.spec.host}): lab {args[0]} {args[1]}: {_last(res)}")
        return res.stdout.decode()


def _ssh(argv: list[str], stdin: bytes, timeout: float, who: str) -> subprocess.CompletedProcess[bytes]:
    if shutil.which("ssh") is None:
        raise LabError("ssh is not installed: the process backing needs an OpenSSH client")
    try:
        return subprocess.run(argv, input=stdin, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise LabError(f"{who}: no answer over ssh within {timeout:.0f}s") from None


def _last(res: subprocess.CompletedProcess[bytes]) -> str:
    lines = [ln.strip() for ln in res.stderr.decode(errors="replace").splitlines() if ln.strip()]
    if not lines:
        lines = [ln.strip() for ln in res.stdout.decode(errors="replace").splitlines() if ln.strip()]
    return (lines[-1] if lines else f"exit {res.returncode}").removeprefix("error: ")


def register(
    settings: Settings,
    name: str,
    *,
    host: str,
    ssh_port: int = 22,
    user: str = "root",
    identity: str | Path | None = None,
    capacity: int,
    address: str | None = None,
    apiserver_base_port: int = APISERVER_BASE_PORT,
    env_file: str | None = None,
    runtime: store.Runtime = "process",
    opener: Callable[[Settings, Entry], ProcessBacking] | None = None,
) -> Entry:
    """Check the host answers `lab --version` over ssh (nothing is saved otherwise), record it, and
    start its etcd (`lab host up`). Re-registering updates the entry and keeps the etcd CA.
    `runtime` and `opener`: another runtime over the same ssh (lab.backing.hostmux's `mux`), whose
    up() starts what it runs there instead."""
    opener = opener or ProcessBacking
    check_name(name)
    if capacity < 1:
        raise UsageError(f"capacity must be at least 1, got {capacity}")
    if identity is not None:
        identity = Path(identity).expanduser().absolute()
        if not identity.is_file():
            raise UsageError(f"ssh identity {identity} is not a file")
    spec = Spec(
        host=host,
        ssh_port=ssh_port,
        user=user,
        identity=str(identity) if identity else None,
        address=address,
        apiserver_base_port=apiserver_base_port,
        env_file=env_file,
    )
    check_port_range(spec, settings.max_index)
    previous = store.load(settings, name)
    if previous is not None and previous.runtime != runtime:
        raise LabError(f"backing {name!r} is registered with runtime {previous.runtime}; remove it first")

    with tempfile.TemporaryDirectory(prefix="lab-ssh-") as tmp:
        known = store.backing_dir(settings, name) / KNOWN_HOSTS
        probe_known = Path(tmp) / KNOWN_HOSTS
        if known.is_file():
            shutil.copy2(known, probe_known)
        argv = ssh_argv(spec, probe_known, remote_command(spec, settings, ["--version"]), accept_new=True)
        res = _ssh(argv, b"", 60, f"{host}:{ssh_port}")
        if res.returncode != 0 or not res.stdout.decode().startswith("lab "):
            raise LabError(
                f"{user}@{host}:{ssh_port} does not answer 'lab --version' over ssh ({_last(res)}); "
                "provision it with playbooks/backing-cluster.yml (backing_runtime: process)"
            )
        entry = Entry(name, runtime, capacity, spec.as_dict())
        store.save(settings, entry)
        shutil.copy2(probe_known, known)
        known.chmod(0o600)
    try:
        opener(settings, entry).up()
    except LabError:
        if previous is None:  # a first registration leaves nothing behind; a CA in use stays
            store.delete(settings, name)
        raise
    return entry


def unregister(
    settings: Settings,
    entry: Entry,
    *,
    force: bool = False,
    opener: Callable[[Settings, Entry], ProcessBacking] | None = None,
) -> None:
    """Refuse while the host still carries clusters (their etcd CA goes with the entry), stop what
    lab runs there, forget it; `force` skips the checks and forgets a host that does not answer."""
    opener = opener or ProcessBacking
    if not force:
        carried = opener(settings, entry).present()
        if carried:
            first = min(carried, key=lambda n: naming.parse_index(settings.prefix, n) or 0)
            raise LabError(
                f"backing {entry.name} still carries {len(carried)} cluster(s), first {first}: delete them first"
            )
    try:
        opener(settings, entry).down()
    except LabError:
        if not force:
            raise
    store.delete(settings, entry.name)
