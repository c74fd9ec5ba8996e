"""On the real local stack: the host-limit preflight refuses a create that does not fit (and
--raise-limits makes it fit), and the lab home lock keeps a second mutating command out while a
create runs, lets read-only ones through, and frees itself when the holder is killed with -9.
Indexes 9401.. keep clear of the other e2e modules (a local cluster's loopback address is its index's).

The inotify tests lower fs.inotify.max_user_instances for the few seconds a refusal takes and restore
it in a finally: they need root, as the sysctl does, and run alone (marked serial: scripts/test runs
them after the parallel part), since the limit is the whole machine's.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.stack import Stack, stack_env

from lab import naming, preflight
from lab.runtime import lock

INSTANCES = Path("/proc/sys/fs/inotify/max_user_instances")
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="lowering a sysctl needs root")
#: lowering the host-wide limit would starve a stack that another pytest worker runs meanwhile
host_wide = pytest.mark.serial


def _tree(home: Path) -> set[str]:
    return {str(p.relative_to(home)) for p in home.rglob("*")}


def _namespaces(stack: Stack) -> set[str]:
    items = stack.kubectl_json("get", "namespaces", "-l", naming.CLUSTER_LABEL)["items"]
    return {ns["metadata"]["name"] for ns in items}


@pytest.fixture
def instances_limit() -> Iterator[int]:
    """The original limit; whatever the test sets is put back."""
    original = INSTANCES.read_text()
    try:
        yield int(original)
    finally:
        INSTANCES.write_text(original)


@needs_root
@host_wide
def test_create_refuses_when_inotify_instances_run_short(stack: Stack, instances_limit: int) -> None:
    count = 40  # needs 3 instances each; the limit leaves room for 1 each (and for other users meanwhile)
    before, namespaces = _tree(stack.home), _namespaces(stack)
    used = preflight.inotify_usage(os.getuid()).instances
    limit = used + count
    INSTANCES.write_text(f"{limit}\n")
    try:
        r = stack.lab("create-clusters", str(count), "--start", "9401", "--no-wait", check=False, timeout=120)
    finally:
        INSTANCES.write_text(f"{instances_limit}\n")
    assert r.returncode == 1, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith(f"error: fs.inotify.max_user_instances is {limit}; this run needs ")
    assert f" for {count} local cluster(s)): sysctl -w" in lines[0]
    assert "sysctl -w fs.inotify.max_user_instances=" in lines[0]
    assert "Traceback" not in r.stderr
    assert _tree(stack.home) == before, "a refused create left files in the lab home"
    assert _namespaces(stack) == namespaces, "a refused create made namespaces"


@needs_root
@host_wide
def test_up_refuses_on_a_fresh_home_and_creates_nothing(tmp_path: Path, instances_limit: int) -> None:
    home = tmp_path / "fresh" / "home"
    used = preflight.inotify_usage(os.getuid()).instances
    limit = used + preflight.STACK.inotify_instances // 2
    INSTANCES.write_text(f"{limit}\n")
    try:
        r = subprocess.run(
            [sys.executable, "-m", "lab", "up"],
            env=stack_env(home),
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        INSTANCES.write_text(f"{instances_limit}\n")
    assert r.returncode == 1, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: fs.inotify.max_user_instances is {limit}; "), (
        r.stderr
    )
    assert "for the stack)" in lines[0]
    assert not (tmp_path / "fresh").exists(), "a refused lab up left a lab home behind"


@needs_root
@host_wide
def test_raise_limits_raises_what_the_run_needs(stack: Stack, instances_limit: int) -> None:
    used = preflight.inotify_usage(os.getuid()).instances
    INSTANCES.write_text(f"{used + 1}\n")
    try:
        r = stack.lab("create-clusters", "1", "--start", "9401", "--no-wait", "--raise-limits", check=False)
        raised = int(INSTANCES.read_text())
    finally:
        INSTANCES.write_text(f"{instances_limit}\n")
    try:
        assert r.returncode == 0, r.stderr
        assert f"raised fs.inotify.max_user_instances from {used + 1} to {raised}" in r.stderr
        assert raised >= used + preflight.WORKLOAD.inotify_instances
    finally:
        stack.lab("delete-clusters", "--start", "9401", "--count", "1", "--timeout", "600", timeout=700)


def _wait_for_holder(stack: Stack, pid: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if json.loads((stack.home / lock.LOCK_FILE).read_text())["pid"] == pid:
                return
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.1)
    raise AssertionError(f"lab (pid {pid}) never took the lock")


def test_one_mutating_command_at_a_time(stack: Stack, tmp_path: Path) -> None:
    err = (tmp_path / "create.err").open("w")
    create = subprocess.Popen(
        [sys.executable, "-m", "lab", "create-clusters", "3", "--start", "9411", "--timeout", "600"],
        env=stack.env,
        stdout=subprocess.DEVNULL,
        stderr=err,
    )
    try:
        _wait_for_holder(stack, create.pid)
        for args in (("up",), ("delete-clusters", "--all"), ("tune", "--profile", "default")):
            r = stack.lab(*args, check=False, timeout=60)
            assert r.returncode == lock.BUSY_EXIT, (args, r.stderr, (tmp_path / "create.err").read_text())
            lines = r.stderr.strip().splitlines()
            assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
            assert f"pid {create.pid} runs `lab create-clusters 3 --start 9411" in lines[0], lines[0]
        # read-only commands go on while the create changes the stack
        status = stack.lab("status", "-o", "json")
        assert json.loads(status.stdout)["lock"]["pid"] == create.pid
        assert stack.lab("kubeconfig").stdout.startswith("apiVersion")
        stack.lab("report")
        running = create.poll() is None
        assert running, (
            f"the create ended before the checks were done: {(tmp_path / 'create.err').read_text()}"
        )
    finally:
        create.send_signal(signal.SIGKILL)
        create.wait(timeout=30)
        err.close()
    # the kernel released the lock with the killed create: the next command runs, and finishes the job
    delete = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lab",
            "delete-clusters",
            "--start",
            "9411",
            "--count",
            "3",
            "--timeout",
            "600",
        ],
        env=stack.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # status during the delete (at least once): never blocks, never a traceback
        while True:
            r = stack.lab("status", check=False, timeout=60)
            assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
            if delete.poll() is not None:
                break
            time.sleep(1)
        _out, err = delete.communicate(timeout=5)
        assert delete.returncode == 0, err
    finally:
        if delete.poll() is None:
            delete.kill()
            delete.wait()
    assert not {f"test-{i}" for i in (9411, 9412, 9413)} & _namespaces(stack)
