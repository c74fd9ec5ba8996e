"""How many workload clusters this machine brings to Available on one backing, and at what cost.

    python benchmarks/scale_local.py [--backing local|mux] [--steps 10,25,50,100] [--parallel 10]
        [--timeout 1800] [--stop-after SECONDS] [--delete-timeout SECONDS] [--out FILE]

Starts its own stack (`lab up` in a tmp LAB_HOME, binaries from the shared cache, ports moved out of
the way), then grows the number of clusters step by step with the real command,
`lab create-clusters <step - existing> --start <existing + 1> --wait`, and after each run reads the
run's report (`lab report --format json`): seconds to all Available, per batch of 10, p50/p90 per
phase, and median RSS/CPU per component (the workload apiservers as one per-process row, lab-mux,
and lab's own process). It stops before a step when free memory would not hold the step's clusters
(measured RSS per cluster x new clusters + 2 GiB headroom: one kube-apiserver each on `local`, lab-mux's
RSS divided by its clusters on `mux`), when --stop-after seconds have passed since the first create, or
after a step that did not finish. At the end everything is deleted (`lab delete-clusters --all --wait`,
timed) and the stack purged.

Results: a JSON file (--out) and a Markdown summary on stdout; the figures quoted in the issue's closing
note come from here, with the machine's size and load in the header.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from support.signals import terminate_runs_finally
from support.stack import run_lab, stack_env

HEADROOM = 2 * 2**30
DEFAULT_APISERVER_RSS = 200 * 2**20
#: lab-mux's RSS per registered cluster before a step has measured it (issue 12's goal is <= 1 MiB)
DEFAULT_MUX_RSS = 2**20


def lab(env: dict[str, str], *args: str, timeout: float = 3600) -> subprocess.CompletedProcess[str]:
    return run_lab(env, *args, timeout=timeout)


def step_summary(report: dict[str, Any]) -> dict[str, Any]:
    comps = {c["component"]: c for c in report["components"]}
    wkl = comps.get("workload kube-apiserver (each)")
    return {
        "clusters": report["clusters"],
        "available": report["done"],
        "wall_seconds": report["wall_seconds"],
        "per_minute": report["clusters_per_minute"],
        "batches": [
            {"first": b["first"], "last": b["last"], "done_at": b["done_at"], "step": b["step"]}
            for b in report["batches"]
        ],
        "phases": {
            p["phase"]: {"p50": p["since_start"]["p50"], "p90": p["since_start"]["p90"]}
            for p in report["phases"]
        },
        "apiserver_rss_mib": None if wkl is None else wkl["rss_bytes"] / 2**20,
        "mux_rss_mib": None if "lab-mux" not in comps else comps["lab-mux"]["rss_bytes"] / 2**20,
        "components": {
            name: {"rss_mib": round(c["rss_bytes"] / 2**20), "cpu": c["cpu_percent"], "idle": c["idle"]}
            for name, c in comps.items()
        },
    }


def print_table(results: dict[str, Any]) -> None:
    print(f"\nmachine: {results['machine']}")
    print(
        "| clusters | new | to all Available | per minute | apiserver RSS (each) | lab-mux RSS | lab CPU "
        "| kube-apiserver CPU | load |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    prev = 0
    for s in results["steps"]:
        comps = s["components"]
        print(
            f"| {s['target']} | {s['target'] - prev} | {s['wall_seconds'] or '-'} s | {s['per_minute'] or '-'} | "
            f"{round(s['apiserver_rss_mib'] or 0)} MiB | {round(s['mux_rss_mib'] or 0)} MiB | "
            f"{comps.get('lab', {}).get('cpu', '-')}% | {comps.get('kube-apiserver', {}).get('cpu', '-')}% | "
            f"{' '.join(f'{x:.1f}' for x in s['load'])} |"
        )
        prev = s["target"]
    if "stopped" in results:
        print(f"\nstopped: {results['stopped']}")
    print(f"\ndelete --all: {results.get('delete_all')}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backing", choices=("local", "mux"), default="local")
    ap.add_argument("--steps", default="10,25,50,100")
    ap.add_argument("--stop-after", type=float, default=None, help="start no step after this many seconds")
    ap.add_argument("--delete-timeout", type=float, default=7200)
    ap.add_argument("--parallel", type=int, default=10)
    ap.add_argument("--timeout", type=float, default=1800)
    ap.add_argument("--out", type=Path, default=Path("scale_local.json"))
    ap.add_argument(
        "--first", type=int, default=1, help="index of the first cluster (local addresses follow the index)"
    )
    args = ap.parse_args()
    steps = [int(s) for s in args.steps.split(",")]

    home = Path(tempfile.mkdtemp(prefix="lab-scale-")) / "home"
    env = stack_env(home)
    env["LAB_LOCAL_CAPACITY" if args.backing == "local" else "LAB_MUX_CAPACITY"] = str(max(steps))
    facts = {
        "cpus": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "load_at_start": os.getloadavg(),
        "backing": args.backing,
    }
    results: dict[str, Any] = {"machine": facts, "steps": []}
    up = lab(env, "up")
    if up.returncode != 0:
        print(up.stderr, file=sys.stderr)
        return 1
    have, base = 0, args.first - 1
    rss = DEFAULT_APISERVER_RSS if args.backing == "local" else DEFAULT_MUX_RSS
    first_create: float | None = None
    try:
        for target in steps:
            if (
                first_create is not None
                and args.stop_after
                and time.monotonic() - first_create > args.stop_after
            ):
                results["stopped"] = f"before {target}: --stop-after {args.stop_after:.0f} s reached"
                break
            new = target - have
            need = new * rss + HEADROOM
            free = psutil.virtual_memory().available
            if need > free:
                results["stopped"] = (
                    f"before {target}: {new} more apiservers need ~{need / 2**30:.1f} GiB, {free / 2**30:.1f} GiB available"
                )
                break
            started = time.monotonic()
            first_create = first_create or started
            out = lab(
                env,
                "create-clusters",
                str(new),
                "--start",
                str(base + have + 1),
                "--backing",
                args.backing,
                "--parallel",
                str(args.parallel),
                "--timeout",
                str(args.timeout),
                "-o",
                "json",
                timeout=args.timeout + 600,
            )
            wall = time.monotonic() - started
            rep = json.loads(lab(env, "report", "--format", "json").stdout)
            summary = step_summary(rep) | {
                "target": target,
                "command_seconds": round(wall, 1),
                "exit": out.returncode,
                "load": os.getloadavg(),
            }
            results["steps"].append(summary)
            print(json.dumps(summary), flush=True)
            have = target
            if args.backing == "local" and summary["apiserver_rss_mib"]:
                rss = int(summary["apiserver_rss_mib"] * 2**20)
            elif args.backing == "mux" and summary["mux_rss_mib"]:
                rss = int(summary["mux_rss_mib"] * 2**20 / target)
            if out.returncode != 0:
                summary["stderr_tail"] = out.stderr.strip().splitlines()[-3:]
                results["stopped"] = f"step {target} did not finish: {out.stderr.strip().splitlines()[-1:]}"
                break
        started = time.monotonic()
        d = lab(
            env,
            "delete-clusters",
            "--all",
            "--timeout",
            str(args.delete_timeout),
            timeout=args.delete_timeout + 600,
        )
        results["delete_all"] = {
            "clusters": have,
            "seconds": round(time.monotonic() - started, 1),
            "exit": d.returncode,
            "stderr_tail": d.stderr.strip().splitlines()[-3:],
        }
        if d.returncode == 0:
            rep = json.loads(lab(env, "report", "--format", "json").stdout)
            results["delete_all"]["phases"] = {
                p["phase"]: {"p50": p["since_start"]["p50"], "p90": p["since_start"]["p90"]}
                for p in rep["phases"]
            }
    finally:
        down = lab(env, "down", "--purge", timeout=1200)
        results["down"] = {"exit": down.returncode, "stderr_tail": down.stderr.strip().splitlines()[-2:]}
        args.out.write_text(json.dumps(results, indent=2))
    print_table(results)
    return 0


if __name__ == "__main__":
    terminate_runs_finally()
    sys.exit(main())
