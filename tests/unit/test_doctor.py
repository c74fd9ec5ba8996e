"""Doctor runs the real tools found on PATH; fake tools are real executables in a tmp PATH."""

from __future__ import annotations

import dataclasses
import json
import re
import socket
import stat
from dataclasses import replace
from pathlib import Path

from support.host_limits import ROOMY

from lab import config, doctor, engine, preflight
from lab.preflight import Demand, MiB


def _tool(bindir: Path, name: str, output: str) -> None:
    path = bindir / name
    path.write_text(f"#!/bin/sh\necho '{output}'\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def test_json_lists_every_tool_and_limit(run_lab) -> None:
    r = run_lab("doctor", "--output", "json")
    data = json.loads(r.stdout)
    names = {t["name"] for t in data["tools"]}
    assert {"go", "kubectl", "etcd", "etcdctl", "kind", "docker", "clusterctl", "ansible-playbook"} <= names
    limits = {limit["name"] for limit in data["limits"]}
    assert {"fs.inotify.max_user_watches", "fs.inotify.max_user_instances"} <= limits
    assert any(n.startswith("open files") for n in limits)
    assert r.returncode == (0 if data["ok"] else 1)


def test_old_go_fails_local_mode(run_lab, tmp_path: Path) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    _tool(bindir, "go", "go version go1.20.1 linux/amd64")
    _tool(bindir, "kubectl", "Client Version: v1.35.0")
    r = run_lab("doctor", "-o", "json", env={"PATH": f"{bindir}:/usr/bin:/bin"})
    data = json.loads(r.stdout)
    go = next(t for t in data["tools"] if t["name"] == "go")
    assert go["version"] == "1.20.1" and go["status"] == "unusable" and "too old" in go["note"]
    assert r.returncode == 1 and data["ok"] is False


def test_kind_mode_needs_kind_and_a_docker_engine(run_lab, tmp_path: Path) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    _tool(bindir, "kubectl", "Client Version: v1.35.0")
    (bindir / "docker").write_text(
        "#!/bin/sh\n[ \"$1\" = info ] && exit 1\necho 'Docker version 28.2.2, build x'\n"
    )
    (bindir / "docker").chmod(0o755)
    r = run_lab("doctor", "--mode", "kind", "-o", "json", env={"PATH": f"{bindir}:/usr/bin:/bin"})
    tools = {t["name"]: t for t in json.loads(r.stdout)["tools"]}
    assert tools["docker"]["status"] == "unusable" and tools["docker"]["required"]
    assert tools["kind"]["status"] == "missing"
    assert tools["clusterctl"]["status"] == "missing"
    assert r.returncode == 1


def test_table_output_says_what_is_missing(run_lab, tmp_path: Path) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    r = run_lab("doctor", env={"PATH": f"{bindir}:/usr/bin:/bin"})  # go lives in /usr/local/go/bin
    assert re.search(r"^missing for mode local: go\b", r.stdout, re.M), r.stdout
    assert r.returncode == 1


def test_bad_mode_is_a_usage_error(run_lab) -> None:
    r = run_lab("doctor", "--mode", "vm")
    assert r.returncode == 2


def test_local_mode_limits_are_the_preflight_checks_for_full_local_and_mux_backings(run_lab, lab_env) -> None:
    # lab-mux's saved registrations (of a stack that is down) count as used: `lab up` serves them again
    state = Path(lab_env["LAB_HOME"]) / "mux" / "clusters.json"
    state.parent.mkdir(parents=True)
    state.write_text(json.dumps([{"name": f"test-{i}", "index": i, "port": 20000 + i} for i in (1, 2)]))
    env = {"LAB_LOCAL_CAPACITY": "7", "LAB_MUX_CAPACITY": "5"}
    data = json.loads(run_lab("doctor", "-o", "json", env=env).stdout)
    limits = {limit["name"]: limit for limit in data["limits"]}
    assert "available memory (MemAvailable)" in limits and "fs.file-max" in limits
    assert limits["open files of lab-mux (RLIMIT_NOFILE)"]["recommended"] == f">= {3 * preflight.MUX_FILES}"
    instances = limits["fs.inotify.max_user_instances"]
    with open("/proc/sys/fs/inotify/max_user_instances") as fh:
        assert instances["value"].split()[0] == fh.read().strip()
    for backing, left in (("local", 7), ("mux", 3)):
        room = data["room"][backing]
        assert 0 <= room["clusters"] <= left
        assert (room["limit"] == f"{backing}_capacity") == (room["clusters"] == left)
    text = run_lab("doctor", env=env).stdout
    assert re.search(r"^room for \d+ more mux cluster\(s\) \(then: ", text, re.M), text


def test_rooms_says_per_backing_how_many_more_fit_and_what_stops_the_next() -> None:
    full = Demand(local_clusters=100, mux_clusters=1000)
    assert doctor.rooms(ROOMY, full) == {"local": (100, "local_capacity"), "mux": (1000, "mux_capacity")}
    # Debian's 128 inotify instances stop local clusters; mux clusters need none
    debian = replace(ROOMY, inotify_instances_limit=128)
    rooms = doctor.rooms(debian, full)
    assert rooms["local"] == (
        (128 - 30) // preflight.WORKLOAD.inotify_instances,
        "fs.inotify.max_user_instances",
    )
    assert rooms["mux"] == (1000, "mux_capacity")
    # lab-mux's open files (the stack's RLIMIT_NOFILE) stop mux clusters first on a 1024 limit
    small = replace(ROOMY, process_files_limit=1024, mux_files_used=24)
    assert doctor.rooms(small, full)["mux"] == (100, "open files of lab-mux (RLIMIT_NOFILE)")
    # memory: each backing alone, so both may count on the same MemAvailable
    tight = replace(ROOMY, memory_available=2000 * MiB)
    assert doctor.rooms(tight, full) == {
        "local": (preflight.room(tight, 100)[0], "available memory (MemAvailable)"),
        "mux": (preflight.room(tight, 1000, mux=True)[0], "available memory (MemAvailable)"),
    }


def test_limit_rows_are_each_backing_full_alone_not_both_at_once() -> None:
    full = Demand(local_clusters=100, mux_clusters=1000, stack=True)
    local, mux = replace(full, mux_clusters=0), replace(full, local_clusters=0)
    memory = "available memory (MemAvailable)"
    need = {d: {c.name: c.needed for c in preflight.checks(ROOMY, d)} for d in (local, mux, full)}
    # a host with memory for either backing full, not for both: the row is ok and asks for the larger
    fits_either = replace(ROOMY, memory_available=max(need[local][memory], need[mux][memory]) * MiB)
    assert not {c.name: c for c in preflight.checks(fits_either, full)}[memory].ok
    rows = {r.name: r for r in doctor.full_limits(fits_either, full)}
    assert rows[memory].ok
    assert rows[memory].recommended == f">= {max(need[local][memory], need[mux][memory])} MiB"
    # lab-mux's own rows are the full mux backing's, not the local one's zero
    files = "open files of lab-mux (RLIMIT_NOFILE)"
    assert rows[files].recommended == f">= {need[mux][files]}" and need[mux][files] > need[local][files]


def test_kind_mode_with_no_engine_behind_the_socket_is_one_clear_line(
    run_lab, lab_env, tmp_path: Path
) -> None:
    # a socket file nobody listens on: what a crashed dockerd leaves behind
    path = tmp_path / "docker.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    try:
        r = run_lab("doctor", "--mode", "kind", env={"DOCKER_HOST": f"unix://{path}"})
        j = run_lab("doctor", "--mode", "kind", "-o", "json", env={"DOCKER_HOST": f"unix://{path}"})
    finally:
        sock.close()
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("engine:")]
    home = json.loads(j.stdout)["engine"]
    assert lines == [
        f"engine: no Docker engine answers at unix://{path} (connection refused); start one with "
        f"`lab engine start` (then export DOCKER_HOST=unix://{lab_env['LAB_HOME']}/engine/docker.sock)"
    ], r.stdout
    assert r.returncode == 1
    assert home["reachable"] is False and home["ok"] is False and home["version"] is None
    assert home["cgroup_version"] == ("1" if not Path("/sys/fs/cgroup/cgroup.controllers").exists() else "2")


def test_an_engine_without_the_wrapper_on_a_host_lacking_a_capability_says_which_flags(lab_env) -> None:
    settings = config.load()
    info = engine.EngineInfo(
        host="unix:///run/docker.sock",
        version="20.10.24",
        api_version="1.41",
        cgroup_version="1",
        cgroup_driver="cgroupfs",
        default_runtime="runc",
        runtimes=("runc",),
        storage_driver="overlay2",
        docker_root="/var/lib/docker",
    )
    problems, workarounds = doctor.engine_findings(settings, info, "", ["CAP_SYS_RESOURCE"], "1")
    launcher = settings.home / "engine" / "runc-lab"
    assert len(problems) == 1
    assert "lacks CAP_SYS_RESOURCE" in problems[0]
    assert f"--add-runtime lab-runc={launcher} --default-runtime lab-runc" in problems[0]
    assert workarounds == [
        "cgroup v1: kind nodes' kubelet gets failCgroupV1: false (Kubernetes >= 1.35 refuses v1 otherwise)"
    ]
    wrapped = dataclasses.replace(info, default_runtime="lab-runc")
    assert doctor.engine_findings(settings, wrapped, "", ["CAP_SYS_RESOURCE"], "2") == (
        [],
        ["runc wrapper lab-runc drops CAP_SYS_RESOURCE from every container"],
    )
    # a host with every capability and cgroup v2: nothing to say
    assert doctor.engine_findings(settings, info, "", [], "2") == ([], [])
