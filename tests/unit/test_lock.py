"""The lab home's lock (lab.runtime.lock): one mutating command at a time, read-only ones never wait, a killed
holder never blocks the next command. The CLI tests run real `lab` processes."""

from __future__ import annotations

import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab import config
from lab.runtime import lock


@pytest.fixture
def settings(lab_env: dict[str, str]) -> config.Settings:
    return config.load()


def test_a_second_hold_is_refused_naming_the_holder(settings: config.Settings) -> None:
    # flock conflicts between two open files even inside one process, as between two processes
    fd, made = lock.acquire(settings, ["lab", "delete-clusters", "--all"])
    try:
        with pytest.raises(lock.Busy) as e:
            lock.acquire(settings, ["lab", "up"])
        assert e.value.exit_code == lock.BUSY_EXIT
        assert e.value.holder is not None and e.value.holder.pid == os.getpid()
        assert f"pid {os.getpid()} runs `lab delete-clusters --all`" in str(e.value)
        held = lock.holder(settings)
        assert held is not None and held.argv == ["lab", "delete-clusters", "--all"]
    finally:
        lock.release(settings, fd, made)
    assert lock.holder(settings) is None


def test_release_leaves_nothing_it_made(settings: config.Settings) -> None:
    assert not settings.home.exists()
    with lock.hold(settings):
        assert lock.lock_path(settings).is_file()
        assert lock.lock_path(settings).stat().st_mode & 0o777 == 0o600
    assert not settings.home.exists()


def test_release_keeps_what_the_command_created(settings: config.Settings) -> None:
    with lock.hold(settings):
        (settings.home / "pki").mkdir()
    assert (settings.home / "pki").is_dir() and not lock.lock_path(settings).exists()


def test_nested_hold_in_one_process_is_a_no_op(settings: config.Settings) -> None:
    with lock.hold(settings), lock.hold(settings):
        assert lock.holder(settings) is not None
    assert lock.holder(settings) is None


def test_a_dead_holders_record_is_taken_over(settings: config.Settings) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
    pid = int(dead.stdout)
    settings.home.mkdir(parents=True)
    lock.lock_path(settings).write_text(json.dumps({"pid": pid, "argv": ["lab", "up"], "since": 0}))
    assert lock.holder(settings) is None  # the record names a pid that is gone
    with lock.hold(settings, ["lab", "down"]):
        held = lock.holder(settings)
        assert held is not None and held.pid == os.getpid() and held.argv == ["lab", "down"]


# --- real processes ----------------------------------------------------------------------------


class _HungApi(http.server.BaseHTTPRequestHandler):
    """Answers /version (lab's "is the management cluster up" probe) and nothing else."""

    def do_GET(self) -> None:
        if self.path != "/version":
            time.sleep(120)  # the client times out first; lab retries
            return
        body = b'{"major": "1", "minor": "35", "gitVersion": "v1.35.4"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def hung_api(lab_env: dict[str, str]) -> Iterator[Path]:
    """A management kubeconfig whose API answers /version and hangs on every other request: a
    command that lists anything hangs for the client's timeouts, long enough to hold the lock while
    we look."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _HungApi)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    home = Path(lab_env["LAB_HOME"])
    home.mkdir(parents=True)
    kubeconfig = home / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: lab\n"
        f"clusters: [{{name: lab, cluster: {{server: 'http://127.0.0.1:{server.server_address[1]}'}}}}]\n"
        "users: [{name: lab, user: {token: x}}]\n"
        "contexts: [{name: lab, context: {cluster: lab, user: lab}}]\n"
    )
    try:
        yield kubeconfig
    finally:
        server.shutdown()
        server.server_close()


def _wait_for_holder(path: Path, pid: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if json.loads(path.read_text())["pid"] == pid:
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.1)
    raise AssertionError(f"pid {pid} never took {path}")


def test_concurrent_mutating_commands(lab_env: dict[str, str], run_lab, hung_api: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-m", "lab", "delete-clusters", "--all"],
        env=lab_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for_holder(Path(lab_env["LAB_HOME"]) / lock.LOCK_FILE, holder.pid)
        for args in (("tune", "--profile", "default"), ("delete-clusters", "--all")):
            started = time.monotonic()
            r = run_lab(*args)
            assert time.monotonic() - started < 15, "refused at once, not after waiting"
            assert r.returncode == lock.BUSY_EXIT, r.stderr
            lines = r.stderr.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("error: lab home "), r.stderr
            assert f"pid {holder.pid} runs `lab delete-clusters --all`" in lines[0]
        assert not (Path(lab_env["LAB_HOME"]) / "stack.json").exists(), "the refused tune wrote its state"
        # read-only commands neither wait nor fail
        status = run_lab("status")
        assert status.returncode == 0 and f"busy: pid {holder.pid}" in status.stdout, status.stderr
        assert run_lab("kubeconfig").stdout == hung_api.read_text()
        assert json.loads(run_lab("status", "-o", "json").stdout)["lock"]["pid"] == holder.pid
        assert holder.poll() is None, "the holder must still be running for the checks above to mean anything"
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
        # the kernel dropped the lock with the process; its record stays and is taken over
        after = run_lab("tune", "--profile", "default")
        assert after.returncode == 0, after.stderr
        assert json.loads(run_lab("status", "-o", "json").stdout)["lock"] is None
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
