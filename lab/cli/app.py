"""The typer application that every lab.cli.<area> module adds its commands to."""

import typer

import lab

app = typer.Typer(
    name="lab",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"lab {lab.__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="print lab's version"
    ),
) -> None:
    """Stand up a Cluster API + Metal3 scale lab, drive it, and measure it.

    Settings come from LAB_* environment variables and lab.yaml; state lives in LAB_HOME.
    """
