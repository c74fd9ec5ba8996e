"""The store of registered backings (`lab backing add`): one directory per backing under lab home.

<home>/backings/<name>/backing.yaml holds the runtime, capacity and runtime-specific spec; beside it
the runtime keeps what it needs (a kind cluster's kubeconfig, 0600; a process host's known_hosts)
and etcd-ca/, the CA this machine issues the backing's etcd certificates from. Which cluster sits on which backing is not here:
that is the label on each cluster's namespace in the management cluster.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from lab import naming, pki, pki_store
from lab.config import Settings
from lab.errors import LabError
from lab.runtime.files import write_private

#: kind: a backing kind cluster; process: a host's real apiservers; mux: a host's lab-mux (hostmux)
Runtime = Literal["kind", "process", "mux"]
RUNTIMES: tuple[str, ...] = ("kind", "process", "mux")
SPEC_FILE = "backing.yaml"


def check_name(name: str) -> str:
    """A backing's name is a label value and a directory name: a lowercase DNS label."""
    return naming.check_dns_label("backing name", name)


@dataclass(frozen=True)
class Entry:
    name: str
    runtime: Runtime
    capacity: int
    #: runtime-specific: e.g. kind {kubeconfig, node_address}; process {host, port, user, ...}
    spec: dict[str, Any] = field(default_factory=dict)


def backings_dir(settings: Settings) -> Path:
    return settings.home / "backings"


def backing_dir(settings: Settings, name: str) -> Path:
    return backings_dir(settings) / check_name(name)


def etcd_ca(settings: Settings, name: str) -> pki.KeyPair:
    """The backing's etcd CA, created on first use. Each backing has its own, trusted by nothing but
    that backing's etcd: a kind backing gets only leaf certs; a process host also gets the key, so
    its lab issues its etcd's server and root certs (root there can read the etcd data anyway)."""
    return pki_store.load_or_create_ca(backing_dir(settings, name) / "etcd-ca", f"{name}-etcd-ca")


def save(settings: Settings, entry: Entry) -> None:
    """Write atomically: a crash leaves the old entry or the new one, never half of one."""
    if entry.name in naming.BUILT_IN_BACKINGS:
        raise LabError(f"{entry.name!r} is a built-in backing of this machine; choose another name")
    if entry.runtime not in RUNTIMES:
        raise LabError(f"unknown backing runtime {entry.runtime!r}: one of {', '.join(RUNTIMES)}")
    d = backing_dir(settings, entry.name)
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    body = {"name": entry.name, "runtime": entry.runtime, "capacity": entry.capacity, "spec": entry.spec}
    write_private(d / SPEC_FILE, yaml.safe_dump(body, sort_keys=False).encode())


def load(settings: Settings, name: str) -> Entry | None:
    path = backing_dir(settings, name) / SPEC_FILE
    if not path.is_file():
        return None
    data = yaml.safe_load(path.read_text()) or {}
    return Entry(data["name"], data["runtime"], int(data["capacity"]), dict(data.get("spec") or {}))


def entries(settings: Settings) -> list[Entry]:
    d = backings_dir(settings)
    if not d.is_dir():
        return []
    found = (load(settings, p.name) for p in sorted(d.iterdir()) if (p / SPEC_FILE).is_file())
    return [e for e in found if e is not None]


def delete(settings: Settings, name: str) -> bool:
    """Forget a backing and its files (CA included); False when it was not registered."""
    d = backing_dir(settings, name)
    if not d.exists():
        return False
    shutil.rmtree(d)
    return True
