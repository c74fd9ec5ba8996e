"""What each supervised component is doing: supervisor state, pid, uptime, RSS, CPU and health."""

from __future__ import annotations

import time
import xmlrpc.client
from dataclasses import asdict, dataclass
from typing import Any

import psutil

from lab import components
from lab.config import Settings
from lab.runtime.supervise import Supervisor, log_file
from lab.stack import health, managers

ORDER = (*components.CORE, *managers.NAMES, components.NODESIM)
#: CPU% is measured over this window (psutil needs two samples).
CPU_WINDOW = 0.5


@dataclass(frozen=True)
class Row:
    name: str
    state: str
    pid: int | None
    uptime_s: float | None
    rss_bytes: int | None
    cpu_percent: float | None
    cpu_seconds: float | None
    healthy: bool | None
    log: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _proc(pid: int) -> psutil.Process | None:
    try:
        p = psutil.Process(pid)
        p.cpu_percent(None)  # first sample
        return p
    except psutil.Error:
        return None


def rows(settings: Settings, window: float = CPU_WINDOW) -> list[Row]:
    sup = Supervisor(settings)
    if not sup.alive():
        return []
    # Start order, then anything else (issue 5's workload apiservers) by name.
    order = {n: i for i, n in enumerate(ORDER)}
    try:
        found = sup.processes()
    except (OSError, xmlrpc.client.Error):
        return []  # supervisord went away after answering alive(): a `lab down` in progress
    infos = sorted(found, key=lambda i: (order.get(i["name"], len(order)), i["name"]))
    procs = {i["name"]: _proc(int(i["pid"])) if i["pid"] else None for i in infos}
    time.sleep(window)
    probes = health.probes(settings)
    out = []
    for i in infos:
        p = procs[i["name"]]
        rss = cpu = cpu_s = None
        if p is not None:
            try:
                with p.oneshot():
                    rss = p.memory_info().rss
                    cpu = round(p.cpu_percent(None), 1)
                    t = p.cpu_times()
                    cpu_s = round(t.user + t.system, 1)
            except psutil.Error:
                pass
        running = i["statename"] == "RUNNING"
        probe = probes.get(i["name"])
        out.append(
            Row(
                name=i["name"],
                state=i["statename"],
                pid=int(i["pid"]) or None,
                uptime_s=float(i["now"] - i["start"]) if running else None,
                rss_bytes=rss,
                cpu_percent=cpu,
                cpu_seconds=cpu_s,
                healthy=(health.check(probe)[0] if running else False) if probe else None,
                log=str(log_file(settings, i["name"])),
            )
        )
    return out
