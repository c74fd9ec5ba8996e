"""delete-clusters: argument checks, target and leftover selection, and the order of the steps."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from support.fakes import FakeBacking, FakeMgmt

from lab import config, naming
from lab.cli.delete import targets
from lab.clusters import delete as d
from lab.errors import UsageError
from lab.kube import ApiError
from lab.phases import Phase

Obj = dict[str, Any]


def _ns(name: str, backing: str | None = None, **meta: Any) -> Obj:
    labels = {naming.CLUSTER_LABEL: name}
    if backing:
        labels[naming.BACKING_LABEL] = backing
    return {"kind": "Namespace", "metadata": {"name": name, "labels": labels, **meta}}


# --- arguments -----------------------------------------------------------------------------


@pytest.fixture
def settings(lab_env: dict[str, str]) -> config.Settings:
    return config.load()


def test_targets_from_a_range_or_all(settings: config.Settings) -> None:
    assert targets(900, 2, False, settings) == ["test-900", "test-901"]
    assert targets(None, 2, False, settings) == ["test-1", "test-2"]
    assert targets(None, None, True, settings) is None


@pytest.mark.parametrize(
    ("start", "count", "all_", "message"),
    [
        (None, None, False, "say which clusters: --start S --count N, or --all"),
        (3, None, False, "--start needs --count"),
        (1, 2, True, "--all deletes every cluster: it takes no --start or --count"),
        (None, 2, True, "it takes no --start or --count"),
        (0, 2, False, "start index must be at least 1, got 0"),
        (1, 0, False, "count must be at least 1, got 0"),
        (1, -3, False, "count must be at least 1, got -3"),
        (9999, 2, False, "past the configured maximum index 9999"),
    ],
)
def test_bad_arguments_are_usage_errors(
    settings: config.Settings, start: int | None, count: int | None, all_: bool, message: str
) -> None:
    with pytest.raises(UsageError, match=message.replace("-", r"\-").replace(".", r"\.")):
        targets(start, count, all_, settings)


def test_cli_bad_input_is_one_line_and_exit_2(run_lab: Callable[..., Any]) -> None:
    for args in (
        [],
        ["--all", "--count", "2"],
        ["--start", "0", "--count", "1"],
        ["--count", "1", "--timeout", "0"],
    ):
        out = run_lab("delete-clusters", *args)
        assert out.returncode == 2, (args, out.stderr)
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), out.stderr


def test_cli_without_a_stack_says_so_and_creates_nothing(
    run_lab: Callable[..., Any], lab_env: dict[str, str]
) -> None:
    from pathlib import Path

    out = run_lab("delete-clusters", "--all")
    assert out.returncode == 1
    assert out.stderr.strip().splitlines() == [
        "error: the management cluster is not set up here (no kubeconfig): run lab up"
    ]
    assert not (Path(lab_env["LAB_HOME"]) / "records.sqlite").exists()


# --- selection -----------------------------------------------------------------------------


def test_select_takes_named_clusters_with_a_namespace_in_index_order() -> None:
    nss = [_ns("test-10"), _ns("test-2", backing="vm1"), _ns("test-1"), _ns("other-3"), _ns("test-02")]
    found, missing = d.select("test", ["test-1", "test-2", "test-5"], nss)
    assert found == [d.Target("test-1", 1, "local"), d.Target("test-2", 2, "vm1")]
    assert missing == {"test-5"}
    every, missing = d.select("test", None, nss)
    assert [t.name for t in every] == ["test-1", "test-2", "test-10"] and missing == set()


def test_leftovers_are_what_a_backing_carries_without_a_namespace() -> None:
    present = {"local": {"test-1", "test-10", "test-3", "other-4", "test-03"}, "vm1": {"test-7"}}
    assert d.leftovers("test", None, ["test-3"], present) == {
        "local": ["test-1", "test-10"],
        "vm1": ["test-7"],
    }
    # test-1 asked for: never test-10 (the prefix bug of the seed scripts)
    assert d.leftovers("test", ["test-1"], [], present) == {"local": ["test-1"]}
    assert d.leftovers("test", ["test-3"], ["test-3"], present) == {}


def test_plan_names_and_summary() -> None:
    plan = d.Plan([d.Target("test-2", 2, "local")], {"local": ["test-10", "test-9"]})
    assert plan.names == ["test-2", "test-9", "test-10"]
    assert plan.summary() == "1 cluster(s) to delete, 2 leftover(s) without a namespace to sweep"


def test_holds_say_what_a_cluster_waits_for() -> None:
    cluster = {"metadata": {"name": "test-1", "finalizers": ["cluster.cluster.x-k8s.io"]}, "status": {}}
    machines = [{"status": {"phase": "Deleting"}}, {"status": {"phase": "Deleting"}}]
    assert d.cluster_hold(cluster, machines) == "Cluster deleting: 2 Machine(s) left (Deleting)"
    assert d.cluster_hold(cluster, []) == "Cluster deleting, finalizers ['cluster.cluster.x-k8s.io']"
    released = {"spec": {"online": False}, "status": {"provisioning": {"state": "provisioned"}}}
    consumed = {"spec": {"image": {"url": "http://x"}}, "status": {"provisioning": {"state": "provisioned"}}}
    assert d.cluster_hold(cluster, machines[:1], [released, consumed]) == (
        "Cluster deleting: 1 Machine(s) left (Deleting); 1 BareMetalHost(s) released, waiting for BMO to deprovision"
    )
    cond = {"conditions": [{"type": "Deleting", "status": "True", "message": "* Control plane: deleting"}]}
    assert d.cluster_hold({**cluster, "status": cond}, []) == "Cluster deleting: * Control plane: deleting"
    hosts = [{"status": {"provisioning": {"state": "deleting"}}}]
    assert d.hosts_hold(hosts) == "1 BareMetalHost(s) being deleted (deleting)"
    ns = {
        "status": {
            "conditions": [
                {"type": "NamespaceContentRemaining", "status": "True", "message": "1 Secret left"}
            ]
        }
    }
    assert d.namespace_hold(ns) == "namespace: 1 Secret left"
    assert d.namespace_hold({"status": {}}) == "namespace being deleted"


def test_timestamps_of_the_api_are_epoch_seconds() -> None:
    assert d._timestamp("1970-01-01T00:01:40Z") == 100.0
    assert d._timestamp(None) is None and d._timestamp("garbage") is None


# --- the order of the steps ----------------------------------------------------------------


def _snap(
    ns: Obj | None, cluster: Obj | None = None, machines: int = 0, hosts: list[Obj] | None = None
) -> d.Snapshot:
    return d.Snapshot(
        namespaces={"test-1": ns} if ns else {},
        clusters={"test-1": cluster} if cluster else {},
        machines={"test-1": [{"status": {"phase": "Deleting"}}] * machines},
        hosts={"test-1": hosts or []},
    )


def test_steps_go_cluster_hosts_secrets_namespace_backing(settings: config.Settings) -> None:
    mgmt, backing = FakeMgmt(), FakeBacking()
    plan = d.Plan([d.Target("test-1", 1, "local")], {})
    seen: list[tuple[int, int]] = []
    deleter = d.Deleter(
        settings,
        mgmt,
        plan,
        {"local": backing},
        on_progress=lambda c, done, total: seen.append((done, total)),
    )  # type: ignore[arg-type]
    ns = _ns("test-1")
    cluster = {
        "apiVersion": "cluster.x-k8s.io/v1beta2",
        "metadata": {"name": "test-1", "namespace": "test-1"},
    }
    deleter.request(_snap(ns, cluster, machines=1))
    assert mgmt.calls == [("Cluster", "test-1", "test-1")] and deleter.requested == ["test-1"]

    deleting = {**cluster, "metadata": {**cluster["metadata"], "deletionTimestamp": "2026-11-21T19:00:00Z"}}
    host = {
        "apiVersion": "metal3.io/v1alpha1",
        "metadata": {"name": "test-1-host-0", "namespace": "test-1"},
        "status": {},
    }
    mgmt.calls.clear()
    waiting = deleter.step(_snap(ns, deleting, machines=1, hosts=[host]))
    assert mgmt.calls == [] and "1 Machine(s) left" in waiting["test-1"]  # nothing else while CAPI works
    assert Phase.machines_deleted not in deleter.reached["test-1"]

    waiting = deleter.step(_snap(ns, deleting, machines=0, hosts=[host]))
    assert mgmt.calls == [] and Phase.machines_deleted in deleter.reached["test-1"]

    waiting = deleter.step(_snap(ns, None, hosts=[host]))  # Cluster gone: the hosts go next
    assert mgmt.calls == [("BareMetalHost", "test-1-host-0", "test-1")]
    assert Phase.cluster_deleted in deleter.reached["test-1"] and "BareMetalHost" in waiting["test-1"]

    mgmt.calls.clear()
    waiting = deleter.step(_snap(ns))  # hosts gone: secrets, then the namespace
    assert sorted(mgmt.calls) == sorted(
        [("DELETE", "/api/v1/namespaces/test-1/secrets", None), ("Namespace", "test-1", None)]
    )
    assert backing.removed == [] and waiting["test-1"] == "namespace being deleted"

    mgmt.calls.clear()
    waiting = deleter.step(_snap(ns | {"metadata": {**ns["metadata"], "deletionTimestamp": "x"}}))
    assert mgmt.calls == [] and backing.removed == []  # the apiserver stays until the namespace is gone

    waiting = deleter.step(_snap(None))
    assert waiting == {} and backing.removed == [["test-1"]]
    assert deleter.reached["test-1"] == set(d.DELETE_PHASES) and deleter.done() == ["test-1"]
    assert seen[-1] == (1, 1)


def test_rerun_after_a_crash_picks_up_from_what_it_sees(settings: config.Settings) -> None:
    """Cluster already deleting (a --no-wait run): no second DELETE, its deletionTimestamp is the origin."""
    mgmt, backing = FakeMgmt(), FakeBacking()
    plan = d.Plan([d.Target("test-1", 1, "local")], {"local": ["test-4"]})
    deleter = d.Deleter(settings, mgmt, plan, {"local": backing})  # type: ignore[arg-type]
    cluster = {
        "metadata": {"name": "test-1", "namespace": "test-1", "deletionTimestamp": "2026-11-21T19:00:00Z"}
    }
    deleter.request(_snap(_ns("test-1"), cluster))
    deleter.sweep()
    assert mgmt.calls == [] and deleter.requested == []
    assert backing.removed == [["test-4"]] and deleter.done() == ["test-4"]
    assert Phase.delete_requested in deleter.reached["test-1"]


class ListingMgmt:
    """Answers LISTs from canned items and remembers which kinds were asked for."""

    def __init__(self, items: dict[str, list[Obj]]) -> None:
        self.items = items
        self.listed: list[str] = []

    def list(self, api_version: str, kind: str, **_kw: Any) -> list[Obj]:
        self.listed.append(kind)
        return self.items.get(kind, [])


def test_a_pass_lists_only_the_kinds_some_cluster_still_waits_on() -> None:
    items = {
        "Namespace": [_ns("test-1"), _ns("test-2")],
        "Cluster": [
            {"metadata": {"name": "test-1", "namespace": "test-1"}},
            {"metadata": {"name": "other", "namespace": "test-1"}},
        ],
        "Machine": [
            {"metadata": {"name": "m", "namespace": "test-1"}},
            {"metadata": {"name": "m", "namespace": "x"}},
        ],
        "BareMetalHost": [{"metadata": {"name": "h", "namespace": "test-2"}}],
    }
    mgmt = ListingMgmt(items)
    snap = d.Snapshot.take(mgmt, {"test-1", "test-2"})  # type: ignore[arg-type]
    assert mgmt.listed == ["Namespace", "Cluster", "Machine", "BareMetalHost"]
    assert list(snap.clusters) == ["test-1"] and snap.clusters["test-1"]["metadata"]["name"] == "test-1"
    assert list(snap.machines) == ["test-1"] and list(snap.hosts) == ["test-2"]
    mgmt.listed.clear()
    snap = d.Snapshot.take(mgmt, {"test-2"}, capi=False, hosts=True)  # type: ignore[arg-type]
    assert mgmt.listed == ["Namespace", "BareMetalHost"] and snap.clusters == {}
    mgmt.listed.clear()
    d.Snapshot.take(mgmt, {"test-2"}, capi=False, hosts=False)  # type: ignore[arg-type]
    assert mgmt.listed == ["Namespace"]


def test_passes_slow_down_with_many_clusters() -> None:
    assert d.poll_interval(3) == d.POLL
    assert d.poll_interval(1000) == 5.0


class StarvedMgmt(FakeMgmt):
    """A management apiserver whose cached LISTs time out `failures` times, as one did
    at load 30 with 100 clusters deleting; remembers whether each LIST asked for the watch cache."""

    def __init__(self, objects: dict[str, list[Obj]], failures: int) -> None:
        super().__init__(objects)
        self.failures = failures
        self.cached: list[bool] = []

    def list(self, api_version: str, kind: str, label_selector: str | None = None, **kw: Any) -> list[Obj]:
        self.cached.append(bool(kw.get("cached")))
        if kw.get("cached") and self.failures > 0:
            self.failures -= 1
            raise ApiError(0, "Connection", f"GET {kind}: cannot reach the apiserver: Read timed out.")
        return super().list(api_version, kind, label_selector)


def test_a_pass_the_apiserver_does_not_answer_waits_for_the_next(
    settings: config.Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first look is consistent; the passes after it read the watch cache, and one that fails
    with a retryable error only delays the run: it ends when the namespace is gone."""
    monkeypatch.setattr(d, "POLL", 0.01)
    mgmt, backing = StarvedMgmt({"Namespace": [_ns("test-1")]}, failures=3), FakeBacking()
    plan = d.Plan([d.Target("test-1", 1, "local")], {})
    deleter = d.Deleter(settings, mgmt, plan, {"local": backing})  # type: ignore[arg-type]
    reasons: list[str] = []
    real_take = d.Snapshot.take

    def take(*args: Any, **kw: Any) -> d.Snapshot:
        if mgmt.failures == 0:
            mgmt.objects["Namespace"] = []  # the namespace controller finished meanwhile
        return real_take(*args, **kw)

    monkeypatch.setattr(d.Snapshot, "take", take)
    real_step = deleter.step

    def step(snap: d.Snapshot) -> dict[str, str]:
        out = real_step(snap)
        reasons.extend(out.values())
        return out

    monkeypatch.setattr(deleter, "step", step)
    assert deleter.run(wait=True, deadline=time.monotonic() + 30) == {}
    assert deleter.done() == ["test-1"] and backing.removed == [["test-1"]]
    # the first look (Namespace, Cluster, Machine, BareMetalHost) is consistent, every later one cached
    assert mgmt.failures == 0 and mgmt.cached[:4] == [False] * 4 and all(mgmt.cached[4:])
    assert reasons[0] == "namespace being deleted"


def test_an_apiserver_that_never_answers_again_ends_at_the_deadline_saying_so(
    settings: config.Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(d, "POLL", 0.01)
    mgmt = StarvedMgmt({"Namespace": [_ns("test-1")]}, failures=10**6)
    deleter = d.Deleter(
        settings, mgmt, d.Plan([d.Target("test-1", 1, "local")], {}), {"local": FakeBacking()}
    )  # type: ignore[arg-type]
    waiting = deleter.run(wait=True, deadline=time.monotonic() + 0.5)
    assert list(waiting) == ["test-1"]
    assert waiting["test-1"].startswith("management API not answering: GET Namespace: cannot reach")
