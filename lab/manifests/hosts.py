"""Standalone BareMetalHosts (`lab create-hosts`): BMO-only runs, no cluster, no CAPM3.

The seed's produce-available-hosts.sh / produce-hosts.sh as pure functions: a BMC Secret and a
BareMetalHost per index, in one namespace of their own (lab.naming.hosts_namespace), built with the
same renderers as the clusters' hosts (metal3.host, secrets.credentials). `provisioned` hosts carry
spec.image, which is all BMO in test mode needs to provision a host on its own: nothing
test-mode-specific goes into the object, BMO's `--test-mode` fakes every step. Unlike the seed's
hosts they carry no userData (its secret never existed there either).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from enum import StrEnum
from typing import Any

from lab import naming
from lab.manifests import metal3, secrets
from lab.manifests.common import obj


class HostState(StrEnum):
    """Where `lab create-hosts --state` leaves each host."""

    available = "available"  # registered, inspected, prepared: ready for a consumer
    provisioned = "provisioned"  # spec.image set: BMO provisions it on its own


def labels(prefix: str, index: int | None = None) -> dict[str, str]:
    out = {naming.HOSTS_LABEL: prefix}
    if index is not None:
        out[naming.INDEX_LABEL] = str(index)
    return out


def namespace(prefix: str) -> dict[str, Any]:
    return obj("Namespace", naming.hosts_namespace(prefix), None, labels(prefix))


def secret_name(prefix: str, index: int) -> str:
    return f"{naming.host_name(prefix, index)}-bmc-secret"


def password(key: bytes, prefix: str, index: int) -> str:
    """Stable for a host (re-applying changes nothing), unguessable without the lab home's key."""
    msg = b"scale-lab standalone bmc password\0" + naming.host_name(prefix, index).encode()
    digest = hmac.new(key, msg, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")[:32]


def state_of(bmh: dict[str, Any]) -> HostState:
    """The state an existing host was created for: its spec, not where BMO has got to."""
    return HostState.provisioned if (bmh.get("spec") or {}).get("image") else HostState.available


def host_objects(prefix: str, index: int, state: HostState, key: bytes) -> list[dict[str, Any]]:
    """[Secret, BareMetalHost] of host `index`, in apply order (BMO looks the secret up)."""
    name = naming.host_name(prefix, index)
    ns = naming.hosts_namespace(prefix)
    meta = labels(prefix, index)
    return [
        secrets.credentials(secret_name(prefix, index), ns, meta, password(key, prefix, index)),
        metal3.host(
            name,
            ns,
            meta,
            naming.boot_mac(index, naming.STANDALONE_MAC_OCTET),
            naming.bmc_address(index, naming.STANDALONE_BMC_SUBNET),
            secret_name(prefix, index),
            metal3.HOST_IMAGE if state is HostState.provisioned else None,
        ),
    ]
