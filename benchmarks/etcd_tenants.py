"""Create and delete N etcd tenants against a real local etcd, by how lab talks to etcd.

    python benchmarks/etcd_tenants.py [--count 200] [--method grpc|etcdctl|both] [--json FILE]

Starts a throw-away tenant etcd (lab's own argv: TLS, client-cert auth, auth on) on free loopback
ports in a temp dir; binaries come from the shared build cache. A tenant is the same for both
methods: user (no password), role, READWRITE on /<name>/, grant; delete is
role, user, then the keys under /<name>/. Timed per operation, one tenant at a time.

- grpc: lab.etcd (gRPC stubs generated from etcd's protos, one TLS channel, independent calls sent
  together: 2 round trips per create, 2 per delete).
- etcdctl: one etcdctl process per call, as shell scripts do it (4 per create, 3 per delete).

Measured 2026-11-21, 2 cores / 24 GiB, while other engineers' Go builds and tests ran (1-minute
load average 9.7-11 throughout, i.e. etcd got well under one core). Two runs of 200 tenants:

    grpc, one at a time     create median 19.1 / 13.6 ms (p90 50 / 24), delete 20.9 / 17.0 ms
                            create median, first vs last 50 tenants: 19.3 -> 22.0 / 10.0 -> 16.2 ms
                            200 creates + 200 deletes: 10.5 / 8.7 s
                            etcd CPU per create / delete: 7.6 / 5.9 and 7.0 / 5.8 ms
    grpc, 8 in flight       create 15.2 / 21.1 ms per tenant, delete 21.3 / 16.0 ms
    grpc, 1000 present      create median 43 / 70 ms, delete 33 / 58 ms
                            etcd CPU per create / delete: 27 / 17 and 23 / 20 ms
    etcdctl, one process    create median 153 / 139 ms, delete 127 / 115 ms
      per call              total 68 / 63 s; etcd CPU per create / delete 19 / 16 and 21 / 17 ms

Re-run later the same day with the machine nearly idle (load average 2.0 -> 2.3), grpc only:

    grpc, one at a time     create median 9.2 ms (p90 14.5), delete 7.9 ms (p90 11.8), total 3.7 s
                            create median first vs last quarter 6.5 -> 11.7 ms
    grpc, 8 in flight       create 7.9 ms per tenant, delete 5.2 ms, total 2.6 s
    grpc, 1000 present      create median 26.3 ms, delete 18.8 ms

Target <= 20 ms median per operation: grpc meets it at 200 tenants even on this overloaded
machine (etcd itself spends 6-8 ms of CPU per operation); etcdctl misses it 7-10x (a Go process
start and a TLS handshake per call, 4 calls per create). Sending 8 tenants at once does not help:
etcd applies auth changes one at a time. What no client can remove: etcd rebuilds its permission
cache over all users on each auth change, in its single apply loop, so the cost per tenant grows
linearly with the number of tenants (3-4x etcd CPU at 1000). Issuing the tenant's client
certificate (lab.pki, ECDSA P-256) adds about 1 ms per tenant and is not included.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from support import etcd as local
from support.etcd import RunningEtcd
from support.signals import terminate_runs_finally

from lab import build, etcd
from lab.config import Settings, default_home
from lab.etcd import tenants


def _etcdctl_ops(running: RunningEtcd) -> tuple[Callable[[str], None], Callable[[str], None]]:
    d = running.settings.pki_dir / "etcd"

    def ctl(*args: str) -> None:
        argv = running.etcdctl_argv(d / "root.crt", d / "root.key", *args)
        r = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        if r.returncode != 0 and "already exists" not in r.stderr and "not found" not in r.stderr:
            raise RuntimeError(f"{' '.join(args)}: {r.stderr.strip()}")

    def create(name: str) -> None:
        ctl("user", "add", name, "--no-password")
        ctl("role", "add", name)
        ctl("role", "grant-permission", name, "--prefix=true", "readwrite", f"/{name}/")
        ctl("user", "grant-role", name, name)

    def delete(name: str) -> None:
        ctl("role", "delete", name)
        ctl("user", "delete", name)
        ctl("del", f"/{name}/", "--prefix")

    return create, delete


def _time_all(fn: Callable[[str], None], names: list[str]) -> list[float]:
    out = []
    for n in names:
        t = time.perf_counter()
        fn(n)
        out.append(time.perf_counter() - t)
    return out


def _summary(samples: list[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in samples)
    return {
        "median_ms": round(statistics.median(ms), 2),
        "p90_ms": round(ms[int(0.9 * (len(ms) - 1))], 2),
        "max_ms": round(ms[-1], 2),
        "total_s": round(sum(samples), 2),
    }


def _sequential(
    create: Callable[[str], None], delete: Callable[[str], None], names: list[str], etcd_proc: psutil.Process
) -> dict[str, Any]:
    cpu0 = _cpu(etcd_proc)
    created = _time_all(create, names)
    cpu1 = _cpu(etcd_proc)
    deleted = _time_all(delete, names)
    cpu2 = _cpu(etcd_proc)
    q = max(1, len(names) // 4)
    return {
        "create": _summary(created),
        "delete": _summary(deleted),
        # etcd rebuilds its permission cache over every user on each auth change: cost grows with N
        "create_first_quarter_median_ms": round(statistics.median(created[:q]) * 1000, 2),
        "create_last_quarter_median_ms": round(statistics.median(created[-q:]) * 1000, 2),
        # CPU etcd itself spent per operation: comparable across runs whatever the machine's load
        "etcd_cpu_ms_per_create": round((cpu1 - cpu0) / len(names) * 1000, 2),
        "etcd_cpu_ms_per_delete": round((cpu2 - cpu1) / len(names) * 1000, 2),
        "total_s": round(sum(created) + sum(deleted), 2),
    }


def _cpu(p: psutil.Process) -> float:
    t = p.cpu_times()
    return float(t.user + t.system)


def run(method: str, count: int, scale: int, parallel: int, binaries: dict[str, Path]) -> dict[str, Any]:
    with (
        tempfile.TemporaryDirectory(prefix="etcd-bench-") as tmp,
        local.scratch(Path(tmp), binaries["etcd"], binaries["etcdctl"]) as running,
    ):
        names = [f"bench-{i}" for i in range(1, count + 1)]
        out: dict[str, Any] = {"method": method, "count": count, "load_before": round(os.getloadavg()[0], 2)}
        assert running.pid is not None
        etcd_proc = psutil.Process(running.pid)
        with running.root() as root:
            if method == "grpc":
                create: Callable[[str], None] = lambda n: tenants.create(root, n)  # noqa: E731
                delete: Callable[[str], None] = lambda n: etcd.delete(root, n)  # noqa: E731
            else:
                create, delete = _etcdctl_ops(running)
            out["sequential"] = _sequential(create, delete, names, etcd_proc)
            assert tenants.list_tenants(root) == []
            if method == "grpc":
                t = time.perf_counter()
                tenants.create_many(root, names, parallel)
                made = time.perf_counter() - t
                assert len(tenants.list_tenants(root)) == count
                t = time.perf_counter()
                tenants.delete_many(root, names, parallel)
                gone = time.perf_counter() - t
                out["bulk"] = {
                    "parallel": parallel,
                    "create_per_tenant_ms": round(made / count * 1000, 2),
                    "delete_per_tenant_ms": round(gone / count * 1000, 2),
                    "total_s": round(made + gone, 2),
                }
                if scale:
                    crowd = [f"crowd-{i}" for i in range(1, scale + 1)]
                    tenants.create_many(root, crowd, parallel)
                    extra = [f"extra-{i}" for i in range(1, 21)]
                    out["at_scale"] = {"existing": scale, **_sequential(create, delete, extra, etcd_proc)}
                    tenants.delete_many(root, crowd, parallel)
        out["load_after"] = round(os.getloadavg()[0], 2)
        return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=200)
    ap.add_argument("--method", choices=["grpc", "etcdctl", "both"], default="both")
    ap.add_argument(
        "--scale", type=int, default=1000, help="grpc: also time ops with this many tenants present"
    )
    ap.add_argument("--parallel", type=int, default=8, help="grpc bulk: tenants in flight")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    binaries = build.ensure(Settings(home=default_home()), ["etcd", "etcdctl"], log=print)
    methods = ["grpc", "etcdctl"] if args.method == "both" else [args.method]
    machine = {"cpus": psutil.cpu_count(), "memory_gib": round(psutil.virtual_memory().total / 2**30, 1)}
    results = [run(m, args.count, args.scale, args.parallel, binaries) for m in methods]
    print(f"machine: {machine['cpus']} CPUs, {machine['memory_gib']} GiB; {args.count} tenants per method")
    for r in results:
        seq = r["sequential"]
        c, d = seq["create"], seq["delete"]
        print(
            f"{r['method']:8} sequential: create median {c['median_ms']:.1f} ms (p90 {c['p90_ms']:.1f}), "
            f"delete median {d['median_ms']:.1f} ms (p90 {d['p90_ms']:.1f}), total {seq['total_s']:.1f} s; "
            f"create median first/last quarter {seq['create_first_quarter_median_ms']:.1f}/"
            f"{seq['create_last_quarter_median_ms']:.1f} ms; etcd CPU per create/delete "
            f"{seq['etcd_cpu_ms_per_create']:.1f}/{seq['etcd_cpu_ms_per_delete']:.1f} ms; "
            f"load {r['load_before']} -> {r['load_after']}"
        )
        if "bulk" in r:
            b = r["bulk"]
            print(
                f"{'':8} bulk ({b['parallel']} in flight): create {b['create_per_tenant_ms']:.1f} ms/tenant, "
                f"delete {b['delete_per_tenant_ms']:.1f} ms/tenant, total {b['total_s']:.1f} s"
            )
        if "at_scale" in r:
            s_ = r["at_scale"]
            print(
                f"{'':8} with {s_['existing']} tenants present: create median {s_['create']['median_ms']:.1f} ms, "
                f"delete median {s_['delete']['median_ms']:.1f} ms; etcd CPU per create/delete "
                f"{s_['etcd_cpu_ms_per_create']:.1f}/{s_['etcd_cpu_ms_per_delete']:.1f} ms"
            )
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "results": results}, indent=2) + "\n")
    sys.exit(0)


if __name__ == "__main__":
    terminate_runs_finally()
    main()
