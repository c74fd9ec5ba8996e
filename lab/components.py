"""The names of the supervised components lab runs: each is a supervisord program, its log file's
stem and the row `lab status` shows. One table, so the stack that starts them, the status that
reports them, a process backing host and the node simulator agree on every name.

The controllers' names (capi-manager, ...) are lab.stack.managers' table (their binaries, flags and
ports go with them); the workload apiservers are naming.WORKLOAD_PROGRAM_PREFIX + cluster.
"""

from __future__ import annotations

#: etcd of the management cluster
MGMT_ETCD = "mgmt-etcd"
#: the multi-tenant etcd of the workload clusters (local mode and each process backing host)
TENANT_ETCD = "tenant-etcd"
#: kube-apiserver and kube-controller-manager of the management cluster
KUBE_APISERVER = "kube-apiserver"
KUBE_CONTROLLER_MANAGER = "kube-controller-manager"
#: lab's node simulator (lab.nodesim)
NODESIM = "nodesim"
#: what `lab up` starts and waits for before the controllers, in order
CORE = (MGMT_ETCD, TENANT_ETCD, KUBE_APISERVER, KUBE_CONTROLLER_MANAGER)
