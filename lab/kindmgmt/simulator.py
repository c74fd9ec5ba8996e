"""The node simulator for kind mode: the same supervised `python -m lab.clusters.simulate` as the local stack,
reading the management cluster through the lab home's admin kubeconfig (the kind cluster's here), so
`lab status` shows it and `lab down` stops it.

Nothing else of the local stack runs in kind mode: supervisord starts every program file it finds,
so a fresh start first forgets any program but the simulator (a local stack that ran in this home
before and was stopped leaves its files behind).
"""

from __future__ import annotations

from collections.abc import Callable

from lab.config import Settings

Log = Callable[[str], None]
#: The simulator has no health endpoint: RUNNING past supervisord's startsecs (seconds) is healthy.
#: The bound is the local stack's for its managers and simulator (lab.stack.up.MANAGER_TIMEOUT).
TIMEOUT = 240.0


def ensure(settings: Settings, log: Log) -> list[str]:
    """Start (or keep) the simulator; the names of programs that were added or restarted."""
    from lab import nodesim, supervised
    from lab.runtime import supervise

    if not supervise.Supervisor(settings).alive():
        pdir = supervise.programs_dir(settings)
        stale = (
            [p.stem for p in pdir.glob("*.conf") if p.stem != nodesim.PROGRAM_NAME] if pdir.is_dir() else []
        )
        supervise.remove_program_files(settings, stale)
    sup = supervise.ensure_running(settings)
    programs = [nodesim.nodesim_program(settings)]
    changes = sup.apply(programs)
    for p in programs:
        sup.start_if_dead(p.name)
    supervised.wait_healthy(settings, sup, [p.name for p in programs], TIMEOUT, log, probes={})
    return [*changes["added"], *changes["changed"]]
