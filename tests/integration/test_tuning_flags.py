"""Every flag the tuning table emits is accepted by the real, built manager binary.

Why both checks: a flag name in `--help` proves it exists; running the binary with the full flag
list followed by `--help` proves the parser also accepts every value (pflag/flag parse left to right
and stop at --help, so an unknown flag or a bad value fails before the help exits 0).

The binaries come from the shared default lab home (the build cache other tests reuse); the session
fixture builds whichever are missing, which takes minutes on a cold machine.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from lab import build, config, tuning


@pytest.fixture(scope="session")
def managers() -> dict[str, Path]:
    settings = config.load(home=config.default_home())
    return build.ensure(settings, list(tuning.COMPONENTS), print)


def help_flags(binary: Path) -> set[str]:
    out = subprocess.run([str(binary), "--help"], capture_output=True, text=True, timeout=60)
    text = out.stdout + out.stderr
    found = set(re.findall(r"(?m)^\s+(?:-\w, )?--?([a-z0-9][a-z0-9-]*)", text))
    assert len(found) > 10, f"{binary} --help printed no flag list:\n{text[:2000]}"
    return found


@pytest.mark.slow
@pytest.mark.parametrize("profile", tuning.PROFILES)
@pytest.mark.parametrize("component", list(tuning.COMPONENTS))
def test_every_tuning_flag_exists_in_the_binary(
    managers: dict[str, Path], component: str, profile: str
) -> None:
    settings = config.load(home=config.default_home())
    flags = tuning.flags(settings, component, profile)
    known = help_flags(managers[component])
    missing = [f for f in flags if f.split("=", 1)[0].lstrip("-") not in known]
    assert not missing, f"{component} {profile}: not in --help: {missing}"
    run = subprocess.run(
        [str(managers[component]), *flags, "--help"], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, f"{component} rejected {flags}:\n{run.stderr[-2000:]}"


@pytest.mark.slow
def test_an_unknown_flag_is_rejected(managers: dict[str, Path]) -> None:
    """The reason the table is version-aware: the check above would pass vacuously otherwise."""
    run = subprocess.run(
        [str(managers["cabpk-manager"]), "--cluster-concurrency=100", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode != 0
    assert "unknown flag: --cluster-concurrency" in run.stderr
