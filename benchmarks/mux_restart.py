"""Restart without loss at scale (issue 12, item 3): kill -9 of lab-mux, then lab down / lab up.

With N clusters on the mux backing: how long until every cluster is served, whole and Available
again with no user command.

    python benchmarks/mux_restart.py [--clusters 300] [--start 1] [--parallel 20] [--timeout 3600]
        [--out mux_restart.json] [--no-down-up]

Starts its own stack (`lab up` in a tmp LAB_HOME, binaries from the shared cache, ports moved out of
the way, LAB_MUX_CAPACITY = --clusters), builds lab-mux when the cache lacks it (build.ensure, as
tests/e2e/test_mux.py does), and creates the clusters with the real command, `lab create-clusters N
--start S --backing mux --wait -o json` (timed; the run's wall time from `lab report --format json`).
Each cluster's kubeconfig comes from `lab kubeconfig NAME`, written once before the kill and used
throughout: a cluster whole through it afterwards is back at the same endpoint, behind the same CA.

Before the kill every cluster is whole and Available; then lab-mux (the pid listening on the mux
control port) is sampled idle for 60 s (RSS, CPU), and killed with SIGKILL. From the kill:
- back: lab-mux's control API answers with another `started` (supervisord started it again);
- listening: every cluster's endpoint accepts connections;
- whole: every workload API has its Ready Node and mirror pods (support.mux.workload_whole,
  WORKERS at a time, each cluster polled until seen whole once);
- Available: the first poll of the management cluster begun after every workload was whole that
  finds every cluster Available (support.mux.not_available: the e2e test's rule, in three LISTs);
- seen not Available: the clusters any management poll since the kill found not Available.
Then the same across `lab down` and `lab up` (each timed; the clock starts when `up` begins, and the
table also gives Available after `up` returned), unless --no-down-up. The issue's goal: every
cluster Available again within 60 s at 300 clusters.

At the end, also after a failure or SIGTERM: `lab delete-clusters --all --wait` (timed), the residue
check (lab.clusters.residue, as the e2e tests use it) and `lab down --purge`. Results: a JSON file
(--out) and a Markdown table on stdout, with the machine's size and load.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from support.mux import listening, not_available, workload_whole
from support.signals import terminate_runs_finally
from support.stack import Stack, run_lab, stack_env, timed_lab
from support.wait import wait_for

from lab import build, naming
from lab.backing import mux
from lab.clusters.residue import residue
from lab.config import Settings
from lab.errors import LabError
from lab.kube import Client
from lab.muxapi import Control
from lab.runtime.ports import listener_pid

#: issue 12: every cluster Available again within this long, with no user command
GOAL = 60.0
#: how long each measurement waits for a milestone in all: ten times the goal, so a miss is measured
RECOVER_TIMEOUT = 600.0
IDLE_SECONDS, IDLE_SAMPLE = 60.0, 5.0
#: seconds between polls of the management cluster (three LISTs each) and rounds of workload checks
POLL = 1.0
#: workload APIs checked at once (each check: two GETs through a fresh client)
WORKERS = 16
#: `lab kubeconfig` processes at once (each a Python start, ~1 s of a core)
KUBECONFIG_WORKERS = 4

Disrupt = Callable[[dict[str, Any]], float]


def say(m: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {m}", file=sys.stderr, flush=True)


def since(t0: float) -> float:
    return round(time.monotonic() - t0, 1)


class MgmtPoll:
    """The management cluster's view, polled in rounds by a thread from before a disruption until
    every cluster is Available again: which clusters it ever saw not Available, and when rounds that
    found all Available ended. A round that fails (the apiserver down across `lab down`) counts as an
    error, not as a view."""

    def __init__(self, client: Client, names: list[str]) -> None:
        self.client, self.names = client, names
        self.seen: set[str] = set()
        self.rounds = self.errors = 0
        self._clear: list[tuple[float, float]] = []  # (began, ended) of rounds finding all Available
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mgmt-poll", daemon=True)

    def __enter__(self) -> MgmtPoll:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            began = time.monotonic()
            try:
                missing = not_available(self.client, self.names)
            except Exception:  # the thread must outlive any one failed round
                self.errors += 1
            else:
                self.rounds += 1
                self.seen |= missing
                if not missing:
                    self._clear.append((began, time.monotonic()))
            self._stop.wait(POLL)

    def clear_since(self, t: float) -> float:
        """When the first round begun at or after `t` that found every cluster Available ended (0.0:
        none yet)."""
        return next((ended for began, ended in list(self._clear) if began >= t), 0.0)


def started(ctl: Control) -> str | None:
    """lab-mux's start time as its health says, None while it does not answer."""
    try:
        return str(ctl.health()["started"])
    except LabError:
        return None


def all_available(client: Client, names: list[str]) -> bool:
    try:
        return not not_available(client, names)
    except LabError:
        return False


def wait_whole(pool: ThreadPoolExecutor, kubeconfigs: dict[str, Path], timeout: float) -> None:
    """Rounds over the clusters not yet seen whole until none is left."""
    pending = set(kubeconfigs)

    def round_() -> bool:
        todo = sorted(pending)
        seen = pool.map(lambda n: workload_whole(kubeconfigs[n]), todo)
        pending.difference_update(n for n, whole in zip(todo, seen, strict=True) if whole)
        return not pending

    wait_for(
        "every workload whole",
        round_,
        timeout,
        POLL,
        detail=lambda: f"{len(pending)} not whole, e.g. {sorted(pending)[:5]}",
    )


def settle(client: Client, names: list[str], pool: ThreadPoolExecutor, kubeconfigs: dict[str, Path]) -> None:
    """Every cluster whole and Available: where each disruption starts from."""
    wait_whole(pool, kubeconfigs, RECOVER_TIMEOUT)
    wait_for("every cluster Available", lambda: all_available(client, names), RECOVER_TIMEOUT, POLL)


def idle(pid: int, clusters: int) -> dict[str, Any]:
    """lab-mux's RSS (the highest sample) and CPU over IDLE_SECONDS with no command running."""
    p = psutil.Process(pid)
    began, cpu = time.monotonic(), sum(p.cpu_times()[:2])
    rss = []
    for _ in range(int(IDLE_SECONDS / IDLE_SAMPLE)):
        rss.append(p.memory_info().rss)
        time.sleep(IDLE_SAMPLE)
    wall = time.monotonic() - began
    mcpu = 1000 * (sum(p.cpu_times()[:2]) - cpu) / wall
    return {
        "pid": pid,
        "seconds": round(wall, 1),
        "rss_mib": round(max(rss) / 2**20, 1),
        "rss_kib_per_cluster": round(max(rss) / 1024 / clusters, 1),
        "mcpu": round(mcpu, 2),
        "mcpu_per_cluster": round(mcpu / clusters, 3),
    }


def recovery(
    settings: Settings,
    client: Client,
    kubeconfigs: dict[str, Path],
    pool: ThreadPoolExecutor,
    disrupt: Disrupt,
) -> dict[str, Any]:
    """`disrupt` lab-mux (it returns when the clock starts, and puts its own rows into the result),
    then the seconds from that clock to each milestone; a milestone missed within RECOVER_TIMEOUT
    ends the measurement with its error."""
    names = sorted(kubeconfigs)
    ctl = mux.control(settings)
    if ctl is None:
        raise LabError("lab-mux was never started in this lab home")
    before = started(ctl)
    ports = [naming.mux_endpoint(naming.parse_index(settings.prefix, n) or 0)[1] for n in names]
    out: dict[str, Any] = {}
    with MgmtPoll(client, names) as poll:
        try:
            t0 = disrupt(out)
            deadline = t0 + RECOVER_TIMEOUT

            def left() -> float:
                return max(1.0, deadline - time.monotonic())

            wait_for("lab-mux back (another start)", lambda: started(ctl) not in (None, before), left(), 0.2)
            out["back_s"] = since(t0)
            wait_for(
                "every endpoint listens",
                lambda: all(listening(p) for p in ports),
                left(),
                0.2,
                detail=lambda: f"{sum(not listening(p) for p in ports)} not listening",
            )
            out["listening_s"] = since(t0)
            wait_whole(pool, kubeconfigs, left())
            out["whole_s"] = since(t0)
            whole_at = time.monotonic()
            ended = wait_for("every cluster Available", lambda: poll.clear_since(whole_at), left(), 0.2)
            out["available_s"] = round(ended - t0, 1)
        except (AssertionError, LabError) as e:
            out["error"] = str(e)
    out |= {
        "not_available_seen": len(poll.seen),
        "not_available_names": sorted(poll.seen, key=lambda n: naming.parse_index(settings.prefix, n) or 0),
        "mgmt_polls": poll.rounds,
        "mgmt_poll_errors": poll.errors,
    }
    pid = listener_pid(settings.ports.mux_control)
    try:
        if pid is not None:
            out["rss_after_mib"] = round(psutil.Process(pid).memory_info().rss / 2**20, 1)
    except psutil.Error:  # gone since: the result stands without it
        pass
    return out


def kill_9(settings: Settings) -> Disrupt:
    def disrupt(out: dict[str, Any]) -> float:
        pid = listener_pid(settings.ports.mux_control)
        if pid is None:
            raise LabError(f"nothing listens on lab-mux's control port {settings.ports.mux_control}")
        out["killed_pid"] = pid
        t0 = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        return t0

    return disrupt


def down_up(env: dict[str, str]) -> Disrupt:
    def disrupt(out: dict[str, Any]) -> float:
        down, out["down"] = timed_lab(env, "down", timeout=1200)
        if down.returncode != 0:
            raise LabError(f"lab down exited {down.returncode}")
        t0 = time.monotonic()
        up, out["up"] = timed_lab(env, "up", timeout=3600)
        if up.returncode != 0:
            raise LabError(f"lab up exited {up.returncode}")
        return t0

    return disrupt


def write_kubeconfigs(env: dict[str, str], names: list[str], into: Path) -> dict[str, Path]:
    """Each cluster's kubeconfig as a user gets it, `lab kubeconfig NAME`."""
    into.mkdir(mode=0o700, exist_ok=True)

    def one(name: str) -> Path:
        got = run_lab(env, "kubeconfig", name, timeout=120)
        if got.returncode != 0:
            raise LabError(f"lab kubeconfig {name} exited {got.returncode}: {got.stderr.strip()}")
        path = into / f"{name}.kubeconfig"
        path.write_text(got.stdout)
        return path

    with ThreadPoolExecutor(KUBECONFIG_WORKERS) as pool:
        return dict(zip(names, pool.map(one, names), strict=True))


def create(env: dict[str, str], args: argparse.Namespace) -> dict[str, Any]:
    """The create command's row, with what its JSON and its run's report say."""
    out, row = timed_lab(
        env,
        "create-clusters",
        str(args.clusters),
        "--start",
        str(args.start),
        "--backing",
        naming.MUX_BACKING,
        "--parallel",
        str(args.parallel),
        "--timeout",
        str(args.timeout),
        "--wait",
        "-o",
        "json",
        timeout=args.timeout + 600,
    )
    try:
        made = json.loads(out.stdout)
    except ValueError:
        return row
    row |= {"run": made["run"], "available": len(made["available"]), "stuck": len(made["stuck"])}
    rep = run_lab(env, "report", "--run", str(made["run"]), "--format", "json", timeout=600)
    if rep.returncode == 0:
        report = json.loads(rep.stdout)
        row |= {"wall_seconds": report["wall_seconds"], "per_minute": report["clusters_per_minute"]}
    return row


def measure(
    stack: Stack, names: list[str], args: argparse.Namespace, tmp: Path, results: dict[str, Any]
) -> None:
    """Create, then each disruption and its recovery, into `results`."""
    settings = stack.settings()
    say(f"create-clusters {len(names)} --start {args.start} --backing mux")
    results["create"] = create(stack.env, args)
    if results["create"]["exit"] != 0:
        return
    began = time.monotonic()
    kubeconfigs = write_kubeconfigs(stack.env, names, tmp / "kubeconfigs")
    results["kubeconfigs_s"] = since(began)
    with (
        Client.from_kubeconfig(settings.admin_kubeconfig, attempts=1, timeout=10.0) as client,
        ThreadPoolExecutor(WORKERS) as pool,
    ):
        settle(client, names, pool, kubeconfigs)
        pid = listener_pid(settings.ports.mux_control)
        if pid is None:
            raise LabError(f"nothing listens on lab-mux's control port {settings.ports.mux_control}")
        say(f"lab-mux (pid {pid}) idle for {IDLE_SECONDS:.0f} s")
        results["idle"] = idle(pid, len(names))
        say("kill -9 lab-mux")
        results["kill_9"] = recovery(settings, client, kubeconfigs, pool, kill_9(settings))
        say(f"kill -9: {results['kill_9']}")
        if args.no_down_up:
            return
        settle(client, names, pool, kubeconfigs)
        say("lab down, lab up")
        results["down_up"] = recovery(settings, client, kubeconfigs, pool, down_up(stack.env))
        say(f"down/up: {results['down_up']}")


def clean(stack: Stack, names: list[str], timeout: float, results: dict[str, Any]) -> None:
    """Delete every cluster (timed) and look for what remains; never raises, so `lab down --purge`
    always follows."""
    try:
        say("delete-clusters --all")
        _, results["delete"] = timed_lab(
            stack.env, "delete-clusters", "--all", "--wait", "--timeout", str(timeout), timeout=timeout + 600
        )
        settings = stack.settings()
        results["residue"] = residue(settings, names)
        results["residue_any"] = residue(settings, None)
    except Exception as e:  # a cleanup step that fails must not skip the purge
        results["clean_error"] = repr(e)


def _s(row: dict[str, Any] | None, key: str) -> str:
    v = (row or {}).get(key)
    return "-" if v is None else f"{v} s"


def print_table(results: dict[str, Any]) -> None:
    m, c, i = results["machine"], results.get("create") or {}, results.get("idle") or {}
    print(
        f"\nmachine: {m['cpus']} cpus, {m['memory_gib']} GiB, load at start "
        f"{' '.join(f'{x:.1f}' for x in m['load_at_start'])}; {results['clusters']} clusters on mux "
        f"from index {results['start']}"
    )
    print(
        f"create: {c.get('available', '-')} Available in {c.get('wall_seconds', '-')} s "
        f"({c.get('per_minute', '-')} per minute; command {c.get('seconds', '-')} s, exit {c.get('exit', '-')})"
    )
    if i:
        print(
            f"lab-mux idle {i['seconds']} s: RSS {i['rss_mib']} MiB ({i['rss_kib_per_cluster']} KiB per "
            f"cluster), {i['mcpu']} mCPU ({i['mcpu_per_cluster']} per cluster)"
        )
    print(
        "\n| event | commands | lab-mux back | every endpoint listens | every workload whole "
        f"| every cluster Available | seen not Available | within {GOAL:.0f} s |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for key, event in (("kill_9", "kill -9 lab-mux"), ("down_up", "lab down; lab up (clock: up begins)")):
        r = results.get(key)
        if r is None:
            continue
        commands, available, cell = "-", r.get("available_s"), _s(r, "available_s")
        if "up" in r:
            commands = f"down {r['down']['seconds']} s, up {r['up']['seconds']} s"
            if available is not None:  # the goal's clock for down/up: from when up returned
                available = round(available - r["up"]["seconds"], 1)
                cell += f" ({available} s after up returned)"
        ok = "-" if available is None else ("yes" if available <= GOAL else "NO")
        print(
            f"| {event} | {commands} | {_s(r, 'back_s')} | {_s(r, 'listening_s')} | {_s(r, 'whole_s')} "
            f"| {cell} | {r['not_available_seen']} | {ok} |"
        )
        if "error" in r:
            print(f"\n{event}: {r['error']}")
    d = results.get("delete") or {}
    print(f"\ndelete --all: {d.get('seconds', '-')} s, exit {d.get('exit', '-')}")
    print(f"residue: {results.get('residue_any', results.get('clean_error', '-')) or 'none'}")
    for key in ("error", "down_purge"):
        if key in results:
            print(f"{key}: {results[key]}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clusters", type=int, default=300)
    ap.add_argument("--start", type=int, default=1, help="index of the first cluster (port 20000 + index)")
    ap.add_argument("--parallel", type=int, default=20, help="create's --parallel")
    ap.add_argument("--timeout", type=float, default=3600, help="create's and delete's --timeout")
    ap.add_argument("--out", type=Path, default=Path("mux_restart.json"))
    ap.add_argument("--no-down-up", action="store_true", help="measure kill -9 only")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="lab-muxrestart-"))
    home = tmp / "home"
    env = stack_env(home)
    env["LAB_MUX_CAPACITY"] = str(args.clusters)
    stack = Stack(env=env, home=home, up_seconds=0.0, up_stdout="")
    settings = stack.settings()
    names = [naming.cluster_name(settings.prefix, i) for i in range(args.start, args.start + args.clusters)]
    results: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
            "load_at_start": os.getloadavg(),
        },
        "clusters": args.clusters,
        "start": args.start,
        "parallel": args.parallel,
    }
    up_ok = False
    try:
        began = time.monotonic()
        build.ensure(settings, [mux.PROGRAM_NAME], log=say)
        results["build_lab_mux_s"] = since(began)
        say("lab up")
        up, results["up"] = timed_lab(env, "up", timeout=3600)
        up_ok = up.returncode == 0
        if up_ok:
            measure(stack, names, args, tmp, results)
    except (AssertionError, LabError, subprocess.TimeoutExpired) as e:
        results["error"] = str(e)
    finally:
        if up_ok:
            clean(stack, names, args.timeout, results)
        args.out.write_text(json.dumps(results, indent=2, default=str))  # in case the purge hangs
        down, results["down_purge"] = timed_lab(env, "down", "--purge", timeout=1200)
        results["machine"]["load_at_end"] = os.getloadavg()
        args.out.write_text(json.dumps(results, indent=2, default=str))
        if down.returncode == 0:
            shutil.rmtree(tmp, ignore_errors=True)
    print_table(results)
    return 0 if up_ok and "error" not in results else 1


if __name__ == "__main__":
    terminate_runs_finally()
    sys.exit(main())
