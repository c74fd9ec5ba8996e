"""The whole local stack, started once per session with `lab up` in a subprocess, torn down with
`lab down --purge`.

All state lives in a tmp LAB_HOME; the binaries come from the shared build cache under the default
lab home (LAB_BIN_CACHE), which `lab up` fills first when something is missing (cold: ~50 min on
2 busy cores; warm: none). Every port is moved to a free block, so the stack never collides with a
user's lab or another test run. LAB_PATCHES is left unset, so the stack runs the repository's
patches/ as a user's would: none but the examples, which are never applied by default
(test_patched_controllers.py switches KCP to the example patch and back).
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from support.stack import Stack, stack_env

#: cold builds of every upstream binary on a 2-core machine, then the start itself
UP_TIMEOUT = 3600


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    home = tmp_path_factory.mktemp("stack") / "home"
    env = stack_env(home)
    started = time.monotonic()
    up = subprocess.run(
        [sys.executable, "-m", "lab", "up"], capture_output=True, text=True, env=env, timeout=UP_TIMEOUT
    )
    s = Stack(env=env, home=home, up_seconds=time.monotonic() - started, up_stdout=up.stdout)
    try:
        if up.returncode != 0:
            pytest.fail(f"lab up exited {up.returncode}: {up.stderr.strip()[-2000:]}", pytrace=False)
        yield s
    finally:
        down = s.lab("down", "--purge", check=False, timeout=180)
        assert down.returncode == 0, down.stderr
