"""`lab scale-clusters`: thin: parse, check, call lab.clusters.scale, print."""

from __future__ import annotations

import typer

from lab import config, naming
from lab.cli._lock import mutating
from lab.cli._output import Output, OutputOption, check_parallel, check_timeout, err_console, print_json
from lab.cli.app import app
from lab.errors import LabError, UsageError
from lab.manifests import workers

MAX_LISTED = 20


def targets(
    start: int | None, count: int | None, all_: bool, max_index: int, verb: str = "scales"
) -> list[int] | None:
    """Pure: the cluster indexes a command line asks for; None means every cluster (--all)."""
    if all_:
        if start is not None or count is not None:
            raise UsageError(f"--all {verb} every cluster: it takes no --start or --count")
        return None
    if count is None:
        raise UsageError("say which clusters: --start S --count N, or --all")
    return list(naming.check_range(1 if start is None else start, count, max_index))


@app.command("scale-clusters")
@mutating
def scale_clusters_cmd(
    n_workers: int = typer.Option(
        ...,
        "--workers",
        help=f"worker hosts and MachineDeployment replicas per cluster (0..{workers.MAX_WORKERS})",
    ),
    start: int = typer.Option(None, "--start", help="index of the first cluster (with --count)"),
    count: int = typer.Option(None, "--count", help="how many clusters from --start (default start 1)"),
    all_: bool = typer.Option(False, "--all", help="every cluster of this lab"),
    parallel: int = typer.Option(10, "--parallel", help="clusters converged at once (batch size)"),
    timeout: float = typer.Option(1800.0, "--timeout", help="seconds to wait in all"),
    output: Output = OutputOption,
) -> None:
    """Scale existing clusters to W workers: up renders the missing hosts and raises the MachineDeployment's replicas; down lowers them, waits for the Machines to go (CAPM3 has BMO deprovision their hosts) and deletes the surplus hosts."""
    settings = config.load()
    workers.check_count(n_workers)
    indexes = targets(start, count, all_, settings.max_index)
    check_parallel(parallel)
    check_timeout(timeout)
    from lab.clusters.scale import ScalePlan, scale_clusters
    from lab.stack import mgmt

    def planned(plan: ScalePlan) -> None:
        err_console.print(f"{len(plan.names)} cluster(s): {plan.summary()}")

    client = mgmt.client(settings, parallel=max(parallel, 4))
    with client:
        result = scale_clusters(
            settings,
            client,
            indexes,
            n_workers,
            parallel=parallel,
            timeout=timeout,
            on_plan=planned,
            say=lambda m: err_console.print(m, highlight=False),
        )
    if output == Output.json:
        print_json(result.as_dict())
    else:
        runs = ", ".join(f"{d} run {r}" for d, r in result.runs.items()) or "nothing to do"
        err_console.print(
            f"{runs}: {len(result.done)} of {len(result.plan.up) + len(result.plan.down)} at "
            f"{n_workers} workers after {result.seconds:.0f}s"
        )
        for name, why in list(result.stuck.items())[:MAX_LISTED]:
            err_console.print(f"  stuck {name}: {why}")
    if result.stuck:
        raise LabError(f"{len(result.stuck)} cluster(s) not scaled within {timeout:.0f}s (see above)")
