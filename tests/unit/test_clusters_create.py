from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from support.fakes import FakeBacking, FakeMgmt

from lab import config, naming
from lab.clusters import create
from lab.clusters.tracker import Tracker
from lab.errors import LabError, UsageError
from lab.records import Phase

Obj = dict[str, Any]


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


# --- planning: placement, what exists, stale digests (fakes: no process, no apiserver) -----------


@pytest.fixture
def settings(lab_env: dict[str, str]) -> config.Settings:
    return config.load()


def _existing(name: str, backing: str | None = None, digest: str | None = None) -> Obj:
    labels = {naming.CLUSTER_LABEL: name}
    if backing:
        labels[naming.BACKING_LABEL] = backing
    meta: Obj = {"name": name, "labels": labels}
    if digest:
        meta["annotations"] = {create.DIGEST_ANNOTATION: digest}
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": meta}


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> dict[str, FakeBacking]:
    """The backings make_plan may open by name (add to it); the names it opened, in `opened["log"]`."""
    known: dict[str, FakeBacking] = {}

    def open_backing(_settings: config.Settings, name: str) -> FakeBacking:
        if name not in known:
            raise LabError(f"no backing named {name!r}")
        known[name].log.append((name, "opened", None))
        return known[name]

    monkeypatch.setattr(create, "open_backing", open_backing)
    monkeypatch.setattr(
        create, "open_all", lambda s, names: {n: open_backing(s, n) for n in dict.fromkeys(names)}
    )
    return known


def test_plan_places_new_clusters_where_most_room_is_left(
    settings: config.Settings, opened: dict[str, FakeBacking]
) -> None:
    log: list = []
    opened["a"] = FakeBacking("a", capacity=2, carries=["test-90"], log=log)
    opened["b"] = FakeBacking("b", capacity=3, log=log)
    plan, backings = create.make_plan(settings, FakeMgmt(log=log), [1, 2, 3, 4], ["a", "b"])
    # free: a 1, b 3 -> b, b, then a tie (a first, the order given), then b
    assert plan.placement == {1: "b", 2: "b", 3: "a", 4: "b"}
    assert plan.new == {1, 2, 3, 4} and plan.complete == set() and plan.partial == set()
    assert plan.todo == [1, 2, 3, 4] and plan.names[3] == "test-3"
    assert set(backings) == {"a", "b"}
    # each backing checks only the new clusters placed on it, and nothing is ensured while planning
    assert ("a", "preflight", ["test-3"]) in log
    assert ("b", "preflight", ["test-1", "test-2", "test-4"]) in log
    assert not [e for e in log if e[1] in ("ensure", "wait_ready", "remove", "apply", "apply_one")]


def test_plan_defaults_to_the_local_backing(
    settings: config.Settings, opened: dict[str, FakeBacking]
) -> None:
    opened[naming.LOCAL_BACKING] = FakeBacking(naming.LOCAL_BACKING)
    plan, backings = create.make_plan(settings, FakeMgmt(), [7], [])
    assert plan.placement == {7: naming.LOCAL_BACKING} and list(backings) == [naming.LOCAL_BACKING]


def test_plan_leaves_existing_clusters_where_they_live(
    settings: config.Settings, opened: dict[str, FakeBacking]
) -> None:
    log: list = []
    for n in ("a", "c", naming.LOCAL_BACKING):
        opened[n] = FakeBacking(n, capacity=5, log=log)
    mgmt = FakeMgmt(
        {
            "Namespace": [
                _existing("test-2", backing="c", digest="d1"),  # complete, on a backing not asked for
                _existing("test-3"),  # no backing label: local; no digest: crashed half-way
                _existing("other-4", backing="a"),  # another prefix
                {"kind": "Namespace", "metadata": {"name": "test-1"}},  # not a lab cluster's namespace
            ]
        },
        log=log,
    )
    plan, backings = create.make_plan(settings, mgmt, [1, 2, 3, 4], ["a"])
    assert plan.placement == {1: "a", 2: "c", 3: naming.LOCAL_BACKING, 4: "a"}
    assert plan.complete == {2} and plan.partial == {3} and plan.new == {1, 4}
    assert plan.todo == [1, 3, 4] and plan.summary() == "2 new, 1 to finish, 1 already complete"
    assert set(backings) == {"a", "c", naming.LOCAL_BACKING}
    assert [e for e in log if e[1] == "preflight"] == [("a", "preflight", ["test-1", "test-4"])]
    assert log[:2] == [("a", "opened", None), ("mgmt", "list", "Namespace")]


def test_plan_refuses_what_does_not_fit_before_anything_changes(
    settings: config.Settings, opened: dict[str, FakeBacking]
) -> None:
    log: list = []
    opened["a"] = FakeBacking("a", capacity=2, carries=["test-80"], log=log)
    with pytest.raises(UsageError, match=r"2 new cluster\(s\) do not fit: free capacity is 1 \(a 1 of 2\)"):
        create.make_plan(settings, FakeMgmt(log=log), [1, 2], ["a"])
    assert [e[1] for e in log] == ["opened", "list"]


def test_plan_of_an_unknown_backing_fails_before_listing(
    settings: config.Settings, opened: dict[str, FakeBacking]
) -> None:
    mgmt = FakeMgmt()
    with pytest.raises(LabError, match="no backing named 'nope'"):
        create.make_plan(settings, mgmt, [1], ["nope"])
    assert mgmt.log == []


def _creator(
    settings: config.Settings, placement: dict[int, str], log: list, **kw: Any
) -> tuple[create.Creator, FakeMgmt, dict[str, FakeBacking]]:
    mgmt = FakeMgmt(log=log)
    backings = {n: FakeBacking(n, log=log) for n in dict.fromkeys(placement.values())}
    plan = create.Plan(
        indexes=sorted(placement),
        names={i: naming.cluster_name(settings.prefix, i) for i in placement},
        placement=placement,
        new=set(placement) - kw.pop("complete", set()),
    )
    return create.Creator(settings, mgmt, plan, backings, **kw), mgmt, backings  # type: ignore[arg-type]


def test_a_stale_digest_moves_a_complete_cluster_back_to_converge(settings: config.Settings) -> None:
    creator, _, _ = _creator(settings, {1: "local", 2: "local", 3: "local"}, [])
    creator.plan.new.clear()
    creator.plan.complete.update({1, 2, 3})
    same = create.digest(creator.render(1))
    creator.namespaces = {
        1: _existing("test-1", digest=same),
        2: _existing("test-2", digest="rendered-by-an-older-lab"),
        3: _existing("test-3"),  # annotation gone since the plan was made
    }
    assert creator.confirm_complete() == {2, 3}
    assert creator.plan.complete == {1} and creator.plan.partial == {2, 3} and creator.plan.todo == [2, 3]
    # rendering is deterministic: the PKI made on the first render is reused
    assert create.digest(creator.render(1)) == same


# --- the order inside a batch ---------------------------------------------------------------------


def _steps(log: list) -> list[tuple[str, str, Any]]:
    return [e for e in log if e[1] in ("apply", "apply_one", "ensure", "wait_ready")]


def test_a_batch_goes_namespaces_backings_ready_objects_then_digest(settings: config.Settings) -> None:
    log: list = []
    placement = {1: "a", 2: "b", 3: "a", 4: "b"}
    tracker = Tracker(FakeMgmt(), settings.prefix, {f"test-{i}": i for i in placement})  # type: ignore[arg-type]
    creator, mgmt, backings = _creator(settings, placement, log, tracker=tracker, parallel=3)
    creator.run()
    steps = _steps(log)
    namespace_applies = [e[2] for e in steps if e[1] == "apply" and e[2][0][0] == "Namespace"]
    assert [len(a) for a in namespace_applies] == [3, 1]  # two batches of at most --parallel
    # batch 1: the namespaces in one apply, every backing's apiservers started, then waited for
    assert steps[:5] == [
        ("mgmt", "apply", [("Namespace", "test-1"), ("Namespace", "test-2"), ("Namespace", "test-3")]),
        ("a", "ensure", ["test-1", "test-3"]),
        ("b", "ensure", ["test-2"]),
        ("a", "wait_ready", ["test-1", "test-3"]),
        ("b", "wait_ready", ["test-2"]),
    ]
    # then, per cluster (threads: any order between clusters), the rest of its objects, then its digest
    first = steps[5:11]
    for name in ("test-1", "test-2", "test-3"):
        mine = [e for e in first if name in json.dumps(e[2])]
        assert [e[1] for e in mine] == ["apply", "apply_one"], mine
        assert "Namespace" not in {kind for kind, _ in mine[0][2]} and len(mine[0][2]) > 5
        assert mine[1][2] == ("Namespace", name, create.DIGEST_MANAGER)
    # batch 2 starts only after batch 1 is complete, in the same order
    assert steps[11:] == [
        ("mgmt", "apply", [("Namespace", "test-4")]),
        ("b", "ensure", ["test-4"]),
        ("b", "wait_ready", ["test-4"]),
        ("mgmt", "apply", steps[14][2]),
        ("mgmt", "apply_one", ("Namespace", "test-4", create.DIGEST_MANAGER)),
    ]
    # the digest written is the digest of exactly what was rendered and applied
    digests = {
        p["metadata"]["name"]: p["metadata"]["annotations"][create.DIGEST_ANNOTATION] for p in mgmt.patches
    }
    assert digests == {f"test-{i}": create.digest(creator.render(i)) for i in placement}
    assert backings["a"].carried == {"test-1", "test-3"} and backings["b"].carried == {"test-2", "test-4"}
    assert tracker.counts()[Phase.applied] == 4


def test_a_laggard_apiserver_stops_the_batch_before_any_object_or_digest(settings: config.Settings) -> None:
    log: list = []
    creator, mgmt, backings = _creator(settings, {1: "a", 2: "a"}, log)
    backings["a"].not_ready.add("test-2")
    with pytest.raises(LabError, match="test-2: apiserver not ready"):
        creator.run()
    assert [e[1] for e in _steps(log)] == ["apply", "ensure", "wait_ready"]
    assert mgmt.patches == []  # no digest: a re-run converges both again


def test_one_refused_cluster_fails_the_batch_and_keeps_its_digest_off(settings: config.Settings) -> None:
    log: list = []
    creator, mgmt, _ = _creator(settings, {1: "a", 2: "a", 3: "a"}, log, parallel=3)
    mgmt.refuse.add(("Cluster", "test-2"))
    with pytest.raises(
        LabError, match="1 of 3 clusters failed to apply; first test-2: apply refused: Cluster test-2"
    ):
        creator.run()
    assert sorted(p["metadata"]["name"] for p in mgmt.patches) == ["test-1", "test-3"]


def test_complete_clusters_apply_nothing_but_their_apiservers_are_ensured(settings: config.Settings) -> None:
    log: list = []
    creator, _, _ = _creator(settings, {1: "a", 2: "a"}, log, complete={1})
    creator.plan.complete.add(1)
    creator.run()
    assert _steps(log) == [
        ("mgmt", "apply", [("Namespace", "test-2")]),
        ("a", "ensure", ["test-2"]),
        ("a", "wait_ready", ["test-2"]),
        ("mgmt", "apply", _steps(log)[3][2]),
        ("mgmt", "apply_one", ("Namespace", "test-2", create.DIGEST_MANAGER)),
        ("a", "ensure", ["test-1"]),
        ("a", "wait_ready", ["test-1"]),
    ]


def test_plan_refuses_existing_clusters_of_another_payload(
    settings: config.Settings, opened: dict[str, FakeBacking]
) -> None:
    """A changed --payload-kb would change the KCP's files: KCP rolls out to a second Machine the
    cluster has no host for. Refused before anything changes; the same payload converges."""
    from lab.manifests import payload

    log: list = []
    opened[naming.LOCAL_BACKING] = FakeBacking(naming.LOCAL_BACKING, capacity=5, log=log)
    with_payload = _existing("test-2", digest="d1")
    with_payload["metadata"]["annotations"][payload.ANNOTATION] = "30"
    mgmt = FakeMgmt({"Namespace": [_existing("test-1", digest="d0"), with_payload]}, log=log)
    with pytest.raises(
        LabError, match=r"1 existing cluster\(s\) \(test-2 first\) were created with --payload-kb 30, not 0"
    ):
        create.make_plan(settings, mgmt, [1, 2, 3], [])
    with pytest.raises(LabError, match=r"test-1 first.*--payload-kb 0, not 30"):
        create.make_plan(settings, mgmt, [1, 2, 3], [], 30)
    plan, _ = create.make_plan(settings, mgmt, [2, 3], [], 30)
    assert plan.complete == {2} and plan.new == {3}
    assert not [e for e in log if e[1] in ("ensure", "apply", "apply_one", "preflight") and e[0] != "local"]
