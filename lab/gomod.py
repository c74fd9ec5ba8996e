"""The Go module cache as lab's source of upstream code, CRDs and manifests.

Everything upstream (source to build, CRDs to install, webhook manifests) comes from
`go mod download`, so one pinned version in lab.versions fixes all of it, and nothing upstream is
ever copied into this repository.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from lab import versions
from lab.errors import LabError


def go_env() -> dict[str, str]:
    """The environment for every go command lab runs."""
    env = dict(os.environ)
    nosum = [p for p in env.get("GONOSUMDB", "").split(",") if p]
    env["GONOSUMDB"] = ",".join(dict.fromkeys([*nosum, *versions.NOSUMDB]))
    env.setdefault("GOFLAGS", "-mod=mod")
    return env


def go_binary() -> str:
    go = shutil.which("go") or ("/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists() else None)
    if not go:
        raise LabError("go is not installed: lab builds upstream components with the Go toolchain")
    return go


@functools.cache
def module_dir(module: str, version: str) -> Path:
    """Download module@version into the module cache (once) and return its read-only directory."""
    try:
        out = subprocess.run(
            [go_binary(), "mod", "download", "-json", f"{module}@{version}"],
            capture_output=True,
            text=True,
            env=go_env(),
            cwd="/",
            timeout=900,
        )
    except subprocess.TimeoutExpired as e:
        raise LabError(f"go mod download {module}@{version} timed out after 900s") from e
    try:
        info = json.loads(out.stdout or "{}")
    except json.JSONDecodeError:
        info = {}
    if out.returncode != 0 or "Dir" not in info:
        detail = info.get("Error") or out.stderr.strip().splitlines()[-1:] or ["no output"]
        raise LabError(
            f"cannot download {module}@{version}: {detail if isinstance(detail, str) else detail[0]}"
        )
    return Path(info["Dir"])


@dataclass(frozen=True)
class GoMod:
    """What lab reads from an upstream go.mod, as `go mod edit -json` reports it."""

    go: str | None
    godebug: list[tuple[str, str]]
    #: (module, version) of every require directive
    requires: list[tuple[str, str]]
    #: (old, new) of every replace directive; each side is "path" or "path version"
    replaces: list[tuple[str, str]]

    def directives(self) -> list[str]:
        """The `go` and `godebug` lines: they set the GODEBUG defaults of a binary built from it."""
        lines = [f"go {self.go or '1.25'}"]
        return lines + [f"godebug {key}={value}" for key, value in self.godebug]


def _side(mod: dict[str, str]) -> str:
    return " ".join(p for p in (mod["Path"], mod.get("Version")) if p)


@functools.cache
def read_gomod(path: Path) -> GoMod:
    """Parse a go.mod with Go's own parser rather than by hand."""
    out = subprocess.run(
        [go_binary(), "mod", "edit", "-json", str(path)], capture_output=True, text=True, env=go_env()
    )
    if out.returncode != 0:
        raise LabError(
            f"cannot read {path}: {out.stderr.strip().splitlines()[-1:] or ['go mod edit failed']}"
        )
    data = json.loads(out.stdout)
    return GoMod(
        go=data.get("Go"),
        godebug=[(d["Key"], d["Value"]) for d in data.get("GoDebug") or []],
        requires=[(r["Path"], r["Version"]) for r in data.get("Require") or []],
        replaces=[(_side(r["Old"]), _side(r["New"])) for r in data.get("Replace") or []],
    )


def component_dir(key: str, version: str) -> Path:
    """Source directory of a component from lab.versions.COMPONENTS at the given version."""
    return module_dir(versions.COMPONENTS[key].module, version)
