"""Real SSH test hosts: one network namespace per host, a veth pair to the root namespace, and Debian's
sshd running inside.

Why namespaces: the playbooks must be exercised over real SSH (as against VMs), and this machine has no
VMs. A namespace isolates only the network, so the "host" shares the root filesystem: every playbook
path is a variable, and each host gets its own `root` directory under the work dir for the playbooks
to write into. A kind host gets its own Docker engine inside its namespace (namespace_engine).

Addresses come from 198.18.0.0/15 (RFC 2544 benchmarking space), one /30 per host: the root side
takes .1, the host .2. Nothing else is ever contacted. Needs root (ip netns, veth, sshd on port 22).

Used by tests/integration/test_playbooks.py and the end-to-end tests test_two_hosts and test_kind_host:

    with namespace_hosts(2, tmp_dir) as hosts:
        ...  # hosts[0].address, hosts[0].ssh_args(), write_inventory(...)
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml

from lab.engine import daemon
from lab.runtime.procs import alive

SSHD = Path("/usr/sbin/sshd")
POOL = ipaddress.ip_network("198.18.0.0/15")
_SSHD_READY_SECONDS = 20.0


@dataclass(frozen=True)
class NsHost:
    name: str
    netns: str
    address: str
    root_side: str
    #: the host's private directory; `root` below it stands in for the host's filesystem root
    workdir: Path
    client_key: Path
    known_hosts: Path

    @property
    def root(self) -> Path:
        return self.workdir / "root"

    def ssh_args(self) -> list[str]:
        """ssh options that pin this host's key and use only the generated client key."""
        return [
            "-o",
            f"UserKnownHostsFile={self.known_hosts}",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "PasswordAuthentication=no",
            "-i",
            str(self.client_key),
        ]

    def ssh(self, *command: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ssh", *self.ssh_args(), "-o", "BatchMode=yes", f"root@{self.address}", *command],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


def unavailable_reason() -> str | None:
    """Why namespace hosts cannot be made here, or None when they can."""
    if os.geteuid() != 0:
        return "namespace SSH hosts need root (ip netns, veth pairs, sshd)"
    missing = [t for t in ("ip", "ssh", "ssh-keygen") if shutil.which(t) is None]
    if not SSHD.exists():
        missing.append(str(SSHD))
    if missing:
        return f"missing {', '.join(missing)} (apt-get install openssh-server iproute2)"
    return None


def _run(*cmd: str) -> str:
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {res.stderr.strip()}")
    return res.stdout


def _used_addresses() -> set[ipaddress.IPv4Address]:
    out = _run("ip", "-o", "-4", "addr", "show")
    used = set()
    for line in out.splitlines():
        fields = line.split()
        if "inet" in fields:
            used.add(ipaddress.ip_interface(fields[fields.index("inet") + 1]).ip)
    return used


def _free_subnets(count: int) -> list[ipaddress.IPv4Network]:
    """/30 blocks of the pool that no interface of the root namespace uses (parallel runs coexist)."""
    used = _used_addresses()
    free = []
    for net in POOL.subnets(new_prefix=30):
        if not any(a in net for a in used):
            free.append(net)
            if len(free) == count:
                return free
    raise RuntimeError(f"no {count} free /30 blocks left in {POOL}")


def _keygen(path: Path, comment: str) -> None:
    _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path))
    path.chmod(0o600)


def _sshd_config(d: Path, address: str) -> str:
    # Key-only root login, everything private to this host's directory. StrictModes is off because
    # the files live under /tmp, whose sticky world-writable mode sshd would otherwise refuse.
    return "\n".join(
        [
            f"ListenAddress {address}",
            "Port 22",
            f"HostKey {d / 'ssh_host_ed25519_key'}",
            f"PidFile {d / 'sshd.pid'}",
            f"AuthorizedKeysFile {d / 'authorized_keys'}",
            "PermitRootLogin prohibit-password",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PermitEmptyPasswords no",
            "UsePAM no",
            "StrictModes no",
            "UseDNS no",
            "Subsystem sftp internal-sftp",
            # The host's filesystem root is a directory here: tell lab where the playbook put its
            # environment, as an operator with a non-standard layout would (lab.backing.process).
            f"SetEnv LAB_ENV_FILE={d / 'root' / 'etc' / 'metal3-scale-lab' / 'lab.env'}",
            "",
        ]
    )


def _wait_listening(address: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + _SSHD_READY_SECONDS
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"sshd for {address} exited {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            with socket.create_connection((address, 22), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"sshd on {address}:22 not listening after {_SSHD_READY_SECONDS}s")


def _start_host(stack: ExitStack, index: int, token: str, net: ipaddress.IPv4Network, base: Path) -> NsHost:
    root_ip, host_ip = (str(a) for a in list(net.hosts())[:2])
    name = f"labh{index}"
    netns = f"{name}-{token}"
    # veth names are limited to 15 characters
    root_if, host_if = f"lh{token}{index}r", f"lh{token}{index}h"
    d = base / name
    (d / "root").mkdir(parents=True)
    d.chmod(0o700)

    _run("ip", "netns", "add", netns)
    stack.callback(_quiet, "ip", "netns", "del", netns)
    stack.callback(_kill_netns_processes, netns)
    _run("ip", "link", "add", root_if, "type", "veth", "peer", "name", host_if)
    stack.callback(_quiet, "ip", "link", "del", root_if)
    _run("ip", "link", "set", host_if, "netns", netns)
    _run("ip", "addr", "add", f"{root_ip}/30", "dev", root_if)
    _run("ip", "link", "set", root_if, "up")
    for cmd in (
        ("ip", "addr", "add", f"{host_ip}/30", "dev", host_if),
        ("ip", "link", "set", host_if, "up"),
        ("ip", "link", "set", "lo", "up"),
    ):
        _run("ip", "netns", "exec", netns, *cmd)

    _keygen(d / "ssh_host_ed25519_key", f"{name} host key")
    _keygen(d / "id_ed25519", f"{name} client key")
    (d / "authorized_keys").write_text((d / "id_ed25519.pub").read_text())
    host_pub = (d / "ssh_host_ed25519_key.pub").read_text().split()
    known = d / "known_hosts"
    known.write_text(f"{host_ip} {host_pub[0]} {host_pub[1]}\n")
    (d / "sshd_config").write_text(_sshd_config(d, host_ip))

    # Debian's sshd refuses to start without its privilege-separation directory (the package's
    # service unit creates it at boot; there is no init here).
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    log = d / "sshd.log"
    # `ip netns exec` gives sshd its own mount namespace (mounts do not propagate back). In it, the
    # root user's shell rc files are hidden as on a fresh VM: this machine's ~/.bashrc runs
    # `pyenv init`, which bash sources for every command sshd runs, about a second each under load.
    hide = " ".join(f"mount --bind {d / 'empty'} {rc} &&" for rc in _shell_rc_files())
    (d / "empty").write_text("")
    proc = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            netns,
            "sh",
            "-c",
            f'{hide} exec "$0" "$@"',
            str(SSHD),
            "-D",
            "-e",
            "-f",
            str(d / "sshd_config"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
    )
    stack.callback(_stop, proc)
    _wait_listening(host_ip, proc, log)
    return NsHost(name, netns, host_ip, root_ip, d, d / "id_ed25519", known)


def _shell_rc_files() -> list[Path]:
    home = Path("/root")
    return [p for p in (home / ".bashrc", home / ".profile", home / ".bash_profile") if p.is_file()]


def _quiet(*cmd: str) -> None:
    subprocess.run(cmd, capture_output=True, timeout=30, check=False)


def _kill_netns_processes(netns: str) -> None:
    """Per-connection sshd children outlive the listener and would keep the namespace alive."""
    res = subprocess.run(
        ["ip", "netns", "pids", netns], capture_output=True, text=True, timeout=30, check=False
    )
    for pid in res.stdout.split():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    # `ip netns exec` execs sshd, so this pid is sshd itself; -D keeps it in the foreground.
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@contextmanager
def namespace_hosts(count: int, base: Path) -> Iterator[list[NsHost]]:
    """Start `count` SSH hosts under `base`; namespaces, veths and sshd are removed on exit, also on error."""
    token = secrets.token_hex(2)
    with ExitStack() as stack:
        hosts = [
            _start_host(stack, i, token, net, base) for i, net in enumerate(_free_subnets(count), start=1)
        ]
        yield hosts


# --- provisioning process-runtime hosts with the real playbook -------------------------------------

REPO = Path(__file__).resolve().parents[2]
PLAYBOOK = REPO / "playbooks" / "backing-cluster.yml"
#: the ansible-core the playbook tests were written against (Python 3.11 controllers)
ANSIBLE_CORE = "ansible-core==2.19.14"
_RECAP = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


def ansible_playbook() -> str:
    """ansible-playbook beside this Python, installed from PyPI by the test setup when missing."""
    path = Path(sys.executable).parent / "ansible-playbook"
    if not path.exists() and shutil.which("ansible-playbook") is None:
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", ANSIBLE_CORE],
            check=True,
            timeout=900,
        )
    return str(path) if path.exists() else str(shutil.which("ansible-playbook"))


def build_lab_wheels(work: Path) -> tuple[Path, Path]:
    """lab's wheel and a tar of every dependency's wheel (the offline install: hosts have no index).
    Built from a copy of the checkout: an in-tree build would write build/ into it."""
    src = work / "src"
    shutil.copytree(REPO / "lab", src / "lab", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(REPO / "pyproject.toml", src)
    wheels = work / "wheels"
    pip = [sys.executable, "-m", "pip", "wheel", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, str(src), "-w", str(wheels)], check=True, timeout=900)
    (wheel,) = wheels.glob("metal3_scale_lab-*.whl")
    artifacts = work / "artifacts"
    artifacts.mkdir(exist_ok=True)
    with tarfile.open(artifacts / "wheels.tar", "w") as tar:
        for whl in sorted(wheels.glob("*.whl")):
            tar.add(whl, arcname=whl.name)
    return wheel, artifacts


def task_results(output: str, task: str) -> dict[str, str]:
    """host -> status (ok/changed/skipping/failed) of one task in the default callback's output."""
    block = output.split(f"TASK [{task}]", 1)
    assert len(block) == 2, f"task {task!r} did not run"
    body = block[1].split("\nTASK [", 1)[0].split("\nRUNNING HANDLER [", 1)[0].split("\nPLAY RECAP", 1)[0]
    return {m[2]: m[1] for m in re.finditer(r"^(ok|changed|skipping|failed|fatal): \[([^\]]+)\]", body, re.M)}


@dataclass(frozen=True)
class Provisioned:
    seconds: float
    recap: dict[str, tuple[int, int, int, int]]  # host -> ok, changed, unreachable, failed
    output: str


def provision_process_hosts(
    hosts: list[NsHost],
    work: Path,
    wheel: Path,
    artifacts: Path,
    bin_cache: Path,
    binaries: list[str],
    *,
    host_vars: dict[str, dict[str, object]] | None = None,
    env: dict[str, str] | None = None,
) -> Provisioned:
    """Run playbooks/backing-cluster.yml with backing_runtime=process on `hosts` (offline: wheels and
    kubectl from `artifacts`, the given binaries from `bin_cache`). Package, container-runtime and
    sysctl tasks would change this machine, which the hosts share: off, as in test_playbooks.
    `host_vars` adds variables per host name; `env` is the environment of the controller's tasks
    (e.g. the LAB_* of a test stack for the registration task)."""
    process_vars = {
        "backing_runtime": "process",
        "backing_process_wheel": str(wheel),
        "backing_process_bin_cache": str(bin_cache),
        "backing_process_binaries": binaries,
    }
    return provision_hosts(hosts, work, artifacts, process_vars, host_vars=host_vars, env=env)


def provision_hosts(
    hosts: list[NsHost],
    work: Path,
    artifacts: Path,
    group_vars: dict[str, object],
    *,
    host_vars: dict[str, dict[str, object]] | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 1200,
) -> Provisioned:
    """Run playbooks/backing-cluster.yml offline (kubectl, kind and archives from `artifacts`) on
    `hosts` with `group_vars` over the shared test settings; the run's time and recap."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        raise RuntimeError("kubectl must be on PATH (the playbook installs a copy on each host)")
    if not (artifacts / "kubectl").exists():
        (artifacts / "kubectl").symlink_to(Path(kubectl).resolve())
    members = {
        h.name: {
            "ansible_host": h.address,
            "internal_ip": h.address,
            "backing_root": str(h.root),
            "ansible_ssh_private_key_file": str(h.client_key),
            "ansible_ssh_common_args": " ".join(h.ssh_args()[:-2]),
            "ansible_remote_tmp": str(h.workdir / "ansible-tmp"),
            **(host_vars or {}).get(h.name, {}),
        }
        for h in hosts
    }
    lab_vars = {
        "ansible_user": "root",
        "ansible_become": False,
        "ansible_python_interpreter": "/usr/bin/python3",
        "backing_offline": True,
        "backing_artifacts_dir": str(artifacts),
        "backing_kubeconfig_dir": str(work / "kubeconfigs"),
        "backing_host_install_packages": False,
        "backing_host_container_runtime": False,
        "backing_host_apply_sysctl": False,
        **group_vars,
    }
    inventory = work / "inventory.yml"
    body = {"all": {"vars": lab_vars, "children": {"backing": {"hosts": members}}}}
    inventory.write_text(yaml.safe_dump(body, sort_keys=False))
    ansible_env = {
        **(os.environ if env is None else env),
        "ANSIBLE_HOME": str(work / "ansible-home"),
        "ANSIBLE_LOCAL_TEMP": str(work / "ansible-local"),
        "ANSIBLE_SSH_CONTROL_PATH_DIR": str(work / "cp"),
        "ANSIBLE_PIPELINING": "true",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_RETRY_FILES_ENABLED": "false",
    }
    started = time.monotonic()
    try:
        res = subprocess.run(
            [ansible_playbook(), "-i", str(inventory), str(PLAYBOOK)],
            cwd=REPO,
            env=ansible_env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    finally:
        # Close Ansible's persistent SSH masters: they would outlive the hosts.
        for sock in (work / "cp").glob("*") if (work / "cp").is_dir() else []:
            _quiet("ssh", "-O", "exit", "-o", f"ControlPath={sock}", "x")
    seconds = time.monotonic() - started
    if res.returncode != 0:
        raise RuntimeError(f"backing playbook failed:\n{res.stdout[-6000:]}\n{res.stderr[-3000:]}")
    recap = {m[1]: (int(m[2]), int(m[3]), int(m[4]), int(m[5])) for m in _RECAP.finditer(res.stdout)}
    return Provisioned(seconds, recap, res.stdout)


# --- a namespace host's own Docker engine ---------------------------------------------------------

#: what the host's engine is configured with before it starts, as a VM's admin would have it:
#: docker's userland proxy off (the playbook's backing_kind role wants it so and finds it so)
ENGINE_CONFIG = {"userland-proxy": False}


@dataclass(frozen=True)
class HostEngine:
    """The Docker engine of one namespace host: lab's engine (lab.engine), started inside the host's
    network namespace, with every path (data root, exec root, socket, pid file) under `layout.root`."""

    host: NsHost
    layout: daemon.Layout
    pid: int
    containerd_pid: int

    @property
    def docker_host(self) -> str:
        return self.layout.host

    def nsenter(self) -> list[str]:
        """Run a command in the host's network namespace, keeping this machine's mount namespace
        (`ip netns exec` would remount /sys and hide the cgroup mounts dockerd needs)."""
        return ["nsenter", f"--net=/run/netns/{self.host.netns}"]

    def run(self, *cmd: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """A command in the host's network namespace, talking to this engine."""
        return subprocess.run(
            [*self.nsenter(), *cmd],
            env={**os.environ, "DOCKER_HOST": self.docker_host},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


def _lab_in(netns: str, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`lab` of this checkout in a network namespace, with its own lab home (the engine commands take
    the home's lock: not the shared one)."""
    env = {**os.environ, "LAB_HOME": str(home), "PYTHONPATH": str(REPO)}
    return subprocess.run(
        ["nsenter", f"--net=/run/netns/{netns}", sys.executable, "-m", "lab", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _pid(path: Path) -> int:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return 0


@contextmanager
def namespace_engine(host: NsHost) -> Iterator[HostEngine]:
    """Start the host's Docker engine the way `lab engine start` does, inside its network namespace
    (its bridges, kind's network and every iptables rule dockerd writes live there); on exit stop it
    and check nothing of it is left.

    The fixture stands in for the VM's system service (docker.io under systemd), which the playbook
    finds running (backing_host_container_runtime: false): a namespace host has no init to run one.

    Teardown, exact: `lab engine stop` in the namespace stops dockerd, its containerd and every shim
    by pid (kind's node container with them), unmounts what is under the engine's directory and
    deletes its bridges and the rules naming them; then the checks below, then the directory (the
    data root with the loaded images). Docker's own chains and ip_forward are the namespace's and go
    with it (namespace_hosts deletes it). The namespace has no default route: a container cannot reach
    beyond the host's /30, so no pull ever leaves the machine.
    """
    root = host.workdir / "docker"  # short: containerd's sockets live under it (104 bytes at most)
    home = host.workdir / "lab-home"
    root.mkdir(mode=0o700)
    home.mkdir(mode=0o700)
    (root / "daemon.json").write_text(json.dumps(ENGINE_CONFIG) + "\n")
    layout = daemon.Layout(root)
    pids: list[int] = []
    try:
        started = _lab_in(host.netns, home, "engine", "start", "--dir", str(root))
        if started.returncode != 0:
            raise RuntimeError(f"lab engine start in {host.netns} failed: {started.stderr.strip()[-2000:]}")
        pids = [_pid(layout.pidfile), _pid(layout.containerd_pidfile)]
        yield HostEngine(host, layout, *pids)
    finally:
        bridges = _netns_bridges(host.netns, layout)
        stopped = _lab_in(host.netns, home, "engine", "stop", "--dir", str(root))
        print(stopped.stderr.strip())
        left = [f"process {p}" for p in pids if p and alive(p)]
        left += [f"shim {p}" for p in daemon._pids_using(str(layout.containerd_socket))]
        left += [f"mount under {root}" for _ in [0] if str(root) in Path("/proc/self/mountinfo").read_text()]
        links = subprocess.run(
            ["ip", "-n", host.netns, "-o", "link"], capture_output=True, text=True, timeout=30, check=False
        ).stdout
        left += [f"bridge {b}" for b in bridges if f" {b}:" in links]
        rules = subprocess.run(
            ["nsenter", f"--net=/run/netns/{host.netns}", "iptables-save"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        ).stdout.splitlines()
        left += [f"iptables rule {r!r}" for r in rules if any(b in r.split() for b in bridges)]
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(home, ignore_errors=True)
        if stopped.returncode != 0:
            left.append(f"lab engine stop failed: {stopped.stderr.strip()[-500:]}")
        assert not left, f"the engine of {host.name} left: " + "; ".join(left)


def _netns_bridges(netns: str, layout: daemon.Layout) -> list[str]:
    """The engine's bridges as its namespace lists them (lab's default one, kind's network)."""
    out = subprocess.run(
        ["ip", "-n", netns, "-o", "link", "show", "type", "bridge"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    ).stdout
    return [line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if ":" in line]
