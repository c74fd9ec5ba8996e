"""The README's two commands are the ones the suite and CI really run; the CLI table lists every command."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def _first_block_after(heading: str) -> str:
    section = README.split(f"\n## {heading}\n", 1)[1]
    return re.search(r"```sh\n(.*?)```", section, re.S).group(1).strip()  # type: ignore[union-attr]


def test_run_the_lab_is_install_then_lab_up() -> None:
    # tests/e2e/conftest.py starts the stack with exactly `lab up` after the package is installed.
    assert _first_block_after("Run the lab") == "pip install . && lab up"


def test_ci_calls_the_readme_test_command() -> None:
    cmd = _first_block_after("Run the tests")
    assert cmd == "scripts/test"
    ci = (ROOT / ".ci/run").read_text().splitlines()
    assert cmd in [line.strip() for line in ci if not line.lstrip().startswith("#")]


def test_cli_reference_lists_every_registered_command() -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "from lab.cli import _register, app; _register(); import typer; "
            "print('\\n'.join(sorted(c.name for c in typer.main.get_command(app).commands.values())))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    table = README.split("## CLI reference", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `lab ([a-z-]+)", table, re.M))
    assert set(out) == documented
