"""Generic port helpers: the loopback address, the kernel's ephemeral range, whether a port can be
bound and who listens on it. Which port belongs to which component is lab.stack.ports' table."""

from __future__ import annotations

import socket
from pathlib import Path

import psutil

LOOPBACK = "127.0.0.1"


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
