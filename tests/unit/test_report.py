"""lab.report: exact numbers from hand-made records, the Markdown/JSON forms, the PNG, and `lab report`."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from lab import config, records, report
from lab.phases import PHASES, Phase, RunKind
from lab.records import Event, Run, Sample

T0 = 1_700_000_000.0
CREATE = PHASES[RunKind.create]


def _run(kind: RunKind = RunKind.create) -> Run:
    return Run(
        1,
        kind,
        T0,
        T0 + 900,
        "ok",
        ["lab", "create-clusters", "4"],
        {"versions": {"capi": "v1.13.6"}},
        {"cores": 2},
    )


def _events(index: int, start: float, step: float, upto: int = len(CREATE)) -> list[Event]:
    """Cluster test-<index>: applied at T0+start, each next phase `step` seconds later."""
    return [Event(f"test-{index}", index, p, T0 + start + k * step) for k, p in enumerate(CREATE[:upto])]


def test_percentile_interpolates_linearly() -> None:
    assert report.percentile([], 50) is None
    assert report.percentile([7.0], 90) == 7.0
    assert report.percentile([4.0, 1.0, 3.0, 2.0], 50) == 2.5
    assert report.percentile([float(v) for v in range(1, 11)], 90) == pytest.approx(9.1)
    assert report.percentile([1.0, 2.0, 3.0], 100) == 3.0


def test_latencies_batches_and_incomplete_clusters() -> None:
    # 4 clusters, batches of 2; test-4 stops at node_ref (never Available)
    events = _events(1, 0, 10) + _events(2, 5, 20) + _events(3, 10, 10) + _events(4, 10, 10, upto=5)
    r = report.build(_run(), events, batch_size=2)
    assert (r.clusters, r.done, r.final_phase) == (4, 3, "cluster_available")
    # done at: test-1 60, test-2 125, test-3 70 (seconds from run start)
    assert r.timeline == [60.0, 70.0, 125.0]
    assert r.wall_seconds == 125.0
    assert r.clusters_per_minute == pytest.approx(3 / (125 / 60))
    b1, b2 = r.batches
    assert (b1.first, b1.last, b1.clusters, b1.done, b1.done_at, b1.step) == (1, 2, 2, 2, 125.0, 125.0)
    assert (b2.first, b2.last, b2.done, b2.done_at, b2.step) == (3, 4, 1, None, None)
    rows = {p.phase: p for p in r.phases}
    assert rows["applied"].reached == 4 and rows["applied"].since_start.max == 0.0
    avail = rows["cluster_available"]
    assert (avail.reached, avail.since_start.p50, avail.since_start.max) == (3, 60.0, 120.0)
    assert avail.step_from == "kcp_available" and avail.step.max == 20.0
    # kcp_initialized and node_ref both step from node_written
    assert rows["node_ref"].step_from == "node_written"
    assert rows["node_ref"].step.p50 == 20.0  # node_ref is 2 phases after node_written in _events
    assert [(i.cluster, i.last_phase, i.waiting_for) for i in r.incomplete] == [
        ("test-4", "node_ref", "kcp_available")
    ]


def test_clusters_missing_their_first_phase_still_count() -> None:
    # a watcher saw Available but the apply timestamp was lost (e.g. re-run of an existing range)
    events = [Event("test-1", 1, Phase.cluster_available, T0 + 30)]
    r = report.build(_run(), events)
    assert (r.clusters, r.done, r.timeline) == (1, 1, [30.0])
    assert {p.phase: p.reached for p in r.phases}["applied"] == 0
    assert {p.phase: p.since_start.count for p in r.phases}["cluster_available"] == 0


def test_empty_run_reports_zero() -> None:
    r = report.build(_run(), [])
    assert (r.clusters, r.done, r.wall_seconds, r.batches, r.incomplete) == (0, 0, None, [], [])
    assert "clusters: 0" in report.to_markdown(r)


def test_delete_runs_use_their_own_phases() -> None:
    order = PHASES[RunKind.delete]
    events = [Event("test-1", 1, p, T0 + 3 * k) for k, p in enumerate(order)]
    events.append(Event("test-1", 1, Phase.applied, T0 - 500))  # a create phase in a delete run is ignored
    r = report.build(_run(RunKind.delete), events)
    assert r.final_phase == "apiserver_stopped" and r.done == 1 and r.wall_seconds == 15.0
    assert [p.phase for p in r.phases] == [p.value for p in order]
    assert "deleted" in report.to_markdown(r)


def test_components_use_idle_window_after_the_last_cluster_is_done() -> None:
    events = _events(1, 0, 10)  # done at T0+60
    samples = [Sample(T0 + t, "kcp-manager", rss, cpu) for t, rss, cpu in ((10, 100, 90.0), (50, 200, 80.0))]
    samples += [Sample(T0 + t, "kcp-manager", rss, cpu) for t, rss, cpu in ((70, 300, 2.0), (80, 500, 4.0))]
    samples += [Sample(T0 + 10, "bmo-manager", 50, 1.0)]  # only busy samples: whole run, not idle
    rows = {c.component: c for c in report.build(_run(), events, samples).components}
    assert (rows["kcp-manager"].idle, rows["kcp-manager"].samples) == (True, 2)
    assert (rows["kcp-manager"].rss_bytes, rows["kcp-manager"].cpu_percent) == (400, 3.0)
    assert (rows["bmo-manager"].idle, rows["bmo-manager"].rss_bytes) == (False, 50)


def test_markdown_has_github_tables_and_lists_incomplete_clusters() -> None:
    events = [e for i in range(1, 31) for e in _events(i, i, 5, upto=7 if i < 5 else 3)]
    md = report.to_markdown(report.build(_run(), events, [Sample(T0, "capi-manager", 2**20 * 64, 12.5)]))
    assert "| clusters | Available | cumulative | step |\n|---|---|---|---|\n| 1-10 | 4/10 | - | - |" in md
    assert "| capi-manager | 1 | 1 | whole run | 64 MiB | 12.5 |" in md
    assert "26 cluster(s) never reached `cluster_available`" in md
    assert "| test-5 | node_written | kcp_initialized |" in md
    assert "... and 6 more" in md
    assert "- versions: capi v1.13.6" in md


def test_duration_formats() -> None:
    assert [report.duration(s) for s in (None, 3.21, 65, 3725)] == ["-", "3.2s", "1m 05s", "1h 02m"]


def test_plot_writes_a_png(tmp_path: Path) -> None:
    from lab.plot import render_png

    events = _events(1, 0, 10) + _events(2, 5, 20, upto=4)
    r = report.build(_run(), events)
    out = render_png(r, report.latencies(RunKind.create, events), tmp_path / "sub" / "p.png")
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (1300, 500)


# --- the command -----------------------------------------------------------------------------


def test_report_without_runs_is_one_error_line(
    run_lab: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    res = run_lab("report")
    assert res.returncode == 1
    assert res.stderr.strip().splitlines() == [res.stderr.strip()]
    assert res.stderr.startswith("error: no runs recorded yet")


def test_report_latest_and_chosen_run_md_json_plot(
    run_lab: Callable[..., subprocess.CompletedProcess[str]], lab_env: dict[str, str], tmp_path: Path
) -> None:
    settings = config.load()
    with records.open_records(settings) as db:
        first = db.start_run(
            RunKind.create, ["lab", "create-clusters", "2"], records.settings_snapshot(settings)
        )
        db.record_many(
            first, [(e.cluster, e.index, e.phase, e.ts) for e in _events(1, 0, 1) + _events(2, 0, 2)]
        )
        db.finish_run(first)
        latest = db.start_run(
            RunKind.delete, ["lab", "delete-clusters", "--all"], records.settings_snapshot(settings)
        )
    res = run_lab("report")
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith(f"# lab run {latest}: delete (running)")
    res = run_lab(
        "report", "--run", str(first), "--format", "json", "--plot", str(tmp_path / "p.png"), "--batch", "1"
    )
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["run"]["id"] == first and doc["done"] == 2 and len(doc["batches"]) == 2
    assert (tmp_path / "p.png").stat().st_size > 10_000
    res = run_lab("report", "--plot", "/proc/lab-no-such-dir/p.png")
    assert res.returncode == 1 and res.stderr.startswith(
        "error: cannot write the plot to /proc/lab-no-such-dir/p.png"
    )
    assert res.stdout == ""
    res = run_lab("report", "--run", "77")
    assert (res.returncode, res.stderr.strip()) == (1, f"error: no run 77 in {settings.db_path}")


def test_workload_apiservers_are_one_row_of_per_process_medians() -> None:
    samples = [
        Sample(T0 + 1, "wkl-test-1", 2**20 * 180, 1.0),
        Sample(T0 + 1, "wkl-test-2", 2**20 * 190, 3.0),
        Sample(T0 + 1, "wkl-test-3", 2**20 * 200, 2.0),
        Sample(T0 + 1, "kube-apiserver", 2**20 * 800, 9.0),
    ]
    rows = {c.component: c for c in report.components(samples, None)}
    assert set(rows) == {report.WORKLOAD_ROW, "kube-apiserver"}
    w = rows[report.WORKLOAD_ROW]
    assert (w.processes, w.samples, w.rss_bytes, w.cpu_percent) == (3, 3, 2**20 * 190, 2.0)
    assert rows["kube-apiserver"].processes == 1


def test_batch_times_are_cumulative_even_when_a_later_batch_finishes_first() -> None:
    events = []
    for i, done in [(1, 100.0), (2, 200.0), (3, 150.0), (4, 160.0)]:
        events += [
            Event(f"test-{i}", i, Phase.applied, T0),
            Event(f"test-{i}", i, Phase.cluster_available, T0 + done),
        ]
    b1, b2 = report.build(_run(), events, batch_size=2).batches
    assert (b1.done_at, b1.step) == (200.0, 200.0)
    assert (b2.done_at, b2.step) == (200.0, 0.0)  # 3-4 were done at 160 s but 1-4 only at 200 s


def test_the_report_names_the_components_that_ran_patched() -> None:
    def md(settings: dict[str, object]) -> list[str]:
        run = _run()
        run = Run(run.id, run.kind, run.started, run.finished, run.status, run.argv, settings, run.host)
        return [ln for ln in report.to_markdown(report.build(run, [], [])).splitlines() if "patched" in ln]

    patched = {"kcp-manager": {"patches": ["kcp-manager/0001-a.patch"], "digest": "5ad56f7ad178"}}
    assert md({"patched": patched}) == [
        "- patched: kcp-manager (kcp-manager/0001-a.patch; digest 5ad56f7ad178)"
    ]
    assert md({"patched": {}}) == ["- patched: none (every component ran its upstream source)"]
    assert md({}) == []  # a run recorded before lab knew patches says nothing rather than "none"
