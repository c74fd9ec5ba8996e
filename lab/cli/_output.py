"""Shared output helpers for commands: one --output option, JSON to stdout, tables via rich."""

from __future__ import annotations

import json
import math
import sys
from enum import StrEnum
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

console = Console()
err_console = Console(stderr=True)


class Output(StrEnum):
    table = "table"
    json = "json"


OutputOption = typer.Option(Output.table, "--output", "-o", help="table for people, json for scripts")


def check_parallel(parallel: int) -> None:
    """--parallel is at least 1: the batch size of create, scale and upgrade."""
    from lab.errors import UsageError

    if parallel < 1:
        raise UsageError(f"--parallel must be at least 1, got {parallel}")


def check_timeout(timeout: float) -> None:
    """--timeout is a finite number of seconds above 0: click's float takes nan and inf, and
    `nan <= 0` is False, so a plain comparison would let them through to a run that never ends."""
    from lab.errors import UsageError

    if not (math.isfinite(timeout) and timeout > 0):
        raise UsageError(f"--timeout must be a positive number of seconds, got {timeout}")


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, sort_keys=False, default=str)
    sys.stdout.write("\n")


def phase_progress(enabled: bool) -> Progress:
    """The bars of create and delete runs: one per phase, clusters that reached it, on stderr."""
    return Progress(
        TextColumn("{task.description:<18}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        disable=not enabled,
    )
