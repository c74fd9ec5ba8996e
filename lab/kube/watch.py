"""list+watch of one kind as an iterator of events, resumed after a closed stream and relisted (with
the difference emitted) after 410 Gone, as an informer does."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import urllib3

from lab.kube.discovery import Resource
from lab.kube.errors import ApiError

if TYPE_CHECKING:
    from lab.kube.client import Client

Obj = dict[str, Any]


@dataclass(frozen=True)
class WatchEvent:
    type: str  # ADDED, MODIFIED, DELETED
    object: Obj


class Watch:
    """list+watch of one kind, as an iterator of WatchEvents, until stop() or the deadline.

    The initial list arrives as ADDED events (unless a resource_version to start from is given).
    When the server closes the watch it is resumed from the last resourceVersion seen (bookmarks keep
    that fresh); when that version has expired (410 Gone) the kind is listed again and the
    difference to what was seen is emitted as ADDED/MODIFIED/DELETED, as an informer's relist would.
    """

    def __init__(
        self,
        client: Client,
        resource: Resource,
        namespace: str | None,
        params: dict[str, str],
        resource_version: str | None,
        timeout: float | None,
        server_timeout: int,
    ) -> None:
        self._client = client
        self._res = resource
        self._ns = namespace
        self._params = params
        self._rv = resource_version
        self._deadline = None if timeout is None else time.monotonic() + timeout
        self._server_timeout = server_timeout
        self._known: dict[str, str] = {}  # uid -> resourceVersion
        self._objects: dict[str, Obj] = {}
        self._stopped = threading.Event()
        self._resp: urllib3.BaseHTTPResponse | None = None
        self.relists = 0

    def stop(self) -> None:
        """End the iteration; safe from another thread (unblocks a waiting read)."""
        self._stopped.set()
        resp = self._resp
        if resp is not None:
            with contextlib.suppress(Exception):
                resp.shutdown()

    def _left(self) -> float | None:
        return None if self._deadline is None else self._deadline - time.monotonic()

    def _done(self) -> bool:
        left = self._left()
        return self._stopped.is_set() or (left is not None and left <= 0)

    def _relist(self) -> Iterator[WatchEvent]:
        items, rv = self._client.list_with_version(self._res, self._ns, self._params)
        seen = set()
        for obj in items:
            uid = obj["metadata"]["uid"]
            seen.add(uid)
            old = self._known.get(uid)
            self._remember(obj)
            if old is None:
                yield WatchEvent("ADDED", obj)
            elif old != obj["metadata"]["resourceVersion"]:
                yield WatchEvent("MODIFIED", obj)
        for uid in list(self._known):
            if uid not in seen:
                self._known.pop(uid)
                yield WatchEvent("DELETED", self._objects.pop(uid))
        self._rv = rv

    def _remember(self, obj: Obj) -> None:
        uid = obj["metadata"]["uid"]
        self._known[uid] = obj["metadata"]["resourceVersion"]
        self._objects[uid] = obj

    def __iter__(self) -> Iterator[WatchEvent]:
        if self._rv is None:
            yield from self._relist()
        while not self._done():
            left = self._left()
            server_timeout = (
                self._server_timeout if left is None else max(1, min(self._server_timeout, int(left) + 1))
            )
            params = {
                **self._params,
                "watch": "1",
                "allowWatchBookmarks": "true",
                "resourceVersion": self._rv or "",
                "timeoutSeconds": str(server_timeout),
            }
            try:
                self._resp = self._client._open_stream(self._res.path(self._ns), params, server_timeout + 30)
            except ApiError as e:
                if e.status == 410:
                    self.relists += 1
                    yield from self._relist()
                    continue
                raise
            try:
                yield from self._read(self._resp)
            except (urllib3.exceptions.HTTPError, OSError, ValueError):
                if self._done():
                    return
                time.sleep(0.2)  # the stream broke: resume from the last version seen
            finally:
                self._resp.release_conn()
                self._resp = None

    def _read(self, resp: urllib3.BaseHTTPResponse) -> Iterator[WatchEvent]:
        for line in resp:
            if self._done():
                return
            if not line.strip():
                continue
            ev = json.loads(line)
            typ, obj = ev.get("type"), ev.get("object") or {}
            if typ == "ERROR":
                if obj.get("code") == 410:
                    self.relists += 1
                    yield from self._relist()
                    return
                raise ApiError(
                    int(obj.get("code") or 500), obj.get("reason", ""), obj.get("message", ""), body=obj
                )
            self._rv = obj.get("metadata", {}).get("resourceVersion", self._rv)
            if typ == "BOOKMARK":
                continue
            if typ == "DELETED":
                self._known.pop(obj["metadata"]["uid"], None)
                self._objects.pop(obj["metadata"]["uid"], None)
            else:
                self._remember(obj)
            yield WatchEvent(typ, obj)
