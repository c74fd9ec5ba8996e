"""`lab backing add|list|remove`: register the machines that carry workload apiservers and etcd."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.console import JustifyMethod
from rich.table import Table

from lab import config, management, naming
from lab.cli._lock import mutating
from lab.cli._output import Output, OutputOption, check_timeout, console, err_console, print_json
from lab.cli.app import app
from lab.config import Settings
from lab.errors import LabError, UsageError

backing_app = typer.Typer(
    no_args_is_help=True, help="Backings: kind clusters or prepared hosts that carry workload apiservers."
)
app.add_typer(backing_app, name="backing")


@backing_app.command("add")
@mutating
def add_cmd(
    name: str = typer.Argument(..., help="the backing's name (a DNS label), as --backing takes it"),
    kubeconfig: Path | None = typer.Option(None, "--kubeconfig", help="kubeconfig of a backing kind cluster"),
    host: str | None = typer.Option(None, "--host", help="address of a host prepared by the playbook"),
    capacity: int = typer.Option(100, "--capacity", help="how many workload clusters it may carry"),
    runtime: str | None = typer.Option(
        None,
        "--runtime",
        help="kind, process or mux (default: kind with --kubeconfig, process with --host; mux: the "
        "host's lab-mux, installed by the playbook with backing_process_mux)",
    ),
    node_address: str | None = typer.Option(
        None,
        "--node-address",
        help="where the management cluster reaches the backing's apiservers "
        "(default: the kubeconfig server's host, or --host)",
    ),
    wait: bool = typer.Option(
        False,
        "--wait/--no-wait",
        help="kind: wait until the backing's etcd answers (needs a node running Pods)",
    ),
    timeout: float = typer.Option(300.0, "--timeout", help="seconds --wait waits"),
    node_ports: str | None = typer.Option(
        None,
        "--node-ports",
        help="kind: FIRST-LAST, the NodePorts the VM publishes for apiservers, at least --capacity of "
        "them (default 30000-30099, the playbook's)",
    ),
    etcd_node_port: int | None = typer.Option(
        None, "--etcd-node-port", help="kind: the NodePort the VM publishes for etcd (default 32767)"
    ),
    ssh_port: int = typer.Option(22, "--ssh-port", min=1, max=65535, help="process: SSH port of --host"),
    user: str | None = typer.Option(None, "--user", help="process: SSH user (default: root)"),
    identity: Path | None = typer.Option(None, "--identity", help="process: SSH private key"),
) -> None:
    """Register a backing; for a kind cluster, install the multi-tenant etcd into it."""
    settings = config.load()
    chosen = _runtime(kubeconfig, host, runtime)
    for flag, value in (("--host", host), ("--user", user), ("--node-address", node_address)):
        if value is not None and not value.strip():  # '' would mean "the default", or ssh to nowhere
            raise UsageError(f"{flag} must not be empty")
    if capacity < 1:
        raise UsageError(f"--capacity must be at least 1, got {capacity}")
    check_timeout(timeout)
    if chosen != "kind" and (node_ports is not None or etcd_node_port is not None):
        raise UsageError("--node-ports and --etcd-node-port go with --kubeconfig (a kind cluster)")
    if chosen == "kind":
        from lab.backing import kind

        assert kubeconfig is not None
        entry = kind.register(
            settings,
            name,
            kubeconfig,
            capacity=capacity,
            node_address=node_address,
            node_port_block=node_ports,
            etcd_node_port=etcd_node_port,
            wait=wait,
            timeout=timeout,
        )
        where = f"{entry.spec['node_address']}, NodePorts {entry.spec['node_ports']}"
    else:
        from lab.backing import hostmux, process

        extra: dict[str, Any] = {"user": user} if user else {}
        if node_address:
            extra["address"] = node_address
        if chosen == "mux":
            extra["runtime"], extra["opener"] = "mux", hostmux.HostMuxBacking
        entry = process.register(
            settings, name, host=host or "", ssh_port=ssh_port, identity=identity, capacity=capacity, **extra
        )
        where = node_address or host or ""
    err_console.print(f"backing {entry.name} ({entry.runtime}, capacity {entry.capacity}) at {where}")


def _runtime(kubeconfig: Path | None, host: str | None, runtime: str | None) -> str:
    if (kubeconfig is None) == (host is None):
        raise UsageError("give exactly one of --kubeconfig (a kind cluster) or --host (a prepared host)")
    implied = "kind" if kubeconfig is not None else "process"
    if runtime is not None and runtime not in ("kind", "process", "mux"):
        raise UsageError(f"--runtime must be kind, process or mux, got {runtime!r}")
    if runtime == "mux" and host is not None:
        return "mux"  # lab-mux on a prepared host
    if runtime is not None and runtime != implied:
        flag = "--kubeconfig" if kubeconfig is not None else "--host"
        raise UsageError(f"--runtime {runtime} does not go with {flag} (that is the {implied} runtime)")
    return implied


@backing_app.command("list")
def list_cmd(output: Output = OutputOption) -> None:
    """Every backing with its capacity and how many clusters it carries now."""
    from lab import backing

    settings = config.load()
    found = backing.usage(settings, local_backing=management.for_settings(settings).local_backing)
    if output == Output.json:
        print_json(found)
        return
    table = Table(title="backings")
    columns: tuple[tuple[str, JustifyMethod], ...] = (
        ("name", "left"),
        ("runtime", "left"),
        ("capacity", "right"),
        ("used", "right"),
    )
    for col, justify in columns:
        table.add_column(col, justify=justify)
    table.add_column("address")
    for r in found:
        used = str(r["used"]) if r["used"] is not None else f"[red]? ({r.get('error', '')})[/]"
        table.add_row(r["name"], r["runtime"], str(r["capacity"]), used, r["address"])
    console.print(table)


def placed(settings: Settings, name: str) -> int:
    """Clusters placed on the backing, as the management cluster's namespaces say; 0 without one."""
    from lab import backing
    from lab.kube import Client
    from lab.stack import mgmt

    kubeconfig = mgmt.admin_kubeconfig_path(settings)
    if not kubeconfig.is_file():
        return 0  # no management cluster here: nothing can be placed
    with Client.from_kubeconfig(kubeconfig, attempts=2, timeout=10.0, parallel=1) as client:
        return backing.placed(client, name)


@backing_app.command("remove")
@mutating
def remove_cmd(
    name: str = typer.Argument(..., help="the backing to forget"),
    force: bool = typer.Option(
        False, "--force", help="even while clusters are placed on it, or when it does not answer"
    ),
) -> None:
    """Uninstall lab's etcd and apiservers from a backing and forget it."""
    from lab import backing
    from lab.backing import store

    settings = config.load()
    store.check_name(name)
    if name in naming.BUILT_IN_BACKINGS:
        raise UsageError(f"{name!r} is built in and cannot be removed")
    entry = store.load(settings, name)
    if entry is None:
        known = ", ".join(e.name for e in store.entries(settings)) or "none"
        raise LabError(f"no backing named {name!r} (registered: {known})")
    if not force:
        try:
            count = placed(settings, name)
        except LabError as e:
            raise LabError(f"cannot count the clusters on {name} ({e}); --force removes it anyway") from None
        if count:
            raise LabError(
                f"{count} cluster(s) are placed on backing {name}: delete them first (lab delete-clusters), "
                "or --force"
            )
    backing.unregister(settings, entry, force=force)
    err_console.print(f"backing {name} removed")
