"""`lab up`, `lab down`, `lab status`, `lab kubeconfig`, `lab tune`: the local management stack."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import typer
from rich.table import Table

from lab import config, tuning
from lab.cli._output import Output, OutputOption, console, err_console, print_json
from lab.cli.app import app
from lab.errors import LabError
from lab.stack import mgmt, status, up


def _human_bytes(n: int | None) -> str:
    return "-" if n is None else f"{n / 2**20:.0f} MiB"


def _human_secs(s: float | None) -> str:
    if s is None:
        return "-"
    s = int(s)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


@app.command("up")
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
) -> None:
    """Start or converge the management stack: build what is missing, start etcd, kube-apiserver, kube-controller-manager and the CAPI/CAPM3/IPAM/BMO managers under supervisord, install CRDs and webhooks, and wait until every component is healthy. Safe to re-run. --mode kind: a kind cluster, clusterctl init, BMO in test mode, tuning patches."""
    settings = config.load()
    if (mode or settings.mode) not in ("local", "kind"):
        raise typer.BadParameter("must be local or kind", param_hint="--mode")
    if (mode or settings.mode) == "kind":
        from lab.cli.kindmgmt import up_kind

        return up_kind(settings, tuning_profile, bmo_source)
    with err_console.status("lab up: starting") as spinner:

        def log(msg: str) -> None:
            spinner.update(f"lab up: {msg}")
            err_console.print(f"[dim]{time.strftime('%H:%M:%S')}[/dim] {msg}", highlight=False)

        result = up.up(settings, tuning_profile, log)
    what = []
    if result.built:
        what.append(f"built {', '.join(result.built)}")
    if result.changed:
        what.append(f"started {', '.join(result.changed)}")
    if result.applied:
        what.append("applied CRDs and webhooks")
    detail = "; ".join(what) or "nothing to change"
    console.print(
        f"[green]healthy[/green] in {result.seconds:.1f}s (tuning {result.profile}; {detail}); "
        f"kubeconfig: {mgmt.admin_kubeconfig_path(settings)}"
    )


@app.command("down")
def down_cmd(
    purge: bool = typer.Option(False, "--purge", help="also delete etcd data, PKI, logs and run state"),
) -> None:
    """Stop every component of the stack (and supervisord). The binary cache is always kept."""
    settings = config.load()
    was = up.down(settings, purge)
    state = "stopped" if was else "was not running"
    console.print(f"stack {state}" + ("; data purged" if purge else ""))


@app.command("status")
def status_cmd(output: Output = OutputOption) -> None:
    """Each component: supervisor state, pid, uptime, RSS, CPU and health."""
    settings = config.load()
    rows = status.rows(settings)
    if output == Output.json:
        print_json({"running": bool(rows), "components": [r.as_dict() for r in rows]})
        return
    if not rows:
        console.print("stack is not running (lab up starts it)")
        return
    table = Table(title=f"lab stack ({settings.home})")
    for col in ("component", "state", "pid", "uptime", "RSS", "CPU %", "healthy"):
        table.add_column(col, no_wrap=True)
    for r in rows:
        healthy = "-" if r.healthy is None else ("[green]yes[/green]" if r.healthy else "[red]no[/red]")
        table.add_row(
            r.name,
            r.state,
            str(r.pid or "-"),
            _human_secs(r.uptime_s),
            _human_bytes(r.rss_bytes),
            "-" if r.cpu_percent is None else f"{r.cpu_percent:.1f}",
            healthy,
        )
    console.print(table)


@app.command("kubeconfig")
def kubeconfig_cmd(
    cluster: str = typer.Argument(None, help="a workload cluster; default: the management cluster"),
) -> None:
    """Print a kubeconfig: the management cluster's, or one workload cluster's."""
    settings = config.load()
    if cluster:
        from lab import pki

        path = pki.cluster_pki_dir(settings, pki.check_cluster_name(cluster)) / "admin.kubeconfig"
    else:
        path = mgmt.admin_kubeconfig_path(settings)
    if not path.is_file():
        what = f"cluster {cluster}" if cluster else "the management cluster (run lab up)"
        raise LabError(f"no kubeconfig for {what}: {path} does not exist")
    sys.stdout.write(path.read_text())


@app.command("tune")
def tune_cmd(
    profile: str = typer.Option(..., "--profile", help=f"one of {', '.join(tuning.PROFILES)}"),
    output: Output = OutputOption,
) -> None:
    """Set the concurrency and QPS/burst flags of the managers from a version-aware profile; restarts the affected managers when the stack runs."""
    settings = config.load()
    restarted = up.tune(settings, profile, lambda m: err_console.print(m, highlight=False))
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
