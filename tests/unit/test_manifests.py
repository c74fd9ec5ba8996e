from __future__ import annotations

import base64
import dataclasses
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from lab import crds, gomod, manifests, naming, pki, pki_store
from lab.config import Settings
from lab.manifests import capi, kinds, metal3, names, secrets, serialize

Obj = dict[str, Any]
Validate = Callable[[Obj], list[str]]
INDEXES = (1, 101, 254, 255, 9999)


@pytest.fixture(scope="session")
def etcd_ca() -> pki.KeyPair:
    return pki.new_ca("etcd-ca")


@pytest.fixture(scope="session")
def render(upstream_settings: Settings, etcd_ca: pki.KeyPair):
    """render(index) -> the objects of one cluster, with a PKI made once per index (in memory)."""
    cache: dict[int, pki.ClusterPKI] = {}

    def _render(index: int, settings: Settings = upstream_settings) -> list[Obj]:
        name = naming.cluster_name(settings.prefix, index)
        host, port = naming.local_endpoint(index)
        if index not in cache:
            cache[index] = pki.generate_cluster_pki(name, host, port, etcd_ca)
        cp = cache[index]
        return manifests.cluster_objects(
            settings, index, (host, port), cp, ["https://127.0.0.1:2379"], manifests.bmc_password(cp)
        )

    _render.pki = cache  # type: ignore[attr-defined]
    return _render


def pki_of(render, index: int) -> pki.ClusterPKI:
    render(index)
    return render.pki[index]


def by_kind(objs: list[Obj], kind: str) -> list[Obj]:
    return [o for o in objs if o["kind"] == kind]


def one(objs: list[Obj], kind: str) -> Obj:
    (o,) = by_kind(objs, kind)
    return o


# --- API versions -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(k for k, v in kinds.API_VERSIONS.items() if v != "v1"))
def test_api_version_is_the_served_storage_version(upstream_settings: Settings, kind: str) -> None:
    group, _, version = kinds.API_VERSIONS[kind].rpartition("/")
    crd = crds.find_crd(upstream_settings, group, kind)
    assert version in crds.served_versions(crd)
    assert crds.storage_version(crd) == version


@pytest.mark.parametrize(
    "kind", ["Metal3Cluster", "Metal3MachineTemplate", "KubeadmControlPlane", "KubeadmConfigTemplate"]
)
def test_provider_crds_carry_the_contract_label_for_the_version_we_write(
    upstream_settings: Settings, kind: str
) -> None:
    # CAPI maps a v1beta2 ref (apiGroup+kind) to an apiVersion through this label alone.
    group, _, version = kinds.API_VERSIONS[kind].rpartition("/")
    labels = crds.find_crd(upstream_settings, group, kind)["metadata"]["labels"]
    assert version in labels["cluster.x-k8s.io/v1beta2"].split("_")


# --- schema validity ----------------------------------------------------------------------------


@pytest.mark.parametrize("index", INDEXES)
def test_every_object_is_valid_against_the_real_schemas(
    render, schema_validator: Validate, index: int
) -> None:
    objs = render(index)
    assert Counter(o["kind"] for o in objs) == {
        "Namespace": 1,
        "Secret": 7,
        "BareMetalHost": 1,
        "Metal3DataTemplate": 2,
        "Metal3MachineTemplate": 2,
        "KubeadmConfigTemplate": 1,
        "Metal3Cluster": 1,
        "KubeadmControlPlane": 1,
        "MachineDeployment": 1,
        "Cluster": 1,
    }
    errors = [e for o in objs for e in schema_validator(o)]
    assert errors == []


@pytest.mark.parametrize(
    ("kind", "mutate", "expect"),
    [
        ("KubeadmControlPlane", lambda o: o["spec"].update(surprise=1), "Additional properties"),
        (
            "KubeadmControlPlane",
            lambda o: o["spec"]["machineTemplate"]["spec"].update(nodeDrainTimeout="0s"),
            "Additional properties",
        ),
        ("MachineDeployment", lambda o: o["spec"].update(replicas="0"), "is not of type"),
        ("BareMetalHost", lambda o: o["spec"].update(bootMACAddress="not-a-mac"), "does not match"),
        (
            "Metal3MachineTemplate",
            lambda o: o["spec"]["template"]["spec"]["image"].update(format="raw"),
            "Additional properties",
        ),
        ("Metal3Cluster", lambda o: o["spec"]["controlPlaneEndpoint"].update(port=70000), "maximum"),
        ("Secret", lambda o: o["data"].update({"tls.crt": "not base64!"}), "byte"),
        ("Namespace", lambda o: o.update(spec={"finalizers": 1}), "is not of type"),
        ("Cluster", lambda o: o["metadata"]["labels"].update({"bad key!": "x"}), "qualified name"),
        ("Cluster", lambda o: o.update(status={}), "status is set"),
        (
            "KubeadmControlPlane",
            lambda o: o["spec"]["kubeadmConfigSpec"]["initConfiguration"]["nodeRegistration"][
                "kubeletExtraArgs"
            ].append({"name": "node-labels", "value": "x=y"}),
            "names must be unique",
        ),
    ],
)
def test_the_validator_rejects_what_the_apiserver_would(
    render, schema_validator: Validate, kind: str, mutate, expect: str
) -> None:
    import copy

    obj = copy.deepcopy(by_kind(render(101), kind)[0])
    mutate(obj)
    errors = schema_validator(obj)
    assert any(expect in e for e in errors), errors


# --- shapes -------------------------------------------------------------------------------------


def test_namespace_lists_the_cluster(render) -> None:
    ns = render(101)[0]
    assert ns["kind"] == "Namespace" and ns["metadata"]["name"] == "test-101"
    assert ns["metadata"]["labels"] == {
        naming.CLUSTER_LABEL: "test-101",
        naming.INDEX_LABEL: "101",
        naming.BACKING_LABEL: naming.LOCAL_BACKING,
    }


def test_namespace_names_the_backing_that_carries_the_cluster() -> None:
    from lab import manifests

    ns = manifests.namespace("test-7", 7, "backing-2")
    assert ns["metadata"]["labels"][naming.BACKING_LABEL] == "backing-2"


def test_every_namespaced_object_lives_in_the_cluster_namespace_with_lab_labels(render) -> None:
    objs = render(101)
    for o in objs[1:]:
        assert o["metadata"]["namespace"] == "test-101", o["metadata"]["name"]
        labels = o["metadata"]["labels"]
        assert labels[naming.CLUSTER_LABEL] == "test-101" and labels[naming.INDEX_LABEL] == "101"
        assert labels["cluster.x-k8s.io/cluster-name"] == "test-101"


def test_pki_secrets_are_what_capi_looks_up(render) -> None:
    objs = render(101)
    cp = pki_of(render, 101)
    got = {s["metadata"]["name"]: s for s in by_kind(objs, "Secret")}
    expected_keys = {
        "test-101-ca": {"tls.crt", "tls.key"},
        "test-101-proxy": {"tls.crt", "tls.key"},
        "test-101-sa": {"tls.crt", "tls.key"},
        "test-101-etcd": {"tls.crt"},  # the etcd CA key never leaves lab
        "test-101-apiserver-etcd-client": {"tls.crt", "tls.key"},
        # there before KCP's first reconcile, so CAPI's ClusterCache connects at its first try
        "test-101-kubeconfig": {"value"},
    }
    for name, keys in expected_keys.items():
        assert got[name]["type"] == "cluster.x-k8s.io/secret"
        assert set(got[name]["data"]) == keys
    decode = base64.b64decode
    assert decode(got["test-101-ca"]["data"]["tls.key"]) == cp.ca.key_pem
    assert decode(got["test-101-etcd"]["data"]["tls.crt"]) == cp.etcd_ca_cert_pem
    assert decode(got["test-101-sa"]["data"]["tls.crt"]) == cp.sa.cert_pem
    assert decode(got["test-101-apiserver-etcd-client"]["data"]["tls.key"]) == cp.etcd_client.key_pem
    assert decode(got["test-101-kubeconfig"]["data"]["value"]) == cp.admin_kubeconfig
    kubeconfig = yaml.safe_load(cp.admin_kubeconfig)
    # KCP's rotation finds the cluster entry by the cluster's name; the server is the endpoint
    assert [c["name"] for c in kubeconfig["clusters"]] == ["test-101"]
    host, port = naming.local_endpoint(101)
    assert kubeconfig["clusters"][0]["cluster"]["server"] == f"https://{host}:{port}"
    assert got["test-101-kubeconfig"]["metadata"]["labels"]["cluster.x-k8s.io/cluster-name"] == "test-101"
    assert [s["metadata"]["name"] for s in by_kind(objs, "Secret")][:6] == list(expected_keys)


def test_bmc_secret_and_password(render) -> None:
    objs = render(101)
    cp = pki_of(render, 101)
    secret = one([o for o in objs if o["kind"] == "Secret" and o["type"] == "Opaque"], "Secret")
    assert secret["metadata"]["name"] == names.bmc_secret("test-101")
    user = base64.b64decode(secret["data"]["username"]).decode()
    password = base64.b64decode(secret["data"]["password"]).decode()
    assert user.strip() and password.strip() and user != password
    assert password not in ("admin", "password") and len(password) >= 20
    assert password == manifests.bmc_password(cp)  # stable for the cluster
    other = dataclasses.replace(cp, name="test-102")
    assert manifests.bmc_password(other) != password  # differs per cluster
    assert secret["metadata"]["labels"]["environment.metal3.io"] == "baremetal"
    with pytest.raises(ValueError):
        secrets.bmc_secret("test-101", 101, "password")
    with pytest.raises(ValueError):
        secrets.bmc_secret("test-101", 101, "  ")


def test_baremetal_host(render) -> None:
    bmh = one(render(300), "BareMetalHost")
    spec = bmh["spec"]
    assert spec["online"] is True
    assert spec["bootMACAddress"] == naming.boot_mac(300)
    assert spec["bmc"] == {
        "address": naming.bmc_address(300),
        "credentialsName": names.bmc_secret("test-300"),
    }
    # An image here would make BMO provision the host before CAPM3 can claim it (see lab.manifests.metal3).
    assert "image" not in spec and "customDeploy" not in spec


def test_the_image_reaches_the_host_through_the_machine_templates(render) -> None:
    objs = render(101)
    for m3mt in by_kind(objs, "Metal3MachineTemplate"):
        image = m3mt["spec"]["template"]["spec"]["image"]
        assert image == metal3.IMAGE
        # BMO's webhook: a parseable URL and a checksum of a known type for a non-live-iso image.
        assert re.match(r"^https?://[^/\s]+/\S+$", image["url"])
        assert image["checksumType"] in ("md5", "sha256", "sha512") and re.fullmatch(
            r"[0-9a-f]{64}", image["checksum"]
        )


def test_kubeadm_control_plane(render, upstream_settings: Settings) -> None:
    objs = render(101)
    kcp = one(objs, "KubeadmControlPlane")["spec"]
    assert kcp["replicas"] == 1
    assert kcp["version"] == upstream_settings.versions.kubernetes
    cc = kcp["kubeadmConfigSpec"]["clusterConfiguration"]
    assert cc["etcd"] == {
        "external": {
            "endpoints": ["https://127.0.0.1:2379"],
            "caFile": "/etc/kubernetes/pki/etcd/ca.crt",
            "certFile": "/etc/kubernetes/pki/apiserver-etcd-client.crt",
            "keyFile": "/etc/kubernetes/pki/apiserver-etcd-client.key",
        }
    }
    assert naming.local_endpoint(101)[0] in cc["apiServer"]["certSANs"]
    for section in ("initConfiguration", "joinConfiguration"):
        reg = kcp["kubeadmConfigSpec"][section]["nodeRegistration"]
        assert reg["name"] == "{{ ds.meta_data.name }}"
        assert reg["kubeletExtraArgs"] == [
            {"name": "node-labels", "value": "metal3.io/uuid={{ ds.meta_data.uuid }}"}
        ]
    annotations = kcp["machineTemplate"]["metadata"]["annotations"]
    assert annotations[capi.CERT_EXPIRY_ANNOTATION] == pki_of(render, 101).certificates_expiry


def test_node_registration_matches_capm3s_own_template(upstream_settings: Settings) -> None:
    template = (
        gomod.component_dir("capm3", upstream_settings.versions.capm3)
        / "examples/clusterctl-templates/clusterctl-cluster.yaml"
    ).read_text()
    reg = capi.node_registration()
    assert f"name: '{reg['name']}'" in template
    arg = reg["kubeletExtraArgs"][0]
    assert f"- name: {arg['name']}\n" in template and f"value: '{arg['value']}'" in template


def test_metal3_cluster_endpoint_and_cloud_provider(render) -> None:
    spec = one(render(101), "Metal3Cluster")["spec"]
    host, port = naming.local_endpoint(101)
    assert spec == {"controlPlaneEndpoint": {"host": host, "port": port}, "cloudProviderEnabled": False}


def test_machine_deployment_has_no_workers_and_a_selector_matching_its_template(
    render, upstream_settings: Settings
) -> None:
    md = one(render(101), "MachineDeployment")["spec"]
    assert md["replicas"] == 0 and md["clusterName"] == "test-101"
    assert md["template"]["spec"]["version"] == upstream_settings.versions.kubernetes
    template_labels = md["template"]["metadata"]["labels"]
    assert all(template_labels.get(k) == v for k, v in md["selector"]["matchLabels"].items())


def test_apply_order_namespace_first_secrets_before_users_cluster_last(render) -> None:
    kinds_in_order = [o["kind"] for o in render(101)]
    assert kinds_in_order[0] == "Namespace" and kinds_in_order[-1] == "Cluster"
    last_secret = max(i for i, k in enumerate(kinds_in_order) if k == "Secret")
    assert last_secret < kinds_in_order.index("BareMetalHost")
    assert last_secret < kinds_in_order.index("KubeadmControlPlane")


# --- references ---------------------------------------------------------------------------------


def _references(o: Obj, path: str = "") -> list[tuple[str, str, str | None, str]]:
    """(path, kind, apiGroup or None, name) of every reference in o; unknown *Ref/*Name fields fail."""
    out: list[tuple[str, str, str | None, str]] = []
    if isinstance(o, dict):
        for k, v in o.items():
            p = f"{path}.{k}"
            if k == "metadata":
                continue
            if k.endswith("Ref") and isinstance(v, dict):
                out.append((p, v["kind"], v["apiGroup"], v["name"]))
            elif k == "dataTemplate":
                out.append((p, "Metal3DataTemplate", kinds.INFRA_GROUP, v["name"]))
            elif k == "credentialsName":
                out.append((p, "Secret", "", v))
            elif k == "clusterName":
                out.append((p, "Cluster", kinds.CAPI_GROUP, v))
            elif k.endswith(("Ref", "Name")) and k != "diskFormat":
                raise AssertionError(f"{p}: a reference this test does not know how to check")
            else:
                out += _references(v, p)
    elif isinstance(o, list):
        for i, v in enumerate(o):
            out += _references(v, f"{path}[{i}]")
    return out


@pytest.mark.parametrize("index", [1, 101])
def test_every_reference_resolves_within_the_render(render, index: int) -> None:
    objs = render(index)
    present = {(o["kind"], kinds.group_of(o["kind"]), o["metadata"]["name"]) for o in objs}
    namespaces = {o["metadata"]["name"] for o in objs if o["kind"] == "Namespace"}
    refs = [r for o in objs for r in _references(o, o["kind"])]
    assert len(refs) >= 10
    for path, kind, group, name in refs:
        assert (kind, group, name) in present, f"{path} -> {kind}.{group} {name} is not rendered"
    for o in objs[1:]:
        assert o["metadata"]["namespace"] in namespaces


# --- identity: distinct across indexes, stable across runs ----------------------------------------


def test_thousand_indexes_give_distinct_names_macs_bmcs_and_endpoints(
    upstream_settings: Settings, render
) -> None:
    base = pki_of(render, 101)
    seen: dict[str, set[object]] = {"ns": set(), "bmh": set(), "mac": set(), "bmc": set(), "endpoint": set()}
    for i in range(1, 1001):
        name = naming.cluster_name(upstream_settings.prefix, i)
        endpoint = naming.local_endpoint(i)
        objs = manifests.cluster_objects(
            upstream_settings,
            i,
            endpoint,
            dataclasses.replace(base, name=name),
            ["https://127.0.0.1:2379"],
            "pw-" + "x" * 20,
        )
        bmh = one(objs, "BareMetalHost")
        m3c = one(objs, "Metal3Cluster")["spec"]["controlPlaneEndpoint"]
        seen["ns"].add(objs[0]["metadata"]["name"])
        seen["bmh"].add(bmh["metadata"]["name"])
        seen["mac"].add(bmh["spec"]["bootMACAddress"].lower())
        seen["bmc"].add(bmh["spec"]["bmc"]["address"])
        seen["endpoint"].add((m3c["host"], m3c["port"]))
    assert {k: len(v) for k, v in seen.items()} == dict.fromkeys(seen, 1000)


def test_same_index_same_pki_same_objects(render) -> None:
    assert render(101) == render(101)
    assert serialize.to_yaml(render(101)) == serialize.to_yaml(render(101))


def test_pki_from_the_lab_home_renders_identically_twice(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    ca = pki_store.load_or_create_ca(settings.pki_dir / "etcd-ca", "etcd-ca")
    host, port = naming.local_endpoint(7)

    def once() -> list[Obj]:
        cp = pki_store.cluster_pki(settings, "test-7", host, port, ca)
        return manifests.cluster_objects(
            settings, 7, (host, port), cp, ["https://127.0.0.1:2379"], manifests.bmc_password(cp)
        )

    assert once() == once()


def test_settings_change_what_they_should(tmp_path: Path, render) -> None:
    settings = Settings(home=tmp_path, prefix="scale", versions={"kubernetes": "v1.34.2"})
    cp = dataclasses.replace(pki_of(render, 101), name="scale-101")
    objs = manifests.cluster_objects(
        settings, 101, ("10.0.0.5", 16443), cp, ["https://10.0.0.9:2379"], "y" * 24
    )
    assert objs[0]["metadata"]["name"] == "scale-101"
    assert one(objs, "KubeadmControlPlane")["spec"]["version"] == "v1.34.2"
    assert one(objs, "Metal3Cluster")["spec"]["controlPlaneEndpoint"] == {"host": "10.0.0.5", "port": 16443}


def test_pki_of_another_cluster_is_refused(upstream_settings: Settings, render) -> None:
    with pytest.raises(ValueError, match="PKI of test-101"):
        manifests.cluster_objects(
            upstream_settings,
            102,
            naming.local_endpoint(102),
            pki_of(render, 101),
            ["https://127.0.0.1:2379"],
            "z" * 24,
        )


def test_serialized_forms_round_trip(render) -> None:
    import json

    import yaml

    objs = render(101)
    assert list(yaml.safe_load_all(serialize.to_yaml(objs))) == objs
    as_list = json.loads(serialize.to_json(objs))
    assert as_list["apiVersion"] == "v1" and as_list["kind"] == "List" and as_list["items"] == objs
