"""`lab report`: the timing report of one recorded run."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

import typer

from lab import bottleneck, config, records, report
from lab import compare as compare_mod
from lab import gates as gates_mod
from lab.cli._output import err_console, print_json
from lab.cli.app import app
from lab.errors import LabError, UsageError
from lab.phases import RunKind


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
    html: Path = typer.Option(
        None,
        "--html",
        help="also write one self-contained HTML file (tables and plots, nothing fetched) to attach to a PR",
    ),
    batch: int = typer.Option(
        report.DEFAULT_BATCH, "--batch", min=1, help="clusters per row of the scaling table"
    ),
    check: Path = typer.Option(
        None, "--check", help="gates (YAML): one line per violation and exit 1, exit 0 when all pass"
    ),
    compare: tuple[int, int] | None = typer.Option(
        None,
        "--compare",
        metavar="RUN_A RUN_B",
        help="two run ids side by side, with deltas and noise",
    ),
) -> None:
    """Scaling table, per-phase p50/p90/p99/max (per BMO state for hosts), component RSS/CPU, metrics and bottleneck of a create or delete run; --check gates it, --compare sets two runs side by side."""
    settings = config.load()
    _check_options(run, plot, html, check, compare)
    if compare is not None:
        _compare(settings, compare, fmt)
        return
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
        if check is not None:
            _check(check, model, db.samples(chosen.id))
            return
        found = bottleneck.analyse(chosen, events, db.metric_samples(chosen.id))
    if plot is not None:
        from lab.plot import render_png

        try:
            render_png(model, report.latencies(chosen.kind, events, chosen.settings), plot)
        except OSError as e:
            raise LabError(f"cannot write the plot to {plot}: {e.strerror or e}") from None
        err_console.print(f"plot written to {plot}")
    if html is not None:
        _write_html(model, found, html)
    if fmt == Format.json:
        print_json(model.as_dict() | {"bottleneck": found.as_dict()})
    else:
        typer.echo(
            report.to_markdown(model) + "\n" + "\n".join(bottleneck.to_markdown(found)) + "\n", nl=False
        )


def _check_options(
    run: int | None, plot: Path | None, html: Path | None, check: Path | None, compare: object
) -> None:
    """Usage errors, before the records are opened."""
    if compare is not None and (run is not None or check is not None or plot is not None):
        raise UsageError("--compare takes its two runs itself: drop --run, --check and --plot")
    if check is not None and plot is not None:
        raise UsageError("--check prints only the violations: drop --plot")
    if plot is not None and plot.is_dir():  # --plot "" is "." too
        raise UsageError(f"--plot takes a file name; {str(plot)!r} is a directory")
    if html is not None and html.is_dir():
        raise UsageError(f"--html takes a file name; {str(html)!r} is a directory")


def _check(path: Path, model: report.Report, samples: list[records.Sample]) -> None:
    """Exit 2 on a file that is not gates, 1 with one line per violation, 0 when all pass."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"cannot read gates file {path}: {getattr(e, 'strerror', None) or e}") from None
    try:
        gates = gates_mod.parse(text, RunKind(model.run["kind"]))
    except gates_mod.GateError as e:
        raise UsageError(f"{path}: {e}") from None
    violations = gates_mod.check(gates, model, samples)
    for line in violations:
        typer.echo(line)
    if violations:
        raise typer.Exit(1)
    err_console.print(f"run {model.run['id']}: all {gates.count} gates of {path} pass")


def _compare(settings: config.Settings, ids: tuple[int, int], fmt: Format) -> None:
    with records.open_records(settings, create=False) as db:
        data = [
            compare_mod.RunData(db.run(i), db.events(i), db.samples(i), db.metric_samples(i)) for i in ids
        ]
    try:
        result = compare_mod.compare(data[0], data[1])
    except compare_mod.CompareError as e:
        raise UsageError(str(e)) from None
    if fmt == Format.json:
        print_json(result.as_dict())
    else:
        typer.echo(compare_mod.to_markdown(result), nl=False)


def _write_html(model: report.Report, found: bottleneck.Bottleneck, path: Path) -> None:
    """Mode 0644: the page holds timings, versions and the command line, nothing secret."""
    from lab import report_html
    from lab.plot import svg_figures

    page = report_html.render(model, svg_figures(model), found)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(page, encoding="utf-8")
        path.chmod(0o644)
    except OSError as e:
        raise LabError(f"cannot write the HTML report to {path}: {e.strerror or e}") from None
    err_console.print(f"HTML report written to {path} ({len(page) // 1024} KiB)")
