from __future__ import annotations

import typer
from rich.console import JustifyMethod
from rich.table import Table

from lab import config, etcd
from lab.cli._output import Output, OutputOption, console, print_json
from lab.cli.app import app
from lab.errors import LabError
from lab.etcd import server

etcd_app = typer.Typer(no_args_is_help=True, help="The multi-tenant etcd that stores the workload clusters.")
app.add_typer(etcd_app, name="etcd")


@etcd_app.command("tenants")
def tenants_cmd(output: Output = OutputOption) -> None:
    """Tenants of the local etcd (one per workload cluster) with their keys and bytes."""
    settings = config.load()
    certs = server.load_pki(settings)
    try:
        with etcd.connect(settings, certs.ca.cert_pem, certs.root) as root:
            found = etcd.list_tenants(root)
    except etcd.EtcdError as e:
        if e.code is not None and e.code.name == "UNAVAILABLE":
            raise LabError(f"{e}; is the lab's etcd running? (lab up)") from None
        raise
    if output == Output.json:
        print_json([t.as_dict() for t in found])
        return
    table = Table(title=f"etcd tenants at {etcd.client_url(settings)}")
    columns: tuple[tuple[str, JustifyMethod], ...] = (
        ("tenant", "left"),
        ("prefix", "left"),
        ("keys", "right"),
        ("bytes", "right"),
    )
    for col, justify in columns:
        table.add_column(col, justify=justify)
    table.add_column("state")
    for t in found:
        state = "[green]ok[/]" if t.complete else "[yellow]incomplete (re-run create or delete)[/]"
        table.add_row(t.name, t.prefix, str(t.keys), f"{t.bytes:,}", state)
    console.print(table)
    console.print(
        f"{len(found)} tenants, {sum(t.keys for t in found)} keys, {sum(t.bytes for t in found):,} bytes"
    )
