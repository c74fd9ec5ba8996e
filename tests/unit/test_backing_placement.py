from __future__ import annotations

import pytest

from lab.backing.placement import Room, place
from lab.errors import UsageError


def test_a_batch_spreads_evenly_over_equal_backings() -> None:
    out = place(range(1, 5), [Room("h1", 10, 0), Room("h2", 10, 0)])
    assert sorted(out.values()) == ["h1", "h1", "h2", "h2"]
    assert out[1] == "h1" and out[2] == "h2"  # ties go to the backing named first


def test_the_emptier_backing_fills_first() -> None:
    out = place(range(1, 4), [Room("h1", 10, 8), Room("h2", 10, 0)])
    assert list(out.values()) == ["h2", "h2", "h2"]


def test_existing_clusters_keep_their_backing_and_use_no_room() -> None:
    out = place([1, 2, 3], [Room("h1", 1, 1), Room("h2", 1, 0)], existing={1: "h1", 2: "h1"})
    assert out == {1: "h1", 2: "h1", 3: "h2"}


def test_too_many_new_clusters_is_refused_with_each_backings_room() -> None:
    with pytest.raises(UsageError) as e:
        place(range(1, 6), [Room("h1", 2, 0), Room("h2", 3, 1)])
    assert "5 new cluster(s) do not fit: free capacity is 4 (h1 2 of 2, h2 2 of 3)" in str(e.value)


def test_a_full_backing_gets_nothing_even_if_over_capacity() -> None:
    out = place([7], [Room("h1", 2, 5), Room("h2", 2, 1)])
    assert out == {7: "h2"}
