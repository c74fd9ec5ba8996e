"""Shape of the in-cluster multi-tenant etcd (lab.manifests.etcd).

Field names and types are checked against Kubernetes' own OpenAPI v3 documents at the pinned
version (from the Go module cache), so a misspelt field fails here rather than being pruned or
refused by the backing cluster's apiserver later.
"""

from __future__ import annotations

import base64
import functools
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from lab import gomod, pki
from lab.config import Settings
from lab.etcd import server as local
from lab.etcd.server import common_name
from lab.manifests import etcd as m

NS = m.NAMESPACE
_DOCS = {
    "v1": "api__v1_openapi.json",
    "apps/v1": "apis__apps__v1_openapi.json",
    "batch/v1": "apis__batch__v1_openapi.json",
}
_GROUP_PREFIX = {
    "v1": "io.k8s.api.core.v1",
    "apps/v1": "io.k8s.api.apps.v1",
    "batch/v1": "io.k8s.api.batch.v1",
}


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(home=tmp_path_factory.mktemp("labhome"))


@pytest.fixture(scope="module")
def certs() -> tuple[pki.KeyPair, pki.KeyPair, pki.KeyPair]:
    ca = pki.new_ca("etcd-ca")
    server, root = m.certificates(ca, NS, 3)
    return ca, server, root


@pytest.fixture(scope="module")
def objs(settings: Settings, certs: tuple[pki.KeyPair, pki.KeyPair, pki.KeyPair]) -> list[dict[str, Any]]:
    ca, server, _root = certs
    return m.objects(settings, ca.cert_pem, (server.cert_pem, server.key_pem))


def by_kind(objs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objs if o["kind"] == kind]


def sts(objs: list[dict[str, Any]]) -> dict[str, Any]:
    [s] = by_kind(objs, "StatefulSet")
    return s


def flags(args: list[str]) -> dict[str, str]:
    return dict(a.removeprefix("--").split("=", 1) for a in args)


# --- field names and types against Kubernetes' OpenAPI ---------------------------------------------


@functools.cache
def _schemas(settings_version: str, api_version: str) -> dict[str, Any]:
    k8s = Path(gomod.component_dir("kubernetes", settings_version))
    return dict(
        json.loads((k8s / "api/openapi-spec/v3" / _DOCS[api_version]).read_text())["components"]["schemas"]
    )


def schema_errors(obj: Any, schema: dict[str, Any], schemas: dict[str, Any], path: str = "") -> list[str]:
    """Unknown fields, missing required fields and wrong scalar types; enough to catch typos."""
    while "$ref" in schema or ("allOf" in schema and len(schema["allOf"]) == 1):
        ref = schema["$ref"] if "$ref" in schema else schema["allOf"][0]["$ref"]
        schema = schemas[ref.rsplit("/", 1)[1]]
    if schema.get("format") == "int-or-string":
        return (
            [] if isinstance(obj, int | str) and not isinstance(obj, bool) else [f"{path}: not int-or-string"]
        )
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        if not isinstance(obj, dict):
            return [f"{path}: expected an object"]
        props, extra = schema.get("properties", {}), schema.get("additionalProperties")
        errs = [f"{path}.{k}: required" for k in schema.get("required", []) if k not in obj]
        for k, v in obj.items():
            sub = props.get(k) or (extra if isinstance(extra, dict) else None)
            errs += (
                [f"{path}.{k}: unknown field"]
                if sub is None
                else schema_errors(v, sub, schemas, f"{path}.{k}")
            )
        return errs
    if kind == "array":
        if not isinstance(obj, list):
            return [f"{path}: expected a list"]
        return [
            e for i, v in enumerate(obj) for e in schema_errors(v, schema["items"], schemas, f"{path}[{i}]")
        ]
    py = {"string": str, "integer": int, "boolean": bool, "number": int | float}.get(kind or "")
    if py is not None and (not isinstance(obj, py) or (kind == "integer" and isinstance(obj, bool))):
        return [f"{path}: expected {kind}, got {obj!r}"]
    return []


def test_every_object_matches_the_kubernetes_schema(settings: Settings, objs: list[dict[str, Any]]) -> None:
    errors = []
    for o in objs:
        schemas = _schemas(settings.versions.kubernetes, o["apiVersion"])
        schema = schemas[f"{_GROUP_PREFIX[o['apiVersion']]}.{o['kind']}"]
        errors += [f"{o['kind']} {o['metadata']['name']}{e}" for e in schema_errors(o, schema, schemas)]
    assert errors == []


def test_the_schema_check_catches_a_typo(settings: Settings, objs: list[dict[str, Any]]) -> None:
    import copy

    bad = copy.deepcopy(sts(objs))
    bad["spec"]["template"]["spec"]["containers"][0]["volumeMount"] = []
    bad["spec"]["replicas"] = "1"
    schemas = _schemas(settings.versions.kubernetes, "apps/v1")
    errors = schema_errors(bad, schemas["io.k8s.api.apps.v1.StatefulSet"], schemas)
    assert ".spec.template.spec.containers[0].volumeMount: unknown field" in errors
    assert any(e.startswith(".spec.replicas: expected integer") for e in errors)


# --- shape ---------------------------------------------------------------------------------------


def test_objects_in_apply_order_in_one_namespace(objs: list[dict[str, Any]]) -> None:
    assert [(o["kind"], o["metadata"]["name"]) for o in objs] == [
        ("Namespace", NS),
        ("Secret", m.CA_SECRET),
        ("Secret", m.SERVER_SECRET),
        ("Service", m.NAME),
        ("Service", m.CLIENT_SERVICE),
        ("StatefulSet", m.NAME),
    ]
    assert all(o["metadata"].get("namespace") == NS for o in objs[1:])


def test_image_is_the_one_every_kind_node_holds_and_is_never_pulled(
    settings: Settings, objs: list[dict[str, Any]]
) -> None:
    """kubeadm's etcd for the pinned Kubernetes (node_etcd), not lab's own etcd pin: kind preloads
    it in every node image, lab's included, so the pods start with no registry."""
    assert (settings.versions.node_etcd, settings.versions.etcd) == ("v3.6.6", "v3.6.5")
    containers = [
        c
        for o in objs
        if "spec" in o and "template" in o["spec"]
        for c in o["spec"]["template"]["spec"]["containers"]
    ]
    assert {c["image"] for c in containers} == {"registry.k8s.io/etcd:3.6.6-0"}
    assert {c["imagePullPolicy"] for c in containers} == {"Never"}
    other = Settings(home=settings.home, versions={"node_etcd": "v3.6.9"})
    assert m.image(other) == "registry.k8s.io/etcd:3.6.9-0"


def test_a_new_ca_or_server_certificate_changes_the_pod_template(
    settings: Settings, certs: tuple[pki.KeyPair, pki.KeyPair, pki.KeyPair]
) -> None:
    """etcd reads its trusted CA once: a re-registration with another CA must roll the pod."""
    ca, server, _root = certs
    pair = (server.cert_pem, server.key_pem)

    def digest(objs: list[dict[str, Any]]) -> str:
        return str(sts(objs)["spec"]["template"]["metadata"]["annotations"][m.TLS_ANNOTATION])

    same = digest(m.objects(settings, ca.cert_pem, pair))
    assert same == digest(m.objects(settings, ca.cert_pem, pair)) and len(same) == 16
    other_ca = pki.new_ca("etcd-ca")
    other_server, _ = m.certificates(other_ca, NS, 3)
    assert digest(m.objects(settings, other_ca.cert_pem, pair)) != same
    assert digest(m.objects(settings, ca.cert_pem, (other_server.cert_pem, other_server.key_pem))) != same


def test_secrets_carry_the_ca_cert_but_never_its_key(
    objs: list[dict[str, Any]], certs: tuple[pki.KeyPair, pki.KeyPair, pki.KeyPair]
) -> None:
    ca, server, root = certs
    data = {
        s["metadata"]["name"]: {k: base64.b64decode(v) for k, v in s["data"].items()}
        for s in by_kind(objs, "Secret")
    }
    assert data[m.CA_SECRET] == {"tls.crt": ca.cert_pem}
    assert data[m.SERVER_SECRET] == {"tls.crt": server.cert_pem, "tls.key": server.key_pem}
    assert set(data) == {m.CA_SECRET, m.SERVER_SECRET}  # root acts from outside only
    assert all(key not in v for key in (ca.key_pem, root.key_pem) for d in data.values() for v in d.values())


def test_statefulset_runs_the_same_policy_as_the_local_etcd(
    settings: Settings, objs: list[dict[str, Any]]
) -> None:
    c = sts(objs)["spec"]["template"]["spec"]["containers"][0]
    f = flags(c["args"])
    policy = ("client-cert-auth", "peer-client-cert-auth", "auto-compaction-mode", "auto-compaction-retention",
              "quota-backend-bytes", "snapshot-count")  # fmt: skip
    local_flags = flags(local.etcd_command(settings, Path("/bin/etcd"))[1:])
    assert {k: f[k] for k in policy} == {k: local_flags[k] for k in policy}
    assert f["client-cert-auth"] == "true" and f["quota-backend-bytes"] == str(8 * 1024**3)
    assert (f["auto-compaction-mode"], f["auto-compaction-retention"]) == ("periodic", "5m")
    assert f["listen-client-urls"].startswith("https://") and f["listen-peer-urls"].startswith("https://")
    assert f["initial-cluster"] == f"etcd-0=https://etcd-0.etcd.{NS}.svc:2380"
    assert f["name"] == "$(POD_NAME)" and {e["name"] for e in c["env"]} >= {"POD_NAME"}


def test_three_members_list_each_other_and_start_together(settings: Settings) -> None:
    s = m.statefulset(settings, replicas=3)
    f = flags(s["spec"]["template"]["spec"]["containers"][0]["args"])
    assert f["initial-cluster"].split(",") == [
        f"etcd-{i}=https://etcd-{i}.etcd.{NS}.svc:2380" for i in range(3)
    ]
    assert s["spec"]["podManagementPolicy"] == "Parallel"
    with pytest.raises(ValueError, match="1, 3 or 5"):
        m.statefulset(settings, replicas=2)


def test_every_mount_has_a_volume_and_every_secret_exists(objs: list[dict[str, Any]]) -> None:
    secrets = {s["metadata"]["name"]: set(s["data"]) for s in by_kind(objs, "Secret")}
    for o in [sts(objs)]:
        pod = o["spec"]["template"]["spec"]
        claims = {t["metadata"]["name"] for t in o["spec"].get("volumeClaimTemplates", [])}
        volumes = {v["name"]: v for v in pod["volumes"]}
        for c in pod["containers"]:
            for vm in c["volumeMounts"]:
                assert vm["name"] in volumes or vm["name"] in claims, vm
        for v in volumes.values():
            if "secret" in v:
                assert v["secret"]["secretName"] in secrets
                assert v["secret"]["defaultMode"] == 0o400


def test_flag_and_script_paths_point_into_mounted_secrets(objs: list[dict[str, Any]]) -> None:
    def files(o: dict[str, Any]) -> set[str]:
        pod = o["spec"]["template"]["spec"]
        secret_of = {v["name"]: v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
        data = {s["metadata"]["name"]: s["data"] for s in by_kind(objs, "Secret")}
        return {
            f"{vm['mountPath']}/{key}"
            for c in pod["containers"]
            for vm in c["volumeMounts"]
            if vm["name"] in secret_of
            for key in data[secret_of[vm["name"]]]
        }

    s = sts(objs)
    f = flags(s["spec"]["template"]["spec"]["containers"][0]["args"])
    for k in (
        "cert-file",
        "key-file",
        "trusted-ca-file",
        "peer-cert-file",
        "peer-key-file",
        "peer-trusted-ca-file",
    ):
        assert f[k] in files(s), k


def test_services_select_the_pods_and_name_real_ports(objs: list[dict[str, Any]]) -> None:
    s = sts(objs)
    pod_labels = s["spec"]["template"]["metadata"]["labels"]
    assert s["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    port_names = {p["name"] for p in s["spec"]["template"]["spec"]["containers"][0]["ports"]}
    headless, client = by_kind(objs, "Service")
    assert (
        s["spec"]["serviceName"] == headless["metadata"]["name"] and headless["spec"]["clusterIP"] == "None"
    )
    for svc in (headless, client):
        assert svc["spec"]["selector"].items() <= pod_labels.items()
        assert {p["targetPort"] for p in svc["spec"]["ports"]} <= port_names
    c = s["spec"]["template"]["spec"]["containers"][0]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert c[probe]["httpGet"]["port"] in port_names


def test_server_certificate_names_every_address_clients_dial(
    certs: tuple[pki.KeyPair, pki.KeyPair, pki.KeyPair],
) -> None:
    _, server, _ = certs
    san = server.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    dns = set(san.get_values_for_type(x509.DNSName))
    assert m.client_url().removeprefix("https://").rsplit(":", 1)[0] in dns
    assert {f"etcd-{i}.etcd.{NS}.svc" for i in range(3)} <= dns
    eku = server.cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH} <= set(eku)  # peer use too
    assert common_name(certs[2].cert) == "root"


def test_data_on_a_claim_by_default_or_an_empty_dir(settings: Settings) -> None:
    s = m.statefulset(settings)
    [claim] = s["spec"]["volumeClaimTemplates"]
    assert (
        claim["metadata"]["name"] == "data" and claim["spec"]["resources"]["requests"]["storage"] == m.STORAGE
    )
    assert all(v["name"] != "data" for v in s["spec"]["template"]["spec"]["volumes"])
    scratch = m.statefulset(settings, persistent=False)
    assert "volumeClaimTemplates" not in scratch["spec"]
    assert {"name": "data", "emptyDir": {}} in scratch["spec"]["template"]["spec"]["volumes"]


def test_rendering_is_deterministic(
    settings: Settings, certs: tuple[pki.KeyPair, pki.KeyPair, pki.KeyPair]
) -> None:
    ca, server, _root = certs
    args = (settings, ca.cert_pem, (server.cert_pem, server.key_pem))
    assert json.dumps(m.objects(*args)) == json.dumps(m.objects(*args))
