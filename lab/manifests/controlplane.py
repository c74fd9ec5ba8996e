"""A cluster's control plane as `lab upgrade-clusters` leaves it: its Kubernetes version and which
control-plane host slots it has.

KCP upgrades by rolling out: it creates a Machine at the new version (maxSurge 1) before it deletes
the old one, so the new Machine needs a second BareMetalHost. lab renders that spare next to the
one the cluster runs on, with the same host-role label (lab.manifests.workers.ROLE_LABEL =
control-plane) that the control plane's Metal3MachineTemplate selects: CAPM3 gives the new Machine
the only free control-plane host, the spare. Once KCP has deleted the old Machine and BMO has
deprovisioned its host, lab deletes that host: the cluster again has one control-plane host, in the
other slot. Two slots (lab.naming.CONTROL_PLANE_SLOTS) therefore carry any number of upgrades.

Both facts live on the cluster's namespace (like its workers and payload), so every renderer of the
cluster (create's convergence, scale-clusters) renders the version and hosts the cluster has, never
the pinned version over an upgraded one, and an interrupted upgrade is resumed from them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lab import naming

#: On a cluster's Namespace: the Kubernetes version its KCP was last upgraded to (absent: pinned).
VERSION_ANNOTATION = "scale-lab.metal3.io/kubernetes-version"
#: On a cluster's Namespace: its control-plane host slots, old first ("0,1" during an upgrade from
#: slot 0 to slot 1; absent: "0").
HOSTS_ANNOTATION = "scale-lab.metal3.io/control-plane-hosts"


@dataclass(frozen=True)
class ControlPlane:
    version: str | None = None  # None: the pinned Kubernetes version (settings.versions.kubernetes)
    hosts: tuple[int, ...] = (0,)

    def __post_init__(self) -> None:
        if not 1 <= len(self.hosts) <= 2 or len(set(self.hosts)) != len(self.hosts):
            raise ValueError(f"control-plane host slots {self.hosts}: one or two different ones")
        if any(s not in naming.CONTROL_PLANE_SLOTS for s in self.hosts):
            raise ValueError(f"control-plane host slots {self.hosts} outside {naming.CONTROL_PLANE_SLOTS}")

    def kubernetes(self, pinned: str) -> str:
        return self.version or pinned

    @property
    def rolling(self) -> bool:
        """Two hosts: an upgrade is under way (or was interrupted)."""
        return len(self.hosts) == 2

    @property
    def current(self) -> int:
        """The slot the control plane runs on (the newest, during a rollout)."""
        return self.hosts[-1]

    @property
    def old(self) -> int | None:
        return self.hosts[0] if self.rolling else None

    def spare(self) -> int:
        """The free slot, for the next rollout's new Machine."""
        return next(s for s in naming.CONTROL_PLANE_SLOTS if s not in self.hosts)

    def rolled_to(self, version: str) -> ControlPlane:
        """Upgrading to `version`: the spare host beside the current one."""
        return ControlPlane(version, (self.current, self.spare()))

    def settled(self) -> ControlPlane:
        """After the rollout: only the new host is left."""
        return ControlPlane(self.version, (self.current,))

    def annotations(self) -> dict[str, str]:
        out = {}
        if self.version is not None:
            out[VERSION_ANNOTATION] = self.version
        if self.hosts != (0,):
            out[HOSTS_ANNOTATION] = ",".join(str(s) for s in self.hosts)
        return out


def of_namespace(ns: dict[str, Any]) -> ControlPlane:
    """The control plane an existing cluster has, from its namespace; the default for a value lab
    did not write (a hand-edited annotation must not make lab render hosts it cannot name)."""
    annotations = (ns.get("metadata") or {}).get("annotations") or {}
    version = annotations.get(VERSION_ANNOTATION)
    raw = annotations.get(HOSTS_ANNOTATION, "0")
    try:
        hosts = tuple(int(s) for s in str(raw).split(","))
        return ControlPlane(version if isinstance(version, str) and version else None, hosts)
    except ValueError:
        return ControlPlane(version if isinstance(version, str) and version else None)
