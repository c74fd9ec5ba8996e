"""The test tree itself: pytest imports test modules by basename (rootdir-relative, no packages), so
two files of one name in unit/, integration/ and e2e/ stop the whole collection ("import file
mismatch") — which happened twice when branches met. Caught here, in the unit tier, first."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def test_every_test_module_has_its_own_basename() -> None:
    names = Counter(p.name for p in TESTS.rglob("test_*.py"))
    assert len(names) > 50  # the tree was found
    assert [n for n, c in names.items() if c > 1] == []
