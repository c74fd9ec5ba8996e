"""Supervision of the stack's processes by supervisord, driven over XML-RPC on a unix socket.

Why supervisord (the `supervisor` package) rather than pid files or systemd:
- it restarts a process that dies (autorestart) without lab running, which pid files cannot;
- per-program logs with rotation, and a state machine (STARTING/RUNNING/BACKOFF/FATAL) that
  `lab status` can report as is;
- programs can be added and removed at runtime: each program is one file in an include dir, and
  `reloadConfig` + `addProcessGroup`/`removeProcessGroup` (what `supervisorctl update` does) touch
  only the programs whose file changed, so hundreds of workload kube-apiservers come and go this
  way without restarting anything else;
- systemd --user needs a user session bus and is absent in containers and CI; supervisord is a
  pip dependency, pure Python, and runs anywhere.
The socket lives in the 0700 run dir: whoever can reach it owns the lab anyway, so no password.
"""

from __future__ import annotations

import contextlib
import http.client
import resource
import shlex
import subprocess
import sys
import xmlrpc.client
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from supervisor.xmlrpc import SupervisorTransport

from lab.config import Settings
from lab.errors import LabError
from lab.runtime import poll, procs

#: supervisord's process states (supervisor.states.ProcessStates) that mean "not coming back by itself".
DEAD_STATES = ("FATAL", "EXITED", "STOPPED", "UNKNOWN")
#: Longest wait for stopping programs: past the longest stopwaitsecs (30 s, workload apiservers)
#: supervisord has sent SIGKILL.
STOP_TIMEOUT = 45.0
#: sockaddr_un.sun_path is 108 bytes on Linux, including the trailing NUL, and supervisord first
#: binds "<socket>.<its pid>" (then links it to the name): up to 8 more bytes (pid_max 4194304).
SOCKET_PATH_MAX = 107 - len(".4194304")


@dataclass(frozen=True)
class Program:
    """One supervised process. `name` is also its group name and its log file's stem."""

    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    directory: Path | None = None
    #: lower starts first when supervisord itself starts everything
    priority: int = 500
    stopwaitsecs: int = 15


def supervisor_dir(settings: Settings) -> Path:
    return settings.run_dir / "supervisor"


def programs_dir(settings: Settings) -> Path:
    return supervisor_dir(settings) / "programs"


def socket_path(settings: Settings) -> Path:
    return supervisor_dir(settings) / "supervisor.sock"


def conf_path(settings: Settings) -> Path:
    return supervisor_dir(settings) / "supervisord.conf"


def log_file(settings: Settings, name: str) -> Path:
    return settings.log_dir / f"{name}.log"


def _esc(value: str) -> str:
    # supervisord reads its files with %-interpolation (%(here)s): a literal % must be doubled.
    return value.replace("%", "%%")


def render_supervisord_conf(settings: Settings, fd_limit: int) -> str:
    d = supervisor_dir(settings)
    return "\n".join(
        [
            "[unix_http_server]",
            f"file={_esc(str(socket_path(settings)))}",
            "chmod=0700",
            "",
            "[supervisord]",
            f"logfile={_esc(str(settings.log_dir / 'supervisord.log'))}",
            "logfile_maxbytes=20MB",
            "logfile_backups=2",
            f"pidfile={_esc(str(d / 'supervisord.pid'))}",
            f"childlogdir={_esc(str(settings.log_dir))}",
            # Each kube-apiserver holds hundreds of fds; supervisord raises its soft limit to this.
            f"minfds={fd_limit}",
            "minprocs=1024",
            "",
            "[rpcinterface:supervisor]",
            "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
            "",
            "[supervisorctl]",
            f"serverurl=unix://{_esc(str(socket_path(settings)))}",
            "",
            "[include]",
            f"files={_esc(str(programs_dir(settings)))}/*.conf",
            "",
        ]
    )


def render_program(settings: Settings, p: Program) -> str:
    """The [program:x] file. Restart forever with supervisord's growing back-off: a manager that
    exits while the apiserver restarts must come back, never go FATAL after 3 tries."""
    env = ",".join(f'{k}="{_esc(v)}"' for k, v in sorted(p.env.items()))
    lines = [
        f"[program:{p.name}]",
        f"command={_esc(shlex.join(p.argv))}",
        f"directory={_esc(str(p.directory or settings.run_dir))}",
        "autostart=true",
        "autorestart=true",
        "startsecs=1",
        "startretries=1000000",
        "stopsignal=TERM",
        f"stopwaitsecs={p.stopwaitsecs}",
        "stopasgroup=true",
        "killasgroup=true",
        "redirect_stderr=true",
        f"stdout_logfile={_esc(str(log_file(settings, p.name)))}",
        "stdout_logfile_maxbytes=50MB",
        "stdout_logfile_backups=2",
        f"priority={p.priority}",
    ]
    if env:
        lines.append(f"environment={env}")
    return "\n".join(lines) + "\n"


def remove_program_files(settings: Settings, names: tuple[str, ...] | list[str]) -> None:
    """Forget programs while supervisord is down, so its next start does not start them."""
    for n in names:
        (programs_dir(settings) / f"{n}.conf").unlink(missing_ok=True)


def _fd_limit() -> int:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)


class Supervisor:
    """XML-RPC client of the lab's supervisord."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        transport = SupervisorTransport(None, None, f"unix://{socket_path(settings)}")
        # The host part is ignored with a unix transport.
        self._proxy = xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport, allow_none=True)

    @property
    def rpc(self) -> Any:
        return self._proxy.supervisor

    def alive(self) -> bool:
        if not socket_path(self.settings).exists():
            return False
        try:
            return bool(self.rpc.getState()["statename"] == "RUNNING")
        except (OSError, xmlrpc.client.Error, http.client.HTTPException):
            return False

    def pid(self) -> int | None:
        try:
            return int(self.rpc.getPID())
        except (OSError, xmlrpc.client.Error, http.client.HTTPException):
            return None

    def processes(self) -> list[dict[str, Any]]:
        return list(self.rpc.getAllProcessInfo())

    def process(self, name: str) -> dict[str, Any] | None:
        try:
            return dict(self.rpc.getProcessInfo(name))
        except xmlrpc.client.Fault:
            return None

    def apply(self, programs: list[Program]) -> dict[str, list[str]]:
        """Write these programs' files and make supervisord run exactly what the files say for
        them: new ones start, changed ones restart, unchanged ones are not touched."""
        pdir = programs_dir(self.settings)
        pdir.mkdir(parents=True, exist_ok=True)
        for p in programs:
            path = pdir / f"{p.name}.conf"
            text = render_program(self.settings, p)
            if not path.exists() or path.read_text() != text:
                tmp = path.with_suffix(".tmp")
                tmp.write_text(text)
                tmp.replace(path)
        return self.update()

    def remove(self, names: list[str]) -> dict[str, list[str]]:
        remove_program_files(self.settings, names)
        return self.update()

    def update(self) -> dict[str, list[str]]:
        """supervisorctl update: re-read the include dir, apply the difference group by group."""
        [[added, changed, removed]] = self.rpc.reloadConfig()
        self.stop([*removed, *changed])
        for name in removed + changed:
            try:
                self.rpc.removeProcessGroup(name)
            except xmlrpc.client.Fault as e:
                raise LabError(f"supervisord could not remove {name}: {e.faultString}") from None
        for name in changed + added:
            self.rpc.addProcessGroup(name)
        return {"added": list(added), "changed": list(changed), "removed": list(removed)}

    def stop(self, names: list[str], timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM every group at once, then wait for all of them. One by one (stopProcessGroup
        with wait) cost a 100-cluster delete 110 s, about 1.1 s per workload apiserver at load
        9-19; supervisord itself escalates to SIGKILL after each program's stopwaitsecs."""
        if not names:
            return
        for name in names:
            with contextlib.suppress(xmlrpc.client.Fault):  # BAD_NAME, NOT_RUNNING: nothing to stop
                self.rpc.stopProcessGroup(name, False)
        groups = set(names)

        def stopped() -> bool:
            return all(p["statename"] in DEAD_STATES for p in self.processes() if p["group"] in groups)

        poll.until(stopped, timeout, 0.2)

    def restart(self, name: str) -> None:
        with contextlib.suppress(xmlrpc.client.Fault):
            self.rpc.stopProcess(name, True)
        self.rpc.startProcess(name, False)

    def converge(self, programs: list[Program]) -> dict[str, list[str]]:
        """apply(), then start each of these programs that is not coming back by itself (stopped,
        exited or given up): after it, every one of them runs its current file. Returns apply's
        changes."""
        changes = self.apply(programs)
        for p in programs:
            self.start_if_dead(p.name)
        return changes

    def start_if_dead(self, name: str) -> bool:
        """Start a program that gave up (FATAL) or was stopped; True when it had to."""
        info = self.process(name)
        if info is None or info["statename"] not in DEAD_STATES:
            return False
        self.rpc.startProcess(name, False)
        return True

    def shutdown(self, timeout: float = 60.0) -> None:
        """Stop every program (in reverse priority) and supervisord itself; wait until it is gone."""
        pid = self.pid()
        with contextlib.suppress(OSError, xmlrpc.client.Error, http.client.HTTPException):
            self.rpc.shutdown()
        if pid and not poll.until(lambda: not procs.alive(pid), timeout, 0.2):
            raise LabError(f"supervisord (pid {pid}) did not stop within {timeout:.0f}s")


def ensure_running(settings: Settings, timeout: float = 30.0) -> Supervisor:
    """The lab's supervisord, started (daemonized) when it is not running yet."""
    sock = socket_path(settings)
    if len(str(sock)) > SOCKET_PATH_MAX:
        raise LabError(
            f"lab home {settings.home} is too deep: the supervisor socket path {sock} is over {SOCKET_PATH_MAX} bytes"
        )
    sup = Supervisor(settings)
    for d in (supervisor_dir(settings), programs_dir(settings), settings.log_dir):
        d.mkdir(parents=True, exist_ok=True)
    settings.run_dir.chmod(0o700)
    supervisor_dir(settings).chmod(0o700)
    conf = conf_path(settings)
    conf.write_text(render_supervisord_conf(settings, _fd_limit()))
    if sup.alive():
        return sup
    socket_path(settings).unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "supervisor.supervisord", "-c", str(conf)]
    # supervisord forks into the background; the parent exits once the socket is set up.
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=settings.run_dir)
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        # supervisord ends its error with a "For help, use ... -h" line: the error is the line before
        detail = [ln for ln in lines if ln.startswith("Error:")][:1] or lines[-1:] or ["no output"]
        log = settings.log_dir / "supervisord.log"
        raise LabError(f"supervisord would not start: {detail[0]} (log: {log})")
    if not poll.until(sup.alive, timeout, 0.1):
        raise LabError(f"supervisord did not answer on {socket_path(settings)} within {timeout:.0f}s")
    return sup
