"""What every workload kube-apiserver runs with, wherever it runs: the memory trims, the Go heap
target, the files it reads and every flag but its listen address.

A leaf (pure data and pure functions): the local and process backings (lab.backing.local) build
their supervised processes from it, and the kind backing's manifests (lab.manifests.backing_apiserver)
their Deployments, so no manifest module needs a runtime to know the flags.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from lab import pki
from lab.config import Settings
from lab.tenant_etcd import apiserver_etcd_flags

#: Admission plugins a fake cluster needs none of: no kubelet, no controllers, no webhooks, no quota.
#: NamespaceLifecycle stays (it keeps kube-system undeletable, as on a real cluster).
DISABLED_ADMISSION = (
    "LimitRanger",
    "ServiceAccount",
    "TaintNodesByCondition",
    "PodSecurity",
    "Priority",
    "DefaultTolerationSeconds",
    "DefaultStorageClass",
    "StorageObjectInUseProtection",
    "PersistentVolumeClaimResize",
    "RuntimeClass",
    "CertificateApproval",
    "CertificateSigning",
    "ClusterTrustBundleAttest",
    "CertificateSubjectRestriction",
    "DefaultIngressClass",
    "PodTopologyLabels",
    "NodeDeclaredFeatureValidator",
    "MutatingAdmissionPolicy",
    "MutatingAdmissionWebhook",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionWebhook",
    "ResourceQuota",
)

#: The memory trims (benchmarks/apiserver_rss.py: 266 -> 248 MiB median idle RSS before GOGC; the
#: seed's set alone gives 251). Groups CAPI, KCP and CAPM3 call (core v1, apps/v1, rbac,
#: storage.k8s.io/v1, policy/v1, coordination) are GA and stay; alpha and beta groups are off.
TRIM_FLAGS = (
    "--profiling=false",
    "--watch-cache=false",
    "--enable-priority-and-fairness=false",
    "--enable-garbage-collector=false",
    "--etcd-count-metric-poll-period=0",
    "--etcd-db-metric-poll-interval=0",
    "--runtime-config=api/alpha=false,api/beta=false",
    f"--disable-admission-plugins={','.join(DISABLED_ADMISSION)}",
    # No Service endpoints to keep (no kube-proxy) and no lease churn in the tenant etcd.
    "--endpoint-reconciler-type=none",
    "--event-ttl=10m",
)

#: Go heap target: GOGC=25 cut the median idle RSS 248 -> 190 MiB for ~1 mCPU more per idle apiserver;
#: GOGC=10 saves 10 MiB more for 45% more idle CPU, GOMEMLIMIT=150MiB less than GOGC=50 (benchmark).
ENV = {"GOGC": "25"}


@dataclass(frozen=True)
class PkiPaths:
    """The files lab.pki_store.cluster_pki writes, as the apiserver reads them."""

    ca: Path
    cert: Path
    key: Path
    sa_pub: Path
    sa_key: Path
    etcd_ca: Path
    etcd_cert: Path
    etcd_key: Path
    kubeconfig: Path

    @classmethod
    def of(cls, settings: Settings, name: str) -> PkiPaths:
        d = pki.cluster_pki_dir(settings, name)
        return cls(
            ca=d / "ca.crt",
            cert=d / "apiserver.crt",
            key=d / "apiserver.key",
            sa_pub=d / "sa.pub",
            sa_key=d / "sa.key",
            etcd_ca=d / "etcd-ca.crt",
            etcd_cert=d / "apiserver-etcd-client.crt",
            etcd_key=d / "apiserver-etcd-client.key",
            kubeconfig=d / "admin.kubeconfig",
        )


def apiserver_flags(
    name: str, paths: PkiPaths, etcd_servers: str, trims: Iterable[str] = TRIM_FLAGS
) -> list[str]:
    """Pure: every flag but the listen address, shared by the local and process backings' processes
    (lab.backing.local) and the kind backing's Deployments (lab.manifests.backing_apiserver), so all
    run the same trimmed apiserver."""
    return [
        f"--tls-cert-file={paths.cert}",
        f"--tls-private-key-file={paths.key}",
        # CAPI's <cluster>-kubeconfig and lab's admin kubeconfig carry client certs of this CA.
        f"--client-ca-file={paths.ca}",
        "--authorization-mode=RBAC",
        f"--service-account-issuer=https://kubernetes.default.svc.{pki.CLUSTER_DOMAIN}",
        f"--service-account-key-file={paths.sa_pub}",
        f"--service-account-signing-key-file={paths.sa_key}",
        f"--service-cluster-ip-range={pki.SERVICE_CIDR}",
        *apiserver_etcd_flags(name, etcd_servers, paths.etcd_ca, paths.etcd_cert, paths.etcd_key),
        *trims,
    ]
