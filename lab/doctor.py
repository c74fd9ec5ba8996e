"""Preflight: which tools are here, at which versions, and which host limits will bite at scale.

Limits matter before anything breaks: every workload apiserver and every controller watch costs file
descriptors and inotify instances, and every connection from the controllers to hundreds of workload
APIs costs an ephemeral port. In local mode the limits are lab.preflight's checks, the same that
`lab up` and `lab create-clusters` refuse on, for full local and mux backings (`local_capacity` and
`mux_capacity` clusters), and for each of the two alone, how many more clusters fit and which limit
(or capacity setting) stops the next one.
Kind mode's nodes are containers with their own kubelet and systemd, not measured here: for them the
recommended values are the ones the Metal3 scale runs used (inotify, the seed scripts) or follow
from them.
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import subprocess
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import psutil

from lab import build, engine, naming, preflight, versions
from lab.config import Settings
from lab.engine import daemon

Mode = str  # "local" | "kind"


@dataclass(frozen=True)
class ToolSpec:
    name: str
    version_cmd: tuple[str, ...]
    pattern: str
    needed_by: tuple[str, ...]  # modes that cannot run without it
    why: str


TOOLS: tuple[ToolSpec, ...] = (
    ToolSpec("go", ("version",), r"go(\d+\.\d+(?:\.\d+)?)", ("local",), "builds the upstream components"),
    ToolSpec(
        "kubectl",
        ("version", "--client"),
        r"Client Version: v?([\w.+-]+)",
        ("kind",),
        "kind mode: builds BMO's overlay (kubectl kustomize); lab talks to the APIs itself",
    ),
    ToolSpec(
        "etcd", ("--version",), r"etcd Version: ([\w.+-]+)", (), "lab builds its own; a system one is unused"
    ),
    ToolSpec("etcdctl", ("version",), r"etcdctl version: ([\w.+-]+)", (), "lab builds its own"),
    ToolSpec("kind", ("version",), r"kind v([\w.+-]+)", ("kind",), "runs the kind management cluster"),
    ToolSpec("docker", ("--version",), r"version ([\w.+-]+)", ("kind",), "runs kind's nodes"),
    ToolSpec("clusterctl", ("version", "-o", "short"), r"v?(\d[\w.+-]*)", ("kind",), "installs CAPI in kind"),
    ToolSpec(
        "ansible-playbook", ("--version",), r"core ([\d.]+)", (), "provisions backing hosts (scale-out)"
    ),
)


@dataclass(frozen=True)
class ToolResult:
    name: str
    path: str | None
    version: str | None
    required: bool
    ok: bool
    status: str  # ok | missing | unusable | absent (not needed by this mode)
    note: str


@dataclass(frozen=True)
class LimitResult:
    name: str
    value: str
    recommended: str
    ok: bool
    fix: str


def _run(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout + out.stderr


def probe_tool(spec: ToolSpec, mode: Mode, settings: Settings) -> ToolResult:
    required = mode in spec.needed_by
    path = shutil.which(spec.name)
    note = spec.why
    if path is None and spec.name in build.TARGETS:
        cached = build.binary_path(settings, spec.name)
        if cached.is_file():
            path, note = str(cached), "lab's own build"
    if path is None:
        return ToolResult(
            spec.name, None, None, required, not required, "missing" if required else "absent", spec.why
        )
    m = re.search(spec.pattern, _run([path, *spec.version_cmd]))
    version = m.group(1) if m else None
    usable = version is not None
    if version is None:
        note = "does not report a version"
    if spec.name == "go" and version:
        have = tuple(int(p) for p in version.split(".")[:2])
        if have < versions.GO_MIN:
            usable, note = (
                False,
                f"too old: the pinned components need Go {'.'.join(map(str, versions.GO_MIN))}+",
            )
    if spec.name == "docker" and version and not _docker_engine(path):
        usable, note = False, "client only: no Docker engine answers"
    status = "ok" if usable else "unusable"
    return ToolResult(spec.name, path, version, required, usable or not required, status, note)


def _docker_engine(path: str) -> bool:
    try:
        return subprocess.run([path, "info"], capture_output=True, timeout=10, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _sysctl(name: str) -> str | None:
    try:
        return Path("/proc/sys", name.replace(".", "/")).read_text().strip()
    except OSError:
        return None


def local_limits(host: preflight.Host, demand: preflight.Demand) -> list[LimitResult]:
    """lab.preflight's checks as doctor rows: what `demand` would need on this host now."""
    return limit_rows(preflight.checks(host, demand))


def limit_rows(checks: list[preflight.Check]) -> list[LimitResult]:
    return [
        LimitResult(
            c.name,
            f"{c.limit}{c.unit}" + (f" ({c.used}{c.unit} in use)" if c.used else ""),
            f">= {c.needed}{c.unit}",
            c.ok,
            c.fix,
        )
        for c in checks
    ]


def host_limits() -> list[LimitResult]:
    """Kind mode: fixed recommendations from the Metal3 scale runs."""
    out: list[LimitResult] = []
    for name, want in (("fs.inotify.max_user_watches", 1048576), ("fs.inotify.max_user_instances", 8192)):
        raw = _sysctl(name)
        ok = raw is not None and int(raw) >= want
        out.append(LimitResult(name, raw or "unknown", f">= {want}", ok, f"sysctl -w {name}={want}"))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want_files = 65536
    out.append(
        LimitResult(
            "open files (ulimit -n)",
            f"{soft} (hard {hard})",
            f">= {want_files}",
            soft >= want_files,
            f"ulimit -n {min(max(want_files, soft), hard) if hard >= want_files else want_files}"
            + ("" if hard >= want_files else " (raise the hard limit in /etc/security/limits.conf)"),
        )
    )
    raw = _sysctl("net.ipv4.ip_local_port_range")
    if raw:
        low, high = (int(p) for p in raw.split())
        span = high - low + 1
        out.append(
            LimitResult(
                "ephemeral ports (net.ipv4.ip_local_port_range)",
                f"{low}-{high} ({span} ports)",
                ">= 28000 ports",
                span >= 28000,
                'sysctl -w net.ipv4.ip_local_port_range="1024 65000"',
            )
        )
    return out


def host_facts() -> dict[str, int | None]:
    return {"cpus": os.cpu_count(), "memory_bytes": psutil.virtual_memory().total}


@dataclass(frozen=True)
class EngineCheck:
    """kind mode: the Docker engine at DOCKER_HOST, and what this host needs of it."""

    host: str
    reachable: bool
    version: str | None
    api_version: str | None
    #: "1" or "2": the engine's view when it answers, else the host's
    cgroup_version: str
    default_runtime: str | None
    #: capabilities this host's bounding set lacks: --privileged containers (kind nodes) need them all
    missing_capabilities: list[str]
    #: each: what is wrong; what to do
    problems: list[str]
    #: host-specific workarounds lab applies because it detected their cause
    workarounds: list[str]

    @property
    def ok(self) -> bool:
        return self.reachable and not self.problems


def host_cgroup_version(root: Path = Path("/sys/fs/cgroup")) -> str:
    return "2" if (root / "cgroup.controllers").exists() else "1"


def _wrapper_flags(settings: Settings) -> str:
    layout = daemon.Layout(settings.engine_dir)
    return (
        f"--add-runtime {daemon.RUNTIME_NAME}={layout.runc_launcher} --default-runtime {daemon.RUNTIME_NAME}"
    )


def engine_findings(
    settings: Settings, info: engine.EngineInfo | None, reason: str, missing: list[str], cgroup: str
) -> tuple[list[str], list[str]]:
    """Pure: (problems, workarounds applied) for an engine as probed (`info` None: `reason` why not),
    the capabilities this host lacks and its cgroup version."""
    problems, workarounds = [], []
    layout = daemon.Layout(settings.engine_dir)
    if info is None:
        problems.append(
            f"{reason}; start one with `lab engine start` (then export DOCKER_HOST={layout.host})"
        )
    elif missing and info.default_runtime == daemon.RUNTIME_NAME:
        workarounds.append(
            f"runc wrapper {daemon.RUNTIME_NAME} drops {', '.join(missing)} from every container"
        )
    elif missing:
        problems.append(
            f"this host's capability bounding set lacks {', '.join(missing)}, so privileged containers "
            "(every kind node) fail with 'unable to apply caps'; run the engine through lab's runc wrapper: "
            f"`lab engine start`, or dockerd {_wrapper_flags(settings)} (lab engine start writes that launcher)"
        )
    if cgroup == "1":
        workarounds.append(
            "cgroup v1: kind nodes' kubelet gets failCgroupV1: false (Kubernetes >= 1.35 refuses v1 otherwise)"
        )
    return problems, workarounds


def engine_check(settings: Settings, host: str | None = None) -> EngineCheck:
    host = host or engine.default_host()
    try:
        info: engine.EngineInfo | None = engine.probe(host)
        reason = ""
    except engine.EngineError as e:
        info, reason = None, str(e)
    missing = engine.missing_capabilities()
    cgroup = (info.cgroup_version if info else "") or host_cgroup_version()
    problems, workarounds = engine_findings(settings, info, reason, missing, cgroup)
    return EngineCheck(
        host=host,
        reachable=info is not None,
        version=info.version if info else None,
        api_version=info.api_version if info else None,
        cgroup_version=cgroup,
        default_runtime=info.default_runtime if info else None,
        missing_capabilities=missing,
        problems=problems,
        workarounds=workarounds,
    )


@dataclass(frozen=True)
class Report:
    mode: Mode
    tools: list[ToolResult]
    limits: list[LimitResult]
    host: dict[str, int | None]  # cpus is None where the OS cannot tell
    #: local mode: per built-in backing of this host (local, mux), the clusters it still has room
    #: for, and the limit that stops the next one (a check's name, or the backing's capacity setting)
    room: dict[str, tuple[int, str]] | None = None
    #: kind mode: the Docker engine
    engine: EngineCheck | None = None

    @property
    def ok(self) -> bool:
        """Missing required tools and (kind mode) an unusable engine fail; limits only warn, because
        small labs run fine below them."""
        return all(t.ok for t in self.tools) and (self.engine is None or self.engine.ok)

    def as_dict(self) -> dict[str, object]:
        return {
            "mode": self.mode,
            "ok": self.ok,
            "tools": [asdict(t) for t in self.tools],
            "limits": [asdict(limit) for limit in self.limits],
            "host": self.host,
            "room": None
            if self.room is None
            else {name: {"clusters": fit, "limit": limit} for name, (fit, limit) in self.room.items()},
            "engine": None if self.engine is None else {**asdict(self.engine), "ok": self.engine.ok},
        }


def check(
    settings: Settings,
    mode: Mode,
    host: preflight.Host | None = None,
    demand: preflight.Demand | None = None,
) -> Report:
    """host and demand: this host's limits and what full local and mux backings add (default: read
    here, as if no stack ran)."""
    tools = [probe_tool(s, mode, settings) for s in TOOLS]
    if mode == "kind":
        return Report(mode, tools, host_limits(), host_facts(), engine=engine_check(settings))
    host = host or preflight.read_host((), settings.ports.tenant_etcd)
    demand = demand or preflight.Demand(
        local_clusters=settings.local_capacity, mux_clusters=settings.mux_capacity, stack=True
    )
    return Report(mode, tools, full_limits(host, demand), host_facts(), rooms(host, demand))


def full_limits(host: preflight.Host, demand: preflight.Demand) -> list[LimitResult]:
    """One row per limit, for each built-in backing filled alone (as `rooms` counts them): the larger
    of what the full local and the full mux backing need. Both at once would read "memory low" on a
    24 GiB host that holds either (100 local clusters need ~19 GiB, 1000 mux ones ~7 GiB)."""
    local = preflight.checks(host, replace(demand, mux_clusters=0))
    mux = {c.name: c for c in preflight.checks(host, replace(demand, local_clusters=0))}
    return limit_rows([max(c, mux.get(c.name, c), key=lambda x: x.needed) for c in local])


def rooms(host: preflight.Host, demand: preflight.Demand) -> dict[str, tuple[int, str]]:
    """Pure: per built-in backing, how many of the clusters `demand` would add to it fit alone on
    this host, and what stops the next one: the first short limit, else the capacity setting."""
    out = {}
    for name, left, mux, setting in (
        (naming.LOCAL_BACKING, demand.local_clusters, False, "local_capacity"),
        (naming.MUX_BACKING, demand.mux_clusters, True, "mux_capacity"),
    ):
        fit, limit = preflight.room(host, left, stack=demand.stack, mux=mux)
        out[name] = (fit, limit or setting)
    return out
