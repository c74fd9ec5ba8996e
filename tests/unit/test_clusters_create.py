from __future__ import annotations

from pathlib import Path

from lab.clusters import create


def _plan(**kw: object) -> create.Plan:
    base: dict[str, object] = {
        "indexes": [1, 2, 3, 4],
        "names": {i: f"test-{i}" for i in range(1, 5)},
        "placement": dict.fromkeys(range(1, 5), "local"),
    }
    return create.Plan(**{**base, **kw})  # type: ignore[arg-type]


def test_digest_is_stable_and_sees_any_change() -> None:
    objs = [{"kind": "Namespace", "metadata": {"name": "test-1", "labels": {"a": "1"}}}]
    same = [{"metadata": {"labels": {"a": "1"}, "name": "test-1"}, "kind": "Namespace"}]
    assert create.digest(objs) == create.digest(same)
    changed = [{"kind": "Namespace", "metadata": {"name": "test-1", "labels": {"a": "2"}}}]
    assert create.digest(objs) != create.digest(changed)


def test_plan_says_what_it_will_do_and_skips_complete_clusters() -> None:
    p = _plan(new={3, 4}, partial={2}, complete={1})
    assert p.todo == [2, 3, 4]
    assert p.summary() == "2 new, 1 to finish, 1 already complete"
    assert _plan(new={1, 2, 3, 4}).summary() == "4 new"


def test_batches_keep_order_and_size() -> None:
    assert create._chunks([1, 2, 3, 4, 5], 2) == [[1, 2], [3, 4], [5]]


def test_create_without_a_stack_is_one_line_and_touches_nothing(run_lab, lab_env: dict[str, str]) -> None:
    out = run_lab("create-clusters", "2", "--start", "1")
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert lines == ["error: the management cluster is not set up here (no kubeconfig): run lab up"]
    assert not Path(lab_env["LAB_HOME"]).exists()


def test_bad_ranges_are_usage_errors(run_lab) -> None:
    for args, text in [
        (("0",), "count must be at least 1"),
        (("-3",), "No such option: -3"),
        (("1", "--start", "0"), "start index must be at least 1"),
        (("5", "--start", "9998"), "go past the configured maximum index 9999"),
        (("1", "--parallel", "0"), "--parallel must be at least 1"),
        (("1", "--backing", "Bad_Name"), "invalid backing name"),
    ]:
        out = run_lab("create-clusters", *args)
        assert out.returncode == 2, (args, out.stderr)
        assert out.stderr.strip().startswith("error: ") and text in out.stderr, out.stderr
