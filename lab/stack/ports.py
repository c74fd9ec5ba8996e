"""Which loopback port belongs to which part of the stack.

Besides the ports named in settings.ports, every health, metrics and webhook port comes from one
block starting at settings.ports.stack_base, at fixed offsets, so a user (or a test) moves the whole
stack by changing one number.
"""

from __future__ import annotations

from dataclasses import dataclass

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


@dataclass(frozen=True)
class ManagerPorts:
    webhook: int
    health: int
    metrics: int


def manager(settings: Settings, name: str) -> ManagerPorts:
    base = settings.ports.stack_base + _MANAGER_OFFSETS[name]
    return ManagerPorts(webhook=base, health=base + 1, metrics=base + 2)


def kcm(settings: Settings) -> int:
    return settings.ports.stack_base + _KCM


def mgmt_etcd_metrics(settings: Settings) -> int:
    return settings.ports.stack_base + _MGMT_ETCD_METRICS


def tenant_etcd_metrics(settings: Settings) -> int:
    return settings.ports.stack_base + _TENANT_ETCD_METRICS
