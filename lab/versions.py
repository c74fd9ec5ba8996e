"""The one version table.

Every pinned upstream version lives here and nowhere else; settings (lab.yaml, LAB_VERSIONS__*) may
override the version, never the module path. Pairing follows upstream: CAPM3 v1.N goes with CAPI v1.N,
IPAM v1.N and BMO v0.N.
"""

from __future__ import annotations

from dataclasses import dataclass


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
