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
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from lab import versions
from lab.errors import LabError

# \Z, not $: $ also matches before a trailing newline; [0-9], not \d: \d takes any Unicode digit.
_SEMVER = re.compile(r"^v[0-9]+\.[0-9]+\.[0-9]+\Z")
_DNS_LABEL = re.compile(r"^[a-z]([a-z0-9-]*[a-z0-9])?\Z")
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
    helm: str = versions.COMPONENTS["helm"].default
    node_etcd: str = versions.COMPONENTS["node_etcd"].default
    coredns: str = versions.COMPONENTS["coredns"].default

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


#: ports the local stack takes from stack_base on (lab.stack.ports.BLOCK)
STACK_BLOCK = 40


def _whole_number(v: object) -> object:
    # pydantic's lax mode reads YAML's true as 1: a typo like `local_capacity: yes` must not pass.
    if isinstance(v, bool):
        raise ValueError(f"must be a whole number, got {v}")
    return v


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
    stack_base: int = Field(default=17400, ge=1, le=65535 - STACK_BLOCK)
    #: the mux backing's control API (lab.backing.mux; its clusters use lab.naming.mux_endpoint)
    mux_control: int = Field(default=19443, ge=1, le=65535)

    _no_bool = field_validator("*", mode="before")(_whole_number)

    @model_validator(mode="after")
    def _distinct(self) -> Ports:
        # Two components on one port fail at `lab up` with a bind error far from the setting's name.
        seen: dict[int, str] = {}
        block = range(self.stack_base, self.stack_base + STACK_BLOCK)
        for name, port in self:
            if name == "stack_base":
                continue
            if port in seen:
                raise ValueError(f"{seen[port]} and {name} are both {port}")
            if port in block:
                raise ValueError(f"{name} {port} lies in stack_base's block {block.start}-{block.stop - 1}")
            seen[port] = name
        return self


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True, frozen=True)

    home: Path = Field(default_factory=default_home)
    prefix: str = "test"
    max_index: int = Field(default=9999, ge=1, le=65000)
    mode: Literal["local", "kind"] = "local"
    #: workload clusters the local backing may carry: each costs one kube-apiserver process
    #: (~190 MiB RSS, benchmarks/apiserver_rss.py) on this machine
    local_capacity: int = Field(default=100, ge=1, le=65000)
    #: workload clusters the mux backing (one lab-mux process) may carry: what the management side
    #: is aimed at on this machine (issue 12: 1000 on 2 cores / 24 GiB); the ports allow 12767
    mux_capacity: int = Field(default=1000, ge=1, le=12767)
    versions: Versions = Field(default_factory=Versions)
    ports: Ports = Field(default_factory=Ports)
    #: kind mode: control-plane nodes of the management kind cluster (3, as the Metal3 1000-cluster runs)
    kind_nodes: int = Field(default=3, ge=1, le=7)
    #: kind mode: node image of the management cluster; default kindest/node:<versions.kubernetes>
    kind_node_image: str | None = Field(default=None, min_length=1)
    #: seconds between two scrapes of the components' Prometheus metrics during every recorded run
    metrics_interval: float = Field(default=5.0, gt=0, le=300, allow_inf_nan=False)
    #: built binaries, when shared between lab homes (e.g. tests with a tmp LAB_HOME); default <home>/bin
    bin_cache: Path | None = None
    #: source patches per component or build target (<dir>/<capi|kcp-manager|...>/*.patch) that
    #: `lab build` and `lab up` apply; default the repository's patches/ (lab.build)
    patches: Path | None = None

    _no_bool = field_validator("max_index", "local_capacity", "mux_capacity", "kind_nodes", mode="before")(
        _whole_number
    )

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        # <prefix>-<index>-apiserver-etcd-client must stay a valid 63-char DNS label.
        if not _DNS_LABEL.match(v) or len(v) > 30:
            raise ValueError("must be a lowercase DNS label of at most 30 characters")
        return v

    @field_validator("home", "bin_cache", "patches", mode="before")
    @classmethod
    def _not_empty(cls, v: object) -> object:
        # pydantic reads "" as Path("."): LAB_HOME= would put the lab home in the current directory.
        if isinstance(v, str) and not v.strip():
            raise ValueError("must not be empty")
        return v

    @field_validator("home", "bin_cache", "patches")
    @classmethod
    def _home(cls, v: Path | None) -> Path | None:
        if v is None:
            return None
        v = v.expanduser().absolute()
        # Checked here, not at the first mkdir deep in a command: a file on the way is bad input.
        for p in (v, *v.parents):
            if p.exists():
                if not p.is_dir():
                    raise ValueError(f"{p} is not a directory")
                break
        return v

    # Where things live under the lab home. One place per path.
    @property
    def pki_dir(self) -> Path:
        return self.home / "pki"

    @property
    def bin_dir(self) -> Path:
        return self.bin_cache or self.home / "bin"

    @property
    def patches_dir(self) -> Path:
        """Where `lab build` finds the default patches: the setting, else the repository's patches/."""
        return self.patches or Path(__file__).resolve().parent.parent / "patches"

    @property
    def src_dir(self) -> Path:
        return self.home / "src"

    @property
    def images_dir(self) -> Path:
        """kind mode's container images as saved archives, by component and version (lab.images)."""
        return self.home / "images"

    @property
    def engine_dir(self) -> Path:
        """The Docker engine `lab engine start` runs: sockets, data root, pid file (lab.engine)."""
        return self.home / "engine"

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
            raise LabError(f"LAB_CONFIG points at {path}, which is not a file", exit_code=2)
        return path
    for path in (Path.cwd() / CONFIG_FILE, Path(env.get("LAB_HOME") or default_home()) / CONFIG_FILE):
        if path.is_file():
            return path
    return None


def _read_yaml(path: Path) -> dict[str, Any]:
    # A bad lab.yaml is bad input like a bad flag: exit 2, one line, whatever is wrong with the file.
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise LabError(f"{path}: not valid YAML: {str(e).splitlines()[0]}", exit_code=2) from None
    except RecursionError:  # PyYAML recurses once per level: "[[[[..." a few thousand deep
        raise LabError(f"{path}: not valid YAML: nested too deeply", exit_code=2) from None
    except UnicodeDecodeError as e:
        raise LabError(f"{path}: not UTF-8 text (byte {e.start})", exit_code=2) from None
    except OSError as e:
        raise LabError(f"{path}: cannot read it: {e.strerror or e}", exit_code=2) from None
    if not isinstance(data, dict):
        raise LabError(f"{path}: must be a mapping of settings", exit_code=2)
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
        # repr() for a key that is not printable (a lab.yaml key may hold a newline): one line.
        field = ".".join(str(p) if str(p).isprintable() else repr(p) for p in err["loc"])
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
            if not isinstance(node, dict):  # LAB_PORTS=x beside LAB_PORTS__MGMT_ETCD=y
                break
        if not isinstance(node, dict) or isinstance(node.get(path[-1]), dict):
            raise LabError(
                f"{name} and another LAB_{path[0].upper()}* variable set the same setting: keep one",
                exit_code=2,
            )
        node[path[-1]] = value
    return out
