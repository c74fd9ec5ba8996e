"""The process backing's pure parts: ssh command lines, the remote command, ports, and the host's
refusal of anything but plain files under the paths the controller may write."""

from __future__ import annotations

import io
import shlex
import tarfile
from pathlib import Path

import pytest

from lab.backing import host, store
from lab.backing.process import ProcessBacking, Spec, check_port_range, remote_command, ssh_argv
from lab.config import Settings
from lab.errors import LabError, UsageError


def test_ssh_argv_pins_the_backing_known_hosts_and_never_prompts(tmp_path: Path) -> None:
    spec = Spec(host="198.18.0.2", ssh_port=2222, user="lab", identity="/k/id")
    argv = ssh_argv(spec, tmp_path / "known_hosts", "lab --version")
    opts = {argv[i + 1] for i, a in enumerate(argv) if a == "-o"}
    assert {
        "BatchMode=yes",
        f"UserKnownHostsFile={tmp_path / 'known_hosts'}",
        "StrictHostKeyChecking=yes",
    } <= opts
    assert "IdentitiesOnly=yes" in opts and argv[argv.index("-i") + 1] == "/k/id"
    assert argv[argv.index("-p") + 1] == "2222" and argv[argv.index("-l") + 1] == "lab"
    assert argv[-3:] == ["198.18.0.2", "--", "lab --version"]
    learn = ssh_argv(spec, tmp_path / "known_hosts", "x", accept_new=True)
    assert "StrictHostKeyChecking=accept-new" in learn


def test_remote_command_loads_the_env_file_and_passes_prefix_and_etcd_ports(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, prefix="scale")
    cmd = remote_command(Spec(host="h", etcd_port=3379), settings, ["host", "ensure", "a b"])
    assert cmd.startswith(
        'set -a && . "${LAB_ENV_FILE:-/etc/metal3-scale-lab/lab.env}" && set +a && exec env '
    )
    words = shlex.split(cmd.split("exec ", 1)[1])
    assert "LAB_PREFIX=scale" in words and "LAB_PORTS__TENANT_ETCD=3379" in words
    assert "LAB_PORTS__TENANT_ETCD_PEER=3380" in words
    assert words[-4:] == ["lab", "host", "ensure", "a b"]
    pinned = remote_command(Spec(host="h", env_file="/opt/my lab.env"), settings, ["--version"])
    assert ". '/opt/my lab.env' &&" in pinned


def test_spec_round_trips_through_the_registry_entry(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    spec = Spec(host="10.0.0.5", identity="/k", address="192.168.1.5")
    store.save(settings, store.Entry("h1", "process", 7, spec.as_dict()))
    entry = store.load(settings, "h1")
    assert entry is not None and Spec.of(entry) == spec
    b = ProcessBacking(settings, entry)
    assert b.endpoint("test-12", 12) == ("192.168.1.5", 20012)  # the address, not the ssh host
    assert b.etcd_servers() == ["https://127.0.0.1:2379"]


def test_ports_stay_below_the_ephemeral_range(tmp_path: Path) -> None:
    check_port_range(Spec(host="h"), 9999)
    with pytest.raises(UsageError, match="below the ephemeral range"):
        check_port_range(Spec(host="h", apiserver_base_port=30000), 9999)
    with pytest.raises(UsageError, match="overlap etcd"):
        check_port_range(Spec(host="h", apiserver_base_port=2000, etcd_port=2379), 1000)
    settings = Settings(home=tmp_path, max_index=65000)
    b = ProcessBacking(settings, store.Entry("h1", "process", 1, {"host": "h"}))
    with pytest.raises(LabError, match="not below the ephemeral range"):
        b.endpoint("test-40000", 40000)


def _tar(*members: tarfile.TarInfo, data: bytes = b"x") -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:") as tar:
        for m in members:
            if m.isfile():
                m.size = len(data)
                tar.addfile(m, io.BytesIO(data))
            else:
                tar.addfile(m)
    buf.seek(0)
    return buf


def _member(name: str, kind: bytes = tarfile.REGTYPE, mode: int = 0o600, link: str = "") -> tarfile.TarInfo:
    m = tarfile.TarInfo(name)
    m.type, m.mode, m.linkname = kind, mode, link
    return m


@pytest.mark.parametrize(
    "bad",
    [
        _member("pki/etcd/server.key"),  # not a path the controller writes
        _member("clusters/../pki/x"),
        _member("/etc/passwd"),
        _member("clusters/test-1/pki/ca.key", tarfile.SYMTYPE, link="/etc/shadow"),
        _member("src/dev", tarfile.CHRTYPE),
    ],
    ids=["outside", "dotdot", "absolute", "symlink", "device"],
)
def test_unpack_refuses_the_whole_tar_before_writing(tmp_path: Path, bad: tarfile.TarInfo) -> None:
    settings = Settings(home=tmp_path / "home")
    with pytest.raises(UsageError, match="refusing"):
        host.unpack(settings, _tar(_member("clusters/test-1/pki/ok.crt", mode=0o644), bad))
    assert not (tmp_path / "home").exists()


def test_unpack_writes_files_with_their_mode_minus_group_and_other_write(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    names = host.unpack(
        settings,
        _tar(
            _member("clusters/test-1/pki", tarfile.DIRTYPE, 0o700),
            _member("clusters/test-1/pki/ca.key", mode=0o600),
            _member("src/stubs/x.py", mode=0o666),
        ),
    )
    assert names == ["clusters/test-1/pki", "clusters/test-1/pki/ca.key", "src/stubs/x.py"]
    key = settings.home / "clusters/test-1/pki/ca.key"
    assert key.read_bytes() == b"x" and key.stat().st_mode & 0o777 == 0o600
    assert (settings.home / "src/stubs/x.py").stat().st_mode & 0o777 == 0o644


def test_tar_files_round_trips_through_unpack(tmp_path: Path) -> None:
    src = tmp_path / "pki"
    src.mkdir()
    (src / "ca.key").write_bytes(b"key")
    (src / "ca.key").chmod(0o600)
    settings = Settings(home=tmp_path / "home")
    host.unpack(settings, io.BytesIO(host.tar_files([(src, "clusters/test-3/pki")])))
    got = settings.home / "clusters/test-3/pki/ca.key"
    assert got.read_bytes() == b"key" and got.stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("spec", ["test-1", "test-1:", "test-1:0", "test-1:70000", "Bad:20001"])
def test_parse_cluster_rejects_bad_specs(spec: str) -> None:
    with pytest.raises((UsageError, ValueError, LabError)):
        host.parse_cluster(spec)
    assert host.parse_cluster("test-1:20001") == ("test-1", 20001)
