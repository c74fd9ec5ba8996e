"""kind's own config validator (kindconfig.go beside this file), built from the pinned kind module.

kind cannot create a cluster here (no container engine), and `kind create cluster` checks for one
before it reads its config, so tests check lab's rendered kind configs with the loader and validator
that command runs first. The kind module comes from the Go module proxy into the module cache (never
committed); the program is built in a writable copy of it. Cold: a minute or two; warm: seconds.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

from lab import gomod
from lab.config import Settings

PROGRAM = Path(__file__).with_name("kindconfig.go")


def build(workdir: Path) -> Path:
    """Build the validator under `workdir` (an empty tmp dir) and return the binary's path."""
    version = Settings(home=Path("/nonexistent")).versions.kind
    src = workdir / "src"
    shutil.copytree(gomod.component_dir("kind", version), src)
    for root, dirs, _files in os.walk(src):  # the module cache is read-only
        for d in [root, *(os.path.join(root, d) for d in dirs)]:
            os.chmod(d, os.stat(d).st_mode | stat.S_IWUSR)
    (src / "pkg" / "labvalidate").mkdir()  # pkg/internal is importable from pkg/ only
    shutil.copy(PROGRAM, src / "pkg" / "labvalidate" / "main.go")
    out = workdir / "validate"
    run = subprocess.run(
        [gomod.go_binary(), "build", "-o", str(out), "./pkg/labvalidate"],
        cwd=src,
        env=gomod.go_env(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return out


def check(validator: Path, config: Path, *fields: str) -> subprocess.CompletedProcess[str]:
    """Run the validator on one config file; stdout has one line per node with `fields`."""
    return subprocess.run([str(validator), str(config), *fields], capture_output=True, text=True, timeout=60)
