"""`lab build`: compile the pinned upstream binaries into the lab home's cache."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from lab import build, config
from lab.cli._output import Output, OutputOption, console, print_json
from lab.cli.app import app
from lab.errors import UsageError
from lab.runtime import lock


def _listing(settings: config.Settings) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for name, t in build.TARGETS.items():
        info = build.build_info(settings, name)
        cached = build.is_cached(settings, name)
        path = build.binary_path(settings, name)
        rows.append(
            {
                "name": name,
                "component": t.component,
                "version": build.target_version(settings, t),
                "package": t.package,
                "cached": cached,
                "path": str(path),
                "build_seconds": info.get("seconds"),
                "bytes": path.stat().st_size if cached else None,
                "patches": build.default_patches(settings, name).names,
                "patch_digest": build.default_patches(settings, name).digest or None,
            }
        )
    return rows


def _show_listing(settings: config.Settings, output: Output) -> None:
    """`lab build --list`: every target, its pinned version and what the cache holds."""
    rows = _listing(settings)
    if output == Output.json:
        print_json(rows)
        return
    table = Table(title=f"build targets (cache: {settings.bin_dir})")
    for col in ("target", "version", "package", "patched", "cached", "built in", "size"):
        table.add_column(col)
    for r in rows:
        secs, size, patches = r["build_seconds"], r["bytes"], r["patches"]
        table.add_row(
            str(r["name"]),
            str(r["version"]),
            str(r["package"]),
            _patched(patches, r["patch_digest"]),
            "[green]yes[/]" if r["cached"] else "[yellow]no[/]",
            f"{secs:.0f}s" if isinstance(secs, float | int) else "-",
            f"{size / 2**20:.0f} MiB" if isinstance(size, int) else "-",
        )
    console.print(table)


def _patched(patches: object, digest: object) -> str:
    """`name, name (digest)`, or `-` for an upstream build."""
    if not isinstance(patches, list) or not patches:
        return "-"
    return f"{', '.join(map(str, patches))} ({digest})"


def _build_all(
    settings: config.Settings, todo: list[str], transient: bool, patches: build.Patches | None
) -> list[dict[str, object]]:
    """Build `todo` one after another under a progress bar; one result row per target."""
    results: list[dict[str, object]] = []
    if not todo:
        return results
    build.check_go()
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
        transient=transient,
    ) as progress:
        overall = progress.add_task("all targets", total=len(todo))
        for n in todo:
            version = build.target_version(settings, n)
            task = progress.add_task(f"{n} {version}", total=1)
            started = time.monotonic()
            build.build(settings, n, patches=patches)
            secs = time.monotonic() - started
            progress.update(task, completed=1, description=f"{n} {version} [green]built[/]")
            progress.advance(overall)
            results.append(_row(settings, n, patches, round(secs, 1), cached=False))
    return results


@app.command("build")
def build_cmd(
    names: list[str] = typer.Argument(
        None, help="targets to build; default: all but the kind node image's (see --list)"
    ),
    list_: bool = typer.Option(False, "--list", help="show targets, versions and what is cached"),
    patch: list[Path] = typer.Option(
        None,
        "--patch",
        help="apply this unified diff (repeatable, in order) instead of patches/<component>/*.patch",
    ),
    output: Output = OutputOption,
) -> None:
    """Build the pinned upstream binaries (etcd, Kubernetes, CAPI, CAPM3, IPAM, BMO) that are missing.

    Each target gets its patches (patches/<component>/*.patch, then patches/<target>/*.patch, or
    the --patch files) applied to a copy of its module first; the cache keeps every patched variant
    apart, by the patches' digest. Builds run one after another (go build already uses every core;
    GOFLAGS such as -p are honoured). Logs: <home>/logs/build/<name>-<version>.log.
    """
    settings = config.load()
    unknown = [n for n in names or [] if n not in build.TARGETS]
    if unknown:  # with --list too: 'build --list nosuch' must not look like a listing of nosuch
        raise UsageError(f"unknown build target {', '.join(unknown)}; known: {', '.join(build.TARGETS)}")
    if patch and not names:
        raise UsageError("--patch needs the targets to build with it (lab build NAME --patch FILE)")
    patches = build.given_patches(patch) if patch else None
    if patches is None:
        build.check_patch_dirs(settings)
    if list_:
        _show_listing(settings, output)
        return
    wanted = names or [n for n, t in build.TARGETS.items() if t.default]
    with lock.hold(settings):
        _build(settings, wanted, output, patches)


def _row(
    settings: config.Settings, name: str, patches: build.Patches | None, seconds: float, cached: bool
) -> dict[str, object]:
    used = build.default_patches(settings, name) if patches is None else patches
    return {
        "name": name,
        "path": str(build.binary_path(settings, name, used)),
        "seconds": seconds,
        "cached": cached,
        "patches": used.names,
        "patch_digest": used.digest or None,
    }


def _build(
    settings: config.Settings, wanted: list[str], output: Output, patches: build.Patches | None
) -> None:
    todo = [n for n in wanted if not build.is_cached(settings, n, patches)]
    results = [_row(settings, n, patches, 0.0, cached=True) for n in wanted if n not in todo]
    results += _build_all(settings, todo, transient=output == Output.json, patches=patches)
    if output == Output.json:
        print_json(results)
        return
    table = Table(title="binaries")
    for col in ("target", "time", "patched", "path"):
        table.add_column(col)
    for r in results:
        secs = r["seconds"]
        when = "cached" if r["cached"] else f"{secs:.0f}s"
        table.add_row(str(r["name"]), when, _patched(r["patches"], r["patch_digest"]), str(r["path"]))
    console.print(table)
