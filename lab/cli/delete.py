"""`lab delete-clusters`: thin: parse, check, call lab.clusters.delete, show progress, print."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from lab import config, naming
from lab.cli._lock import mutating
from lab.cli._output import Output, OutputOption, check_timeout, err_console, phase_progress, print_json
from lab.cli.app import app
from lab.errors import LabError, UsageError
from lab.phases import PHASES, Phase, RunKind

if TYPE_CHECKING:
    from rich.progress import TaskID

    from lab.clusters.delete import Plan

#: Clusters still pending listed by name at the end; the rest are counted.
MAX_LISTED = 20


def targets(start: int | None, count: int | None, all_: bool, settings: config.Settings) -> list[str] | None:
    """Pure: the cluster names a command line asks for; None means every cluster (--all).
    Raises UsageError for a bad combination or range, before anything is looked at."""
    if all_:
        if start is not None or count is not None:
            raise UsageError("--all deletes every cluster: it takes no --start or --count")
        return None
    if count is None:
        if start is not None:
            raise UsageError("--start needs --count: how many clusters from there")
        raise UsageError("say which clusters: --start S --count N, or --all")
    indexes = naming.check_range(1 if start is None else start, count, settings.max_index)
    return [naming.cluster_name(settings.prefix, i) for i in indexes]


class ProgressDisplay:
    """One bar per delete phase: how many clusters have reached it."""

    def __init__(self, enabled: bool) -> None:
        self.progress = phase_progress(enabled)
        self.tasks: dict[Phase, TaskID] = {}

    def planned(self, plan: Plan) -> None:
        total = len(plan.names)
        if total:
            err_console.print(plan.summary())
        for p in PHASES[RunKind.delete]:
            self.tasks[p] = self.progress.add_task(p.value, total=total)

    def update(self, counts: dict[Phase, int], _done: int, _total: int) -> None:
        for p, task in self.tasks.items():
            self.progress.update(task, completed=counts.get(p, 0))


@app.command("delete-clusters")
@mutating
def delete_clusters_cmd(
    start: int = typer.Option(None, "--start", help="index of the first cluster (with --count)"),
    count: int = typer.Option(None, "--count", help="how many clusters from --start (default start 1)"),
    all_: bool = typer.Option(
        False, "--all", help="every cluster of this lab, and leftovers of clusters whose namespace is gone"
    ),
    wait: bool = typer.Option(
        True, "--wait/--no-wait", help="wait until nothing of them remains (--no-wait: request and return)"
    ),
    timeout: float = typer.Option(1800.0, "--timeout", help="seconds --wait waits in all"),
    output: Output = OutputOption,
) -> None:
    """Delete workload clusters: Cluster (CAPI deprovisions the host), BareMetalHost, secrets, namespace, then the apiserver, etcd tenant and files. Deleting what does not exist is not an error; re-running finishes an interrupted delete."""
    settings = config.load()
    names = targets(start, count, all_, settings)
    check_timeout(timeout)
    from lab.clusters.delete import delete
    from lab.stack import mgmt

    client = mgmt.client(settings, parallel=8)
    display = ProgressDisplay(enabled=output == Output.table)
    with client, display.progress:
        result = delete(
            settings,
            client,
            names,
            wait=wait,
            timeout=timeout,
            on_progress=display.update,
            on_plan=display.planned,
        )
    if output == Output.json:
        print_json(result.as_dict())
    elif result.run_id is None:
        err_console.print("nothing to delete")
    else:
        what = f"{len(result.deleted)} of {len(result.plan.names)} deleted" if wait else "deletion requested"
        err_console.print(f"run {result.run_id}: {result.plan.summary()}; {what} after {result.seconds:.0f}s")
        for name, why in list(result.pending.items())[:MAX_LISTED] if wait else []:
            err_console.print(f"  pending {name}: {why}")
        if wait and len(result.pending) > MAX_LISTED:
            err_console.print(f"  ... and {len(result.pending) - MAX_LISTED} more")
    if wait and result.pending:
        raise LabError(
            f"{len(result.pending)} cluster(s) not deleted within {timeout:.0f}s "
            f"(see above; re-run to finish; lab report --run {result.run_id})"
        )
