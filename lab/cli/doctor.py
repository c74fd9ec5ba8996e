from __future__ import annotations

import typer
from rich.table import Table

from lab import config, doctor
from lab.cli import _preflight
from lab.cli._output import Output, OutputOption, console, print_json
from lab.cli.app import app


@app.command("doctor")
def doctor_cmd(
    mode: str = typer.Option(None, "--mode", help="local or kind; default: the configured mode"),
    output: Output = OutputOption,
) -> None:
    """Preflight: tools and their versions, host limits that bite at scale, what to change."""
    settings = config.load()
    # `is None`, not `or`: an empty --mode is bad input, not "the configured mode".
    chosen: str = settings.mode if mode is None else mode
    if chosen not in ("local", "kind"):
        raise typer.BadParameter("must be local or kind", param_hint="--mode")
    host, demand = _preflight.full_backing(settings) if chosen == "local" else (None, None)
    report = doctor.check(settings, chosen, host, demand)
    if output == Output.json:
        print_json(report.as_dict())
    else:
        _print_report(report, chosen)
    if not report.ok:
        raise typer.Exit(1)


def _print_report(report: doctor.Report, chosen: str) -> None:
    tools = Table(title=f"tools (mode {chosen})")
    for col in ("tool", "version", "needed", "status", "note"):
        tools.add_column(col)
    colour = {"ok": "green", "missing": "red", "unusable": "red", "absent": "dim"}
    for t in report.tools:
        c = colour[t.status] if t.required or t.status in ("ok", "absent") else "yellow"
        tools.add_row(t.name, t.version or "-", "yes" if t.required else "no", f"[{c}]{t.status}[/]", t.note)
    console.print(tools)
    limits = Table(title="host limits")
    for col in ("limit", "now", "recommended", "status", "to change"):
        limits.add_column(col)
    for lim in report.limits:
        limits.add_row(
            lim.name,
            lim.value,
            lim.recommended,
            "[green]ok[/]" if lim.ok else "[yellow]low[/]",
            "" if lim.ok else lim.fix,
        )
    console.print(limits)
    mem = (report.host["memory_bytes"] or 0) / 2**30
    console.print(f"host: {report.host['cpus']} CPUs, {mem:.1f} GiB memory")
    for backing, (fit, limit) in (report.room or {}).items():
        console.print(f"room for {fit} more {backing} cluster(s) (then: {limit})", highlight=False)
    if report.engine is not None:
        _print_engine(report.engine)
    missing = [t.name for t in report.tools if not t.ok]
    if missing:
        console.print(f"[red]missing for mode {chosen}:[/] {', '.join(missing)}")


def _print_engine(e: doctor.EngineCheck) -> None:
    """One line for the engine, one per workaround in effect and one per problem (soft_wrap: a
    problem stays one line however narrow the terminal)."""
    if e.reachable:
        console.print(
            f"engine: {e.host}: docker {e.version} (API {e.api_version}), cgroup v{e.cgroup_version}, "
            f"default runtime {e.default_runtime}",
            highlight=False,
            soft_wrap=True,
        )
    for w in e.workarounds:
        console.print(f"  [green]workaround applied:[/] {w}", highlight=False, soft_wrap=True)
    for p in e.problems:
        console.print(f"[red]engine:[/] {p}", highlight=False, soft_wrap=True)
