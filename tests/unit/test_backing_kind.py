"""The kind backing's pure parts: apiserver manifests, nodePorts, secrets, private files, CLI input.

What needs a cluster (register, present, remove, the dry-run of every object) is in
tests/e2e/test_backing_manifests.py, against the local stack's real kube-apiserver.
"""

from __future__ import annotations

import base64
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from lab import naming, pki, workload_apiserver
from lab.backing import kind, local
from lab.config import Settings
from lab.errors import LabError, UsageError
from lab.kube import Config
from lab.manifests import backing_apiserver as m
from lab.manifests import etcd as etcd_manifests

NAME, INDEX, PORT = "test-7", 7, 30042
NODE = "192.168.111.20"


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(home=tmp_path_factory.mktemp("labhome"))


@pytest.fixture(scope="module")
def etcd_ca() -> pki.KeyPair:
    return pki.new_ca("b1-etcd-ca")


@pytest.fixture(scope="module")
def cluster(etcd_ca: pki.KeyPair) -> pki.ClusterPKI:
    return pki.generate_cluster_pki(NAME, NODE, PORT, etcd_ca)


@pytest.fixture(scope="module")
def objs(settings: Settings, cluster: pki.ClusterPKI) -> list[dict[str, Any]]:
    return m.objects(settings, cluster, INDEX, PORT)


def one(objs: list[dict[str, Any]], kind_: str) -> dict[str, Any]:
    [o] = [o for o in objs if o["kind"] == kind_]
    return o


def container(objs: list[dict[str, Any]]) -> dict[str, Any]:
    [c] = one(objs, "Deployment")["spec"]["template"]["spec"]["containers"]
    return c


def flags(args: list[str]) -> dict[str, str]:
    return dict(a.removeprefix("--").split("=", 1) for a in args)


# --- flags ---------------------------------------------------------------------------------


def test_flags_are_local_modes_trimmed_set(settings: Settings, objs: list[dict[str, Any]]) -> None:
    """Same flag names, same values except the file paths (Pod mounts) and where it listens."""
    paths = workload_apiserver.PkiPaths.of(settings, NAME)
    here = flags(local.apiserver_argv(settings, NAME, INDEX, paths, "https://127.0.0.1:2379")[1:])
    pod = flags(container(objs)["args"])
    assert set(here) == set(pod)
    listen = {"bind-address", "advertise-address", "etcd-servers"}  # both serve on 6443
    differ = {k for k in here if here[k] != pod[k]}
    path_flags = {k for k, v in here.items() if v.startswith(str(settings.home))}
    assert differ == listen | path_flags, differ - listen - path_flags
    for trim in workload_apiserver.TRIM_FLAGS:
        assert trim in container(objs)["args"]
    assert pod["etcd-prefix"] == f"/{NAME}" and pod["etcd-compaction-interval"] == "0"
    assert pod["etcd-servers"] == etcd_manifests.client_url()
    env = {e["name"]: e.get("value") for e in container(objs)["env"]}
    assert {k: env[k] for k in workload_apiserver.ENV} == workload_apiserver.ENV


def test_every_file_a_flag_names_is_in_the_mounted_secret(objs: list[dict[str, Any]]) -> None:
    c = container(objs)
    [mount] = c["volumeMounts"]
    [vol] = one(objs, "Deployment")["spec"]["template"]["spec"]["volumes"]
    assert vol["name"] == mount["name"] and vol["secret"]["secretName"] == m.secret_name(NAME)
    keys = set(one(objs, "Secret")["data"])
    files = [v for v in flags(c["args"]).values() if v.startswith(mount["mountPath"] + "/")]
    assert len(files) == 8
    assert {f.rsplit("/", 1)[1] for f in files} == keys


def test_image_and_probes(settings: Settings, objs: list[dict[str, Any]]) -> None:
    c = container(objs)
    assert settings.versions.kubernetes == "v1.35.4"
    assert c["image"] == "registry.k8s.io/kube-apiserver:v1.35.4"
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"https": int(flags(c["args"])["secure-port"])}
    ready = c["readinessProbe"]["httpGet"]
    assert (ready["path"], ready["port"], ready["scheme"]) == ("/readyz", "https", "HTTPS")
    mem = c["resources"]["requests"]["memory"]
    assert mem.endswith("Mi") and int(mem[:-2]) >= 190  # measured idle RSS: 191.7 MiB
    assert "limits" not in c["resources"]


def test_service_selects_the_pod_and_targets_its_port(objs: list[dict[str, Any]]) -> None:
    dep, svc = one(objs, "Deployment"), one(objs, "Service")
    pod_labels = dep["spec"]["template"]["metadata"]["labels"]
    assert dep["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert svc["spec"]["selector"].items() <= pod_labels.items()
    [port] = svc["spec"]["ports"]
    assert svc["spec"]["type"] == "NodePort" and port["nodePort"] == PORT
    assert port["targetPort"] == "https"
    for o in objs:
        assert o["metadata"]["namespace"] == m.NAMESPACE
        assert o["metadata"]["labels"][naming.CLUSTER_LABEL] == NAME


def test_serving_certificate_names_the_node_and_etcd_is_in_cluster(
    settings: Settings, cluster: pki.ClusterPKI
) -> None:
    """endpoint() itself hands out ports from a real backing: tests/e2e/test_backing_manifests.py."""
    b = kind.KindBacking(settings, kind.Entry("b1", "kind", 3, {"node_address": NODE}))
    san = cluster.apiserver.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert NODE in {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}
    assert b.etcd_servers() == [etcd_manifests.client_url()]
    # an entry from before the block was recorded gets the playbook's defaults
    assert (str(b.block), b.etcd_node_port) == ("30000-30099", 32767)
    assert b.etcd_endpoint() == f"https://{NODE}:32767"
    b2 = kind.KindBacking(
        settings,
        kind.Entry(
            "b2", "kind", 3, {"node_address": NODE, "node_ports": "31000-31002", "etcd_node_port": 31003}
        ),
    )
    assert (str(b2.block), b2.etcd_endpoint()) == ("31000-31002", f"https://{NODE}:31003")


# --- secrets and files ---------------------------------------------------------------------


def _private_keys(values: list[bytes]) -> list[bytes]:
    return [v for v in values if b"PRIVATE KEY" in v]


def test_apiserver_secret_carries_no_ca_key(
    objs: list[dict[str, Any]], cluster: pki.ClusterPKI, etcd_ca: pki.KeyPair
) -> None:
    data = {k: base64.b64decode(v) for k, v in one(objs, "Secret")["data"].items()}
    forbidden = {cluster.ca.key_pem, cluster.proxy.key_pem, etcd_ca.key_pem}
    assert not forbidden & set(data.values())
    assert _private_keys(list(data.values())) == [
        data[m.TLS_KEY],
        data[m.SA_KEY],
        data[m.ETCD_KEY],
    ]
    assert data[m.CA_CRT] == cluster.ca.cert_pem and data[m.ETCD_CA_CRT] == etcd_ca.cert_pem
    assert not any(b"current-context" in v for v in data.values())  # no admin kubeconfig


def test_etcd_objects_carry_no_ca_key_and_name_the_node(
    settings: Settings, etcd_ca: pki.KeyPair, tmp_path: Path
) -> None:
    server = kind._server_pair(tmp_path, etcd_ca, NODE)
    root = kind._root_pair(tmp_path, etcd_ca)
    objs = kind.etcd_objects(settings, etcd_ca, server)
    for o in objs:
        for v in (o.get("data") or {}).values():
            assert base64.b64decode(v) not in (etcd_ca.key_pem, root.key_pem)  # root acts from outside
    san = server.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert NODE in {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}
    [ext] = [o for o in objs if o["metadata"]["name"] == etcd_manifests.EXTERNAL_SERVICE]
    assert ext["spec"]["ports"][0]["nodePort"] == etcd_manifests.EXTERNAL_NODE_PORT == 32767
    other = kind.etcd_objects(settings, etcd_ca, server, 31500)
    [ext] = [o for o in other if o["metadata"]["name"] == etcd_manifests.EXTERNAL_SERVICE]
    assert ext["spec"]["ports"][0]["nodePort"] == 31500
    assert {o["metadata"].get("namespace") for o in objs} == {None, etcd_manifests.NAMESPACE}
    assert {o["metadata"]["name"] for o in objs if o["kind"] == "Namespace"} == {
        etcd_manifests.NAMESPACE,
        m.NAMESPACE,
    }
    # kept: a second call returns the same pair; another node address re-issues it
    assert kind._server_pair(tmp_path, etcd_ca, NODE) == server
    assert kind._root_pair(tmp_path, etcd_ca) == root
    moved = kind._server_pair(tmp_path, etcd_ca, "192.168.111.21")
    assert moved != server
    for f in tmp_path.glob("*.key"):
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f


def test_private_kubeconfig_inlines_credentials_and_is_0600(tmp_path: Path, etcd_ca: pki.KeyPair) -> None:
    ca = pki.new_ca("kind-ca")
    client = pki.issue_client_cert(ca, "kubernetes-admin", ["system:masters"])
    (tmp_path / "ca.crt").write_bytes(ca.cert_pem)
    (tmp_path / "admin.crt").write_bytes(client.cert_pem)
    (tmp_path / "admin.key").write_bytes(client.key_pem)
    original = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "k", "cluster": {"server": "https://10.0.0.5:6443", "certificate-authority": "ca.crt"}}
        ],
        "users": [{"name": "u", "user": {"client-certificate": "admin.crt", "client-key": "admin.key"}}],
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
        "current-context": "c",
    }
    src = tmp_path / "in.yaml"
    src.write_text(yaml.safe_dump(original))
    out = tmp_path / "b" / "kubeconfig"
    kind.write_private(out, kind.private_kubeconfig(Config.from_kubeconfig(src), "b1"))
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    for f in (tmp_path / "ca.crt", tmp_path / "admin.crt", tmp_path / "admin.key"):
        f.unlink()  # the copy must not need them
    cfg = Config.from_kubeconfig(out)
    assert (cfg.server, cfg.ca_pem, cfg.cert_pem, cfg.key_pem) == (
        "https://10.0.0.5:6443",
        ca.cert_pem,
        client.cert_pem,
        client.key_pem,
    )
    serialization.load_pem_private_key(cfg.key_pem, None)


def test_node_address_defaults_to_the_api_servers_host() -> None:
    assert kind.default_node_address("https://192.168.111.20:6443") == NODE
    assert kind.default_node_address("https://[fd00::5]:6443") == "fd00::5"
    assert kind.check_node_address("backing-1.lab.example") == "backing-1.lab.example"
    for bad in ("", "a b", "-x.example", "x" * 64):
        with pytest.raises(UsageError):
            kind.check_node_address(bad)


def _kind_node(name: str, *addresses: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "status": {
            "addresses": [{"type": "Hostname", "address": name}]
            + [{"type": "InternalIP", "address": a} for a in addresses]
        },
    }


def test_a_loopback_api_server_gives_the_node_address_instead() -> None:
    """kind on this machine's engine publishes its API on 127.0.0.1; pods reach the node container."""
    nodes = [
        _kind_node("kb-worker", "198.19.8.3"),
        _kind_node("kb-control-plane", "fc00:f853:ccd:e793::2", "198.19.8.2"),
    ]
    assert kind.node_internal_ip(nodes) == "198.19.8.2"  # first by name, IPv4 first
    assert kind.node_internal_ip([_kind_node("v6", "fd00::7")]) == "fd00::7"
    assert kind.node_internal_ip([]) is None
    assert kind._default_address(nodes, "127.0.0.1") == "198.19.8.2"
    assert kind._default_address(nodes, NODE) == NODE  # a VM's internal IP is kept as it is
    assert kind._default_address([], "127.0.0.1") == "127.0.0.1"  # no Node: a bare apiserver


def test_a_node_without_the_pods_images_is_refused(settings: Settings) -> None:
    """The pods never pull: register refuses nodes whose status lists neither image."""
    etcd_image, apiserver_image = kind.pod_images(settings)
    assert (etcd_image, apiserver_image) == (
        "registry.k8s.io/etcd:3.6.6-0",
        f"registry.k8s.io/kube-apiserver:{settings.versions.kubernetes}",
    )

    def node(name: str, *names: str, filler: int = 0) -> dict[str, Any]:
        images = [{"names": [n, f"sha256:{i:064x}"]} for i, n in enumerate(names)]
        images += [{"names": [f"example.org/filler:{i}"]} for i in range(filler)]
        return {**_kind_node(name, "198.19.8.2"), "status": {"images": images}}

    full = node("a", etcd_image, apiserver_image, "registry.k8s.io/pause:3.10.1")
    old = node("b", "registry.k8s.io/etcd:3.5.21-0", apiserver_image)
    crowded = node("c", filler=kind.NODE_STATUS_MAX_IMAGES)  # a truncated list proves nothing
    assert kind.missing_images([full, old, crowded], [etcd_image, apiserver_image]) == {"b": [etcd_image]}
    kind._check_images(settings, "kb", [full, crowded])
    kind._check_images(settings, "kb", [])  # no Node (a bare apiserver): nothing to judge
    with pytest.raises(UsageError, match=r"backing kb: node b does not hold registry.k8s.io/etcd:3.6.6-0, "):
        kind._check_images(settings, "kb", [full, old])


def test_pod_reason_names_the_cause() -> None:
    assert "no Pod" in kind.pod_reason([])
    pull = {"status": {"containerStatuses": [{"state": {"waiting": {"reason": "ImagePullBackOff"}}}]}}
    assert "ImagePullBackOff" in kind.pod_reason([pull])
    unsched = {
        "status": {
            "phase": "Pending",
            "conditions": [{"type": "PodScheduled", "status": "False", "message": "Insufficient memory"}],
        }
    }
    assert kind.pod_reason([unsched]) == "PodScheduled: Insufficient memory"


# --- CLI: bad input is one line and changes nothing ----------------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["backing", "add", "b1"], "error: give exactly one of --kubeconfig"),
        (
            ["backing", "add", "b1", "--kubeconfig", "k", "--host", "h"],
            "error: give exactly one of --kubeconfig",
        ),
        (
            ["backing", "add", "b1", "--kubeconfig", "k", "--runtime", "process"],
            "error: --runtime process does not go",
        ),
        (
            ["backing", "add", "b1", "--host", "h", "--runtime", "docker"],
            "error: --runtime must be kind, process or mux",
        ),
        (
            ["backing", "add", "b1", "--kubeconfig", "k", "--capacity", "0"],
            "error: --capacity must be at least 1",
        ),
        (
            ["backing", "add", "b1", "--kubeconfig", "k", "--capacity", "101"],
            "error: capacity 101 exceeds the 100 NodePorts of block 30000-30099",
        ),
        (
            ["backing", "add", "b1", "--kubeconfig", "k", "--node-ports", "30000-30009", "--capacity", "11"],
            "error: capacity 11 exceeds the 10 NodePorts of block 30000-30009",
        ),
        (
            ["backing", "add", "b1", "--kubeconfig", "k", "--node-ports", "30100"],
            "error: invalid NodePort block '30100': FIRST-LAST",
        ),
        (
            ["backing", "add", "b1", "--kubeconfig", "k", "--node-ports", "29990-30089"],
            "error: NodePort block 29990-30089 is outside Kubernetes' NodePort range 30000-32767",
        ),
        (
            ["backing", "add", "b1", "--kubeconfig", "k", "--etcd-node-port", "30050"],
            "error: etcd NodePort 30050 lies inside the apiservers' NodePort block 30000-30099",
        ),
        (
            ["backing", "add", "b1", "--host", "h", "--node-ports", "30000-30099"],
            "error: --node-ports and --etcd-node-port go with --kubeconfig",
        ),
        (["backing", "add", "B_1", "--kubeconfig", "k"], "error: invalid backing name 'B_1'"),
        (["backing", "add", "local", "--kubeconfig", "k"], "error: 'local' is a built-in backing"),
        (
            ["backing", "add", "b1", "--kubeconfig", "nosuch.yaml"],
            "error: kubeconfig nosuch.yaml does not exist",
        ),
        (["backing", "remove", "local"], "error: 'local' is built in"),
        (["backing", "remove", "b9"], "error: no backing named 'b9' (registered: none)"),
    ],
)
def test_bad_input_is_one_line(run_lab, lab_env: dict[str, str], args: list[str], expected: str) -> None:
    if "k" in args:
        Path("k").write_text("apiVersion: v1\nkind: Config\n")
    r = run_lab(*args)
    lines = r.stderr.strip().splitlines()
    assert r.returncode != 0 and len(lines) == 1 and lines[0].startswith(expected), r.stderr
    assert not (Path(lab_env["LAB_HOME"]) / "backings").exists()


def test_a_cluster_that_does_not_answer_is_refused_and_nothing_saved(
    run_lab, lab_env: dict[str, str], tmp_path: Path
) -> None:
    from support.ports import free_port

    ca = pki.new_ca("kind-ca")
    admin = pki.issue_client_cert(ca, "kubernetes-admin", ["system:masters"])
    server = f"https://127.0.0.1:{free_port()}"  # nothing listens there
    (tmp_path / "kind.yaml").write_bytes(pki.render_kubeconfig("kind-b1", server, ca.cert_pem, admin))
    r = run_lab("backing", "add", "b1", "--kubeconfig", str(tmp_path / "kind.yaml"), timeout=60)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 1 and len(lines) == 1, r.stderr
    assert lines[0].startswith(
        f"error: the cluster of kubeconfig {tmp_path / 'kind.yaml'} ({server}) does not answer"
    )
    assert not (Path(lab_env["LAB_HOME"]) / "backings").exists()
    r = run_lab("backing", "list", "-o", "json")
    assert r.returncode == 0 and "b1" not in r.stdout


def test_register_checks_before_writing(settings: Settings, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="capacity must be at least 1"):
        kind.register(settings, "b1", tmp_path / "nosuch", capacity=0)
    with pytest.raises(LabError, match="not a usable kubeconfig"):
        (tmp_path / "bad").write_text("clusters: []\n")
        kind.register(settings, "b1", tmp_path / "bad", capacity=1)
    assert not (settings.home / "backings").exists()


def test_list_in_a_fresh_home_shows_the_built_in_backings_and_writes_nothing(
    run_lab, lab_env: dict[str, str]
) -> None:
    r = run_lab("backing", "list", "-o", "json")
    assert r.returncode == 0, r.stderr
    assert yaml.safe_load(r.stdout) == [
        {"name": "local", "runtime": "local", "capacity": 100, "used": 0, "address": "127.1.0.0/16"},
        {"name": "mux", "runtime": "mux", "capacity": 1000, "used": 0, "address": "127.2.0.1"},
    ]
    assert not Path(lab_env["LAB_HOME"]).exists()


class _Pods:
    """The backing cluster's Pod list, answered from a script: one list of cluster names per call."""

    def __init__(self, script: list[list[str]]) -> None:
        self.script, self.calls = script, 0

    def list(self, api: str, kind_: str, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        assert (api, kind_, namespace, label_selector) == ("v1", "Pod", m.NAMESPACE, naming.CLUSTER_LABEL)
        names = self.script[min(self.calls, len(self.script) - 1)]
        self.calls += 1
        return [{"metadata": {"labels": {naming.CLUSTER_LABEL: n}}} for n in names]


def test_remove_waits_until_the_clusters_pods_are_gone(settings: Settings) -> None:
    """Only the removed clusters' Pods count (another cluster's keep running); a Pod that stays is
    one error naming it."""
    b = kind.KindBacking(settings, kind.Entry("b1", "kind", 3, {"node_address": NODE}))
    terminating: Any = _Pods([["test-1", "test-2", "test-9"], ["test-2", "test-9"], ["test-9"]])
    b._wait_pods_gone(terminating, ["test-1", "test-2"], timeout=30)
    assert terminating.calls == 3
    stuck: Any = _Pods([["test-1", "test-9"]])
    with pytest.raises(LabError, match=r"backing b1: apiserver Pod\(s\) of test-1 still there 1s after"):
        b._wait_pods_gone(stuck, ["test-1", "test-2"], timeout=1)
