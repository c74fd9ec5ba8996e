"""Command line: thin modules that parse, call the library, and print.

Each module in this package registers its commands on lab.cli.app.app when imported; main() imports
them all, so adding a command never means editing a shared list.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys

from lab.cli.app import app
from lab.errors import LabError


def _register() -> None:
    for mod in pkgutil.iter_modules(__path__):
        if mod.name != "app" and not mod.name.startswith("_"):
            importlib.import_module(f"{__name__}.{mod.name}")


def main() -> None:
    _register()
    try:
        app()
    except LabError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
