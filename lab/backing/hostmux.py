"""The `mux` runtime of a registered backing: lab-mux on a process backing host, so that each host
carries a thousand multiplexed clusters (ten hosts, ten thousand) instead of ~100 real apiservers.

`lab backing add NAME --host ADDRESS --runtime mux` registers it (the playbook does, as
`<backing_name>-mux`, with backing_process_mux: true); `lab create-clusters --backing NAME` places
clusters on it. It is a registered backing of its own beside the host's process backing (if any),
not an option of it: placement, capacity and `lab backing list` then count the two apart, and a
host may carry either runtime or both.

The same host model as the process runtime (lab.backing.process, whose ssh and registration this
reuses): the playbook installs lab and the lab-mux binary; the controller drives the host's lab
over ssh, one call per batch (`lab host mux-up|mux-ensure|mux-remove|mux-list|mux-down`), and the
host's lab runs lab-mux under the host's supervisord (lab.backing.host). Its control API listens on
the host's loopback with a token only the host's lab home holds: nothing but lab, over ssh, reaches
it. Cluster N listens on `<address>:(apiserver_base_port + N)` of the host (address: --node-address,
else --host), the same deterministic port the host's process backing would give it (an index is
on one backing only), with TLS from the cluster's CA and only that CA's client certificates let in.

The controller issues every certificate, as for the process runtime; the host gets only each
cluster's CA (certificate and key: lab-mux signs the serving certificate for the host's address).
The manifests declare external etcd like every backing (KCP with external etcd never dials it).

Restart: the host's supervisord starts a killed lab-mux again, which serves its clusters again at
their endpoints from its state file; the node simulator asks every mux host when its lab-mux started
(started(), one ssh per host every nodesim.HOST_MUX_POLL_SECONDS) and, when that changes, writes
the clusters' Nodes, mirror pods and kubeadm-config again, as for this machine's lab-mux.

Measured (tests/e2e/test_two_hosts.py, a network-namespace host over real ssh, 2 busy cores): 3
clusters Available on the host's lab-mux 38.8 s after create began; after a kill -9 of it, whole and
Available again in 8.1 s; their delete 61.5 s (most of it BMO deprovisioning the hosts).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lab import naming, pki, pki_store
from lab.backing import process, ready, store
from lab.backing.host import tar_files
from lab.backing.mux import PROGRAM_NAME
from lab.backing.store import Entry
from lab.config import Settings
from lab.errors import LabError


class HostMuxBacking(process.ProcessBacking):
    """lab.backing.Backing for lab-mux on a process backing host."""

    def ensure(self, clusters: Sequence[tuple[str, int]]) -> None:
        """One ssh: each cluster's CA as a tar, then the host's lab registers them with lab-mux
        (started first when it is not running)."""
        if not clusters:
            return
        ca = self.etcd_ca()
        files: list[tuple[Path, str]] = []
        specs = []
        for name, index in clusters:
            host, port = self.endpoint(name, index)
            pki_store.cluster_pki(self.settings, name, host, port, ca)
            d = pki.cluster_pki_dir(self.settings, name)
            files += [(d / f, f"mux/clusters/{name}/pki/{f}") for f in ("ca.crt", "ca.key")]
            specs.append(f"{name}:{port}")
        self.run(
            ["host", "mux-ensure", "--address", self.spec.listen_address, *specs], stdin=tar_files(files)
        )

    def wait_ready(self, names: Sequence[str], timeout: float) -> None:
        """Until each answers GET / through its admin kubeconfig, from here as the management cluster
        reaches it (lab-mux's library serves no /readyz)."""
        ready.wait_ready(
            self.settings,
            names,
            timeout,
            why=self._why,
            where=f" on backing {self.name}",
            path="/",
        )

    def _why(self, cluster: str) -> str:
        try:
            listed = self.listing()
        except LabError as e:
            return f"(lab-mux unavailable: {e})"
        if listed["served"] is None:
            return f"{PROGRAM_NAME} on {self.spec.host} is not answering its control API"
        served = cluster in listed["served"]
        return f"{PROGRAM_NAME} on {self.spec.host} {'serves' if served else 'does not serve'} it"

    def remove(self, names: Sequence[str]) -> None:
        names = [pki.check_cluster_name(n) for n in names]
        if not names:
            return
        self.run(["host", "mux-remove", *names])
        for n in names:
            pki_store.remove_cluster_pki(self.settings, n)

    def listing(self) -> dict[str, Any]:
        """The host's `lab host mux-list`: served (None when lab-mux does not answer), state, files."""
        out: dict[str, Any] = json.loads(self.run(["host", "mux-list"]))
        return out

    def present(self) -> set[str]:
        """Clusters of this prefix lab-mux serves, keeps in its state file, or has files of."""
        listed = self.listing()
        found = set(listed["served"] or []) | set(listed["state"]) | set(listed["files"])
        return {n for n in found if naming.parse_index(self.settings.prefix, n) is not None}

    def used(self) -> int:
        return len(self.present())

    def tenant_health(self, names: Sequence[str]) -> dict[str, str | None]:
        """Healthy while the host's lab-mux answers and serves the cluster (its store is lab-mux's
        memory, as on the built-in mux backing)."""
        if not names:
            return {}
        served = self.listing()["served"]
        if served is None:
            return {n: f"{PROGRAM_NAME} on {self.spec.host} is not answering" for n in names}
        return {
            n: None if n in served else f"{PROGRAM_NAME} on {self.spec.host} does not serve it" for n in names
        }

    def up(self) -> None:
        """lab-mux installed and running on the host (registration fails otherwise)."""
        self.run(["host", "mux-up", "--address", self.spec.listen_address])

    def down(self) -> None:
        """lab-mux stopped and forgotten on the host; the host's other processes keep running."""
        self.run(["host", "mux-down"])


def register(settings: Settings, name: str, **kwargs: Any) -> Entry:
    """As lab.backing.process.register (same ssh checks and arguments), with runtime mux: the host's
    lab starts lab-mux instead of an etcd."""
    return process.register(settings, name, runtime="mux", opener=HostMuxBacking, **kwargs)


def unregister(settings: Settings, entry: Entry, *, force: bool = False) -> None:
    """Refused while the host's lab-mux carries clusters (unless force); stops lab-mux there."""
    process.unregister(settings, entry, force=force, opener=HostMuxBacking)


def started(settings: Settings) -> dict[str, str | None]:
    """Each registered mux host's lab-mux start time (None when it or the host does not answer):
    what the node simulator watches to write a restarted one's objects again. One ssh per host."""
    out: dict[str, str | None] = {}
    for entry in store.entries(settings):
        if entry.runtime != "mux":
            continue
        try:
            value = HostMuxBacking(settings, entry).listing()["started"]
        except LabError:
            value = None
        out[entry.name] = None if value is None else str(value)
    return out
