"""Create N clusters, delete them all, again and again on one stack: does delete at scale converge
every time, and where does its time go.

    python benchmarks/delete_cycles.py [--clusters 100] [--cycles 3] [--start S] [--profiles default,high,...]
                                       [--out FILE] [--keep-logs DIR]

Starts its own stack (`lab up` in a tmp LAB_HOME, binaries from the shared cache, ports moved out of
the way). Each cycle runs the real commands, `lab create-clusters N --start S --wait` and then
`lab delete-clusters --all --wait`, and reads each run's report (`lab report --format json`): wall
time, per-phase p50/p90/max since the delete request, and the exit code. `--profiles` applies
`lab tune --profile P` before cycle i (one entry per cycle; the last repeats), so a tuning's effect on
delete is measured on the same stack between cycles. The load average is recorded at each step: the
issue asks for runs on a loaded machine, and the numbers mean nothing without it.

Results: a JSON file (--out) and a Markdown table on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from support.signals import terminate_runs_finally
from support.stack import keep_logs, run_lab, stack_env, timed_lab


def lab(env: dict[str, str], *args: str, timeout: float = 7200) -> subprocess.CompletedProcess[str]:
    return run_lab(env, *args, timeout=timeout)


def run_summary(env: dict[str, str]) -> dict[str, Any]:
    """The last run's report, reduced to what the table needs."""
    rep = json.loads(lab(env, "report", "--format", "json").stdout)
    return {
        "wall_seconds": rep["wall_seconds"],
        "done": rep["done"],
        "clusters": rep["clusters"],
        "phases": {
            p["phase"]: {k: p["since_start"][k] for k in ("p50", "p90", "max")} for p in rep["phases"]
        },
    }


def timed(env: dict[str, str], *args: str) -> dict[str, Any]:
    return timed_lab(env, *args)[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clusters", type=int, default=100)
    ap.add_argument("--cycles", type=int, default=3)
    ap.add_argument(
        "--start",
        type=int,
        default=1,
        help="first index (local addresses follow it: keep clear of other stacks)",
    )
    ap.add_argument("--profiles", default="default", help="comma-separated, one per cycle; last repeats")
    ap.add_argument("--timeout", type=float, default=2400)
    ap.add_argument("--out", type=Path, default=Path("delete_cycles.json"))
    ap.add_argument(
        "--keep-logs",
        type=Path,
        default=None,
        help="keep the lab home's logs here (gzipped, under logs/) at the end",
    )
    args = ap.parse_args()
    profiles = args.profiles.split(",")

    home = Path(tempfile.mkdtemp(prefix="lab-cycles-")) / "home"
    env = stack_env(home)
    env["LAB_LOCAL_CAPACITY"] = str(args.clusters)
    results: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
            "load_at_start": [round(x, 1) for x in os.getloadavg()],
        },
        "cycles": [],
    }
    up = timed(env, "up")
    results["up"] = up
    if up["exit"] != 0:
        print(json.dumps(up, indent=2), file=sys.stderr)
        return 1
    rc = 0
    try:
        for i in range(args.cycles):
            profile = profiles[min(i, len(profiles) - 1)]
            cycle: dict[str, Any] = {"cycle": i + 1, "profile": profile}
            results["cycles"].append(cycle)
            cycle["tune"] = timed(env, "tune", "--profile", profile)
            n = str(args.clusters)
            t = str(args.timeout)
            cycle["create"] = timed(
                env, "create-clusters", n, "--start", str(args.start), "--wait", "--timeout", t
            )
            cycle["create"]["report"] = run_summary(env)
            cycle["delete"] = timed(env, "delete-clusters", "--all", "--wait", "--timeout", t)
            cycle["delete"]["report"] = run_summary(env)
            print(json.dumps(cycle), flush=True)
            args.out.write_text(json.dumps(results, indent=2))
            if cycle["create"]["exit"] or cycle["delete"]["exit"]:
                rc = 1
                break
    finally:
        if args.keep_logs is not None:
            args.keep_logs.mkdir(parents=True, exist_ok=True)
            keep_logs(home, args.keep_logs)
        results["down"] = timed(env, "down", "--purge")
        args.out.write_text(json.dumps(results, indent=2))
    print(f"\nmachine: {results['machine']}\n")
    print("| cycle | profile | create (s) | delete (s) | machines_deleted p50/p90/max | load at delete end |")
    print("|---|---|---|---|---|---|")
    for c in results["cycles"]:
        md = c["delete"]["report"]["phases"].get("machines_deleted", {})
        print(
            f"| {c['cycle']} | {c['profile']} | {c['create']['seconds']} (exit {c['create']['exit']}) | "
            f"{c['delete']['seconds']} (exit {c['delete']['exit']}) | "
            f"{md.get('p50')}/{md.get('p90')}/{md.get('max')} | {c['delete']['load']} |"
        )
    return rc


if __name__ == "__main__":
    terminate_runs_finally()
    sys.exit(main())
