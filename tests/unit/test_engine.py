"""lab.engine's pure parts: the runc wrapper's reading of runc's command line and its edit of an OCI
spec, the capability table, dockerd's command line and the choice of addresses."""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lab.engine import caps, daemon, runc_wrapper

ALL_CAPS = ["CAP_CHOWN", "CAP_SYS_ADMIN", "CAP_SYS_RESOURCE", "CAP_NET_ADMIN"]


@pytest.mark.parametrize(
    ("argv", "want"),
    [
        # what containerd's go-runc passes
        (
            [
                "--root",
                "/run/r",
                "--log",
                "/l.json",
                "--log-format",
                "json",
                "create",
                "--bundle",
                "/b",
                "--pid-file",
                "/p",
                "id",
            ],
            ("/b/config.json", False),
        ),
        (["--root=/run/r", "create", "-b", "/b", "id"], ("/b/config.json", False)),
        (["run", "--bundle=/b", "id"], ("/b/config.json", False)),
        (["--systemd-cgroup", "exec", "--process", "/tmp/p.json", "--detach", "id"], ("/tmp/p.json", True)),
        (["exec", "-p", "/tmp/p.json", "id"], ("/tmp/p.json", True)),
        (["create", "id"], ("/cwd/config.json", False)),  # no --bundle: the working directory
        (["--root", "/run/r", "state", "id"], None),
        (["--root", "/run/r", "delete", "--force", "id"], None),
        (["exec", "id", "true"], None),  # no process file: runc builds the process itself
        ([], None),
    ],
)
def test_the_wrapper_finds_the_spec_a_runc_call_reads(argv: list[str], want: tuple[str, bool] | None) -> None:
    assert runc_wrapper.spec_file(argv, "/cwd") == want


def test_the_wrapper_drops_only_the_named_capabilities_from_every_list(tmp_path: Path) -> None:
    spec = {
        "ociVersion": "1.0.2",
        "process": {
            "args": ["/sbin/init"],
            "capabilities": {
                k: list(ALL_CAPS) for k in ("bounding", "effective", "permitted", "inheritable")
            },
        },
        "root": {"path": "rootfs"},
    }
    path = tmp_path / "config.json"
    path.write_text(json.dumps(spec))
    runc_wrapper.rewrite(str(path), False, {"CAP_SYS_RESOURCE"})
    got = json.loads(path.read_text())
    want = [c for c in ALL_CAPS if c != "CAP_SYS_RESOURCE"]
    assert got["process"]["capabilities"] == {k: want for k in spec["process"]["capabilities"]}
    assert {k: v for k, v in got.items() if k != "process"} == {
        k: v for k, v in spec.items() if k != "process"
    }
    process = {"args": ["true"], "capabilities": {"effective": list(ALL_CAPS), "bounding": ["CAP_CHOWN"]}}
    pfile = tmp_path / "process.json"
    pfile.write_text(json.dumps(process))
    runc_wrapper.rewrite(str(pfile), True, {"CAP_SYS_RESOURCE"})
    assert json.loads(pfile.read_text())["capabilities"] == {"effective": want, "bounding": ["CAP_CHOWN"]}


def test_the_wrapper_runs_the_real_runc_with_the_same_arguments(tmp_path: Path) -> None:
    # a fake "real runc" that prints its argv and the capabilities it was handed
    bundle = tmp_path / "b"
    bundle.mkdir()
    (bundle / "config.json").write_text(json.dumps({"process": {"capabilities": {"bounding": ALL_CAPS}}}))
    fake = tmp_path / "runc"
    fake.write_text(f'#!/bin/sh\necho "$@"\ncat {bundle}/config.json\n')
    fake.chmod(0o755)
    launcher = tmp_path / "runc-lab"
    launcher.write_text(daemon.launcher_script(str(fake), ["CAP_SYS_RESOURCE"], sys.executable))
    launcher.chmod(0o755)
    out = subprocess.run(
        [str(launcher), "--root", "/x", "create", "--bundle", str(bundle), "c1"],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": os.environ["PATH"]},
    ).stdout.splitlines()
    assert out[0] == f"--root /x create --bundle {bundle} c1"
    assert "CAP_SYS_RESOURCE" not in out[1] and "CAP_SYS_ADMIN" in out[1]


def test_missing_capabilities_are_the_clear_bits_up_to_the_last_the_kernel_knows() -> None:
    assert caps.missing_from(0x1FFFEFFFFFF, 40) == ["CAP_SYS_RESOURCE"]  # this project's CI hosts
    assert caps.missing_from(0x1FFFFFFFFFF, 40) == []
    assert caps.missing_from(0x3FFFFFFFFF, 40) == ["CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE"]
    assert (
        caps.NAMES[24] == "CAP_SYS_RESOURCE" and caps.NAMES[21] == "CAP_SYS_ADMIN" and len(caps.NAMES) == 41
    )


def test_dockerd_keeps_every_path_in_the_engine_directory_and_adds_the_wrapper_only_when_needed() -> None:
    layout = daemon.Layout(Path("/e"))
    net = daemon.Network("lab12345678", ipaddress.IPv4Network("198.19.16.0/20"))
    argv = daemon.dockerd_argv(layout, net, [], "/usr/sbin/dockerd")
    opts = dict(zip(argv[1::2], argv[2::2], strict=True))
    assert opts == {
        "--config-file": "/e/daemon.json",
        "--data-root": "/e/data",
        "--exec-root": "/e/exec",
        "--pidfile": "/e/dockerd.pid",
        "--host": "unix:///e/docker.sock",
        "--bridge": "lab12345678",
        "--default-address-pool": "base=198.19.24.0/21,size=24",
    }
    assert net.bridge_cidr == "198.19.16.1/24"
    wrapped = daemon.dockerd_argv(layout, net, ["CAP_SYS_RESOURCE"])
    assert wrapped[-4:] == ["--add-runtime", "lab-runc=/e/runc-lab", "--default-runtime", "lab-runc"]
    assert len(layout.bridge) <= 15  # IFNAMSIZ


def test_an_engine_takes_a_block_nothing_on_the_host_uses() -> None:
    used = [
        ipaddress.IPv4Network("198.19.0.0/24"),
        ipaddress.IPv4Network("198.19.17.0/24"),
        ipaddress.IPv4Network("0.0.0.0/0"),
    ]
    assert daemon.free_block(used) == ipaddress.IPv4Network("198.19.32.0/20")
    with pytest.raises(daemon.EngineError, match="no free /20"):
        daemon.free_block([ipaddress.IPv4Network("198.19.0.0/16")])
