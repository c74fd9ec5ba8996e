"""Session fixtures that start real processes for the integration tests.

Binaries come from the shared build cache under the default lab home (built once, ~2 min cold,
reused after); every piece of data, certificate and state lives in pytest's tmp dirs.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from support.apiserver import RunningApiserver, running_apiserver
from support.docker import Engine, running_engine
from support.etcd import RunningEtcd, scratch
from support.kind import build_kind

from lab import build, images
from lab.config import Settings, default_home


@pytest.fixture(scope="session")
def etcd_binaries() -> dict[str, Path]:
    """etcd and etcdctl at the pinned version, built into the shared cache if missing."""
    return build.ensure(Settings(home=default_home()), ["etcd", "etcdctl"], log=print)


@pytest.fixture(scope="session")
def tenant_etcd(
    tmp_path_factory: pytest.TempPathFactory, etcd_binaries: dict[str, Path]
) -> Iterator[RunningEtcd]:
    """The lab's multi-tenant etcd, started with lab's own argv and bootstrapped (root, auth on)."""
    home = tmp_path_factory.mktemp("etcd-home")
    with scratch(home, etcd_binaries["etcd"], etcd_binaries["etcdctl"]) as running:
        yield running


@pytest.fixture(scope="session")
def apiserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApiserver]:
    """A real kube-apiserver on its own etcd, for the whole session."""
    bins = build.ensure(Settings(home=default_home()), ["etcd", "kube-apiserver"], log=print)
    with running_apiserver(
        tmp_path_factory.mktemp("apiserver"), bins["etcd"], bins["kube-apiserver"]
    ) as running:
        yield running


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[Engine]:
    """lab's own dockerd (Debian's docker.io, installed when missing) for the whole session, cut off
    from the uplink; the host's network setup restored afterwards (support/docker.py)."""
    with running_engine() as eng:
        print(f"engine {eng.host} started in {eng.start_seconds:.1f}s")
        yield eng


@pytest.fixture(scope="session")
def base_image(docker_engine: Engine) -> str:
    """lab's minimal Debian image in the session engine, from the shared cache's archive (made by
    debootstrap the first time: minutes)."""
    return images.ensure_base(Settings(home=default_home()), docker_engine.client, print)


@pytest.fixture(scope="session")
def kind(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The kind CLI at the pinned version, built from the Go module proxy (no release download)."""
    return build_kind(tmp_path_factory.mktemp("kindbin"))
