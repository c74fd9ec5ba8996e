"""The local management cluster: etcd, kube-apiserver, kube-controller-manager and the CAPI, CAPM3,
IPAM and BMO managers as supervised processes built from upstream sources (no containers).

Modules: ports (which port is whose; supervision itself is lab.runtime.supervise), mgmt (PKI and
argv of etcd/apiserver/kcm), managers (argv of the controllers), webhooks (CRDs, webhook configs
and RBAC rewritten for loopback), health (probes), status, up (the orchestration).
"""
