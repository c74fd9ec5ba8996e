"""Mounts left under a directory tree (a Docker engine's root, a debootstrap root whose second
stage failed with /proc and /sys mounted) are unmounted before the tree is removed."""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path


def unmount_under(root: Path) -> None:
    """Lazily unmount `root` and everything mounted below it, deepest first."""
    mounts = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            # mountinfo escapes blanks and backslashes in octal (\040)
            point = line.split()[4].encode().decode("unicode_escape")
            if point == str(root) or point.startswith(f"{root}/"):
                mounts.append(point)
    for point in sorted(mounts, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, timeout=60, check=False)
