"""A tiny test workload image, built here, never pulled: Debian's busybox-static (one static binary
with httpd, wget and nslookup) on lab's minimal Debian base."""

from __future__ import annotations

import io
import subprocess
import tarfile
import tempfile
from pathlib import Path

from lab import engine

PACKAGE = "busybox-static"
REFERENCE = "lab.local/busybox:test"


def busybox_binary(cache: Path) -> Path:
    """/bin/busybox from Debian's package (apt-get download, kept in `cache`)."""
    out = cache / "busybox"
    if out.is_file():
        return out
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        got = subprocess.run(
            ["apt-get", "download", PACKAGE], cwd=tmp, capture_output=True, text=True, timeout=300
        )
        assert got.returncode == 0, f"apt-get download {PACKAGE}: {got.stderr[-500:]}"
        [deb] = Path(tmp).glob("*.deb")
        subprocess.run(["dpkg-deb", "-x", str(deb), f"{tmp}/x"], check=True, timeout=120)
        (Path(tmp) / "x" / "bin" / "busybox").rename(out)
    return out


def build_image(client: engine.Client, base: str, cache: Path) -> str:
    """lab.local/busybox:test in the engine: busybox at /bin/busybox on `base`."""
    binary = busybox_binary(cache)
    dockerfile = f'FROM {base}\nCOPY busybox /bin/busybox\nENTRYPOINT ["/bin/busybox"]\n'.encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(dockerfile)
        tar.addfile(info, io.BytesIO(dockerfile))
        tar.add(binary, arcname="busybox")
    for _ in client.stream("POST", "/build", {"t": REFERENCE, "rm": "1"}, buf.getvalue()):
        pass
    assert client.image_id(REFERENCE), f"{REFERENCE} was not built"
    return REFERENCE
