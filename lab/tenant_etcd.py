"""Pure facts of the multi-tenant etcd, shared by the local process (lab.etcd.server), the kind
backing's StatefulSet (lab.manifests.etcd) and every workload kube-apiserver (lab.workload_apiserver):
how it is tuned, who administers it, what a tenant may be called and how an apiserver reaches its
tenant. No grpc, no processes: lab.etcd is the adapter that runs and talks to it.
"""

from __future__ import annotations

from pathlib import Path

from lab import naming
from lab.errors import UsageError

#: Same knobs as the kamaji-etcd chart and the Metal3 scale manifests: etcd compacts itself (tenants
#: may not compact: their apiservers run with --etcd-compaction-interval=0), 8 GiB backend quota.
COMPACTION_MODE = "periodic"
COMPACTION_RETENTION = "5m"
QUOTA_BACKEND_BYTES = 8 * 1024**3
SNAPSHOT_COUNT = 10000
#: etcd's administrator: the root user, authenticated by a client certificate with this CN
ROOT_USER = "root"


def check_name(name: str) -> str:
    """A tenant is a cluster name: a DNS label, never etcd's root user."""
    naming.check_dns_label("tenant name", name)
    if name == ROOT_USER:
        raise UsageError("'root' is etcd's administrator and cannot be a tenant")
    return name


def apiserver_etcd_flags(
    name: str, servers: str | list[str], cafile: Path | str, certfile: Path | str, keyfile: Path | str
) -> list[str]:
    """The etcd flags of tenant `name`'s kube-apiserver, for every backend (process or Pod).

    --etcd-prefix has no trailing slash: the apiserver joins "/<name>" and "/registry/..."-style
    paths itself, so its keys land under /<name>/. --etcd-compaction-interval=0: compaction (and the
    apiserver's compact_rev_key at the keyspace root) needs root; etcd auto-compacts instead.
    """
    check_name(name)
    urls = servers if isinstance(servers, str) else ",".join(servers)
    return [
        f"--etcd-servers={urls}",
        f"--etcd-prefix=/{name}",
        f"--etcd-cafile={cafile}",
        f"--etcd-certfile={certfile}",
        f"--etcd-keyfile={keyfile}",
        "--etcd-compaction-interval=0",
    ]
