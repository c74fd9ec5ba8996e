from __future__ import annotations

import stat
from pathlib import Path

import pytest

from lab import naming
from lab.backing import open_backing, store
from lab.backing.local import LocalBacking
from lab.backing.store import check_name
from lab.config import Settings
from lab.errors import LabError, UsageError


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home")


def test_entries_round_trip_and_are_private(settings: Settings) -> None:
    e = store.Entry("h1", "process", 50, {"host": "198.18.0.2", "port": 22})
    store.save(settings, e)
    assert store.load(settings, "h1") == e
    assert store.entries(settings) == [e]
    path = store.backing_dir(settings, "h1") / store.SPEC_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_the_etcd_ca_is_made_once_per_backing(settings: Settings) -> None:
    a, b = store.etcd_ca(settings, "h1"), store.etcd_ca(settings, "h1")
    assert a.cert_pem == b.cert_pem
    assert store.etcd_ca(settings, "h2").cert_pem != a.cert_pem


def test_delete_forgets_everything_and_tolerates_absence(settings: Settings) -> None:
    store.save(settings, store.Entry("h1", "kind", 5))
    store.etcd_ca(settings, "h1")
    assert store.delete(settings, "h1") is True
    assert not store.backing_dir(settings, "h1").exists()
    assert store.delete(settings, "h1") is False


def test_local_is_built_in_and_cannot_be_registered(settings: Settings) -> None:
    assert isinstance(open_backing(settings, naming.LOCAL_BACKING), LocalBacking)
    with pytest.raises(LabError, match="built-in"):
        store.save(settings, store.Entry(naming.LOCAL_BACKING, "kind", 1))


def test_an_unknown_backing_names_the_known_ones(settings: Settings) -> None:
    store.save(settings, store.Entry("h1", "kind", 5))
    with pytest.raises(LabError, match=r"no backing named 'nope' \(known: local, mux, h1\)"):
        open_backing(settings, "nope")


def test_backing_names_are_dns_labels() -> None:
    assert check_name("backing-2") == "backing-2"
    for bad in ("Bad", "a_b", "-a", ""):
        with pytest.raises(UsageError):
            check_name(bad)
