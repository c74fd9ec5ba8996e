"""The control API of lab-mux, the mux backing's server (lab/mux): its token, its address and a
client (register, unregister, list, health). An adapter, so that the node simulator, which writes a
restarted lab-mux's objects again, can ask it when it last started; lab.backing.mux drives it."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from lab.config import Settings
from lab.errors import LabError
from lab.runtime.ports import LOOPBACK


def token_path(settings: Settings) -> Path:
    return settings.home / "mux" / "token"


def control_url(settings: Settings) -> str:
    return f"http://{LOOPBACK}:{settings.ports.mux_control}"


class Control:
    """The control API of a running lab-mux (register, unregister, list, health)."""

    def __init__(self, url: str, token: bytes, timeout: float = 30.0) -> None:
        self.url, self.token, self.timeout = url, token, timeout

    def call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {self.token.decode()}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as e:
            try:
                detail = json.loads(e.read()).get("error", "")
            except ValueError:
                detail = ""
            raise LabError(f"lab-mux {method} {path}: HTTP {e.code} {detail}".rstrip()) from None
        except (OSError, ValueError) as e:
            raise LabError(f"lab-mux at {self.url} does not answer: {e}") from None

    def health(self) -> dict[str, Any]:
        return dict(self.call("GET", "/v1/health"))

    def clusters(self) -> list[dict[str, Any]]:
        return list(self.call("GET", "/v1/clusters"))

    def register(self, name: str, index: int, port: int, ca_cert: Path, ca_key: Path) -> dict[str, Any]:
        body = {
            "name": name,
            "index": index,
            "port": port,
            "caCertFile": str(ca_cert),
            "caKeyFile": str(ca_key),
        }
        return dict(self.call("POST", "/v1/clusters", body))

    def unregister(self, name: str) -> None:
        self.call("DELETE", f"/v1/clusters/{name}")

    def alive(self) -> bool:
        try:
            self.health()
        except LabError:
            return False
        return True


def control(settings: Settings, timeout: float = 30.0) -> Control | None:
    """The running lab-mux's control API, or None when it was never started here."""
    path = token_path(settings)
    if not path.is_file():
        return None
    return Control(control_url(settings), path.read_bytes().strip(), timeout)
