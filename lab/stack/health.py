"""Health endpoints of the stack's components, and one probe for all of them.

"Up" means the process answers its own readiness endpoint, not just that it runs: etcd's /health
(on the plain-HTTP metrics listener), the apiserver's /readyz, kcm's /healthz and each manager's
controller-runtime /readyz (which includes the webhook server for the managers that add that check).
"""

from __future__ import annotations

import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from lab import components
from lab.config import Settings
from lab.stack import managers, mgmt, ports


@dataclass(frozen=True)
class Probe:
    url: str
    ca_file: Path | None = None  # verify with this CA; None for plain HTTP or self-signed (kcm)


def probes(settings: Settings) -> dict[str, Probe]:
    out = {
        components.MGMT_ETCD: Probe(f"http://{ports.LOOPBACK}:{ports.mgmt_etcd_metrics(settings)}/health"),
        components.TENANT_ETCD: Probe(
            f"http://{ports.LOOPBACK}:{ports.tenant_etcd_metrics(settings)}/health"
        ),
        components.KUBE_APISERVER: Probe(
            f"{mgmt.apiserver_url(settings)}/readyz", mgmt.pki_dir(settings) / "ca" / "ca.crt"
        ),
        # kcm serves a self-signed cert from its --cert-dir; the probe only asks "are you there".
        components.KUBE_CONTROLLER_MANAGER: Probe(f"https://{ports.LOOPBACK}:{ports.kcm(settings)}/healthz"),
    }
    for m in managers.MANAGERS:
        out[m.name] = Probe(f"http://{ports.LOOPBACK}:{ports.manager(settings, m.name).health}/readyz")
    return out


def check(probe: Probe, timeout: float = 2.0) -> tuple[bool, str]:
    """(healthy, short reason)."""
    ctx = None
    if probe.url.startswith("https"):
        if probe.ca_file:
            ctx = ssl.create_default_context(cafile=str(probe.ca_file))
        else:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(probe.url, timeout=timeout, context=ctx) as resp:
            return resp.status == 200, f"HTTP {resp.status}"
    except urllib.error.HTTPError as e:
        return False, f"HTTP {e.code}"
    except (OSError, ssl.SSLError) as e:
        reason = getattr(e, "reason", None) or e
        return False, str(reason)[:80]
