"""`lab up --mode kind` output: the same progress lines as the local `lab up`, then one summary."""

from __future__ import annotations

import time
from pathlib import Path

from lab.cli._output import console, err_console
from lab.config import Settings


def up_kind(settings: Settings, profile: str | None, bmo_source: Path | None) -> None:
    from lab.kindmgmt import up

    with err_console.status("lab up: starting") as spinner:

        def log(msg: str) -> None:
            spinner.update(f"lab up: {msg}")
            err_console.print(f"[dim]{time.strftime('%H:%M:%S')}[/dim] {msg}", highlight=False)

        result = up.up(settings, profile, log, bmo_source)
    what = [f"kind cluster {result.cluster}"]
    if result.installed:
        what.append(f"installed {', '.join(result.installed)}")
    if result.patched:
        what.append(f"tuned {', '.join(result.patched)}")
    if result.started:
        what.append(f"started {', '.join(result.started)}")
    console.print(
        f"[green]ready[/green] in {result.seconds:.1f}s (tuning {result.profile}; {'; '.join(what)}); "
        f"kubeconfig: {result.kubeconfig}"
    )
