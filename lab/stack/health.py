"""Health endpoints of the stack's components, and one probe for all of them.

"Up" means the process answers its own readiness endpoint, not just that it runs: etcd's /health
(on the plain-HTTP metrics listener), the apiserver's /readyz, kcm's /healthz and each manager's
controller-runtime /readyz (which includes the webhook server for the managers that add that check).
"""

from __future__ import annotations

from lab import components, shards
from lab.config import Settings
from lab.stack import managers, mgmt, ports
from lab.supervised import Probe


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
    for name in shards.EXTRA_PROGRAMS:  # KCP shards past the first, whichever run
        out[name] = Probe(f"http://{ports.LOOPBACK}:{ports.of_program(settings, name).health}/readyz")
    return out
