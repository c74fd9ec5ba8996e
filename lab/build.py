"""Build upstream Go programs from their modules into a cache keyed by component and version.

Upstream go.mod files often carry local `replace` directives, which `go install pkg@version` refuses.
So every target is built from a small generated *wrapper module* (under <home>/src) whose go.mod
requires the upstream module at the pinned version; when the main module is ours, upstream replace
directives are ignored and Go resolves the sibling modules from the proxy instead. Binaries land in
<home>/bin/<component>/<version>/<name> and are reused until the version changes.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from lab import gomod, versions
from lab.config import Settings
from lab.errors import LabError


@dataclass(frozen=True)
class Target:
    """One binary: which component's version pins it, which package to build, and extra go.mod lines."""

    name: str
    component: str
    package: str
    #: Extra (module, version) requirements or replace lines, computed from settings when needed.
    extra_gomod: Callable[[Settings], list[str]] = field(default=lambda _s: [])


TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target("etcd", "etcd", "go.etcd.io/etcd/server/v3"),
        Target(
            "etcdctl",
            "etcd",
            "go.etcd.io/etcd/etcdctl/v3",
            lambda s: [f"require go.etcd.io/etcd/etcdctl/v3 {s.versions.etcd}"],
        ),
    )
}


def binary_path(settings: Settings, name: str) -> Path:
    t = TARGETS[name]
    return settings.bin_dir / t.component / getattr(settings.versions, t.component) / name


def go_version() -> tuple[int, int]:
    out = subprocess.run([gomod.go_binary(), "env", "GOVERSION"], capture_output=True, text=True, check=False)
    m = re.match(r"go(\d+)\.(\d+)", out.stdout.strip())
    if not m:
        raise LabError(f"cannot tell the Go version (go env GOVERSION said {out.stdout.strip()!r})")
    return int(m[1]), int(m[2])


def check_go() -> None:
    have = go_version()
    if have < versions.GO_MIN:
        need = ".".join(map(str, versions.GO_MIN))
        raise LabError(f"Go {have[0]}.{have[1]} is too old: building the pinned components needs Go {need}+")


def _wrapper_gomod(settings: Settings, t: Target) -> str:
    comp = versions.COMPONENTS[t.component]
    version = getattr(settings.versions, t.component)
    lines = [f"module lab.local/build/{t.name}", "", "go 1.25", "", f"require {comp.module} {version}"]
    lines += t.extra_gomod(settings)
    return "\n".join(lines) + "\n"


def build(settings: Settings, name: str, log: Callable[[str], None] = lambda _m: None) -> Path:
    """Build one target if its binary is not cached yet; return the binary's path."""
    out = binary_path(settings, name)
    if out.is_file() and os.access(out, os.X_OK):
        return out
    check_go()
    t = TARGETS[name]
    version = getattr(settings.versions, t.component)
    src = settings.src_dir / f"{name}-{version}"
    src.mkdir(parents=True, exist_ok=True)
    (src / "go.mod").write_text(_wrapper_gomod(settings, t))
    out.parent.mkdir(parents=True, exist_ok=True)
    logfile = settings.log_dir / "build" / f"{name}-{version}.log"
    logfile.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{name}.tmp")
    log(f"building {name} {version} (log: {logfile})")
    started = time.monotonic()
    with logfile.open("w") as fh:
        for cmd in (
            [gomod.go_binary(), "mod", "download", "-x"],
            [gomod.go_binary(), "build", "-trimpath", "-ldflags=-s -w", "-o", str(tmp), t.package],
        ):
            # go mod download fills go.sum for the requirements; build then adds what the package needs.
            fh.write(f"$ {' '.join(cmd)}\n")
            fh.flush()
            rc = subprocess.run(
                cmd, cwd=src, env=gomod.go_env(), stdout=fh, stderr=subprocess.STDOUT
            ).returncode
            if rc != 0 and cmd[1] == "build":
                raise LabError(f"building {name} {version} failed (exit {rc}); see {logfile}")
    tmp.rename(out)
    log(f"built {name} {version} in {time.monotonic() - started:.0f}s")
    return out


def ensure(
    settings: Settings, names: list[str], log: Callable[[str], None] = lambda _m: None
) -> dict[str, Path]:
    return {n: build(settings, n, log) for n in names}
