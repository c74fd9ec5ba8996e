"""KindStack: the management cluster as a kind cluster (mode kind); the lab.management Protocol.

Only the node simulator runs on this machine (under supervisord, as in local mode), so status and
down are the local stack's: `lab down` stops the simulator and keeps the kind cluster (`kind delete
cluster --name lab-mgmt` removes it).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from lab.config import Settings
from lab.kindmgmt import kubeconfig_path, up
from lab.stack import status
from lab.stack import up as local

Log = Callable[[str], None]


class KindStack:
    mode = "kind"
    local_backing = False

    def __init__(self, settings: Settings, bmo_source: Path | None = None) -> None:
        self.settings = settings
        self.bmo_source = bmo_source

    def up(self, profile: str | None, log: Log) -> up.KindUpResult:
        return up.up(self.settings, profile, log, self.bmo_source)

    def down(self, purge: bool) -> bool:
        return local.down(self.settings, purge)

    def tune(self, profile: str, log: Log) -> list[str]:
        return up.tune(self.settings, profile, log)

    def status(self) -> list[status.Row]:
        return status.rows(self.settings)

    def kubeconfig(self) -> Path:
        return kubeconfig_path(self.settings)
