"""lab's cainjector part (lab.kindmgmt.certs.inject) against a real kube-apiserver: a CRD written by
someone else between lab's read and lab's patch (as the apiserver and CAPI's CRD migrator do right
after `clusterctl init`) is read again and patched, not a failed `lab up`."""

from __future__ import annotations

import base64
import uuid

import pytest
from support.apiserver import RunningApiserver

from lab import pki
from lab.kindmgmt import certs
from lab.kube import ApiError, Client


def _crd(group: str) -> dict[str, object]:
    version = {
        "name": "v1",
        "served": True,
        "storage": True,
        "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
    }
    return {
        "apiVersion": certs.CRD_API,
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}", "annotations": {certs.INJECT: "ns/serving-cert"}},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
            "versions": [version],
            "conversion": {
                "strategy": "Webhook",
                "webhook": {
                    "conversionReviewVersions": ["v1"],
                    "clientConfig": {"service": {"namespace": "ns", "name": "webhook", "path": "/convert"}},
                },
            },
        },
    }


def test_a_crd_changed_after_it_was_read_is_read_again_and_injected(apiserver: RunningApiserver) -> None:
    ca = pki.new_ca("inject-test-ca")
    group = f"t{uuid.uuid4().hex[:8]}.example.com"
    with Client.from_kubeconfig(apiserver.kubeconfig, qps=0) as kc:
        [created] = kc.apply([_crd(group)])
        name = created["metadata"]["name"]
        try:
            stale = kc.get(certs.CRD_API, "CustomResourceDefinition", name)
            assert stale is not None
            # another writer: the resourceVersion lab read is no longer the object's
            path = kc.resource(certs.CRD_API, "CustomResourceDefinition").path(None, name)
            bump = {"metadata": {"annotations": {"other-writer": "was-here"}}}
            kc.request("PATCH", path, body=bump, content_type=certs.MERGE_PATCH)

            # the apiserver refuses the stale patch as such
            with pytest.raises(ApiError) as refused:
                kc.request(
                    "PATCH", path, body=certs.injection(stale, ca.cert_pem), content_type=certs.JSON_PATCH
                )
            assert refused.value.status == 422, refused.value  # no cause given: lab re-reads to know

            assert certs.inject(kc, certs.CRD_API, "CustomResourceDefinition", stale, ca.cert_pem) is True
            now = kc.get(certs.CRD_API, "CustomResourceDefinition", name)
            assert now is not None
            bundle = now["spec"]["conversion"]["webhook"]["clientConfig"]["caBundle"]
            assert base64.b64decode(bundle) == ca.cert_pem
            assert now["metadata"]["annotations"]["other-writer"] == "was-here"  # not overwritten
            # already injected: nothing to patch
            assert certs.inject(kc, certs.CRD_API, "CustomResourceDefinition", now, ca.cert_pem) is False
        finally:
            kc.delete(certs.CRD_API, "CustomResourceDefinition", name)
