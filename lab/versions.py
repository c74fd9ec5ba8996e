"""The one version table.

Every pinned upstream version lives here and nowhere else; settings (lab.yaml, LAB_VERSIONS__*) may
override the version, never the module path. Pairing follows upstream: CAPM3 v1.N goes with CAPI v1.N,
IPAM v1.N and BMO v0.N.
"""

from __future__ import annotations

from dataclasses import dataclass

from lab.errors import UsageError


@dataclass(frozen=True)
class Component:
    key: str
    module: str
    default: str
    what: str


COMPONENTS: dict[str, Component] = {
    c.key: c
    for c in (
        Component("capi", "sigs.k8s.io/cluster-api", "v1.13.6", "Cluster API core, CABPK and KCP"),
        Component("capm3", "github.com/metal3-io/cluster-api-provider-metal3", "v1.13.2", "CAPM3"),
        Component("ipam", "github.com/metal3-io/ip-address-manager", "v1.13.2", "Metal3 IPAM"),
        Component("bmo", "github.com/metal3-io/baremetal-operator", "v0.13.2", "Bare Metal Operator"),
        Component("kubernetes", "k8s.io/kubernetes", "v1.35.4", "kube-apiserver, kube-controller-manager"),
        Component("etcd", "go.etcd.io/etcd/server/v3", "v3.6.5", "etcd (the release Kubernetes pins)"),
        # kind mode only. kind: the newest release on the Go module proxy when pinned (2026-11); its
        # node-image tooling builds kindest/node for the pinned Kubernetes (kind supports the
        # last minors, v1.35 among them). clusterctl has no row: it is part of the CAPI release and
        # must be the capi version above (lab.kindmgmt.preflight checks).
        Component("kind", "sigs.k8s.io/kind", "v0.33.0", "kind (management and backing clusters)"),
        # The cert-manager clusterctl v1.13.6 installs by default (CertManagerDefaultVersion in
        # cmd/clusterctl/client/config/cert_manager_client.go); pinned so another clusterctl build
        # cannot change it underneath a run.
        # kind mode's node image (lab.images_node): the etcd, CoreDNS and pause kubeadm v1.35.4 deploys,
        # read from its constants (cmd/kubeadm/app/constants/constants.go: DefaultEtcdVersion "3.6.6-0",
        # CoreDNSVersion "v1.13.1", PauseVersion "3.10.1"; `kubeadm config images list` prints the same).
        # kubeadm's etcd differs from lab's own (above): each is what its user expects.
        Component(
            "node_etcd", "go.etcd.io/etcd/server/v3", "v3.6.6", "etcd of the kind node image (kubeadm's)"
        ),
        Component("coredns", "github.com/coredns/coredns", "v1.13.1", "CoreDNS of the kind node image"),
        Component(
            "cert_manager", "github.com/cert-manager/cert-manager", "v1.21.1", "cert-manager (kind mode)"
        ),
        # kind mode offline only: renders cert-manager.yaml from the chart in the cert-manager module
        # with `helm template`, as cert-manager's release does; the version its Makefile tools list pins
        # for that (make/_shared/tools/00_mod.mk at v1.21.1: helm=v4.2.2).
        Component("helm", "helm.sh/helm/v4", "v4.2.2", "helm (renders cert-manager's manifest offline)"),
    )
}

#: The pause image kubeadm v1.35.4 expects (PauseVersion in the constants named above), built from
#: the pinned Kubernetes module's own C source (build/pause/linux/pause.c), so not a module row.
PAUSE = "3.10.1"

#: Oldest Go toolchain that builds every component above (their go.mod files say go 1.25.0).
GO_MIN = (1, 25)

#: Module paths whose checksums the public sum database does not serve; fetched with GONOSUMDB.
NOSUMDB = ("github.com/metal3-io",)


def defaults() -> dict[str, str]:
    return {k: c.default for k, c in COMPONENTS.items()}


# --- upgrades (`lab upgrade-clusters --to`) ------------------------------------------------------

#: The newest Kubernetes minor each CAPI minor supports on workload clusters: CAPI's own support
#: matrix (docs/book/src/reference/versions.md at v1.13.6: Kubernetes v1.36 with CAPI >= v1.13.1).
#: A CAPI minor missing here has no upgrade table: lab refuses every upgrade rather than guess.
WORKLOAD_KUBERNETES_MAX: dict[tuple[int, int], tuple[int, int]] = {(1, 13): (1, 36)}


def parse_release(version: str) -> tuple[int, int, int] | None:
    """(major, minor, patch) of a release version `vX.Y.Z`; None for anything else (pre-releases
    and build metadata included: no such Kubernetes is pinned or upgraded to)."""
    head, dot = version[:1], version[1:].split(".")
    if head != "v" or len(dot) != 3 or not all(p.isdigit() and (p == "0" or p[0] != "0") for p in dot):
        return None
    return int(dot[0]), int(dot[1]), int(dot[2])


def check_upgrade(current: str, target: str, capi: str) -> tuple[int, int, int]:
    """`target` parsed, when a KubeadmControlPlane at `current` may be upgraded to it under CAPI
    `capi`; else one UsageError saying why. Supported, as KCP and CAPI have it:
    - a newer release of the same major (downgrades roll nothing KCP supports back);
    - at most one minor up: KCP's webhook refuses skipping a minor (controlplane/kubeadm/internal/
      webhooks validateVersion: the target must be below current minor + 2);
    - no newer minor than CAPI supports for workload clusters (WORKLOAD_KUBERNETES_MAX).
    """
    to = parse_release(target)
    if to is None:
        raise UsageError(f"--to must be a Kubernetes release vX.Y.Z, got {target!r}")
    now = parse_release(current)
    if now is None:
        raise UsageError(f"the current Kubernetes version {current!r} is not a release vX.Y.Z")
    capi_v = parse_release(capi)
    ceiling = WORKLOAD_KUBERNETES_MAX.get(capi_v[:2]) if capi_v else None
    if ceiling is None:
        raise UsageError(f"no upgrade table for CAPI {capi}: lab.versions.WORKLOAD_KUBERNETES_MAX")
    if to <= now:
        raise UsageError(f"--to {target} is not newer than {current}: only upgrades are supported")
    if to[0] != now[0]:
        raise UsageError(f"--to {target} changes the major version of {current}: not supported")
    if to[1] > now[1] + 1:
        raise UsageError(
            f"--to {target} skips a minor from {current}: KCP upgrades one minor at a time "
            f"(v{now[0]}.{now[1] + 1}.x first)"
        )
    if to[:2] > ceiling:
        raise UsageError(
            f"--to {target}: CAPI {capi} supports workload clusters up to Kubernetes "
            f"v{ceiling[0]}.{ceiling[1]}"
        )
    return to
