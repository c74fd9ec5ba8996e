"""What runs on this machine under lab's supervisord, whichever way the management cluster runs: the
local stack supervises etcd, the apiservers, the managers and the node simulator; kind mode only the
node simulator. Both wait for programs the same way, report them as the same status rows and stop
and purge the same lab home, so those live here, below both (lab.stack, lab.kindmgmt); which
programs exist and how each is probed is the caller's.
"""

from __future__ import annotations

import shutil
import ssl
import time
import urllib.error
import urllib.request
import xmlrpc.client
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil

from lab import naming
from lab.config import Settings
from lab.errors import LabError
from lab.runtime.logs import last_line
from lab.runtime.supervise import Supervisor, log_file

Log = Callable[[str], None]

#: A program seen (re)started this many times while we wait is crash-looping: fail early.
MAX_STARTS = 4
#: CPU% is measured over this window (psutil needs two samples).
CPU_WINDOW = 0.5


# --- health --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    url: str
    ca_file: Path | None = None  # verify with this CA; None for plain HTTP or self-signed (kcm)


def check(probe: Probe, timeout: float = 2.0) -> tuple[bool, str]:
    """(healthy, short reason)."""
    ctx = None
    if probe.url.startswith("https"):
        if probe.ca_file:
            ctx = ssl.create_default_context(cafile=str(probe.ca_file))
        else:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(probe.url, timeout=timeout, context=ctx) as resp:
            return resp.status == 200, f"HTTP {resp.status}"
    except urllib.error.HTTPError as e:
        return False, f"HTTP {e.code}"
    except (OSError, ssl.SSLError) as e:
        reason = getattr(e, "reason", None) or e
        return False, str(reason)[:80]


def component_error(settings: Settings, name: str, what: str) -> LabError:
    log = log_file(settings, name)
    last = last_line(log, 200, empty="", missing="")
    tail = f": {last}" if last else ""
    return LabError(f"{name} {what}{tail} (log: {log})")


def wait_healthy(
    settings: Settings,
    sup: Supervisor,
    names: list[str],
    timeout: float,
    log: Log,
    probes: Mapping[str, Probe],
) -> None:
    """Until every program in `names` is RUNNING and answers its probe (a program without one:
    RUNNING is enough); one LabError line with the program's last log line otherwise."""
    pending = list(names)
    starts: dict[str, set[int]] = {n: set() for n in names}
    deadline = time.monotonic() + timeout
    while pending:
        for name in list(pending):
            info = sup.process(name)
            if info is None:
                raise LabError(f"{name} is not known to supervisord (config: {settings.run_dir})")
            if info["statename"] == "FATAL":
                raise component_error(settings, name, "will not start")
            if info["start"]:
                starts[name].add(int(info["start"]))
            if len(starts[name]) >= MAX_STARTS:
                raise component_error(settings, name, f"keeps exiting ({len(starts[name])} starts)")
            probe = probes.get(name)
            if info["statename"] == "RUNNING" and (probe is None or check(probe)[0]):
                pending.remove(name)
                log(f"{name} healthy (pid {info['pid']})")
        if not pending:
            return
        if time.monotonic() > deadline:
            name = pending[0]
            info = sup.process(name) or {}
            probe = probes.get(name)
            reason = check(probe)[1] if probe else "no probe"
            raise component_error(
                settings,
                name,
                f"not healthy after {timeout:.0f}s (state {info.get('statename')}, probe: {reason})",
            )
        time.sleep(0.5)


# --- status --------------------------------------------------------------------------------------


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


def rows(
    settings: Settings, order: Sequence[str], probes: Mapping[str, Probe], window: float = CPU_WINDOW
) -> list[Row]:
    """Supervisor state, pid, uptime, RSS, CPU and health of every program, in `order` (start order),
    then anything else (the workload apiservers) by name."""
    sup = Supervisor(settings)
    if not sup.alive():
        return []
    rank = {n: i for i, n in enumerate(order)}
    try:
        found = sup.processes()
    except (OSError, xmlrpc.client.Error):
        return []  # supervisord went away after answering alive(): a `lab down` in progress
    infos = sorted(found, key=lambda i: (rank.get(i["name"], len(rank)), i["name"]))
    procs = {i["name"]: _proc(int(i["pid"])) if i["pid"] else None for i in infos}
    time.sleep(window)
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
                healthy=(check(probe)[0] if running else False) if probe else None,
                log=str(log_file(settings, i["name"])),
            )
        )
    return out


# --- down ----------------------------------------------------------------------------------------


def state_path(settings: Settings) -> Path:
    """The local stack's stored state (the tuning profile its last up or tune chose)."""
    return settings.home / "stack.json"


def purge_paths(settings: Settings) -> list[Path]:
    """Everything `down --purge` deletes: the stack's data, not the binary cache, its sources and
    build logs, or the run records."""
    logs = (
        sorted(p for p in settings.log_dir.glob("*") if p.name != "build")
        if settings.log_dir.is_dir()
        else []
    )
    return [
        settings.home / "etcd",
        settings.pki_dir,
        *logs,
        settings.run_dir,
        settings.clusters_dir,
        settings.admin_kubeconfig,
        state_path(settings),
    ]


def _workload_apiservers(sup: Supervisor) -> list[str]:
    prefix = naming.WORKLOAD_PROGRAM_PREFIX
    return [p["name"] for p in sup.processes() if p["name"].startswith(prefix)]


def down(settings: Settings, purge: bool = False) -> bool:
    """Stop supervisord and everything under it; True when something was running."""
    sup = Supervisor(settings)
    was_running = sup.alive()
    if was_running:
        # supervisord's own shutdown stops programs one at a time, each up to its stopwaitsecs:
        # with 100 clusters left (a failed delete) at load 28 it had not finished after 260 s,
        # apiservers of live clusters taking up to 30 s each. All of them at once first, so
        # the wait is bounded by one stopwaitsecs.
        sup.stop(_workload_apiservers(sup))
        sup.shutdown(timeout=60.0)
    if purge:
        for path in purge_paths(settings):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
    return was_running
