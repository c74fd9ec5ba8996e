"""Sharding the KubeadmControlPlane manager: `lab up --shards K` runs K instances of KCP, each with
`--watch-filter=shard-<n>`, and each workload cluster is given to one of them by its index.

What carries the label (CAPI's `cluster.x-k8s.io/watch-filter`, read by its predicate
ResourceHasFilterLabel, at the pinned CAPI v1.13): KCP's controller filters every event source with
it (`WithEventFilter`: the KubeadmControlPlane itself, the Machines it owns, the Cluster it watches),
and its ClusterCache, the one connection to each workload API, connects only to Clusters that carry
it. So three places of the rendered objects carry it:
- the Cluster (without it the shard never reaches the workload API, never sees the Node, and the
  cluster never becomes Available);
- the KubeadmControlPlane;
- the KCP's `spec.machineTemplate.metadata.labels`, which KCP copies onto each Machine it creates:
  otherwise a Machine's nodeRef reaches KCP only through its 10-minute resync.
Everything else (CAPI core, CABPK, CAPM3, IPAM, BMO) runs one instance without a filter and
reconciles every object, labelled or not. Sharding CAPI core too ("if it helps; measure", issue
13) is not done: it is unmeasured here, so core stays one instance.

Round-robin by index (shard = index mod K), not by order of creation: the same index always lands
on the same shard, so a re-run of create renders the same objects and changes nothing, and a range
of consecutive indexes alternates between the shards.

K = 1 (the default) is today's stack exactly: one `kcp-manager` without a filter and no label on any
object. With K > 1, shard 0 is that same `kcp-manager` program (with `--watch-filter=shard-0`) and
shards 1..K-1 are `kcp-manager-shard-<n>`, so whatever is keyed by kcp-manager (tuning, patches,
report gates) still applies, to every shard.

Webhooks: each KCP instance starts a webhook server (no flag turns it off, and its readiness check
includes it), so each gets a webhook port of its own and reads the same serving certificate; the
webhook configurations and the KCP CRDs' conversion URL name shard 0's port only. Admission and
conversion are not filtered by label, so shard 0 serves them for every cluster, as the one
upstream Service in front of KCP's pods would. Leader election stays off (lab runs every manager
with `--leader-elect=false`): KCP's lease name is fixed in its main.go, with no flag, so with it on
the shards would wait for one another's lease instead of running side by side.

Changing K while clusters exist is refused (lab.stack.up): each cluster's objects carry the label of
the shard it was given, and relabelling them under running controllers leaves a window in which no
instance owns a cluster; delete the clusters first.
"""

from __future__ import annotations

import re

from lab.errors import UsageError

#: CAPI's clusterv1.WatchLabel
WATCH_LABEL = "cluster.x-k8s.io/watch-filter"
#: the manager that is sharded (lab.stack.managers' name and build target)
MANAGER = "kcp-manager"
DEFAULT = 1
#: Each shard past the first takes a webhook, a health and a metrics port from the stack's block
#: (lab.stack.ports): the block has room for four more. On a 2-core host more KCP instances than
#: that only compete for the same cores.
MAX_SHARDS = 5


def check_count(k: int) -> int:
    """K itself, or one usage error line."""
    if not 1 <= k <= MAX_SHARDS:
        raise UsageError(f"--shards must be 1..{MAX_SHARDS}, got {k}")
    return k


def of_index(index: int, k: int) -> int:
    """The shard that owns cluster `index` among k."""
    return index % k


def label_value(shard: int) -> str:
    """The --watch-filter value of one shard, and the label value its clusters' objects carry."""
    return f"shard-{shard}"


def program(shard: int) -> str:
    """The supervisord program of one shard's KCP manager: shard 0 is kcp-manager itself."""
    return MANAGER if shard == 0 else f"{MANAGER}-shard-{shard}"


def programs(k: int) -> list[str]:
    return [program(s) for s in range(k)]


#: every program name a shard can have past the first, for status ordering and probes
EXTRA_PROGRAMS = tuple(program(s) for s in range(1, MAX_SHARDS))


def base_manager(name: str) -> str:
    """kcp-manager for any shard's program, the name itself for every other component."""
    return MANAGER if name in EXTRA_PROGRAMS else name


def labels(index: int, k: int) -> dict[str, str]:
    """The watch-filter label of cluster `index`'s sharded objects; none when K is 1."""
    return {} if k == 1 else {WATCH_LABEL: label_value(of_index(index, k))}


def shard_of_label(value: str | None) -> int | None:
    """The shard a label value names (shard-<n>), None for none or anything else."""
    m = re.fullmatch(r"shard-([0-9]{1,3})", value or "")
    return int(m[1]) if m else None
