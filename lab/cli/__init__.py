"""Command line: thin modules that parse, call the library, and print.

Each module in this package registers its commands on lab.cli.app.app when imported; main() imports
them all, so adding a command never means editing a shared list.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import xmlrpc.client

from typer import Abort

from lab.cli.app import app
from lab.errors import LabError

try:  # recent typer vendors click; older releases use click itself
    from typer._click.exceptions import NoArgsIsHelpError, UsageError
except ImportError:  # pragma: no cover - depends on the installed typer
    from click.exceptions import NoArgsIsHelpError, UsageError  # type: ignore[assignment]


#: the exit code of a command stopped by Ctrl-C, as a shell reports a SIGINT death (128 + 2)
INTERRUPTED = 130


def _register() -> None:
    for mod in pkgutil.iter_modules(__path__):
        if mod.name != "app" and not mod.name.startswith("_"):
            importlib.import_module(f"{__name__}.{mod.name}")


def _one_line(text: str) -> str:
    """Messages quote what the user typed; a line break or control character in it is shown escaped
    (as repr() would), so the error stays one line."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


def main() -> None:
    """Run the CLI; every error a user can cause ends as one `error:` line and a non-zero exit."""
    _register()
    try:
        # standalone_mode=False: click hands us its usage errors instead of printing a framed box.
        rv = app(standalone_mode=False)
    except NoArgsIsHelpError as e:
        e.show()  # `lab` or `lab etcd` alone: the help text, as click would print it
        sys.exit(e.exit_code)
    except UsageError as e:
        hint = f" (see '{e.ctx.command_path} --help')" if e.ctx else ""
        print(_one_line(f"error: {e.format_message()}{hint}"), file=sys.stderr)
        sys.exit(2)
    except Abort:
        print("error: aborted", file=sys.stderr)
        sys.exit(INTERRUPTED)
    except LabError as e:
        print(_one_line(f"error: {e}"), file=sys.stderr)
        sys.exit(e.exit_code)
    except xmlrpc.client.Fault as e:
        # supervisord refusing a change, e.g. STILL_RUNNING or BAD_NAME for a program that a lab
        # command from an older version (which took no lock) or a hand-run supervisorctl is changing
        print(
            f"error: supervisord refused: {e.faultString} (re-run once the stack is settled)", file=sys.stderr
        )
        sys.exit(1)
    if rv == INTERRUPTED:
        # typer 0.29 turns Ctrl-C (KeyboardInterrupt) into Exit(130) and, without standalone mode,
        # returns that code having printed nothing; no lab command exits 130 itself
        print("error: aborted", file=sys.stderr)
    sys.exit(rv if isinstance(rv, int) else 0)
