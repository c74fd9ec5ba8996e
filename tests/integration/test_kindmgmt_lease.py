"""lab.kindmgmt.lease.release_stale against a real kube-apiserver: a manager's Lease is deleted only
once the pod holding it is gone, never while that pod runs or is still terminating."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from support.apiserver import RunningApiserver

from lab.kindmgmt import lease
from lab.kube import Client

COMPONENT = "capi-manager"
FINALIZER = "scale-lab.test/hold"


@pytest.fixture
def client(apiserver: RunningApiserver) -> Iterator[Client]:
    with Client.from_kubeconfig(apiserver.kubeconfig, qps=0) as c:
        yield c


@pytest.fixture
def namespace(client: Client) -> Iterator[str]:
    name = f"lease-{uuid.uuid4().hex[:8]}"
    client.apply(
        [
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
            # no controller-manager here: the ServiceAccount admission plugin needs it made by hand
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {"name": "default", "namespace": name},
            },
        ]
    )
    yield name
    client.delete("v1", "Namespace", name)


def _lease(client: Client, namespace: str, holder: str) -> dict[str, Any]:
    obj = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": lease.LEASES[COMPONENT], "namespace": namespace},
        "spec": {"holderIdentity": f"{holder}_{uuid.uuid4()}", "leaseDurationSeconds": lease.LEASE_SECONDS},
    }
    return client.apply([obj])[0]


def _pod(client: Client, namespace: str, name: str, finalizers: list[str] | None = None) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "finalizers": finalizers or []},
        "spec": {"containers": [{"name": "manager", "image": "manager:test"}]},
    }
    client.apply([pod])


def _lease_exists(client: Client, namespace: str) -> bool:
    return client.get("coordination.k8s.io/v1", "Lease", lease.LEASES[COMPONENT], namespace) is not None


def test_a_lease_whose_holder_pod_is_gone_is_released(client: Client, namespace: str) -> None:
    _lease(client, namespace, "capi-controller-manager-5d9f8-old")
    assert lease.release_stale(client, COMPONENT, namespace) is True
    assert not _lease_exists(client, namespace)
    assert lease.release_stale(client, COMPONENT, namespace) is False  # nothing left to release


def test_a_lease_held_by_a_running_pod_is_kept(client: Client, namespace: str) -> None:
    _pod(client, namespace, "capi-controller-manager-5d9f8-new")
    _lease(client, namespace, "capi-controller-manager-5d9f8-new")
    assert lease.release_stale(client, COMPONENT, namespace) is False
    assert _lease_exists(client, namespace)


def test_a_lease_held_by_a_terminating_pod_is_kept_until_the_pod_is_gone(
    client: Client, namespace: str
) -> None:
    pod = "capi-controller-manager-5d9f8-old"
    _pod(client, namespace, pod, [FINALIZER])
    _lease(client, namespace, pod)
    client.delete("v1", "Pod", pod, namespace)  # held by the finalizer: terminating
    assert lease.release_stale(client, COMPONENT, namespace, timeout=2.0) is False
    assert _lease_exists(client, namespace)
    path = client.resource("v1", "Pod").path(namespace, pod)
    client.request(
        "PATCH",
        path,
        body=[{"op": "remove", "path": "/metadata/finalizers"}],
        content_type="application/json-patch+json",
    )
    assert lease.release_stale(client, COMPONENT, namespace, timeout=30.0) is True
    assert not _lease_exists(client, namespace)


def test_bmo_releases_its_own_lease_and_is_left_alone(client: Client, namespace: str) -> None:
    """BMO sets LeaderElectionReleaseOnCancel: lab never deletes its Lease, even with the holder gone."""
    bmo = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": "baremetal-operator", "namespace": namespace},
        "spec": {"holderIdentity": f"baremetal-operator-controller-manager-gone_{uuid.uuid4()}"},
    }
    client.apply([bmo])
    assert lease.release_stale(client, "bmo-manager", namespace) is False
    assert client.get("coordination.k8s.io/v1", "Lease", "baremetal-operator", namespace) is not None
