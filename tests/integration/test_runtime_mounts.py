"""lab.runtime.mounts against real mounts: tmpfs mounted below a tree (and one nested in it, and one
whose path has a blank, which mountinfo escapes) are all gone after unmount_under; a mount beside the
tree is left alone."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from lab.runtime.mounts import unmount_under


def _mounted() -> set[str]:
    lines = Path("/proc/self/mountinfo").read_text().splitlines()
    return {ln.split()[4].encode().decode("unicode_escape") for ln in lines}


def _mount(point: Path) -> None:
    point.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(point)], check=True, timeout=30)


def test_everything_below_the_root_is_unmounted_and_nothing_beside_it(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("mounting tmpfs needs root, and CI runs as root")
        pytest.skip("mounting tmpfs needs root")
    root, beside = tmp_path / "root", tmp_path / "root-beside"
    below = [root / "proc", root / "proc" / "sys", root / "with blank"]
    try:
        for p in [*below, beside]:
            _mount(p)
        assert {str(p) for p in [*below, beside]} <= _mounted()
        unmount_under(root)
        assert not {str(p) for p in below} & _mounted()
        assert str(beside) in _mounted()
    finally:
        for p in [beside, *reversed(below)]:
            subprocess.run(["umount", "-l", str(p)], capture_output=True, timeout=30, check=False)
