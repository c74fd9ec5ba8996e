"""`lab engine start|stop`: a Docker engine for kind mode with every path in one directory."""

from __future__ import annotations

from pathlib import Path

import typer

from lab import config, engine
from lab.cli._output import err_console
from lab.cli.app import app
from lab.runtime import lock

engine_app = typer.Typer(
    no_args_is_help=True,
    help="A Docker engine for kind mode, on hosts with docker.io installed but not started.",
)
app.add_typer(engine_app, name="engine")

DirOption = typer.Option(None, "--dir", help="the engine's directory; default <home>/engine")


def _log(message: str) -> None:
    err_console.print(message, highlight=False, soft_wrap=True)


@engine_app.command("start")
def start_cmd(directory: Path = DirOption) -> None:
    """Start dockerd with its data root, exec root, socket, pid file and bridge under one directory,
    through lab's runc wrapper when this host's bounding set lacks a capability (CAP_SYS_RESOURCE).
    Prints the DOCKER_HOST to use."""
    settings = config.load()
    root = directory or settings.engine_dir
    with lock.hold(settings):
        layout, _pid = engine.start(root, _log)
    typer.echo(f"export DOCKER_HOST={layout.host}")


@engine_app.command("stop")
def stop_cmd(directory: Path = DirOption) -> None:
    """Stop that dockerd (and its containerd), remove its bridges and the iptables rules naming them;
    images and containers' data stay in the directory."""
    settings = config.load()
    root = directory or settings.engine_dir
    with lock.hold(settings):
        stopped = engine.stop(root, _log)
    _log(f"engine at {root} " + ("stopped" if stopped else "was not running"))
