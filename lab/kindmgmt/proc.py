"""Run one external tool (kind, clusterctl, kubectl) and turn a failure into one LabError line."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping


def run(
    argv: list[str],
    *,
    env: Mapping[str, str] | None = None,
    input_text: str | None = None,
    timeout: float = 300,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    from lab.errors import LabError

    what = " ".join(argv[:3])
    try:
        out = subprocess.run(
            argv, input=input_text, capture_output=True, text=True, timeout=timeout, env=env, check=False
        )
    except subprocess.TimeoutExpired as e:
        raise LabError(f"{what} timed out after {timeout:.0f}s") from e
    except OSError as e:
        raise LabError(f"{what}: {e.strerror}") from e
    if check and out.returncode != 0:
        lines = (out.stderr.strip() or out.stdout.strip()).splitlines() or ["no output"]
        raise LabError(f"{what} failed: {lines[-1]}")
    return out
