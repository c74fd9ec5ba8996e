"""What rendering one workload cluster's objects costs, apart from its PKI.

    python benchmarks/render_bench.py [--clusters N]

Times, per cluster: lab.manifests.cluster_objects (pure dicts, given a PKI), YAML and JSON
serialization of those objects, and the size of the YAML. The PKI is made once and renamed per
cluster, so PKI cost (benchmarks/pki_bench.py) stays out of these numbers. Prints median wall and
CPU time per cluster and the projection to 1000 clusters.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from lab import manifests, naming, pki
from lab.config import Settings
from lab.manifests import serialize

T = TypeVar("T")


def _timed(fn: Callable[[], T]) -> tuple[T, tuple[float, float]]:
    """fn's result and its (wall, CPU) seconds: CPU time stays honest when other work shares the cores."""
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, (time.perf_counter() - w, time.process_time() - c)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clusters", type=int, default=1000)
    args = parser.parse_args()

    settings = Settings(home=Path(tempfile.mkdtemp(prefix="render-bench-")))
    base = pki.generate_cluster_pki("test-1", *naming.local_endpoint(1), pki.new_ca("etcd-ca"))
    etcd = ["https://127.0.0.1:2379"]
    rows: dict[str, list[tuple[float, float]]] = {"cluster_objects": [], "to_yaml": [], "to_json": []}
    sizes = []
    for i in range(1, args.clusters + 1):
        cp = dataclasses.replace(base, name=naming.cluster_name(settings.prefix, i))
        endpoint = naming.local_endpoint(i)
        objs: list[dict[str, Any]]
        objs, t = _timed(
            lambda: manifests.cluster_objects(settings, i, endpoint, cp, etcd, manifests.bmc_password(cp))  # noqa: B023
        )
        rows["cluster_objects"].append(t)
        text, t = _timed(lambda: serialize.to_yaml(objs))  # noqa: B023
        rows["to_yaml"].append(t)
        sizes.append(len(text))
        rows["to_json"].append(_timed(lambda: serialize.to_json(objs))[1])  # noqa: B023

    print(f"{args.clusters} clusters, {os.cpu_count()} CPUs, {len(objs)} objects per cluster")
    print(f"{'step':<16} {'wall ms/cluster':>16} {'CPU ms/cluster':>15} {'1000 clusters s':>16}")
    for step, samples in rows.items():
        wall = statistics.median(w for w, _ in samples) * 1000
        cpu = statistics.median(c for _, c in samples) * 1000
        print(f"{step:<16} {wall:>16.3f} {cpu:>15.3f} {wall:>16.2f}")
    print(f"YAML per cluster: {statistics.median(sizes) / 1024:.1f} KiB")


if __name__ == "__main__":
    main()
