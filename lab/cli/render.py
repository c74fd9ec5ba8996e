"""`lab render`: print the objects of workload clusters without touching any cluster."""

from __future__ import annotations

import re
import sys
from enum import StrEnum

import typer

from lab import config, naming, render
from lab.cli.app import app
from lab.errors import UsageError
from lab.manifests import serialize


class RenderFormat(StrEnum):
    yaml = "yaml"
    json = "json"


def _whole_number(what: str, text: str) -> int:
    # Parsed here, not by click: click's own errors are a multi-line box, lab's are one line. ASCII
    # digits only: int() would also take "1_000" and non-ASCII digits.
    if not re.fullmatch(r"[+-]?[0-9]+", text.strip()):
        raise UsageError(f"{what} must be a whole number, got {text!r}")
    return int(text)


@app.command(
    "render",
    # Lets "-1" reach INDEX as a value, so it gets lab's one-line range error instead of "no such option".
    context_settings={"ignore_unknown_options": True},
)
def render_cmd(
    index: str = typer.Argument(
        ..., metavar="INDEX", help="index of the first cluster (test-INDEX)", show_default=False
    ),
    count: str = typer.Option("1", "--count", "-n", metavar="N", help="how many consecutive clusters"),
    output: RenderFormat = typer.Option(
        RenderFormat.yaml, "--output", "-o", help="yaml stream or a JSON v1 List"
    ),
) -> None:
    """Print the management-cluster objects of clusters INDEX..INDEX+N-1, ready for `kubectl apply -f -`.

    No cluster is touched. The lab home gets the shared etcd CA and each cluster's PKI, which the objects
    embed; `lab delete-clusters --all` removes the PKI of clusters that no namespace uses.
    """
    settings = config.load()
    indexes = naming.check_range(
        _whole_number("INDEX", index), _whole_number("--count", count), settings.max_index
    )
    render.check_local(settings)
    ca = render.etcd_ca(settings)
    objects = [obj for i in indexes for obj in render.local_objects(settings, i, ca)]
    sys.stdout.write(
        serialize.to_json(objects) if output == RenderFormat.json else serialize.to_yaml(objects)
    )
