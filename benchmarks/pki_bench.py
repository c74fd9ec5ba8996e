"""PKI cost per workload cluster, by key algorithm, side by side in one process.

    python benchmarks/pki_bench.py [--budget SECONDS] [--clusters N]

For every algorithm CAPI's EncryptionAlgorithmType allows, times lab.pki.generate_cluster_pki (all
keys, certs and the kubeconfig of one cluster, in memory) and prints the median wall and CPU time per
cluster and the projection to 1000 clusters. Then, for the default algorithm, times cluster_pki on disk in a temp lab
home: first creation (with fsync) and the re-load a re-run pays. Runs are interleaved round-robin so
a busy machine slows every algorithm alike.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from lab import config, pki, pki_store

ALGORITHMS = list(pki.KeyAlgorithm)


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _time(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall, CPU) seconds: CPU time stays honest when other work shares the cores."""
    w, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w, time.process_time() - c


Samples = list[tuple[float, float]]


def bench_generate(budget: float, min_runs: int = 3) -> dict[pki.KeyAlgorithm, Samples]:
    etcd_ca = pki.new_ca("etcd-ca")
    samples: dict[pki.KeyAlgorithm, Samples] = {a: [] for a in ALGORITHMS}
    share = budget / len(ALGORITHMS)

    def done(s: Samples) -> bool:
        return len(s) >= min_runs and sum(w for w, _ in s) > share

    i = 0
    while not all(done(s) for s in samples.values()):
        for a in ALGORITHMS:
            if not done(samples[a]):
                i += 1
                samples[a].append(
                    _time(
                        lambda a=a, i=i: pki.generate_cluster_pki(
                            f"test-{i}", "127.1.0.1", 6443, etcd_ca, algorithm=a
                        )
                    )
                )
    return samples


def bench_disk(n: int) -> tuple[Samples, Samples]:
    with tempfile.TemporaryDirectory(prefix="pki-bench-") as home:
        settings = config.Settings(home=Path(home))
        etcd_ca = pki_store.load_or_create_ca(settings.pki_dir / "etcd", "etcd-ca")
        names = [f"test-{i}" for i in range(1, n + 1)]
        create = [
            _time(lambda n=n: pki_store.cluster_pki(settings, n, "127.1.0.1", 6443, etcd_ca)) for n in names
        ]
        load = [
            _time(lambda n=n: pki_store.cluster_pki(settings, n, "127.1.0.1", 6443, etcd_ca)) for n in names
        ]
    return create, load


def _row(label: str, s: Samples) -> str:
    wall, cpu = statistics.median(w for w, _ in s), statistics.median(c for _, c in s)
    return f"{label:<18} {len(s):>5} {wall * 1e3:>10.2f} ms {cpu * 1e3:>10.2f} ms {wall * 1000:>10.1f} s {cpu * 1000:>10.1f} s"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=float, default=20.0, help="seconds for the in-memory comparison")
    ap.add_argument(
        "--clusters", type=int, default=200, help="clusters written to disk with the default algorithm"
    )
    args = ap.parse_args()

    print(f"machine: {os.cpu_count()} CPUs ({_cpu()}), load average {os.getloadavg()[0]:.2f}")
    print(f"per cluster: 6 keys, 5 signatures, 1 kubeconfig; default {pki.DEFAULT_ALGORITHM.value}\n")
    head = f"{'':<18} {'runs':>5} {'median wall':>13} {'median CPU':>13} {'1000 wall':>12} {'1000 CPU':>12}"
    print(head)
    for a, s in bench_generate(args.budget).items():
        print(_row(a.value, s))
    create, load = bench_disk(args.clusters)
    print(
        f"\ncluster_pki on disk ({pki.DEFAULT_ALGORITHM.value}, {args.clusters} clusters, one after another):"
    )
    print(_row("create", create))
    print(_row("re-load + checks", load))


if __name__ == "__main__":
    main()
