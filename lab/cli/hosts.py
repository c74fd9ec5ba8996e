"""`lab create-hosts`, `lab delete-hosts`: thin: parse, check, call lab.hosts, show progress, print."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from lab import config, naming
from lab.cli._lock import mutating
from lab.cli._output import Output, OutputOption, check_timeout, err_console, phase_progress, print_json
from lab.cli.app import app
from lab.errors import LabError, UsageError
from lab.manifests.hosts import HostState
from lab.phases import Phase, RunKind, run_phases

if TYPE_CHECKING:
    from rich.progress import TaskID

    from lab.hosts.create import Plan as CreatePlan
    from lab.hosts.delete import Plan as DeletePlan

#: Hosts listed by name at the end; the rest are counted.
MAX_LISTED = 20


class ProgressDisplay:
    """One bar per phase of the run: how many hosts have reached it."""

    def __init__(self, phases: tuple[Phase, ...], enabled: bool) -> None:
        self.phases = phases
        self.progress = phase_progress(enabled)
        self.tasks: dict[Phase, TaskID] = {}

    def planned(self, plan: CreatePlan | DeletePlan) -> None:
        total = len(plan.indexes)
        err_console.print(plan.summary())
        for p in self.phases:
            self.tasks[p] = self.progress.add_task(p.value, total=total)
        self.progress.start()  # only now: an error in planning stays one line

    def update(self, counts: dict[Phase, int]) -> None:
        for p, task in self.tasks.items():
            self.progress.update(task, completed=counts.get(p, 0))

    def stop(self) -> None:
        if self.progress.live.is_started:  # stopping an unstarted bar prints an empty line
            self.progress.stop()


def _listed(what: str, items: dict[str, str]) -> None:
    for name, why in list(items.items())[:MAX_LISTED]:
        err_console.print(f"  {what} {name}: {why}")
    if len(items) > MAX_LISTED:
        err_console.print(f"  ... and {len(items) - MAX_LISTED} more")


@app.command("create-hosts")
@mutating
def create_hosts_cmd(
    count: int = typer.Argument(..., help="how many hosts"),
    start: int = typer.Option(
        1, "--start", help="index of the first host: --start 101 creates <prefix>-bmh-101.."
    ),
    state: HostState = typer.Option(
        HostState.provisioned,
        "--state",
        help="available: registered and inspected; provisioned: with an image",
    ),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="wait until every host reaches --state"),
    timeout: float = typer.Option(600.0, "--timeout", help="seconds --wait waits in all"),
    output: Output = OutputOption,
) -> None:
    """Create standalone BareMetalHosts <prefix>-bmh-<start>.. (with BMC secrets) in namespace <prefix>-hosts; BMO in test mode takes them to --state."""
    settings = config.load()
    indexes = naming.check_range(start, count, settings.max_index, "hosts")
    check_timeout(timeout)
    from lab.hosts.create import create_hosts
    from lab.stack import mgmt

    display = ProgressDisplay(
        run_phases(RunKind.create_hosts, {"state": state.value}), output == Output.table
    )
    with mgmt.client(settings, parallel=8) as client:
        try:
            result = create_hosts(settings, client, list(indexes), state, display, wait=wait, timeout=timeout)
        finally:
            display.stop()
    if output == Output.json:
        print_json(result.as_dict())
    else:
        what = f"{len(result.done)} of {len(result.plan.indexes)} {state}" if wait else "objects applied"
        err_console.print(f"run {result.run_id}: {result.plan.summary()}; {what} after {result.seconds:.0f}s")
        _listed("stuck", result.stuck)
    if result.stuck:
        raise LabError(
            f"{len(result.stuck)} host(s) not {state} within {timeout:.0f}s (see above; lab report --run {result.run_id})"
        )


@app.command("delete-hosts")
@mutating
def delete_hosts_cmd(
    start: int = typer.Option(None, "--start", help="index of the first host (with --count)"),
    count: int = typer.Option(None, "--count", help="how many hosts from --start"),
    all_: bool = typer.Option(False, "--all", help="every standalone host of this lab, and their namespace"),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="wait until nothing of them remains"),
    timeout: float = typer.Option(600.0, "--timeout", help="seconds --wait waits in all"),
    output: Output = OutputOption,
) -> None:
    """Delete standalone BareMetalHosts (BMO deprovisions them), their secrets, and the namespace once empty; deleting what does not exist is not an error, re-running finishes an interrupted delete."""
    settings = config.load()
    if all_:
        if start is not None or count is not None:
            raise UsageError("--all deletes every host: it takes no --start or --count")
        indexes = None
    elif count is None:
        raise UsageError("say which hosts: --start S --count N, or --all")
    else:
        indexes = list(naming.check_range(1 if start is None else start, count, settings.max_index, "hosts"))
    check_timeout(timeout)
    from lab.hosts.delete import delete_hosts
    from lab.stack import mgmt

    display = ProgressDisplay(run_phases(RunKind.delete_hosts), output == Output.table)
    with mgmt.client(settings, parallel=8) as client:
        try:
            result = delete_hosts(settings, client, indexes, display, wait=wait, timeout=timeout)
        finally:
            display.stop()
    if output == Output.json:
        print_json(result.as_dict())
    elif result.run_id is None:
        err_console.print("nothing to delete")
    else:
        n = len(result.plan.indexes)
        what = f"{len(result.deleted)} of {n} deleted" if wait else "deletion requested"
        err_console.print(f"run {result.run_id}: {result.plan.summary()}; {what} after {result.seconds:.0f}s")
        _listed("pending", result.pending)
    if wait and result.pending:
        raise LabError(
            f"{len(result.pending)} host(s) not deleted within {timeout:.0f}s "
            f"(see above; re-run to finish; lab report --run {result.run_id})"
        )
