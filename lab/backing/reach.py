"""Which backing the management cluster's controllers can reach, by management mode (pure).

CAPI, KCP and CAPM3 dial every workload cluster's controlPlaneEndpoint, the address a backing
serves the cluster's apiserver on. Under `lab up --mode local` they are processes of this machine
and reach every backing: loopback addresses (local: 127.1.x.y, mux: 127.2.0.1), a kind node's
address, a process host's. Under `--mode kind` they run in pods of the kind management cluster,
where a loopback address is the pod's own: the local and mux backings, and any registered backing
whose address is loopback, cannot serve it. A kind node's address on the same engine's network is
reached (lab.kindmgmt.podnet masquerades pod traffic leaving the cluster), and so is any address
this machine routes. The node simulator runs on this machine in both modes, so it never limits.

create-clusters refuses an unreachable placement with one line before anything is created.
"""

from __future__ import annotations

import ipaddress


def is_loopback(host: str) -> bool:
    """A loopback address (or localhost): reachable only from this machine's own network namespace,
    never from a pod."""
    if host.rstrip(".").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def unreachable(mode: str, name: str, runtime: str, host: str) -> str | None:
    """Why the controllers of a management cluster in `mode` cannot reach backing `name` (a
    `runtime` backing serving apiservers on `host`), or None when they can."""
    if mode != "kind" or not is_loopback(host.split("/", 1)[0]):
        return None
    return (
        f"backing {name} ({runtime}) serves its apiservers on {host}, a loopback address of this machine, "
        "and the management cluster runs in kind, whose controllers run in pods where that address is "
        "the pod's own: place the clusters on a kind backing or on a backing at a routed address, "
        "or run the management cluster as local processes (lab up --mode local)"
    )
