"""lab.hosts: planning create and delete over what exists (pure over one inventory), the host
phases, the report of a hosts run, and bad input through the real CLI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lab import naming, phases, report
from lab.config import Settings
from lab.errors import LabError
from lab.hosts import create, delete
from lab.hosts.inventory import Inventory
from lab.manifests import hosts
from lab.manifests.hosts import HostState
from lab.phases import PHASES, Phase, RunKind
from lab.records import Event, Run

KEY = b"k" * 32
T0 = 1_700_000_000.0


def _inventory(
    existing: dict[int, HostState], *, no_secret: tuple[int, ...] = (), deleting: tuple[int, ...] = ()
) -> Inventory:
    inv = Inventory({"metadata": {"name": "test-hosts"}})
    for i, state in existing.items():
        secret, bmh = hosts.host_objects("test", i, state, KEY)
        if i in deleting:
            bmh["metadata"]["deletionTimestamp"] = "2026-11-30T16:00:00Z"
        inv.hosts[i] = bmh
        if i not in no_secret:
            inv.secrets[i] = secret
    return inv


def test_create_plan_creates_only_what_is_missing(tmp_path: Any) -> None:
    s = Settings(home=tmp_path)
    inv = _inventory({1: HostState.provisioned, 2: HostState.provisioned}, no_secret=(2,))
    plan = create.make_plan(s, inv, [1, 2, 3], HostState.provisioned)
    assert (plan.new, plan.existing) == ([2, 3], [1])
    assert plan.names[3] == "test-bmh-3" and plan.namespace == "test-hosts"
    assert create.make_plan(s, Inventory(None), [5], HostState.available).new == [5]


@pytest.mark.parametrize(
    ("inv", "expected"),
    [
        (_inventory({2: HostState.available}), "test-bmh-2 exist for state available, not provisioned"),
        (_inventory({2: HostState.provisioned}, deleting=(2,)), "test-bmh-2 are being deleted"),
    ],
)
def test_create_plan_refuses_hosts_in_the_way(tmp_path: Any, inv: Inventory, expected: str) -> None:
    with pytest.raises(LabError, match=expected):
        create.make_plan(Settings(home=tmp_path), inv, [1, 2, 3], HostState.provisioned)


def test_create_plan_refuses_a_terminating_namespace(tmp_path: Any) -> None:
    inv = Inventory({"metadata": {"name": "test-hosts", "deletionTimestamp": "2026-11-30T16:00:00Z"}})
    with pytest.raises(LabError, match="namespace test-hosts is being deleted"):
        create.make_plan(Settings(home=tmp_path), inv, [1], HostState.provisioned)


def test_delete_plan_removes_the_namespace_only_with_its_last_host(tmp_path: Any) -> None:
    s = Settings(home=tmp_path)
    inv = _inventory({1: HostState.available, 2: HostState.available, 4: HostState.available})
    some = delete.make_plan(s, inv, [1, 2, 3])
    assert some.indexes == [1, 2] and not some.remove_namespace
    every = delete.make_plan(s, inv, None)
    assert every.indexes == [1, 2, 4] and every.remove_namespace
    assert delete.make_plan(s, inv, [1, 2, 4]).remove_namespace
    empty = delete.make_plan(s, Inventory({"metadata": {"name": "test-hosts"}}), None)
    assert empty.indexes == [] and empty.remove_namespace  # a crash left the namespace: it goes
    assert not delete.make_plan(s, Inventory(None), None).remove_namespace


def test_a_bmc_secret_without_its_host_is_deleted_too(tmp_path: Any) -> None:
    inv = _inventory({3: HostState.available})
    del inv.hosts[3]
    assert delete.make_plan(Settings(home=tmp_path), inv, None).indexes == [3]


def test_host_phases_follow_bmo_states() -> None:
    def bmh(state: str) -> dict[str, Any]:
        return {"status": {"provisioning": {"state": state}}}

    assert phases.host_phase(bmh("provisioned")) is Phase.host_provisioned
    assert phases.host_phase(bmh("powering off before delete")) is Phase.host_powering_off
    assert phases.host_phase(bmh("")) is None and phases.host_phase({}) is None
    assert phases.run_phases(RunKind.create_hosts, {"state": "available"})[-1] is Phase.host_available
    assert phases.run_phases(RunKind.create_hosts, {"state": "provisioned"})[-1] is Phase.host_provisioned
    assert phases.run_phases(RunKind.delete_hosts)[-1] is Phase.host_deleted
    for kind in (RunKind.create_hosts, RunKind.delete_hosts):
        order = PHASES[kind]
        assert all(phases.PREVIOUS[p] in order for p in order[1:])


def test_report_of_an_available_hosts_run_ends_at_available() -> None:
    run = Run(3, RunKind.create_hosts, T0, T0 + 60, "ok", ["lab"], {"state": "available"}, {"cores": 2})
    order = phases.run_phases(RunKind.create_hosts, run.settings)
    events = [
        Event(naming.host_name("test", i), i, p, T0 + i + k * 2.0)
        for i in (1, 2)
        for k, p in enumerate(order)
    ]
    model = report.build(run, events)
    assert model.final_phase == "available" and model.done == 2
    [row] = [p for p in model.phases if p.phase == "available"]
    assert row.since_start.p50 == 8.0 and row.step_from == "preparing" and row.step.max == 2.0
    md = report.to_markdown(model)
    assert "- hosts: 2, available: 2" in md and "| hosts | available | cumulative | step |" in md


@pytest.mark.parametrize(
    ("args", "code", "expected"),
    [
        (["create-hosts", "0"], 2, "count must be at least 1"),
        (["create-hosts", "1", "--start", "0"], 2, "start index must be at least 1"),
        (
            ["create-hosts", "2", "--start", "9999"],
            2,
            "hosts 9999..10000 go past the configured maximum index",
        ),
        (["create-hosts", "1", "--state", "ready"], 2, "Invalid value for '--state'"),
        (["create-hosts", "1", "--timeout", "nan"], 2, "--timeout must be a positive number"),
        (["delete-hosts"], 2, "say which hosts"),
        (["delete-hosts", "--all", "--count", "2"], 2, "takes no --start or --count"),
        (["delete-hosts", "--count", "0"], 2, "count must be at least 1"),
        (["create-hosts", "1"], 1, "the management cluster is not set up here"),
        (["delete-hosts", "--all"], 1, "the management cluster is not set up here"),
    ],
)
def test_bad_input_is_one_error_line_and_changes_nothing(
    run_lab: Any, lab_env: dict[str, str], args: list[str], code: int, expected: str
) -> None:
    r = run_lab(*args)
    assert r.returncode == code, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], r.stderr
    assert r.stdout == ""
    left = [p.name for p in Path(lab_env["LAB_HOME"]).rglob("*") if p.name != "lab.lock"]
    assert left == [], left  # no key, no records, nothing but the lock file


def test_the_tracker_records_each_state_once_for_the_hosts_of_the_run(tmp_path: Path) -> None:
    """States as a watch delivers them: the first sighting of each is its timestamp, states the
    host was already in are not re-timed for hosts the run did not create, and pending() says
    where each host that is not done stands."""
    from lab.hosts.tracker import Tracker
    from lab.records import Records

    def bmh(name: str, state: str) -> dict[str, Any]:
        return {"metadata": {"name": name}, "status": {"provisioning": {"state": state}}}

    with Records(tmp_path / "runs.sqlite") as db:
        run = db.start_run(RunKind.create_hosts, ["lab"], {"state": "provisioned"})
        t = Tracker(None, "test", {"test-bmh-1": 1, "test-bmh-2": 2}, db, run, record=["test-bmh-1"])  # type: ignore[arg-type]
        for state in ("registering", "registering", "inspecting", "provisioned"):
            t.observe(bmh("test-bmh-1", state))
        t.observe(bmh("test-bmh-2", "available"))
        events = db.events(run)
        assert [(e.cluster, e.phase) for e in events] == [
            ("test-bmh-1", Phase.host_registering),
            ("test-bmh-1", Phase.host_inspecting),
            ("test-bmh-1", Phase.host_provisioned),
        ]
        assert events[0].index == 1
        order = phases.run_phases(RunKind.create_hosts, {"state": "provisioned"})
        assert t.counts(order)[Phase.host_provisioned] == 1 and t.counts(order)[Phase.host_available] == 1

        def done(s: Any) -> bool:
            return Phase.host_provisioned in s.reached

        assert t.pending(done) == {"test-bmh-2": "available"}
        assert t.wait(done, 0.0) is False
