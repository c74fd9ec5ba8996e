"""Which loopback port belongs to which part of the stack.

Besides the ports named in settings.ports, every health, metrics and webhook port comes from one
block starting at settings.ports.stack_base, at fixed offsets, so a user (or a test) moves the whole
stack by changing one number.
"""

from __future__ import annotations

from dataclasses import dataclass

from lab import shards
from lab.config import Settings
from lab.runtime import ports as runtime_ports

#: every component of the stack listens on loopback only
LOOPBACK = runtime_ports.LOOPBACK
BLOCK = 40

#: manager -> offset of its (webhook, health, metrics) triple inside the block
_MANAGER_OFFSETS = {
    "capi-manager": 10,
    "kcp-manager": 13,
    "cabpk-manager": 16,
    "capm3-manager": 19,
    "ipam-manager": 22,
    "bmo-manager": 25,
}
_KCM, _MGMT_ETCD_METRICS, _TENANT_ETCD_METRICS = 0, 1, 2
#: KCP shards 1.. (lab.shards; shard 0 is kcp-manager): a triple each from here to the block's end
_SHARD_BASE = 28
if _SHARD_BASE + 3 * (shards.MAX_SHARDS - 1) > BLOCK:
    raise AssertionError("lab.shards.MAX_SHARDS does not fit the stack's port block")


@dataclass(frozen=True)
class ManagerPorts:
    webhook: int
    health: int
    metrics: int


def manager(settings: Settings, name: str) -> ManagerPorts:
    base = settings.ports.stack_base + _MANAGER_OFFSETS[name]
    return ManagerPorts(webhook=base, health=base + 1, metrics=base + 2)


def shard(settings: Settings, n: int) -> ManagerPorts:
    """Ports of KCP shard n: shard 0 is kcp-manager's own, the others follow the managers'."""
    if n == 0:
        return manager(settings, shards.MANAGER)
    if not 0 < n < shards.MAX_SHARDS:
        raise ValueError(f"no KCP shard {n}")
    base = settings.ports.stack_base + _SHARD_BASE + 3 * (n - 1)
    return ManagerPorts(webhook=base, health=base + 1, metrics=base + 2)


def of_program(settings: Settings, name: str) -> ManagerPorts:
    """Ports of a manager program, a KCP shard's included."""
    if name in shards.EXTRA_PROGRAMS:
        return shard(settings, shards.EXTRA_PROGRAMS.index(name) + 1)
    return manager(settings, name)


def kcm(settings: Settings) -> int:
    return settings.ports.stack_base + _KCM


def mgmt_etcd_metrics(settings: Settings) -> int:
    return settings.ports.stack_base + _MGMT_ETCD_METRICS


def tenant_etcd_metrics(settings: Settings) -> int:
    return settings.ports.stack_base + _TENANT_ETCD_METRICS
