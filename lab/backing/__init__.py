"""Backing capacity: where each workload cluster's kube-apiserver and etcd tenant live.

Four runtimes share one contract, so create, delete and status never ask which one they hold:
- `local`: processes on this machine (lab.backing.local), the default;
- `mux`: one multiplexer process on this machine serving many clusters' APIs (lab.backing.mux);
- `kind`: a backing kind cluster on a VM, apiservers as Deployments behind NodePort Services;
- `process`: a host prepared by the playbook, running lab's own supervised processes over SSH;
- a registered `mux` backing: lab-mux on such a host (lab.backing.hostmux).

The controller (this machine) issues every certificate: each backing has an etcd CA of its own kept
here (a process host gets a copy of it, see lab.backing.process), so the cluster's secrets in the
management cluster and the apiserver's etcd client cert come from one place and a backing can be
rebuilt from the management cluster and lab home alone.

Layout (kind's pkg/cluster pattern): this module holds the contract and the factory, the only code
that knows every runtime; the runtimes (local, kind, process, with host as the process host's side)
import only store (registered backings) and ready (the shared /readyz wait), never this module.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol, runtime_checkable

from lab import naming, pki
from lab.backing import hostmux, kind, local, mux, process, reach, store
from lab.backing.store import Entry, check_name
from lab.config import Settings
from lab.errors import LabError, UsageError
from lab.kube import Client

__all__ = [
    "Backing",
    "Entry",
    "check_name",
    "check_reachable",
    "open_all",
    "open_backing",
    "placed",
    "unregister",
    "usage",
]


@runtime_checkable
class Backing(Protocol):
    """What create-clusters and delete-clusters need from a place that runs workload apiservers.

    Every method is idempotent and safe to re-run after a crash at any point: ensure creates only what
    is missing, remove tolerates what is already gone.
    """

    #: the name users give (`lab backing add NAME`); naming.LOCAL_BACKING for local mode
    name: str
    #: how many workload clusters it may carry (placement never exceeds it)
    capacity: int

    def endpoint(self, cluster: str, index: int) -> tuple[str, int]:
        """host, port of the cluster's apiserver as the management cluster's controllers reach it:
        the controlPlaneEndpoint and the serving certificate's SAN. Stable for a given index."""
        ...

    def etcd_servers(self) -> list[str]:
        """--etcd-servers of the cluster's apiserver, as the apiserver reaches the backing's etcd."""
        ...

    def etcd_ca(self) -> pki.KeyPair:
        """The CA the backing's etcd trusts (with its key: it signs each apiserver's etcd client cert)."""
        ...

    def preflight(self, new: Sequence[tuple[str, int]]) -> None:
        """Refuse, before anything is created anywhere, (name, index) pairs this backing cannot take
        (e.g. the local backing's fixed loopback address held by another process); most accept all."""
        ...

    def ensure(self, clusters: Sequence[tuple[str, int]]) -> None:
        """Etcd tenant and a running apiserver for each (name, index). The cluster's PKI already
        exists under lab home (lab.pki_store.cluster_pki with this backing's endpoint and etcd CA)."""
        ...

    def wait_ready(self, names: Sequence[str], timeout: float) -> None:
        """Until each named apiserver serves /readyz; a LabError naming the first laggard otherwise."""
        ...

    def remove(self, names: Sequence[str]) -> None:
        """Apiserver, etcd tenant (user, role, keys) and backing-side files of each cluster."""
        ...

    def present(self) -> set[str]:
        """Names of the clusters of which anything (apiserver, tenant, files) exists on the backing:
        what delete --all sweeps when a namespace is already gone."""
        ...

    def used(self) -> int:
        """How many clusters it carries now (for placement and `lab backing list`)."""
        ...

    def tenant_health(self, names: Sequence[str]) -> dict[str, str | None]:
        """Each named cluster's etcd as its apiserver sees it: None when its tenant answers, else why
        not. Clusters the backing cannot judge are left out (KCP's EtcdClusterHealthy stays as it is)."""
        ...


# --- the factory: the only place that knows every runtime -------------------------------------


def open_backing(settings: Settings, name: str) -> Backing:
    """The Backing of a name: the built-in local one, or a registered kind/process backing."""
    if name == naming.LOCAL_BACKING:
        return local.LocalBacking(settings)
    if name == naming.MUX_BACKING:
        return mux.MuxBacking(settings)
    entry = store.load(settings, name)
    if entry is None:
        known = ", ".join([*naming.BUILT_IN_BACKINGS, *(e.name for e in store.entries(settings))])
        raise LabError(f"no backing named {name!r} (known: {known}); register it with lab backing add")
    if entry.runtime == "kind":
        return kind.KindBacking(settings, entry)
    if entry.runtime == "mux":
        return hostmux.HostMuxBacking(settings, entry)
    return process.ProcessBacking(settings, entry)


#: the address block of the local backing's apiservers (naming.local_endpoint)
LOCAL_ADDRESSES = "127.1.0.0/16"


def address(settings: Settings, name: str) -> tuple[str, str] | None:
    """(runtime, the address the backing serves apiservers on), read from its registration
    without contacting it; None for a name that is not registered (the caller's plan says so)."""
    if name == naming.LOCAL_BACKING:
        return "local", LOCAL_ADDRESSES
    if name == naming.MUX_BACKING:
        return "mux", naming.MUX_HOST
    entry = store.load(settings, name)
    if entry is None:
        return None
    if entry.runtime == "kind":
        return "kind", str(entry.spec.get("node_address") or "")
    return entry.runtime, process.Spec.of(entry).listen_address


def check_reachable(settings: Settings, names: Iterable[str], mode: str) -> None:
    """Refuse, before anything is created, a backing the controllers of a management cluster in
    `mode` cannot reach (lab.backing.reach: the one line says why and what to use instead)."""
    for name in dict.fromkeys(names):
        found = address(settings, name)
        if found is None:
            continue
        why = reach.unreachable(mode, name, *found)
        if why is not None:
            raise UsageError(why)


def open_all(settings: Settings, names: Iterable[str]) -> dict[str, Backing]:
    """Each named backing once, in the order first named."""
    return {n: open_backing(settings, n) for n in dict.fromkeys(names)}


def unregister(settings: Settings, entry: Entry, *, force: bool = False) -> None:
    """Uninstall what lab runs on a registered backing and forget it (the runtime's own unregister)."""
    {"kind": kind, "process": process, "mux": hostmux}[entry.runtime].unregister(settings, entry, force=force)


def usage(settings: Settings, *, local_backing: bool) -> list[dict[str, Any]]:
    """One row per backing (name, runtime, capacity, used, address); `used` is None and `error` says
    why when the backing does not answer. `local_backing`: whether the management mode carries the
    built-in local backing (the Management provider says)."""
    found: list[tuple[str, str, int, str]] = []
    if local_backing:
        found.append((naming.LOCAL_BACKING, "local", settings.local_capacity, LOCAL_ADDRESSES))
        found.append((naming.MUX_BACKING, "mux", settings.mux_capacity, naming.MUX_HOST))
    for e in store.entries(settings):
        address = e.spec.get("node_address") or e.spec.get("host") or ""
        found.append((e.name, e.runtime, e.capacity, address))
    out = []
    for name, runtime, capacity, address in found:
        row: dict[str, Any] = {"name": name, "runtime": runtime, "capacity": capacity, "used": None}
        try:
            if runtime == "local" and not local.started(settings):
                row["used"] = 0  # never started here: used() would create the etcd CA as a side effect
            else:
                row["used"] = open_backing(settings, name).used()
        except (LabError, OSError, ImportError) as e:
            row["error"] = str(e)
        row["address"] = address
        out.append(row)
    return out


def placed(mgmt: Client, name: str) -> int:
    """Namespaces in the management cluster labelled with the backing: the clusters it carries."""
    return len(mgmt.list("v1", "Namespace", label_selector=f"{naming.BACKING_LABEL}={name}"))
