"""`lab create-clusters`: thin: parse, check, call lab.clusters.session, show progress, print."""

from __future__ import annotations

import typer

from lab import config, management, naming
from lab.cli import _preflight
from lab.cli._lock import mutating
from lab.cli._output import (
    Output,
    OutputOption,
    check_parallel,
    check_timeout,
    err_console,
    phase_progress,
    print_json,
)
from lab.cli._preflight import RaiseLimitsOption
from lab.cli.app import app
from lab.clusters import create
from lab.errors import LabError, UsageError
from lab.manifests import payload, workers
from lab.phases import Phase, RunKind, run_phases

#: Stuck clusters listed by name on a timeout; the rest are counted.
MAX_LISTED = 20


class ProgressDisplay:
    """One bar per create phase: how many of the clusters have reached it."""

    def __init__(self, total: int, enabled: bool, n_workers: int = 0) -> None:
        self.total = total
        self.progress = phase_progress(enabled)
        order = run_phases(RunKind.create, {"workers": n_workers})
        self.tasks = {p: self.progress.add_task(p.value, total=total) for p in order}

    def planned(self, plan: create.Plan) -> None:
        err_console.print(
            f"clusters {plan.names[plan.indexes[0]]}..{plan.names[plan.indexes[-1]]}: {plan.summary()}"
        )
        self.progress.start()  # only now: an error in planning stays one line

    def update(self, counts: dict[Phase, int], _done: int, _total: int) -> None:
        for p, task in self.tasks.items():
            self.progress.update(task, completed=counts.get(p, 0))

    def message(self, text: str) -> None:
        err_console.print(text)


@app.command("create-clusters")
@mutating
def create_clusters_cmd(
    count: int = typer.Argument(..., help="how many clusters"),
    start: int = typer.Option(
        1, "--start", help="index of the first cluster: --start 101 creates test-101.."
    ),
    backing: list[str] = typer.Option(
        [], "--backing", help="backing to place clusters on (repeat to spread); default: local"
    ),
    parallel: int = typer.Option(10, "--parallel", help="clusters converged at once (batch size)"),
    payload_kb: int = typer.Option(
        0, "--payload-kb", help="KiB of files added to each KubeadmControlPlane (and bootstrap secret)"
    ),
    n_workers: int = typer.Option(
        0,
        "--workers",
        help=f"worker hosts and MachineDeployment replicas per cluster (0..{workers.MAX_WORKERS})",
    ),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="wait until every cluster is Available"),
    timeout: float = typer.Option(1800.0, "--timeout", help="seconds --wait waits in all"),
    raise_limits: bool = RaiseLimitsOption,
    output: Output = OutputOption,
) -> None:
    """Create workload clusters <prefix>-<start> .. and wait for them to become Available."""
    settings = config.load()
    indexes = naming.check_range(start, count, settings.max_index)
    check_parallel(parallel)
    check_timeout(timeout)
    payload.check_kb(payload_kb)
    workers.check_count(n_workers)
    stack = management.for_settings(settings)
    if not stack.local_backing and not backing:
        raise UsageError(f"mode {stack.mode} has no local backing: name one with --backing")
    from lab.backing import check_name, check_reachable
    from lab.clusters.session import create_clusters
    from lab.stack import mgmt

    for b in backing:
        check_name(b)
    check_reachable(settings, backing, stack.mode)
    client = mgmt.client(settings, parallel=max(parallel, 4))
    display = ProgressDisplay(count, enabled=output == Output.table, n_workers=n_workers)
    with client:
        try:
            result = create_clusters(
                settings,
                client,
                list(indexes),
                backing,
                display,
                parallel=parallel,
                wait=wait,
                timeout=timeout,
                preflight=lambda p: _preflight.for_create(settings, p.placement, p.new, raise_limits),
                payload_kb=payload_kb,
                n_workers=n_workers,
            )
        finally:
            if display.progress.live.is_started:  # stopping an unstarted bar prints an empty line
                display.progress.stop()
    if output == Output.json:
        print_json(result.as_dict())
    else:
        p = result.plan
        what = f"{len(result.done)} of {len(p.indexes)} Available" if wait else "objects applied"
        err_console.print(f"run {result.run_id}: {p.summary()}; {what} after {result.seconds:.0f}s")
        for name, why in list(result.stuck.items())[:MAX_LISTED]:
            err_console.print(f"  stuck {name}: {why}")
        if len(result.stuck) > MAX_LISTED:
            err_console.print(f"  ... and {len(result.stuck) - MAX_LISTED} more")
    if result.stuck:
        raise LabError(
            f"{len(result.stuck)} cluster(s) not Available within {timeout:.0f}s (see above; lab report --run {result.run_id})"
        )
