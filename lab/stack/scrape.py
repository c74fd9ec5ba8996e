"""Where the local stack's Prometheus metrics are and how lab reaches each one (lab.metrics scrapes).

- the CAPI-style managers (core, KCP, CABPK, CAPM3, IPAM): plain HTTP on loopback, which lab asks
  for with --diagnostics-address=127.0.0.1:<port> --insecure-diagnostics (both flags in each of
  these binaries' --help at the pinned versions);
- BMO: -metrics-addr has no insecure switch; controller-runtime serves HTTPS with a self-signed
  certificate and checks a bearer token by TokenReview and SubjectAccessReview. lab asks the
  management apiserver for a short-lived token of the `lab-metrics-reader` ServiceAccount (allowed
  GET /metrics and nothing else) and sends it only to the process supervisord runs as bmo-manager,
  checked by the owner of the listening socket, since the certificate proves nothing;
- kube-apiserver: HTTPS verified with the management CA, lab's admin client certificate;
- both etcds: their plain-HTTP --listen-metrics-urls on loopback;
- the KCP shards past the first (lab.shards), as kcp-manager, each on its own port.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from lab import components, shards
from lab.config import Settings
from lab.metrics import Target
from lab.runtime.ports import listener_pid
from lab.runtime.supervise import Supervisor
from lab.stack import managers, mgmt, ports
from lab.stack.up import current_shards

#: seconds a metrics token lives (the apiserver's minimum is 600); renewed at half its life
TOKEN_SECONDS = 3600


class TokenSource:
    """A TokenRequest token of the metrics reader, fetched on first use and renewed before expiry."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._token = ""
        self._renew_at = 0.0
        self._lock = threading.Lock()

    def __call__(self) -> str:
        with self._lock:
            if time.monotonic() >= self._renew_at:
                path = (
                    f"/api/v1/namespaces/{managers.METRICS_READER_NAMESPACE}/serviceaccounts/"
                    f"{managers.METRICS_READER}/token"
                )
                body = {
                    "apiVersion": "authentication.k8s.io/v1",
                    "kind": "TokenRequest",
                    "spec": {"expirationSeconds": TOKEN_SECONDS},
                }
                with mgmt.client(self.settings) as client:
                    got = client.request("POST", path, body=body)
                self._token = str(got["status"]["token"])
                self._renew_at = time.monotonic() + TOKEN_SECONDS / 2
            return self._token


def supervised_pid(settings: Settings, name: str) -> Callable[[], int | None]:
    def pid() -> int | None:
        info = Supervisor(settings).process(name)
        if not info or info.get("statename") != "RUNNING" or not info.get("pid"):
            return None
        return int(info["pid"])

    return pid


def targets(settings: Settings) -> list[Target]:
    """Every component of the management side whose metrics a run report reads."""
    loop = ports.LOOPBACK
    d = mgmt.pki_dir(settings)
    out = [
        Target(
            components.KUBE_APISERVER,
            f"{mgmt.apiserver_url(settings)}/metrics",
            ca_file=d / "ca" / "ca.crt",
            client_cert=mgmt.client_files(settings, mgmt.admin_kubeconfig_path(settings)),
        ),
        Target(components.MGMT_ETCD, f"http://{loop}:{ports.mgmt_etcd_metrics(settings)}/metrics"),
        Target(components.TENANT_ETCD, f"http://{loop}:{ports.tenant_etcd_metrics(settings)}/metrics"),
    ]
    token = TokenSource(settings)
    for m in managers.MANAGERS:
        port = ports.manager(settings, m.name).metrics
        if m.go_flags:
            out.append(
                Target(
                    m.name,
                    f"https://{loop}:{port}/metrics",
                    token=token,
                    owner=supervised_pid(settings, m.name),
                    port_owner=lambda p: listener_pid(p, loop),
                    port=port,
                )
            )
        else:
            out.append(Target(m.name, f"http://{loop}:{port}/metrics"))
    for n in range(1, current_shards(settings)):  # KCP's shards past kcp-manager (lab.shards)
        out.append(Target(shards.program(n), f"http://{loop}:{ports.shard(settings, n).metrics}/metrics"))
    return out
