"""`lab up`, `lab down`, `lab status`, `lab kubeconfig`, `lab tune`: the management cluster, through
the provider lab.management picks for the mode."""

from __future__ import annotations

import sys
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from lab import build, config, management, naming, shards, tuning
from lab.cli import _preflight
from lab.cli._lock import mutating
from lab.cli._output import Output, OutputOption, console, err_console, print_json
from lab.cli._preflight import RaiseLimitsOption
from lab.cli.app import app
from lab.errors import LabError, UsageError
from lab.runtime import lock
from lab.stack import mgmt, status

if TYPE_CHECKING:
    from lab.clusters.inventory import ClusterInfo


def _human_bytes(n: int | None) -> str:
    return "-" if n is None else f"{n / 2**20:.0f} MiB"


def _human_secs(s: float | None) -> str:
    if s is None:
        return "-"
    s = int(s)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


@app.command("up")
@mutating
def up_cmd(
    tuning_profile: str = typer.Option(
        None, "--tuning", help=f"manager tuning profile: {', '.join(tuning.PROFILES)}"
    ),
    mode: str = typer.Option(None, "--mode", help="local or kind; default: the configured mode"),
    bmo_source: Path = typer.Option(
        None,
        "--bmo-source",
        help="kind mode: a local BMO source tree at the pinned version (default: GitHub)",
    ),
    offline: bool = typer.Option(
        False,
        "--offline",
        help="kind mode: clusterctl reads a repository rendered from the Go module cache, not GitHub",
    ),
    n_shards: int = typer.Option(
        None,
        "--shards",
        metavar="K",
        help=f"local mode: K KCP managers (1..{shards.MAX_SHARDS}), each watching the clusters "
        "labelled for it; default: the count of the last up (1 at first)",
    ),
    raise_limits: bool = RaiseLimitsOption,
) -> None:
    """Start or converge the management stack: build what is missing, start etcd, kube-apiserver, kube-controller-manager and the CAPI/CAPM3/IPAM/BMO managers under supervisord, install CRDs and webhooks, and wait until every component is healthy. Safe to re-run. --mode kind: a kind cluster, clusterctl init, BMO in test mode, tuning patches; --offline: clusterctl's providers from files rendered from the Go module cache, and lab in cert-manager's place (its CRDs only; lab's CA issues the webhook certificates)."""
    if n_shards is not None:
        shards.check_count(n_shards)
    settings = config.load()
    # `is None` checks: an empty --mode or --tuning is bad input, not "the default".
    if mode is not None and mode not in management.MODES:
        raise typer.BadParameter("must be local or kind", param_hint="--mode")
    if tuning_profile is not None and tuning_profile not in tuning.PROFILES:
        raise UsageError(
            f"unknown tuning profile {tuning_profile!r}; use one of {', '.join(tuning.PROFILES)}"
        )
    stack = management.for_settings(settings, mode, bmo_source=bmo_source, offline=offline)
    if n_shards not in (None, 1) and not stack.local_backing:
        raise UsageError(f"--shards is for mode local: mode {stack.mode} runs one KCP manager")
    if stack.local_backing:  # the local stack runs on this host: check its limits first
        _preflight.for_up(settings, raise_limits)
    with err_console.status("lab up: starting") as spinner:

        def log(msg: str) -> None:
            spinner.update(f"lab up: {msg}")
            err_console.print(f"[dim]{time.strftime('%H:%M:%S')}[/dim] {msg}", highlight=False)

        result = stack.up(tuning_profile, log, n_shards)
    detail = "; ".join(result.done()) or "nothing to change"
    sharded = f", {result.n_shards} KCP shards" if result.n_shards > 1 else ""
    console.print(
        f"[green]{result.state}[/green] in {result.seconds:.1f}s (tuning {result.profile}{sharded}; {detail}); "
        f"kubeconfig: {stack.kubeconfig()}"
    )


@app.command("down")
@mutating
def down_cmd(
    purge: bool = typer.Option(False, "--purge", help="also delete etcd data, PKI, logs and run state"),
) -> None:
    """Stop every component of the stack (and supervisord); kind mode: delete the kind cluster this lab home created. The binary cache is always kept."""
    settings = config.load()
    was = management.for_settings(settings).down(purge)
    state = "stopped" if was else "was not running"
    console.print(f"stack {state}" + ("; data purged" if purge else ""))


#: supervisord programs of workload apiservers: one table row for all
_WORKLOAD_PREFIX = naming.WORKLOAD_PROGRAM_PREFIX


def _clusters(settings: config.Settings) -> tuple[list[ClusterInfo] | None, str | None]:
    """(clusters, None), or (None, why) when the management API does not answer."""
    from lab.clusters.inventory import list_clusters

    try:
        with mgmt.client(settings, attempts=2, timeout=10.0, parallel=1) as client:
            return list_clusters(settings, client), None
    except LabError as e:
        return None, str(e)


def _hosts(settings: config.Settings) -> dict[str, int] | None:
    """Standalone hosts (lab create-hosts) by BMO state; None when the management API does not answer."""
    from lab.hosts import inventory

    try:
        with mgmt.client(settings, attempts=2, timeout=10.0, parallel=1) as client:
            return inventory.by_state(inventory.read(settings, client))
    except LabError:
        return None


def _component_rows(rows: list[status.Row]) -> list[tuple[str, ...]]:
    """Table rows: one per component; the workload apiservers (wkl-<cluster>) in one row, RSS and CPU summed."""
    out: list[tuple[str, ...]] = []
    workload = [r for r in rows if r.name.startswith(_WORKLOAD_PREFIX)]
    for r in rows:
        if r.name.startswith(_WORKLOAD_PREFIX):
            continue
        healthy = "-" if r.healthy is None else ("[green]yes[/green]" if r.healthy else "[red]no[/red]")
        cpu = "-" if r.cpu_percent is None else f"{r.cpu_percent:.1f}"
        out.append(
            (
                r.name,
                r.state,
                str(r.pid or "-"),
                _human_secs(r.uptime_s),
                _human_bytes(r.rss_bytes),
                cpu,
                healthy,
            )
        )
    if workload:
        states = Counter(r.state for r in workload)
        rss = sum(r.rss_bytes or 0 for r in workload)
        cpu_total = sum(r.cpu_percent or 0.0 for r in workload)
        out.append(
            (
                f"wkl-* x{len(workload)}",
                ", ".join(f"{n} {s}" for s, n in sorted(states.items())),
                "-",
                "-",
                _human_bytes(rss),
                f"{cpu_total:.1f}",
                "-",
            )
        )
    return out


def _shards(k: int, rows: list[status.Row], clusters: list[ClusterInfo] | None) -> list[dict[str, object]]:
    """One entry per KCP shard (lab.shards): its manager program, state, health and how many
    clusters its label owns (None when the clusters are unknown). With one shard it owns them all."""
    by_name = {r.name: r for r in rows}
    out: list[dict[str, object]] = []
    for n in range(k):
        name = shards.program(n)
        row = by_name.get(name)
        owned = None
        if clusters is not None:
            owned = len(clusters) if k == 1 else sum(c.shard == n for c in clusters)
        out.append(
            {
                "shard": shards.label_value(n),
                "watch_filter": shards.label_value(n) if k > 1 else None,
                "manager": name,
                "state": row.state if row else None,
                "healthy": row.healthy if row else None,
                "clusters": owned,
            }
        )
    return out


def _print_shards(sharded: list[dict[str, object]], clusters: list[ClusterInfo]) -> None:
    """Nothing with one shard: the table already has kcp-manager."""
    if len(sharded) < 2:
        return
    unassigned = sum(c.shard is None for c in clusters)
    console.print(
        f"KCP shards: {len(sharded)}"
        + (f" ({unassigned} cluster(s) without a shard label yet)" if unassigned else ""),
        highlight=False,
    )
    for s in sharded:
        console.print(
            f"  {s['shard']}: {s['manager']} {s['state'] or 'not running'}, {s['clusters']} cluster(s)",
            highlight=False,
        )


@app.command("status")
def status_cmd(output: Output = OutputOption) -> None:
    """Each component (supervisor state, pid, uptime, RSS, CPU, health) and the workload clusters by phase."""
    from lab.clusters.inventory import by_phase

    settings = config.load()
    rows = management.for_settings(settings).status()
    clusters, why = _clusters(settings) if rows else (None, "stack is not running")
    hosts = _hosts(settings) if clusters is not None else None
    busy = lock.holder(settings)
    sharded = _shards(management.shards(settings), rows, clusters) if rows else []
    if output == Output.json:
        print_json(
            {
                "running": bool(rows),
                "lock": None if busy is None else {"pid": busy.pid, "command": busy.command()},
                "components": [r.as_dict() for r in rows],
                "clusters": None if clusters is None else [c.as_dict() for c in clusters],
                "clusters_by_phase": None if clusters is None else by_phase(clusters),
                "clusters_error": None if clusters is not None or not rows else why,
                "hosts_by_state": hosts,
                "shards": sharded,
            }
        )
        return
    if busy is not None:
        console.print(f"[yellow]busy:[/yellow] {busy.describe()}", highlight=False)
    if not rows:
        console.print("stack is not running (lab up starts it)")
        return
    table = Table(title=f"lab stack ({settings.home})")
    for col in ("component", "state", "pid", "uptime", "RSS", "CPU %", "healthy"):
        table.add_column(col, no_wrap=True)
    for row in _component_rows(rows):
        table.add_row(*row)
    console.print(table)
    for r in rows:
        if r.patched:
            console.print(f"patched: {r.name} runs {build.describe_patches(r.patched)}", highlight=False)
    if clusters is None:
        console.print(f"[red]clusters: unknown[/red] ({why})")
        return
    counts = {p: n for p, n in by_phase(clusters).items() if n}
    detail = ", ".join(f"{n} {p}" for p, n in counts.items())
    console.print(f"clusters: {len(clusters)}" + (f" ({detail})" if detail else ""))
    _print_shards(sharded, clusters)
    local = sum(c.backing == naming.LOCAL_BACKING for c in clusters)
    console.print(f"local backing: {local} of {settings.local_capacity} cluster(s)")
    if hosts:
        states = ", ".join(f"{n} {s}" for s, n in hosts.items())
        console.print(f"standalone hosts: {sum(hosts.values())} ({states})")


@app.command("kubeconfig")
def kubeconfig_cmd(
    cluster: str = typer.Argument(None, help="a workload cluster; default: the management cluster"),
) -> None:
    """Print a kubeconfig: the management cluster's, or one workload cluster's."""
    settings = config.load()
    if cluster is not None:  # an empty name is bad input, not the management cluster
        from lab import pki

        path = pki.cluster_pki_dir(settings, pki.check_cluster_name(cluster)) / "admin.kubeconfig"
    else:
        path = management.for_settings(settings).kubeconfig()
    try:
        text = path.read_text()  # not is_file() first: a delete may remove it in between
    except OSError:
        what = f"cluster {cluster}" if cluster else "the management cluster (run lab up)"
        raise LabError(f"no kubeconfig for {what}: {path} does not exist") from None
    sys.stdout.write(text)


@app.command("tune")
@mutating
def tune_cmd(
    profile: str = typer.Option(..., "--profile", help=f"one of {', '.join(tuning.PROFILES)}"),
    output: Output = OutputOption,
) -> None:
    """Set the concurrency and QPS/burst flags of the managers from a version-aware profile; restarts the affected managers when the stack runs."""
    settings = config.load()
    stack = management.for_settings(settings)
    restarted = stack.tune(profile, lambda m: err_console.print(m, highlight=False))
    flags = tuning.describe(settings, profile)
    if output == Output.json:
        print_json({"profile": profile, "restarted": restarted, "flags": [list(f) for f in flags]})
        return
    table = Table(title=f"tuning profile {profile}")
    for col in ("component", "flag", "upstream default", "value"):
        table.add_column(col)
    for row in flags:
        table.add_row(*row)
    if flags:
        console.print(table)
    console.print(f"profile {profile} stored; restarted: {', '.join(restarted) or 'none'}")
