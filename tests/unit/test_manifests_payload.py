"""`create-clusters --payload-kb K`: the files in the KubeadmControlPlane, checked against the real
KCP CRD schema (v1beta2 caps one file at 10240 characters), and the bound on K."""

from __future__ import annotations

import json
from typing import Any

import pytest
from support.schema import Validate

from lab import manifests, naming, pki
from lab.config import Settings
from lab.errors import UsageError
from lab.manifests import payload


def _kcp(settings: Settings, kb: int) -> dict[str, Any]:
    name = naming.cluster_name(settings.prefix, 3)
    host, port = naming.local_endpoint(3)
    cp = pki.generate_cluster_pki(name, host, port, pki.new_ca("etcd-ca"))
    objs = manifests.cluster_objects(
        settings, 3, (host, port), cp, ["https://127.0.0.1:2379"], manifests.bmc_password(cp), payload_kb=kb
    )
    [kcp] = [o for o in objs if o["kind"] == "KubeadmControlPlane"]
    return kcp


@pytest.mark.parametrize("kb", [1, 10, 30, 95])
def test_payload_files_carry_k_kib_in_valid_files(
    upstream_settings: Settings, schema_validator: Validate, kb: int
) -> None:
    kcp = _kcp(upstream_settings, kb)
    files = kcp["spec"]["kubeadmConfigSpec"]["files"]
    assert len(files) == -(-kb * 1024 // payload.FILE_MAX)
    assert len({f["path"] for f in files}) == len(files)  # v1beta2 refuses duplicate paths
    assert all(f["path"].startswith(f"/etc/lab/payload-{kb}kb.") for f in files)
    assert all(len(f["content"]) <= payload.FILE_MAX for f in files)
    data = "".join(f["content"] for f in files)
    assert len(data.encode()) == kb * 1024 and data == payload.content(kb)
    assert data.isascii() and all(len(line) == payload.LINE - 1 for line in data.splitlines())
    assert schema_validator(kcp) == []


def test_no_payload_renders_as_before(upstream_settings: Settings) -> None:
    assert "files" not in _kcp(upstream_settings, 0)["spec"]["kubeadmConfigSpec"]
    assert payload.files(0) == []
    assert payload.files(30) == payload.files(30)  # deterministic: create stays convergent


def test_the_largest_payload_fits_an_etcd_request_with_room_for_the_rest(upstream_settings: Settings) -> None:
    kcp = _kcp(upstream_settings, payload.MAX_KB)
    size = len(json.dumps(kcp, separators=(",", ":")).encode())
    assert payload.MAX_KB * 1024 < size < payload.ETCD_MAX_REQUEST - 32 * 1024
    assert payload.check_kb(payload.MAX_KB) == payload.MAX_KB == 1472
    for bad, why in ((-1, "0 \\(none\\) or more"), (payload.MAX_KB + 1, "at most 1472")):
        with pytest.raises(UsageError, match=why):
            payload.check_kb(bad)


@pytest.mark.parametrize(
    ("kb", "expected"),
    [("-1", "must be 0 (none) or more"), ("1473", "would not fit"), ("x", "Invalid value")],
)
def test_bad_payload_is_one_error_line_before_anything(run_lab: Any, kb: str, expected: str) -> None:
    r = run_lab("create-clusters", "1", "--payload-kb", kb)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], r.stderr


def test_the_report_names_the_payload_and_the_management_etcd_size() -> None:
    from lab import report
    from lab.phases import RunKind
    from lab.records import MetricSample, Run

    t0 = 1_700_000_000.0
    run = Run(1, RunKind.create, t0, t0 + 60, "ok", ["lab"], {"payload_kb": 30}, {"cores": 2})
    samples = [
        MetricSample(t0 + k, c, "etcd_mvcc_db_total_size_in_bytes", "", v)
        for k, (c, v) in enumerate(
            [("mgmt-etcd", 40 * 2**20), ("mgmt-etcd", 48 * 2**20), ("tenant-etcd", 9e9)]
        )
    ]
    md = report.to_markdown(report.build(run, [], metric_samples=samples))
    assert "- payload: 30 KiB of files in each KubeadmControlPlane" in md
    assert "- management: etcd db 48 MiB (max)" in md
    plain = Run(2, RunKind.create, t0, t0 + 60, "ok", ["lab"], {}, {"cores": 2})
    assert "payload" not in report.to_markdown(report.build(plain, []))


def test_the_namespace_notes_the_payload_only_when_there_is_one() -> None:
    assert manifests.namespace("test-3", 3)["metadata"].get("annotations") is None
    ns = manifests.namespace("test-3", 3, payload_kb=30)
    assert ns["metadata"]["annotations"] == {payload.ANNOTATION: "30"}
    assert payload.of_namespace(ns) == 30 and payload.of_namespace(manifests.namespace("test-3", 3)) == 0
