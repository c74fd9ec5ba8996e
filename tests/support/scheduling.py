"""How scripts/test splits the suite between its pytest-xdist workers (tests/conftest.py).

Each test file is one unit of work, so a worker runs a whole file in order with its module fixtures
as one process would; every file that uses the session's Docker engine is in one unit, because a
machine has one engine for the tests (a second dockerd in the same network namespace is refused).
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

DOCKER_GROUP = "docker-engine"
#: the fixtures that start or need that engine (tests/integration/conftest.py)
ENGINE_FIXTURES = re.compile(r"\b(docker_engine|base_image)\b")


@functools.cache
def uses_engine(path: Path) -> bool:
    return bool(ENGINE_FIXTURES.search(path.read_text()))


def unit(nodeid: str, rootpath: Path) -> str:
    """The unit of work a test belongs to: its file, or DOCKER_GROUP for the engine's users."""
    file = nodeid.split("::", 1)[0]
    return DOCKER_GROUP if uses_engine(rootpath / file) else file
