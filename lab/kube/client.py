"""Client: one apiserver, every request through one token bucket and one retry policy; server-side
apply of any kind, get/list/delete, list+watch, and probe for /readyz-style health checks."""

from __future__ import annotations

import json
import random
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import urllib3
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, stop_after_delay

from lab.errors import LabError
from lab.kube.config import Config
from lab.kube.discovery import AGGREGATED, Resource, parse_aggregated, parse_resource_list, split_api_version
from lab.kube.errors import ApiError, NotFound, NotServed, api_error, retryable
from lab.kube.ratelimit import TokenBucket
from lab.kube.watch import Obj, Watch

APPLY_PATCH = "application/apply-patch+yaml"
#: What every mutating call uses unless told otherwise: the field manager kubectl and others see.
FIELD_MANAGER = "lab"


@dataclass
class Stats:
    """What the client did, for benchmarks and for explaining a slow run."""

    requests: int = 0
    retries: int = 0
    by_status: dict[int, int] = field(default_factory=dict)

    def count(self, status: int) -> None:
        self.requests += 1
        self.by_status[status] = self.by_status.get(status, 0) + 1


class Client:
    """One apiserver. Thread-safe: every call may come from any thread.

    qps/burst: the client-side rate limit over all requests of this client (client-go's defaults are
    5/10; lab's are higher because it is the only writer besides the controllers, and lower than the
    controllers' own 100/200 so the controllers keep the lion's share). parallel: requests in flight
    for apply() and the size of the connection pool. Retries: up to `attempts` tries within
    `retry_deadline` seconds on 429 (after Retry-After), 5xx, 409 other than field-manager
    conflicts, and connection errors.
    """

    def __init__(
        self,
        config: Config,
        *,
        qps: float = 50.0,
        burst: int = 100,
        parallel: int = 16,
        timeout: float = 30.0,
        attempts: int = 8,
        retry_deadline: float = 120.0,
        max_backoff: float = 10.0,
    ) -> None:
        self.config = config
        self.limiter = TokenBucket(qps, burst)
        self.parallel = parallel
        self.timeout = timeout
        self.attempts = attempts
        self.retry_deadline = retry_deadline
        self.max_backoff = max_backoff
        self.stats = Stats()
        self._stats_lock = threading.Lock()
        headers = {"Accept": "application/json", "User-Agent": "lab"}
        if config.token:
            headers["Authorization"] = f"Bearer {config.token}"
        self._headers = headers
        pool_kw: dict[str, Any] = {"maxsize": parallel + 8, "block": False, "retries": False}
        if config.server.startswith("https://"):
            pool_kw["ssl_context"] = config.ssl_context()
        self._pool = urllib3.PoolManager(**pool_kw)
        self._executor = ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="lab-kube")
        self._resources: dict[tuple[str, str, str], Resource] = {}
        self._discovery_lock = threading.Lock()
        self._watches: weakref.WeakSet[Watch] = weakref.WeakSet()

    @classmethod
    def from_kubeconfig(cls, source: bytes | str | Path, context: str | None = None, **kw: Any) -> Client:
        return cls(Config.from_kubeconfig(source, context), **kw)

    def close(self) -> None:
        """Stop open watches (an apiserver's graceful shutdown waits for them) and free connections."""
        for w in list(self._watches):
            w.stop()
        self._executor.shutdown(wait=True)
        self._pool.clear()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # --- HTTP ------------------------------------------------------------------------------

    def _url(self, path: str, params: Mapping[str, str] | None) -> str:
        query = urlencode({k: v for k, v in (params or {}).items() if v is not None})
        return f"{self.config.server}{path}" + (f"?{query}" if query else "")

    def _send(
        self,
        method: str,
        path: str,
        params: Mapping[str, str] | None,
        body: bytes | None,
        headers: Mapping[str, str],
        timeout: float,
        stream: bool,
    ) -> urllib3.BaseHTTPResponse:
        """One attempt: a token from the limiter, one request; raises ApiError for >= 400."""
        self.limiter.acquire()
        try:
            resp = self._pool.request(
                method,
                self._url(path, params),
                body=body,
                headers={**self._headers, **headers},
                timeout=urllib3.Timeout(connect=min(10.0, timeout), read=timeout),
                preload_content=not stream,
                redirect=False,
            )
        except (urllib3.exceptions.HTTPError, OSError) as e:
            with self._stats_lock:
                self.stats.count(0)
            if isinstance(e, urllib3.exceptions.SSLError):
                raise ApiError(0, "TLS", f"{method} {path}: TLS error: {e}") from None  # not retryable
            raise ApiError(
                0, "Connection", f"{method} {path}: cannot reach {self.config.server}: {e}"
            ) from None
        with self._stats_lock:
            self.stats.count(resp.status)
        if resp.status >= 400:
            data = resp.data if not stream else resp.read()
            resp.release_conn()
            raise api_error(resp.status, data, resp.headers.get("Retry-After"), f"{method} {path}")
        return resp

    def _wait(self, state: RetryCallState) -> float:
        err = state.outcome.exception() if state.outcome else None
        if isinstance(err, ApiError) and err.retry_after is not None:
            return min(err.retry_after, self.max_backoff * 3)
        # exponential with full jitter: 0.1, 0.2, 0.4 ... capped, so bursts of retries spread out
        return random.uniform(0, min(self.max_backoff, 0.1 * 2 ** (state.attempt_number - 1)))

    def _retrying(self) -> Retrying:
        def count(_state: RetryCallState) -> None:
            with self._stats_lock:
                self.stats.retries += 1

        return Retrying(
            retry=retry_if_exception(retryable),
            stop=stop_after_attempt(self.attempts) | stop_after_delay(self.retry_deadline),
            wait=self._wait,
            before_sleep=count,
            reraise=True,
        )

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        accept: str | None = None,
    ) -> Any:
        """One API call with limiter and retries; the decoded JSON response (None when empty)."""
        data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        headers = {"Content-Type": content_type} if data is not None else {}
        if accept:
            headers["Accept"] = accept
        for attempt in self._retrying():
            with attempt:
                resp = self._send(method, path, params, data, headers, self.timeout, stream=False)
        return json.loads(resp.data) if resp.data else None

    def _open_stream(
        self, path: str, params: Mapping[str, str], read_timeout: float
    ) -> urllib3.BaseHTTPResponse:
        for attempt in self._retrying():
            with attempt:
                resp = self._send("GET", path, params, None, {}, read_timeout, stream=True)
        return resp

    def probe(self, path: str = "/readyz", timeout: float = 5.0) -> tuple[bool, str]:
        """One GET of a health path (/readyz, /livez, /healthz), without retries: a health check must
        say "not yet" at once, not wait. (200?, a short reason)."""
        try:
            resp = self._send("GET", path, None, None, {"Accept": "*/*"}, timeout, stream=False)
        except ApiError as e:
            return False, str(e)[:200]
        return resp.status == 200, f"HTTP {resp.status}"

    # --- discovery -------------------------------------------------------------------------

    def discover(self) -> None:
        """(Re)read every served resource: aggregated discovery, or per group-version as a fallback."""
        found: list[Resource] = []
        for root in ("/api", "/apis"):
            doc = self.request("GET", root, accept=AGGREGATED)
            if doc.get("kind") == "APIGroupDiscoveryList":
                found += parse_aggregated(doc)
            elif root == "/api":
                for v in doc.get("versions", []):
                    found += parse_resource_list(v, self.request("GET", f"/api/{v}"))
            else:
                for g in doc.get("groups", []):
                    gv = g["preferredVersion"]["groupVersion"]
                    found += parse_resource_list(gv, self.request("GET", f"/apis/{gv}"))
        self._resources = {(r.group, r.version, r.kind): r for r in found}

    def resource(self, api_version: str, kind: str) -> Resource:
        """The REST mapping of apiVersion+kind; discovery is cached and refreshed once on a miss."""
        group, version = split_api_version(api_version)
        key = (group, version, kind)
        if key in self._resources:
            return self._resources[key]
        with self._discovery_lock:
            if key not in self._resources:
                self.discover()
        try:
            return self._resources[key]
        except KeyError:
            raise NotServed(
                f"{self.config.server} serves no kind {kind} in {api_version} (is its CRD installed?)"
            ) from None

    def _target(self, obj: Mapping[str, Any]) -> tuple[Resource, str | None, str]:
        try:
            res = self.resource(obj["apiVersion"], obj["kind"])
            name = obj["metadata"]["name"]
        except (KeyError, TypeError):
            raise LabError(f"object without apiVersion, kind or metadata.name: {str(obj)[:200]}") from None
        namespace = obj["metadata"].get("namespace") if res.namespaced else None
        if res.namespaced and not namespace:
            raise LabError(f"{obj['kind']} {name} needs metadata.namespace")
        return res, namespace, name

    # --- verbs -----------------------------------------------------------------------------

    def apply_one(
        self, obj: Mapping[str, Any], field_manager: str = FIELD_MANAGER, force: bool = True
    ) -> Obj:
        """Server-side apply of one object; the object as the server stored it."""
        res, namespace, name = self._target(obj)
        params = {"fieldManager": field_manager, "force": "true" if force else "false"}
        return dict(
            self.request(
                "PATCH", res.path(namespace, name), params=params, body=obj, content_type=APPLY_PATCH
            )
        )

    def apply(
        self,
        objects: Iterable[Mapping[str, Any]],
        field_manager: str = FIELD_MANAGER,
        force: bool = True,
        on_applied: Callable[[Obj], None] | None = None,
    ) -> list[Obj]:
        """Server-side apply of many objects, `parallel` at a time; results in the input's order.

        Namespaces and CRDs go first (everything else may live in or depend on them). Every object
        is attempted even when some fail; then the first failure is raised, naming how many failed.
        """
        objs = list(objects)
        first = [i for i, o in enumerate(objs) if o.get("kind") in ("Namespace", "CustomResourceDefinition")]
        firsts = set(first)
        rest = [i for i in range(len(objs)) if i not in firsts]
        results: list[Obj | None] = [None] * len(objs)
        errors: list[tuple[int, Exception]] = []

        def one(i: int) -> None:
            try:
                applied = self.apply_one(objs[i], field_manager, force)
            except LabError as e:
                errors.append((i, e))
                return
            results[i] = applied
            if on_applied is not None:
                on_applied(applied)

        for wave in (first, rest):
            list(self._executor.map(one, wave))
            if errors and wave is first:
                break
        if errors:
            i, e = min(errors, key=lambda x: x[0])
            o = objs[i]
            what = f"{o.get('kind')} {o.get('metadata', {}).get('namespace', '')}/{o.get('metadata', {}).get('name')}"
            raise ApiError(
                getattr(e, "status", 0),
                getattr(e, "reason", ""),
                f"{len(errors)} of {len(objs)} objects failed to apply; first: {what}: {e}",
                body=getattr(e, "body", None),
            ) from e
        return [r for r in results if r is not None]

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> Obj | None:
        """The object, or None when it does not exist."""
        res = self.resource(api_version, kind)
        try:
            return dict(self.request("GET", res.path(namespace, name)))
        except NotFound:
            return None

    def list_with_version(
        self, res: Resource, namespace: str | None, params: Mapping[str, str] | None = None, page: int = 500
    ) -> tuple[list[Obj], str]:
        """Every item (paged with limit/continue) and the list's resourceVersion."""
        items: list[Obj] = []
        cont = ""
        while True:
            doc = self.request(
                "GET", res.path(namespace), params={**(params or {}), "limit": str(page), "continue": cont}
            )
            for item in doc.get("items") or []:
                # list items carry no apiVersion/kind; give them back so they can be re-applied
                item.setdefault("apiVersion", res.api_version)
                item.setdefault("kind", res.kind)
                items.append(item)
            cont = doc.get("metadata", {}).get("continue") or ""
            if not cont:
                return items, doc["metadata"]["resourceVersion"]

    def list(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        cached: bool = False,
    ) -> list[Obj]:
        """Every matching object. `cached`: resourceVersion=0, whatever the apiserver's watch cache
        holds now, for pollers that look again anyway. A consistent LIST waits for that cache to
        catch up with etcd, and at load 30 with 100 clusters deleting it lagged ~5000 revisions
        ("Too large resource version") and a LIST of 100 BareMetalHosts timed out for 2 minutes."""
        params = _selectors(label_selector, field_selector)
        if cached:
            params["resourceVersion"] = "0"  # served from the cache; limit is ignored, one page
        return self.list_with_version(self.resource(api_version, kind), namespace, params)[0]

    def delete(
        self,
        api_version: str,
        kind: str,
        name: str,
        namespace: str | None = None,
        propagation: str = "Background",
    ) -> bool:
        """Request deletion (Foreground, Background or Orphan); False when it was already gone."""
        if propagation not in ("Foreground", "Background", "Orphan"):
            raise ValueError(f"propagation must be Foreground, Background or Orphan, not {propagation!r}")
        res = self.resource(api_version, kind)
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": propagation}
        try:
            self.request("DELETE", res.path(namespace, name), body=body)
        except NotFound:
            return False
        return True

    def watch(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        resource_version: str | None = None,
        timeout: float | None = None,
        server_timeout: int = 300,
    ) -> Watch:
        """list+watch: iterate for events; `timeout` ends it after that many seconds, stop() at once."""
        res = self.resource(api_version, kind)
        params = _selectors(label_selector, field_selector)
        w = Watch(self, res, namespace, params, resource_version, timeout, server_timeout)
        self._watches.add(w)
        return w


def _selectors(label_selector: str | None, field_selector: str | None) -> dict[str, str]:
    out = {}
    if label_selector:
        out["labelSelector"] = label_selector
    if field_selector:
        out["fieldSelector"] = field_selector
    return out
