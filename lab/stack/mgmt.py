"""The management cluster's own control plane: its PKI and the argv of etcd, kube-apiserver and
kube-controller-manager.

The management etcd is a separate process from the multi-tenant etcd (so workload-cluster churn never
slows the controllers' store) with its own CA. Everything listens on 127.0.0.1 only; etcd takes
client certificates only; the apiserver authenticates by client certificate (admin: system:masters)
and authorizes with RBAC. No kubelet exists, so nothing here needs the Node authorizer or nodes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab import build, pki, pki_store
from lab.config import Settings
from lab.errors import LabError
from lab.kube import Client
from lab.runtime.files import write_private
from lab.runtime.supervise import Program
from lab.stack import ports

LOOPBACK = ports.LOOPBACK
#: The management cluster's Service network; nothing routes it (no kube-proxy), the apiserver only
#: allocates the `kubernetes` Service IP from it.
SERVICE_CIDR = "10.0.0.0/24"
SERVICE_IP = "10.0.0.1"
SA_ISSUER = "https://kubernetes.default.svc.cluster.local"
APISERVER_DNS = [
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
]
ADMIN_USER = "kubernetes-admin"
KCM_USER = "system:kube-controller-manager"
#: kube-controller-manager controllers (1.35 names): namespace deletion, owner-reference garbage
#: collection, service accounts and their tokens, kube-root-ca.crt in every namespace. Nothing
#: that needs nodes, pods or a cloud.
KCM_CONTROLLERS = (
    "namespace-controller",
    "garbage-collector-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "root-ca-certificate-publisher-controller",
)
ETCD_MEMBER = "lab-mgmt"


def pki_dir(settings: Settings) -> Path:
    return settings.pki_dir / "mgmt"


def etcd_data_dir(settings: Settings) -> Path:
    return settings.home / "etcd" / "mgmt"


def admin_kubeconfig_path(settings: Settings) -> Path:
    """The management cluster's admin kubeconfig (0600), what `lab kubeconfig` prints."""
    return settings.admin_kubeconfig


def client(settings: Settings, **kw: Any) -> Client:
    """A client of the management cluster as its admin (Client's keywords pass through); one
    LabError line when there is no management cluster here yet."""
    path = admin_kubeconfig_path(settings)
    if not path.is_file():
        raise LabError("the management cluster is not set up here (no kubeconfig): run lab up")
    return Client.from_kubeconfig(path, **kw)


def kubeconfig_path(settings: Settings, user: str) -> Path:
    """Kubeconfig of one in-stack identity (kcm, each manager), 0600 under pki/mgmt."""
    return pki_dir(settings) / f"{user}.kubeconfig"


def apiserver_url(settings: Settings) -> str:
    return f"https://{LOOPBACK}:{settings.ports.mgmt_apiserver}"


def etcd_url(settings: Settings) -> str:
    return f"https://{LOOPBACK}:{settings.ports.mgmt_etcd}"


def etcd_peer_url(settings: Settings) -> str:
    return f"https://{LOOPBACK}:{settings.ports.mgmt_etcd_peer}"


@dataclass(frozen=True)
class MgmtPKI:
    etcd_ca: pki.KeyPair
    ca: pki.KeyPair
    webhook_ca: pki.KeyPair


#: the one implementation (lab.pki_store), shared with kind mode's cert-manager stand-in
ensure_server = pki_store.ensure_server
ensure_client = pki_store.ensure_client


def client_files(settings: Settings, kubeconfig: Path) -> tuple[Path, Path]:
    """(cert, key) files of the client identity embedded in one of our kubeconfigs."""
    stem = kubeconfig.name.removesuffix(".kubeconfig")
    d = pki_dir(settings) / "clients"
    return d / f"{stem}.crt", d / f"{stem}.key"


def ensure_kubeconfig(settings: Settings, ca: pki.KeyPair, path: Path, cn: str, orgs: list[str]) -> None:
    """A client-cert kubeconfig for the management apiserver; rewritten only when stale."""
    stem = path.name.removesuffix(".kubeconfig")
    client = ensure_client(client_files(settings, path)[0].parent, stem, ca, cn, orgs)
    data = pki.render_kubeconfig("lab-mgmt", apiserver_url(settings), ca.cert_pem, client, user=stem)
    if not path.exists() or path.read_bytes() != data:
        write_private(path, data)


def ensure_pki(settings: Settings) -> MgmtPKI:
    d = pki_dir(settings)
    etcd_ca = pki_store.load_or_create_ca(d / "etcd-ca", "lab-mgmt-etcd-ca")
    ca = pki_store.load_or_create_ca(d / "ca", "lab-mgmt-ca")
    webhook_ca = pki_store.load_or_create_ca(d / "webhook-ca", "lab-webhook-ca")
    ensure_server(d, "etcd-server", etcd_ca, ETCD_MEMBER, ["localhost"], [LOOPBACK], client_auth=True)
    ensure_client(d, "apiserver-etcd-client", etcd_ca, "kube-apiserver-etcd-client", [])
    ensure_server(d, "apiserver", ca, "kube-apiserver", APISERVER_DNS, [LOOPBACK, SERVICE_IP])
    if pki_store.load_keypair(d, "sa") is None:
        pki_store.write_keypair(d, "sa", pki.new_sa_keypair())
    ensure_kubeconfig(settings, ca, admin_kubeconfig_path(settings), ADMIN_USER, [pki.ADMIN_ORG])
    ensure_kubeconfig(settings, ca, kubeconfig_path(settings, "kube-controller-manager"), KCM_USER, [])
    return MgmtPKI(etcd_ca=etcd_ca, ca=ca, webhook_ca=webhook_ca)


def etcd_program(settings: Settings) -> Program:
    d = pki_dir(settings)
    ca = d / "etcd-ca" / "ca.crt"
    return Program(
        name="mgmt-etcd",
        priority=100,
        argv=[
            str(build.binary_path(settings, "etcd")),
            f"--name={ETCD_MEMBER}",
            f"--data-dir={etcd_data_dir(settings)}",
            f"--listen-client-urls={etcd_url(settings)}",
            f"--advertise-client-urls={etcd_url(settings)}",
            f"--listen-peer-urls={etcd_peer_url(settings)}",
            f"--initial-advertise-peer-urls={etcd_peer_url(settings)}",
            f"--initial-cluster={ETCD_MEMBER}={etcd_peer_url(settings)}",
            "--initial-cluster-state=new",
            f"--listen-metrics-urls=http://{LOOPBACK}:{ports.mgmt_etcd_metrics(settings)}",
            f"--cert-file={d / 'etcd-server.crt'}",
            f"--key-file={d / 'etcd-server.key'}",
            f"--trusted-ca-file={ca}",
            "--client-cert-auth=true",
            f"--peer-cert-file={d / 'etcd-server.crt'}",
            f"--peer-key-file={d / 'etcd-server.key'}",
            f"--peer-trusted-ca-file={ca}",
            "--peer-client-cert-auth=true",
            # What kubeadm's etcd does: keep the history compacted by the apiserver, 8 GiB quota.
            "--quota-backend-bytes=8589934592",
            "--snapshot-count=10000",
            "--log-level=warn",
        ],
    )


def apiserver_program(settings: Settings) -> Program:
    d = pki_dir(settings)
    return Program(
        name="kube-apiserver",
        priority=200,
        stopwaitsecs=30,
        argv=[
            str(build.binary_path(settings, "kube-apiserver")),
            f"--etcd-servers={etcd_url(settings)}",
            f"--etcd-cafile={d / 'etcd-ca' / 'ca.crt'}",
            f"--etcd-certfile={d / 'apiserver-etcd-client.crt'}",
            f"--etcd-keyfile={d / 'apiserver-etcd-client.key'}",
            f"--bind-address={LOOPBACK}",
            f"--advertise-address={LOOPBACK}",
            f"--secure-port={settings.ports.mgmt_apiserver}",
            f"--tls-cert-file={d / 'apiserver.crt'}",
            f"--tls-private-key-file={d / 'apiserver.key'}",
            f"--client-ca-file={d / 'ca' / 'ca.crt'}",
            f"--service-account-issuer={SA_ISSUER}",
            f"--service-account-key-file={d / 'sa.crt'}",
            f"--service-account-signing-key-file={d / 'sa.key'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--authorization-mode=RBAC",
            "--enable-admission-plugins=NamespaceLifecycle,ServiceAccount,MutatingAdmissionWebhook,"
            "ValidatingAdmissionWebhook,ValidatingAdmissionPolicy",
            # No kubelet and no kube-proxy: a loopback address in the kubernetes Endpoints is invalid.
            "--endpoint-reconciler-type=none",
            "--allow-privileged=true",
            "--profiling=false",
        ],
    )


def kcm_program(settings: Settings) -> Program:
    d = pki_dir(settings)
    return Program(
        name="kube-controller-manager",
        priority=300,
        argv=[
            str(build.binary_path(settings, "kube-controller-manager")),
            f"--kubeconfig={kubeconfig_path(settings, 'kube-controller-manager')}",
            f"--controllers={','.join(KCM_CONTROLLERS)}",
            f"--root-ca-file={d / 'ca' / 'ca.crt'}",
            f"--service-account-private-key-file={d / 'sa.key'}",
            # Each controller as its own kube-system ServiceAccount (as kubeadm runs it): the
            # bootstrap roles system:controller:<name> grant them what they do; kcm's own user cannot.
            "--use-service-account-credentials=true",
            "--leader-elect=false",
            f"--bind-address={LOOPBACK}",
            f"--secure-port={ports.kcm(settings)}",
            f"--cert-dir={settings.run_dir / 'kube-controller-manager'}",
            "--profiling=false",
        ],
    )
