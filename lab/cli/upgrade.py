"""`lab upgrade-clusters`: thin: parse, check, call lab.clusters.upgrade, print."""

from __future__ import annotations

import typer

from lab import config, versions
from lab.cli._lock import mutating
from lab.cli._output import Output, OutputOption, check_parallel, check_timeout, err_console, print_json
from lab.cli.app import app
from lab.cli.scale import MAX_LISTED, targets
from lab.errors import LabError


@app.command("upgrade-clusters")
@mutating
def upgrade_clusters_cmd(
    to: str = typer.Option(..., "--to", help="the Kubernetes version vX.Y.Z to upgrade to"),
    start: int = typer.Option(None, "--start", help="index of the first cluster (with --count)"),
    count: int = typer.Option(None, "--count", help="how many clusters from --start (default start 1)"),
    all_: bool = typer.Option(False, "--all", help="every cluster of this lab"),
    parallel: int = typer.Option(10, "--parallel", help="clusters applied at once (batch size)"),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="wait until every rollout is done"),
    timeout: float = typer.Option(1800.0, "--timeout", help="seconds to wait in all"),
    output: Output = OutputOption,
) -> None:
    """Upgrade clusters' control planes to --to through KCP's rolling update: a spare control-plane host per cluster for the new Machine, the old Machine and host removed after."""
    settings = config.load()
    versions.check_upgrade(settings.versions.kubernetes, to, settings.versions.capi)
    indexes = targets(start, count, all_, settings.max_index, verb="upgrades")
    check_parallel(parallel)
    check_timeout(timeout)
    from lab.clusters.upgrade import UpgradePlan, upgrade_clusters
    from lab.stack import mgmt

    def planned(plan: UpgradePlan) -> None:
        err_console.print(f"{len(plan.names)} cluster(s): {plan.summary()}")

    client = mgmt.client(settings, parallel=max(parallel, 4))
    with client:
        result = upgrade_clusters(
            settings,
            client,
            indexes,
            to,
            parallel=parallel,
            wait=wait,
            timeout=timeout,
            on_plan=planned,
            say=lambda m: err_console.print(m, highlight=False),
        )
    if output == Output.json:
        print_json(result.as_dict())
    else:
        run = f"run {result.run}" if result.run is not None else "nothing to do"
        if wait:
            err_console.print(
                f"{run}: {len(result.done)} of {len(result.plan.todo)} at {to} after {result.seconds:.0f}s"
            )
        else:
            err_console.print(
                f"{run}: {len(result.plan.todo)} rollout(s) started; re-run with --wait to finish"
            )
        for name, why in list(result.stuck.items())[:MAX_LISTED]:
            err_console.print(f"  stuck {name}: {why}")
    if result.stuck:
        raise LabError(f"{len(result.stuck)} cluster(s) not upgraded within {timeout:.0f}s (see above)")
