"""Build times of every lab build target: warm and (optionally) cold Go build cache.

Each target is built into a throw-away lab home, so the shared binary cache is never used or touched:
- warm: the Go build cache ($GOCACHE, default ~/.cache/go-build) as it is, i.e. after `lab build`;
- cold (--cold): an empty GOCACHE in a tmp dir, so every package is compiled again.
The Go module cache is shared in both cases: download time is not part of the numbers.

    python benchmarks/build_times.py [--cold] [NAME ...]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import psutil

from lab import build, config


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("names", nargs="*", default=list(build.TARGETS))
    ap.add_argument("--cold", action="store_true", help="use an empty GOCACHE (slow: minutes per target)")
    args = ap.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="lab-build-bench-") as tmp:
        if args.cold:
            os.environ["GOCACHE"] = str(Path(tmp) / "gocache")
        for name in args.names:
            settings = config.load(home=Path(tmp) / f"home-{name}")
            started = time.monotonic()
            path = build.build(settings, name)
            results.append(
                {
                    "name": name,
                    "cache": "cold" if args.cold else "warm",
                    "seconds": round(time.monotonic() - started, 1),
                    "mib": round(path.stat().st_size / 2**20, 1),
                }
            )
            print(json.dumps(results[-1]), flush=True)
    machine = (
        f"{psutil.cpu_count()} CPUs, {psutil.virtual_memory().total / 2**30:.0f} GiB, {platform.machine()}"
    )
    print(json.dumps({"machine": machine, "load_1m": round(os.getloadavg()[0], 1), "results": results}))


if __name__ == "__main__":
    main()
