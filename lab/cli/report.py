"""`lab report`: the timing report of one recorded run."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

import typer

from lab import config, records, report
from lab.cli._output import err_console, print_json
from lab.cli.app import app
from lab.errors import LabError, UsageError


class Format(StrEnum):
    md = "md"
    json = "json"


@app.command("report")
def report_cmd(
    run: int = typer.Option(
        None, "--run", min=1, help="run id (see the report header); default: the latest run"
    ),
    fmt: Format = typer.Option(
        Format.md, "--format", help="md: GitHub Markdown tables; json: the full model"
    ),
    plot: Path = typer.Option(
        None, "--plot", help="also write a PNG: clusters done over time, phase latencies"
    ),
    batch: int = typer.Option(
        report.DEFAULT_BATCH, "--batch", min=1, help="clusters per row of the scaling table"
    ),
) -> None:
    """Scaling table, per-phase p50/p90/p99/max (per BMO state for hosts), component RSS/CPU and metrics of a create or delete run."""
    settings = config.load()
    if plot is not None and plot.is_dir():  # --plot "" is "." too
        raise UsageError(f"--plot takes a file name; {str(plot)!r} is a directory")
    with records.open_records(settings, create=False) as db:
        if not db.runs():
            raise LabError(f"no runs recorded yet in {settings.db_path}; run lab create-clusters first")
        chosen = db.run(run)
        events = db.events(chosen.id)
        model = report.build(
            chosen,
            events,
            db.samples(chosen.id),
            batch_size=batch,
            metric_samples=db.metric_samples(chosen.id),
        )
    if plot is not None:
        from lab.plot import render_png

        try:
            render_png(model, report.latencies(chosen.kind, events, chosen.settings), plot)
        except OSError as e:
            raise LabError(f"cannot write the plot to {plot}: {e.strerror or e}") from None
        err_console.print(f"plot written to {plot}")
    if fmt == Format.json:
        print_json(model.as_dict())
    else:
        typer.echo(report.to_markdown(model), nl=False)
