"""kubectl against the management cluster with the admin kubeconfig.

Why kubectl and not a Python client: server-side apply of ~40 large CRDs plus `wait` for
Established is exactly what kubectl does well, and the e2e tests and users run kubectl anyway.
"""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from lab.config import Settings
from lab.errors import LabError
from lab.kube import FIELD_MANAGER
from lab.stack import mgmt


def binary() -> str:
    exe = shutil.which("kubectl")
    if not exe:
        raise LabError("kubectl is not installed: lab applies the CRDs and webhooks with it")
    return exe


def run(settings: Settings, args: list[str], *, input_text: str | None = None, timeout: float = 180) -> str:
    cmd = [binary(), f"--kubeconfig={mgmt.admin_kubeconfig_path(settings)}", *args]
    try:
        out = subprocess.run(cmd, input=input_text, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise LabError(f"kubectl {' '.join(args[:3])} timed out after {timeout:.0f}s") from e
    if out.returncode != 0:
        detail = (out.stderr.strip().splitlines() or ["no output"])[-1]
        raise LabError(f"kubectl {' '.join(args[:3])} failed: {detail}")
    return out.stdout


def apply(settings: Settings, objects: list[dict[str, Any]], path: Path) -> None:
    """Server-side apply, owning every field we set (force: a re-run wins over a hand edit)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}))
    run(
        settings,
        ["apply", "--server-side", "--force-conflicts", f"--field-manager={FIELD_MANAGER}", "-f", str(path)],
    )


def wait_established(settings: Settings, crd_names: list[str], timeout: int = 120) -> None:
    if crd_names:
        run(
            settings,
            [
                "wait",
                "--for=condition=Established",
                f"--timeout={timeout}s",
                *[f"crd/{n}" for n in crd_names],
            ],
            timeout=timeout + 30,
        )


def api_get(settings: Settings, path: str, timeout: float = 10) -> dict[str, Any] | None:
    """GET one API path as the admin, in-process (a kubectl start costs a second or more);
    None on 404."""
    d = mgmt.pki_dir(settings)
    ctx = ssl.create_default_context(cafile=str(d / "ca" / "ca.crt"))
    crt, key = mgmt.client_files(settings, mgmt.admin_kubeconfig_path(settings))
    ctx.load_cert_chain(str(crt), str(key))
    try:
        with urllib.request.urlopen(
            f"{mgmt.apiserver_url(settings)}{path}", timeout=timeout, context=ctx
        ) as r:
            return dict(json.loads(r.read()))
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return None
        raise LabError(f"GET {path} from the management apiserver failed: HTTP {e.code}") from e
    except OSError as e:
        raise LabError(f"GET {path} from the management apiserver failed: {e}") from e
