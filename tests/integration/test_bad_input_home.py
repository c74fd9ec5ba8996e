"""Bad input, swept, without a stack: every command's malformed arguments and every setting's
malformed values (tests/badinput.py) against a lab home that has state in it (a rendered cluster's
PKI, a tuning profile, a registered backing, a recorded run, a lab.yaml). Each must be one `error:`
line, exit 2 (non-zero for a well-formed name of nothing), no traceback, and the whole tree under
the sandbox (lab home and cwd) unchanged: paths, sizes, mtimes.

Listed cases run in-process through lab.cli.main (~30 ms each) and, one per command and setting
kind, through `python -m lab` in a subprocess (~0.7 s each), which is what a user runs; generated
cases run in-process with many examples and through the subprocess with a few: 35-60 s on 2
cores at load 5-11 (145 s at load 19).
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from support.badinput import (
    ARGS,
    SAFETY_ENV,
    SETTINGS,
    SETTINGS_CMD,
    YAML_FIELDS,
    Case,
    bad_name_args,
    bad_range_args,
    bad_setting_env,
    bad_yaml_value,
    refusal_problems,
    tree,
    tree_diff,
)

from lab import records
from lab.backing import store
from lab.cli import main
from lab.config import Settings


@dataclass
class Sandbox:
    root: Path
    home: Path
    cwd: Path
    a_file: Path

    @property
    def env(self) -> dict[str, str]:
        return {"LAB_HOME": str(self.home), **SAFETY_ENV}

    def case_env(self, case: Case) -> dict[str, str]:
        env = {**self.env, **case.env}
        if case.lab_yaml is not None:
            conf = self.root / "conf.yaml"
            body = case.lab_yaml
            conf.write_bytes(body if isinstance(body, bytes) else body.encode())
            env["LAB_CONFIG"] = str(conf)
        return env

    def subprocess(self, args: list[str] | tuple[str, ...], env: dict[str, str]) -> tuple[int, str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith("LAB_")}
        proc = subprocess.Popen(
            [sys.executable, "-m", "lab", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            env={**base, **env},
            cwd=self.cwd,
            start_new_session=True,  # so a case that wrongly went on is killed with all it started
        )
        try:
            out, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            pytest.fail(f"lab {' '.join(args)} still ran after 60 s: the bad input was accepted")
        return proc.returncode, out, err

    def in_process(self, args: list[str] | tuple[str, ...], env: dict[str, str]) -> tuple[int, str, str]:
        """lab.cli.main as `python -m lab` runs it; an exception that escapes is the traceback."""
        out, err = io.StringIO(), io.StringIO()
        code: int = 0
        with pytest.MonkeyPatch.context() as mp:
            for k in [k for k in os.environ if k.startswith("LAB_")]:
                mp.delenv(k)
            for k, v in env.items():
                mp.setenv(k, v)
            mp.chdir(self.cwd)
            mp.setattr(sys, "argv", ["lab", *args])
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                try:
                    main()
                except SystemExit as e:
                    code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        return code, out.getvalue(), err.getvalue()

    def check(self, case: Case, runner: str = "in_process") -> None:
        env = self.case_env(case)
        before = tree(self.root)
        code, out, err = getattr(self, runner)(case.args, env)
        changed = tree_diff(before, tree(self.root))
        problems = refusal_problems(code, out, err, case.expect)
        if changed:
            problems.append(f"changed: {', '.join(changed[:10])}")
        assert not problems, f"{case.id}: " + "; ".join(problems)


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    root = tmp_path_factory.mktemp("badinput")
    box = Sandbox(root=root, home=root / "home", cwd=root / "cwd", a_file=root / "a-file")
    box.cwd.mkdir()
    box.a_file.write_text("not a directory\n")
    for args in (["render", "1"], ["tune", "--profile", "seed"]):
        code, _out, err = box.subprocess(args, box.env)
        assert code == 0, err
    (box.home / "lab.yaml").write_text("prefix: test\nlocal_capacity: 50\n")
    lab = Settings(home=box.home)
    store.save(lab, store.Entry("b1", "process", 5, {"host": "192.0.2.1", "ssh_port": 22}))
    with records.open_records(lab) as db:
        run = db.start_run("create", ["create-clusters", "1"], {"prefix": "test"}, host={})
        db.record(run, "test-1", 1, records.Phase.applied)
        db.finish_run(run)
    # sanity: the seeded home is one lab reads without complaint, so refusals come from the input
    code, _out, err = box.subprocess(["report", "--format", "json"], box.env)
    assert code == 0, err
    yield box
    if (box.home / "run").exists():  # a case wrongly started supervisord (the host side): stop it
        box.subprocess(["down"], box.env)


def _one_per_command(cases: list[Case]) -> list[Case]:
    seen: set[tuple[str, ...]] = set()
    out = []
    for case in cases:
        key = case.args[:2] if case.args[0] in ("backing", "etcd", "host") else case.args[:1]
        if key not in seen:
            seen.add(key)
            out.append(case)
    return out


#: The first listed case of each command, and every 12th setting, also run as `python -m lab`.
SUBPROCESS_CASES = _one_per_command(ARGS) + SETTINGS[::12]


@pytest.mark.parametrize("case", ARGS + SETTINGS, ids=lambda c: c.id)
def test_listed_bad_input_is_refused(sandbox: Sandbox, case: Case) -> None:
    sandbox.check(case)


@pytest.mark.parametrize("case", SUBPROCESS_CASES, ids=lambda c: c.id)
def test_listed_bad_input_is_refused_by_the_real_command(sandbox: Sandbox, case: Case) -> None:
    sandbox.check(case, runner="subprocess")


@settings(max_examples=60)
@given(args=st.one_of(bad_range_args(), bad_name_args()))
def test_generated_bad_arguments_are_refused(sandbox: Sandbox, args: list[str]) -> None:
    sandbox.check(Case(tuple(args)))


@settings(max_examples=60)
@given(data=st.data())
def test_generated_bad_settings_are_refused(sandbox: Sandbox, data: st.DataObject) -> None:
    if data.draw(st.booleans(), label="via lab.yaml"):
        field = data.draw(st.sampled_from(YAML_FIELDS))
        top, _, sub = field.partition(".")
        value = data.draw(bad_yaml_value(field))
        case = Case(
            tuple(SETTINGS_CMD.split()), lab_yaml=yaml.safe_dump({top: {sub: value} if sub else value})
        )
    else:
        name, value = data.draw(bad_setting_env(sandbox.a_file))
        case = Case(tuple(SETTINGS_CMD.split()), {name: value})
    sandbox.check(case)


@settings(max_examples=5)
@given(args=st.one_of(bad_range_args(), bad_name_args()))
def test_generated_bad_arguments_are_refused_by_the_real_command(sandbox: Sandbox, args: list[str]) -> None:
    sandbox.check(Case(tuple(args)), runner="subprocess")
