from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lab import crds, gomod
from lab.config import Settings
from lab.errors import LabError


def _kustomization_resources(settings: Settings, key: str) -> int:
    root = gomod.component_dir(key, getattr(settings.versions, key))
    return sum(
        len(yaml.safe_load((root / sub / "kustomization.yaml").read_text())["resources"])
        for sub in crds.CRD_DIRS[key]
    )


@pytest.mark.parametrize("key", crds.COMPONENTS)
def test_each_component_yields_every_crd_its_kustomizations_list(
    upstream_settings: Settings, key: str
) -> None:
    docs = crds.component_crds(upstream_settings, key)
    assert len(docs) == _kustomization_resources(upstream_settings, key) > 0
    for d in docs:
        assert d["apiVersion"] == "apiextensions.k8s.io/v1" and d["kind"] == "CustomResourceDefinition"
        assert d["metadata"]["name"] == f"{d['spec']['names']['plural']}.{d['spec']['group']}"
        assert crds.storage_version(d) in crds.served_versions(d)


def test_crd_documents_cover_every_kind_lab_renders(upstream_settings: Settings) -> None:
    docs = crds.crd_documents(upstream_settings)
    kinds = {(d["spec"]["group"], d["spec"]["names"]["kind"]) for d in docs}
    for kind in ("Cluster", "MachineDeployment", "Machine"):
        assert ("cluster.x-k8s.io", kind) in kinds
    assert ("controlplane.cluster.x-k8s.io", "KubeadmControlPlane") in kinds
    assert ("bootstrap.cluster.x-k8s.io", "KubeadmConfig") in kinds
    assert ("infrastructure.cluster.x-k8s.io", "Metal3Machine") in kinds
    assert ("ipam.metal3.io", "IPPool") in kinds
    assert ("metal3.io", "BareMetalHost") in kinds
    assert len({d["metadata"]["name"] for d in docs}) == len(docs)  # no CRD twice
    only_bmo = crds.crd_documents(upstream_settings, components=["bmo"])
    assert {d["spec"]["group"] for d in only_bmo} == {"metal3.io"}


def test_kustomize_labels_are_applied_only_where_upstream_puts_them(upstream_settings: Settings) -> None:
    # Providers' CRDs need the contract label; CAPI's own core CRDs carry none in their kustomization.
    for key in ("capm3",):
        for d in crds.component_crds(upstream_settings, key):
            assert d["metadata"]["labels"]["cluster.x-k8s.io/v1beta2"] == "v1beta2", d["metadata"]["name"]
    by_group = {d["spec"]["group"]: d for d in crds.component_crds(upstream_settings, "capi")}
    assert "cluster.x-k8s.io/v1beta2" in by_group["controlplane.cluster.x-k8s.io"]["metadata"]["labels"]
    assert "cluster.x-k8s.io/v1beta2" in by_group["bootstrap.cluster.x-k8s.io"]["metadata"]["labels"]
    assert "cluster.x-k8s.io/v1beta2" not in (by_group["cluster.x-k8s.io"]["metadata"].get("labels") or {})
    ipam = crds.component_crds(upstream_settings, "ipam")[0]
    assert ipam["metadata"]["labels"]["cluster.x-k8s.io/v1beta1"] == "v1beta1"


def test_returned_crds_are_copies(upstream_settings: Settings) -> None:
    first = crds.component_crds(upstream_settings, "bmo")
    first[0]["spec"]["group"] = "changed.example"
    assert crds.component_crds(upstream_settings, "bmo")[0]["spec"]["group"] == "metal3.io"


def test_schema_for_gives_the_versions_schema_and_clear_errors(upstream_settings: Settings) -> None:
    schema = crds.schema_for(upstream_settings, "cluster.x-k8s.io/v1beta2", "Cluster")
    assert schema["type"] == "object"
    assert "controlPlaneRef" in schema["properties"]["spec"]["properties"]
    v1beta1 = crds.schema_for(upstream_settings, "cluster.x-k8s.io/v1beta1", "Cluster")
    assert v1beta1 != schema
    with pytest.raises(LabError, match="has no version v9; served: v1beta1, v1beta2"):
        crds.schema_for(upstream_settings, "cluster.x-k8s.io/v9", "Cluster")
    with pytest.raises(LabError, match=r"no component ships a CRD for Nope\.example\.com"):
        crds.schema_for(upstream_settings, "example.com/v1", "Nope")
    with pytest.raises(LabError, match="unknown component"):
        crds.component_crds(upstream_settings, "kubernetes")


def _write(path: Path, doc: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump_all(doc) if isinstance(doc, list) else yaml.safe_dump(doc))


def _crd(name: str, versions: list[tuple[str, bool, bool]]) -> dict[str, object]:
    plural, _, group = name.partition(".")
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": name, "labels": {"keep": "me"}},
        "spec": {
            "group": group,
            "names": {"kind": plural.capitalize(), "plural": plural},
            "versions": [{"name": n, "served": s, "storage": st} for n, s, st in versions],
        },
    }


def test_load_dir_follows_the_kustomization(tmp_path: Path) -> None:
    _write(tmp_path / "bases/a.yaml", _crd("as.example.com", [("v1", True, True)]))
    _write(tmp_path / "bases/b.yaml", _crd("bs.example.com", [("v1", True, False), ("v2", True, True)]))
    _write(tmp_path / "bases/unlisted.yaml", _crd("cs.example.com", [("v1", True, True)]))
    _write(
        tmp_path / "kustomization.yaml",
        {
            "resources": ["bases/b.yaml", "bases/a.yaml"],
            "commonLabels": {"old": "style"},
            "labels": [{"pairs": {"cluster.x-k8s.io/v1beta2": "v1_v2"}}],
        },
    )
    docs = crds.load_dir(tmp_path)
    assert [d["metadata"]["name"] for d in docs] == ["bs.example.com", "as.example.com"]
    assert docs[0]["metadata"]["labels"] == {
        "keep": "me",
        "old": "style",
        "cluster.x-k8s.io/v1beta2": "v1_v2",
    }
    assert crds.storage_version(docs[0]) == "v2" and crds.served_versions(docs[0]) == ["v1", "v2"]


@pytest.mark.parametrize(
    ("kustomization", "files", "message"),
    [
        (None, {}, "cannot read"),
        ({"patches": []}, {}, "no resources list"),
        ({"resources": ["missing.yaml"]}, {}, "cannot read CRD"),
        (
            {"resources": ["svc.yaml"]},
            {"svc.yaml": {"apiVersion": "v1", "kind": "Service"}},
            "expected a CustomResourceDefinition",
        ),
    ],
)
def test_load_dir_errors_name_the_file(
    tmp_path: Path, kustomization: object, files: dict, message: str
) -> None:
    if kustomization is not None:
        _write(tmp_path / "kustomization.yaml", kustomization)
    for name, doc in files.items():
        _write(tmp_path / name, doc)
    with pytest.raises(LabError, match=message):
        crds.load_dir(tmp_path)
