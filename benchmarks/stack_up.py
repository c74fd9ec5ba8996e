"""Time `lab up` from built binaries and measure each component's idle RSS and CPU.

Runs the real CLI in a fresh temporary lab home (binaries from the shared cache, ports moved to a
free block): first `lab up` (cold start: PKI, supervisord, etcd, apiserver, kcm, CRDs, managers),
then a second `lab up` (must converge without restarts), then waits --idle seconds and samples
every component's RSS and CPU over --window seconds, then `lab down --purge`. Also prints the
recorded build time of each cached binary.

    python benchmarks/stack_up.py [--idle 60] [--window 10] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from support.signals import terminate_runs_finally
from support.stack import stack_env

from lab import build, config


def lab(env: dict[str, str], *args: str, timeout: float = 3600) -> tuple[float, str]:
    started = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-m", "lab", *args], capture_output=True, text=True, env=env, timeout=timeout
    )
    took = time.monotonic() - started
    if out.returncode != 0:
        raise SystemExit(f"lab {' '.join(args)} failed ({out.returncode}): {out.stderr.strip()[-1500:]}")
    return took, out.stdout


def sample(env: dict[str, str], window: float) -> list[dict[str, Any]]:
    """RSS at the end and mean CPU% over the window, from psutil CPU times (not one noisy sample)."""
    status = json.loads(lab(env, "status", "-o", "json")[1])["components"]
    procs = {c["name"]: psutil.Process(c["pid"]) for c in status if c["pid"]}
    t0 = {n: sum(p.cpu_times()[:2]) for n, p in procs.items()}
    time.sleep(window)
    rows = []
    for n, p in procs.items():
        cpu = (sum(p.cpu_times()[:2]) - t0[n]) / window * 100
        rows.append(
            {"component": n, "rss_mib": round(p.memory_info().rss / 2**20, 1), "cpu_percent": round(cpu, 2)}
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--idle", type=float, default=60.0, help="seconds to wait before sampling")
    ap.add_argument("--window", type=float, default=10.0, help="CPU sampling window, seconds")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="lab-bench-"))
    env = stack_env(tmp / "home")
    settings = config.load(home=tmp / "home", bin_cache=env["LAB_BIN_CACHE"])
    result: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "mem_gib": round(psutil.virtual_memory().total / 2**30, 1)},
        "builds_s": {n: build.build_info(settings, n).get("seconds") for n in build.TARGETS},
    }
    try:
        result["up_cold_s"] = round(lab(env, "up")[0], 1)
        result["up_again_s"] = round(lab(env, "up")[0], 1)
        time.sleep(args.idle)
        result["idle"] = sample(env, args.window)
    finally:
        lab(env, "down", "--purge", timeout=300)
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"machine: {result['machine']['cpus']} CPUs, {result['machine']['mem_gib']} GiB")
    print(
        f"lab up (cold start, built binaries): {result['up_cold_s']} s; second lab up: {result['up_again_s']} s"
    )
    print(f"idle after {args.idle:.0f} s (CPU over {args.window:.0f} s):")
    for r in sorted(result["idle"], key=lambda r: -r["rss_mib"]):
        print(f"  {r['component']:<26} RSS {r['rss_mib']:>7.1f} MiB  CPU {r['cpu_percent']:>6.2f} %")
    print("build times (s):", ", ".join(f"{k}={v}" for k, v in result["builds_s"].items()))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    terminate_runs_finally()
    main()
