"""One workload cluster to Available through the real controllers of `lab up`'s stack: CAPI, KCP,
CABPK, CAPM3, IPAM, BMO (test mode) and the supervised node simulator. Made with the library calls
create-clusters is built from (backing.local.ensure + wait_ready, server-side apply of
render.local_objects), so a failure here points at the objects or the simulator, not the CLI.

Index 950 keeps clear of the other e2e modules. Tests run in file order on one cluster; the
fixture deletes it (Cluster, namespace, apiserver, tenant) whatever happens.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import yaml
from support.stack import Stack
from support.wait import wait_for

from lab import config, naming, nodesim, phases, render
from lab.backing import local
from lab.clusters import etcd_health
from lab.kube import Client
from lab.phases import Phase
from lab.stack import mgmt

pytestmark = pytest.mark.slow

INDEX = 950
CAPI = "cluster.x-k8s.io/v1beta2"
KCP_API = "controlplane.cluster.x-k8s.io/v1beta2"
M3 = "infrastructure.cluster.x-k8s.io/v1beta2"
BMH = "metal3.io/v1alpha1"
AVAILABLE_TIMEOUT = 300.0
WORKER_TIMEOUT = 240.0
DELETE_TIMEOUT = 300.0


def _true(obj: Any, type_: str) -> bool:
    return obj is not None and phases.is_true(obj, type_)


def _settled(client: Client, name: str) -> bool:
    kcp = client.get(KCP_API, "KubeadmControlPlane", name, name)
    machines = client.list(CAPI, "Machine", name, label_selector=phases.CONTROL_PLANE_LABEL)
    return (
        kcp is not None
        and (kcp.get("status") or {}).get("readyReplicas") == 1
        and len(machines) == 1
        and _true(machines[0], "Ready")
    )


@dataclass
class Made:
    settings: config.Settings
    client: Client
    name: str
    applied_at: float
    available_at: float


def _delete_and_wait(settings: config.Settings, client: Client, name: str) -> None:
    """The cluster the way delete-clusters takes it apart: Cluster (CAPI deprovisions the hosts
    through BMO), namespace, then apiserver, tenant and files."""
    if client.get(CAPI, "Cluster", name, name) is not None:
        client.delete(CAPI, "Cluster", name, name)
    wait_for(
        f"Cluster {name} gone", lambda: client.get(CAPI, "Cluster", name, name) is None, DELETE_TIMEOUT, 2.0
    )
    if client.get("v1", "Namespace", name) is not None:
        client.delete("v1", "Namespace", name)
    wait_for(
        f"namespace {name} gone", lambda: client.get("v1", "Namespace", name) is None, DELETE_TIMEOUT, 2.0
    )
    local.remove(settings, [name])


@pytest.fixture(scope="module")
def made(stack: Stack) -> Iterator[Made]:
    settings = stack.settings()
    name = naming.cluster_name(settings.prefix, INDEX)
    client = Client.from_kubeconfig(mgmt.admin_kubeconfig_path(settings), parallel=8)
    try:
        objs = render.local_objects(settings, INDEX)
        started = time.time()
        client.apply(objs[:1])  # the namespace first, as create-clusters does
        local.ensure(settings, [INDEX])
        local.wait_ready(settings, [name], timeout=180)
        client.apply(objs[1:])
        applied = time.time()
        wait_for(
            f"Cluster {name} Available",
            lambda: _true(client.get(CAPI, "Cluster", name, name), "Available"),
            AVAILABLE_TIMEOUT,
        )
        done = time.time()
        # the Machine's Ready and KCP's replica counts follow Cluster Available by a reconcile or two
        wait_for(f"{name}: control-plane Machine Ready, KCP counting it", lambda: _settled(client, name), 60)
        print(f"\n{name}: objects applied {applied - started:.1f}s, Available {done - applied:.1f}s later")
        yield Made(settings, client, name, applied, done)
    finally:
        try:
            _delete_and_wait(settings, client, name)
        finally:
            client.close()


def _cp_machine(m: Made) -> dict[str, Any]:
    [machine] = m.client.list(CAPI, "Machine", m.name, label_selector=phases.CONTROL_PLANE_LABEL)
    return machine


def _host_of(m: Made, machine: dict[str, Any]) -> dict[str, Any]:
    """Machine -> Metal3Machine -> the BareMetalHost CAPM3 claimed for it (its annotation)."""
    m3m = m.client.get(M3, "Metal3Machine", machine["spec"]["infrastructureRef"]["name"], m.name)
    assert m3m is not None
    ns, _, host = m3m["metadata"]["annotations"]["metal3.io/BareMetalHost"].partition("/")
    bmh = m.client.get(BMH, "BareMetalHost", host, ns)
    assert bmh is not None
    return bmh


def test_control_plane_kcp_and_cluster_are_available(made: Made) -> None:
    c = made.client
    cluster = c.get(CAPI, "Cluster", made.name, made.name)
    assert _true(cluster, "Available") and _true(cluster, "ControlPlaneAvailable")
    assert cluster["status"]["initialization"]["controlPlaneInitialized"] is True  # type: ignore[index]
    kcp = c.get(KCP_API, "KubeadmControlPlane", made.name, made.name)
    assert _true(kcp, "Available")
    assert kcp["status"]["initialization"]["controlPlaneInitialized"] is True  # type: ignore[index]
    assert kcp["status"]["readyReplicas"] == 1 and kcp["status"]["availableReplicas"] == 1  # type: ignore[index]
    machine = _cp_machine(made)
    assert _true(machine, "Ready") and _true(machine, "NodeHealthy"), machine["status"].get("conditions")
    assert machine["status"]["phase"] == "Running"
    assert machine["status"]["nodeRef"]["name"] == machine["metadata"]["name"]
    assert machine["spec"]["providerID"].startswith("metal3://")


#: CAPI v1beta2 conditions of negative polarity: False is the healthy value.
NEGATIVE = {"Paused", "Deleting", "RollingOut", "ScalingUp", "ScalingDown", "Remediating", "Updating"}
ETCD_REPORT_TIMEOUT = etcd_health.INTERVAL * 2 + 30


def _conditions(obj: Any) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}


def test_every_condition_is_what_a_real_clusters_would_be(made: Made) -> None:
    """What `clusterctl describe cluster --show-conditions all` reads: Cluster, Metal3Cluster, KCP,
    the control-plane Machine and its Metal3Machine. KCP's EtcdClusterHealthy is lab's to report
    (external etcd: lab.clusters.etcd_health); it turns True/Healthy within two passes."""
    c = made.client

    def etcd_reported() -> bool:
        kcp = c.get(KCP_API, "KubeadmControlPlane", made.name, made.name)
        cond = _conditions(kcp or {}).get("EtcdClusterHealthy") or {}
        return (cond.get("status"), cond.get("reason")) == ("True", "Healthy")

    wait_for(f"{made.name}: KCP EtcdClusterHealthy reported", etcd_reported, ETCD_REPORT_TIMEOUT, 2.0)
    machine = _cp_machine(made)
    objects = {
        "Cluster": c.get(CAPI, "Cluster", made.name, made.name),
        "Metal3Cluster": c.get(M3, "Metal3Cluster", made.name, made.name),
        "KubeadmControlPlane": c.get(KCP_API, "KubeadmControlPlane", made.name, made.name),
        "Machine": machine,
        "Metal3Machine": c.get(M3, "Metal3Machine", machine["spec"]["infrastructureRef"]["name"], made.name),
    }
    wrong = {
        f"{kind}.{t}": f"{cond['status']} {cond.get('reason')}: {cond.get('message', '')[:120]}"
        for kind, obj in objects.items()
        for t, cond in _conditions(obj).items()
        if cond["status"] != ("False" if t in NEGATIVE else "True")
    }
    assert wrong == {}, wrong
    assert all(_conditions(o) for o in objects.values()), "an object without v1beta2 conditions"


def test_host_is_provisioned_with_the_template_image_and_stamped(made: Made) -> None:
    bmh = _host_of(made, _cp_machine(made))
    assert bmh["status"]["provisioning"]["state"] == "provisioned"
    assert bmh["spec"]["consumerRef"]["kind"] == "Metal3Machine"
    assert bmh["spec"]["image"]["url"].endswith("/node.raw")
    assert phases.observed(bmh) == [Phase.bmh_provisioned, Phase.node_written]
    written = phases.node_written_at(bmh)
    assert written is not None and made.applied_at < written < made.available_at


def test_simulated_node_pods_and_kubeadm_config(made: Made) -> None:
    machine = _cp_machine(made)
    bmh = _host_of(made, machine)
    node_name = machine["status"]["nodeRef"]["name"]
    with Client.from_kubeconfig(local.admin_kubeconfig(made.settings, made.name)) as wc:
        node = wc.get("v1", "Node", node_name)
        assert node is not None
        labels = node["metadata"]["labels"]
        assert labels[nodesim.UUID_LABEL] == bmh["metadata"]["uid"]
        assert labels[nodesim.CP_ROLE_LABEL] == ""
        assert {"key": nodesim.CP_ROLE_LABEL, "effect": "NoSchedule"} in node["spec"]["taints"]
        # written empty by the simulator, set by CAPM3 from the label: the real Metal3 path
        assert node["spec"]["providerID"] == machine["spec"]["providerID"]
        assert _true(node, "Ready")
        pods = wc.list("v1", "Pod", "kube-system", label_selector="tier=control-plane")
        assert sorted(p["metadata"]["labels"]["component"] for p in pods) == sorted(nodesim.COMPONENTS)
        for p in pods:
            assert p["metadata"]["name"] == f"{p['metadata']['labels']['component']}-{node_name}"
            assert p["metadata"]["annotations"]["kubernetes.io/config.mirror"]
            assert p["spec"]["nodeName"] == node_name
            assert p["status"]["phase"] == "Running" and _true(p, "Ready")
        cm = wc.get("v1", "ConfigMap", "kubeadm-config", "kube-system")
        assert cm is not None
        cc = yaml.safe_load(cm["data"]["ClusterConfiguration"])
        host, port = naming.local_endpoint(INDEX)
        assert cc["clusterName"] == made.name and cc["controlPlaneEndpoint"] == f"{host}:{port}"
        assert cc["kubernetesVersion"] == made.settings.versions.kubernetes
    kc = made.client.get(
        "bootstrap.cluster.x-k8s.io/v1beta2",
        "KubeadmConfig",
        machine["spec"]["bootstrap"]["configRef"]["name"],
        made.name,
    )
    assert kc is not None and kc["metadata"]["annotations"][nodesim.CERT_EXPIRY_ANNOTATION]


def _second_host(made: Made) -> list[dict[str, Any]]:
    """A worker host and its BMC secret, as `create-clusters --workers 1` renders them."""
    objs = render.local_objects(made.settings, INDEX, n_workers=1)
    return [o for o in objs if o["metadata"]["name"].startswith(f"{made.name}-host-1")]


def test_machine_deployment_scaled_to_one_gets_a_worker_node(made: Made) -> None:
    c = made.client
    c.apply(_second_host(made))
    [md] = [o for o in render.local_objects(made.settings, INDEX) if o["kind"] == "MachineDeployment"]
    md["spec"]["replicas"] = 1
    c.apply_one(md)

    def worker() -> dict[str, Any] | None:
        ms = c.list(
            CAPI, "Machine", made.name, label_selector=f"cluster.x-k8s.io/deployment-name={made.name}"
        )
        ready = [m for m in ms if _true(m, "Ready") and (m.get("status") or {}).get("nodeRef")]
        return ready[0] if ready else None

    machine = wait_for("worker Machine Ready with a nodeRef", worker, WORKER_TIMEOUT, 2.0)
    bmh = _host_of(made, machine)
    assert bmh["status"]["provisioning"]["state"] == "provisioned"
    assert phases.node_written_at(bmh) is not None
    with Client.from_kubeconfig(local.admin_kubeconfig(made.settings, made.name)) as wc:
        node = wc.get("v1", "Node", machine["status"]["nodeRef"]["name"])
        assert node is not None
        assert node["metadata"]["labels"][nodesim.UUID_LABEL] == bmh["metadata"]["uid"]
        assert nodesim.CP_ROLE_LABEL not in node["metadata"]["labels"] and not node["spec"].get("taints")
        assert node["spec"]["providerID"] == machine["spec"]["providerID"]
        assert (
            wc.list("v1", "Pod", "kube-system", field_selector=f"spec.nodeName={node['metadata']['name']}")
            == []
        )
    got = wait_for(
        "MachineDeployment available",
        lambda: (
            (d := c.get(CAPI, "MachineDeployment", made.name, made.name))
            and (d.get("status") or {}).get("availableReplicas") == 1
            and d
        ),
        WORKER_TIMEOUT,
        2.0,
    )
    assert got["status"]["readyReplicas"] == 1
    # the Cluster's Available aggregates its MachineDeployments': CAPI's cluster controller sets it on
    # its next reconcile after the MachineDeployment's status (CI once read it in between)
    wait_for(
        "Cluster Available with its worker",
        lambda: _true(c.get(CAPI, "Cluster", made.name, made.name), "Available"),
        WORKER_TIMEOUT,
        2.0,
    )
