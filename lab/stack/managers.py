"""The CAPI, CAPM3, IPAM and BMO managers as local programs: identity, flags and environment.

Flags come from each main.go at the pinned versions (see lab/build.py's notes): the CAPI-style
managers (core, KCP, CABPK, CAPM3, IPAM) share controller-runtime + CAPI's util/flags, BMO uses Go's
flag package and has no webhook cert-dir flag, so its certs go where controller-runtime looks by
default: $TMPDIR/k8s-webhook-server/serving-certs.

Identity: each manager gets a client certificate for the user `lab:<manager>` in the groups
`system:serviceaccounts` and `system:serviceaccounts:<ns>` (its upstream namespace), i.e. the groups
its in-cluster ServiceAccount has. (The ServiceAccount's own user name,
system:serviceaccount:<ns>:<sa>, is up to 90 characters: too long for a certificate CN.) The
apiserver then classifies its requests as in a real cluster: API Priority and Fairness matches the
`service-accounts` flow schema by group (workload-low), where system:masters would have been exempt
from APF and so hidden the very throttling a scale lab is meant to show. Authorization is one ClusterRoleBinding to cluster-admin per manager: upstream RBAC
is narrower, but reproducing it buys nothing here and can only break when upstream adds a verb.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab import build, shards
from lab.config import Settings
from lab.runtime.supervise import Program
from lab.stack import mgmt, ports


@dataclass(frozen=True)
class Manager:
    name: str  # program name == build target
    component: str  # lab.versions key
    namespace: str
    service_account: str
    #: webhook manifests and CRD kustomizations served by this manager, relative to the module dir
    webhook_manifests: tuple[str, ...]
    crd_dirs: tuple[str, ...]
    go_flags: bool = False  # Go's flag package (single dash, no cert-dir flag): BMO

    @property
    def user(self) -> str:
        return f"lab:{self.name}"

    @property
    def groups(self) -> list[str]:
        return ["system:serviceaccounts", f"system:serviceaccounts:{self.namespace}"]


MANAGERS: tuple[Manager, ...] = (
    Manager(
        "capi-manager",
        "capi",
        "capi-system",
        "capi-manager",
        ("config/webhook/manifests.yaml",),
        ("config/crd",),
    ),
    Manager(
        "cabpk-manager",
        "capi",
        "capi-kubeadm-bootstrap-system",
        "capi-kubeadm-bootstrap-manager",
        ("bootstrap/kubeadm/config/webhook/manifests.yaml",),
        ("bootstrap/kubeadm/config/crd",),
    ),
    Manager(
        "kcp-manager",
        "capi",
        "capi-kubeadm-control-plane-system",
        "capi-kubeadm-control-plane-manager",
        ("controlplane/kubeadm/config/webhook/manifests.yaml",),
        ("controlplane/kubeadm/config/crd",),
    ),
    Manager(
        "ipam-manager",
        "ipam",
        "capm3-system",
        "ipam-manager",
        ("config/webhook/manifests.yaml",),
        ("config/crd",),
    ),
    Manager(
        "capm3-manager",
        "capm3",
        "capm3-system",
        "capm3-manager",
        ("config/webhook/manifests.yaml",),
        ("config/crd",),
    ),
    Manager(
        "bmo-manager",
        "bmo",
        "baremetal-operator-system",
        "baremetal-operator-controller-manager",
        ("config/base/webhook/manifests.yaml",),
        ("config/base/crds",),
        go_flags=True,
    ),
)
BY_NAME = {m.name: m for m in MANAGERS}
NAMES = tuple(BY_NAME)


def run_dir(settings: Settings, m: Manager) -> Path:
    return settings.run_dir / m.name


def cert_dir(settings: Settings, m: Manager) -> Path:
    """Where the manager's webhook server reads tls.crt/tls.key."""
    if m.go_flags:
        return run_dir(settings, m) / "tmp" / "k8s-webhook-server" / "serving-certs"
    return run_dir(settings, m) / "serving-certs"


def kubeconfig(settings: Settings, m: Manager) -> Path:
    return mgmt.kubeconfig_path(settings, m.name)


def ensure_identity(settings: Settings, m: Manager, p: mgmt.MgmtPKI) -> None:
    """Client kubeconfig and webhook serving cert (127.0.0.1) of one manager."""
    mgmt.ensure_kubeconfig(settings, p.ca, kubeconfig(settings, m), m.user, m.groups)
    mgmt.ensure_server(cert_dir(settings, m), "tls", p.webhook_ca, m.name, ["localhost"], [ports.LOOPBACK])


def argv(
    settings: Settings,
    m: Manager,
    tuning_flags: list[str],
    pp: ports.ManagerPorts | None = None,
    extra: tuple[str, ...] = (),
) -> list[str]:
    """`pp`: other ports than the manager's own (a KCP shard's); `extra` flags go before the tuning."""
    pp = pp or ports.manager(settings, m.name)
    exe = str(build.binary_path(settings, m.name))
    if m.go_flags:
        return [
            exe,
            "-test-mode",
            "-dev",
            f"-webhook-port={pp.webhook}",
            f"-health-addr={ports.LOOPBACK}:{pp.health}",
            f"-metrics-addr={ports.LOOPBACK}:{pp.metrics}",
            *tuning_flags,
        ]
    return [
        exe,
        "--leader-elect=false",
        f"--webhook-port={pp.webhook}",
        f"--webhook-cert-dir={cert_dir(settings, m)}",
        f"--health-addr={ports.LOOPBACK}:{pp.health}",
        # Plain HTTP metrics on loopback, so benchmarks can scrape without a token.
        f"--diagnostics-address={ports.LOOPBACK}:{pp.metrics}",
        "--insecure-diagnostics",
        *extra,
        *tuning_flags,
    ]


def env(settings: Settings, m: Manager, tuning_env: dict[str, str]) -> dict[str, str]:
    out = {"KUBECONFIG": str(kubeconfig(settings, m))}
    if m.go_flags:
        out |= {
            # controller-runtime's default webhook cert dir is under os.TempDir().
            "TMPDIR": str(run_dir(settings, m) / "tmp"),
            # Watch every namespace; the (unused) leader-election namespace is its upstream one.
            "WATCH_NAMESPACE": "",
            "POD_NAMESPACE": m.namespace,
        }
    return out | tuning_env


def program(settings: Settings, m: Manager, tuning_flags: list[str], tuning_env: dict[str, str]) -> Program:
    return Program(
        name=m.name,
        priority=400,
        argv=argv(settings, m, tuning_flags),
        env=env(settings, m, tuning_env),
        directory=run_dir(settings, m),
    )


def shard_program(
    settings: Settings, n: int, k: int, tuning_flags: list[str], tuning_env: dict[str, str]
) -> Program:
    """KCP shard n of k (lab.shards). K = 1: kcp-manager's program as it always was. K > 1: with
    `--watch-filter=shard-<n>`; shard 0 is kcp-manager itself (the webhook configurations name its
    port), shards 1.. are programs of their own with their own ports and working directory, the same
    identity and the same webhook serving certificate."""
    m = BY_NAME[shards.MANAGER]
    if k == 1:
        return program(settings, m, tuning_flags, tuning_env)
    name = shards.program(n)
    flags = (f"--watch-filter={shards.label_value(n)}",)
    return Program(
        name=name,
        priority=400,
        argv=argv(settings, m, tuning_flags, ports.shard(settings, n), flags),
        env=env(settings, m, tuning_env),
        directory=settings.run_dir / name,
    )


#: The identity lab scrapes BMO's metrics as: BMO serves them over HTTPS behind controller-runtime's
#: authn/authz filter, which accepts bearer tokens only (TokenReview), and has no flag to serve them
#: plainly. Its only permission: GET /metrics.
METRICS_READER_NAMESPACE = "kube-system"
METRICS_READER = "lab-metrics-reader"


def metrics_reader_objects() -> list[dict[str, Any]]:
    labels = {"app.kubernetes.io/managed-by": "lab"}
    name = f"lab:{METRICS_READER}"
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": METRICS_READER, "namespace": METRICS_READER_NAMESPACE, "labels": labels},
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": name, "labels": labels},
            "rules": [{"nonResourceURLs": ["/metrics"], "verbs": ["get"]}],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": name, "labels": labels},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
            "subjects": [
                {"kind": "ServiceAccount", "name": METRICS_READER, "namespace": METRICS_READER_NAMESPACE}
            ],
        },
    ]


def rbac_objects(managers: tuple[Manager, ...] = MANAGERS) -> list[dict[str, Any]]:
    """The managers' namespaces, one cluster-admin binding per manager identity, and the metrics
    reader."""
    out: list[dict[str, Any]] = []
    for ns in dict.fromkeys(m.namespace for m in managers):
        out.append({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    for m in managers:
        out.append(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": {"name": f"lab:{m.name}", "labels": {"app.kubernetes.io/managed-by": "lab"}},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": "cluster-admin",
                },
                "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": m.user}],
            }
        )
    return out + metrics_reader_objects()
