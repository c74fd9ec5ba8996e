"""kind mode: the management cluster as a kind cluster, CAPI/CAPM3/IPAM from `clusterctl init`, BMO
from a test-mode kustomize overlay, and the managers tuned by JSON patches from lab.tuning.

Each concern is a module: `cluster` (kind config and the kind CLI), `clusterctl` (init command and
the provider inventory), `bmo` (the overlay), `patches` (tuning patches), `lease` (leader-election
deadlines and the Lease handover after a rollout), `probes` (the managers' probe timeouts),
`preflight` (tools), `offline` and `offline_images` (the clusterctl repository and images offline),
`certs` (lab in cert-manager's place offline), `up` (the order of the steps). Everything that can be
a pure function is one, so the tests check it without Docker; only `up`, `lease.release_stale` and
the `ensure_*` functions touch a cluster or run tools.
"""

from __future__ import annotations

from pathlib import Path

from lab.config import Settings


def kind_dir(settings: Settings) -> Path:
    """Where kind mode keeps what it rendered and applied: configs, the BMO build, patches, kubeconfig."""
    return settings.home / "kind"


def kubeconfig_path(settings: Settings) -> Path:
    """The management kubeconfig every other command reads (lab kubeconfig, create-clusters, ...):
    in kind mode it is the kind cluster's."""
    return settings.admin_kubeconfig
