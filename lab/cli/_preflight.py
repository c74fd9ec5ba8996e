"""The host-limit preflight of `lab up` and `lab create-clusters` (lab.preflight), with the running
stack's processes filled in, and the shared `--raise-limits` option."""

from __future__ import annotations

from collections.abc import Callable

import typer

from lab import naming, preflight
from lab.cli._output import err_console
from lab.config import Settings

RaiseLimitsOption = typer.Option(
    False,
    "--raise-limits",
    help="as root: raise the kernel limits (inotify, open files, ports) this run needs instead of refusing",
)


def stack_pids(settings: Settings, components: dict[str, int] | None = None) -> list[int]:
    """supervisord and every program it runs now (`components`: component_pids, when the caller
    has read them already); empty when the stack is not running."""
    from lab.clusters.session import LAB_COMPONENT, component_pids
    from lab.runtime.supervise import Supervisor

    found = component_pids(settings) if components is None else components
    pids = [pid for name, pid in found.items() if name != LAB_COMPONENT]
    sup = Supervisor(settings).pid() if pids else None
    return [*pids, sup] if sup else pids


def _reader(settings: Settings, components: dict[str, int]) -> tuple[Callable[[], preflight.Host], list[int]]:
    """What reads this host with the stack's processes as they run now (lab-mux's descriptors
    counted apart: it has a check of its own), and those processes."""
    from lab.backing.mux import PROGRAM_NAME

    pids, mux_pid = stack_pids(settings, components), components.get(PROGRAM_NAME)
    return lambda: preflight.read_host(pids, settings.ports.tenant_etcd, mux_pid), pids


def check(settings: Settings, demand: preflight.Demand, raise_limits: bool) -> None:
    """Refuse with one line when this host lacks room for `demand` (or raise the limits, as root)."""
    from lab.clusters.session import component_pids

    read, pids = _reader(settings, component_pids(settings))
    preflight.ensure(
        read,
        demand,
        raise_limits,
        pids,
        log=lambda m: err_console.print(m, highlight=False),
    )


def full_backing(settings: Settings) -> tuple[preflight.Host, preflight.Demand]:
    """For lab doctor: this host now, and what filling the local and mux backings up to
    local_capacity and mux_capacity adds (the stack too, when it is not running)."""
    from lab.backing import mux
    from lab.clusters.session import component_pids

    components = component_pids(settings)  # one look at supervisord serves both counts
    read, pids = _reader(settings, components)
    running = sum(name.startswith(naming.WORKLOAD_PROGRAM_PREFIX) for name in components)
    demand = preflight.Demand(
        local_clusters=max(0, settings.local_capacity - running),
        mux_clusters=max(0, settings.mux_capacity - mux.saved(settings)),
        stack=not pids,
    )
    return read(), demand


def for_up(settings: Settings, raise_limits: bool) -> None:
    """A stack that starts now starts the workload apiservers whose program files are there too,
    and lab-mux with the clusters it saved."""
    from lab.backing import mux
    from lab.backing.local import PROGRAM_PREFIX
    from lab.runtime.supervise import programs_dir

    if stack_pids(settings):
        return  # converging a running stack adds nothing
    local = len(list(programs_dir(settings).glob(f"{PROGRAM_PREFIX}*.conf")))
    demand = preflight.Demand(local_clusters=local, mux_clusters=mux.saved(settings), stack=True)
    check(settings, demand, raise_limits)


def for_create(settings: Settings, placement: dict[int, str], new: set[int], raise_limits: bool) -> None:
    """The new clusters of a create plan: local ones start an apiserver here, mux ones are served by
    lab-mux here, the rest cost only clients."""
    local = sum(placement[i] == naming.LOCAL_BACKING for i in new)
    mux = sum(placement[i] == naming.MUX_BACKING for i in new)
    demand = preflight.Demand(local_clusters=local, mux_clusters=mux, remote_clusters=len(new) - local - mux)
    check(settings, demand, raise_limits)
