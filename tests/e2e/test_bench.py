"""`lab bench` on the real stack: two profiles, create -> wait -> delete each, ends with the comparison."""

from __future__ import annotations

import json

from support.stack import Stack

from lab import management, records


def test_bench_two_profiles(stack: Stack) -> None:
    before = management.tuning_profile(stack.settings()) or "default"
    assert before == "default"
    # high first: the last profile is the one the stack had, so bench has nothing to restore and the
    # modules after this one run on the default tuning either way
    res = stack.lab(
        "bench",
        "--profile",
        "high",
        "--profile",
        "default",
        "--clusters",
        "2",
        "--start",
        "41",
        "--format",
        "json",
        timeout=1800,
    )
    doc = json.loads(res.stdout)
    (create_a, delete_a), (create_b, delete_b) = doc["runs"]["high"][0], doc["runs"]["default"][0]
    assert management.tuning_profile(stack.settings()) == before
    with records.open_records(stack.settings(), create=False) as db:
        assert [db.run(i).settings["tuning"] for i in (create_a, delete_a, create_b, delete_b)] == [
            "high",
            "high",
            "default",
            "default",
        ]
        assert all(db.run(i).status == "ok" for i in (create_a, delete_a, create_b, delete_b))
    kinds = [(c["kind"], c["a"]["id"], c["b"]["id"]) for c in doc["comparisons"]]
    assert kinds == [("create", create_a, create_b), ("delete", delete_a, delete_b)]
    rows = {r["figure"]: r for r in doc["comparisons"][0]["rows"]}
    assert rows["cluster_available p50"]["a"] > 0 and rows["cluster_available p50"]["b"] > 0
    assert rows["cluster_available p50"]["exceeds"] in (True, False)  # two clusters: a verdict
    # a range with a cluster in it is refused before anything runs
    stack.lab("create-clusters", "1", "--start", "41", timeout=600)
    try:
        res = stack.lab(
            "bench",
            "--profile",
            "default",
            "--profile",
            "high",
            "--clusters",
            "1",
            "--start",
            "41",
            check=False,
            timeout=300,
        )
        assert res.returncode == 1 and "error: clusters test-41 exist" in res.stderr
        assert "round 1" not in res.stderr  # refused before any `lab tune`
    finally:
        stack.lab("delete-clusters", "--start", "41", "--count", "1", timeout=600)
