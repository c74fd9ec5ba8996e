"""Does a tuning profile help (issue 14's benchmark): `lab bench` on a stack of its own, with every run kept.

    python benchmarks/bench_profiles.py [--profiles default,seed,high] [--clusters 50] [--repeat 2]
        [--timeout 1800] [--dir DIR]

Starts its own stack (`lab up` in a tmp LAB_HOME, binaries from the shared cache, ports moved out of
the way), runs `lab bench --profile ... --clusters N --repeat K` (create -> wait -> delete per
profile in turn, then the comparison with the first profile), and keeps in --dir: the comparison
(`bench.md`), each run's `lab report` (Markdown and JSON, with its bottleneck section), one HTML
report per profile's first create run, and the machine's size and load. `lab down --purge` always
runs last.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
import time
from argparse import ArgumentParser
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from support.signals import terminate_runs_finally
from support.stack import keep_logs, keep_records, run_lab, stack_env

RUNS = re.compile(r"profile (\S+): create run (\d+), delete run (\d+)")


def main() -> int:
    ap = ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profiles", default="default,seed,high")
    ap.add_argument("--clusters", type=int, default=50)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=1800)
    ap.add_argument("--dir", type=Path, default=Path("bench_profiles"))
    args = ap.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    home = Path(tempfile.mkdtemp(prefix="lab-bench-")) / "home"
    env = stack_env(home)
    facts: dict[str, object] = {
        "cpus": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "load_at_start": os.getloadavg(),
    }
    print(json.dumps(facts), flush=True)
    rc = 1
    try:
        up = run_lab(env, "up", timeout=1800)
        if up.returncode != 0:
            print(up.stderr, file=sys.stderr)
            return 1
        cmd = ["bench", "--clusters", str(args.clusters), "--repeat", str(args.repeat)]
        cmd += [x for p in args.profiles.split(",") for x in ("--profile", p)]
        cmd += ["--timeout", str(args.timeout)]
        started = time.monotonic()
        bench = run_lab(env, *cmd, timeout=args.repeat * 3 * 2 * (args.timeout + 300))
        facts |= {
            "bench_exit": bench.returncode,
            "bench_seconds": round(time.monotonic() - started, 1),
            "load_at_end": os.getloadavg(),
        }
        (args.dir / "bench.md").write_text(bench.stdout)
        (args.dir / "bench.stderr").write_text(bench.stderr)
        print(bench.stdout, flush=True)
        runs = RUNS.findall(bench.stderr)
        facts["runs"] = [{"profile": p, "create": int(c), "delete": int(d)} for p, c, d in runs]
        first: set[str] = set()
        for p, c, d in runs:
            for run_id in (c, d):
                md = run_lab(env, "report", "--run", run_id, timeout=600)
                (args.dir / f"run{run_id}-{p}.md").write_text(md.stdout)
                js = run_lab(env, "report", "--run", run_id, "--format", "json", timeout=600)
                (args.dir / f"run{run_id}-{p}.json").write_text(js.stdout)
            if p not in first:
                first.add(p)
                html = args.dir / f"run{c}-{p}.html"
                run_lab(env, "report", "--run", c, "--html", str(html), timeout=600)
        rc = bench.returncode
    finally:
        keep_logs(home, args.dir)
        down = run_lab(env, "down", "--purge", timeout=1200)
        facts["down_exit"] = down.returncode
        keep_records(home, args.dir, down.returncode)
        (args.dir / "facts.json").write_text(json.dumps(facts, indent=2))
    return rc


if __name__ == "__main__":
    terminate_runs_finally()
    sys.exit(main())
