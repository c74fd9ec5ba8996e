"""Backing capacity: where each workload cluster's kube-apiserver and etcd tenant live.

Three runtimes share one contract, so create, delete and status never ask which one they hold:
- `local`: processes on this machine (lab.backing.local), the default;
- `kind`: a backing kind cluster on a VM, apiservers as Deployments behind NodePort Services;
- `process`: a host prepared by the playbook, running lab's own supervised processes over SSH.

The controller (this machine) issues every certificate: each backing has an etcd CA of its own kept
here (a process host gets a copy of it, see lab.backing.process), so the cluster's secrets in the
management cluster and the apiserver's etcd client cert come from one place and a backing can be
rebuilt from the management cluster and lab home alone.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from lab import pki
from lab.errors import UsageError


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

    def ensure(self, clusters: Sequence[tuple[str, int]]) -> None:
        """Etcd tenant and a running apiserver for each (name, index). The cluster's PKI already
        exists under lab home (lab.pki.cluster_pki with this backing's endpoint and etcd CA)."""
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


_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\Z")  # \Z: $ would allow a final newline


def check_name(name: str) -> str:
    """A backing's name is a label value and a directory name: a lowercase DNS label."""
    if not _NAME.match(name):
        raise UsageError(f"invalid backing name {name!r}: must be a lowercase DNS label")
    return name
