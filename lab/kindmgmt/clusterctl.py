"""`clusterctl init` for the pinned providers, and what the provider inventory says is installed.

Every provider is named with its version from the one version table, so clusterctl never resolves
"latest" (the seed's unpinned `clusterctl init --infrastructure=metal3` got whatever was newest).
clusterctl's own variables need no values: every `${VAR:=default}` in the pinned components has a
default (CAPI's feature gates and diagnostics address, CAPM3's and IPAM's diagnostics flags). The
environment only turns off clusterctl's check for a newer clusterctl, a GitHub call that air-gapped
labs cannot make and that would only print a notice.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from lab.config import Settings
from lab.errors import LabError
from lab.kindmgmt import kind_dir

#: clusterctl waits this long for every provider's Deployment to be Available
WAIT_PROVIDERS_SECONDS = 600
#: clusterctl waits this long for cert-manager's webhook before it installs any provider: its own
#: default, written into lab's clusterctl.yaml so that lab's limit on the whole init counts it
CERT_MANAGER_WAIT_SECONDS = 600
#: lab's limit on `clusterctl init`: both of clusterctl's waits and 10 minutes for the rest (applying
#: cert-manager and the providers); below their sum, lab would kill clusterctl before it names what
#: never became ready
INIT_TIMEOUT_SECONDS = CERT_MANAGER_WAIT_SECONDS + WAIT_PROVIDERS_SECONDS + 600
CERT_MANAGER_URL = "https://github.com/cert-manager/cert-manager/releases/{version}/cert-manager.yaml"


@dataclass(frozen=True)
class Provider:
    flag: str  # clusterctl init flag
    type: str  # Provider.type in clusterctl's inventory
    name: str  # clusterctl's provider name
    version_key: str  # lab.versions key


PROVIDERS: tuple[Provider, ...] = (
    Provider("--core", "CoreProvider", "cluster-api", "capi"),
    Provider("--bootstrap", "BootstrapProvider", "kubeadm", "capi"),
    Provider("--control-plane", "ControlPlaneProvider", "kubeadm", "capi"),
    Provider("--infrastructure", "InfrastructureProvider", "metal3", "capm3"),
    Provider("--ipam", "IPAMProvider", "metal3", "ipam"),
)


def wanted(settings: Settings) -> dict[tuple[str, str], str]:
    """(type, name) -> version for every provider lab installs."""
    return {(p.type, p.name): getattr(settings.versions, p.version_key) for p in PROVIDERS}


def config(settings: Settings) -> dict[str, Any]:
    """clusterctl's config file: cert-manager pinned; the providers are clusterctl's built-in ones."""
    version = settings.versions.cert_manager
    url = CERT_MANAGER_URL.format(version=version)
    return {"cert-manager": {"url": url, "version": version, "timeout": f"{CERT_MANAGER_WAIT_SECONDS}s"}}


def config_path(settings: Settings) -> Path:
    return kind_dir(settings) / "clusterctl.yaml"


def write_config(settings: Settings) -> Path:
    path = config_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.write_text(yaml.safe_dump(config(settings), sort_keys=False))
    return path


def init_argv(
    settings: Settings, clusterctl: str, kubeconfig: Path, config_file: Path, wait: bool = True
) -> list[str]:
    """wait=False when lab issues the providers' certificates after init (lab.kindmgmt.certs): the
    managers cannot start before that, so clusterctl must not wait for them."""
    argv = [clusterctl, "init", "--kubeconfig", str(kubeconfig), "--config", str(config_file)]
    for p in PROVIDERS:
        argv += [p.flag, f"{p.name}:{getattr(settings.versions, p.version_key)}"]
    if not wait:
        return argv
    return [*argv, "--wait-providers", "--wait-provider-timeout", str(WAIT_PROVIDERS_SECONDS)]


def init_env(base: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    env["CLUSTERCTL_DISABLE_VERSIONCHECK"] = "true"
    return env


def installed(inventory: dict[str, Any]) -> dict[tuple[str, str], str]:
    """(type, name) -> version from `kubectl get providers.clusterctl.cluster.x-k8s.io -A -o json`."""
    return {
        (item.get("type", ""), item.get("providerName", "")): item.get("version", "")
        for item in inventory.get("items") or []
    }


def plan(settings: Settings, have: dict[tuple[str, str], str]) -> tuple[list[str], list[str]]:
    """(missing, drifted): providers to install, and providers installed at another version.

    A drifted provider is an error, not an upgrade: clusterctl init refuses a second instance, and
    `clusterctl upgrade` is a decision for the user, not a side effect of `lab up`.
    """
    missing, drifted = [], []
    for (ptype, name), version in wanted(settings).items():
        now = have.get((ptype, name))
        if now is None:
            missing.append(f"{name} ({ptype})")
        elif now != version:
            drifted.append(f"{name} ({ptype}) {now}, wanted {version}")
    return missing, drifted


_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::=([^}]*))?\}")


def substitute_defaults(text: str) -> str:
    """What clusterctl renders from provider components when no variable is set: `${VAR:=x}` -> x.

    A variable without a default is an error, as in clusterctl (which names the missing variables);
    that is how lab knows the pinned components need no variables at all.
    """
    missing = sorted({m.group(1) for m in _VARIABLE.finditer(text) if m.group(2) is None})
    if missing:
        raise LabError(f"components need clusterctl variables without defaults: {', '.join(missing)}")
    return _VARIABLE.sub(lambda m: m.group(2), text)
