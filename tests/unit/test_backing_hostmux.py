"""The `mux` runtime of a registered host (lab.backing.hostmux) without a host: the registry entry
and the factory, lab-mux's command line on a host, the files the controller sends it, and what the
host reports with lab-mux not running. The real thing over ssh: tests/e2e/test_two_hosts.py."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import typer

from lab.backing import host, hostmux, mux, open_backing, store
from lab.backing.process import Spec
from lab.cli.backing import _runtime
from lab.config import Settings
from lab.errors import UsageError


def test_a_mux_host_entry_opens_as_the_host_mux_backing(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    spec = Spec(host="10.0.0.5", address="192.168.1.5")
    store.save(settings, store.Entry("h1-mux", "mux", 1000, spec.as_dict()))
    b = open_backing(settings, "h1-mux")
    assert isinstance(b, hostmux.HostMuxBacking) and b.capacity == 1000
    # the address the management cluster reaches, at the port the host's process backing would use
    assert b.endpoint("test-12", 12) == ("192.168.1.5", 20012)


def test_lab_mux_on_a_host_binds_its_address_and_keeps_its_control_api_on_loopback(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    argv = mux.program(settings, "192.168.1.5").argv
    assert "--host=192.168.1.5" in argv and "--external-host" in argv
    assert f"--control-address=127.0.0.1:{settings.ports.mux_control}" in argv
    assert f"--token-file={tmp_path / 'mux' / 'token'}" in argv
    # this machine's own mux backing: loopback only, no external host
    local = mux.program(settings).argv
    assert "--host=127.2.0.1" in local and "--external-host" not in local


def test_the_controller_sends_each_cluster_ca_under_mux_clusters(tmp_path: Path) -> None:
    """Apart from clusters/ (the process backing's, whose present() counts every directory there)."""
    src = tmp_path / "pki"
    src.mkdir()
    for name in ("ca.crt", "ca.key"):
        (src / name).write_bytes(name.encode())
        (src / name).chmod(0o600)
    settings = Settings(home=tmp_path / "home")
    files = [(src / f, f"mux/clusters/test-7/pki/{f}") for f in ("ca.crt", "ca.key")]
    host.unpack(settings, io.BytesIO(host.tar_files(files)))
    key = host.mux_pki_dir(settings, "test-7") / "ca.key"
    assert key.read_bytes() == b"ca.key" and key.stat().st_mode & 0o777 == 0o600
    assert not (settings.home / "clusters").exists()


def test_mux_list_without_lab_mux_reports_the_state_file_and_files(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    assert host.mux_list(settings) == {"served": None, "state": [], "files": [], "started": None}
    (tmp_path / "mux").mkdir()
    mux.state_path(settings).write_text(json.dumps([{"name": "test-3", "port": 20003}]))
    host.mux_pki_dir(settings, "test-4").mkdir(parents=True)
    listed = host.mux_list(settings)
    assert listed == {"served": None, "state": ["test-3"], "files": ["test-4"], "started": None}
    # a cluster lab-mux would serve again cannot be unregistered while it does not answer
    with pytest.raises(Exception, match="not answering"):
        host.mux_remove(settings, ["test-3"])
    # files alone go
    host.mux_remove(settings, ["test-4"])
    assert host.mux_list(settings)["files"] == []


def test_mux_ensure_refuses_a_cluster_whose_ca_was_not_sent(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="no CA for test-9"):
        host.mux_ensure(Settings(home=tmp_path), "192.168.1.5", [("test-9", 20009)])


def test_runtime_mux_goes_with_a_host_only() -> None:
    assert _runtime(None, "10.0.0.5", "mux") == "mux"
    assert _runtime(None, "10.0.0.5", None) == "process"
    with pytest.raises(UsageError, match="does not go with --kubeconfig"):
        _runtime(Path("k"), None, "mux")
    with pytest.raises((UsageError, typer.Exit), match="kind, process or mux"):
        _runtime(None, "h", "vm")
