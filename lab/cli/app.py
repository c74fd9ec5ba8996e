"""The typer application that every lab.cli.<area> module adds its commands to."""

import typer

app = typer.Typer(
    name="lab",
    help="Stand up a Cluster API + Metal3 scale lab, drive it, and measure it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)
