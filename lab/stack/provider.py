"""LocalStack: the management cluster as local processes under supervisord (mode local); the
lab.management Protocol over lab.stack's verbs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from lab.config import Settings
from lab.metrics import Target
from lab.stack import mgmt, scrape, status, up

Log = Callable[[str], None]


class LocalStack:
    mode = "local"
    local_backing = True

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def up(self, profile: str | None, log: Log, shards: int | None = None) -> up.UpResult:
        return up.up(self.settings, profile, log, shards)

    def down(self, purge: bool) -> bool:
        return up.down(self.settings, purge)

    def tune(self, profile: str, log: Log) -> list[str]:
        return up.tune(self.settings, profile, log)

    def status(self) -> list[status.Row]:
        return status.rows(self.settings)

    def kubeconfig(self) -> Path:
        return mgmt.admin_kubeconfig_path(self.settings)

    def metrics_targets(self) -> list[Target]:
        return scrape.targets(self.settings)
