"""Which loopback port belongs to which part of the stack.

Besides the ports named in settings.ports, every health, metrics and webhook port comes from one
block starting at settings.ports.stack_base, at fixed offsets, so a user (or a test) moves the whole
stack by changing one number.
"""

from __future__ import annotations

import random
import socket
from dataclasses import dataclass
from pathlib import Path

import psutil

from lab.config import Settings

LOOPBACK = "127.0.0.1"
BLOCK = 40

#: manager -> offset of its (webhook, health, metrics) triple inside the block
_MANAGER_OFFSETS = {
    "capi-manager": 10,
    "kcp-manager": 13,
    "cabpk-manager": 16,
    "capm3-manager": 19,
    "ipam-manager": 22,
    "bmo-manager": 25,
}
_KCM, _MGMT_ETCD_METRICS, _TENANT_ETCD_METRICS = 0, 1, 2


@dataclass(frozen=True)
class ManagerPorts:
    webhook: int
    health: int
    metrics: int


def manager(settings: Settings, name: str) -> ManagerPorts:
    base = settings.ports.stack_base + _MANAGER_OFFSETS[name]
    return ManagerPorts(webhook=base, health=base + 1, metrics=base + 2)


def kcm(settings: Settings) -> int:
    return settings.ports.stack_base + _KCM


def mgmt_etcd_metrics(settings: Settings) -> int:
    return settings.ports.stack_base + _MGMT_ETCD_METRICS


def tenant_etcd_metrics(settings: Settings) -> int:
    return settings.ports.stack_base + _TENANT_ETCD_METRICS


def ephemeral_range() -> tuple[int, int]:
    """The kernel's range for outgoing connections' local ports (Linux; its default elsewhere)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def bindable(port: int, host: str = LOOPBACK, reuse: bool = False) -> bool:
    """Whether a listener could bind host:port now (reuse: ignore sockets in TIME_WAIT, as servers do)."""
    with socket.socket() as s:
        if reuse:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def listener_pid(port: int, host: str | None = None) -> int | None:
    """Pid of the process listening on port (on host, when given); None if unknown or not visible."""
    try:
        conns = psutil.net_connections(kind="tcp")
    except psutil.AccessDenied:
        return None
    for c in conns:
        if c.status != psutil.CONN_LISTEN or not c.laddr or c.laddr.port != port:
            continue
        if host is None or c.laddr.ip in (host, "0.0.0.0", "::"):
            return c.pid
    return None


def free_block(size: int = 1, floor: int = 20000) -> int:
    """The first of `size` consecutive free loopback ports, chosen at random below the ephemeral range.

    A listener on an ephemeral port can lose it to any outgoing connection before it binds (seen in
    CI: a manager's webhook port taken by a client socket), so tests and benchmarks pick from below.
    """
    ceiling = ephemeral_range()[0]
    if ceiling - floor < size * 4:
        floor = 1024
    rng = random.Random()
    for _ in range(500):
        base = rng.randrange(floor, ceiling - size)
        if all(bindable(p) for p in range(base, base + size)):
            return base
    raise RuntimeError(f"no {size} consecutive free ports on {LOOPBACK} below {ceiling}")


def free_port() -> int:
    return free_block(1)
