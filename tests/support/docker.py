"""A real Docker engine for the tests: Debian's docker.io, started by lab.engine in a tmp directory, and
everything it did to the host undone at the end.

What the engine does to the host, and how each is undone:
- dockerd, its containerd and the shims: stopped by pid (lab.engine.stop);
- its bridges (lab's default one and one per network, kind's among them): deleted by lab.engine.stop,
  with the iptables rules naming them;
- the chains dockerd creates (DOCKER, DOCKER-USER, DOCKER-ISOLATION-STAGE-1/2) and their jumps, the
  FORWARD policy (dockerd sets DROP when it turns forwarding on) and net.ipv4.ip_forward: restored to
  what they were before, once no other dockerd runs (a second engine, e.g. another test run, still
  needs them; then the fixture says what it left);
- the DOCKER-USER rule this fixture adds, which drops what the engine's containers send out of the
  machine's uplink, so a stray pull never leaves the machine: deleted.

Unavailable here (not root, no apt): the fixture says why and skips; under CI (CI=true) it fails
instead, because CI must run these tests.

    with running_engine() as eng:
        eng.client.info(); run_container(eng.client, image, ["true"])
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import struct
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from lab import engine
from lab.engine import daemon
from lab.runtime.procs import alive

IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")
_COMMENT = "lab-test-engine-uplink"


def unavailable(reason: str) -> None:
    """Skip with the reason printed; under CI, fail: these tests must run there."""
    if os.environ.get("CI", "").lower() in ("true", "1"):
        pytest.fail(f"CI must run the Docker engine tests, but: {reason}")
    print(f"skipping Docker engine tests: {reason}")
    pytest.skip(reason)


def ensure_docker_io() -> None:
    """Install Debian's docker.io (and debootstrap, for the base image) when missing, as scripts/test
    does; apt-get update once per session."""
    missing = [
        pkg
        for tool, pkg in (("dockerd", "docker.io"), ("debootstrap", "debootstrap"))
        if not shutil.which(tool)
    ]
    if not missing:
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        unavailable(f"{', '.join(missing)} missing and cannot be installed here (needs root and apt-get)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
    ):
        res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900, check=False)
        if res.returncode != 0:
            unavailable(f"{' '.join(cmd)} failed: {res.stderr.strip()[-300:]}")


def _iptables_save(table: str) -> list[str]:
    out = subprocess.run(
        ["iptables-save", "-t", table], capture_output=True, text=True, timeout=30, check=True
    )
    return [line for line in out.stdout.splitlines() if line.startswith((":", "-A "))]


@dataclass(frozen=True)
class HostNet:
    """What the engine changes in the host's network setup."""

    ip_forward: str
    #: iptables-save lines (chain declarations with their policy, and rules) of filter and nat
    filter: tuple[str, ...]
    nat: tuple[str, ...]

    @classmethod
    def read(cls) -> HostNet:
        return cls(
            IP_FORWARD.read_text().strip(), tuple(_iptables_save("filter")), tuple(_iptables_save("nat"))
        )

    def chains(self, table: str) -> dict[str, str]:
        """chain -> policy ('-' for a user chain)."""
        lines = self.filter if table == "filter" else self.nat
        return {line[1:].split()[0]: line.split()[1] for line in lines if line.startswith(":")}

    def rules(self, table: str) -> list[str]:
        return [line for line in (self.filter if table == "filter" else self.nat) if line.startswith("-A ")]


def restore(before: HostNet) -> list[str]:
    """Undo what dockerd added since `before` (rules, chains, FORWARD policy, ip_forward); what was
    left undone and why (another dockerd runs and needs it)."""
    others = daemon.other_dockerd()
    if others:
        return [f"left Docker's shared chains and ip_forward in place: dockerd {others} still runs"]
    for table in ("filter", "nat"):
        kept = set(before.rules(table))
        # only Docker's: another test may add rules of its own meanwhile
        daemon.delete_rules(table, lambda rule, kept=kept: rule not in kept and "DOCKER" in rule)  # type: ignore[misc]
        had = before.chains(table)
        new = [c for c in HostNet.read().chains(table) if c not in had and c.startswith("DOCKER")]
        for chain in new:
            subprocess.run(
                ["iptables", "-t", table, "-F", chain], capture_output=True, timeout=30, check=False
            )
        for chain in new:
            subprocess.run(
                ["iptables", "-t", table, "-X", chain], capture_output=True, timeout=30, check=False
            )
    # a table iptables never loaded had nothing but ACCEPT policies
    policy = before.chains("filter").get("FORWARD", "ACCEPT")
    if policy != "-":
        subprocess.run(["iptables", "-P", "FORWARD", policy], capture_output=True, timeout=30, check=True)
    IP_FORWARD.write_text(before.ip_forward + "\n")
    return []


def _uplink_rules(block: str) -> list[list[str]]:
    return [
        ["DOCKER-USER", "-s", block, "-o", dev, "-m", "comment", "--comment", _COMMENT, "-j", "DROP"]
        for dev in daemon.uplinks()
    ]


@dataclass(frozen=True)
class Engine:
    layout: daemon.Layout
    pid: int
    block: str
    client: engine.Client
    #: seconds lab.engine.start took
    start_seconds: float

    @property
    def host(self) -> str:
        return self.layout.host

    def env(self) -> dict[str, str]:
        return {"DOCKER_HOST": self.layout.host}


def _remove_everything(client: engine.Client) -> None:
    with contextlib.suppress(engine.EngineError):
        for c in client.json("GET", "/containers/json", {"all": "1"}):
            client.json("DELETE", f"/containers/{c['Id']}", {"force": "1", "v": "1"})
        client.json("POST", "/networks/prune")


@contextlib.contextmanager
def running_engine() -> Iterator[Engine]:
    """An engine in a new directory under /tmp, isolated from the uplink; the host as it was after.

    /tmp, not pytest's tmp_path: containerd refuses socket paths over 104 bytes, and pytest's
    directories named after long test names pass that under exec/containerd/.
    """
    if os.geteuid() != 0:
        unavailable("a Docker engine needs root")
    ensure_docker_io()
    before = HostNet.read()
    root = Path(tempfile.mkdtemp(prefix="labeng-", dir="/tmp"))
    added: list[list[str]] = []
    started_ok = False
    try:
        started = time.monotonic()
        layout, pid = engine.start(root, print)
        seconds = time.monotonic() - started
        block = json.loads(layout.network_file.read_text())["block"]
        for rule in _uplink_rules(block):
            subprocess.run(["iptables", "-I", *rule], capture_output=True, text=True, timeout=30, check=True)
            added.append(rule)
        started_ok = True
        yield Engine(layout, pid, block, engine.Client(layout.host), seconds)
    finally:
        client = engine.Client(daemon.Layout(root).host, timeout=60)
        _remove_everything(client)
        bridges = daemon.engine_bridges(daemon.Layout(root))
        pids = [pid, *_containerd_pid(root)] if started_ok else []
        engine.stop(root, print)
        for rule in added:
            subprocess.run(["iptables", "-D", *rule], capture_output=True, timeout=30, check=False)
        notes = restore(before)
        for note in notes:
            print(note)
        shutil.rmtree(root, ignore_errors=True)
        if started_ok:
            _check_restored(before, bridges, pids, root, shared_left=bool(notes))


def _containerd_pid(root: Path) -> list[int]:
    with contextlib.suppress(OSError, ValueError):
        return [int(daemon.Layout(root).containerd_pidfile.read_text())]
    return []


_BUILTIN = {"filter": ("INPUT", "FORWARD", "OUTPUT"), "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING")}


def normal(net: HostNet, table: str) -> tuple[dict[str, str], list[str]]:
    """Chains with policies, and rules; a table iptables never loaded has its built-ins at ACCEPT."""
    return {c: "ACCEPT" for c in _BUILTIN[table]} | net.chains(table), sorted(net.rules(table))


def _check_restored(
    before: HostNet, bridges: list[str], pids: list[int], root: Path, shared_left: bool
) -> None:
    """The teardown's own test: fail loudly when anything of the engine is left on the host."""
    left = [f"process {p}" for p in pids if alive(p)]
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    left += [f"bridge {b}" for b in bridges if f" {b}:" in links or f" {b}@" in links]
    after = HostNet.read()
    saved = after.filter + after.nat
    left += [f"iptables rule {r!r}" for r in saved if any(b in r.split() for b in bridges)]
    left += [f"mount under {root}" for _ in [0] if str(root) in Path("/proc/self/mountinfo").read_text()]
    if root.exists():
        left.append(f"directory {root}")
    if not shared_left:
        if after.ip_forward != before.ip_forward:
            left.append(f"net.ipv4.ip_forward {after.ip_forward} (was {before.ip_forward})")
        for table in ("filter", "nat"):
            if normal(after, table) != normal(before, table):
                left.append(f"iptables {table} differs: {normal(after, table)} (was {normal(before, table)})")
    assert not left, "the Docker engine fixture left: " + "; ".join(left)


# --- containers, through the API (what `docker run` does) ---------------------------------------


def demux(raw: bytes) -> tuple[bytes, bytes]:
    """stdout and stderr of a non-TTY container's log stream (8-byte frame headers)."""
    out, err = b"", b""
    while len(raw) >= 8:
        kind, size = struct.unpack(">BxxxL", raw[:8])
        body, raw = raw[8 : 8 + size], raw[8 + size :]
        if kind == 2:
            err += body
        else:
            out += body
    return out, err


@dataclass(frozen=True)
class Ran:
    exit_code: int
    stdout: str
    stderr: str


def run_container(
    client: engine.Client,
    image: str,
    cmd: list[str] | None = None,
    *,
    privileged: bool = False,
    entrypoint: list[str] | None = None,
    timeout: float = 120,
) -> Ran:
    """Create, start, wait for and remove one container; its exit code and output."""
    body: dict[str, Any] = {"Image": image, "HostConfig": {"Privileged": privileged}}
    if cmd is not None:
        body["Cmd"] = cmd
    if entrypoint is not None:
        body["Entrypoint"] = entrypoint
    cid = client.json("POST", "/containers/create", body=body)["Id"]
    try:
        client.json("POST", f"/containers/{cid}/start")
        waited = engine.Client(client.host, timeout=timeout).json("POST", f"/containers/{cid}/wait")
        raw = client._request("GET", f"/containers/{cid}/logs", {"stdout": "1", "stderr": "1"}).read()
        out, err = demux(raw)
        return Ran(int(waited["StatusCode"]), out.decode(errors="replace"), err.decode(errors="replace"))
    finally:
        client.json("DELETE", f"/containers/{cid}", {"force": "1"})


def exec_in(client: engine.Client, cid: str, cmd: list[str], *, privileged: bool = False) -> int:
    """`docker exec` (detached, then inspected until it ends): the exit code."""
    ex = client.json(
        "POST", f"/containers/{cid}/exec", body={"Cmd": cmd, "Privileged": privileged, "AttachStdout": True}
    )["Id"]
    client._request(
        "POST", f"/exec/{ex}/start", body=b'{"Detach": false}', headers={"Content-Type": "application/json"}
    ).read()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        state = client.json("GET", f"/exec/{ex}/json")
        if not state["Running"]:
            return int(state["ExitCode"])
        time.sleep(0.2)
    raise TimeoutError(f"exec {shlex.join(cmd)} did not end")
