"""lab in cert-manager's place, its pure parts: which Certificates lab issues, the Secret and status it
writes, and the caBundle patches cainjector would make. Against a real kube-apiserver and clusterctl:
tests/integration/test_kindmgmt_offline_repo.py; in a kind cluster with the managers running:
tests/integration/test_kindmgmt_up_offline.py."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from lab import pki
from lab.kindmgmt import certs

CA = pki.new_ca("test-ca")
CAPI_ISSUER = {
    "kind": "Issuer",
    "metadata": {"namespace": "capi-system", "name": "capi-selfsigned-issuer"},
    "spec": {"selfSigned": {}},
}
ISSUERS = {("Issuer", "capi-system", "capi-selfsigned-issuer"): CAPI_ISSUER}


def _cert(**spec: Any) -> dict[str, Any]:
    base = {
        "dnsNames": [
            "capi-webhook-service.capi-system.svc",
            "capi-webhook-service.capi-system.svc.cluster.local",
        ],
        "issuerRef": {"kind": "Issuer", "name": "capi-selfsigned-issuer"},
        "secretName": "capi-webhook-service-cert",
        "subject": {"organizations": ["k8s-sig-cluster-lifecycle"]},
    }
    return {
        "apiVersion": "cert-manager.io/v1",
        "kind": "Certificate",
        "metadata": {"namespace": "capi-system", "name": "capi-serving-cert", "generation": 1},
        "spec": {**base, **spec},
    }


def test_a_providers_certificate_is_wanted_with_its_names() -> None:
    w = certs.wanted(_cert(), ISSUERS)
    assert isinstance(w, certs.Wanted)
    assert (w.namespace, w.name, w.secret) == (
        "capi-system",
        "capi-serving-cert",
        "capi-webhook-service-cert",
    )
    assert w.common_name == "capi-serving-cert"  # the DNS names may be longer than a CN may be
    assert w.organizations == ("k8s-sig-cluster-lifecycle",)
    assert certs.wanted(_cert(commonName="x.example"), ISSUERS).common_name == "x.example"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("spec", "why"),
    [
        ({"issuerRef": {"kind": "Issuer", "name": "other"}}, "missing or not selfSigned"),
        (
            {"issuerRef": {"kind": "AWSPCAIssuer", "group": "awspca.cert-manager.io", "name": "x"}},
            "not cert-manager's",
        ),
        ({"dnsNames": []}, "no dnsNames"),
        ({"secretName": ""}, "no secretName"),
    ],
)
def test_what_lab_cannot_issue_is_named(spec: dict[str, Any], why: str) -> None:
    w = certs.wanted(_cert(**spec), ISSUERS)
    assert isinstance(w, str) and w.startswith("capi-system/capi-serving-cert: ") and why in w


def test_a_ca_issuer_is_not_lab_s() -> None:
    ca_issuer = {**CAPI_ISSUER, "spec": {"ca": {"secretName": "x"}}}
    w = certs.wanted(_cert(), {("Issuer", "capi-system", "capi-selfsigned-issuer"): ca_issuer})
    assert isinstance(w, str)


def test_a_cluster_issuer_is_looked_up_without_namespace() -> None:
    ref = {"kind": "ClusterIssuer", "name": "selfsigned"}
    issuers = {("ClusterIssuer", "", "selfsigned"): {"spec": {"selfSigned": {}}}}
    assert isinstance(certs.wanted(_cert(issuerRef=ref), issuers), certs.Wanted)


def test_the_secret_is_cert_managers_shape_and_fits_only_when_equal() -> None:
    w = certs.wanted(_cert(secretTemplate={"labels": {"a": "b"}}), ISSUERS)
    assert isinstance(w, certs.Wanted)
    kp = pki.issue_server_cert(CA, w.common_name, list(w.dns), [], organizations=list(w.organizations))
    secret = certs.secret_for(w, kp, CA.cert_pem)
    assert secret["type"] == "kubernetes.io/tls"
    assert secret["metadata"]["namespace"] == "capi-system"
    assert secret["metadata"]["name"] == "capi-webhook-service-cert"
    assert secret["metadata"]["labels"]["a"] == "b"
    assert secret["metadata"]["annotations"]["cert-manager.io/certificate-name"] == "capi-serving-cert"
    assert {k: base64.b64decode(v) for k, v in secret["data"].items()} == {
        "tls.crt": kp.cert_pem,
        "tls.key": kp.key_pem,
        "ca.crt": CA.cert_pem,
    }
    live = {**secret, "metadata": {**secret["metadata"], "resourceVersion": "7", "uid": "u"}}
    assert certs.secret_fits(live, secret)
    assert not certs.secret_fits(None, secret)
    assert not certs.secret_fits({**live, "data": {**secret["data"], "ca.crt": "eA=="}}, secret)
    assert not certs.secret_fits({**live, "type": "Opaque"}, secret)


def test_status_is_ready_once_and_then_left_alone() -> None:
    cert = _cert()
    kp = pki.issue_server_cert(CA, "a.svc", ["a.svc"], [])
    patch = certs.status_patch(cert, kp)
    assert patch is not None
    [ready] = patch["status"]["conditions"]
    assert (ready["type"], ready["status"], ready["observedGeneration"]) == ("Ready", "True", 1)
    assert certs.status_patch({**cert, **patch}, kp) is None
    newer = {**cert, **patch, "metadata": {**cert["metadata"], "generation": 2}}
    assert certs.status_patch(newer, kp) is not None


def _vwc(bundles: list[str | None]) -> dict[str, Any]:
    hooks = []
    for i, b in enumerate(bundles):
        cc: dict[str, Any] = {"service": {"name": "s", "namespace": "n", "path": f"/p{i}"}}
        if b is not None:
            cc["caBundle"] = b
        hooks.append({"name": f"h{i}", "clientConfig": cc})
    return {
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {
            "name": "v",
            "resourceVersion": "42",
            "annotations": {certs.INJECT: "capi-system/capi-serving-cert"},
        },
        "webhooks": hooks,
    }


def test_injection_patches_only_the_bundles_that_differ() -> None:
    bundle = base64.b64encode(CA.cert_pem).decode()
    ops = certs.injection(_vwc([None, bundle, "c3RhbGU="]), CA.cert_pem)
    assert ops == [
        {"op": "test", "path": "/metadata/resourceVersion", "value": "42"},
        {"op": "add", "path": "/webhooks/0/clientConfig/caBundle", "value": bundle},
        {"op": "add", "path": "/webhooks/2/clientConfig/caBundle", "value": bundle},
    ]
    assert certs.injection(_vwc([bundle, bundle]), CA.cert_pem) == []
    assert certs.inject_target(_vwc([])) == ("capi-system", "capi-serving-cert")


def test_injection_into_a_crd_only_with_a_conversion_webhook() -> None:
    crd = {
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "clusters.cluster.x-k8s.io", "resourceVersion": "1"},
        "spec": {
            "conversion": {
                "strategy": "Webhook",
                "webhook": {"clientConfig": {"service": {"name": "s", "namespace": "n"}}},
            }
        },
    }
    [_, op] = certs.injection(crd, CA.cert_pem)
    assert op["path"] == "/spec/conversion/webhook/clientConfig/caBundle"
    assert certs.injection({**crd, "spec": {"conversion": {"strategy": "None"}}}, CA.cert_pem) == []


def test_inject_target_needs_namespace_and_name() -> None:
    assert certs.inject_target({"metadata": {"annotations": {certs.INJECT: "only-name"}}}) is None
    assert certs.inject_target({"metadata": {}}) is None


def test_crds_of_keeps_only_crds() -> None:
    text = "---\nkind: Namespace\nmetadata: {name: a}\n---\nkind: CustomResourceDefinition\nmetadata: {name: b}\n"
    assert [c["metadata"]["name"] for c in certs.crds_of(text)] == ["b"]
