"""RSS of workload kube-apiservers (v1.35.4) per flag set: which memory trims lab.backing.local uses.

For each variant: N apiservers on one scratch tenant etcd (each with --etcd-prefix=/<cluster>, its own
PKI, own loopback address), RSS (psutil) after /readyz + IDLE seconds, then again after the node
simulator's writes (1 control-plane Node + 3 mirror pods + kubeadm-config + 2 worker Nodes per
cluster) and 10 s. Medians over the N processes. Run: python benchmarks/apiserver_rss.py [N] [IDLE].

Results, 2 cores / 24 GiB shared with other engineers' builds and tests, N=5, IDLE=30 s, kube-apiserver
v1.35.4 (medians over the 5 processes; "writes" = 10 s after the node simulator's objects; idle mCPU =
CPU milliseconds per second while idle; two runs, rows from the same run side by side):

    variant        flags                                     idle MiB  writes MiB  idle mCPU
    default        (only --endpoint-reconciler-type=none)       266.0       266.4
    seed           seed-scripts.md section 5 memory flags       250.5       251.0
    lab-gogc100    lab TRIM_FLAGS, Go default GOGC=100          247.2       247.4        6.0
    lab-gogc50     TRIM_FLAGS + GOGC=50                         211.8       211.9        6.0
    lab-gogc25     TRIM_FLAGS + GOGC=25  (chosen: workload_apiserver.ENV)    191.7       191.9        7.0
    lab-gogc10     TRIM_FLAGS + GOGC=10                         180.6       181.3        8.7
    lab-memlimit   TRIM_FLAGS + GOMEMLIMIT=150MiB               216.5       216.8

The flags matter less than the Go heap target: watch cache off, no profiling, no APF, no GC
controller, no etcd metric polls, no alpha/beta groups and 22 admission plugins off together save ~19
MiB (7%); GOGC=25 saves another ~57 MiB. The writes of one simulated cluster barely move RSS.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from support import etcd as etcd_local
from support.signals import terminate_runs_finally

from lab import build, naming, nodesim, pki_store, workload_apiserver
from lab.backing import local
from lab.config import Settings, default_home
from lab.kube import Client

SEED = (  # seed-scripts.md §5: the Nordix v2 memory flags
    "--profiling=false",
    "--watch-cache=false",
    "--etcd-count-metric-poll-period=0",
    "--etcd-db-metric-poll-interval=0",
    "--enable-garbage-collector=false",
    "--enable-priority-and-fairness=false",
    "--runtime-config=api/alpha=false",
    "--endpoint-reconciler-type=none",
)
VARIANTS: dict[str, tuple[tuple[str, ...], dict[str, str]]] = {
    "default": (("--endpoint-reconciler-type=none",), {}),
    "seed": (SEED, {}),
    "lab-gogc100": (workload_apiserver.TRIM_FLAGS, {}),
    "lab-gogc50": (workload_apiserver.TRIM_FLAGS, {"GOGC": "50"}),
    "lab-gogc25": (workload_apiserver.TRIM_FLAGS, {"GOGC": "25"}),
    "lab-gogc10": (workload_apiserver.TRIM_FLAGS, {"GOGC": "10"}),
    "lab-memlimit": (workload_apiserver.TRIM_FLAGS, {"GOMEMLIMIT": "150MiB"}),
    "lab": (workload_apiserver.TRIM_FLAGS, workload_apiserver.ENV),
}
BASE_INDEX = 50001


def rss_mib(pids: list[int]) -> float:
    return statistics.median(psutil.Process(p).memory_info().rss / 2**20 for p in pids)


def cpu_seconds(pids: list[int]) -> list[float]:
    return [sum(psutil.Process(p).cpu_times()[:2]) for p in pids]


def run_variant(
    settings: Settings, names: list[str], trims: tuple[str, ...], env: dict[str, str], idle: float
) -> tuple[float, float, float]:
    import os

    procs = []
    for i, name in enumerate(names):
        argv = local.apiserver_argv(
            settings,
            name,
            BASE_INDEX + i,
            workload_apiserver.PkiPaths.of(settings, name),
            etcd_local.client_url(settings),
            trims,
        )
        log = (settings.home / f"{name}.log").open("wb")
        procs.append(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **env}))
    try:
        local.wait_ready(settings, names, timeout=300)
        pids = [p.pid for p in procs]
        cpu0 = cpu_seconds(pids)
        time.sleep(idle)
        idle_cpu = (
            statistics.median(b - a for a, b in zip(cpu0, cpu_seconds(pids), strict=True)) / idle * 1000
        )
        idle_rss = rss_mib(pids)
        for name in names:
            host, port = naming.local_endpoint(BASE_INDEX + names.index(name))
            with Client.from_kubeconfig(local.admin_kubeconfig(settings, name)) as c:
                nodesim.write_node(
                    c, f"{name}-cp-0", "0000-uid", settings.versions.kubernetes, True, name, f"{host}:{port}"
                )
                for w in range(2):
                    nodesim.write_node(c, f"{name}-md-{w}", f"uid-{w}", settings.versions.kubernetes, False)
        time.sleep(10)
        return idle_rss, rss_mib(pids), idle_cpu
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(30)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    idle = float(sys.argv[2]) if len(sys.argv) > 2 else 30.0
    only = sys.argv[3].split(",") if len(sys.argv) > 3 else list(VARIANTS)
    bins = build.ensure(Settings(home=default_home()), ["etcd", "kube-apiserver"], log=print)
    with (
        tempfile.TemporaryDirectory(prefix="lab-rss-") as tmp,
        etcd_local.scratch(Path(tmp), bins["etcd"]) as etcd,
    ):
        settings = etcd.settings.model_copy(update={"bin_cache": default_home() / "bin"})
        names = [f"rss-{i}" for i in range(n)]
        with etcd.root() as root:
            from lab.etcd import tenants

            tenants.create_many(root, names)
        for i, name in enumerate(names):
            host, port = naming.local_endpoint(BASE_INDEX + i)
            pki_store.cluster_pki(settings, name, host, port, etcd.certs.ca)
        print(f"{'variant':<14} {'idle MiB':>9} {'writes MiB':>11} {'idle mCPU':>10}")
        for variant in only:
            trims, env = VARIANTS[variant]
            with etcd.root() as root:
                for name in names:
                    tenants.delete_keys(root, name)
            idle_rss, after, idle_cpu = run_variant(settings, names, trims, env, idle)
            print(f"{variant:<14} {idle_rss:>9.1f} {after:>11.1f} {idle_cpu:>10.1f}", flush=True)


if __name__ == "__main__":
    terminate_runs_finally()
    main()
