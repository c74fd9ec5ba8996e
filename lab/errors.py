"""Errors the user can cause or fix.

A LabError is printed as one line and ends the command with its exit code; anything else is a bug
and keeps its traceback.
"""


class LabError(Exception):
    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class UsageError(LabError):
    """Bad input on the command line: exit 2, like click's own usage errors."""

    def __init__(self, message: str) -> None:
        super().__init__(message, exit_code=2)
