"""Fixtures every test layer shares.

Tests never touch the user's lab home: `lab_env` points LAB_HOME at a tmp dir, and `run_lab` runs
the real console entry point in a subprocess, so exit codes and stderr are exactly what a user sees.

scripts/test runs the suite on two pytest-xdist workers, each with its own real stack;
`pytest_xdist_make_scheduler` below makes each test file one unit of work, so file order and module
fixtures hold as in a single process.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from support import scheduling

# Generated tests (tests/badinput.py): no per-example deadline (each may start a subprocess on a
# busy machine); in CI the same examples every run (derandomized, no example database), so a red
# run is reproducible from its log.
settings.register_profile("dev", deadline=None)
settings.register_profile("ci", deadline=None, derandomize=True, database=None, print_blob=True)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """scripts/test's workers get whole files (support.scheduling.unit). xdist's own loadgroup cannot do
    this here: it tags items by rewriting `item._nodeid`, which pytest 9.2 no longer reads (measured:
    every test went to its own worker, two stacks each ran half of one module)."""
    from xdist.scheduler import LoadScopeScheduling

    class FileScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return scheduling.unit(nodeid, config.rootpath)

    return FileScheduling(config, log)


@pytest.fixture
def lab_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    home = tmp_path / "labhome"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAB_")}
    env["LAB_HOME"] = str(home)
    for k in [k for k in os.environ if k.startswith("LAB_")]:
        monkeypatch.delenv(k)
    monkeypatch.setenv("LAB_HOME", str(home))
    monkeypatch.chdir(tmp_path)
    return env


@pytest.fixture
def run_lab(lab_env: dict[str, str]) -> Callable[..., subprocess.CompletedProcess[str]]:
    def run(*args: str, env: dict[str, str] | None = None, input: str | None = None, timeout: float = 120):
        return subprocess.run(
            [sys.executable, "-m", "lab", *args],
            capture_output=True,
            text=True,
            env={**lab_env, "COLUMNS": "200", **(env or {})},
            input=input,
            timeout=timeout,
        )

    return run
