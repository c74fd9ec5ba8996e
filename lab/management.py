"""The management cluster, whichever way it runs: one Protocol and the factory that picks its provider.

Two providers, as kind has one Provider interface over docker/podman/nerdctl: `LocalStack`
(lab.stack: etcd, kube-apiserver, kube-controller-manager and the managers as local processes under
supervisord) and `KindStack` (lab.kindmgmt: a kind cluster, `clusterctl init`, BMO in test mode).
`for_settings` chooses once, from the settings' mode (or `lab up --mode`); no other module looks at
the mode. The providers are leaves: they import nothing from here, and satisfy the Protocol by shape.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from lab.config import Settings
from lab.errors import UsageError
from lab.kindmgmt.provider import KindStack
from lab.stack.provider import LocalStack

if TYPE_CHECKING:
    from lab.metrics import Target
    from lab.supervised import Row

Log = Callable[[str], None]
MODES = ("local", "kind")


class Converged(Protocol):
    """What `up` did, for its one summary line."""

    seconds: float
    profile: str
    #: KCP managers the stack runs (lab.shards)
    n_shards: int

    @property
    def state(self) -> str:
        """The word for a converged stack: "healthy" (every probe answers) or "ready" (rolled out)."""
        ...

    def done(self) -> list[str]:
        """What this run changed, a phrase each; empty when nothing."""
        ...


class Management(Protocol):
    """One management cluster in one lab home."""

    #: "local" or "kind"
    mode: str
    #: Whether this machine's built-in `local` backing (tenant etcd and workload apiservers under the
    #: stack's supervisord) exists: only next to the local stack.
    local_backing: bool

    def up(self, profile: str | None, log: Log, shards: int | None = None) -> Converged:
        """Start or converge; safe to re-run. `profile` None: the one stored by the last up/tune;
        `shards` (KCP instances, lab.shards) None: the count stored by the last up."""
        ...

    def down(self, purge: bool) -> bool:
        """Stop what runs on this machine; True when something was running."""
        ...

    def tune(self, profile: str, log: Log) -> list[str]:
        """Store the tuning profile and apply it where the stack runs; the components restarted."""
        ...

    def status(self) -> list[Row]:
        """One row per supervised local component (none when nothing runs)."""
        ...

    def kubeconfig(self) -> Path:
        """The management cluster's admin kubeconfig, what every other command reads."""
        ...

    def metrics_targets(self) -> list[Target]:
        """The components' Prometheus endpoints a run samples (lab.metrics); empty when unknown."""
        ...


def current_mode(settings: Settings, mode: str | None = None) -> str:
    """The mode a command acts in: `mode` (lab up --mode) or a configured one (LAB_MODE, lab.yaml);
    with neither, "kind" while this lab home's kind management cluster is up (`lab up --mode kind`
    made it, `lab down` has not deleted it), else the default. Without that, `lab tune` after
    `lab up --mode kind` tuned a local stack that does not run (it started local managers, seen
    for real) and `lab down` left the kind cluster running. "local" asked for while the kind
    cluster is up is refused: one lab home holds one management cluster (one admin kubeconfig)."""
    asked = mode or (settings.mode if "mode" in settings.model_fields_set else None)
    in_kind = KindStack.created(settings)
    if asked == "local" and in_kind:
        raise UsageError(
            f"the management cluster of lab home {settings.home} runs in kind (lab up --mode kind made it): "
            "lab down first, or use another LAB_HOME for a local stack"
        )
    return asked or ("kind" if in_kind else settings.mode)


def for_settings(
    settings: Settings, mode: str | None = None, *, bmo_source: Path | None = None, offline: bool = False
) -> Management:
    """The provider for `mode` (default: current_mode). bmo_source: kind mode's local BMO tree;
    offline: kind mode with clusterctl's repository rendered from the module cache."""
    chosen = current_mode(settings, mode)
    if chosen == "kind":
        return KindStack(settings, bmo_source, offline)
    if offline:
        raise UsageError("--offline is for kind mode (lab up --mode kind --offline)")
    if chosen == "local":
        return LocalStack(settings)
    raise UsageError(f"mode must be one of {', '.join(MODES)}, not {chosen!r}")


def tuning_profile(settings: Settings) -> str | None:
    """The tuning profile the managers run with, as `lab up`/`lab tune` stored it; None before
    either has. Runs record it (lab.records.settings_snapshot) so a report can hold a manager's
    request rate against the client QPS limit it really had."""
    if current_mode(settings) == "kind":
        from lab.kindmgmt.up import read_state

        return read_state(settings).get("profile")
    from lab.stack.up import read_state as local_state

    return local_state(settings).get("tuning")


def shards(settings: Settings) -> int:
    """How many KCP shards the management cluster runs (lab.shards), as `lab up --shards` stored
    it: what the renderer labels each cluster's objects for. 1 before any up, and in kind mode,
    which does not shard."""
    if current_mode(settings) == "kind":
        return 1
    from lab.stack.up import current_shards

    return current_shards(settings)
