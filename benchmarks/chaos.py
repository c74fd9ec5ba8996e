"""Chaos under load: kill -9 each part of the stack while clusters are being created, then while they
are being deleted, and measure how long each takes to come back.

    python benchmarks/chaos.py [--clusters 30] [--start 1] [--parallel 10] [--out chaos.json]

Starts its own stack like the e2e tests do (tests/e2e/_stack.py: `lab up` in a tmp LAB_HOME, binaries
from the shared cache, ports moved out of the way), then runs the real commands in the background:
`lab create-clusters N --wait`, and once every cluster is Available, `lab delete-clusters --all --wait`.
While each runs it kills, one after the other: the management kube-apiserver, the management etcd,
the tenant etcd, each manager (CAPI, CABPK, KCP, IPAM, CAPM3, BMO), the node simulator, one workload
kube-apiserver, and lab itself (the running command; the same command is then started again and
must converge). supervisord restarts what it supervises; nothing else helps.

Per kill it measures:
- restarted: seconds until supervisord runs it again (a new pid, RUNNING);
- back: seconds until the component answers again (its health or readyz endpoint, as `lab status`
  probes it, from a new pid; the node simulator has none, so RUNNING under a new pid);
- available again (create): seconds until every cluster that was Available at the kill is Available
  again, and `affected`, how many of them were seen not Available in between;
- all available (create) / all gone (delete): seconds until every cluster present at the kill is
  Available / deleted (this includes the command's normal progress).
The next kill waits until the last component is back and the clusters Available at its kill are
Available again (or --cluster-timeout passes, then they count as stuck), plus --settle seconds.
At the end the residue check (lab.clusters.residue, as the e2e tests use it) must find nothing; the
table's residue column is what it found of the clusters present at each kill.

Results: a JSON file (--out) and a Markdown table on stdout, with the machine's load in the header.
tests/e2e/test_chaos.py runs the same driver at CI size (run_chaos, with CI_PLAN).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from support.signals import terminate_runs_finally
from support.stack import Stack, stack_env

from lab import naming, supervised
from lab.backing import local, ready
from lab.clusters import inventory
from lab.clusters.residue import residue
from lab.config import Settings
from lab.errors import LabError
from lab.kube import Client
from lab.runtime.supervise import Supervisor, log_file
from lab.stack import health, managers

WORKLOAD = "workload-apiserver"
LAB = "lab"
#: What is killed, in the issue's order. Supervised programs by their supervisord name; WORKLOAD is
#: one workload cluster's apiserver (wkl-<cluster>), LAB the running create or delete command.
COMPONENTS: tuple[str, ...] = (
    "kube-apiserver",
    "mgmt-etcd",
    "tenant-etcd",
    *managers.NAMES,
    "nodesim",
    WORKLOAD,
    LAB,
)
#: The script's default: everything killed during the create and again during the delete. lab
#: goes second (mid-apply, mid-delete: the hardest moments to resume from) and the workload
#: apiserver third: with 30 clusters the create's last kills came after it ended (234 s in all),
#: and the delete's (158 s) as well.
_EARLY = ("kube-apiserver", LAB, WORKLOAD)
FULL_PLAN: dict[str, tuple[str, ...]] = {
    phase: (*_EARLY, *(c for c in COMPONENTS if c not in _EARLY)) for phase in ("create", "delete")
}
#: CI size (six clusters): each component killed once, split over the two commands so every kill
#: lands while a command runs (a create of six took 52 s, a delete 64 s); lab is killed in both.
CI_PLAN: dict[str, tuple[str, ...]] = {
    "create": ("kube-apiserver", LAB, "mgmt-etcd", "capi-manager", "kcp-manager", "nodesim", WORKLOAD),
    "delete": ("tenant-etcd", "capm3-manager", "bmo-manager", "cabpk-manager", "ipam-manager", LAB),
}

Say = Callable[[str], None]
#: R6: a killed component is back within 30 s; slower ones keep their log's tail in the results.
SLOW = 30.0
REMOVED = "program removed by the delete"


def _tail(path: Path, n: int) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()[-n:]
    except OSError:
        return []


@dataclass
class Kill:
    phase: str
    component: str
    #: the supervisord program killed (wkl-<cluster> for WORKLOAD), or "lab"
    program: str
    pid: int | None
    #: the create/delete command was still running when the kill landed
    during: bool
    #: clusters with a namespace at the kill, and those of them Available
    present: list[str]
    available: list[str]
    back_s: float | None = None
    #: seconds until supervisord ran it again (a new pid, RUNNING): back_s minus this is its startup
    restarted_s: float | None = None
    available_again_s: float | None = None
    all_available_s: float | None = None
    all_gone_s: float | None = None
    affected: list[str] = field(default_factory=list)
    #: clusters Available at the kill that were not Available again within --cluster-timeout
    stuck: dict[str, str] = field(default_factory=dict)
    note: str = ""
    #: the component's log when it came back late (over SLOW seconds) or not at all
    log_tail: list[str] = field(default_factory=list)
    residue: dict[str, list[str]] = field(default_factory=dict)
    at: float = 0.0  # time.monotonic() of the kill


@dataclass
class Op:
    """The create or delete command running in the background, re-started after lab is killed."""

    stack: Stack
    args: list[str]
    workdir: Path
    runs: list[dict[str, Any]] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        n = len(self.runs)
        out, err = self.workdir / f"{self.args[0]}-{n}.out", self.workdir / f"{self.args[0]}-{n}.err"
        with out.open("wb") as o, err.open("wb") as e:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "lab", *self.args],
                env={**self.stack.env, "COLUMNS": "200"},
                stdout=o,
                stderr=e,
            )
        self.runs.append({"started": time.monotonic(), "stdout": str(out), "stderr": str(err)})

    def running(self) -> bool:
        """Also stamps the moment the current run was first seen ended (the poll loop calls it)."""
        alive = self.proc is not None and self.proc.poll() is None
        if not alive and self.runs and "ended" not in self.runs[-1]:
            self.runs[-1]["ended"] = time.monotonic()
        return alive

    def kill(self) -> int:
        assert self.proc is not None
        pid = self.proc.pid
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.runs[-1] |= {"killed": True, "exit": self.proc.returncode}
        return pid

    def stop(self) -> None:
        """On a failed experiment: end a command still running, so its lock on the lab home goes
        with it and the stack can be torn down."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def finish(self, timeout: float) -> dict[str, Any]:
        """Wait for the current run; its exit code, seconds, JSON result (or stderr tail)."""
        assert self.proc is not None
        run = self.runs[-1]
        try:
            rc = self.proc.wait(timeout=max(1.0, run["started"] + timeout - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
            run["timed_out"] = True
        ended = run.setdefault("ended", time.monotonic())
        run |= {"exit": rc, "seconds": round(ended - run["started"], 1)}
        text = Path(run["stdout"]).read_text()
        try:
            run["result"] = json.loads(text)
        except ValueError:
            run["result"] = None
        if rc != 0:
            run["stderr_tail"] = Path(run["stderr"]).read_text().strip().splitlines()[-5:]
        return run


class Chaos:
    def __init__(
        self,
        stack: Stack,
        names: Sequence[str],
        *,
        settle: float,
        back_timeout: float,
        cluster_timeout: float,
        say: Say,
    ) -> None:
        self.stack = stack
        self.settings: Settings = stack.settings()
        self.names = list(names)
        self.settle = settle
        self.back_timeout = back_timeout
        self.cluster_timeout = cluster_timeout
        self.say = say
        self.sup = Supervisor(self.settings)
        self.probes = health.probes(self.settings)
        # One try, short timeout: an unreachable management API is an answer here, not a reason to wait.
        self.client = Client.from_kubeconfig(
            self.settings.admin_kubeconfig, attempts=1, timeout=5.0, parallel=2
        )
        self.kills: list[Kill] = []
        self._open: list[Kill] = []
        self.op: Op | None = None
        self._last_poll = 0.0
        self.phases: dict[str, str] | None = None  # name -> display phase, None: API did not answer
        self.last_phases: dict[str, str] = {}  # the last answer

    def close(self) -> None:
        self.client.close()

    # --- observing ------------------------------------------------------------------------

    def poll(self) -> None:
        """Every second at most: the clusters' phases, and the open kills' cluster measurements."""
        now = time.monotonic()
        if self.op is not None:
            self.op.running()
        if now - self._last_poll < 1.0:
            return
        self._last_poll = now
        try:
            infos = inventory.list_clusters(self.settings, self.client)
        except (LabError, OSError):
            self.phases = None
            return
        wanted = set(self.names)
        self.phases = {c.name: c.phase for c in infos if c.name in wanted}
        self.last_phases = self.phases
        for k in list(self._open):
            self._update(k, now)

    def _available(self, names: Sequence[str]) -> bool:
        assert self.phases is not None
        return all(self.phases.get(n) == inventory.AVAILABLE for n in names)

    def _update(self, k: Kill, now: float) -> None:
        assert self.phases is not None
        since = round(now - k.at, 1)
        if k.phase == "create" and (k.back_s is not None or k.component == LAB):
            k.affected = sorted(
                set(k.affected) | {n for n in k.available if self.phases.get(n) != inventory.AVAILABLE}
            )
            if k.available and k.available_again_s is None and self._available(k.available):
                k.available_again_s = since
            if k.all_available_s is None and self._available(k.present):
                k.all_available_s = since
            done = k.all_available_s is not None
        elif k.phase == "create":
            done = False  # clusters are measured from the moment the component is back
        else:
            if k.all_gone_s is None and not any(n in self.phases for n in k.present):
                k.all_gone_s = since
            done = k.all_gone_s is not None
        if done:
            self._open.remove(k)

    def wait(self, what: str, check: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            self.poll()
            if check():
                return True
            if time.monotonic() > deadline:
                self.say(f"  {what}: not within {timeout:.0f}s")
                return False
            time.sleep(0.2)

    def _pid(self, program: str) -> int | None:
        info = self.sup.process(program)
        return int(info["pid"]) if info and info["statename"] == "RUNNING" and info["pid"] else None

    def _back(self, component: str, program: str, old: int | None) -> Callable[[], bool]:
        """True once the program runs under a new pid and answers its health endpoint."""

        def check() -> bool:
            pid = self._pid(program)
            if pid is None or pid == old:
                return False
            if component == WORKLOAD:
                return ready.is_ready(self.settings, program.removeprefix(local.PROGRAM_PREFIX), 2.0)
            probe = self.probes.get(program)
            return probe is None or supervised.check(probe)[0]

        return check

    # --- one kill -------------------------------------------------------------------------

    def _workload_target(self) -> str | None:
        """A cluster whose apiserver runs: an Available one when there is one (CAPI watches it)."""
        phases = self.phases or {}
        running = [n for n in self.names if self._pid(local.program_name(n))]
        ranked = [n for n in running if phases.get(n) == inventory.AVAILABLE] + running
        return ranked[0] if ranked else None

    def kill(self, phase: str, component: str, op: Op) -> Kill:
        self._last_poll = 0.0
        self.poll()
        phases = dict(self.last_phases if self.phases is None else self.phases)
        present = [n for n in self.names if n in phases]
        available = [n for n in present if phases[n] == inventory.AVAILABLE]
        program = LAB if component == LAB else component
        if component == WORKLOAD:
            target = self._workload_target()
            program = local.program_name(target) if target else "wkl-?"
        k = Kill(phase, component, program, None, op.running(), present, available)
        if self.phases is None:
            k.note = "management API did not answer at the kill: clusters as last seen"
        self.kills.append(k)
        if not self._strike(k, component, program, op):
            return k
        self._open.append(k)
        self.say(
            f"{phase}: killed {program} (pid {k.pid}); {len(available)}/{len(present)} clusters Available"
            + ("" if k.during else "; the command had finished")
        )
        if component != LAB:
            self._await_back(k, component, program)
        # the management API answers and what was Available is Available again
        if not self.wait(
            "clusters Available again",
            lambda: self.phases is not None and self._available(k.available),
            self.cluster_timeout,
        ):
            k.stuck = {n: (self.phases or {}).get(n, "unknown") for n in k.available}
            k.stuck = {n: p for n, p in k.stuck.items() if p != inventory.AVAILABLE}
        self.say(
            f"  back {_s(k.back_s)} s; available again {_s(k.available_again_s)} s; affected {len(k.affected)}"
        )
        end = time.monotonic() + self.settle
        self.wait("settle", lambda: time.monotonic() > end, self.settle + 1)
        return k

    def _strike(self, k: Kill, component: str, program: str, op: Op) -> bool:
        """kill -9 the target (lab: the command, then the same command again); False when nothing ran."""
        if component == LAB:
            if not op.running():
                k.note = "command had already finished: nothing to kill"
                return False
            k.at = time.monotonic()
            k.pid = op.kill()
            op.start()  # the same command again: it must converge
            k.note = "; ".join(filter(None, [k.note, "re-run"]))
            return True
        k.pid = self._pid(program)
        if k.pid is None:
            k.note = f"{program} not running: nothing to kill"
            return False
        k.at = time.monotonic()
        os.kill(k.pid, signal.SIGKILL)
        return True

    def _await_back(self, k: Kill, component: str, program: str) -> None:
        """Until supervisord ran the killed program again and it answers (or, for a workload
        apiserver, until the delete removed it); the log tail when that took long."""
        back = self._back(component, program, k.pid)

        def removed() -> bool:
            return component == WORKLOAD and self.sup.process(program) is None

        def back_or_removed() -> bool:
            if k.restarted_s is None and self._pid(program) not in (None, k.pid):
                k.restarted_s = round(time.monotonic() - k.at, 1)
            if back():  # it may have reached RUNNING between the two looks
                k.restarted_s = k.restarted_s or round(time.monotonic() - k.at, 1)
                return True
            return removed()

        if self.wait(f"{program} back", back_or_removed, self.back_timeout):
            if removed():
                k.note = "; ".join(filter(None, [k.note, REMOVED]))
            else:
                k.back_s = round(time.monotonic() - k.at, 1)
                self._last_poll = 0.0  # the clusters as they are now that it is back
        if k.back_s is None or k.back_s > SLOW:  # the evidence, before a later restart rotates it
            k.log_tail = _tail(log_file(self.settings, program), 15)

    # --- a phase --------------------------------------------------------------------------

    def run_phase(self, phase: str, op: Op, components: Sequence[str], op_timeout: float) -> dict[str, Any]:
        """Start the command, wait for load, kill in turn, then wait for the command to end."""
        started = time.monotonic()
        self.op = op
        op.start()
        if phase == "create":  # from the first namespace on: the command is applying
            self.wait("a first namespace", lambda: not op.running() or bool(self.phases), op_timeout)
        else:
            self.wait(
                "the delete requested",
                lambda: not op.running() or inventory.DELETING in (self.phases or {}).values(),
                op_timeout,
            )
        for c in components:
            self.kill(phase, c, op)
        run = op.finish(op_timeout)
        # the open kills' "all available" / "all gone" close on the polls that follow
        self.wait("the kills' clusters settled", lambda: not self._open, 30.0)
        return {
            "command": ["lab", *op.args],
            "seconds": round(time.monotonic() - started, 1),
            "runs": op.runs,
            "final": run,
        }


def run_chaos(
    stack: Stack,
    indexes: Sequence[int],
    *,
    plan: Mapping[str, Sequence[str]] = FULL_PLAN,
    parallel: int = 10,
    settle: float = 5.0,
    back_timeout: float = 120.0,
    cluster_timeout: float = 300.0,
    op_timeout: float = 1800.0,
    workdir: Path,
    say: Say = lambda _m: None,
) -> dict[str, Any]:
    """The whole experiment on a running stack; everything measured, as a JSON-ready dict."""
    settings = stack.settings()
    names = [naming.cluster_name(settings.prefix, i) for i in indexes]
    chaos = Chaos(
        stack, names, settle=settle, back_timeout=back_timeout, cluster_timeout=cluster_timeout, say=say
    )
    out: dict[str, Any] = {"clusters": names, "load_at_start": os.getloadavg()}
    ops: list[Op] = []
    try:
        create = Op(
            stack,
            [
                "create-clusters",
                str(len(indexes)),
                "--start",
                str(indexes[0]),
                "--parallel",
                str(parallel),
                "--timeout",
                str(op_timeout),
                "-o",
                "json",
            ],
            workdir,
        )
        ops.append(create)
        out["create"] = chaos.run_phase("create", create, plan.get("create", ()), op_timeout + 60)
        out["load_after_create"] = os.getloadavg()
        delete = Op(stack, ["delete-clusters", "--all", "--timeout", str(op_timeout), "-o", "json"], workdir)
        ops.append(delete)
        out["delete"] = chaos.run_phase("delete", delete, plan.get("delete", ()), op_timeout + 60)
        out["load_after_delete"] = os.getloadavg()
    finally:
        for op in ops:
            op.stop()
        chaos.close()
        left = residue(settings, names)
        out["residue"] = left
        out["residue_any"] = residue(settings, None)
        for k in chaos.kills:
            k.residue = {n: left[n] for n in k.present if n in left}
        out["kills"] = [{kk: v for kk, v in asdict(k).items() if kk != "at"} for k in chaos.kills]
        out["components"] = {
            n: {"state": c["state"], "healthy": c["healthy"]} for n, c in stack.status().items()
        }
    return out


def _s(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def table(result: Mapping[str, Any]) -> str:
    """Markdown: one row per kill."""
    lines = [
        "| phase | component | during | restarted / back (s) | Available at kill | affected | available again (s) | all available / gone (s) | residue | note |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for k in result["kills"]:
        everything = k["all_available_s"] if k["phase"] == "create" else k["all_gone_s"]
        res = sum(len(v) for v in k["residue"].values())
        note = k["note"] + (f"; stuck {k['stuck']}" if k["stuck"] else "")
        lines.append(
            f"| {k['phase']} | {k['program']} | {'yes' if k['during'] else 'NO'} | "
            f"{_s(k['restarted_s'])} / {_s(k['back_s'])} | "
            f"{len(k['available'])}/{len(k['present'])} | {len(k['affected'])} | "
            f"{_s(k['available_again_s'])} | {_s(everything)} | {res or 'none'} | {note} |"
        )
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clusters", type=int, default=30)
    ap.add_argument("--start", type=int, default=1, help="index of the first cluster")
    ap.add_argument("--parallel", type=int, default=10)
    ap.add_argument("--settle", type=float, default=5.0, help="seconds between a recovery and the next kill")
    ap.add_argument("--cluster-timeout", type=float, default=300.0)
    ap.add_argument("--timeout", type=float, default=3600.0, help="seconds each command may take")
    ap.add_argument("--ci-plan", action="store_true", help="the CI test's split plan instead of the full one")
    ap.add_argument("--out", type=Path, default=Path("chaos.json"))
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="lab-chaos-"))
    home = tmp / "home"
    env = stack_env(home)
    env["LAB_LOCAL_CAPACITY"] = str(max(args.clusters, 100))
    stack = Stack(env=env, home=home, up_seconds=0.0, up_stdout="")

    def say(m: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} {m}", file=sys.stderr, flush=True)

    started = time.monotonic()
    up = stack.lab("up", timeout=3600, check=False)
    stack.up_seconds = time.monotonic() - started
    if up.returncode != 0:
        print(up.stderr, file=sys.stderr)
        return 1
    result: dict[str, Any] = {}
    try:
        result = run_chaos(
            stack,
            list(range(args.start, args.start + args.clusters)),
            plan=CI_PLAN if args.ci_plan else FULL_PLAN,
            parallel=args.parallel,
            settle=args.settle,
            cluster_timeout=args.cluster_timeout,
            op_timeout=args.timeout,
            workdir=tmp,
            say=say,
        )
    finally:
        down = stack.lab("down", "--purge", timeout=1200, check=False)
        result["down"] = {"exit": down.returncode}
        result["machine"] = {"cpus": os.cpu_count(), "load_at_end": os.getloadavg()}
        args.out.write_text(json.dumps(result, indent=2, default=str))
    print(f"machine: {result['machine']}; load at start {result.get('load_at_start')}")
    print(table(result))
    for phase in ("create", "delete"):
        final = result.get(phase, {}).get("final", {})
        print(f"{phase}: exit {final.get('exit')} after {result.get(phase, {}).get('seconds')}s in all")
    print(f"residue after delete --all: {result.get('residue_any') or 'none'}")
    return 0


if __name__ == "__main__":
    terminate_runs_finally()
    sys.exit(main())
