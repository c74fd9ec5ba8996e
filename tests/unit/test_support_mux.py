"""support.mux, the checks the mux e2e test and the restart benchmark share: the all-clusters poll
(three LISTs) must say what the per-cluster check says of every cluster, or the benchmark's
"Available again" would not be the test's; a workload API that does not answer is not whole."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import yaml
from support.fakes import FakeMgmt
from support.mux import CAPI, KCP_API, cluster_available, listening, not_available, workload_whole

from lab import phases


def _obj(api: str, kind: str, ns: str, name: str, available: bool | None, **extra: Any) -> dict[str, Any]:
    status: dict[str, Any] = dict(extra)
    if available is not None:
        status["conditions"] = [{"type": "Available", "status": str(available)}]
    return {
        "apiVersion": api,
        "kind": kind,
        "metadata": {"namespace": ns, "name": name, "labels": {phases.CONTROL_PLANE_LABEL: ""}},
        "status": status,
    }


class Mgmt(FakeMgmt):
    """FakeMgmt that also answers GETs and one namespace's LISTs, as cluster_available asks."""

    def list(  # type: ignore[override]
        self, api_version: str, kind: str, namespace: str | None = None, **kw: Any
    ) -> list[dict[str, Any]]:
        found = super().list(api_version, kind, **kw)
        return [o for o in found if namespace is None or o["metadata"]["namespace"] == namespace]

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> Any:
        return next(
            (
                o
                for o in self.objects.get(kind, [])
                if o["metadata"]["name"] == name and o["metadata"]["namespace"] == namespace
            ),
            None,
        )


def _mgmt() -> Mgmt:
    """Five clusters: one Available in every way, and one for each way of not being Available."""
    objects: dict[str, list[dict[str, Any]]] = {"Cluster": [], "KubeadmControlPlane": [], "Machine": []}

    def add(name: str, cluster: bool | None, kcp: bool | None, node_ref: bool | None) -> None:
        if cluster is not None:
            objects["Cluster"].append(_obj(CAPI, "Cluster", name, name, cluster))
        if kcp is not None:
            objects["KubeadmControlPlane"].append(_obj(KCP_API, "KubeadmControlPlane", name, name, kcp))
        if node_ref is not None:
            ref = {"nodeRef": {"name": f"{name}-cp"}} if node_ref else {}
            objects["Machine"].append(_obj(CAPI, "Machine", name, f"{name}-cp", None, **ref))

    add("test-1", True, True, True)
    add("test-2", False, True, True)
    add("test-3", True, False, True)
    add("test-4", True, True, False)
    add("test-5", True, True, None)  # no control-plane Machine yet
    add("test-6", None, True, True)  # no Cluster (deleted, or not applied yet)
    return Mgmt(objects)


def test_the_poll_of_all_clusters_says_what_the_check_of_each_says() -> None:
    mgmt = _mgmt()
    names = [f"test-{i}" for i in range(1, 8)]  # test-7 has nothing at all
    per_cluster = {n for n in names if not cluster_available(mgmt, n)}  # type: ignore[arg-type]
    assert per_cluster == set(names) - {"test-1"}
    assert not_available(mgmt, names) == per_cluster  # type: ignore[arg-type]


def test_a_workload_api_that_does_not_answer_is_not_whole(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))  # bound, never listening: a connect is refused
        port = s.getsockname()[1]
        assert not listening(port, "127.0.0.1")
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(
            yaml.safe_dump(
                {
                    "current-context": "c",
                    "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
                    "clusters": [{"name": "c", "cluster": {"server": f"https://127.0.0.1:{port}"}}],
                    "users": [{"name": "u", "user": {"token": "t"}}],
                }
            )
        )
        assert workload_whole(kubeconfig) is False


def test_listening_sees_a_listening_socket() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        assert listening(s.getsockname()[1], "127.0.0.1")
