"""A handle on a running stack for the e2e tests (lab and kubectl against it), and the environment
that gives a stack its own home and a free block of ports. tests/e2e/conftest.py starts one per
session."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from lab import config
from lab.config import default_home
from lab.stack.ports import BLOCK
from support.ports import free_block


@dataclass
class Stack:
    env: dict[str, str]
    home: Path
    up_seconds: float
    up_stdout: str

    @property
    def kubeconfig(self) -> Path:
        return self.home / "kubeconfig"

    def lab(self, *args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess[str]:
        out = run_lab(self.env, *args, timeout=timeout)
        if check and out.returncode != 0:
            raise AssertionError(f"lab {' '.join(args)} exited {out.returncode}: {out.stderr.strip()}")
        return out

    def settings(self) -> config.Settings:
        """The stack's settings, as lab itself loads them from its LAB_* environment."""
        import pytest

        with pytest.MonkeyPatch.context() as mp:
            for k, v in self.env.items():
                if k.startswith("LAB_"):
                    mp.setenv(k, v)
            return config.load()

    def kubectl(
        self, *args: str, input_text: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        out = subprocess.run(
            ["kubectl", f"--kubeconfig={self.kubeconfig}", *args],
            capture_output=True,
            text=True,
            input=input_text,
            timeout=timeout,
        )
        if check and out.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} exited {out.returncode}: {out.stderr.strip()}")
        return out

    def kubectl_json(self, *args: str) -> Any:
        return json.loads(self.kubectl(*args, "-o", "json").stdout)

    def check_sampled(self, run: int) -> dict[str, Any]:
        """Run `run`'s JSON report has what its samplers give (lab.clusters.session.RunSampling): a
        components row for the management apiserver, each manager and lab itself, lab's from the
        idle window after the last cluster was done, metrics (the bottleneck section's data), and
        the stack's tuning profile and patched builds in its settings. Returns the report."""
        rep: dict[str, Any] = json.loads(self.lab("report", "--run", str(run), "--format", "json").stdout)
        rows = {c["component"]: c for c in rep["components"]}
        assert {"kube-apiserver", "capi-manager", "capm3-manager", "bmo-manager", "lab"} <= set(rows), sorted(
            rows
        )
        assert rows["lab"]["idle"] and rows["lab"]["samples"] >= 1, rows["lab"]
        assert rep["metrics"] is not None and rep["metrics"]["scrapes"] >= 1, (
            f"run {run} has no metric samples"
        )
        # what was live on the stack (lab.clusters.session.run_snapshot): the tuning profile behind
        # the report's client QPS and the patched builds ({} with none), as a create run records
        live = rep["run"]["settings"]
        assert live.get("tuning") is not None and isinstance(live.get("patched"), dict), live
        return rep

    def status(self) -> dict[str, dict[str, Any]]:
        data = json.loads(self.lab("status", "-o", "json").stdout)
        return {c["name"]: c for c in data["components"]}


def run_lab(env: dict[str, str], *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """`python -m lab ARGS` in `env`, output captured, wide enough that tables do not wrap."""
    return subprocess.run(
        [sys.executable, "-m", "lab", *args],
        capture_output=True,
        text=True,
        env={**env, "COLUMNS": "200"},
        timeout=timeout,
    )


def timed_lab(
    env: dict[str, str], *args: str, timeout: float = 7200
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """`python -m lab ARGS` for a benchmark: the result, and the row it records of it (command,
    exit, seconds, load and available memory after, and stderr's tail on failure)."""
    started = time.monotonic()
    out = run_lab(env, *args, timeout=timeout)
    row: dict[str, Any] = {
        "command": " ".join(args),
        "exit": out.returncode,
        "seconds": round(time.monotonic() - started, 1),
        "load": [round(x, 1) for x in os.getloadavg()],
        "available_gib": round(psutil.virtual_memory().available / 2**30, 1),
    }
    if out.returncode != 0:
        row["stderr_tail"] = out.stderr.strip().splitlines()[-5:]
    return out, row


def keep_logs(home: Path, out: Path) -> None:
    """The components' logs, gzipped under `out/logs`, taken before `lab down --purge` deletes them:
    a report counts a manager's reconcile errors, and only the log says which they were."""
    logs = home / "logs"
    if not logs.is_dir():
        return
    (out / "logs").mkdir(exist_ok=True)
    for log in sorted(logs.glob("*.log")):
        with log.open("rb") as src, gzip.open(out / "logs" / f"{log.name}.gz", "wb") as dst:
            shutil.copyfileobj(src, dst)


def keep_records(home: Path, out: Path, down_exit: int) -> None:
    """A benchmark's end: the runs' records go to `out` (for `LAB_HOME=... lab report --compare`
    later), and the tmp home's directory goes once `lab down --purge` (exit `down_exit`) has stopped
    everything in it."""
    if (home / "records.sqlite").exists():
        shutil.copy2(home / "records.sqlite", out / "records.sqlite")
    if down_exit == 0:
        shutil.rmtree(home.parent, ignore_errors=True)


def stack_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAB_") and k != "KUBECONFIG"}
    base = free_block(BLOCK + 6)
    env |= {
        "LAB_HOME": str(home),
        "LAB_BIN_CACHE": os.environ.get("LAB_BIN_CACHE") or str(default_home() / "bin"),
        "LAB_PORTS__STACK_BASE": str(base),
        "LAB_PORTS__MGMT_ETCD": str(base + BLOCK),
        "LAB_PORTS__MGMT_ETCD_PEER": str(base + BLOCK + 1),
        "LAB_PORTS__MGMT_APISERVER": str(base + BLOCK + 2),
        "LAB_PORTS__TENANT_ETCD": str(base + BLOCK + 3),
        "LAB_PORTS__TENANT_ETCD_PEER": str(base + BLOCK + 4),
        "LAB_PORTS__MUX_CONTROL": str(base + BLOCK + 5),
    }
    return env
