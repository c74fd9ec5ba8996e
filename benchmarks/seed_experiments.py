"""The seed's other experiments (issue 13), one after another on one stack, with the real commands.

    python benchmarks/seed_experiments.py [--only hosts,workers,payload,upgrade,shards]
        [--backing mux] [--parallel 20] [--timeout 1800] [--dir DIR] [--size 1.0] [--patches DIR]
        [--no-baseline] [--profile default]

Starts its own stack (`lab up` in a tmp LAB_HOME, binaries from the shared cache, ports moved out of
the way) and runs, in this order:
- hosts: `lab create-hosts 200 --state provisioned --wait`, then `lab delete-hosts --all --wait`
  (time per BMO state);
- workers: 20 clusters on the local backing, `lab scale-clusters --all --workers 3`, then
  `--workers 0`, then delete (local: scale-up renders hosts and Machines, which a workload apiserver
  per cluster carries);
- payload: 100 clusters with `--payload-kb 0` and with `--payload-kb 30`, each created and deleted
  (the 0 run is also the 1-shard run below);
- upgrade: 50 clusters, `lab upgrade-clusters --all --to <next minor>.0 --wait`, delete;
- shards: `lab down`, `lab up --shards 2`, 100 clusters, delete.
The 100- and 50-cluster runs use --backing (mux by default: one lab-mux serves every workload API,
so the management side, which these experiments compare, is what the machine's 2 cores carry).

After every recorded command it keeps that run's `lab report` (Markdown and JSON) in --dir, and at the
end prints one Markdown table of the runs: wall time, p50/p90 of each phase, and the CPU and RSS of
the managers the experiment is about. `lab down --purge` always runs last.
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
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from support.reports import run_summary, series, usage
from support.signals import terminate_runs_finally
from support.stack import keep_logs, keep_records, run_lab, stack_env, timed_lab

from lab import versions

EXPERIMENTS = ("hosts", "workers", "payload", "upgrade", "shards")
#: components whose whole-run CPU and RSS the summary table quotes (the report has every one)
WATCHED = (
    "kube-apiserver",
    "kcp-manager",
    "kcp-manager-shard-1",
    "capm3-manager",
    "bmo-manager",
    "capi-manager",
)


class Runner:
    """Runs lab commands in one env and keeps every recorded run's report."""

    def __init__(self, env: dict[str, str], out: Path) -> None:
        self.env, self.out = env, out
        self.rows: list[dict[str, Any]] = []
        self.last_run = 0

    def lab(self, *args: str, timeout: float = 7200) -> subprocess.CompletedProcess[str]:
        return run_lab(self.env, *args, timeout=timeout)

    def step(self, experiment: str, *args: str, timeout: float) -> dict[str, Any]:
        """One recorded command: its exit, wall time, load and the run's report."""
        row: dict[str, Any] = {"experiment": experiment} | timed_lab(self.env, *args, timeout=timeout + 600)[
            1
        ]
        rep = self.lab("report", "--format", "json", timeout=600)
        if rep.returncode == 0:
            model = json.loads(rep.stdout)
            run_id = int(model["run"]["id"])
            if run_id != self.last_run:  # the command recorded a run of its own
                self.last_run = run_id
                name = f"{len(self.rows) + 1:02d}-{experiment}-{args[0]}"
                (self.out / f"{name}.json").write_text(rep.stdout)
                md = self.lab("report", "--run", str(run_id), timeout=600)
                (self.out / f"{name}.md").write_text(md.stdout)
                row |= summary(model)
        self.rows.append(row)
        print(json.dumps(row), flush=True)
        return row


def summary(model: dict[str, Any]) -> dict[str, Any]:
    used = usage(series(model, "cpu"), series(model, "rss"))
    return {
        "run": model["run"]["id"],
        **run_summary(model),
        "components": {n: used[n] for n in WATCHED if n in used},  # whole run: median CPU, largest RSS
        "shards": model.get("shards"),
    }


def next_minor() -> str:
    major, minor, _ = versions.parse_release(versions.COMPONENTS["kubernetes"].default) or (0, 0, 0)
    return f"v{major}.{minor + 1}.0"


def plan(
    only: set[str], backing: str, parallel: int, timeout: float, size: float = 1.0, baseline: bool = True
) -> list[tuple[str, list[str]]]:
    """(experiment, lab arguments) in order; "restart-shards" marks `lab down` + `lab up --shards 2`.
    `size` scales every count (a smoke run of the script itself)."""

    def n(count: int) -> str:
        return str(max(1, round(count * size)))

    t = ["--timeout", str(timeout), "-o", "json"]
    create = ["--backing", backing, "--parallel", str(parallel), "--wait", *t]
    delete = ["delete-clusters", "--all", "--wait", *t]
    steps: list[tuple[str, list[str]]] = []
    if "hosts" in only:
        steps += [
            ("hosts", ["create-hosts", n(200), "--state", "provisioned", "--wait", *t]),
            ("hosts", ["delete-hosts", "--all", "--wait", *t]),
        ]
    if "workers" in only:
        local = ["--backing", "local", "--parallel", str(parallel), "--wait", *t]
        steps += [
            ("workers", ["create-clusters", n(20), "--start", "1", *local]),
            ("workers", ["scale-clusters", "--all", "--workers", "3", *t]),
            ("workers", ["scale-clusters", "--all", "--workers", "0", *t]),
            ("workers", delete),
        ]
    if "payload" in only or ("shards" in only and baseline):  # payload 0 is also the 1-shard run
        steps += [("payload", ["create-clusters", n(100), "--start", "101", *create]), ("payload", delete)]
    if "payload" in only:
        steps += [
            ("payload", ["create-clusters", n(100), "--start", "201", "--payload-kb", "30", *create]),
            ("payload", delete),
        ]
    if "upgrade" in only:
        steps += [
            ("upgrade", ["create-clusters", n(50), "--start", "301", *create]),
            (
                "upgrade",
                [
                    "upgrade-clusters",
                    "--all",
                    "--to",
                    next_minor(),
                    "--parallel",
                    str(parallel),
                    "--wait",
                    *t,
                ],
            ),
            ("upgrade", delete),
        ]
    if "shards" in only:
        steps += [
            ("restart-shards", []),
            ("shards", ["create-clusters", n(100), "--start", "401", *create]),
            ("shards", delete),
        ]
    return steps


def run(r: Runner, steps: list[tuple[str, list[str]]], timeout: float) -> None:
    for experiment, args in steps:
        if experiment == "restart-shards":
            r.lab("down", timeout=600)
            up = r.lab("up", "--shards", "2", timeout=1800)
            if up.returncode != 0:
                print(up.stderr, file=sys.stderr)
                return
            continue
        r.step(experiment, *args, timeout=timeout)


def print_table(rows: list[dict[str, Any]]) -> None:
    print(
        "\n| experiment | command | exit | done | wall s | phase p50/p90 s | KCP CPU % (median) / RSS MiB (max) | load |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        phases = ", ".join(
            f"{k} {v['p50']:.0f}/{v['p90']:.0f}"
            for k, v in row.get("phases", {}).items()
            if v["p50"] is not None and v["p90"] is not None
        )
        kcp = "; ".join(
            f"{n} {c['cpu']}/{c['rss_mib']}"
            for n, c in row.get("components", {}).items()
            if n.startswith("kcp")
        )
        print(
            f"| {row['experiment']} | `{row['command']}` | {row['exit']} | {row.get('done', '-')}/"
            f"{row.get('clusters', '-')} | {round(row.get('wall_seconds') or row['seconds'], 1)} | {phases} | {kcp} | "
            f"{' '.join(map(str, row['load']))} |"
        )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default=",".join(EXPERIMENTS))
    ap.add_argument("--backing", choices=("local", "mux"), default="mux")
    ap.add_argument("--parallel", type=int, default=20)
    ap.add_argument("--timeout", type=float, default=1800)
    ap.add_argument("--dir", type=Path, default=Path("seed_experiments"))
    ap.add_argument("--size", type=float, default=1.0, help="scale every count (smoke-test the script)")
    ap.add_argument(
        "--no-baseline",
        action="store_true",
        help="shards alone: skip the 1-shard run (an earlier run has it)",
    )
    ap.add_argument("--profile", default="default", help="lab tune --profile for the stack before the runs")
    ap.add_argument("--patches", type=Path, help="LAB_PATCHES for the stack (e.g. patches/experiments/...)")
    args = ap.parse_args()
    only = set(args.only.split(","))
    if only - set(EXPERIMENTS):
        ap.error(f"--only takes {', '.join(EXPERIMENTS)}")
    args.dir.mkdir(parents=True, exist_ok=True)
    home = Path(tempfile.mkdtemp(prefix="lab-seed-")) / "home"
    env = stack_env(home)
    env["LAB_MUX_CAPACITY"] = "1000"
    if args.patches:
        env["LAB_PATCHES"] = str(args.patches.resolve())
    r = Runner(env, args.dir)
    facts = {
        "cpus": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "load_at_start": os.getloadavg(),
        "backing": args.backing,
        "parallel": args.parallel,
        "patches": str(args.patches) if args.patches else None,
        "profile": args.profile,
    }
    print(json.dumps(facts), flush=True)
    try:
        up = r.lab("up", timeout=1800)
        if up.returncode != 0:
            print(up.stderr, file=sys.stderr)
            return 1
        if args.profile != "default":
            tune = r.lab("tune", "--profile", args.profile, timeout=600)
            if tune.returncode != 0:
                print(tune.stderr, file=sys.stderr)
                return 1
        run(
            r,
            plan(only, args.backing, args.parallel, args.timeout, args.size, not args.no_baseline),
            args.timeout,
        )
    finally:
        keep_logs(home, args.dir)
        down = r.lab("down", "--purge", timeout=1200)
        facts["down_exit"] = down.returncode
        keep_records(home, args.dir, down.returncode)
        (args.dir / "results.json").write_text(json.dumps({"machine": facts, "runs": r.rows}, indent=2))
    print_table(r.rows)
    return 0 if all(row["exit"] == 0 for row in r.rows) else 1


if __name__ == "__main__":
    terminate_runs_finally()
    sys.exit(main())
