"""What `lab up --mode kind` needs before it touches anything: the tools, and a clusterctl that knows
the pinned CAPI's contract. The tool probes are lab doctor's, so both say the same thing."""

from __future__ import annotations

from dataclasses import dataclass

from lab import doctor
from lab.config import Settings
from lab.errors import LabError

MODE = "kind"


@dataclass(frozen=True)
class Tools:
    """Paths of the tools kind mode runs."""

    docker: str
    kind: str
    kubectl: str
    clusterctl: str


def _minor(version: str) -> tuple[int, int] | None:
    parts = version.lstrip("v").split(".")
    try:
        return int(parts[0]), int(parts[1])
    except (IndexError, ValueError):
        return None


def problems(results: list[doctor.ToolResult], settings: Settings) -> list[str]:
    """One short phrase per unusable tool: 'kind (not installed)', 'docker (client only: ...)'."""
    out = []
    for r in results:
        if not r.required:
            continue
        if r.status == "missing":
            out.append(f"{r.name} (not installed)")
        elif not r.ok:
            out.append(f"{r.name} ({r.note})")
        elif r.name == "clusterctl" and r.version:
            have, want = _minor(r.version), settings.versions.minor("capi")
            if have is None or have < want:
                # An older clusterctl does not know the v1beta2 contract of CAPI v1.13's providers.
                out.append(
                    f"clusterctl (v{r.version.lstrip('v')} is older than CAPI {settings.versions.capi})"
                )
    return out


def check(settings: Settings) -> Tools:
    """The tools' paths, or one LabError line naming everything that is missing."""
    results = [doctor.probe_tool(spec, MODE, settings) for spec in doctor.TOOLS if MODE in spec.needed_by]
    bad = problems(results, settings)
    if bad:
        raise LabError(f"lab up --mode kind needs: {'; '.join(bad)} (lab doctor --mode kind shows all)")
    _no_local_stack(settings)
    paths = {r.name: r.path for r in results}
    return Tools(**{name: str(paths[name]) for name in ("docker", "kind", "kubectl", "clusterctl")})


def _no_local_stack(settings: Settings) -> None:
    """One lab home holds one management cluster: kind mode's kubeconfig goes where the local stack's
    is, so a running local stack must be stopped first."""
    from lab.nodesim import PROGRAM_NAME
    from lab.runtime.supervise import Supervisor

    sup = Supervisor(settings)
    # kind mode's own supervisord runs the node simulator alone
    if sup.alive() and any(p["name"] != PROGRAM_NAME for p in sup.processes()):
        raise LabError(
            f"the local stack runs in this lab home ({settings.home}); run lab down first, "
            "or give kind mode its own LAB_HOME"
        )
