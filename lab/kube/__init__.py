"""The Kubernetes client layer: server-side apply of any kind, get/list/delete, list+watch and health
probes, for the management cluster and the workload apiservers, with a client-side QPS limit and
retries. The one way lab reaches a Kubernetes API.

Why a thin layer on urllib3 rather than a client library: lab only ever sends raw objects (dicts from
lab.manifests), so typed models are dead weight, and what it does need is in no Python client: a
client-go style token bucket (QPS/burst), retries that honour Retry-After, a RESTMapper that learns
CRDs installed after start, and a watch that relists on 410. What is left is one PATCH with
`application/apply-patch+yaml` per object over urllib3 (which the official client uses underneath
too). A thread pool keeps callers synchronous (typer commands, rich progress). Measured on this
2-core host (loaded by parallel builds), 300 SSA ConfigMap creates with 8 threads against one real
kube-apiserver: client CPU 1.4-1.7 ms per request for this package, 1.3-1.6 ms for `kubernetes`
37.0.2 DynamicClient.server_side_apply (same within noise), while importing
`kubernetes.client`+`dynamic`+`config` adds ~0.35 s CPU to every CLI start against ~0.15 s for this
package (benchmarks/apply_vs_kubectl.py). lightkube has a synchronous Client too, with SSA `apply`,
but no client-side rate limit and no relist on 410, and it brings httpx; at lab's scale the
apiserver, not Python, is the bottleneck, so those features decide. The official client's
kubeconfig loader is used where it earns its import: a user's kubeconfig (lab.kube.config).

Modules: config (kubeconfig -> Config), ratelimit (token bucket), discovery (REST mapping), watch
(list+watch, relist on 410), client (Client), errors (ApiError, NotFound, NotServed), waits (CRDs
Established, Deployments rolled out).
"""

from __future__ import annotations

from lab.errors import LabError
from lab.kube.client import APPLY_PATCH, FIELD_MANAGER, Client, Stats
from lab.kube.config import Config
from lab.kube.discovery import Resource, parse_aggregated, parse_resource_list, split_api_version
from lab.kube.errors import ApiError, NotFound, NotServed
from lab.kube.ratelimit import TokenBucket
from lab.kube.watch import Obj, Watch, WatchEvent

__all__ = [
    "APPLY_PATCH",
    "FIELD_MANAGER",
    "ApiError",
    "Client",
    "Config",
    "LabError",
    "NotFound",
    "NotServed",
    "Obj",
    "Resource",
    "Stats",
    "TokenBucket",
    "Watch",
    "WatchEvent",
    "parse_aggregated",
    "parse_resource_list",
    "split_api_version",
]
