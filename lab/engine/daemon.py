"""A dockerd that lab starts, with every path in one directory, and its removal.

Layout of the directory (`lab engine start --dir D`, default <home>/engine):
  docker.sock    the API socket (DOCKER_HOST=unix://D/docker.sock)
  dockerd.pid    dockerd's pid; dockerd.log its output; daemon.json an empty config file, so a
                 host's /etc/docker/daemon.json never applies
  data/          --data-root: images, containers, volumes, and the managed containerd's root
  exec/          --exec-root: runtime state, the managed containerd's socket and pid file
  runc-lab       the runc wrapper's launcher (only on hosts that lack a capability, see caps)
  network.json   the bridge and subnets this engine uses, so stop removes exactly those
The one path outside D is containerd 1.6's shim sockets (/run/containerd/s/<hash>), fixed in
containerd and removed by each shim when it exits.

Networking: the default bridge is lab's own (`lab` + 8 hex digits of the directory's hash, made here
with an address from 198.19.0.0/16, RFC 2544 benchmarking space), and networks the engine creates
(kind's `kind` network) take /24s from the same /20, so nothing collides with a host's docker0,
its uplink, or another lab engine. dockerd adds its iptables rules and turns on ip_forward as it
always does; stop removes the rules that name this engine's bridges or subnets.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lab.engine import caps
from lab.engine.api import Client, EngineError
from lab.runtime.mounts import unmount_under
from lab.runtime.procs import alive

Log = Callable[[str], None]

RUNTIME_NAME = "lab-runc"
#: where engines' bridges and networks take their addresses: one /20 per engine
POOL = ipaddress.IPv4Network("198.19.0.0/16")
#: containerd refuses a unix socket path longer than this ("unix socket path too long (> 104)")
_MAX_SOCKET = 104
#: the longest socket dockerd's managed containerd makes under the exec root
_LONGEST_SOCKET = "exec/containerd/containerd-debug.sock"
START_SECONDS = 60.0
STOP_SECONDS = 40.0


@dataclass(frozen=True)
class Layout:
    root: Path

    @property
    def socket(self) -> Path:
        return self.root / "docker.sock"

    @property
    def host(self) -> str:
        return f"unix://{self.socket}"

    @property
    def pidfile(self) -> Path:
        return self.root / "dockerd.pid"

    @property
    def log(self) -> Path:
        return self.root / "dockerd.log"

    @property
    def config(self) -> Path:
        return self.root / "daemon.json"

    @property
    def data_root(self) -> Path:
        return self.root / "data"

    @property
    def exec_root(self) -> Path:
        return self.root / "exec"

    @property
    def containerd_pidfile(self) -> Path:
        return self.exec_root / "containerd" / "containerd.pid"

    @property
    def containerd_socket(self) -> Path:
        return self.exec_root / "containerd" / "containerd.sock"

    @property
    def runc_launcher(self) -> Path:
        return self.root / "runc-lab"

    @property
    def network_file(self) -> Path:
        return self.root / "network.json"

    @property
    def bridge(self) -> str:
        return "lab" + hashlib.sha256(str(self.root).encode()).hexdigest()[:8]


@dataclass(frozen=True)
class Network:
    bridge: str
    #: the /20 of this engine; the bridge takes its first /24, created networks its upper half
    block: ipaddress.IPv4Network

    @property
    def bridge_cidr(self) -> str:
        first = next(self.block.subnets(new_prefix=24))
        return f"{first.network_address + 1}/24"

    @property
    def pool(self) -> ipaddress.IPv4Network:
        return list(self.block.subnets(new_prefix=21))[1]


def dockerd_argv(layout: Layout, network: Network, drop: list[str], dockerd: str = "dockerd") -> list[str]:
    """Pure: dockerd's command line. `drop`: capabilities the runc wrapper removes (none: no wrapper)."""
    argv = [
        dockerd,
        "--config-file",
        str(layout.config),
        "--data-root",
        str(layout.data_root),
        "--exec-root",
        str(layout.exec_root),
        "--pidfile",
        str(layout.pidfile),
        "--host",
        layout.host,
        "--bridge",
        network.bridge,
        "--default-address-pool",
        f"base={network.pool},size=24",
    ]
    if drop:
        argv += ["--add-runtime", f"{RUNTIME_NAME}={layout.runc_launcher}", "--default-runtime", RUNTIME_NAME]
    return argv


def launcher_script(real_runc: str, drop: list[str], python: str = sys.executable) -> str:
    """Pure: the shell launcher dockerd runs as its runtime; -I -S: stdlib only, no user site."""
    wrapper = Path(__file__).with_name("runc_wrapper.py")
    env = f"LAB_REAL_RUNC={shlex.quote(real_runc)} LAB_RUNC_DROP={shlex.quote(','.join(drop))}"
    return f'#!/bin/sh\n{env} exec {shlex.quote(python)} -I -S {shlex.quote(str(wrapper))} "$@"\n'


def _ip(*args: str, check: bool = True) -> str:
    out = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=False)
    if check and out.returncode != 0:
        raise EngineError(f"ip {' '.join(args)} failed: {out.stderr.strip()}")
    return out.stdout


def _networks_in_use() -> list[ipaddress.IPv4Network]:
    used: list[ipaddress.IPv4Network] = []
    for line in _ip("-4", "-o", "addr", "show").splitlines():
        fields = line.split()
        if "inet" in fields:
            used.append(ipaddress.IPv4Interface(fields[fields.index("inet") + 1]).network)
    for line in _ip("-4", "route", "show", "table", "all").splitlines():
        dest = line.split()[0] if line.split() else ""
        with contextlib.suppress(ValueError):
            if dest not in ("default", "local", "broadcast", "unreachable"):
                used.append(ipaddress.IPv4Network(dest, strict=False))
    return used


def free_block(used: list[ipaddress.IPv4Network]) -> ipaddress.IPv4Network:
    """Pure: the first /20 of POOL that overlaps none of `used`."""
    for block in POOL.subnets(new_prefix=20):
        if not any(block.overlaps(u) for u in used if u.prefixlen > 0):
            return block
    raise EngineError(f"no free /20 left in {POOL} for another engine's bridge")


def uplinks() -> list[str]:
    """The interfaces of the default routes (what containers must not reach in the tests)."""
    out = _ip("-4", "route", "show", "default")
    return sorted({line.split("dev", 1)[1].split()[0] for line in out.splitlines() if " dev " in line})


def _running_pid(layout: Layout) -> int | None:
    try:
        pid = int(layout.pidfile.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if alive(pid) else None


def other_dockerd(exclude: int | None = None) -> list[int]:
    """dockerd processes in lab's network namespace other than `exclude`."""
    here = os.readlink("/proc/self/ns/net")
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == exclude:
            continue
        with contextlib.suppress(OSError):
            if (entry / "comm").read_text().strip() == "dockerd" and os.readlink(
                entry / "ns" / "net"
            ) == here:
                pids.append(int(entry.name))
    return pids


def _check_host(layout: Layout) -> str:
    if os.geteuid() != 0:
        raise EngineError("starting a Docker engine needs root (dockerd, bridges, iptables)")
    dockerd = shutil.which("dockerd")
    if dockerd is None:
        raise EngineError("dockerd is not installed (Debian: apt-get install docker.io)")
    others = other_dockerd()
    if others:
        # dockerd flushes the shared DOCKER and DOCKER-ISOLATION chains when it starts: a second
        # engine in one network namespace breaks the first one's networking
        raise EngineError(
            f"another dockerd (pid {', '.join(map(str, others))}) runs in this network namespace, and two "
            "engines there break each other's iptables rules: use it (DOCKER_HOST) or stop it first"
        )
    longest = layout.root / _LONGEST_SOCKET
    if len(str(longest)) > _MAX_SOCKET:
        raise EngineError(
            f"engine directory {layout.root} is too long: its sockets would exceed {_MAX_SOCKET} bytes"
        )
    return dockerd


def _make_bridge(network: Network) -> None:
    if _ip("link", "show", network.bridge, check=False):
        return
    _ip("link", "add", "name", network.bridge, "type", "bridge")
    _ip("addr", "add", network.bridge_cidr, "dev", network.bridge)
    _ip("link", "set", network.bridge, "up")


def _network(layout: Layout) -> Network:
    """This engine's network: the one it had (a restart keeps its addresses), else a free block."""
    with contextlib.suppress(OSError, ValueError, KeyError):
        saved = json.loads(layout.network_file.read_text())
        return Network(saved["bridge"], ipaddress.IPv4Network(saved["block"]))
    net = Network(layout.bridge, free_block(_networks_in_use()))
    layout.network_file.write_text(json.dumps({"bridge": net.bridge, "block": str(net.block)}) + "\n")
    return net


def _wait_ready(layout: Layout, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = layout.log.read_text(errors="replace").strip().splitlines()[-3:]
            raise EngineError(f"dockerd exited ({proc.returncode}): {' | '.join(tail)} (log: {layout.log})")
        with contextlib.suppress(EngineError):
            Client(layout.host, timeout=2).info()
            return
        time.sleep(0.2)
    raise EngineError(f"dockerd did not answer within {START_SECONDS:.0f}s (log: {layout.log})")


def start(root: Path, log: Log = lambda _m: None) -> tuple[Layout, int]:
    """Start dockerd for `root` (or find it running); its layout and pid."""
    layout = Layout(root.resolve())
    pid = _running_pid(layout)
    if pid is not None:
        log(f"dockerd already runs for {layout.root} (pid {pid})")
        return layout, pid
    dockerd = _check_host(layout)
    layout.root.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not layout.config.exists():
        layout.config.write_text("{}\n")
    network = _network(layout)
    _make_bridge(network)
    drop = caps.missing_capabilities()
    if drop:
        real = shutil.which("runc")
        if real is None:
            raise EngineError("runc is not installed (Debian: apt-get install runc)")
        layout.runc_launcher.write_text(launcher_script(real, drop))
        layout.runc_launcher.chmod(0o755)
        log(
            f"this host's bounding set lacks {', '.join(drop)}: containers run through {layout.runc_launcher}"
        )
    argv = dockerd_argv(layout, network, drop, dockerd)
    with layout.log.open("ab") as out:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        _wait_ready(layout, proc)
    except EngineError:
        stop(layout.root)  # its bridge, and a containerd it may have started
        raise
    log(f"dockerd {proc.pid} answers at {layout.host}")
    return layout, proc.pid


def _stop_pid(pid: int, seconds: float) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + seconds
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        while alive(pid) and time.monotonic() < deadline + 5:
            time.sleep(0.1)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # reap it when it was our child (the tests start it in-process)


def _pids_using(needle: str) -> list[int]:
    """Processes whose command line mentions `needle` (the shims of this engine's containerd)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if needle.encode() in (entry / "cmdline").read_bytes():
                pids.append(int(entry.name))
    return pids


def engine_bridges(layout: Layout) -> list[str]:
    """The engine's bridges: its default one and one per network it created (while it runs)."""
    names = []
    with contextlib.suppress(OSError, ValueError, KeyError):
        names.append(json.loads(layout.network_file.read_text())["bridge"])
    with contextlib.suppress(EngineError):
        for net in Client(layout.host, timeout=5).json("GET", "/networks"):
            if net.get("Driver") == "bridge" and net.get("Name") != "bridge":
                opts = net.get("Options") or {}
                names.append(opts.get("com.docker.network.bridge.name") or f"br-{net['Id'][:12]}")
    return names


def _iptables_rules(table: str) -> list[str]:
    out = subprocess.run(
        ["iptables-save", "-t", table], capture_output=True, text=True, timeout=30, check=False
    )
    return [line for line in out.stdout.splitlines() if line.startswith("-A ")]


def delete_rules(table: str, matches: Callable[[str], bool]) -> list[str]:
    """Delete the rules of `table` (iptables-save lines) that `matches` selects; the deleted lines."""
    deleted = []
    for rule in _iptables_rules(table):
        if matches(rule):
            args = shlex.split(rule)[1:]  # drop "-A"
            res = subprocess.run(
                ["iptables", "-t", table, "-D", *args], capture_output=True, timeout=30, check=False
            )
            if res.returncode == 0:
                deleted.append(rule)
    return deleted


def stop(root: Path, log: Log = lambda _m: None) -> bool:
    """Stop the engine of `root` and remove its bridges and the iptables rules naming them; the data
    directory stays (images survive a restart). False when nothing ran."""
    layout = Layout(root.resolve())
    bridges = engine_bridges(layout)
    block = None
    with contextlib.suppress(OSError, ValueError, KeyError):
        block = json.loads(layout.network_file.read_text())["block"]
    pid = _running_pid(layout)
    if pid is not None:
        log(f"stopping dockerd {pid}")
        _stop_pid(pid, STOP_SECONDS)
    with contextlib.suppress(OSError, ValueError):
        cpid = int(layout.containerd_pidfile.read_text().strip())
        if alive(cpid):
            _stop_pid(cpid, 15)
    for shim in _pids_using(str(layout.containerd_socket)):
        _stop_pid(shim, 5)
    unmount_under(layout.root)
    for bridge in bridges:
        if _ip("link", "show", bridge, check=False):
            _ip("link", "delete", bridge, check=False)
    words = [*bridges, *([block] if block else [])]

    def ours(rule: str) -> bool:
        return any(w in rule.split() for w in words if w)

    if words:
        for table in ("filter", "nat"):
            delete_rules(table, ours)
    return pid is not None
