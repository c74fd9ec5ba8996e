"""Fakes for the unit tier: a management client, a backing and a watch that record what the code
under test asked of them, so a test can check the order of the steps without any process.

They stand in for lab.kube.Client (only the methods create, delete and the tracker call), the
lab.backing.Backing protocol and lab.kube.Watch. Share one `log` list between a FakeMgmt and its
FakeBackings to see every call in the order it was made: entries are (who, what, detail) with who
"mgmt" or the backing's name.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from lab import phases, pki
from lab.errors import LabError
from lab.kube import Resource, WatchEvent
from lab.metrics import Target

Obj = dict[str, Any]
Log = list[tuple[str, str, Any]]
#: when the node simulator wrote a host's Node, as bmh() annotates it
WRITTEN = "2026-11-21T19:30:01.123Z"


def _name(obj: Obj) -> str:
    return str((obj.get("metadata") or {}).get("name", ""))


def _selected(obj: Obj, label_selector: str | None) -> bool:
    """Equality (k=v) and existence (k) terms, comma-separated: what lab's LISTs use."""
    labels = (obj.get("metadata") or {}).get("labels") or {}
    for term in filter(None, (label_selector or "").split(",")):
        key, eq, value = term.partition("=")
        if key not in labels or (eq and labels[key] != value):
            return False
    return True


class FakeWatch:
    """A watch the test feeds: `push` events, `fail` to end it with an error, `stop` to end it."""

    _END = object()

    def __init__(self) -> None:
        self._events: queue.Queue[Any] = queue.Queue()
        self.stopped = threading.Event()

    def push(self, type_: str, obj: Obj) -> None:
        self._events.put(WatchEvent(type_, obj))

    def fail(self, error: Exception) -> None:
        self._events.put(error)

    def stop(self) -> None:
        self.stopped.set()
        self._events.put(self._END)

    def __iter__(self) -> Iterator[WatchEvent]:
        while True:
            item = self._events.get()
            if item is self._END:
                return
            if isinstance(item, Exception):
                raise item
            yield item


class FakeMgmt:
    """The management cluster's client. `calls` keeps the DELETEs and raw requests (delete's steps);
    `log` every call in order; `objects` answers LISTs (kind -> items); `watches` the watches opened."""

    def __init__(self, objects: dict[str, list[Obj]] | None = None, log: Log | None = None) -> None:
        self.calls: list[tuple[str, str, str | None]] = []
        self.objects = objects or {}
        self.log: Log = [] if log is None else log
        self.watches: dict[str, FakeWatch] = {}
        #: every object apply_one was given, in order (create's digest patches)
        self.patches: list[Obj] = []
        #: (kind, name) of objects whose apply raises LabError (an apiserver that refuses them)
        self.refuse: set[tuple[str, str]] = set()

    def delete(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> bool:
        self.calls.append((kind, name, namespace))
        self.log.append(("mgmt", "delete", (kind, name)))
        return True

    def resource(self, api_version: str, kind: str) -> Any:
        return Resource("", "v1", kind, kind.lower() + "s", True)

    def request(self, method: str, path: str, **_kw: Any) -> None:
        self.calls.append((method, path, None))
        self.log.append(("mgmt", method, path))

    def list(self, api_version: str, kind: str, label_selector: str | None = None, **_kw: Any) -> list[Obj]:
        self.log.append(("mgmt", "list", kind))
        return [o for o in self.objects.get(kind, []) if _selected(o, label_selector)]

    def apply(self, objs: Sequence[Obj], **_kw: Any) -> list[Obj]:
        self.log.append(("mgmt", "apply", [(o.get("kind"), _name(o)) for o in objs]))
        refused = [f"{o.get('kind')} {_name(o)}" for o in objs if (o.get("kind"), _name(o)) in self.refuse]
        if refused:
            raise LabError(f"apply refused: {refused[0]}")
        return list(objs)

    def apply_one(self, obj: Obj, field_manager: str = "lab", **_kw: Any) -> Obj:
        self.log.append(("mgmt", "apply_one", (obj.get("kind"), _name(obj), field_manager)))
        self.patches.append(obj)
        return obj

    def watch(self, api_version: str, kind: str, **_kw: Any) -> FakeWatch:
        self.log.append(("mgmt", "watch", kind))
        self.watches[kind] = FakeWatch()
        return self.watches[kind]


class DeadMetrics:
    """The management provider as lab.clusters.session.metrics_sampler asks it (lab.management.
    for_settings), with one metrics endpoint where nothing listens (the discard port): the sampler
    still stores its own CPU row every tick, so a test sees a run's metric samples without a stack."""

    def metrics_targets(self) -> list[Target]:
        return [Target("gone", "http://127.0.0.1:9/metrics")]


#: what live_stack says runs patched (lab.supervised.running_patches' shape)
LIVE_PATCHED = {"bmo-manager": {"patches": ["bmo-backoff-cap"], "digest": "0123abcd"}}


def live_stack(monkeypatch: Any, tuning: str = "high", k: int = 2) -> dict[str, Any]:
    """A stack as a run's snapshot sees it (lab.clusters.session.run_snapshot): managers tuned with
    profile `tuning`, K KCP shards, bmo-manager on a patched build. Returns what every recorded run
    must then carry in its settings."""
    from lab import management, supervised

    monkeypatch.setattr(management, "tuning_profile", lambda _s: tuning)
    monkeypatch.setattr(management, "shards", lambda _s: k)
    monkeypatch.setattr(supervised, "running_patches", lambda _s: LIVE_PATCHED)
    return {"tuning": tuning, "shards": k, "patched": LIVE_PATCHED}


class FakeBacking:
    """The whole Backing protocol over a set of names; every call but the cheap getters is logged.

    `not_ready` names apiservers whose wait_ready fails (a laggard); `removed` keeps each remove's
    names (delete's steps read it)."""

    def __init__(
        self, name: str = "local", capacity: int = 100, carries: Sequence[str] = (), log: Log | None = None
    ) -> None:
        self.name = name
        self.capacity = capacity
        self.carried: set[str] = set(carries)
        self.log: Log = [] if log is None else log
        self.removed: list[list[str]] = []
        self.not_ready: set[str] = set()
        self.sick: dict[str, str] = {}
        self._ca = pki.new_ca(f"{name}-etcd-ca")  # made once, up front: renders run in threads

    def endpoint(self, cluster: str, index: int) -> tuple[str, int]:
        return "127.0.0.1", 20000 + index

    def etcd_servers(self) -> list[str]:
        return ["https://127.0.0.1:2379"]

    def etcd_ca(self) -> pki.KeyPair:
        return self._ca

    def preflight(self, clusters: Sequence[tuple[str, int]]) -> None:
        self.log.append((self.name, "preflight", [n for n, _ in clusters]))

    def ensure(self, clusters: Sequence[tuple[str, int]]) -> None:
        self.log.append((self.name, "ensure", [n for n, _ in clusters]))
        self.carried.update(n for n, _ in clusters)

    def wait_ready(self, names: Sequence[str], timeout: float) -> None:
        self.log.append((self.name, "wait_ready", list(names)))
        late = [n for n in names if n in self.not_ready]
        if late:
            raise LabError(f"{late[0]}: apiserver not ready within {timeout:.0f}s")

    def remove(self, names: Sequence[str]) -> None:
        self.log.append((self.name, "remove", list(names)))
        self.removed.append(list(names))
        self.carried.difference_update(names)

    def present(self) -> set[str]:
        return set(self.carried)

    def used(self) -> int:
        return len(self.carried)

    def tenant_health(self, names: Sequence[str]) -> dict[str, str | None]:
        """Every carried cluster healthy unless `sick` names why not."""
        self.log.append((self.name, "tenant_health", list(names)))
        return {n: self.sick.get(n) for n in names if n in self.carried}


# --- what the controllers write: objects a FakeWatch can carry -------------------------------------


def _cond(type_: str, status: str = "True", reason: str = "", message: str = "") -> Obj:
    return {"type": type_, "status": status, "reason": reason, "message": message}


def bmh(ns: str, written: str | None = WRITTEN, state: str = "provisioned") -> Obj:
    meta: Obj = {"name": f"{ns}-host-0", "namespace": ns}
    if written:
        meta["annotations"] = {phases.NODE_WRITTEN_ANNOTATION: written}
    return {"kind": "BareMetalHost", "metadata": meta, "status": {"provisioning": {"state": state}}}


def machine(ns: str, node: str | None = "n0", ready: bool = True) -> Obj:
    status: Obj = {"conditions": [_cond("Ready", "True" if ready else "False")]}
    if node:
        status["nodeRef"] = {"name": node}
    meta = {"name": f"{ns}-cp", "namespace": ns, "labels": {phases.CONTROL_PLANE_LABEL: ""}}
    return {"kind": "Machine", "metadata": meta, "status": status}


def kcp(ns: str, available: bool = True) -> Obj:
    cond = _cond("Available") if available else _cond("Available", "False", "NotReady", "1 replica")
    return {
        "kind": "KubeadmControlPlane",
        "metadata": {"name": ns, "namespace": ns},
        "status": {"initialization": {"controlPlaneInitialized": True}, "conditions": [cond]},
    }


def cluster(ns: str, available: bool = True) -> Obj:
    cond = _cond("Available") if available else _cond("Available", "False", "Waiting", "control plane")
    return {"kind": "Cluster", "metadata": {"name": ns, "namespace": ns}, "status": {"conditions": [cond]}}


def lifecycle(ns: str) -> list[Obj]:
    """Every object of cluster `ns` in the state that makes it done, in the order they get there."""
    return [bmh(ns), kcp(ns), machine(ns), cluster(ns)]
