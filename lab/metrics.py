"""Prometheus metrics of the stack's components, scraped during create and delete runs.

What is kept: a scrape of kube-apiserver is several MB of text (every histogram bucket of every
verb x resource x scope), far more than a run report reads. `reduce` keeps, per sample, only the
series the report uses, summed over the labels it does not (see RULES):

- per controller (workqueue `name`, controller-runtime `controller`): queue depth, adds, retries,
  longest running processor, reconciles, errors, active workers, and the sum and count of the
  reconcile time and queue wait histograms;
- per manager: client-go requests by method (controller-runtime registers neither client-go's
  request latency nor its rate-limiter wait histograms, so they are kept when a binary exports them
  and are absent from the six managers);
- kube-apiserver: request duration sum/count by verb and resource, the cumulative buckets of its
  request duration by SLO class only (mutating / read / list, the clusterloader2 API-responsiveness
  classes, so a p99 over any window can be computed), inflight requests, priority-and-fairness
  queue wait, queued and rejected requests per priority level, and etcd request latency as the
  apiserver sees it, by operation;
- etcd: db size, WAL fsync and backend commit sum/count, proposals committed.

None of these grows with the number of workload clusters: rows per sample depend on the
controllers, resources and priority levels the stack has.

The text parser is prometheus_client's (the reference Python client), memoised per series
(Reducer); lines of families no rule wants are skipped by name before anything is parsed.
"""

from __future__ import annotations

import hashlib
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import urllib3
from prometheus_client.parser import text_string_to_metric_families

from lab.errors import LabError

#: (metric, labels "k=v,k=v" sorted, value)
Row = tuple[str, str, float]

#: Gauges and counters kept as they are, summed over every label but the listed ones.
GAUGES: dict[str, tuple[str, ...]] = {
    "workqueue_depth": ("name",),
    "workqueue_adds_total": ("name",),
    "workqueue_retries_total": ("name",),
    "workqueue_longest_running_processor_seconds": ("name",),
    "controller_runtime_reconcile_total": ("controller",),
    "controller_runtime_reconcile_errors_total": ("controller",),
    "controller_runtime_active_workers": ("controller",),
    "controller_runtime_max_concurrent_reconciles": ("controller",),
    "rest_client_requests_total": ("method",),
    "apiserver_current_inflight_requests": ("request_kind",),
    "apiserver_flowcontrol_rejected_requests_total": ("priority_level",),
    "apiserver_flowcontrol_current_inqueue_requests": ("priority_level",),
    "etcd_mvcc_db_total_size_in_bytes": (),
    # writes through raft (etcd's gRPC counters are ~700 series per scrape: too dear to parse)
    "etcd_server_proposals_committed_total": (),
}
#: Histograms of which only _sum and _count are kept, summed over all labels but the listed ones.
SUM_COUNT: dict[str, tuple[str, ...]] = {
    "controller_runtime_reconcile_time_seconds": ("controller",),
    "workqueue_queue_duration_seconds": ("name",),
    "rest_client_request_duration_seconds": (),
    "rest_client_rate_limiter_duration_seconds": (),
    "apiserver_request_duration_seconds": ("verb", "resource"),
    "apiserver_flowcontrol_request_wait_duration_seconds": ("priority_level",),
    "etcd_request_duration_seconds": ("operation",),
    "etcd_disk_wal_fsync_duration_seconds": (),
    "etcd_disk_backend_commit_duration_seconds": (),
}
#: The one histogram whose buckets are kept, by SLO class (label `class`), for the p99.
SLO_HISTOGRAM = "apiserver_request_duration_seconds"
MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE", "DELETECOLLECTION", "APPLY"})
#: Long-running requests are outside the clusterloader2 SLOs.
LONG_RUNNING = frozenset({"WATCH", "WATCHLIST", "CONNECT"})
#: lab's own scrape cost, one row per sample (component = the sampler's)
SAMPLER_CPU = "lab_metrics_sampler_cpu_seconds_total"
SAMPLER_COMPONENT = "lab-metrics"

_BUCKETS = f"{SLO_HISTOGRAM}_bucket"
_WANTED = {
    *GAUGES,
    *(f"{f}_sum" for f in SUM_COUNT),
    *(f"{f}_count" for f in SUM_COUNT),
    _BUCKETS,
}


def slo_class(verb: str, scope: str) -> str | None:
    """clusterloader2's API call classes: mutating, read (single object), list; None outside."""
    if verb in LONG_RUNNING:
        return None
    if verb in MUTATING:
        return "mutating"
    if verb == "LIST" or (verb == "GET" and scope != "resource"):
        return "list"
    return "read"


def labels_key(labels: Iterable[tuple[str, str]]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels))


def parse_labels(key: str) -> dict[str, str]:
    return dict(kv.split("=", 1) for kv in key.split(",")) if key else {}


def _key(name: str, labels: dict[str, str]) -> tuple[str, str] | None:
    """The stored (metric, labels) a parsed sample adds to; None for a sample no rule keeps."""
    if name in GAUGES:
        return name, labels_key((k, labels.get(k, "")) for k in GAUGES[name])
    if name == _BUCKETS:
        cls = slo_class(labels.get("verb", ""), labels.get("scope", ""))
        return None if cls is None else (name, labels_key([("class", cls), ("le", labels.get("le", ""))]))
    base = name.removesuffix("_sum").removesuffix("_count")
    if base not in SUM_COUNT or name == base:
        return None
    return name, labels_key((k, labels.get(k, "")) for k in SUM_COUNT[base])


def _split(line: str) -> tuple[str, str]:
    """(series, value) of a sample line: `name{labels} value [timestamp]`."""
    if "{" in line:
        end = line.rindex("}") + 1
        return line[:end], line[end:].split()[0]
    name, value = line.split()[:2]
    return name, value


class Reducer:
    """reduce() with a memo: a series' name and labels are parsed by prometheus_client once, then
    found by the series text. Why: the parser's label parsing costs ~65 us a line, and the
    apiserver's scrape has ~9,400 lines of the SLO histogram alone (6.3 MB, 0.6 s CPU a scrape on
    a 2-cluster stack); the same series come back every scrape, only their values change."""

    def __init__(self) -> None:
        self._memo: dict[str, tuple[str, str] | None] = {}

    def _lookup(self, series: str) -> tuple[str, str] | None:
        if series not in self._memo:
            key = None
            for family in text_string_to_metric_families(series + " 0\n"):
                for s in family.samples:
                    key = _key(s.name, s.labels)
            self._memo[series] = key
        return self._memo[series]

    def __call__(self, text: str) -> list[Row]:
        acc: dict[tuple[str, str], float] = {}
        for line in text.splitlines():
            if not line or line.startswith("#"):
                continue
            i = line.find("{")
            name = line[:i] if i >= 0 else line.split(" ", 1)[0]
            if name not in _WANTED:
                continue
            series, value = _split(line)
            key = self._lookup(series)
            if key is not None:
                acc[key] = acc.get(key, 0.0) + float(value)
        return [(m, lab, v) for (m, lab), v in sorted(acc.items())]


def reduce(text: str) -> list[Row]:
    """The rows the report needs out of one scrape (Prometheus text format)."""
    return Reducer()(text)


@dataclass(frozen=True)
class Target:
    """One component's metrics endpoint and how lab proves who it is to it (and it to lab)."""

    component: str
    url: str
    #: verify the server with this CA; None for plain HTTP or a self-signed loopback server
    ca_file: Path | None = None
    #: (cert, key) of lab's client identity (kube-apiserver)
    client_cert: tuple[Path, Path] | None = None
    #: a bearer token (a manager whose metrics need authn/authz); sent only after `owner` checks
    token: Callable[[], str] | None = None
    #: the pid that must own the listening socket before a token is sent to a self-signed server
    owner: Callable[[], int | None] | None = None
    port_owner: Callable[[int], int | None] | None = None
    port: int | None = None


class MetricsSampler:
    """Scrapes every target every `interval` seconds in a thread, stores the reduced rows.

    A target that does not answer is skipped for that tick (a component restarting, or stopping
    during a delete). The sampler's own thread CPU time is stored with every tick, so a report can
    say what sampling cost.
    """

    def __init__(
        self,
        store: Callable[[list[tuple[float, str, str, str, float]]], None],
        targets: Sequence[Target],
        interval: float = 5.0,
        timeout: float = 4.0,
    ) -> None:
        self._store = store
        self.targets = list(targets)
        self.interval = interval
        self.timeout = timeout
        self.cpu_seconds = 0.0
        self.ticks = 0
        self.errors: dict[str, str] = {}
        self._pools: dict[str, urllib3.PoolManager] = {}
        self._reduce = Reducer()
        self._verified: dict[str, int] = {}
        #: component -> SHA-256 of the self-signed certificate its verified owner serves
        self._pins: dict[str, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="lab-metrics", daemon=True)

    def __enter__(self) -> MetricsSampler:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
            self.tick()  # the run's last state, so every counter has an end point
        for pool in self._pools.values():
            pool.clear()

    def _loop(self) -> None:
        self.tick()
        while not self._stop.wait(self.interval):
            self.tick()

    def _pool(self, t: Target) -> urllib3.PoolManager:
        pool = self._pools.get(t.component)
        if pool is None:
            kw: dict[str, object] = {"retries": False, "timeout": urllib3.Timeout(self.timeout)}
            if t.url.startswith("https"):
                if t.component in self._pins:
                    kw |= {"cert_reqs": "CERT_NONE", "assert_fingerprint": self._pins[t.component]}
                elif t.ca_file is not None:
                    kw |= {"cert_reqs": "CERT_REQUIRED", "ca_certs": str(t.ca_file)}
                else:
                    kw |= {"cert_reqs": "CERT_NONE", "assert_hostname": False}
                if t.client_cert is not None:
                    kw |= {"cert_file": str(t.client_cert[0]), "key_file": str(t.client_cert[1])}
            pool = urllib3.PoolManager(maxsize=1, **kw)  # type: ignore[arg-type]
            self._pools[t.component] = pool
        return pool

    def _owner_ok(self, t: Target) -> bool:
        """A token goes only to the process lab supervises under that name: its certificate is
        self-signed, so lab checks that the listening socket belongs to that pid, then pins the
        certificate it serves (SHA-256) for every later connection, until the pid changes."""
        if t.owner is None:
            return True
        pid = t.owner()
        if pid is None:
            return False
        if self._verified.get(t.component) == pid:
            return True
        if t.port_owner is None or t.port is None or t.port_owner(t.port) != pid:
            return False
        if t.url.startswith("https"):
            pem = ssl.get_server_certificate(
                (t.url.split("//", 1)[1].split(":", 1)[0], t.port), timeout=self.timeout
            )
            self._pins[t.component] = hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest()
            old = self._pools.pop(t.component, None)
            if old is not None:
                old.clear()
        self._verified[t.component] = pid
        return True

    def scrape(self, t: Target) -> list[Row] | None:
        headers = {}
        try:
            if t.token is not None:
                if not self._owner_ok(t):
                    self.errors[t.component] = "listener is not the supervised process"
                    return None
                headers["Authorization"] = f"Bearer {t.token()}"
            resp = self._pool(t).request("GET", t.url, headers=headers, preload_content=True)
        except (urllib3.exceptions.HTTPError, OSError, LabError) as e:
            self._verified.pop(t.component, None)
            self.errors[t.component] = str(e)[:200]
            return None
        if resp.status != 200:
            self.errors[t.component] = f"HTTP {resp.status}"
            return None
        self.errors.pop(t.component, None)
        return self._reduce(resp.data.decode("utf-8", "replace"))

    def tick(self) -> int:
        """One scrape of every target; returns how many rows were stored (none without targets)."""
        if not self.targets:
            return 0
        cpu = time.thread_time()
        now = time.time()
        self.ticks += 1
        rows: list[tuple[float, str, str, str, float]] = []
        for t in self.targets:
            got = self.scrape(t)
            if got:
                rows += [(now, t.component, m, lab, v) for m, lab, v in got]
        self.cpu_seconds += time.thread_time() - cpu
        rows.append((now, SAMPLER_COMPONENT, SAMPLER_CPU, "", self.cpu_seconds))
        self._store(rows)
        return len(rows)
