"""Settings: one validated model, fed (highest first) by explicit overrides, LAB_* environment
variables, a lab.yaml, and defaults.

Why pydantic: a validation error names the exact field, which is what the one-line error needs, and
the model doubles as the documentation of every setting.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from platformdirs import user_data_dir
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from lab import versions
from lab.errors import LabError

_SEMVER = re.compile(r"^v\d+\.\d+\.\d+$")
_DNS_LABEL = re.compile(r"^[a-z]([a-z0-9-]*[a-z0-9])?$")
CONFIG_FILE = "lab.yaml"


def default_home() -> Path:
    return Path(user_data_dir("metal3-scale-lab", appauthor=False))


class Versions(BaseModel):
    """Overrides of lab.versions.COMPONENTS; every field defaults to that table."""

    model_config = ConfigDict(extra="forbid")

    capi: str = versions.COMPONENTS["capi"].default
    capm3: str = versions.COMPONENTS["capm3"].default
    ipam: str = versions.COMPONENTS["ipam"].default
    bmo: str = versions.COMPONENTS["bmo"].default
    kubernetes: str = versions.COMPONENTS["kubernetes"].default
    etcd: str = versions.COMPONENTS["etcd"].default
    kind: str = versions.COMPONENTS["kind"].default
    cert_manager: str = versions.COMPONENTS["cert_manager"].default

    @field_validator("*", mode="before")
    @classmethod
    def _semver(cls, v: object) -> str:
        # YAML turns 1.35 into a float: quote what the user wrote, not pydantic's type complaint.
        if not isinstance(v, str) or not _SEMVER.match(v):
            raise ValueError(f"must look like v1.2.3, got {v!r}")
        return v

    def minor(self, key: str) -> tuple[int, int]:
        major, minor, _ = getattr(self, key).lstrip("v").split(".")
        return int(major), int(minor)


class Ports(BaseModel):
    """Loopback ports of the local stack; all bind 127.0.0.1 only."""

    model_config = ConfigDict(extra="forbid")

    #: the multi-tenant etcd that stores every workload cluster's data
    tenant_etcd: int = Field(default=2379, ge=1, le=65535)
    tenant_etcd_peer: int = Field(default=2380, ge=1, le=65535)
    #: the management cluster's own etcd, kept apart so workload churn never slows the controllers' store
    mgmt_etcd: int = Field(default=12379, ge=1, le=65535)
    mgmt_etcd_peer: int = Field(default=12380, ge=1, le=65535)
    mgmt_apiserver: int = Field(default=16443, ge=1, le=65535)
    #: first of a block of 40 ports: health, metrics and webhook ports of the local stack (lab.stack.ports)
    stack_base: int = Field(default=17400, ge=1, le=65535 - 40)


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True, frozen=True)

    home: Path = Field(default_factory=default_home)
    prefix: str = "test"
    max_index: int = Field(default=9999, ge=1, le=65000)
    mode: Literal["local", "kind"] = "local"
    #: workload clusters the local backing may carry: each costs one kube-apiserver process
    #: (~190 MiB RSS, benchmarks/apiserver_rss.py) on this machine
    local_capacity: int = Field(default=100, ge=1, le=65000)
    versions: Versions = Field(default_factory=Versions)
    ports: Ports = Field(default_factory=Ports)
    #: kind mode: control-plane nodes of the management kind cluster (3, as the Metal3 1000-cluster runs)
    kind_nodes: int = Field(default=3, ge=1, le=7)
    #: kind mode: node image of the management cluster; default kindest/node:<versions.kubernetes>
    kind_node_image: str | None = None
    #: built binaries, when shared between lab homes (e.g. tests with a tmp LAB_HOME); default <home>/bin
    bin_cache: Path | None = None

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        # <prefix>-<index>-apiserver-etcd-client must stay a valid 63-char DNS label.
        if not _DNS_LABEL.match(v) or len(v) > 30:
            raise ValueError("must be a lowercase DNS label of at most 30 characters")
        return v

    @field_validator("home")
    @classmethod
    def _home(cls, v: Path) -> Path:
        return v.expanduser().absolute()

    # Where things live under the lab home. One place per path.
    @property
    def pki_dir(self) -> Path:
        return self.home / "pki"

    @property
    def bin_dir(self) -> Path:
        return self.bin_cache.expanduser().absolute() if self.bin_cache else self.home / "bin"

    @property
    def src_dir(self) -> Path:
        return self.home / "src"

    @property
    def run_dir(self) -> Path:
        return self.home / "run"

    @property
    def log_dir(self) -> Path:
        return self.home / "logs"

    @property
    def clusters_dir(self) -> Path:
        return self.home / "clusters"

    @property
    def admin_kubeconfig(self) -> Path:
        """The management cluster's admin kubeconfig (0600) in either mode, what `lab kubeconfig`
        prints: one lab home holds one management cluster."""
        return self.home / "kubeconfig"

    @property
    def db_path(self) -> Path:
        return self.home / "records.sqlite"


def config_file(env: Mapping[str, str] | None = None) -> Path | None:
    """lab.yaml: $LAB_CONFIG, else ./lab.yaml, else <home>/lab.yaml; None when there is none."""
    if env is None:
        env = os.environ
    if env.get("LAB_CONFIG"):
        path = Path(env["LAB_CONFIG"])
        if not path.is_file():
            raise LabError(f"LAB_CONFIG points at {path}, which is not a file")
        return path
    for path in (Path.cwd() / CONFIG_FILE, Path(env.get("LAB_HOME") or default_home()) / CONFIG_FILE):
        if path.is_file():
            return path
    return None


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise LabError(f"{path}: not valid YAML: {str(e).splitlines()[0]}") from e
    if not isinstance(data, dict):
        raise LabError(f"{path}: must be a mapping of settings")
    return data


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load(**overrides: Any) -> Settings:
    """Settings from defaults, then lab.yaml, then LAB_* variables, then explicit overrides."""
    path = config_file()
    merged = _merge(_read_yaml(path) if path else {}, _env_values())
    merged = _merge(merged, overrides)
    try:
        return Settings.model_validate(merged)
    except ValidationError as e:
        err = e.errors()[0]
        field = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        where = f" (lab.yaml: {path})" if path else ""
        raise LabError(f"invalid setting {field}: {msg}{where}", exit_code=2) from None


def _env_values() -> dict[str, Any]:
    """LAB_* variables naming a setting, as a nested dict (LAB_VERSIONS__CAPI -> versions.capi)."""
    out: dict[str, Any] = {}
    for name, value in os.environ.items():
        if not name.startswith("LAB_"):
            continue
        path = name[4:].lower().split("__")
        if path[0] not in Settings.model_fields:
            continue
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return out
