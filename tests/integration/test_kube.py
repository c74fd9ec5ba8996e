"""lab.kube against a real kube-apiserver (and, for 429/5xx, a real local proxy in front of it)."""

from __future__ import annotations

import http.server
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import urllib3
from support.apiserver import RunningApiserver, free_port

from lab import crds, manifests, naming, pki
from lab.config import Settings
from lab.errors import LabError
from lab.kube import ApiError, Client, Config, TokenBucket

CRD_GROUP = "scale-lab.test"


def _ns(name: str, **labels: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": labels or {"t": "1"}},
    }


def _cm(ns: str, name: str, **data: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": ns},
        "data": data,
    }


@pytest.fixture
def client(apiserver: RunningApiserver) -> Iterator[Client]:
    with Client.from_kubeconfig(apiserver.kubeconfig, qps=0, parallel=8) as c:
        yield c


@pytest.fixture
def ns(client: Client) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:8]}"
    client.apply([_ns(name)])
    yield name
    client.delete("v1", "Namespace", name)


def test_apply_creates_and_reapply_is_a_noop(client: Client, ns: str) -> None:
    objs = [_ns(ns), *(_cm(ns, f"cm-{i}", i=str(i)) for i in range(20))]
    first = client.apply(objs)
    assert [o["metadata"]["name"] for o in first] == [ns, *(f"cm-{i}" for i in range(20))]
    assert first[5]["data"] == {"i": "4"}
    managers = {m["manager"] for m in first[5]["metadata"]["managedFields"]}
    assert managers == {"lab"}
    before = client.stats.requests
    second = client.apply(objs)
    assert client.stats.requests - before == len(objs)
    assert [o["metadata"]["resourceVersion"] for o in second] == [
        o["metadata"]["resourceVersion"] for o in first
    ]


def test_apply_orders_namespaces_first_and_reports_progress(client: Client) -> None:
    name = f"t-{uuid.uuid4().hex[:8]}"
    seen: list[str] = []
    # the namespace comes last in the input: it must still be created before its objects
    client.apply(
        [*(_cm(name, f"cm-{i}") for i in range(10)), _ns(name)], on_applied=lambda o: seen.append(o["kind"])
    )
    assert seen[0] == "Namespace" and sorted(seen[1:]) == ["ConfigMap"] * 10
    assert len(client.list("v1", "ConfigMap", name)) >= 10
    assert client.delete("v1", "Namespace", name, propagation="Foreground") is True


def test_conflict_with_another_manager_is_forced(client: Client, ns: str) -> None:
    client.apply_one(_cm(ns, "shared", owner="other"), field_manager="someone-else")
    with pytest.raises(ApiError) as err:
        client.apply_one(_cm(ns, "shared", owner="lab"), force=False)
    assert err.value.status == 409 and err.value.field_manager_conflict
    assert client.stats.retries == 0  # a field-manager conflict is never retried
    out = client.apply_one(_cm(ns, "shared", owner="lab"))
    assert out["data"] == {"owner": "lab"}
    assert {m["manager"] for m in out["metadata"]["managedFields"]} == {"lab"}


def test_apply_failure_names_the_object_and_the_count(client: Client, ns: str) -> None:
    bad = _cm(ns, "Not_A_Valid_Name")
    with pytest.raises(
        ApiError, match=r"1 of 3 objects failed to apply; first: ConfigMap .*/Not_A_Valid_Name"
    ) as err:
        client.apply([_cm(ns, "ok-1"), bad, _cm(ns, "ok-2")])
    assert err.value.status == 422
    assert client.get("v1", "ConfigMap", "ok-2", ns) is not None  # the others were still applied


def test_crd_kinds_are_found_after_the_crd_is_installed(client: Client, ns: str) -> None:
    plural = f"widgets{uuid.uuid4().hex[:6]}"
    kind = "Widget" + plural[7:].capitalize()
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{CRD_GROUP}"},
        "spec": {
            "group": CRD_GROUP,
            "scope": "Namespaced",
            "names": {"plural": plural, "singular": plural[:-1], "kind": kind, "listKind": f"{kind}List"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
                    },
                }
            ],
        },
    }
    client.discover()  # cache discovery before the CRD exists: the miss must refresh it
    client.apply_one(crd)
    widget = {
        "apiVersion": f"{CRD_GROUP}/v1",
        "kind": kind,
        "metadata": {"name": "w", "namespace": ns},
        "spec": {"n": 1},
    }
    deadline = time.monotonic() + 30
    while True:  # a new CRD is served a moment after it is Established
        try:
            out = client.apply_one(widget)
            break
        except LabError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
            client.discover()
    assert out["spec"] == {"n": 1}
    assert (
        client.resource(f"{CRD_GROUP}/v1", kind).path(ns, "w")
        == f"/apis/{CRD_GROUP}/v1/namespaces/{ns}/{plural}/w"
    )
    with pytest.raises(LabError, match="serves no kind Nope"):
        client.resource(f"{CRD_GROUP}/v1", "Nope")
    client.delete("apiextensions.k8s.io/v1", "CustomResourceDefinition", f"{plural}.{CRD_GROUP}")


def test_a_workload_clusters_real_objects_apply_then_reapply_changes_nothing(
    client: Client, tmp_path: Path
) -> None:
    """The objects lab.manifests renders, against the real upstream CRDs (schemas and CEL rules)."""
    settings = Settings(home=tmp_path / "home")
    docs = crds.crd_documents(settings)
    client.apply(docs)
    index = 900 + int(uuid.uuid4().hex[:2], 16)  # a cluster no other test uses
    name = naming.cluster_name(settings.prefix, index)
    host, port = naming.local_endpoint(index)
    cp = pki.generate_cluster_pki(name, host, port, pki.new_ca("etcd-ca"))
    objs = manifests.cluster_objects(
        settings, index, (host, port), cp, ["https://127.0.0.1:2379"], manifests.bmc_password(cp)
    )
    deadline = time.monotonic() + 60
    while True:  # new CRDs are served a moment after they are Established
        try:
            first = client.apply(objs)
            break
        except LabError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)
    assert [(o["kind"], o["metadata"]["name"]) for o in first] == [
        (o["kind"], o["metadata"]["name"]) for o in objs
    ]
    second = client.apply(objs)
    assert [o["metadata"]["resourceVersion"] for o in second] == [
        o["metadata"]["resourceVersion"] for o in first
    ]
    client.delete("v1", "Namespace", name)


def test_get_list_delete(client: Client, ns: str) -> None:
    assert client.get("v1", "ConfigMap", "absent", ns) is None
    client.apply([_cm(ns, f"cm-{i}") for i in range(7)])
    # paging: 7 items in pages of 3
    items, rv = client.list_with_version(client.resource("v1", "ConfigMap"), ns, page=3)
    assert len([i for i in items if i["metadata"]["name"].startswith("cm-")]) == 7 and rv
    assert items[0]["kind"] == "ConfigMap" and items[0]["apiVersion"] == "v1"
    assert client.delete("v1", "ConfigMap", "cm-0", ns) is True
    assert client.delete("v1", "ConfigMap", "cm-0", ns) is False
    with pytest.raises(ValueError):
        client.delete("v1", "ConfigMap", "cm-1", ns, propagation="Later")


def test_a_cached_list_is_served_from_the_watch_cache_and_catches_up(client: Client, ns: str) -> None:
    """resourceVersion=0 is accepted beside lab's paging parameters, and what was just written shows
    up in the cache (the delete loop's passes rely on it)."""
    client.apply([_cm(ns, f"cm-{i}") for i in range(3)])
    deadline = time.monotonic() + 30
    while True:
        names = {i["metadata"]["name"] for i in client.list("v1", "ConfigMap", ns, cached=True)}
        if {"cm-0", "cm-1", "cm-2"} <= names:
            break
        assert time.monotonic() < deadline, f"the watch cache never showed the ConfigMaps: {names}"
        time.sleep(0.2)
    consistent = {i["metadata"]["name"] for i in client.list("v1", "ConfigMap", ns)}
    assert names == consistent


def test_watch_sees_added_modified_deleted(client: Client, ns: str) -> None:
    client.apply_one(_cm(ns, "before"))
    events: list[tuple[str, str]] = []
    w = client.watch("v1", "ConfigMap", ns, field_selector="metadata.name!=kube-root-ca.crt", timeout=60)

    def consume() -> None:
        for ev in w:
            events.append((ev.type, ev.object["metadata"]["name"]))
            if ev.type == "DELETED":
                w.stop()

    t = threading.Thread(target=consume)
    t.start()
    _until(lambda: ("ADDED", "before") in events)
    client.apply_one(_cm(ns, "x", v="1"))
    _until(lambda: ("ADDED", "x") in events)
    client.apply_one(_cm(ns, "x", v="2"))
    client.delete("v1", "ConfigMap", "x", ns)
    t.join(timeout=30)
    assert not t.is_alive()
    assert events == [("ADDED", "before"), ("ADDED", "x"), ("MODIFIED", "x"), ("DELETED", "x")]


@pytest.mark.parametrize("expiry", ["http410", "event410"])
def test_watch_relists_on_expiry_and_emits_the_difference(apiserver: RunningApiserver, expiry: str) -> None:
    # A fresh apiserver's watch cache still covers every resourceVersion, so the expiry is injected
    # by the proxy in both forms the apiserver uses: an HTTP 410, or an ERROR event with code 410.
    ns = f"t-{uuid.uuid4().hex[:8]}"
    with Proxy(apiserver) as proxy, Client(Config(proxy.url), qps=0) as c:
        c.apply([_ns(ns), _cm(ns, "a", v="1"), _cm(ns, "b"), _cm(ns, "c")])
        w = c.watch("v1", "ConfigMap", ns, timeout=60)
        it = iter(w)
        initial = [next(it) for _ in range(3)]  # the list, as ADDED
        assert sorted((e.type, e.object["metadata"]["name"]) for e in initial) == [
            ("ADDED", "a"),
            ("ADDED", "b"),
            ("ADDED", "c"),
        ]
        # while nobody watches: a changes, b goes, d comes; then the watch finds its version expired
        c.apply_one(_cm(ns, "a", v="2"))
        c.delete("v1", "ConfigMap", "b", ns)
        c.apply_one(_cm(ns, "d"))
        proxy.watch_fail.append(expiry)
        relisted = sorted((e.type, e.object["metadata"]["name"]) for e in (next(it) for _ in range(3)))
        assert relisted == [("ADDED", "d"), ("DELETED", "b"), ("MODIFIED", "a")]
        assert w.relists == 1
        # and it goes on watching from the relist's version
        c.apply_one(_cm(ns, "e"))
        ev = next(it)
        assert (ev.type, ev.object["metadata"]["name"]) == ("ADDED", "e")
        w.stop()
        c.delete("v1", "Namespace", ns)


def test_watch_stop_from_another_thread_is_prompt(client: Client, ns: str) -> None:
    w = client.watch("v1", "ConfigMap", ns, label_selector="never=matches")
    threading.Timer(1.0, w.stop).start()
    started = time.monotonic()
    assert list(w) == []
    assert time.monotonic() - started < 10


def test_qps_limit_holds_against_the_real_apiserver(apiserver: RunningApiserver) -> None:
    with Proxy(apiserver) as proxy, Client(Config(proxy.url), qps=10, burst=2, parallel=8) as c:
        started = time.monotonic()
        c.apply([_cm("default", f"qps-{i}") for i in range(22)])
        elapsed = time.monotonic() - started
        # discovery (2) + 22 applies = 24 requests; 2 free, then 10/s: at least 2.2 s
        assert elapsed >= 2.1
        times = sorted(proxy.times)
        assert len(times) == 24
        most_in_one_second = max(sum(1 for u in times if t <= u < t + 1.0) for t in times)
        assert most_in_one_second <= 10 + 2
        assert c.limiter.waited > 5  # summed over the 8 waiting threads


def test_retries_429_after_retry_after_then_succeeds(apiserver: RunningApiserver) -> None:
    with Proxy(apiserver) as proxy, Client(Config(proxy.url), qps=0) as c:
        c.discover()
        proxy.fail += [(429, "1")] * 2
        started = time.monotonic()
        out = c.apply_one(_cm("default", "retry-429", n="1"))
        assert out["data"] == {"n": "1"}
        assert time.monotonic() - started >= 2.0  # Retry-After: 1, twice
        assert c.stats.by_status[429] == 2 and c.stats.retries == 2
        assert proxy.statuses == [200, 200, 429, 429, 201]


def test_retries_5xx_and_gives_up_after_the_attempts(apiserver: RunningApiserver) -> None:
    with (
        Proxy(apiserver, fail=[(503, None)] * 3) as proxy,
        Client(Config(proxy.url), qps=0, max_backoff=0.2) as c,
    ):
        assert c.get("v1", "Namespace", "default") is not None
        assert c.stats.by_status[503] == 3
    with (
        Proxy(apiserver, fail=[(500, None)] * 10) as proxy,
        Client(Config(proxy.url), qps=0, attempts=3, max_backoff=0.1) as c,
    ):
        with pytest.raises(ApiError) as err:
            c.get("v1", "Namespace", "default")
        assert err.value.status == 500 and len(proxy.statuses) == 3


def test_connection_refused_is_retried_then_one_error() -> None:
    c = Client(Config(f"http://127.0.0.1:{free_port()}"), qps=0, attempts=3, max_backoff=0.05)
    with pytest.raises(ApiError, match="cannot reach") as err:
        c.request("GET", "/version")
    assert err.value.status == 0 and c.stats.retries == 2
    c.close()


def test_token_bucket_with_a_fake_clock() -> None:
    now = [0.0]
    b = TokenBucket(qps=4, burst=2, clock=lambda: now[0])
    assert [b.reserve() for _ in range(4)] == [0.0, 0.0, 0.25, 0.5]
    now[0] = 10.0  # refilled, capped at burst
    assert [b.reserve() for _ in range(3)] == [0.0, 0.0, 0.25]
    assert TokenBucket(0, 0).reserve() == 0.0


def _until(cond, timeout: float = 30) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


# --- a real HTTP proxy in front of the apiserver ----------------------------------------------


@dataclass
class Proxy:
    """Plain-HTTP reverse proxy to the apiserver (as admin) that first answers with `fail`
    (status, Retry-After) responses, and records what it saw."""

    apiserver: RunningApiserver
    fail: list[tuple[int, str | None]] = field(default_factory=list)
    streams: list[urllib3.BaseHTTPResponse] = field(default_factory=list)
    watch_fail: list[str] = field(default_factory=list)  # "http410" or "event410", for watch requests
    times: list[float] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)

    def __enter__(self) -> Proxy:
        upstream = urllib3.PoolManager(
            maxsize=16, ssl_context=Config.from_kubeconfig(self.apiserver.kubeconfig).ssl_context()
        )
        proxy = self
        lock = threading.Lock()

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_args: object) -> None:
                pass

            def _any(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with lock:
                    proxy.times.append(time.monotonic())
                    injected = proxy.fail.pop(0) if proxy.fail else None
                    expire = proxy.watch_fail.pop(0) if proxy.watch_fail and "watch=1" in self.path else None
                if expire:
                    gone = {
                        "kind": "Status",
                        "apiVersion": "v1",
                        "status": "Failure",
                        "reason": "Expired",
                        "code": 410,
                    }
                    gone["message"] = "too old resource version: 1 (2)"
                    status = 410 if expire == "http410" else 200
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    data = (
                        json.dumps(gone if status == 410 else {"type": "ERROR", "object": gone}).encode()
                        + b"\n"
                    )
                elif injected:
                    status, retry_after = injected
                    self.send_response(status)
                    if retry_after:
                        self.send_header("Retry-After", retry_after)
                    data = b'{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"Injected"}'
                elif "watch=1" in self.path:
                    self._stream()
                    return
                else:
                    headers = {
                        k: v for k, v in self.headers.items() if k.lower() in ("content-type", "accept")
                    }
                    resp = upstream.request(
                        self.command, proxy.apiserver.url + self.path, body=body or None, headers=headers
                    )
                    status, data = resp.status, resp.data
                    self.send_response(status)
                    self.send_header("Content-Type", resp.headers.get("Content-Type", "application/json"))
                with lock:
                    proxy.statuses.append(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _stream(self) -> None:
                """Pass a watch through line by line, as the apiserver sends it (chunked)."""
                resp = upstream.request("GET", proxy.apiserver.url + self.path, preload_content=False)
                with lock:
                    proxy.statuses.append(resp.status)
                    proxy.streams.append(resp)
                self.send_response(resp.status)
                self.send_header("Content-Type", resp.headers.get("Content-Type", "application/json"))
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                try:
                    for line in resp:
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                        self.wfile.flush()
                    self.wfile.write(b"0\r\n\r\n")
                except OSError:
                    pass  # the client went away (stop())
                finally:
                    resp.release_conn()

            do_GET = do_PATCH = do_DELETE = do_POST = do_PUT = _any

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        for resp in self.streams:  # open watches would hold up the apiserver's graceful shutdown
            resp.shutdown()
        self._server.shutdown()
        self._server.server_close()
