"""Errors of the Kubernetes client: a status error from the API (or the transport), and NotFound for
404, so callers say `except NotFound` instead of testing the status."""

from __future__ import annotations

import contextlib
import json
from typing import Any

from lab.errors import LabError


class ApiError(LabError):
    """A Kubernetes API status error (or a transport error, status 0)."""

    def __init__(
        self, status: int, reason: str, message: str, retry_after: float | None = None, body: Any = None
    ):
        super().__init__(f"{status} {reason}: {message}" if status else message)
        self.status = status
        self.reason = reason
        self.retry_after = retry_after
        self.body = body

    @property
    def field_manager_conflict(self) -> bool:
        """An SSA conflict with another manager: retrying cannot help, only force can."""
        causes = (self.body or {}).get("details", {}).get("causes", []) if isinstance(self.body, dict) else []
        return any(
            c.get("reason") == "FieldManagerConflict" for c in causes
        )  # StatusCause.Type is "reason" in JSON


def retryable(e: BaseException) -> bool:
    """Worth another try: 429, 5xx, 409 other than an SSA conflict, and connection errors."""
    if isinstance(e, ApiError):
        if e.status == 0:  # connection refused/reset, timeout: the server is restarting or overloaded
            return True
        if e.status == 409:
            return not e.field_manager_conflict
        return e.status == 429 or e.status >= 500
    return False


class NotFound(ApiError):
    """404: the object (or the path) does not exist."""


class NotServed(LabError):
    """The server serves no such kind (its CRD is not installed), even after refreshing discovery."""


def api_error(status: int, data: bytes, retry_after: str | None, what: str) -> ApiError:
    """The error for one failed response: its Status reason and message, Retry-After in seconds."""
    try:
        body = json.loads(data)
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("kind") == "Status":
        reason, message = body.get("reason") or "", body.get("message") or ""
    else:
        reason, message = "", data[:300].decode(errors="replace").strip()
    seconds: float | None = None
    if retry_after:
        with contextlib.suppress(ValueError):
            seconds = max(0.0, float(retry_after))
    cls = NotFound if status == 404 else ApiError
    return cls(status, reason, f"{what}: {message}", seconds, body)
