"""The test tree itself: pytest imports test modules by basename (rootdir-relative, no packages), so
two files of one name in unit/, integration/ and e2e/ stop the whole collection ("import file
mismatch") — which happened twice when branches met. Caught here, in the unit tier, first. And how
scripts/test's workers split the files (support.scheduling)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from support import scheduling

TESTS = Path(__file__).resolve().parents[1]


def test_every_test_module_has_its_own_basename() -> None:
    names = Counter(p.name for p in TESTS.rglob("test_*.py"))
    assert len(names) > 50  # the tree was found
    assert [n for n, c in names.items() if c > 1] == []


def test_every_docker_engine_user_is_scheduled_in_one_unit_and_other_files_alone() -> None:
    """scripts/test's workers: one engine per machine, so every file using it is one unit of work."""
    root = Path(__file__).resolve().parents[2]
    engine_files = {
        p.relative_to(root).as_posix()
        for p in (root / "tests").rglob("test_*.py")
        if scheduling.uses_engine(p)
    }
    assert "tests/integration/test_engine_dockerd.py" in engine_files
    assert "tests/integration/test_images_build.py" in engine_files
    for f in engine_files:
        assert scheduling.unit(f"{f}::test_x[a::b]", root) == scheduling.DOCKER_GROUP
    assert scheduling.unit("tests/e2e/test_clusters.py::test_y", root) == "tests/e2e/test_clusters.py"
