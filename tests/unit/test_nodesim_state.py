"""What the node simulator keeps per cluster and per host, and when it lets go of it: a cluster
deleted and created again under the same name must never be served its predecessor's client."""

from __future__ import annotations

from typing import Any

import pytest

from lab import nodesim, pki
from lab.errors import LabError
from lab.kube import ApiError, Client


def _kubeconfig(name: str = "test-7", port: int = 6443) -> bytes:
    """A fresh cluster's admin kubeconfig: a new CA each call, as a re-created cluster gets."""
    return pki.generate_cluster_pki(name, "127.1.0.7", port, pki.new_ca("etcd-ca")).admin_kubeconfig


def _bmh(uid: str, ns: str = "test-7", name: str = "h") -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": ns, "uid": uid},
        "spec": {"consumerRef": {"kind": "Metal3Machine", "name": "m"}},
    }


def test_same_kubeconfig_same_client_new_ca_new_client_and_the_old_one_closed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    closed: list[Client] = []
    monkeypatch.setattr(Client, "close", lambda self: closed.append(self))
    clients = nodesim.WorkloadClients()
    first = _kubeconfig()
    a = clients.get("test-7/test-7", first)
    assert clients.get("test-7/test-7", first) is a and closed == []
    second = _kubeconfig()  # same name, deleted and created again
    b = clients.get("test-7/test-7", second)
    assert b is not a and closed == [a]
    assert b.config.ca_pem != a.config.ca_pem
    assert clients.get("test-7/test-7", second) is b and clients.keys() == ["test-7/test-7"]


def test_drop_only_the_client_that_failed(monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker whose call failed TLS drops its client, never a newer one another worker made."""
    closed: list[Client] = []
    monkeypatch.setattr(Client, "close", lambda self: closed.append(self))
    clients = nodesim.WorkloadClients()
    old = clients.get("test-7/test-7", _kubeconfig())
    new = clients.get("test-7/test-7", _kubeconfig())
    clients.drop("test-7/test-7", old)  # already replaced: nothing happens
    assert clients.keys() == ["test-7/test-7"] and closed == [old]
    clients.drop("test-7/test-7", new)
    assert clients.keys() == [] and closed == [old, new]


def test_drop_namespace_drops_its_clusters_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Client, "close", lambda self: None)
    clients = nodesim.WorkloadClients()
    for key in ("test-7/test-7", "test-70/test-70", "test-7x/test-7"):
        clients.get(key, _kubeconfig())
    clients.drop_namespace("test-7")
    assert clients.keys() == ["test-70/test-70", "test-7x/test-7"]
    clients.close()
    assert clients.keys() == []


@pytest.mark.parametrize(
    ("error", "stale"),
    [
        (ApiError(0, "TLS", "GET /api/v1/nodes/x: TLS error: CERTIFICATE_VERIFY_FAILED"), True),
        (ApiError(401, "Unauthorized", "Unauthorized"), True),
        (ApiError(0, "Connection", "cannot reach"), False),
        (ApiError(404, "NotFound", "nodes x not found"), False),
    ],
)
def test_stale_credentials(error: ApiError, stale: bool) -> None:
    assert nodesim.stale_credentials(error) is stale


def test_a_failed_call_with_stale_credentials_drops_the_client(monkeypatch: pytest.MonkeyPatch) -> None:
    """reconcile_host: the client that failed TLS is dropped, so the retry connects afresh."""
    monkeypatch.setattr(Client, "close", lambda self: None)
    machine = {
        "metadata": {
            "name": "test-7-cp",
            "namespace": "test-7",
            "labels": {nodesim.CLUSTER_NAME_LABEL: "test-7"},
        },
        "spec": {"version": "v1.35.4"},
    }
    m3m = {"metadata": {"ownerReferences": [{"kind": "Machine", "name": "test-7-cp"}]}}

    class Mgmt:
        def get(self, api: str, kind: str, name: str, ns: str | None = None) -> Any:
            return {"Metal3Machine": m3m, "Machine": machine, "Cluster": None}.get(kind)

    def tls_fails(*_a: Any, **_kw: Any) -> bool:
        raise ApiError(0, "TLS", "TLS error: CERTIFICATE_VERIFY_FAILED")

    kubeconfig = _kubeconfig()
    monkeypatch.setattr(nodesim, "workload_kubeconfig", lambda *_a: kubeconfig)
    monkeypatch.setattr(nodesim, "write_node", tls_fails)
    bmh = {
        "metadata": {"name": "h", "namespace": "test-7", "uid": "u1"},
        "spec": {"consumerRef": {"kind": "Metal3Machine", "name": "m", "apiVersion": "x/v1"}},
        "status": {"provisioning": {"state": "provisioned"}},
    }
    clients = nodesim.WorkloadClients()
    with pytest.raises(ApiError, match="TLS"):
        nodesim.reconcile_host(None, Mgmt(), bmh, clients)  # type: ignore[arg-type]
    assert clients.keys() == []


def test_forget_drops_the_host_its_namespace_verdict_and_clients(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Client, "close", lambda self: None)
    st = nodesim._State()
    st.done |= {("u1", "m"), ("u2", "m2")}
    st.pending["u1"] = _bmh("u1")
    st.lab_ns |= {"test-7": True, "test-8": True}
    st.clients.get("test-7/test-7", _kubeconfig())
    st.clients.get("test-8/test-8", _kubeconfig("test-8"))
    st.forget(_bmh("u1"))
    assert st.done == {("u2", "m2")} and st.pending == {} and st.lab_ns == {"test-8": True}
    assert st.clients.keys() == ["test-8/test-8"]
    # a copy of the deleted host still queued in a worker neither runs nor comes back for a retry
    st.retry_later(_bmh("u1"))
    assert st.pending == {}
    ran: list[str] = []
    monkeypatch.setattr(nodesim, "reconcile_host", lambda *_a: ran.append("x"))
    nodesim._handle(None, None, _bmh("u1"), st)  # type: ignore[arg-type]
    assert ran == [] and st.inflight == set()


class _Mgmt:
    def __init__(self, hosts: dict[str, dict[str, Any]]) -> None:
        self.hosts = hosts

    def get(self, api: str, kind: str, name: str, ns: str | None = None) -> Any:
        if kind == "Namespace":
            return {"metadata": {"name": name, "labels": {"scale-lab.metal3.io/cluster": name}}}
        return self.hosts.get(name)


def test_a_retry_uses_the_host_as_it_is_now_and_forgets_one_that_is_gone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[dict[str, Any]] = []

    def reconcile(_s: Any, _m: Any, bmh: dict[str, Any], _c: Any) -> bool:
        seen.append(bmh)
        raise LabError("workload apiserver not ready")

    monkeypatch.setattr(nodesim, "reconcile_host", reconcile)
    st = nodesim._State()
    old, now = _bmh("u1"), {**_bmh("u1"), "status": {"fresh": True}}
    nodesim._retry(None, _Mgmt({"h": now}), old, st)  # type: ignore[arg-type]
    assert seen == [now] and st.pending == {"u1": now}

    seen.clear()
    replaced = _bmh("u2")  # same name, another host: the one that failed is gone
    nodesim._retry(None, _Mgmt({"h": replaced}), now, st)  # type: ignore[arg-type]
    assert seen == [] and st.pending == {} and "u1" in st.deleted
    nodesim._retry(None, _Mgmt({}), _bmh("u3"), st)  # type: ignore[arg-type]
    assert seen == [] and st.pending == {} and "u3" in st.deleted


def test_a_failure_during_a_long_watch_ends_it_after_the_retry_interval(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without this, a host that failed once waited up to the long watch's five minutes."""
    monkeypatch.setattr(nodesim, "RETRY_SECONDS", 0.05)

    class FakeWatch:
        def __init__(self) -> None:
            import threading

            self.stopped = threading.Event()

        def stop(self) -> None:
            self.stopped.set()

    st = nodesim._State()
    short, long = FakeWatch(), FakeWatch()
    st.watching(short, long=False)  # type: ignore[arg-type]
    st.retry_later(_bmh("u1"))
    assert not short.stopped.wait(0.3)  # a short watch ends by itself
    st.pending.clear()
    st.watching(long, long=True)  # type: ignore[arg-type]
    st.retry_later(_bmh("u2"))
    assert long.stopped.wait(5)
    # a failure queued just before the long watch began ends it too
    late = FakeWatch()
    st.watching(late, long=True)  # type: ignore[arg-type]
    assert late.stopped.wait(5)


class _StoppableWatch:
    def __init__(self) -> None:
        self.stopped = False

    def stop(self) -> None:
        self.stopped = True


def test_resync_hands_again_only_the_hosts_of_the_namespaces_given(monkeypatch: pytest.MonkeyPatch) -> None:
    """A restarted lab-mux: its hosts are done no more, a local cluster's stay done, and the watch the
    loop reads ends so its next list brings every host again."""
    ran: list[str] = []
    monkeypatch.setattr(nodesim, "_is_lab_namespace", lambda *_a: True)
    monkeypatch.setattr(
        nodesim, "reconcile_host", lambda _s, _m, bmh, _c: ran.append(bmh["metadata"]["uid"]) or True
    )
    st = nodesim._State()
    for uid, ns in (("u-mux", "test-1"), ("u-local", "test-2")):
        nodesim._handle(None, None, _bmh(uid, ns), st)  # type: ignore[arg-type]
    assert ran == ["u-mux", "u-local"] and st.namespace_of == {"u-mux": "test-1", "u-local": "test-2"}
    watch = _StoppableWatch()
    st.current = watch  # type: ignore[assignment]
    assert st.resync({"test-1"}) == 1
    assert watch.stopped and st.done == {("u-local", "m")}
    for uid, ns in (("u-mux", "test-1"), ("u-local", "test-2")):
        nodesim._handle(None, None, _bmh(uid, ns), st)  # type: ignore[arg-type]
    assert ran == ["u-mux", "u-local", "u-mux"]  # the local host was not handled again


def test_a_node_written_again_carries_the_machines_provider_id() -> None:
    assert "providerID" not in nodesim.node("m-1", "u-1", control_plane=True)["spec"]  # CAPM3 sets it
    again = nodesim.node("m-1", "u-1", control_plane=True, provider_id="metal3://ns/h/m")
    assert again["spec"]["providerID"] == "metal3://ns/h/m"
