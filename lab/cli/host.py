"""`lab host ...`: run ON a process backing host by the controller over SSH (lab.backing.process),
one command per batch. Files come as a tar on stdin; results go to stdout as JSON."""

from __future__ import annotations

import sys

import typer

from lab import config, pki
from lab.backing import host
from lab.cli._output import print_json
from lab.cli.app import app

host_app = typer.Typer(
    no_args_is_help=True,
    help="Host side of a process backing: what the controller runs on the host over ssh.",
)
app.add_typer(host_app, name="host")


def _stdin(read: bool) -> None:
    if read:
        host.unpack(config.load(), sys.stdin.buffer)


@host_app.command("up")
def up_cmd(
    tar: bool = typer.Option(True, "--tar/--no-tar", help="read the controller's files (a tar) on stdin"),
) -> None:
    """Start supervisord and the tenant etcd (auth on, root bootstrapped)."""
    _stdin(tar)
    host.up(config.load())
    print_json({"up": True})


@host_app.command("ensure")
def ensure_cmd(
    clusters: list[str] = typer.Argument(..., help="NAME:PORT of each cluster"),
    address: str = typer.Option(..., "--address", help="the host address the apiservers listen on"),
    tar: bool = typer.Option(True, "--tar/--no-tar", help="read the clusters' PKI (a tar) on stdin"),
) -> None:
    """Etcd tenant and a running apiserver for each cluster."""
    specs = [host.parse_cluster(c) for c in clusters]  # bad input fails before anything is written
    _stdin(tar)
    print_json(host.ensure(config.load(), address, specs))


@host_app.command("remove")
def remove_cmd(names: list[str] = typer.Argument(None, help="cluster names")) -> None:
    """Apiserver, etcd tenant and files of each cluster; what is gone already is fine."""
    for n in names or []:  # before host.remove starts supervisord
        pki.check_cluster_name(n)
    host.remove(config.load(), names or [])
    print_json(sorted(names or []))


@host_app.command("present")
def present_cmd() -> None:
    """Clusters of which anything (program, tenant, files) is on this host, as a JSON list."""
    print_json(host.present(config.load()))


@host_app.command("etcd-health")
def etcd_health_cmd(names: list[str] = typer.Argument(..., help="cluster names")) -> None:
    """Each cluster's tenant read with its own etcd client pair: name -> null (healthy) or why not."""
    for n in names:
        pki.check_cluster_name(n)
    print_json(host.tenant_health(config.load(), names))


@host_app.command("log")
def log_cmd(name: str = typer.Argument(..., help="cluster name")) -> None:
    """Last line of a cluster apiserver's log."""
    typer.echo(host.last_log_line(config.load(), pki.check_cluster_name(name)))


@host_app.command("down")
def down_cmd() -> None:
    """Stop supervisord and everything it runs; data stays."""
    print_json({"stopped": host.down(config.load())})


@host_app.command("mux-up")
def mux_up_cmd(
    address: str = typer.Option(..., "--address", help="the host address the clusters' listeners bind"),
) -> None:
    """Start lab-mux (installed by the playbook) under this host's supervisord; its health."""
    print_json(host.mux_up(config.load(), address))


@host_app.command("mux-ensure")
def mux_ensure_cmd(
    clusters: list[str] = typer.Argument(..., help="NAME:PORT of each cluster"),
    address: str = typer.Option(..., "--address", help="the host address the clusters' listeners bind"),
    tar: bool = typer.Option(True, "--tar/--no-tar", help="read the clusters' CAs (a tar) on stdin"),
) -> None:
    """Each cluster registered with this host's lab-mux (started first if need be)."""
    specs = [host.parse_cluster(c) for c in clusters]  # bad input fails before anything is written
    _stdin(tar)
    print_json(host.mux_ensure(config.load(), address, specs))


@host_app.command("mux-remove")
def mux_remove_cmd(names: list[str] = typer.Argument(None, help="cluster names")) -> None:
    """Unregister each cluster from lab-mux and remove its files; what is gone already is fine."""
    for n in names or []:
        pki.check_cluster_name(n)
    host.mux_remove(config.load(), names or [])
    print_json(sorted(names or []))


@host_app.command("mux-list")
def mux_list_cmd() -> None:
    """What lab-mux serves (null when it does not answer), keeps in its state file, has files of."""
    print_json(host.mux_list(config.load()))


@host_app.command("mux-down")
def mux_down_cmd() -> None:
    """Stop lab-mux and forget it and its registrations; the host's other processes stay."""
    print_json({"stopped": host.mux_down(config.load())})
