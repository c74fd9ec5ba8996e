"""What a failing component's log says: its last line (for a one-line error) or its tail."""

from __future__ import annotations

import os
from pathlib import Path

#: Bytes read from a log's end to find its last line: more than any one log line of the stack.
_LAST_LINE_WINDOW = 4096


def last_line(
    path: Path, width: int | None = None, *, empty: str = "(empty log)", missing: str = "(no log)"
) -> str:
    """The last non-blank line of a log, cut to `width` characters when given; `empty` for a log
    with no line, `missing` when it cannot be read."""
    try:
        with path.open("rb") as fh:
            fh.seek(max(0, os.path.getsize(path) - _LAST_LINE_WINDOW))
            lines = [ln for ln in fh.read().decode(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return missing
    if not lines:
        return empty
    line = lines[-1].strip()
    return line if width is None else line[:width]


def tail(path: Path, size: int = 3000) -> str:
    """The last `size` characters of a log, or "(no log)"."""
    try:
        return path.read_text(errors="replace")[-size:]
    except OSError:
        return "(no log)"
