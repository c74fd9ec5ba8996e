"""From run records to a report: pure functions to a model, then Markdown or JSON.

The numbers follow the shape the Metal3 scaling notes kept by hand ("clusters 0-100 in M minutes",
per 100-cluster step) plus the latency model of kube-burner/clusterloader2: every phase's latency is
measured from the cluster's first phase (`applied` for create, `delete_requested` for delete), with
p50/p90/p99/max over clusters, and the step from the phase it waits for (phases.previous).

Percentiles interpolate linearly between closest ranks (numpy's default "linear" method), so p50 of
an even count is the mean of the two middle values.
"""

from __future__ import annotations

import datetime as dt
import itertools
import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from lab import naming, report_series, shards
from lab.components import MGMT_ETCD
from lab.metrics import SAMPLER_COMPONENT, SAMPLER_CPU, SLO_HISTOGRAM, parse_labels
from lab.phases import Phase, RunKind, previous, run_phases
from lab.records import Event, MetricSample, Run, Sample

DEFAULT_BATCH = 10
#: How many incomplete clusters the Markdown lists by name before it only counts them.
MAX_LISTED = 20


@dataclass(frozen=True)
class Stats:
    count: int
    p50: float | None
    p90: float | None
    max: float | None
    p99: float | None = None


@dataclass(frozen=True)
class PhaseRow:
    phase: str
    reached: int  # clusters that reached this phase
    since_start: Stats  # seconds from the cluster's first phase
    step_from: str | None  # the phase this one waits for
    step: Stats  # seconds from step_from (clusters that have both)


@dataclass(frozen=True)
class BatchRow:
    first: int  # cluster index
    last: int
    clusters: int
    done: int  # clusters of this batch that reached the final phase
    #: seconds from run start until every cluster of this batch AND the batches before it was done
    #: ("clusters 1-30 in M minutes"); None while any is not
    done_at: float | None
    step: float | None  # seconds from the previous batch's done_at (from run start for the first)


@dataclass(frozen=True)
class ComponentRow:
    component: str
    samples: int
    idle: bool  # True: only samples taken after the last cluster was done; False: all samples
    rss_bytes: int  # median, per process
    cpu_percent: float  # median, percent of one core, per process
    processes: int = 1  # distinct processes behind the row (one per cluster for workload apiservers)


@dataclass(frozen=True)
class ShardRow:
    """One KCP shard of a sharded run (lab.shards): its manager and the clusters it owned."""

    shard: str  # its watch-filter label value
    manager: str  # the supervised program
    clusters: int  # of the run's clusters, those whose index falls to this shard
    done: int  # of them, how many reached the final phase
    to_done: Stats  # seconds from each one's first phase to the final one
    rss_bytes: int | None  # the manager's median RSS and CPU (lab.report.components' window)
    cpu_percent: float | None
    #: kubeadmcontrolplane reconciles the manager's metrics counted over the run (None: not scraped)
    reconciles: float | None


@dataclass(frozen=True)
class Incomplete:
    cluster: str
    index: int
    last_phase: str | None  # the latest phase (in lifecycle order) it reached
    waiting_for: str  # the first phase it has not reached


#: clusterloader2's API-call latency SLOs (p99, seconds) by call class (lab.metrics.slo_class)
SLO_SECONDS = {"mutating": 1.0, "read": 1.0, "list": 30.0}


@dataclass(frozen=True)
class ControllerRow:
    component: str
    controller: str
    peak_depth: float  # workqueue_depth, highest sample
    adds: float  # increases over the run
    retries: float
    reconciles: float
    errors: float
    mean_reconcile_seconds: float | None  # reconcile time sum / count, over the run
    mean_queue_wait_seconds: float | None  # time items waited in the queue, sum / count
    peak_longest_running_seconds: float


@dataclass(frozen=True)
class ClientRow:
    component: str
    requests: float  # client-go requests the manager sent during the run
    #: client-side rate-limiter wait summed over the run; None when the binary does not export it
    throttled_seconds: float | None


@dataclass(frozen=True)
class SloRow:
    call: str  # mutating / read / list
    requests: float
    p99: float | None  # seconds, from the run's bucket increases (as Prometheus' histogram_quantile)
    slo: float
    met: bool | None
    #: p99 fell in the +Inf bucket: the true value is above `p99` (the top finite bound)
    beyond_buckets: bool = False


@dataclass(frozen=True)
class PriorityRow:
    level: str
    requests: float
    mean_wait_seconds: float | None
    rejected: float
    peak_queued: float


@dataclass(frozen=True)
class EtcdRow:
    component: str
    db_bytes: float  # largest sample
    wal_fsync_mean_seconds: float | None
    backend_commit_mean_seconds: float | None
    proposals_committed: float


@dataclass(frozen=True)
class Metrics:
    scrapes: int  # distinct sample times
    rows_per_scrape: float
    controllers: list[ControllerRow]
    clients: list[ClientRow]
    slo: list[SloRow]
    inflight_peak: dict[str, float]
    priority_levels: list[PriorityRow]
    etcd: list[EtcdRow]
    sampler_cpu_seconds: float | None
    sampled_seconds: float  # first to last scrape


@dataclass(frozen=True)
class Report:
    run: dict[str, Any]
    final_phase: str
    clusters: int
    done: int
    wall_seconds: float | None  # run start -> last cluster done (None when nothing is done)
    clusters_per_minute: float | None
    batch_size: int
    batches: list[BatchRow]
    phases: list[PhaseRow]
    components: list[ComponentRow]
    incomplete: list[Incomplete] = field(default_factory=list)
    metrics: Metrics | None = None  # None when the run has no metric samples
    #: seconds from run start at which each cluster was done, ascending: the "Available over time" curve
    timeline: list[float] = field(default_factory=list)
    #: per phase, every cluster's seconds from its first phase (latencies()): the phase plot's data
    latencies: dict[str, list[float]] = field(default_factory=dict)
    #: RSS/CPU and metric time series (lab.report_series): the HTML report's plots
    charts: list[report_series.Chart] = field(default_factory=list)
    #: per KCP shard, for a run on a sharded stack (lab.shards); empty with one KCP manager
    shards: list[ShardRow] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0..100) with linear interpolation; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def stats(values: Sequence[float]) -> Stats:
    return Stats(
        len(values),
        percentile(values, 50),
        percentile(values, 90),
        max(values) if values else None,
        percentile(values, 99),
    )


def _by_cluster(events: Sequence[Event]) -> dict[str, tuple[int, dict[Phase, float]]]:
    out: dict[str, tuple[int, dict[Phase, float]]] = {}
    for e in events:
        out.setdefault(e.cluster, (e.index, {}))[1][e.phase] = e.ts
    return out


def latencies(
    kind: RunKind, events: Sequence[Event], settings: dict[str, Any] | None = None
) -> dict[str, list[float]]:
    """Per phase of `kind` (phases.run_phases), every cluster's seconds from its first phase to that one."""
    order = run_phases(kind, settings)
    out: dict[str, list[float]] = {p.value: [] for p in order}
    for _i, ts in _by_cluster([e for e in events if e.phase in order]).values():
        if order[0] in ts:
            for p in order:
                if p in ts:
                    out[p.value].append(ts[p] - ts[order[0]])
    return out


#: runs of standalone hosts: they record the shard count like every run (the stack they ran on),
#: but no KCP shard owns a host, so their report has no shards section
HOST_RUNS = (RunKind.create_hosts, RunKind.delete_hosts)
#: the KCP controller's name in controller-runtime's metrics
KCP_CONTROLLER = "kubeadmcontrolplane"


def shard_rows(
    run: Run,
    clusters: dict[str, tuple[int, dict[Phase, float]]],
    comps: Sequence[ComponentRow],
    m: Metrics | None,
) -> list[ShardRow]:
    """Per KCP shard of a run recorded with `shards` > 1 (lab.shards: a cluster's shard is its index
    mod K), the clusters it owned and its manager's figures; none for an unsharded run."""
    k = run.settings.get("shards")
    if not isinstance(k, int) or k < 2 or run.kind in HOST_RUNS:
        return []
    order = run_phases(run.kind, run.settings)
    first, final = order[0], order[-1]
    by_component = {c.component: c for c in comps}
    out = []
    for n in range(k):
        mine = [ts for index, ts in clusters.values() if shards.of_index(index, k) == n]
        to_done = [ts[final] - ts[first] for ts in mine if final in ts and first in ts]
        name = shards.program(n)
        comp = by_component.get(name)
        reconciles = None
        if m is not None:
            counted = [
                r.reconciles for r in m.controllers if r.component == name and r.controller == KCP_CONTROLLER
            ]
            reconciles = sum(counted) if counted else 0.0
        out.append(
            ShardRow(
                shards.label_value(n),
                name,
                len(mine),
                sum(final in ts for ts in mine),
                stats(to_done),
                comp.rss_bytes if comp else None,
                comp.cpu_percent if comp else None,
                reconciles,
            )
        )
    return out


def build(
    run: Run,
    events: Sequence[Event],
    samples: Sequence[Sample] = (),
    batch_size: int = DEFAULT_BATCH,
    metric_samples: Sequence[MetricSample] = (),
) -> Report:
    """The report of one run; clusters missing phases are counted and listed, never dropped."""
    if batch_size < 1:
        raise ValueError("batch size must be at least 1")
    order = run_phases(run.kind, run.settings)
    final = order[-1]
    clusters = _by_cluster([e for e in events if e.phase in order])

    phases = []
    since_start = latencies(run.kind, events, run.settings)
    for phase in order:
        since = since_start[phase.value]
        prev = previous(phase, order)
        steps = [ts[phase] - ts[prev] for _i, ts in clusters.values() if prev and phase in ts and prev in ts]
        count = sum(1 for _i, ts in clusters.values() if phase in ts)
        phases.append(PhaseRow(phase.value, count, stats(since), prev.value if prev else None, stats(steps)))

    by_index = sorted(clusters.items(), key=lambda kv: kv[1][0])
    batches: list[BatchRow] = []
    previous_done: float | None = 0.0
    for start in range(0, len(by_index), batch_size):
        chunk = by_index[start : start + batch_size]
        finals = [ts[final] for _n, (_i, ts) in chunk if final in ts]
        done_at = max(finals) - run.started if len(finals) == len(chunk) else None
        if done_at is not None and previous_done is not None:
            done_at = max(done_at, previous_done)  # a later batch that finished first waited for none
        elif previous_done is None:
            done_at = None
        step = done_at - previous_done if done_at is not None and previous_done is not None else None
        batches.append(BatchRow(chunk[0][1][0], chunk[-1][1][0], len(chunk), len(finals), done_at, step))
        previous_done = done_at

    all_finals = [ts[final] for _i, ts in clusters.values() if final in ts]
    last_done = max(all_finals) if all_finals else None
    wall = last_done - run.started if last_done is not None else None
    rate = len(all_finals) / (wall / 60) if wall else None

    incomplete = []
    for name, (index, ts) in by_index:
        if final in ts:
            continue
        reached = [p for p in order if p in ts]
        missing = next(p for p in order if p not in ts)
        incomplete.append(Incomplete(name, index, reached[-1].value if reached else None, missing.value))

    comps = components(samples, last_done)
    m = metrics(metric_samples)
    return Report(
        run=_run_info(run),
        final_phase=final.value,
        clusters=len(clusters),
        done=len(all_finals),
        wall_seconds=wall,
        clusters_per_minute=rate,
        batch_size=batch_size,
        batches=batches,
        phases=phases,
        components=comps,
        incomplete=incomplete,
        metrics=m,
        timeline=sorted(t - run.started for t in all_finals),
        latencies=since_start,
        shards=shard_rows(run, clusters, comps, m),
        charts=report_series.charts(samples, metric_samples, run.started, component_group),
    )


#: Samples of processes named like this are one row: a hundred rows of one per cluster tell less
#: than the median of all of them.
WORKLOAD_PREFIX = naming.WORKLOAD_PROGRAM_PREFIX
WORKLOAD_ROW = "workload kube-apiserver (each)"


def component_group(name: str) -> str:
    return WORKLOAD_ROW if name.startswith(WORKLOAD_PREFIX) else name


def components(samples: Sequence[Sample], idle_after: float | None) -> list[ComponentRow]:
    """Median RSS/CPU per component: of the samples after `idle_after` when there are any (the
    idle cost of carrying the clusters), else of all samples (marked not idle). Workload
    apiservers are one row, medians per process."""
    grouped: dict[str, list[Sample]] = defaultdict(list)
    for s in samples:
        grouped[component_group(s.component)].append(s)
    rows = []
    for name in sorted(grouped):
        every = grouped[name]
        idle = [s for s in every if idle_after is not None and s.ts > idle_after]
        use = idle or every
        rows.append(
            ComponentRow(
                name,
                len(use),
                bool(idle),
                int(statistics.median(s.rss_bytes for s in use)),
                float(statistics.median(s.cpu_percent for s in use)),
                len({s.component for s in use}),
            )
        )
    return rows


# --- metrics (lab.metrics' reduced samples) ---------------------------------------------------

Series = dict[tuple[str, str, str], list[float]]


def increase(values: Sequence[float]) -> float:
    """A counter's increase over its samples, restarts included (a value below the previous one
    means the process restarted from zero), as Prometheus' increase() without extrapolation."""
    total = 0.0
    for prev, cur in itertools.pairwise(values):
        total += cur - prev if cur >= prev else cur
    return total


def histogram_quantile(q: float, buckets: dict[float, float]) -> float | None:
    """Prometheus' histogram_quantile over cumulative bucket counts {upper bound: count}."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    rank = q * buckets[bounds[-1]]
    prev_bound, prev_count = 0.0, 0.0
    for b in bounds:
        count = buckets[b]
        if count >= rank:
            if b == float("inf"):
                return prev_bound
            if count == prev_count:
                return b
            return prev_bound + (b - prev_bound) * (rank - prev_count) / (count - prev_count)
        prev_bound, prev_count = b, count
    return prev_bound


def _mean(series: Series, component: str, base: str, labels: str) -> float | None:
    count = increase(series.get((component, f"{base}_count", labels), []))
    total = increase(series.get((component, f"{base}_sum", labels), []))
    return total / count if count > 0 else None


def _of(series: Series, metric: str) -> list[tuple[str, str, list[float]]]:
    return [(c, lab, v) for (c, m, lab), v in series.items() if m == metric]


def _controllers(series: Series) -> list[ControllerRow]:
    """Every controller that queued something, deepest queue first."""
    out = []
    for c, lab, depth in _of(series, "workqueue_depth"):
        name = parse_labels(lab).get("name", "")
        ctl = f"controller={name}"
        row = ControllerRow(
            c,
            name,
            max(depth),
            increase(series.get((c, "workqueue_adds_total", lab), [])),
            increase(series.get((c, "workqueue_retries_total", lab), [])),
            increase(series.get((c, "controller_runtime_reconcile_total", ctl), [])),
            increase(series.get((c, "controller_runtime_reconcile_errors_total", ctl), [])),
            _mean(series, c, "controller_runtime_reconcile_time_seconds", ctl),
            _mean(series, c, "workqueue_queue_duration_seconds", lab),
            max(series.get((c, "workqueue_longest_running_processor_seconds", lab), [0.0])),
        )
        if row.adds or row.peak_depth:
            out.append(row)
    return sorted(out, key=lambda r: (-r.peak_depth, -r.adds, r.component, r.controller))


def _priority_levels(series: Series) -> list[PriorityRow]:
    """APF priority levels that saw requests, busiest first."""
    out = []
    wait = "apiserver_flowcontrol_request_wait_duration_seconds"
    for c, lab, v in _of(series, f"{wait}_count"):
        level = parse_labels(lab).get("priority_level", "")
        requests = increase(v)
        rejected = increase(series.get((c, "apiserver_flowcontrol_rejected_requests_total", lab), []))
        queued = max(series.get((c, "apiserver_flowcontrol_current_inqueue_requests", lab), [0.0]))
        if requests or rejected:
            out.append(PriorityRow(level, requests, _mean(series, c, wait, lab), rejected, queued))
    return sorted(out, key=lambda r: (-r.requests, r.level))


def metrics(samples: Sequence[MetricSample]) -> Metrics | None:
    """What the run's metric samples say per component; None when there are none."""
    if not samples:
        return None
    series: Series = defaultdict(list)
    for s in sorted(samples, key=lambda s: s.ts):
        series[(s.component, s.metric, s.labels)].append(s.value)
    times = sorted({s.ts for s in samples})

    def of(metric: str) -> list[tuple[str, str, list[float]]]:
        return _of(series, metric)

    controllers = _controllers(series)

    clients = []
    for c in sorted({c for c, _lab, _v in of("rest_client_requests_total")}):
        sent = sum(increase(v) for cc, _lab, v in of("rest_client_requests_total") if cc == c)
        waited = series.get((c, "rest_client_rate_limiter_duration_seconds_sum", ""))
        clients.append(ClientRow(c, sent, increase(waited) if waited else None))

    per_class: dict[str, dict[float, float]] = defaultdict(dict)
    for _c, lab, v in of(f"{SLO_HISTOGRAM}_bucket"):
        kv = parse_labels(lab)
        le = float(kv["le"])
        per_class[kv["class"]][le] = per_class[kv["class"]].get(le, 0.0) + increase(v)
    slo = []
    for call, limit in SLO_SECONDS.items():
        buckets = per_class.get(call, {})
        p99 = histogram_quantile(0.99, buckets)
        requests = buckets.get(float("inf"), 0.0)
        finite = [le for le in buckets if le != float("inf")]
        beyond = bool(finite) and buckets[max(finite)] < 0.99 * requests
        met = None if p99 is None else (p99 <= limit and not beyond)
        slo.append(SloRow(call, requests, p99, limit, met, beyond))

    inflight = {
        parse_labels(lab).get("request_kind", ""): max(v)
        for _c, lab, v in of("apiserver_current_inflight_requests")
    }
    levels = _priority_levels(series)
    etcd = [
        EtcdRow(
            c,
            max(v),
            _mean(series, c, "etcd_disk_wal_fsync_duration_seconds", ""),
            _mean(series, c, "etcd_disk_backend_commit_duration_seconds", ""),
            increase(series.get((c, "etcd_server_proposals_committed_total", ""), [])),
        )
        for c, _lab, v in sorted(of("etcd_mvcc_db_total_size_in_bytes"))
    ]
    cpu = series.get((SAMPLER_COMPONENT, SAMPLER_CPU, ""))
    return Metrics(
        scrapes=len(times),
        rows_per_scrape=len(samples) / len(times),
        controllers=controllers,
        clients=clients,
        slo=slo,
        inflight_peak=inflight,
        priority_levels=levels,
        etcd=etcd,
        sampler_cpu_seconds=cpu[-1] if cpu else None,
        sampled_seconds=times[-1] - times[0],
    )


def _run_info(run: Run) -> dict[str, Any]:
    return {
        "id": run.id,
        "kind": run.kind.value,
        "started": _iso(run.started),
        "finished": _iso(run.finished) if run.finished is not None else None,
        "status": run.status or "running",
        "argv": run.argv,
        "settings": run.settings,
        "host": run.host,
    }


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- rendering -------------------------------------------------------------------------------


def duration(seconds: float | None) -> str:
    """`12m 05s`, `3.2s`, `1h 02m` or `-`: what people read in the notes' tables."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    s = round(seconds)
    h, rem = divmod(s, 3600)
    m, rest = divmod(rem, 60)
    return f"{h}h {m:02d}m" if h else f"{m}m {rest:02d}s"


def mib(n: float) -> str:
    """Bytes as whole MiB, for the Markdown and the HTML report."""
    return f"{n / 2**20:.0f} MiB"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def _patched_line(settings: dict[str, Any]) -> list[str]:
    """Which components ran a patched build during the run (recorded at its start); none for a run
    recorded before lab knew patches."""
    if "patched" not in settings:
        return []
    patched = settings["patched"] or {}
    if not patched:
        return ["- patched: none (every component ran its upstream source)"]
    parts = [
        f"{name} ({', '.join(map(str, info.get('patches') or []))}; digest {info.get('digest')})"
        for name, info in sorted(patched.items())
    ]
    return ["- patched: " + ", ".join(parts)]


def payload_lines(run: dict[str, Any], m: Metrics | None) -> list[str]:
    """The lines two runs with and without `--payload-kb` are compared by: the payload, the
    management etcd's largest db size and the apiserver's mutating p99 during the run."""
    out = []
    kb = run["settings"].get("payload_kb")
    if kb:
        out.append(f"- payload: {kb} KiB of files in each KubeadmControlPlane")
    n_workers = run["settings"].get("workers")
    if n_workers:
        out.append(f"- workers: {n_workers} per cluster (worker hosts, MachineDeployment replicas)")
    if m is not None:
        db = [e.db_bytes for e in m.etcd if e.component == MGMT_ETCD]
        mutating = [s for s in m.slo if s.call == "mutating" and s.p99 is not None]
        if db or mutating:
            parts = [f"etcd db {mib(int(max(db)))} (max)"] if db else []
            parts += [f"apiserver mutating p99 {mutating[0].p99:.3f}s" for _ in mutating[:1]]
            out.append("- management: " + ", ".join(parts))
    return out


def done_word(run: dict[str, Any]) -> str:
    """What the last phase of a run means, for headings: Available, deleted, or the hosts' state."""
    kind = RunKind(run["kind"])
    if kind is RunKind.create_hosts:
        return str(run["settings"].get("state") or "provisioned")
    if kind is RunKind.scale:
        return f"at {run['settings'].get('workers')} workers"
    if kind is RunKind.upgrade:
        return f"at {run['settings'].get('to')}"
    return "Available" if kind is RunKind.create else "deleted"


def unit(run: dict[str, Any]) -> str:
    """clusters, or hosts for a create-hosts or delete-hosts run."""
    return "hosts" if RunKind(run["kind"]) in (RunKind.create_hosts, RunKind.delete_hosts) else "clusters"


def to_markdown(r: Report) -> str:
    run = r.run
    done_word_ = done_word(run)
    what = unit(run)
    versions = run["settings"].get("versions", {})
    host = run["host"]
    mem = f"{host['memory_bytes'] / 2**30:.0f} GiB" if host.get("memory_bytes") else "?"
    lines = [
        f"# lab run {run['id']}: {run['kind']} ({run['status']})",
        "",
        f"- started {run['started']}, finished {run['finished'] or '-'}; `{' '.join(run['argv'])}`",
        f"- host: {host.get('cores', '?')} cores, {mem}",
        "- versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()),
        f"- tuning: {run['settings'].get('tuning') or 'default'}",
        *_patched_line(run["settings"]),
        *payload_lines(run, r.metrics),
        f"- {what}: {r.clusters}, {done_word_}: {r.done}"
        + (
            f", in {duration(r.wall_seconds)} ({r.clusters_per_minute:.1f}/min)"
            if r.clusters_per_minute
            else ""
        ),
        "",
        f"## Scaling (batches of {r.batch_size}, by index; times from the run start)",
        "",
    ]
    lines += _table(
        [what, done_word_, "cumulative", "step"],
        [
            [f"{b.first}-{b.last}", f"{b.done}/{b.clusters}", duration(b.done_at), duration(b.step)]
            for b in r.batches
        ],
    )
    lines += [
        "",
        f"## Phase latencies (seconds; from `{r.phases[0].phase}`, and step from the phase waited for)",
        "",
    ]
    lines += _table(
        [
            "phase",
            "reached",
            "p50",
            "p90",
            "p99",
            "max",
            "step from",
            "step p50",
            "step p90",
            "step p99",
            "step max",
        ],
        [
            [
                p.phase,
                str(p.reached),
                *(
                    sec(v)
                    for v in (p.since_start.p50, p.since_start.p90, p.since_start.p99, p.since_start.max)
                ),
                p.step_from or "-",
                *(sec(v) for v in (p.step.p50, p.step.p90, p.step.p99, p.step.max)),
            ]
            for p in r.phases
        ],
    )
    lines += ["", "## Components (median RSS and CPU)", ""]
    if r.components:
        lines += _table(
            ["component", "processes", "samples", "window", "RSS", "CPU (% of a core)"],
            [
                [
                    c.component,
                    str(c.processes),
                    str(c.samples),
                    "idle" if c.idle else "whole run",
                    mib(c.rss_bytes),
                    f"{c.cpu_percent:.1f}",
                ]
                for c in r.components
            ],
        )
    else:
        lines.append("No resource samples were recorded.")
    lines += shards_markdown(r.shards, done_word_)
    if r.metrics is not None:
        lines += ["", *metrics_markdown(r.metrics)]
    if r.incomplete:
        lines += [
            "",
            f"## Incomplete: {len(r.incomplete)} {what.removesuffix('s')}(s) never reached `{r.final_phase}`",
            "",
        ]
        lines += _table(
            [what.removesuffix("s"), "last phase", "waiting for"],
            [[i.cluster, i.last_phase or "-", i.waiting_for] for i in r.incomplete[:MAX_LISTED]],
        )
        if len(r.incomplete) > MAX_LISTED:
            lines.append(f"\n... and {len(r.incomplete) - MAX_LISTED} more (see --format json)")
    return "\n".join(lines) + "\n"


def shards_heading(rows: Sequence[ShardRow]) -> str:
    return f"KCP shards ({len(rows)}; a cluster's shard is its index mod {len(rows)})"


def shards_table(rows: Sequence[ShardRow], done_word_: str) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of the KCP shards table, for the Markdown and the HTML report."""
    header = ["shard", "manager", "clusters", done_word_, "p50", "p90", "RSS", "CPU (% of a core)"]
    return (
        [*header, "KCP reconciles"],
        [
            [
                s.shard,
                s.manager,
                str(s.clusters),
                str(s.done),
                sec(s.to_done.p50),
                sec(s.to_done.p90),
                "-" if s.rss_bytes is None else mib(s.rss_bytes),
                "-" if s.cpu_percent is None else f"{s.cpu_percent:.1f}",
                "-" if s.reconciles is None else _n(s.reconciles),
            ]
            for s in rows
        ],
    )


def shards_markdown(rows: Sequence[ShardRow], done_word_: str) -> list[str]:
    """The KCP shards section of a sharded run; nothing for an unsharded one."""
    if not rows:
        return []
    return ["", f"## {shards_heading(rows)}", "", *_table(*shards_table(rows, done_word_))]


#: Controllers the Markdown lists (deepest queue first); --format json has them all.
MAX_CONTROLLERS = 15


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v * 1000:.1f}"


def _n(v: float) -> str:
    return f"{v:.0f}"


def metrics_markdown(m: Metrics) -> list[str]:
    """The metrics section: every figure is from the run's samples (first to last scrape)."""
    cpu = (
        f"{m.sampler_cpu_seconds:.1f} s CPU"
        + (
            f" ({100 * m.sampler_cpu_seconds / m.sampled_seconds:.1f} % of a core)"
            if m.sampled_seconds
            else ""
        )
        if m.sampler_cpu_seconds is not None
        else "not measured"
    )
    lines = [
        f"## Metrics ({m.scrapes} scrapes over {duration(m.sampled_seconds)}; increases over the run)",
        "",
        f"- sampler: {m.rows_per_scrape:.0f} rows per scrape, {cpu}",
        "",
        "### kube-apiserver: p99 against the clusterloader2 SLOs",
        "",
    ]
    lines += _table(*slo_table(m))
    if m.inflight_peak:
        lines += [
            "",
            "- peak inflight: " + ", ".join(f"{k} {v:.0f}" for k, v in sorted(m.inflight_peak.items())),
        ]
    if m.priority_levels:
        lines += ["", "Priority and fairness (by priority level):", ""]
        lines += _table(*priority_table(m))
    lines += ["", "### Controllers (deepest queue first)", ""]
    if m.controllers:
        lines += _table(*controller_table(m.controllers[:MAX_CONTROLLERS]))
        if len(m.controllers) > MAX_CONTROLLERS:
            lines.append(f"\n... and {len(m.controllers) - MAX_CONTROLLERS} more (see --format json)")
    else:
        lines.append("No controller queued anything.")
    if m.clients:
        lines += ["", "### API clients", ""]
        lines += _table(*client_table(m))
    if m.etcd:
        lines += ["", "### etcd", ""]
        lines += _table(*etcd_table(m))
    return lines


#: One table of the metrics section: header and rows, as text (the Markdown and HTML reports both
#: render these, so the two never disagree on a column or a number's format).
Table = tuple[list[str], list[list[str]]]


def slo_table(m: Metrics) -> Table:
    return (
        ["calls", "requests", "p99 (s)", "SLO (s)", "met"],
        [
            [
                r.call,
                _n(r.requests),
                "-" if r.p99 is None else ("> " if r.beyond_buckets else "") + f"{r.p99:.3f}",
                f"{r.slo:g}",
                "-" if r.met is None else ("yes" if r.met else "NO"),
            ]
            for r in m.slo
        ],
    )


def priority_table(m: Metrics) -> Table:
    return (
        ["priority level", "requests", "mean queue wait (ms)", "rejected", "peak queued"],
        [
            [p.level, _n(p.requests), _ms(p.mean_wait_seconds), _n(p.rejected), _n(p.peak_queued)]
            for p in m.priority_levels
        ],
    )


def controller_table(controllers: Sequence[ControllerRow]) -> Table:
    return (
        [
            "manager",
            "controller",
            "peak depth",
            "adds",
            "retries",
            "reconciles",
            "errors",
            "mean reconcile (ms)",
            "mean queue wait (ms)",
            "longest running (s)",
        ],
        [
            [
                c.component,
                c.controller,
                _n(c.peak_depth),
                _n(c.adds),
                _n(c.retries),
                _n(c.reconciles),
                _n(c.errors),
                _ms(c.mean_reconcile_seconds),
                _ms(c.mean_queue_wait_seconds),
                f"{c.peak_longest_running_seconds:.1f}",
            ]
            for c in controllers
        ],
    )


def client_table(m: Metrics) -> Table:
    return (
        ["component", "requests", "client-side throttling (s)"],
        [
            [
                c.component,
                _n(c.requests),
                "not exported" if c.throttled_seconds is None else f"{c.throttled_seconds:.1f}",
            ]
            for c in m.clients
        ],
    )


def etcd_table(m: Metrics) -> Table:
    return (
        [
            "component",
            "db size (max)",
            "WAL fsync mean (ms)",
            "backend commit mean (ms)",
            "proposals committed",
        ],
        [
            [
                e.component,
                mib(int(e.db_bytes)),
                _ms(e.wal_fsync_mean_seconds),
                _ms(e.backend_commit_mean_seconds),
                _n(e.proposals_committed),
            ]
            for e in m.etcd
        ],
    )


def sec(v: float | None) -> str:
    """Seconds to a tenth, "-" for none, for the Markdown and the HTML report."""
    return "-" if v is None else f"{v:.1f}"
