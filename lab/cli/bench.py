"""`lab bench`: does this tuning help, in one command. For each repeat, for each profile in turn on
the same stack: `lab tune`, create N clusters and wait, delete them and wait; then the comparison
of every profile's create and delete runs with the first profile's (lab.compare)."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import typer

from lab import compare, config, management, naming, records, tuning
from lab.cli import _preflight
from lab.cli._lock import mutating
from lab.cli._output import check_timeout, err_console, print_json
from lab.cli.app import app
from lab.cli.clusters import ProgressDisplay as CreateDisplay
from lab.cli.delete import ProgressDisplay as DeleteDisplay
from lab.errors import LabError, UsageError


class Format(StrEnum):
    md = "md"
    json = "json"


def _check(profiles: list[str]) -> None:
    if len(profiles) < 2:
        raise UsageError("name at least two profiles to compare: --profile A --profile B")
    if len(set(profiles)) != len(profiles):
        raise UsageError(f"each profile once: {', '.join(profiles)}")
    for p in profiles:
        if p not in tuning.PROFILES:
            raise UsageError(f"unknown tuning profile {p!r}; use one of {', '.join(tuning.PROFILES)}")


def _fresh(settings: config.Settings, plan: Any) -> None:
    """Every cluster of the range is new (a create that only converges existing ones measures
    nothing), and the host can carry them (the preflight of create-clusters)."""
    old = sorted(set(plan.indexes) - set(plan.new))
    if old:
        raise LabError(f"clusters {', '.join(plan.names[i] for i in old)} exist: delete them or pick --start")
    _preflight.for_create(settings, plan.placement, plan.new, False)


@app.command("bench")
@mutating
def bench_cmd(
    profile: list[str] = typer.Option(..., "--profile", help="tuning profile (repeat: the first is A)"),
    clusters: int = typer.Option(..., "--clusters", min=1, help="clusters per create run"),
    repeat: int = typer.Option(1, "--repeat", min=1, help="rounds over all profiles"),
    start: int = typer.Option(1, "--start", help="index of the first cluster"),
    timeout: float = typer.Option(1800.0, "--timeout", help="seconds each create and each delete waits"),
    fmt: Format = typer.Option(Format.md, "--format", help="md: the comparisons; json: runs and rows"),
) -> None:
    """Create -> wait -> delete N clusters per tuning profile on the same stack, then compare the runs."""
    settings = config.load()
    _check(profile)
    indexes = list(naming.check_range(start, clusters, settings.max_index))
    check_timeout(timeout)
    stack = management.for_settings(settings)
    if not stack.local_backing:
        raise UsageError(f"mode {stack.mode} has no local backing: lab bench creates on the local one")
    from lab.clusters.delete import delete
    from lab.clusters.session import create_clusters
    from lab.stack import mgmt

    names = [naming.cluster_name(settings.prefix, i) for i in indexes]
    done: dict[str, list[tuple[int, int]]] = {p: [] for p in profile}
    with mgmt.client(settings) as client:  # refused before the first `lab tune` changes anything
        taken = {
            ns["metadata"]["name"]
            for ns in client.list("v1", "Namespace", label_selector=naming.CLUSTER_LABEL)
        }
    if taken & set(names):
        exist = [n for n in names if n in taken]
        raise LabError(f"clusters {', '.join(exist)} exist: delete them or pick --start")
    before = management.tuning_profile(settings) or "default"
    try:
        for round_ in range(1, repeat + 1):
            for p in profile:
                err_console.print(f"round {round_}/{repeat}, profile {p}")
                stack.tune(p, lambda m: err_console.print(m, highlight=False))
                display = CreateDisplay(clusters, enabled=True)
                with mgmt.client(settings, parallel=10) as client:
                    try:
                        made = create_clusters(
                            settings,
                            client,
                            indexes,
                            [],
                            display,
                            timeout=timeout,
                            preflight=lambda plan: _fresh(settings, plan),
                        )
                    finally:
                        if display.progress.live.is_started:
                            display.progress.stop()
                    if made.stuck:
                        raise LabError(
                            f"profile {p}: {len(made.stuck)} cluster(s) not Available (run {made.run_id})"
                        )
                    shown = DeleteDisplay(enabled=True)
                    with shown.progress:
                        gone = delete(
                            settings,
                            client,
                            names,
                            timeout=timeout,
                            on_progress=shown.update,
                            on_plan=shown.planned,
                        )
                if gone.pending or gone.run_id is None or made.run_id is None:
                    raise LabError(
                        f"profile {p}: {len(gone.pending)} cluster(s) not deleted (run {gone.run_id})"
                    )
                done[p].append((made.run_id, gone.run_id))
                err_console.print(f"profile {p}: create run {made.run_id}, delete run {gone.run_id}")
    finally:  # the stack as bench found it (a failed round too)
        if management.tuning_profile(settings) != before:
            err_console.print(f"restoring profile {before}")
            stack.tune(before, lambda m: err_console.print(m, highlight=False))
    _report(settings, profile, done, fmt)


def _report(
    settings: config.Settings, profiles: list[str], done: dict[str, list[tuple[int, int]]], fmt: Format
) -> None:
    """Every other profile against the first, per round and per kind of run."""
    out: list[dict[str, Any]] = []
    text: list[str] = []
    with records.open_records(settings, create=False) as db:

        def data(run_id: int) -> compare.RunData:
            return compare.RunData(
                db.run(run_id), db.events(run_id), db.samples(run_id), db.metric_samples(run_id)
            )

        a = profiles[0]
        for b in profiles[1:]:
            for round_, (ra, rb) in enumerate(zip(done[a], done[b], strict=True), start=1):
                for kind, ia, ib in (("create", ra[0], rb[0]), ("delete", ra[1], rb[1])):
                    c = compare.compare(data(ia), data(ib))
                    out.append({"round": round_, "kind": kind, "a": a, "b": b, **c.as_dict()})
                    text.append(compare.to_markdown(c))
    if fmt == Format.json:
        print_json({"runs": done, "comparisons": out})
    else:
        typer.echo("\n".join(text), nl=False)
