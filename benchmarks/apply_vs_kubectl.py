"""lab's parallel server-side apply against a per-cluster `kubectl apply` loop, as the seed scripts do.

    python benchmarks/apply_vs_kubectl.py [--clusters N] [--parallel P] [--qps Q --burst B]

One fresh etcd + kube-apiserver (the integration tests' fixture; binaries from the shared build
cache), every CAPI/CAPM3/IPAM/BMO CRD installed, then the real objects of N workload clusters
(lab.manifests, every object of each cluster) submitted twice over, to the same apiserver:

- kubectl: one `kubectl apply --server-side -f -` per cluster, clusters one after another (one
  process per cluster is already kinder to kubectl than the seed scripts' several calls per cluster);
- lab: `lab.kube.Client.apply` of all clusters' objects, P requests in flight, client-side QPS limit.

Each side gets its own clusters (so both create, neither re-applies); the sides alternate in
order over `--rounds` to cancel warm-up effects. Then both re-apply what they created (the no-op
path of a re-run). Prints wall seconds, objects/s, and the ratio.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from support.apiserver import running_apiserver
from support.signals import terminate_runs_finally

from lab import build, crds, manifests, naming, pki
from lab.config import Settings, default_home
from lab.kube import Client
from lab.manifests import serialize

Obj = dict[str, Any]


def cluster_objects(settings: Settings, index: int, etcd_ca: pki.KeyPair) -> list[Obj]:
    name = naming.cluster_name(settings.prefix, index)
    host, port = naming.local_endpoint(index)
    cp = pki.generate_cluster_pki(name, host, port, etcd_ca)
    return manifests.cluster_objects(
        settings, index, (host, port), cp, ["https://127.0.0.1:2379"], manifests.bmc_password(cp)
    )


def install_crds(client: Client, settings: Settings) -> None:
    docs = crds.crd_documents(settings)
    client.apply(docs)
    kinds = [(f"{d['spec']['group']}/{crds.storage_version(d)}", d["spec"]["names"]["kind"]) for d in docs]
    deadline = time.monotonic() + 120
    while True:  # CRDs are served a moment after they are applied
        client.discover()
        missing = [k for k in kinds if (*k[0].split("/"), k[1]) not in client._resources]
        if not missing:
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"CRDs not served after 120 s: {missing[:3]}")
        time.sleep(1)


def kubectl_loop(kubeconfig: Path, per_cluster: list[list[Obj]]) -> float:
    started = time.perf_counter()
    for objs in per_cluster:
        subprocess.run(
            [
                "kubectl",
                f"--kubeconfig={kubeconfig}",
                "apply",
                "--server-side",
                "--field-manager=lab-kubectl",
                "-f",
                "-",
            ],
            input=serialize.to_yaml(objs).encode(),
            check=True,
            stdout=subprocess.DEVNULL,
        )
    return time.perf_counter() - started


def lab_apply(client: Client, per_cluster: list[list[Obj]]) -> float:
    started = time.perf_counter()
    client.apply([o for objs in per_cluster for o in objs])
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clusters", type=int, default=20, help="clusters per side per round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--parallel", type=int, default=16)
    parser.add_argument("--qps", type=float, default=50.0)
    parser.add_argument("--burst", type=int, default=100)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="lab-bench-") as tmp:
        settings = Settings(home=Path(tmp) / "home")
        bins = build.ensure(Settings(home=default_home()), ["etcd", "kube-apiserver"], log=print)
        etcd_ca = pki.new_ca("etcd-ca")
        with running_apiserver(Path(tmp) / "api", bins["etcd"], bins["kube-apiserver"]) as api:
            admin = Client.from_kubeconfig(api.kubeconfig, qps=0, parallel=args.parallel)
            install_crds(admin, settings)
            admin.close()
            client = Client.from_kubeconfig(
                api.kubeconfig, qps=args.qps, burst=args.burst, parallel=args.parallel
            )
            client.discover()
            times: dict[str, list[float]] = {"kubectl": [], "lab": []}
            created: dict[str, list[list[Obj]]] = {"kubectl": [], "lab": []}
            next_index = 1
            for r in range(args.rounds):
                for side in ("kubectl", "lab") if r % 2 == 0 else ("lab", "kubectl"):
                    batch = [
                        cluster_objects(settings, i, etcd_ca)
                        for i in range(next_index, next_index + args.clusters)
                    ]
                    next_index += args.clusters
                    t = (
                        kubectl_loop(api.kubeconfig_path, batch)
                        if side == "kubectl"
                        else lab_apply(client, batch)
                    )
                    times[side].append(t)
                    created[side] += batch
                    print(f"round {r + 1}: {side:7s} {args.clusters} clusters in {t:6.2f} s", flush=True)
            noop = {
                "kubectl": kubectl_loop(api.kubeconfig_path, created["kubectl"]),
                "lab": lab_apply(client, created["lab"]),
            }
            objects = sum(len(c) for c in created["lab"]) // args.rounds
            print()
            print(
                f"host: {os.cpu_count()} cores; {args.clusters} clusters x {objects // args.clusters} objects per side and round"
            )
            print(
                f"lab: parallel {args.parallel}, qps {args.qps:g}/burst {args.burst}; kubectl: one process per cluster, sequential"
            )
            print(f"{'':8s} {'create median s':>16s} {'objects/s':>10s} {'re-apply s':>11s}")
            for side in ("kubectl", "lab"):
                med = statistics.median(times[side])
                print(f"{side:8s} {med:16.2f} {objects / med:10.1f} {noop[side]:11.2f}")
            ratio = statistics.median(times["kubectl"]) / statistics.median(times["lab"])
            print(
                f"ratio (kubectl / lab): create {ratio:.1f}x, re-apply {noop['kubectl'] / noop['lab']:.1f}x"
            )
            print(
                f"lab client: {client.stats.requests} requests, {client.stats.retries} retries, throttled {client.limiter.waited:.1f} s in total"
            )
            client.close()


if __name__ == "__main__":
    terminate_runs_finally()
    main()
