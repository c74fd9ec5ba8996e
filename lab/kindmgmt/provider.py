"""KindStack: the management cluster as a kind cluster (mode kind); the lab.management Protocol.

Only the node simulator runs on this machine (under supervisord, as in local mode), so status is
lab.supervised's, as the local stack's is; `lab down` stops the simulator and deletes the kind
cluster this lab home created (lab.kindmgmt.cluster.delete), as the design has it: nothing of the
management cluster is left running.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from lab import components, supervised
from lab.config import Settings
from lab.errors import UsageError
from lab.kindmgmt import cluster, kubeconfig_path, up
from lab.metrics import Target

Log = Callable[[str], None]


class KindStack:
    mode = "kind"
    local_backing = False

    def __init__(self, settings: Settings, bmo_source: Path | None = None, offline: bool = False) -> None:
        self.settings = settings
        self.bmo_source = bmo_source
        self.offline = offline

    @staticmethod
    def created(settings: Settings) -> bool:
        """Whether this lab home's kind management cluster is on record: `lab up --mode kind` wrote
        the config it created it with, `lab down` removes it (lab.kindmgmt.cluster)."""
        return cluster.config_path(settings).is_file()

    def up(self, profile: str | None, log: Log, shards: int | None = None) -> up.KindUpResult:
        if shards not in (None, 1):  # lab.shards: the local stack's KCP managers only
            raise UsageError("--shards is for mode local: mode kind runs one KCP manager")
        return up.up(self.settings, profile, log, self.bmo_source, self.offline)

    def down(self, purge: bool) -> bool:
        # the cluster first: --purge removes the kind dir that says this home created it
        deleted = cluster.delete(self.settings)
        return supervised.down(self.settings, purge) or deleted

    def tune(self, profile: str, log: Log) -> list[str]:
        return up.tune(self.settings, profile, log)

    def status(self) -> list[supervised.Row]:
        # the simulator has no health endpoint: no probes
        return supervised.rows(self.settings, (components.NODESIM,), {})

    def kubeconfig(self) -> Path:
        return kubeconfig_path(self.settings)

    def metrics_targets(self) -> list[Target]:
        """Not yet: the managers' metrics are inside the kind cluster's pods (issue 14 asks for them)."""
        return []
