"""The management cluster as local processes vs in kind (issue 11's benchmark), one run each.

    python benchmarks/kind_vs_local.py [--clusters 50] [--timeout 1800] [--dir DIR] [--only local|kind]

Only the management side changes between the two runs: both put their clusters on the SAME backing
kind cluster (one node, lab's node image; local and mux backings are refused under kind management),
registered anew from each run's own lab home, as tests/integration/test_kind_backing.py does with 3.

1. Setup (timed): lab's own Docker engine (tests/support/docker.running_engine: Debian's docker.io,
   cut off from the uplink, the host restored at the end), the node image, kind (built from its
   module), the backing kind cluster.
2. local: `lab up`, `lab backing add kb --capacity N --wait`, `lab create-clusters N --backing kb
   --wait`, report, `lab delete-clusters --all --wait`, report, `lab backing remove kb` (waits for
   lab's namespaces to leave the backing cluster), `lab down --purge`.
3. kind: the controller images into the engine (built, or loaded from the shared archives), then
   `lab up --mode kind --offline` cold (no kind cluster yet), again with the cluster up (converge:
   the cluster reused, nothing to install), then `lab down` and up again (the cluster recreated, every
   image already in the engine); then the same backing add / create / delete / remove, `lab down
   --purge`. kind nodes: lab's default (3 control-plane nodes), as users get it.

Each run's `lab report` (Markdown and JSON) is kept in --dir with the components' logs and records.
The controllers' CPU and RSS: under the local stack, the report's whole-run series (median CPU % of a
core, largest RSS); under kind, the report has only lab and the node simulator (the managers run in
pods), so this script samples the pods' processes on the host every 5 s the same way (psutil's CPU
percent since the previous sample, RSS), summing a component's replicas (3 kube-apiservers and etcds),
plus every process of the kind nodes together (kubelet, containerd and the rest included).
At the end, one Markdown table (stdout and --dir/summary.md) and --dir/results.json.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from support.docker import Engine, running_engine
from support.kind import build_kind, create_backing_cluster, delete_named_cluster, offline_tools
from support.reports import run_summary, series, usage
from support.signals import terminate_runs_finally
from support.stack import keep_logs, keep_records, run_lab, stack_env, timed_lab

from lab import engine, images, images_node, tuning
from lab.config import Settings, default_home
from lab.kindmgmt import cluster as kind_cluster
from lab.kindmgmt.up import IPAM_DEPLOYMENT
from lab.kube import Client
from lab.manifests import backing_apiserver
from lab.manifests import etcd as etcd_manifests

BACKING = "kb"
BACKING_CLUSTER = "lab-backing"
SAMPLE_INTERVAL = 5.0
#: the management components the table quotes, in order (local names; kind's pods mapped to them)
COMPONENTS = (
    "kube-apiserver",
    "mgmt-etcd",
    "kube-controller-manager",
    "capi-manager",
    "kcp-manager",
    "cabpk-manager",
    "capm3-manager",
    "ipam-manager",
    "bmo-manager",
)
#: kind: the namespace of each provider's manager
NAMESPACES = {ns: c for c, (ns, _name) in tuning.DEPLOYMENTS.items()} | {IPAM_DEPLOYMENT[0]: "ipam-manager"}
#: kind: kube-system's static pods by their `component` label
STATIC = {
    "kube-apiserver": "kube-apiserver",
    "etcd": "mgmt-etcd",
    "kube-controller-manager": "kube-controller-manager",
}
KIND_ALL = "kind nodes (all)"
SUM = "sum of the above"


class StepFailed(Exception):
    pass


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "load": [round(x, 1) for x in os.getloadavg()],
    }


#: the script's temporary directories (kind, tools, the backing's kubeconfig), removed at the end
SCRATCH: list[Path] = []


def scratch(prefix: str) -> Path:
    SCRATCH.append(Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp")))
    return SCRATCH[-1]


def _home(prefix: str) -> Path:
    """A short lab home: supervisord's socket path under it must stay below 100 bytes."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp")) / "home"


class Run:
    """One lab home (local or kind): timed lab commands, each recorded run's report kept."""

    def __init__(self, name: str, env: dict[str, str], home: Path, out: Path) -> None:
        self.name, self.env, self.home, self.out = name, env, home, out
        self.steps: list[dict[str, Any]] = []
        self.clusters: list[dict[str, Any]] = []
        self.last_run = 0

    def step(self, label: str, *args: str, timeout: float = 3600) -> str:
        """`lab ARGS`, timed; its stdout. StepFailed when it exits non-zero."""
        load_before = [round(x, 1) for x in os.getloadavg()]
        out, row = timed_lab(self.env, *args, timeout=timeout)
        row = {"run": self.name, "step": label, "load_before": load_before} | row
        self.steps.append(row)
        print(json.dumps(row), flush=True)
        if out.returncode != 0:
            raise StepFailed(
                f"{self.name}: lab {' '.join(args)} exited {out.returncode}: {out.stderr[-2000:]}"
            )
        return out.stdout

    def report(self, label: str) -> dict[str, Any] | None:
        """The latest recorded run's report, kept as <run>-<label>.json/.md."""
        rep = run_lab(self.env, "report", "--format", "json", timeout=600)
        if rep.returncode != 0:
            print(f"{self.name}: lab report failed: {rep.stderr[-500:]}", file=sys.stderr)
            return None
        model: dict[str, Any] = json.loads(rep.stdout)
        run_id = int(model["run"]["id"])
        if run_id == self.last_run:
            return None
        self.last_run = run_id
        (self.out / f"{self.name}-{label}.json").write_text(rep.stdout)
        md = run_lab(self.env, "report", "--run", str(run_id), timeout=600)
        (self.out / f"{self.name}-{label}.md").write_text(md.stdout)
        return model


class KindSampler:
    """CPU and RSS of the kind management cluster's processes, seen from the host every 5 s.

    The node containers' processes are the descendants of each node's init (the engine's State.Pid);
    a pod's containers are found by their containerd id in the process's cgroup path (the Pods'
    containerStatuses name them), mapped to the local stack's component names (NAMESPACES, STATIC).
    CPU is psutil's percent of one core since the previous sample, as lab's own sampler takes it.
    """

    def __init__(self, client: engine.Client, kubeconfig: Path) -> None:
        self.client, self.kubeconfig = client, kubeconfig
        self.cpu: dict[str, list[float]] = {}
        self.rss: dict[str, list[float]] = {}
        self._procs: dict[int, psutil.Process] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="kind-sampler", daemon=True)
        self.errors: list[str] = []

    def __enter__(self) -> KindSampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        try:
            kc = Client.from_kubeconfig(self.kubeconfig)
        except Exception as e:  # no series at all: the table says "-" and results.json why
            self.errors.append(repr(e))
            return
        with kc:
            while True:
                try:
                    self.tick(kc)
                except Exception as e:  # a missed sample is reported, not fatal
                    if len(self.errors) < 20:
                        self.errors.append(repr(e))
                if self._stop.wait(SAMPLE_INTERVAL):
                    return

    def _owners(self, kc: Client) -> dict[str, str]:
        """containerd id -> component, for the pods the table quotes."""
        out: dict[str, str] = {}
        for pod in kc.list("v1", "Pod"):
            ns = pod["metadata"]["namespace"]
            labels = pod["metadata"].get("labels") or {}
            component = NAMESPACES.get(ns) or (
                STATIC.get(labels.get("component", "")) if ns == "kube-system" else None
            )
            if component is None:
                continue
            for status in (pod.get("status") or {}).get("containerStatuses") or []:
                cid = str(status.get("containerID") or "").split("://")[-1]
                if cid:
                    out[cid] = component
        return out

    def _node_pids(self) -> list[int]:
        label = json.dumps({"label": [f"io.x-k8s.kind.cluster={kind_cluster.CLUSTER_NAME}"]})
        nodes = self.client.json("GET", "/containers/json", {"filters": label})
        return [int(self.client.json("GET", f"/containers/{n['Id']}/json")["State"]["Pid"]) for n in nodes]

    def tick(self, kc: Client) -> None:
        owners = self._owners(kc)
        cpu: dict[str, float] = {}
        rss: dict[str, float] = {}
        seen: set[int] = set()
        for root in self._node_pids():
            try:
                tree = [psutil.Process(root), *psutil.Process(root).children(recursive=True)]
            except psutil.Error:
                continue
            for p in tree:
                seen.add(p.pid)
                known = self._procs.get(p.pid)
                try:
                    if known is None or known.create_time() != p.create_time():
                        p.cpu_percent(None)  # prime: the next sample covers one interval
                        self._procs[p.pid] = p
                        continue
                    with known.oneshot():
                        used, mem = known.cpu_percent(None), known.memory_info().rss / 2**20
                        cgroup = Path(f"/proc/{p.pid}/cgroup").read_text()
                except (psutil.Error, OSError):
                    continue
                names = [KIND_ALL, *{c for cid, c in owners.items() if cid in cgroup}]
                for name in names:
                    cpu[name] = cpu.get(name, 0.0) + used
                    rss[name] = rss.get(name, 0.0) + mem
        for gone in set(self._procs) - seen:
            del self._procs[gone]
        for name in cpu:
            self.cpu.setdefault(name, []).append(cpu[name])
            self.rss.setdefault(name, []).append(rss[name])


def clusters(run: Run, n: int, timeout: float, sampling: Callable[[], KindSampler] | None) -> None:
    """create N on the backing, report, delete all, report; each with its usage row (kind: a new
    sampler per command, so each has its own series). The delete runs even when the create failed
    (clusters not Available in time), so the next home finds the backing empty."""
    failed: list[str] = []
    for label, args in (
        ("create", ["create-clusters", str(n), "--start", "1", "--backing", BACKING, "--wait"]),
        ("delete", ["delete-clusters", "--all", "--wait"]),
    ):
        load_start = [round(x, 1) for x in os.getloadavg()]
        started = time.monotonic()
        sampler = sampling() if sampling else None
        try:
            if sampler is None:
                run.step(label, *args, "--timeout", str(timeout), timeout=timeout + 600)
            else:
                with sampler:
                    run.step(label, *args, "--timeout", str(timeout), timeout=timeout + 600)
        except StepFailed as e:
            failed.append(str(e))
        finally:
            row: dict[str, Any] = {
                "run": run.name,
                "command": label,
                "seconds": round(time.monotonic() - started, 1),
                "load_start": load_start,
                "load_end": [round(x, 1) for x in os.getloadavg()],
            }
            model = run.report(label)
            if model is not None:
                row |= {"run_id": model["run"]["id"], **run_summary(model)}
                if sampler is None:
                    row["components"] = usage(series(model, "cpu"), series(model, "rss"))
                    row["usage_source"] = "lab report (whole run)"
                else:  # lab and the node simulator run on the host: the report has them
                    reported = usage(series(model, "cpu"), series(model, "rss"))
                    row["components"] = reported | usage(sampler.cpu, sampler.rss)
                    row["usage_source"] = f"pods' processes sampled on the host every {SAMPLE_INTERVAL:.0f}s"
                    row["sampler_errors"] = sampler.errors
            run.clusters.append(row)
            print(json.dumps(row), flush=True)
    if failed:
        raise StepFailed("; ".join(failed))


def backing_cycle(
    run: Run, kubeconfig: Path, n: int, timeout: float, sampling: Callable[[], KindSampler] | None
) -> None:
    run.step(
        "backing add",
        "backing",
        "add",
        BACKING,
        "--kubeconfig",
        str(kubeconfig),
        "--capacity",
        str(n),
        "--wait",
    )
    try:
        clusters(run, n, timeout, sampling)
    finally:
        run.step("backing remove", "backing", "remove", BACKING, timeout=600)
        # the next home registers the backing anew: wait until lab's namespaces are gone from it
        names = {etcd_manifests.NAMESPACE, backing_apiserver.NAMESPACE}
        deadline = time.monotonic() + 300
        with Client.from_kubeconfig(kubeconfig) as kc:
            while names & {ns["metadata"]["name"] for ns in kc.list("v1", "Namespace")}:
                if time.monotonic() > deadline:
                    raise StepFailed(f"{run.name}: lab's namespaces still in the backing cluster after 300s")
                time.sleep(3)


def keep_pod_logs(run: Run) -> None:
    """kind: the managers log in their pods, not under the lab home: each Deployment's log, gzipped
    under <out>/logs before `lab down` deletes the cluster."""
    kubeconfig = run.home / "kubeconfig"
    if not kubeconfig.is_file():
        return
    (run.out / "logs").mkdir(exist_ok=True)
    for component, (ns, name) in (*tuning.DEPLOYMENTS.items(), ("ipam-manager", IPAM_DEPLOYMENT)):
        got = subprocess.run(
            ["kubectl", f"--kubeconfig={kubeconfig}", "-n", ns, "logs", f"deploy/{name}", "--all-containers"],
            capture_output=True,
            env=run.env,
            timeout=120,
        )
        with gzip.open(run.out / "logs" / f"{component}.log.gz", "wb") as f:
            f.write(got.stdout + got.stderr)


def finish(run: Run, purge_timeout: float = 1200) -> int:
    """Logs and records kept, `lab down --purge`; its exit."""
    keep_logs(run.home, run.out)
    if run.name == "kind":
        keep_pod_logs(run)
    down = run_lab(run.env, "down", "--purge", timeout=purge_timeout)
    print(f"{run.name}: lab down --purge exit {down.returncode}", flush=True)
    if down.returncode != 0:
        print(down.stderr[-2000:], file=sys.stderr)
    keep_records(run.home, run.out, down.returncode)
    return down.returncode


def local_run(eng: Engine, kubeconfig: Path, args: argparse.Namespace, results: dict[str, Any]) -> Run:
    out = args.dir / "local"
    out.mkdir(parents=True, exist_ok=True)
    home = _home("kvll-")
    run = Run("local", {**stack_env(home), **eng.env()}, home, out)
    results["runs"].append(run)
    try:
        run.step("up", "up", timeout=3600)
        backing_cycle(run, kubeconfig, args.clusters, args.timeout, None)
    finally:
        results["down_exit"]["local"] = finish(run)
    return run


def kind_images(eng: Engine, results: dict[str, Any]) -> None:
    """The controller images in the engine, as the offline kind up needs them: built, or loaded from
    the shared cache's archives."""
    shared = Settings(home=default_home())
    started = time.monotonic()
    actions = {}
    for name in images.IMAGES:
        r = images.build_one(shared, eng.client, name, print)
        actions[name] = f"{r.action} {r.seconds:.0f}s"
    results["setup"]["controller images"] = {
        "seconds": round(time.monotonic() - started, 1),
        "actions": actions,
    }
    print(json.dumps({"controller images": results["setup"]["controller images"]}), flush=True)


def kind_run(
    eng: Engine, kind: Path, kubeconfig: Path, args: argparse.Namespace, results: dict[str, Any]
) -> Run:
    out = args.dir / "kind"
    out.mkdir(parents=True, exist_ok=True)
    kind_images(eng, results)
    tools = offline_tools(scratch("kvlt-"), kind)
    home = _home("kvlk-")
    env = {**stack_env(home), **eng.env(), "LAB_MODE": "kind", "PATH": f"{tools}:{os.environ['PATH']}"}
    run = Run("kind", env, home, out)
    results["runs"].append(run)
    up = ("up", "--mode", "kind", "--offline")
    try:
        for label in ("up cold", "up converge", "down", "up after down"):
            text = run.step(label, *(("down",) if label == "down" else up), timeout=3600)
            if label != "down":
                results["ups"][label] = f"{run.steps[-1]['seconds']}s: {_up_note(text)}"
        backing_cycle(
            run, kubeconfig, args.clusters, args.timeout, lambda: KindSampler(eng.client, home / "kubeconfig")
        )
    finally:
        results["down_exit"]["kind"] = finish(run)
        if results["down_exit"]["kind"] != 0:
            delete_named_cluster(kind, eng.client, kind_cluster.CLUSTER_NAME)
    return run


def _up_note(stdout: str) -> str:
    """lab up's result line (the cluster created or reused, what it installed), unwrapped."""
    flat = " ".join(stdout.split())
    at = flat.rfind("ready in")
    return flat[at:].split("; kubeconfig:")[0] if at >= 0 else flat[-300:]


def _phases(row: dict[str, Any]) -> str:
    return ", ".join(
        f"{k} {v['p50']:.0f}/{v['p90']:.0f}"
        for k, v in (row.get("phases") or {}).items()
        if v["p50"] is not None and v["p90"] is not None
    )


def table(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [
        f"# kind vs local management, {results['count']} clusters on one kind backing",
        "",
        f"Machine: {m['cpus']} CPUs, {m['memory_gib']} GiB; load average at start {m['load']}, at end "
        f"{results.get('load_end')}.",
        "",
        "## Setup",
        "",
        "| step | seconds | detail |",
        "|---|---|---|",
    ]
    for step, v in results["setup"].items():
        detail = v.get("action") or ", ".join(f"{k} {a}" for k, a in (v.get("actions") or {}).items())
        lines.append(f"| {step} | {v['seconds']} | {detail} |")
    lines += ["", "## Every lab command", "", "| run | step | exit | seconds | load before | load after |"]
    lines.append("|---|---|---|---|---|---|")
    for run in results["steps"]:
        lines.append(
            f"| {run['run']} | {run['step']} | {run['exit']} | {run['seconds']} | "
            f"{' '.join(map(str, run['load_before']))} | {' '.join(map(str, run['load']))} |"
        )
    if results["ups"]:
        lines += ["", "## lab up --mode kind --offline", ""]
        lines += [f"- {k}: {v}" for k, v in results["ups"].items()]
    lines += ["", "## Runs", "", "| run | command | done | wall s | phase p50/p90 s | load start → end |"]
    lines.append("|---|---|---|---|---|---|")
    for row in results["clusters"]:
        lines.append(
            f"| {row['run']} | {row['command']} | {row.get('done', '-')}/{row.get('clusters', '-')} | "
            f"{round(row.get('wall_seconds') or row['seconds'], 1)} | {_phases(row)} | "
            f"{' '.join(map(str, row['load_start']))} → {' '.join(map(str, row['load_end']))} |"
        )
    lines += ["", "## Controllers: median CPU % of a core / largest RSS MiB over each run", ""]
    heads = [f"{r['run']} {r['command']}" for r in results["clusters"]]
    lines.append("| component | " + " | ".join(heads) + " |")
    lines.append("|---|" + "---|" * len(heads))
    for name in (*COMPONENTS, SUM, KIND_ALL, "nodesim", "lab"):
        cells = []
        for r in results["clusters"]:
            have = r.get("components") or {}
            c = have.get(name)
            if name == SUM:
                quoted = [have[n] for n in COMPONENTS if n in have]
                c = {k: round(sum(q[k] for q in quoted), 1) for k in ("cpu", "rss_mib")} if quoted else None
            cells.append(f"{c['cpu']} / {c['rss_mib']}" if c else "-")
        if any(cell != "-" for cell in cells):
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "local: lab report's whole-run series; kind: the pods' processes sampled on the host (replicas "
        "summed: 3 kube-apiservers, etcds, controller-managers); kind nodes (all): every process of the "
        "management kind nodes (kubelet, containerd, scheduler, CoreDNS, proxies included); sum of the "
        "above: the medians added and the maxima added (not the total sampled at once); nodesim and lab: the "
        "host processes both modes run (lab report).",
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clusters", type=int, default=50)
    ap.add_argument("--timeout", type=float, default=1800)
    ap.add_argument("--dir", type=Path, default=Path("kind_vs_local"))
    ap.add_argument("--only", choices=("local", "kind"))
    ap.add_argument(
        "--kind",
        type=Path,
        help="a kind binary at the pinned version (default: built by tests/support/kind.build_kind; "
        "build it beforehand under the machine's Go build lock where there is one)",
    )
    args = ap.parse_args()
    if args.clusters < 1:
        ap.error("--clusters must be at least 1")
    args.dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "machine": machine(),
        "count": args.clusters,
        "setup": {},
        "ups": {},
        "runs": [],
        "down_exit": {},
        "errors": [],
    }
    print(json.dumps({"machine": results["machine"]}), flush=True)
    shared = Settings(home=default_home())
    try:
        with running_engine() as eng:
            results["setup"]["engine"] = {"seconds": round(eng.start_seconds, 1)}
            node = images_node.build_node(shared, eng.client, print)
            results["setup"]["node image"] = {"seconds": round(node.seconds, 1), "action": node.action}
            started = time.monotonic()
            kind = args.kind.resolve() if args.kind else build_kind(scratch("kvlb-"))
            results["setup"]["kind CLI"] = {
                "seconds": round(time.monotonic() - started, 1),
                "action": f"given ({kind})" if args.kind else "built",
            }
            kubeconfig = scratch("kvlkb-") / "kubeconfig"
            started = time.monotonic()
            node_ip = create_backing_cluster(kind, eng.client, BACKING_CLUSTER, kubeconfig, shared)
            results["setup"]["backing kind cluster"] = {
                "seconds": round(time.monotonic() - started, 1),
                "action": node_ip,
            }
            print(json.dumps({"setup": results["setup"]}), flush=True)
            try:
                for name in ("local", "kind"):
                    if args.only not in (None, name):
                        continue
                    try:
                        if name == "local":
                            local_run(eng, kubeconfig, args, results)
                        else:
                            kind_run(eng, kind, kubeconfig, args, results)
                    except Exception as e:  # the other run still runs; the exit says it failed
                        results["errors"].append(f"{name}: {type(e).__name__}: {e}")
                        print(f"{name}: {e}", file=sys.stderr, flush=True)
            finally:
                gone = delete_named_cluster(kind, eng.client, BACKING_CLUSTER)
                if gone.returncode != 0:
                    results["errors"].append(f"kind delete cluster {BACKING_CLUSTER}: {gone.stderr[-500:]}")
    finally:
        for path in SCRATCH:
            shutil.rmtree(path, ignore_errors=True)
        runs: list[Run] = results.pop("runs")
        results["steps"] = [s for r in runs for s in r.steps]
        results["clusters"] = [c for r in runs for c in r.clusters]
        results["load_end"] = [round(x, 1) for x in os.getloadavg()]
        (args.dir / "results.json").write_text(json.dumps(results, indent=2, default=str))
        text = table(results)
        (args.dir / "summary.md").write_text(text)
        print(text)
    failed = (
        results["errors"]
        or any(s["exit"] != 0 for s in results["steps"])
        or any(results["down_exit"].values())
    )
    return 1 if failed else 0


if __name__ == "__main__":
    terminate_runs_finally()
    sys.exit(main())
