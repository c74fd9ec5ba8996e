"""One mutating lab command at a time per lab home (and one builder at a time per shared cache entry:
`waiting`).

`lab up`, `down`, `tune`, `build`, `create-clusters`, `delete-clusters` and `backing add|remove` hold an
exclusive lock on `<home>/lab.lock` while they run; read-only commands (status, report, kubeconfig,
render, doctor, backing list) never take it, so they never wait.

Why a lock: two commands that change the same lab home race each other in supervisord and in the
management API. `lab up` run while `lab delete-clusters --all` removed 100 workload apiservers re-read
supervisord's program files half-way through the delete and died on `Fault 91: STILL_RUNNING` and
`BAD_NAME` from groups the delete was removing at that moment.

Why refuse instead of wait: the second command's plan (which clusters exist, what the host has room
for, which programs to start) would be computed against a lab home the first one is changing, and a
queued `lab up` that starts minutes later, after a `delete-clusters --all`, is a surprise. Refusing
at once keeps "errors end the command before anything changes" true and leaves the choice to the
user; the line names the holder's pid and command line so they know what to wait for or stop.

Why flock: the kernel drops the lock when the holder dies, kill -9 included, so a crash never blocks
the next command and there is no stale-pid guessing. The descriptor is opened close-on-exec, so
supervisord and the programs lab starts never inherit it. The file records the holder (pid, argv,
start time) for the refusal message and for `lab status`, and is removed when the holder releases it;
one left behind by a killed holder is unlocked and simply taken over.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from lab.config import Settings
from lab.errors import LabError
from lab.runtime import procs

LOCK_FILE = "lab.lock"
#: Exit code of a command refused because another one holds the lab home: EX_TEMPFAIL (sysexits.h),
#: "try again later", so a script can tell "busy" from a real failure.
BUSY_EXIT = 75
#: A holder writes its record right after taking the lock; a refused command waits this long for it.
RECORD_WAIT = 1.0

#: lab homes this process holds: a nested hold (one command calling another's code) is a no-op.
_held: set[Path] = set()


@dataclass(frozen=True)
class Holder:
    pid: int
    argv: list[str]
    since: float

    def command(self) -> str:
        """The holder's command line as the user typed it: `lab <args>`."""
        return " ".join(["lab", *self.argv[1:]]) if self.argv else "lab"

    def describe(self) -> str:
        started = time.strftime("%H:%M:%S", time.localtime(self.since))
        return f"pid {self.pid} runs `{self.command()}` (since {started})"


class Busy(LabError):
    """Another mutating command holds the lab home."""

    def __init__(self, home: Path, holder: Holder | None) -> None:
        who = holder.describe() if holder else "another lab command holds it"
        super().__init__(
            f"lab home {home} is busy: {who}; wait for it to finish, or stop it and re-run",
            exit_code=BUSY_EXIT,
        )
        self.holder = holder


def lock_path(settings: Settings) -> Path:
    return settings.home / LOCK_FILE


def _parse(raw: bytes) -> Holder | None:
    try:
        data = json.loads(raw)
        return Holder(int(data["pid"]), [str(a) for a in data["argv"]], float(data["since"]))
    except (ValueError, KeyError, TypeError):
        return None


def holder(settings: Settings) -> Holder | None:
    """Who holds the lab home now, or None: for `lab status`. It only reads the record (taking even a
    shared lock for a moment could make a mutating command starting then refuse); a record left by a
    killed holder names a pid that is gone."""
    try:
        found = _parse(lock_path(settings).read_bytes())
    except OSError:
        return None
    return found if found is not None and procs.alive(found.pid) else None


def _made_dirs(path: Path) -> list[Path]:
    """The directories `path.mkdir(parents=True)` would create, deepest first."""
    out = []
    while not path.exists() and path != path.parent:
        out.append(path)
        path = path.parent
    return out


def _read_holder(fd: int) -> Holder | None:
    deadline = time.monotonic() + RECORD_WAIT
    while True:
        found = _parse(os.pread(fd, 65536, 0))
        # A killed holder's record stays until the next holder overwrites it, just after locking.
        if (found is not None and procs.alive(found.pid)) or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def acquire(settings: Settings, argv: Sequence[str] | None = None) -> tuple[int, list[Path]]:
    """Take the lab home's lock or raise Busy at once; (descriptor, directories created for it)."""
    home, path = settings.home, lock_path(settings)
    made = _made_dirs(home)
    while True:
        home.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except FileNotFoundError:
            continue  # the home was removed between mkdir and open by a holder releasing it
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            found = _read_holder(fd)
            os.close(fd)
            raise Busy(home, found) from None
        # A releasing holder unlinks the file before unlocking it: if the path no longer names the
        # file we locked, we locked a file nobody else will look at; take the new one instead.
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    record = {"pid": os.getpid(), "argv": list(sys.argv if argv is None else argv), "since": time.time()}
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
    return fd, made


def release(settings: Settings, fd: int, made: Sequence[Path] = ()) -> None:
    """Remove the record, then unlock; directories made only for the lock go too while empty."""
    with contextlib.suppress(OSError):
        os.unlink(lock_path(settings))
    os.close(fd)
    for d in made:
        try:
            d.rmdir()
        except OSError:
            break  # the command put something there, or someone else did


@contextlib.contextmanager
def hold(settings: Settings, argv: Sequence[str] | None = None) -> Iterator[None]:
    """Hold the lab home for the duration of a mutating command; Busy (one line) when another does."""
    home = settings.home
    if home in _held:
        yield
        return
    fd, made = acquire(settings, argv)
    _held.add(home)
    try:
        yield
    finally:
        _held.discard(home)
        release(settings, fd, made)


@contextlib.contextmanager
def waiting(directory: Path, on_wait: Callable[[], None] = lambda: None) -> Iterator[None]:
    """Hold an exclusive flock on `directory` itself (created if missing), waiting while another
    process holds it; `on_wait` runs once when it has to wait. For a cache that lab homes share
    (LAB_BIN_CACHE): unlike a lab home, its second builder should wait for the first and use its
    result, not refuse. Locking the directory's own inode adds no file to the cache, so a build that
    fails leaves the cache exactly as it found it."""
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            on_wait()
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
