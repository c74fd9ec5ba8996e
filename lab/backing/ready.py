"""Readiness of workload apiservers, probed from this machine as the management cluster will reach
them: one /readyz loop that every backing runtime shares, each bringing only its reason for a laggard."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from lab.config import Settings
from lab.errors import LabError
from lab.kube import Client, Config
from lab.runtime import poll
from lab.workload_apiserver import PkiPaths

READY_TIMEOUT = 180.0


def is_ready(settings: Settings, name: str, timeout: float = 5.0, path: str = "/readyz") -> bool:
    """GET /readyz with the admin kubeconfig's client cert: 200 means served and etcd reachable.
    (`path`: the mux backing's in-memory server serves only GET / as its health.)"""
    try:
        cfg = Config.from_kubeconfig(PkiPaths.of(settings, name).kubeconfig.read_bytes())
    except (OSError, LabError):
        return False
    with Client(cfg, parallel=1, attempts=1, timeout=timeout) as client:
        return client.probe(path, timeout)[0]


def wait_ready(
    settings: Settings,
    names: Iterable[str],
    timeout: float = READY_TIMEOUT,
    *,
    why: Callable[[str], str],
    where: str = "",
    interval: float = 0.5,
    path: str = "/readyz",
) -> None:
    """Until every named apiserver answers /readyz with its admin kubeconfig. On timeout the error
    names the first laggard and `why` it lags (the backing's own reason: a log line, a Pod status)."""
    pending = list(names)

    def all_ready() -> bool:
        pending[:] = [n for n in pending if not is_ready(settings, n, path=path)]
        return not pending

    if not poll.until(all_ready, timeout, interval):
        raise LabError(
            f"{len(pending)} workload apiserver(s){where} not ready within {timeout:.0f}s, "
            f"first {pending[0]}: {why(pending[0])}"
        )
