"""The Docker Engine API over its unix socket: the one way lab talks to an engine.

Why not the docker CLI: the CLI on a host can be much newer than the engine (here docker 28 against
Debian's dockerd 20.10, API 1.41), and its `build` needs the buildx plugin; the API is stable, needs
nothing installed, and a failure is a status code instead of CLI text to parse. API 1.41 (dockerd
20.10) is the oldest engine lab supports: every call below exists there.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from lab.errors import LabError

API_VERSION = "v1.41"
DEFAULT_SOCKET = "/var/run/docker.sock"


class EngineError(LabError):
    """The engine cannot be reached or refused a call."""


def default_host() -> str:
    """DOCKER_HOST when set (docker's own convention), else the system socket."""
    return os.environ.get("DOCKER_HOST") or f"unix://{DEFAULT_SOCKET}"


def socket_path(host: str) -> str:
    if not host.startswith("unix://"):
        raise EngineError(f"DOCKER_HOST {host!r} is not a unix:// socket; lab talks to a local engine only")
    return host.removeprefix("unix://")


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


@dataclass(frozen=True)
class EngineInfo:
    host: str
    version: str
    api_version: str
    cgroup_version: str
    cgroup_driver: str
    default_runtime: str
    runtimes: tuple[str, ...]
    storage_driver: str
    docker_root: str


class Client:
    """A few Engine API calls; each opens its own connection (the engine is local: ~1 ms)."""

    def __init__(self, host: str | None = None, timeout: float = 30) -> None:
        self.host = host or default_host()
        self.path = socket_path(self.host)
        self.timeout = timeout

    def _request(
        self,
        method: str,
        path: str,
        query: dict[str, str] | None = None,
        body: bytes | IO[bytes] | None = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> http.client.HTTPResponse:
        url = f"/{API_VERSION}{path}" + (f"?{urllib.parse.urlencode(query)}" if query else "")
        conn = _UnixConnection(self.path, self.timeout if timeout is None else timeout)
        try:
            conn.request(method, url, body=body, headers=headers or {})
            resp = conn.getresponse()
        except FileNotFoundError:
            raise EngineError(f"no Docker engine at {self.host}: {self.path} does not exist") from None
        except ConnectionRefusedError:
            raise EngineError(f"no Docker engine answers at {self.host} (connection refused)") from None
        except OSError as e:
            raise EngineError(f"cannot reach the Docker engine at {self.host}: {e}") from None
        if resp.status >= 400:
            raw = resp.read()
            try:
                message = json.loads(raw).get("message", raw.decode(errors="replace"))
            except ValueError:
                message = raw.decode(errors="replace")
            raise EngineError(f"Docker engine: {method} {path}: {resp.status} {message.strip()}")
        return resp

    def json(self, method: str, path: str, query: dict[str, str] | None = None, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        raw = self._request(method, path, query, data, headers).read()
        return json.loads(raw) if raw else None

    def stream(
        self,
        method: str,
        path: str,
        query: dict[str, str] | None = None,
        body: bytes | IO[bytes] | None = None,
        content_type: str = "application/x-tar",
        timeout: float = 3600,
    ) -> Iterator[dict[str, Any]]:
        """The JSON messages of a streaming call (build, import, load), raising on an error message."""
        # a file body without Content-Length goes out chunked (http.client does the encoding)
        headers = {"Content-Type": content_type}
        resp = self._request(method, path, query, body, headers, timeout=timeout)
        decoder = json.JSONDecoder()
        buf = ""
        for chunk in iter(lambda: resp.read1(65536), b""):
            buf += chunk.decode(errors="replace")
            while buf.strip():
                buf = buf.lstrip()
                try:
                    msg, end = decoder.raw_decode(buf)
                except ValueError:
                    break
                buf = buf[end:]
                if isinstance(msg, dict) and msg.get("error"):
                    raise EngineError(f"Docker engine: {path}: {str(msg['error']).strip()}")
                if isinstance(msg, dict):
                    yield msg

    def info(self) -> EngineInfo:
        ver = self.json("GET", "/version")
        info = self.json("GET", "/info")
        return EngineInfo(
            host=self.host,
            version=str(ver.get("Version", "")),
            api_version=str(ver.get("ApiVersion", "")),
            cgroup_version=str(info.get("CgroupVersion", "")),
            cgroup_driver=str(info.get("CgroupDriver", "")),
            default_runtime=str(info.get("DefaultRuntime", "")),
            runtimes=tuple(sorted((info.get("Runtimes") or {}).keys())),
            storage_driver=str(info.get("Driver", "")),
            docker_root=str(info.get("DockerRootDir", "")),
        )

    def image_id(self, ref: str) -> str | None:
        try:
            return str(self.json("GET", f"/images/{urllib.parse.quote(ref, safe='')}/json")["Id"])
        except EngineError as e:
            if " 404 " in str(e):
                return None
            raise

    def save(self, ref: str, out: Path) -> None:
        """`docker save` of one image into `out` (written beside, then renamed: never half a file)."""
        resp = self._request("GET", f"/images/{urllib.parse.quote(ref, safe='')}/get", timeout=3600)
        tmp = out.with_name(f".{out.name}.tmp")
        out.parent.mkdir(parents=True, exist_ok=True)
        with tmp.open("wb") as f:
            for chunk in iter(lambda: resp.read1(1 << 20), b""):
                f.write(chunk)
        tmp.replace(out)

    def load(self, archive: Path, progress: Callable[[str], None] = lambda _m: None) -> None:
        with archive.open("rb") as f:
            for msg in self.stream("POST", "/images/load", {"quiet": "1"}, f):
                if msg.get("stream"):
                    progress(str(msg["stream"]).strip())

    # --- containers: what building kind's node image and configuring its nodes need --------------

    def exec(self, container: str, cmd: list[str], timeout: float = 600) -> tuple[int, str]:
        """`docker exec` (not a TTY): the exit code and the output, stdout and stderr interleaved."""
        ex = self.json(
            "POST",
            f"/containers/{container}/exec",
            body={"Cmd": cmd, "AttachStdout": True, "AttachStderr": True},
        )["Id"]
        # not detached: the engine answers with the multiplexed output and closes when cmd ends
        raw = self._request(
            "POST",
            f"/exec/{ex}/start",
            body=b'{"Detach": false}',
            headers={"Content-Type": "application/json"},
            timeout=timeout,
        ).read()
        out = b""
        while len(raw) >= 8:  # frames: 1 byte stream, 3 padding, 4 bytes big-endian size
            size = int.from_bytes(raw[4:8], "big")
            out, raw = out + raw[8 : 8 + size], raw[8 + size :]
        state = self.json("GET", f"/exec/{ex}/json")
        code = state.get("ExitCode")
        return (-1 if code is None else int(code)), out.decode(errors="replace")

    def save_all(self, refs: list[str], out: Path) -> None:
        """One `docker save` archive of several images: layers they share are in it once."""
        query = urllib.parse.urlencode([("names", r) for r in refs])
        resp = self._request("GET", f"/images/get?{query}", timeout=3600)
        tmp = out.with_name(f".{out.name}.tmp")
        with tmp.open("wb") as f:
            for chunk in iter(lambda: resp.read1(1 << 20), b""):
                f.write(chunk)
        tmp.replace(out)

    def commit(self, container: str, reference: str, changes: list[str]) -> None:
        """`docker commit --change ...` of a container as `reference` (repository:tag)."""
        repo, tag = reference.rsplit(":", 1)
        query = [("container", container), ("repo", repo), ("tag", tag), *(("changes", c) for c in changes)]
        self._request("POST", "/commit?" + urllib.parse.urlencode(query)).read()

    def put_archive(self, container: str, path: str, tar: bytes | IO[bytes]) -> None:
        """Unpack a tar stream into a container's filesystem at `path` (an existing directory)."""
        self._request(
            "PUT",
            f"/containers/{container}/archive",
            {"path": path},
            tar,
            {"Content-Type": "application/x-tar"},
            timeout=3600,
        ).read()


def probe(host: str | None = None, timeout: float = 10) -> EngineInfo:
    """The engine's version and setup, or an EngineError saying why there is none."""
    return Client(host, timeout).info()
