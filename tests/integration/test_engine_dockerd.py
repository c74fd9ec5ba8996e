"""lab.engine against the real thing: Debian's dockerd started by lab in a tmp directory, privileged
containers through the runc wrapper on a host that lacks CAP_SYS_RESOURCE, no way out through the
uplink, and nothing left on the host after a stop."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from support.docker import Engine, HostNet, exec_in, run_container

from lab import engine
from lab.engine import caps, daemon

CAP_SYS_ADMIN, CAP_SYS_RESOURCE = 21, 24


def _bounding_set() -> int:
    line = next(ln for ln in Path("/proc/self/status").read_text().splitlines() if ln.startswith("CapBnd:"))
    return int(line.split()[1], 16)


def test_every_path_of_the_engine_is_in_its_directory(docker_engine: Engine) -> None:
    info = docker_engine.client.info()
    root = docker_engine.layout.root
    assert info.docker_root == str(root / "data")
    assert docker_engine.host == f"unix://{root}/docker.sock"
    assert int((root / "dockerd.pid").read_text()) == docker_engine.pid
    assert (root / "exec" / "containerd" / "containerd.sock").is_socket()
    assert info.version.startswith("20.10"), info  # Debian 12's docker.io, API 1.41
    # the wrapper only where this host needs it
    assert (info.default_runtime == daemon.RUNTIME_NAME) == bool(caps.missing_capabilities())


def test_a_privileged_container_gets_every_capability_the_host_can_grant(
    docker_engine: Engine, base_image: str
) -> None:
    ran = run_container(
        docker_engine.client, base_image, ["grep", "CapEff", "/proc/self/status"], privileged=True
    )
    assert ran.exit_code == 0, ran
    eff = int(ran.stdout.split()[1], 16)
    host = _bounding_set()
    assert eff & ~host == 0, f"{eff:x} holds capabilities outside the host's bounding set {host:x}"
    assert eff >> CAP_SYS_ADMIN & 1
    if not host >> CAP_SYS_RESOURCE & 1:  # this host: the wrapper dropped it, and only it
        assert not eff >> CAP_SYS_RESOURCE & 1


def test_a_privileged_exec_runs_and_reports_its_exit_code(docker_engine: Engine, base_image: str) -> None:
    # `docker exec --privileged` hands runc a process file (--process), not the bundle's config.json
    client = docker_engine.client
    cid = client.json(
        "POST",
        "/containers/create",
        body={"Image": base_image, "Cmd": ["sleep", "300"], "HostConfig": {"Privileged": True}},
    )["Id"]
    try:
        client.json("POST", f"/containers/{cid}/start")
        assert exec_in(client, cid, ["sh", "-c", "exit 3"], privileged=True) == 3
        assert exec_in(client, cid, ["true"], privileged=True) == 0
    finally:
        client.json("DELETE", f"/containers/{cid}", {"force": "1"})


def test_containers_cannot_reach_the_uplink(docker_engine: Engine, base_image: str) -> None:
    route = subprocess.run(
        ["ip", "-4", "route", "show", "default"], capture_output=True, text=True, check=True
    )
    gateway = re.search(r"via (\S+)", route.stdout)
    assert gateway, f"no default route to test against: {route.stdout!r}"
    probe = f"timeout 5 bash -c 'echo > /dev/tcp/{gateway[1]}/80'"
    ran = run_container(docker_engine.client, base_image, ["sh", "-c", probe])
    assert ran.exit_code != 0, "a container reached the uplink's gateway"
    rules = subprocess.run(
        ["iptables", "-L", "DOCKER-USER", "-v", "-x", "-n"], capture_output=True, text=True, check=True
    ).stdout
    ours = [ln for ln in rules.splitlines() if "lab-test-engine-uplink" in ln and docker_engine.block in ln]
    assert ours, rules
    assert sum(int(ln.split()[0]) for ln in ours) > 0, f"the uplink rule dropped nothing:\n{rules}"


def test_a_second_engine_in_the_same_network_namespace_is_refused(
    docker_engine: Engine, tmp_path: Path
) -> None:
    # dockerd flushes the shared DOCKER-ISOLATION chains at start: it would break the first engine
    before = HostNet.read()
    with pytest.raises(
        engine.EngineError,
        match=rf"another dockerd \(pid {docker_engine.pid}\) runs in this network namespace",
    ):
        engine.start(tmp_path / "e2")
    assert not (tmp_path / "e2").exists()
    assert HostNet.read().rules("filter") == before.rules("filter")


def test_no_engine_is_one_clear_error(tmp_path: Path) -> None:
    try:
        engine.probe(f"unix://{tmp_path}/none.sock")
    except engine.EngineError as e:
        assert (
            str(e) == f"no Docker engine at unix://{tmp_path}/none.sock: {tmp_path}/none.sock does not exist"
        )
    else:
        raise AssertionError("probe found an engine at a path with nothing behind it")
