"""Doctor runs the real tools found on PATH; fake tools are real executables in a tmp PATH."""

from __future__ import annotations

import json
import re
import stat
from pathlib import Path


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


def test_local_mode_limits_are_the_preflight_checks_for_a_full_local_backing(run_lab) -> None:
    data = json.loads(run_lab("doctor", "-o", "json", env={"LAB_LOCAL_CAPACITY": "7"}).stdout)
    limits = {limit["name"]: limit for limit in data["limits"]}
    assert "available memory (MemAvailable)" in limits and "fs.file-max" in limits
    instances = limits["fs.inotify.max_user_instances"]
    with open("/proc/sys/fs/inotify/max_user_instances") as fh:
        assert instances["value"].split()[0] == fh.read().strip()
    room = data["room"]
    assert 0 <= room["clusters"] <= 7
    assert (room["limit"] is None) == (room["clusters"] == 7)
