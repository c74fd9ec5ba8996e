"""`lab doctor --mode kind` against the session's real Docker engine: reachable, its version, the
cgroup version, the capability this host lacks and the wrapper that answers for it."""

from __future__ import annotations

import json
from pathlib import Path

from support.docker import Engine

CAP_NAMES_BY_BIT = {24: "CAP_SYS_RESOURCE", 21: "CAP_SYS_ADMIN"}


def _host_lacks() -> list[str]:
    line = next(ln for ln in Path("/proc/self/status").read_text().splitlines() if ln.startswith("CapBnd:"))
    bnd = int(line.split()[1], 16)
    return [name for bit, name in sorted(CAP_NAMES_BY_BIT.items()) if not bnd >> bit & 1]


def test_doctor_reports_the_engine_it_finds(run_lab, docker_engine: Engine) -> None:
    r = run_lab("doctor", "--mode", "kind", "-o", "json", env=docker_engine.env())
    eng = json.loads(r.stdout)["engine"]
    info = docker_engine.client.info()
    assert eng["host"] == docker_engine.host and eng["reachable"] is True
    assert eng["version"] == info.version and eng["version"].startswith("20.10")
    assert eng["api_version"] == "1.41"
    assert eng["cgroup_version"] == ("2" if Path("/sys/fs/cgroup/cgroup.controllers").exists() else "1")
    lacks = _host_lacks()
    assert [c for c in eng["missing_capabilities"] if c in CAP_NAMES_BY_BIT.values()] == lacks
    # lab's engine runs through the wrapper exactly when the host needs it: no problem either way
    assert eng["problems"] == [] and eng["ok"] is True
    wrapper = [w for w in eng["workarounds"] if w.startswith("runc wrapper")]
    assert bool(wrapper) == bool(eng["missing_capabilities"])
    table = run_lab("doctor", "--mode", "kind", env=docker_engine.env())
    lines = [ln for ln in table.stdout.splitlines() if ln.startswith("engine:")]
    assert lines == [
        f"engine: {docker_engine.host}: docker {info.version} (API 1.41), cgroup v{eng['cgroup_version']}, "
        f"default runtime {info.default_runtime}"
    ], table.stdout
