"""What the local stack and each local workload cluster cost this host: the figures of lab.preflight.

Starts a stack in a scratch LAB_HOME (its own ports), measures every supervised process (inotify
instances and watches from /proc/<pid>/fd and fdinfo, open descriptors, RSS, TCP connections to the
tenant etcd), creates N clusters on the local backing, measures again, deletes them and stops the
stack. Prints per component: alone, with N clusters, and the growth per cluster.
Run: python benchmarks/host_footprint.py [N] (binaries must be cached: lab build).

Results: see lab.preflight's docstring.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil

from lab import config, preflight
from lab.runtime.supervise import Supervisor

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from support.signals import terminate_runs_finally
from support.stack import stack_env

#: far from the indexes of the e2e tests: a local cluster's loopback address is fixed by its index
START = 7301


def lab(env: dict[str, str], *args: str) -> None:
    out = subprocess.run([sys.executable, "-m", "lab", *args], env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"lab {' '.join(args)} exited {out.returncode}: {out.stderr.strip()[-2000:]}")


def etcd_connections(pid: int, port: int) -> int:
    try:
        conns = psutil.Process(pid).net_connections(kind="tcp")
    except psutil.Error:
        return 0
    return sum(1 for c in conns if c.raddr and c.raddr.port == port)


def measure(settings: config.Settings) -> dict[str, tuple[int, int, int, int, int]]:
    """component -> (inotify instances, watches, descriptors, RSS MiB, connections to the tenant etcd)."""
    sup = Supervisor(settings)
    pids = {"supervisord": sup.pid() or 0} | {
        p["name"]: int(p["pid"]) for p in sup.processes() if p["statename"] == "RUNNING"
    }
    out = {}
    for name, pid in sorted(pids.items()):
        usage = preflight.process_usage(pid)
        if usage is None:
            continue
        rss = psutil.Process(pid).memory_info().rss // preflight.MiB
        out[name] = (*usage, rss, etcd_connections(pid, settings.ports.tenant_etcd))
    return out


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    home = Path(tempfile.mkdtemp(prefix="lab-footprint-")) / "home"
    env = stack_env(home)
    os.environ.update({k: v for k, v in env.items() if k.startswith("LAB_")})
    settings = config.load()
    try:
        lab(env, "up")
        alone = measure(settings)
        lab(env, "create-clusters", str(n), "--start", str(START), "--timeout", "900")
        loaded = measure(settings)
    finally:
        subprocess.run([sys.executable, "-m", "lab", "delete-clusters", "--all"], env=env, check=False)
        subprocess.run([sys.executable, "-m", "lab", "down", "--purge"], env=env, check=False)
        shutil.rmtree(home.parent, ignore_errors=True)
    print(
        f"{'component':26} {'inotify':>8} {'watches':>8} {'fds':>6} {'RSS':>6} {'etcd':>5}   per cluster: fds"
    )
    for name in sorted(set(alone) | {k for k in loaded if not k.startswith("wkl-")}):
        a, b = alone.get(name, (0, 0, 0, 0, 0)), loaded.get(name, (0, 0, 0, 0, 0))
        print(
            f"{name:26} {a[0]:>3}->{b[0]:<4} {a[1]:>3}->{b[1]:<4} {a[2]:>3}->{b[2]:<4} {b[3]:>6} {b[4]:>5}"
            f"   {(b[2] - a[2]) / n:+.1f}"
        )
    wkl = [v for k, v in loaded.items() if k.startswith("wkl-")]
    med = [statistics.median(v[i] for v in wkl) for i in range(5)]
    print(
        f"workload apiserver (median of {len(wkl)}): inotify {med[0]}, watches {med[1]}, fds {med[2]}, "
        f"RSS {med[3]} MiB, etcd connections {med[4]}"
    )
    stack = [v for k, v in alone.items()]
    print(
        f"stack alone: inotify {sum(v[0] for v in stack)}, watches {sum(v[1] for v in stack)}, "
        f"fds {sum(v[2] for v in stack)} (busiest {max(v[2] for v in stack)}), RSS {sum(v[3] for v in stack)} MiB"
    )
    grow = {k: (loaded[k][2] - alone[k][2]) / n for k in alone if k in loaded}
    print(
        f"fds per cluster, stack processes together {sum(grow.values()):.1f}, busiest {max(grow.values()):.1f}"
    )


if __name__ == "__main__":
    terminate_runs_finally()
    main()
