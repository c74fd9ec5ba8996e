"""kind mode offline: lab plays cert-manager's part, so no cert-manager controller has to run.

Why: cert-manager's three images cannot be built from the Go module proxy (its cmd/ modules are
nested modules the proxy does not serve, and the controller needs github.com/Venafi/vcert, which
the proxy refuses), and offline nothing can be pulled. What the providers need of cert-manager is
small: each provider's components carry a self-signed `Issuer`, a `Certificate` whose Secret the
manager's webhook server mounts, and `cert-manager.io/inject-ca-from` annotations asking cainjector
to copy that Secret's `ca.crt` into webhook configurations and CRD conversion webhooks.

How clusterctl is kept real (cluster-api v1.13 cmd/clusterctl/client/cluster/cert_manager.go):
`clusterctl init` calls EnsureInstalled, which first tries waitForAPIReady(retry=false): it creates
(create-or-update) a Namespace `cert-manager-test`, a selfSigned Issuer and a Certificate, then
deletes them. If all three creates succeed it logs "Skipping installing cert-manager as it is
already installed" and goes on; it never waits for the Certificate to be issued. So cert-manager's
CRDs alone (from the cert-manager.yaml lab renders from the chart) make clusterctl skip cert-manager
and install the providers as usual, with a true Provider inventory. The one clusterctl flag lab
drops on this path is `--wait-providers`: the managers cannot start before their Secrets exist, and
clusterctl would wait for them while lab, which issues the Secrets, waited for clusterctl. lab then
waits for every manager Deployment itself, as it does on every path.

What lab does in cert-manager's place (ensure(), re-run on every `lab up`, changing nothing when
everything fits):
- the controller: for every Certificate whose issuerRef is a selfSigned Issuer or ClusterIssuer,
  a serving pair from lab's own CA (lab.pki_store.ensure_server: the same function that keeps the
  local managers' webhook certificates; the CA and each key in 0600 files under
  <home>/kind/pki), stored in spec.secretName as cert-manager stores it (type kubernetes.io/tls,
  tls.crt, tls.key, ca.crt, the cert-manager.io/* annotations, spec.secretTemplate's labels and
  annotations) and the Certificate's status set Ready. Deviations: the key is ECDSA P-256 (lab's
  default; cert-manager's is RSA-2048 unless spec.privateKey says otherwise), signed by lab's CA
  rather than self-signed (so one CA bundle serves every webhook), and the subject's CN is the
  Certificate's name when spec.commonName is empty (lab's certificates always carry a CN; the DNS
  names are often longer than the 64 characters a CN may hold, and TLS clients read the SANs).
- cainjector: every ValidatingWebhookConfiguration, MutatingWebhookConfiguration and CRD (when its
  conversion strategy is Webhook) annotated `cert-manager.io/inject-ca-from: <namespace>/<name>`
  gets that Certificate's ca.crt as caBundle, by a JSON patch only where it differs.
A Secret whose content already fits is not written again; a pair is re-issued only when it no
longer fits (lab's CA, names, 7 days before expiry), so a second `lab up` changes nothing. When a
cert-manager controller runs in the cluster (one made online), lab leaves certificates to it.
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lab import pki, pki_store
from lab.config import Settings
from lab.kindmgmt import kind_dir
from lab.kube import ApiError, Client, waits

Log = Callable[[str], None]
Obj = dict[str, Any]

CERT_API = "cert-manager.io/v1"
GROUP = "cert-manager.io"
INJECT = "cert-manager.io/inject-ca-from"
#: cert-manager's controller Deployment as its chart names it (namespace cert-manager)
CONTROLLER = ("cert-manager", "cert-manager")
FIELD_MANAGER = "lab-cert-manager"
CA_NAME = "lab-kind-webhook-ca"
JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
INJECT_ATTEMPTS = 5  # re-reads after a concurrent write to the same object
WEBHOOK_KINDS = ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration")
ADMISSION_API = "admissionregistration.k8s.io/v1"
CRD_API = "apiextensions.k8s.io/v1"


# --- pure ----------------------------------------------------------------------------------------


def crds_of(text: str) -> list[Obj]:
    """The CustomResourceDefinitions of a multi-document YAML text (cert-manager.yaml)."""
    return [
        d
        for d in yaml.safe_load_all(text)
        if isinstance(d, dict) and d.get("kind") == "CustomResourceDefinition"
    ]


@dataclass(frozen=True)
class Wanted:
    """What one Certificate asks for."""

    namespace: str
    name: str
    secret: str
    common_name: str
    dns: tuple[str, ...]
    ips: tuple[str, ...]
    organizations: tuple[str, ...]
    issuer_kind: str
    issuer_name: str
    secret_labels: dict[str, str] = field(default_factory=dict, hash=False)
    secret_annotations: dict[str, str] = field(default_factory=dict, hash=False)

    @property
    def key(self) -> tuple[str, str]:
        return self.namespace, self.name


def _self_signed(issuer: Obj | None) -> bool:
    return issuer is not None and "selfSigned" in (issuer.get("spec") or {})


def wanted(cert: Obj, issuers: dict[tuple[str, str, str], Obj]) -> Wanted | str:
    """A Certificate lab issues, or why not (a phrase). issuers: (kind, namespace or "", name)."""
    meta, spec = cert.get("metadata") or {}, cert.get("spec") or {}
    ns, name = meta.get("namespace", ""), meta.get("name", "")
    ref = spec.get("issuerRef") or {}
    kind, group = ref.get("kind") or "Issuer", ref.get("group") or GROUP
    if group != GROUP or kind not in ("Issuer", "ClusterIssuer"):
        return f"{ns}/{name}: issuer {kind}.{group} is not cert-manager's"
    issuer = issuers.get((kind, ns if kind == "Issuer" else "", ref.get("name", "")))
    if not _self_signed(issuer):
        return f"{ns}/{name}: {kind} {ref.get('name')} is missing or not selfSigned"
    dns = tuple(spec.get("dnsNames") or [])
    ips = tuple(spec.get("ipAddresses") or [])
    if not spec.get("secretName") or not (dns or ips):
        return f"{ns}/{name}: no secretName or no dnsNames/ipAddresses"
    template = spec.get("secretTemplate") or {}
    return Wanted(
        namespace=ns,
        name=name,
        secret=spec["secretName"],
        common_name=spec.get("commonName") or name[:64],
        dns=dns,
        ips=ips,
        organizations=tuple((spec.get("subject") or {}).get("organizations") or []),
        issuer_kind=kind,
        issuer_name=ref.get("name", ""),
        secret_labels=dict(template.get("labels") or {}),
        secret_annotations=dict(template.get("annotations") or {}),
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def secret_for(w: Wanted, kp: pki.KeyPair, ca_pem: bytes) -> Obj:
    """The Secret cert-manager would write for the Certificate."""
    annotations = {
        **w.secret_annotations,
        "cert-manager.io/certificate-name": w.name,
        "cert-manager.io/issuer-name": w.issuer_name,
        "cert-manager.io/issuer-kind": w.issuer_kind,
        "cert-manager.io/issuer-group": GROUP,
        "cert-manager.io/common-name": w.common_name,
        "cert-manager.io/alt-names": ",".join(w.dns),
        "cert-manager.io/ip-sans": ",".join(w.ips),
    }
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": w.secret,
            "namespace": w.namespace,
            "labels": {**w.secret_labels, "app.kubernetes.io/managed-by": "lab"},
            "annotations": annotations,
        },
        "type": "kubernetes.io/tls",
        "data": {"tls.crt": _b64(kp.cert_pem), "tls.key": _b64(kp.key_pem), "ca.crt": _b64(ca_pem)},
    }


def secret_fits(have: Obj | None, want: Obj) -> bool:
    if have is None or have.get("type") != want["type"] or have.get("data") != want["data"]:
        return False
    meta = have.get("metadata") or {}
    labels, annotations = meta.get("labels") or {}, meta.get("annotations") or {}
    return all(labels.get(k) == v for k, v in want["metadata"]["labels"].items()) and all(
        annotations.get(k) == v for k, v in want["metadata"]["annotations"].items()
    )


def _rfc3339(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def status_patch(cert: Obj, kp: pki.KeyPair) -> Obj | None:
    """The status cert-manager's controller reports for an issued Certificate; None when it is there."""
    status = cert.get("status") or {}
    generation = (cert.get("metadata") or {}).get("generation")
    not_after = _rfc3339(kp.not_after)
    ready = [c for c in status.get("conditions") or [] if c.get("type") == "Ready"]
    if (
        status.get("notAfter") == not_after
        and ready
        and ready[0].get("status") == "True"
        and ready[0].get("observedGeneration") == generation
    ):
        return None
    return {
        "status": {
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "Ready",
                    "message": "Certificate is up to date and has not expired (issued by lab)",
                    "lastTransitionTime": _rfc3339(dt.datetime.now(dt.UTC)),
                    "observedGeneration": generation,
                }
            ],
            "notBefore": _rfc3339(kp.cert.not_valid_before_utc),
            "notAfter": not_after,
            "revision": status.get("revision") or 1,
        }
    }


def inject_target(obj: Obj) -> tuple[str, str] | None:
    """(namespace, certificate) an object's inject-ca-from annotation names."""
    value = ((obj.get("metadata") or {}).get("annotations") or {}).get(INJECT, "")
    ns, _, name = value.partition("/")
    return (ns, name) if ns and name else None


def injection(obj: Obj, ca_pem: bytes) -> list[Obj]:
    """JSON-patch ops that put ca_pem into every caBundle of a webhook configuration or a CRD's
    conversion webhook where it differs (no ops: nothing to do). A `test` of the resourceVersion
    first, so a concurrent writer makes the patch fail instead of being overwritten."""
    bundle = _b64(ca_pem)
    ops: list[Obj] = []
    if obj.get("kind") in WEBHOOK_KINDS:
        for i, hook in enumerate(obj.get("webhooks") or []):
            if (hook.get("clientConfig") or {}).get("caBundle") != bundle:
                ops.append({"op": "add", "path": f"/webhooks/{i}/clientConfig/caBundle", "value": bundle})
    elif obj.get("kind") == "CustomResourceDefinition":
        conversion = (obj.get("spec") or {}).get("conversion") or {}
        client_config = (conversion.get("webhook") or {}).get("clientConfig") or {}
        webhook = conversion.get("strategy") == "Webhook" and bool(client_config)
        if webhook and client_config.get("caBundle") != bundle:
            path = "/spec/conversion/webhook/clientConfig/caBundle"
            ops.append({"op": "add", "path": path, "value": bundle})
    if not ops:
        return []
    version = obj["metadata"]["resourceVersion"]
    return [{"op": "test", "path": "/metadata/resourceVersion", "value": version}, *ops]


# --- against the cluster -------------------------------------------------------------------------


def pki_dir(settings: Settings) -> Path:
    """lab's CA (ca/) and one serving pair per Certificate (certs/<namespace>/<name>.*), keys 0600."""
    return kind_dir(settings) / "pki"


def cert_manager_runs(client: Client) -> bool:
    """A cert-manager controller in the cluster (installed online): then it issues, not lab."""
    return client.get("apps/v1", "Deployment", CONTROLLER[1], CONTROLLER[0]) is not None


def install_crds(client: Client, cert_manager_yaml: Path, log: Log = lambda _m: None) -> list[str]:
    """cert-manager's CRDs alone (what makes clusterctl skip installing cert-manager), established."""
    objs = crds_of(cert_manager_yaml.read_text())
    log(
        f"applying cert-manager's {len(objs)} CRDs (lab issues the certificates: no cert-manager controllers)"
    )
    client.apply(objs)
    names = [o["metadata"]["name"] for o in objs]
    waits.wait_established(client, names)
    return names


@dataclass
class Result:
    issued: list[str] = field(default_factory=list)  # Secrets written (new or changed)
    kept: list[str] = field(default_factory=list)  # Secrets that already fit
    injected: list[str] = field(default_factory=list)  # objects whose caBundle was patched
    skipped: list[str] = field(default_factory=list)  # Certificates lab does not issue, and why


def ensure(settings: Settings, client: Client, log: Log = lambda _m: None) -> Result:
    """Issue every Certificate of the cluster lab can issue, then inject the CA bundles."""
    out = Result()
    ca = pki_store.load_or_create_ca(pki_dir(settings) / "ca", CA_NAME)
    ca_of = _issue_all(settings, client, ca, out)
    _inject_all(client, ca_of, out)
    log(
        f"certificates (lab's CA in cert-manager's place): {len(out.issued)} issued, {len(out.kept)} "
        f"up to date, CA bundle injected into {len(out.injected)} object(s)"
        + (f"; not lab's to issue: {'; '.join(out.skipped)}" if out.skipped else "")
    )
    return out


def _issue_all(
    settings: Settings, client: Client, ca: pki.KeyPair, out: Result
) -> dict[tuple[str, str], bytes]:
    """The controller's part: every Certificate's Secret and status; (namespace, name) -> its ca.crt."""
    issuers = {
        (o["kind"], (o["metadata"].get("namespace") or ""), o["metadata"]["name"]): o
        for kind in ("Issuer", "ClusterIssuer")
        for o in client.list(CERT_API, kind)
    }
    ca_of: dict[tuple[str, str], bytes] = {}
    for cert in client.list(CERT_API, "Certificate"):
        if cert["metadata"].get("deletionTimestamp"):
            continue
        w = wanted(cert, issuers)
        if isinstance(w, str):
            out.skipped.append(w)
            continue
        kp = pki_store.ensure_server(
            pki_dir(settings) / "certs" / w.namespace,
            w.name,
            ca,
            w.common_name,
            list(w.dns),
            list(w.ips),
            organizations=list(w.organizations),
        )
        secret = secret_for(w, kp, ca.cert_pem)
        what = f"{w.namespace}/{w.secret}"
        if secret_fits(client.get("v1", "Secret", w.secret, w.namespace), secret):
            out.kept.append(what)
        else:
            client.apply_one(secret, field_manager=FIELD_MANAGER)
            out.issued.append(what)
        patch = status_patch(cert, kp)
        if patch is not None:
            path = client.resource(CERT_API, "Certificate").path(w.namespace, w.name) + "/status"
            client.request("PATCH", path, body=patch, content_type=MERGE_PATCH)
        ca_of[w.key] = ca.cert_pem
    return ca_of


def _inject_all(client: Client, ca_of: dict[tuple[str, str], bytes], out: Result) -> None:
    """cainjector's part, for the Certificates lab issued."""
    for api, kinds in ((ADMISSION_API, WEBHOOK_KINDS), (CRD_API, ("CustomResourceDefinition",))):
        for kind in kinds:
            for obj in client.list(api, kind):
                target = inject_target(obj)
                if target in ca_of and inject(client, api, kind, obj, ca_of[target]):
                    out.injected.append(f"{kind}/{obj['metadata']['name']}")


def inject(client: Client, api: str, kind: str, obj: Obj, ca_pem: bytes) -> bool:
    """Patch ca_pem into obj's caBundles; False when they already hold it. When the object changed
    since it was read, the patch's resourceVersion `test` fails (422, the apiserver gives no cause):
    read it again and retry. Right after `clusterctl init` the apiserver (a new CRD's status) and
    CAPI's CRD migrator write the CRDs lab has just listed. A 422 on an unchanged object is raised."""
    name = obj["metadata"]["name"]
    path = client.resource(api, kind).path(None, name)
    params = {"fieldManager": FIELD_MANAGER}
    for attempt in range(INJECT_ATTEMPTS):
        ops = injection(obj, ca_pem)
        if not ops:
            return False
        try:
            client.request("PATCH", path, body=ops, content_type=JSON_PATCH, params=params)
            return True
        except ApiError as e:
            if e.status != 422 or attempt == INJECT_ATTEMPTS - 1:
                raise
            fresh = client.get(api, kind, name)
            if fresh is None:
                return False  # deleted meanwhile: nothing to inject
            if fresh["metadata"]["resourceVersion"] == obj["metadata"]["resourceVersion"]:
                raise  # not a concurrent write: the patch itself is wrong
            obj = fresh
    return False  # not reached: the last attempt returns or raises
