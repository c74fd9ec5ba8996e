"""The CLI's error contract: anything a user can get wrong is one `error:` line, exit 2."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["nosuch"], "error: No such command 'nosuch'."),
        (["render"], "error: Missing argument 'INDEX'."),
        (["render", "1", "-o", "xml"], "error: Invalid value for '--output'"),
        (["doctor", "--mode", "vm"], "error: Invalid value for --mode"),
        (["status", "--output", "csv"], "error: Invalid value for '--output'"),
        (["create-clusters", "1", "--workers", "16"], "error: --workers 16 is past the capacity of 15"),
        (["create-clusters", "1", "--workers", "-1"], "error: --workers must be 0 or more"),
        (["scale-clusters", "--workers", "2"], "error: say which clusters"),
        (["scale-clusters", "--all", "--start", "1", "--workers", "1"], "error: --all scales every cluster"),
        (["scale-clusters", "--all", "--workers", "99"], "error: --workers 99 is past the capacity"),
        (
            ["scale-clusters", "--start", "1", "--count", "0", "--workers", "1"],
            "error: count must be at least 1",
        ),
        (["upgrade-clusters", "--all"], "error: Missing option '--to'"),
        (["upgrade-clusters", "--all", "--to", "1.36.0"], "error: --to must be a Kubernetes release vX.Y.Z"),
        (["upgrade-clusters", "--all", "--to", "v1.37.0"], "error: --to v1.37.0 skips a minor from v1.35.4"),
        (["upgrade-clusters", "--all", "--to", "v1.35.4"], "error: --to v1.35.4 is not newer than v1.35.4"),
        (["upgrade-clusters", "--to", "v1.36.0"], "error: say which clusters"),
        (
            ["upgrade-clusters", "--all", "--start", "2", "--to", "v1.36.0"],
            "error: --all upgrades every cluster",
        ),
        (
            ["upgrade-clusters", "--all", "--to", "v1.36.0", "--parallel", "0"],
            "error: --parallel must be at least 1",
        ),
    ],
)
def test_usage_errors_are_one_line(run_lab, args: list[str], expected: str) -> None:
    r = run_lab(*args)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(expected), r.stderr
    assert "Traceback" not in r.stderr


def test_no_arguments_prints_the_command_list(run_lab) -> None:
    r = run_lab()
    assert "Commands" in r.stdout + r.stderr and "doctor" in r.stdout + r.stderr


def test_help_and_version_exit_0(run_lab) -> None:
    assert run_lab("--help").returncode == 0
    r = run_lab("--version")
    assert r.returncode == 0 and r.stdout.startswith("lab ")


def test_ctrl_c_is_one_error_line_and_exit_130(lab_env, monkeypatch, capsys) -> None:
    """A KeyboardInterrupt inside a command (what Ctrl-C raises) ends as `error: aborted`, exit 130,
    whichever way the installed typer reports it (an Abort, or a silent exit code)."""
    from lab import doctor
    from lab.cli import main

    def interrupted(*_a: object, **_k: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(doctor, "check", interrupted)
    monkeypatch.setattr("sys.argv", ["lab", "doctor"])
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == 130
    assert capsys.readouterr().err == "error: aborted\n"
