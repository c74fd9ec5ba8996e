"""One recorded create run: plan, records, samplers, tracker, convergence and the wait.

RunSampling, the samplers of a run, is shared by every recorded command (clusters and hosts).

The CLI gives a Display (progress) and gets a Result back; everything a report needs goes into the
run's records as it happens, so a killed run still leaves its timings up to the kill.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from lab import management, records, supervised
from lab.clusters import create
from lab.clusters.tracker import Tracker
from lab.config import Settings
from lab.kube import Client
from lab.metrics import MetricsSampler
from lab.phases import Phase, RunKind

SAMPLE_INTERVAL = 5.0
#: After every cluster is Available: samples of what carrying them costs at rest (the report's
#: idle window), IDLE_SAMPLES ticks IDLE_INTERVAL seconds apart.
IDLE_SAMPLES, IDLE_INTERVAL = 2, 2.5
#: lab's own process in the samples (its CPU share is one of the benchmark's questions)
LAB_COMPONENT = "lab"


class Display(Protocol):
    def planned(self, plan: create.Plan) -> None: ...
    def update(self, counts: dict[Phase, int], done: int, total: int) -> None: ...
    def message(self, text: str) -> None: ...


@dataclass
class Result:
    run_id: int
    plan: create.Plan
    waited: bool
    done: list[str] = field(default_factory=list)
    #: name -> what holds it, for clusters not done when the wait ended
    stuck: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, object]:
        p = self.plan
        return {
            "run": self.run_id,
            "clusters": [p.names[i] for i in p.indexes],
            "new": sorted(p.names[i] for i in p.new),
            "finished": sorted(p.names[i] for i in p.partial),
            "unchanged": sorted(p.names[i] for i in p.complete),
            "placement": {p.names[i]: p.placement[i] for i in p.indexes},
            "waited": self.waited,
            "available": self.done,
            "stuck": self.stuck,
            "seconds": round(self.seconds, 3),
        }


def component_pids(settings: Settings) -> dict[str, int]:
    """Every supervised process of the stack (workload apiservers as wkl-<cluster>) and lab itself."""
    from lab.runtime.supervise import Supervisor

    out = {LAB_COMPONENT: os.getpid()}
    sup = Supervisor(settings)
    try:
        procs = sup.processes() if sup.alive() else []
    except OSError:
        procs = []
    for p in procs:
        if p.get("statename") == "RUNNING" and p.get("pid"):
            out[p["name"]] = int(p["pid"])
    return out


def shards_snapshot(settings: Settings) -> dict[str, int]:
    """`shards`: K for a run on a stack of K > 1 KCP managers (lab.shards), so its report shows each
    shard; nothing with one, so an unsharded run records what it always did."""
    k = management.shards(settings)
    return {"shards": k} if k > 1 else {}


def run_snapshot(settings: Settings, **extra: Any) -> dict[str, Any]:
    """The settings every recorded run (clusters and hosts, lab.records.RunScope) stores, with what
    was live on the stack when it started, taken here once so no kind of run leaves one out: the
    tuning profile the managers run with (a report quotes each manager's client QPS from it, and
    falls back to upstream defaults without it), the mode lab acted in (a kind-mode home need not set
    LAB_MODE), the programs running a patched build, and the KCP shard count (shards_snapshot).
    `extra`: what is particular to the command (count, start, ...)."""
    return records.settings_snapshot(
        settings,
        management.tuning_profile(settings),
        mode=management.current_mode(settings),
        patched=supervised.running_patches(settings),
        **shards_snapshot(settings),
        **extra,
    )


def metrics_sampler(settings: Settings, db: records.Records, run_id: int) -> MetricsSampler:
    """The run's Prometheus sampler over every endpoint the management provider knows (lab.metrics)."""
    from lab.management import for_settings

    return MetricsSampler(
        lambda rows: db.metric_many(run_id, rows),
        for_settings(settings).metrics_targets(),
        settings.metrics_interval,
    )


class RunSampling:
    """Both samplers of one recorded run: RSS/CPU of every component (records.Sampler, every
    SAMPLE_INTERVAL seconds) and the Prometheus metrics of every endpoint (metrics_sampler), the
    data of a report's components table, CPU/RSS charts and bottleneck section.

    Every recorded command (create/delete/scale/upgrade clusters, create/delete hosts) samples
    through this one class, so their reports answer the same questions: `with RunSampling(settings,
    db, run.id) as sampling:` around the run's work, and `sampling.idle()` once everything it waited
    for is done when the report should see the stack at rest.
    """

    def __init__(self, settings: Settings, db: records.Records, run_id: int) -> None:
        self.resources = records.Sampler(db, run_id, lambda: component_pids(settings), SAMPLE_INTERVAL)
        self.metrics = metrics_sampler(settings, db, run_id)
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> RunSampling:
        with contextlib.ExitStack() as stack:  # the resource sampler stopped if metrics fail to start
            stack.enter_context(self.resources)
            stack.enter_context(self.metrics)
            self._stack = stack.pop_all()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()  # metrics first (its last tick), then resources

    def idle(self) -> None:
        """IDLE_SAMPLES resource samples IDLE_INTERVAL seconds apart: the report's idle window, what
        carrying the clusters costs with nothing changing."""
        for _ in range(IDLE_SAMPLES):
            time.sleep(IDLE_INTERVAL)
            self.resources.tick()


def create_clusters(
    settings: Settings,
    mgmt: Client,
    indexes: Sequence[int],
    backings: Sequence[str],
    display: Display,
    *,
    parallel: int = 10,
    wait: bool = True,
    timeout: float = 1800.0,
    preflight: Callable[[create.Plan], None] = lambda _plan: None,
    payload_kb: int = 0,
    n_workers: int = 0,
) -> Result:
    """preflight: checks the plan against this host before anything is created (raises to refuse).
    payload_kb: KiB of files in each KubeadmControlPlane (lab.manifests.payload); n_workers: worker
    hosts and MachineDeployment replicas of each cluster (lab.manifests.workers)."""
    create.check_stack(mgmt)
    plan, opened = create.make_plan(settings, mgmt, indexes, backings, payload_kb, n_workers)
    preflight(plan)
    started = time.monotonic()
    snapshot = run_snapshot(
        settings,
        start=indexes[0],
        count=len(indexes),
        parallel=parallel,
        backings=sorted({plan.placement[i] for i in indexes}),
        payload_kb=payload_kb,
        workers=n_workers,
    )
    with (
        records.open_records(settings) as db,
        records.RunScope(db, RunKind.create, sys.argv, snapshot) as run,
    ):
        run_id = run.id
        names = {plan.names[i]: i for i in indexes}
        tracker = Tracker(
            mgmt,
            settings.prefix,
            names,
            db,
            run_id,
            record=[plan.names[i] for i in plan.todo],
            on_change=lambda: display.update(tracker.counts(), tracker.done(), len(names)),
            workers=n_workers,
        )
        creator = create.Creator(settings, mgmt, plan, opened, tracker, parallel, payload_kb, n_workers)
        with RunSampling(settings, db, run_id) as sampling, tracker:
            creator.namespaces = create.existing_namespaces(settings, mgmt)
            stale = creator.confirm_complete()
            display.planned(plan)
            if stale:
                display.message(f"{len(stale)} existing cluster(s) render differently now: converging them")
            creator.run()
            result = Result(run_id, plan, wait)
            if wait:
                if tracker.wait(started + timeout):
                    sampling.idle()
                result.stuck = tracker.pending()
            result.done = [n for n in names if n not in tracker.pending()]
        run.timed_out = bool(result.stuck)
        result.seconds = time.monotonic() - started
        return result
