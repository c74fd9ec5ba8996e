"""What of the standalone hosts exists: two LISTs (BareMetalHosts and Secrets of the hosts
namespace), whatever the number of hosts; and the key their BMC passwords derive from."""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from lab import naming
from lab.config import Settings
from lab.kube import Client
from lab.manifests.hosts import HostState, state_of
from lab.manifests.kinds import API_VERSIONS
from lab.runtime.files import write_private

Obj = dict[str, Any]
BMH_API = API_VERSIONS["BareMetalHost"]
#: Bytes of the key that BMC passwords are HMACs with (lab.manifests.hosts.password).
KEY_BYTES = 32


@dataclass
class Inventory:
    """index -> object, for lab's standalone hosts of one prefix."""

    namespace: Obj | None
    hosts: dict[int, Obj] = field(default_factory=dict)
    secrets: dict[int, Obj] = field(default_factory=dict)

    @property
    def indexes(self) -> set[int]:
        """Every index with a host or a secret (a crash between the two leaves only the secret)."""
        return set(self.hosts) | set(self.secrets)

    def state(self, index: int) -> HostState | None:
        host = self.hosts.get(index)
        return None if host is None else state_of(host)

    def deleting(self, indexes: Iterable[int]) -> list[int]:
        return sorted(i for i in indexes if i in self.hosts and _deleting(self.hosts[i]))

    @property
    def namespace_terminating(self) -> bool:
        return self.namespace is not None and _deleting(self.namespace)


def _deleting(obj: Obj) -> bool:
    return bool(obj["metadata"].get("deletionTimestamp"))


def selector(prefix: str) -> str:
    return f"{naming.HOSTS_LABEL}={prefix}"


def read(settings: Settings, mgmt: Client) -> Inventory:
    """One consistent look (no cache: create decides what to apply from it)."""
    prefix = settings.prefix
    ns_name = naming.hosts_namespace(prefix)
    inv = Inventory(mgmt.get("v1", "Namespace", ns_name))
    if inv.namespace is None:
        return inv
    for bmh in mgmt.list(BMH_API, "BareMetalHost", ns_name, label_selector=selector(prefix)):
        index = naming.parse_host_index(prefix, bmh["metadata"]["name"])
        if index is not None:
            inv.hosts[index] = bmh
    for s in mgmt.list("v1", "Secret", ns_name, label_selector=selector(prefix)):
        name = s["metadata"]["name"].removesuffix("-bmc-secret")
        index = naming.parse_host_index(prefix, name)
        if index is not None:
            inv.secrets[index] = s
    return inv


def bmc_key(settings: Settings) -> bytes:
    """The lab home's key for standalone hosts' BMC passwords (0600), made on first use."""
    path = settings.pki_dir / "hosts-bmc.key"
    if not path.is_file():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_private(path, secrets.token_bytes(KEY_BYTES))
    return path.read_bytes()


def forget_key(settings: Settings) -> None:
    """Remove the key once no standalone host is left: delete-hosts --all leaves nothing behind."""
    (settings.pki_dir / "hosts-bmc.key").unlink(missing_ok=True)


def by_state(inv: Inventory) -> dict[str, int]:
    """BMO's provisioning state -> how many standalone hosts are in it now (for `lab status`)."""
    out: dict[str, int] = {}
    for bmh in inv.hosts.values():
        state = ((bmh.get("status") or {}).get("provisioning") or {}).get("state") or "none"
        out[state] = out.get(state, 0) + 1
    return dict(sorted(out.items()))
