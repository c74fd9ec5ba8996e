"""`lab create-clusters --payload-kb 30` on the real local stack (the seed's 30 kB cloud-init
experiment): the KubeadmControlPlane carries the files, CABPK renders them into the cluster's
bootstrap data secret, the cluster still becomes Available, the report says what the payload was,
and delete leaves nothing. Index 7301: clear of every other e2e test's clusters."""

from __future__ import annotations

import base64
import json

from support.stack import Stack

from lab.clusters.residue import residue
from lab.manifests import payload

INDEX, KB = 7301, 30
NAME = f"test-{INDEX}"
TIMEOUT = 600


def test_payload_reaches_the_bootstrap_secret_and_deletes_to_zero_residue(stack: Stack) -> None:
    settings = stack.settings()
    out = stack.lab(
        "create-clusters", "1", "--start", str(INDEX), "--payload-kb", str(KB), "--timeout", "480",
        "-o", "json", timeout=TIMEOUT,
    )  # fmt: skip
    res = json.loads(out.stdout)
    assert res["available"] == [NAME] and res["stuck"] == {}

    kcp = stack.kubectl_json("get", "kubeadmcontrolplane", "-n", NAME, NAME)
    files = {f["path"]: f["content"] for f in kcp["spec"]["kubeadmConfigSpec"]["files"]}
    expected = {f["path"]: f["content"] for f in payload.files(KB)}
    assert files == expected and len(expected) == 3
    assert len("".join(files.values())) == KB * 1024

    [machine] = stack.kubectl_json("get", "machines", "-n", NAME)["items"]
    secret_name = machine["spec"]["bootstrap"]["dataSecretName"]
    secret = stack.kubectl_json("get", "secret", "-n", NAME, secret_name)
    cloud_init = base64.b64decode(secret["data"]["value"]).decode()
    for path, content in expected.items():
        assert path in cloud_init
        first, last = content.splitlines()[0], content.splitlines()[-1]
        assert first in cloud_init and last in cloud_init
    kcp_bytes = len(json.dumps(kcp, separators=(",", ":")))
    print(f"KCP {kcp_bytes} B, bootstrap value {len(cloud_init)} B for a {KB} KiB payload")
    assert len(cloud_init) < KB * 1024 + payload.HEADROOM  # the bound's room for the rest holds

    report = stack.lab("report", "--run", str(res["run"])).stdout
    assert f"- payload: {KB} KiB of files in each KubeadmControlPlane" in report
    assert "- management: etcd db" in report, report[:2000]

    # another payload for the same cluster would roll its control plane out: refused, nothing changed
    generation = kcp["metadata"]["generation"]  # moves with the spec only (status writes do not)
    bad = stack.lab("create-clusters", "1", "--start", str(INDEX), check=False)
    assert bad.returncode == 1 and bad.stderr.startswith("error: ") and bad.stderr.count("\n") == 1
    assert "created with --payload-kb 30, not 0" in bad.stderr
    same = json.loads(
        stack.lab("create-clusters", "1", "--start", str(INDEX), "--payload-kb", str(KB), "-o", "json").stdout
    )
    assert same["unchanged"] == [NAME] and same["available"] == [NAME]
    after = stack.kubectl_json("get", "kubeadmcontrolplane", "-n", NAME, NAME)
    assert after["metadata"]["generation"] == generation

    stack.lab("delete-clusters", "--start", str(INDEX), "--count", "1", "--wait", timeout=TIMEOUT)
    assert residue(settings, [NAME]) == {}
