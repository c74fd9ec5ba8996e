"""The metrics sampler against the real local stack (issue 14): a create run and a delete run of two
clusters each store samples of every component's Prometheus endpoint, and the counters move while
the clusters come and go. BMO's endpoint is the one behind controller-runtime's authn/authz: a
sample of it proves the TokenRequest token and the RBAC lab applies work end to end.

Indexes 4611-4612 keep clear of the other e2e modules.
"""

from __future__ import annotations

import json
import os
import time
from collections import defaultdict

from support.stack import Stack

from lab import components, records
from lab.metrics import SAMPLER_COMPONENT, SAMPLER_CPU
from lab.stack import managers

TIMEOUT = 600
EVERY = {components.KUBE_APISERVER, components.MGMT_ETCD, components.TENANT_ETCD, *managers.NAMES}


def _series(db: records.Records, run_id: int) -> dict[tuple[str, str, str], list[float]]:
    out: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for s in db.metric_samples(run_id):
        out[(s.component, s.metric, s.labels)].append(s.value)
    return out


def _grew(series: dict[tuple[str, str, str], list[float]], component: str, metric: str) -> list[str]:
    """Labels of `component`'s `metric` series whose last value is above its first."""
    return [lab for (c, m, lab), v in series.items() if c == component and m == metric and v[-1] > v[0]]


def test_create_and_delete_runs_sample_every_component(stack: Stack) -> None:
    started = time.monotonic()
    out = stack.lab(
        "create-clusters", "2", "--start", "4611", "--wait", "--timeout", "480", "-o", "json", timeout=TIMEOUT
    )
    create_seconds = time.monotonic() - started
    res = json.loads(out.stdout)
    assert res["stuck"] == {}, res
    settings = stack.settings()
    with records.open_records(settings, create=False) as db:
        series = _series(db, res["run"])
        ticks = {s.ts for s in db.metric_samples(res["run"])}
    sampled = {c for c, _m, _l in series}
    assert sampled >= EVERY, f"never sampled: {sorted(EVERY - sampled)}"
    # at 5 s a create of two clusters spans several ticks; the last one is taken when the run ends
    assert len(ticks) >= 3, (len(ticks), create_seconds)
    for m in ("capi-manager", "kcp-manager", "cabpk-manager", "capm3-manager", "bmo-manager"):
        assert _grew(series, m, "controller_runtime_reconcile_total"), f"{m}: no controller reconciled"
        assert _grew(series, m, "workqueue_adds_total"), f"{m}: nothing queued"
    assert _grew(series, components.KUBE_APISERVER, "apiserver_request_duration_seconds_count")
    slo = [lab for (c, m, lab) in series if m == "apiserver_request_duration_seconds_bucket"]
    assert {lab.split(",")[0] for lab in slo} >= {"class=mutating", "class=read", "class=list"}, slo
    assert _grew(series, components.MGMT_ETCD, "etcd_disk_wal_fsync_duration_seconds_count")
    assert _grew(series, components.TENANT_ETCD, "etcd_server_proposals_committed_total")
    cpu = series[(SAMPLER_COMPONENT, SAMPLER_CPU, "")]
    assert 0 < cpu[-1] < create_seconds, cpu  # measured, and less than one core's worth
    # after the first tick (which parses every series once) a tick is a split and a float per line
    steady = (cpu[-1] - cpu[0]) / (len(ticks) - 1)
    assert steady < 0.1 * settings.metrics_interval, cpu  # under 10 % of a core, even at load 30
    rows = sum(len(v) for v in series.values()) / len(ticks)
    print(
        f"\nsampler: {cpu[-1]:.2f} s CPU over a {create_seconds:.0f} s create, {len(ticks)} ticks;"
        f" first tick {cpu[0]:.2f} s, then {steady:.3f} s a tick; {rows:.0f} rows a tick;"
        f" load {os.getloadavg()}"
    )

    report = stack.lab("report", "--run", str(res["run"])).stdout
    assert "## Metrics" in report, report

    out = stack.lab(
        "delete-clusters", "--start", "4611", "--count", "2", "--wait", "-o", "json", timeout=TIMEOUT
    )
    run_id = json.loads(out.stdout)["run"]
    with records.open_records(settings, create=False) as db:
        series = _series(db, run_id)
    assert {c for c, _m, _l in series} >= EVERY
    assert _grew(series, "capi-manager", "controller_runtime_reconcile_total")
