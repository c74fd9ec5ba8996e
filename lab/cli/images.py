"""`lab images build`: kind mode's container images from lab's own builds, never pulled."""

from __future__ import annotations

import typer
from rich.table import Table

from lab import config, engine, images, images_node
from lab.cli._output import Output, OutputOption, console, err_console, print_json
from lab.cli.app import app
from lab.errors import UsageError
from lab.runtime import lock

images_app = typer.Typer(
    no_args_is_help=True, help="Container images for kind mode, built from the pinned sources."
)
app.add_typer(images_app, name="images")


def _show_listing(settings: config.Settings, output: Output) -> None:
    rows = [*images.listing(settings), images_node.listing_row(settings)]
    if output == Output.json:
        print_json(rows)
        return
    table = Table(title=f"images (archives: {settings.images_dir})")
    for col in ("image", "reference", "binary", "archive", "size"):
        table.add_column(col)
    for r in rows:
        size = r["bytes"]
        table.add_row(
            str(r["name"]),
            str(r["reference"]),
            "[green]cached[/]" if r["binary_cached"] else "[yellow]to build[/]",
            "[green]yes[/]" if r["archive"] else "[yellow]no[/]",
            f"{size / 2**20:.0f} MiB" if isinstance(size, int) else "-",
        )
    console.print(table)


@images_app.command("build")
def build_cmd(
    names: list[str] = typer.Argument(
        None, help="images to build; default: every controller image, not the node image (see --list)"
    ),
    list_: bool = typer.Option(False, "--list", help="show images, their references and what is cached"),
    output: Output = OutputOption,
) -> None:
    """Build the controller images kind mode runs (CAPI, CABPK, KCP, CAPM3, IPAM, BMO) into the engine
    at DOCKER_HOST, tagged as the upstream manifests name them, and save each as an archive under
    <home>/images; a second run with the same binaries builds nothing. `node`: kind's node image for
    the pinned Kubernetes (kindest/node:<version>) with the control-plane images kubeadm expects inside,
    from lab's builds and a debootstrap root (minutes cold, the Go builds aside)."""
    settings = config.load()
    known = [*images.IMAGES, images_node.NAME]
    unknown = [n for n in names or [] if n not in known]
    if unknown:
        raise UsageError(f"unknown image {', '.join(unknown)}; known: {', '.join(known)}")
    if list_:
        _show_listing(settings, output)
        return
    client = engine.Client()
    with lock.hold(settings):
        log = lambda m: err_console.print(m, highlight=False, soft_wrap=True)  # noqa: E731
        controllers = [n for n in names or [] if n != images_node.NAME]
        results = []
        if controllers or not names:
            results = images.build_images(settings, controllers, client, log)
        if images_node.NAME in (names or []):
            results.append(images_node.build_result(settings, client, log))
    if output == Output.json:
        print_json([r.__dict__ for r in results])
        return
    table = Table(title=f"images in {client.host}")
    for col in ("image", "reference", "done", "time", "archive"):
        table.add_column(col)
    for r in results:
        table.add_row(r.name, r.reference, r.action, f"{r.seconds:.1f}s", r.archive)
    console.print(table)
