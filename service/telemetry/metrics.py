"""Prometheus metrics (prometheus_client) for `--metrics-listen HOST:PORT`, served at /metrics from a thread.

Names follow Prometheus conventions: the `reelscan_` prefix, base units (seconds), `_total` for counters. Each
server has its own registry (several servers in one process, as in tests, do not mix), with the process, platform
and GC collectors. The README's "Operating reelscan" section lists every metric with its meaning.

What it costs: events per RPC, per probed file and per watch message (the hot ones) are plain integer and list
increments on the event loop, the only thread that records (`_HotPath`, read by the scrape thread through a
collector): about 0.3 us, where prometheus_client's lock-protected Counter and Histogram cost about 2 us for an RPC's
count and latency. Rarer events use prometheus_client's types, with labelled children looked up once and kept.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Iterator, Sequence
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    start_http_server,
)
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from reelscan.service.jobs.model import Job, JobCounts, JobState
from reelscan.service.telemetry.events import Telemetry

NAMESPACE = "reelscan"
# Unary RPCs take well under a millisecond to a few; WaitJob up to its timeout (60 s by default).
RPC_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# A small file probes in about a millisecond; --probe-timeout is 10 s by default.
PROBE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
DB_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
JOB_BUCKETS = (0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 21600.0, 86400.0)
PROBE_FAILURE_KINDS = ("probe_failed", "probe_timeout", "probe_crashed")
WORKER_RESTART_CAUSES = ("timeout", "crash", "malformed", "cancel")


class _Histogram:
    """A histogram recorded by one thread without a lock. `counts[i]` holds the observations in bucket i alone (the
    last one: above every bound); the scrape makes them cumulative."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1  # bisect_left: a value equal to a bound is "le" it
        self.sum += value

    def buckets(self) -> list[tuple[str, float]]:
        counts = list(self.counts)  # one copy, so the buckets and the count agree even mid-update
        out = []
        total = 0
        for bound, count in zip((*self.bounds, float("inf")), counts, strict=True):
            total += count
            out.append(("+Inf" if bound == float("inf") else repr(float(bound)), float(total)))
        return out


class _HotPath:
    """The metrics recorded per RPC, per probed file and per watch message: written only on the event loop, read
    by the scrape thread (`collect`). Python's GIL makes each read and increment whole; a scrape may see one
    observation's count a moment before its sum."""

    def __init__(self) -> None:
        self.rpcs: dict[tuple[str, str], int] = {}
        self.rpc_seconds: dict[str, _Histogram] = {}
        self.files_probed = 0
        self.probe_seconds = _Histogram(PROBE_BUCKETS)
        self.files_walked = 0
        self.watch_sent = 0

    def describe(self) -> Iterator[Metric]:
        return self._families(empty=True)

    def collect(self) -> Iterator[Metric]:
        return self._families(empty=False)

    def _families(self, *, empty: bool) -> Iterator[Metric]:
        ns = NAMESPACE
        rpcs = CounterMetricFamily(
            f"{ns}_rpc_requests", "RPCs completed, by full method name and status code.", labels=["method", "code"]
        )
        rpc_seconds = HistogramMetricFamily(
            f"{ns}_rpc_duration_seconds",
            "Time to answer unary RPCs, by full method name (streams are not timed).",
            labels=["method"],
        )
        if not empty:
            for (method, code), count in list(self.rpcs.items()):
                rpcs.add_metric([method, code], count)
            for method, histogram in list(self.rpc_seconds.items()):
                rpc_seconds.add_metric([method], histogram.buckets(), histogram.sum)
        yield rpcs
        yield rpc_seconds
        probe_seconds = HistogramMetricFamily(
            f"{ns}_probe_duration_seconds",
            "Time to probe one file, as a scan sees it (a wait for a free probe slot included).",
        )
        if not empty:
            probe_seconds.add_metric([], self.probe_seconds.buckets(), self.probe_seconds.sum)
        yield probe_seconds
        for name, text, value in (
            ("files_probed", "Files probed (successes and failures).", self.files_probed),
            ("files_walked", "Video files found by scan walks.", self.files_walked),
            ("watch_messages_sent", "JobUpdate messages sent to watchers.", self.watch_sent),
        ):
            yield CounterMetricFamily(f"{ns}_{name}", text, value=None if empty else value)


class PrometheusTelemetry(Telemetry):
    """Every event as a Prometheus metric, in a registry of its own."""

    def __init__(self, *, backend: str, queue_limit: int, version: str = "") -> None:
        # No `_created` series beside each counter and histogram: they double a scrape for little use. (A setting
        # of prometheus_client's, for the process; the server is its only user.)
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        self._backend = backend
        ns = NAMESPACE
        info = Gauge(f"{ns}_build_info", "Always 1; labels say which reelscan this is.", ["version"], registry=r)
        info.labels(version or "unknown").set(1)
        # RPCs, probed files, walked files, watch messages
        self._hot = _HotPath()
        r.register(self._hot)
        # Jobs
        self._jobs = Gauge(
            f"{ns}_jobs",
            "Jobs in the database by state (all replicas; refreshed every few seconds); shards are apart.",
            ["state"],
            registry=r,
        )
        self._shards = Gauge(
            f"{ns}_shards",
            "Shards of sharded scans in the database by state (all replicas; refreshed every few seconds).",
            ["state"],
            registry=r,
        )
        self._queue = Gauge(
            f"{ns}_job_queue_depth",
            "PENDING jobs in the database (all replicas; shards are apart): what --max-queued-jobs bounds.",
            registry=r,
        )
        Gauge(f"{ns}_job_queue_limit", "--max-queued-jobs.", registry=r).set(queue_limit)
        self._running = Gauge(f"{ns}_jobs_running", "Jobs running on this replica.", registry=r)
        self._accepted = Counter(
            f"{ns}_jobs_accepted", "New jobs queued by requests to this replica, by kind.", ["kind"], registry=r
        )
        self._transitions = Counter(
            f"{ns}_job_transitions",
            "Job state changes made by this replica, by the state left and the state reached.",
            ["from", "to"],
            registry=r,
        )
        self._transition_children: dict[tuple[JobState, JobState], Counter] = {}
        self._recovered = Counter(
            f"{ns}_jobs_recovered",
            "Jobs of a crashed server recovered by this replica, by the state they got.",
            ["state"],
            registry=r,
        )
        self._pruned = Counter(f"{ns}_jobs_pruned", "Finished jobs deleted after the retention period.", registry=r)
        self._job_seconds = Histogram(
            f"{ns}_job_duration_seconds",
            "Run time (start to end) of jobs that ended on this replica, by kind and final state.",
            ["kind", "state"],
            buckets=JOB_BUCKETS,
            registry=r,
        )
        # Watching
        self._watchers = Gauge(f"{ns}_watchers_open", "Open WatchJob streams on this replica.", registry=r)
        # Scanning
        self._probe_failures = Counter(
            f"{ns}_probe_failures", "Files that could not be probed, by kind of failure.", ["kind"], registry=r
        )
        self._restarts = Counter(
            f"{ns}_probe_worker_restarts",
            "Probe worker processes killed or lost and replaced, by cause.",
            ["cause"],
            registry=r,
        )
        # Storage
        self._db_seconds = Histogram(
            f"{ns}_db_write_duration_seconds",
            "Time of one database write (a job state change, a checkpoint, a library batch), by backend, store "
            "and operation.",
            ["backend", "store", "operation"],
            buckets=DB_BUCKETS,
            registry=r,
        )
        self._db_children: dict[tuple[str, str], Histogram] = {}
        # Every label value that can occur is created up front, so a rate() over it starts at 0, not at absent.
        for state in JobState:
            self._jobs.labels(state.name)
        for kind in PROBE_FAILURE_KINDS:
            self._probe_failures.labels(kind)
        for cause in WORKER_RESTART_CAUSES:
            self._restarts.labels(cause)

    def exposition(self) -> bytes:
        """The metrics in the Prometheus text format (what /metrics serves)."""
        return generate_latest(self.registry)

    # ---- RPCs -------------------------------------------------------------------------------------------------

    def rpc_handled(self, method: str, code: str, seconds: float | None) -> None:
        hot = self._hot
        key = (method, code)
        hot.rpcs[key] = hot.rpcs.get(key, 0) + 1
        if seconds is not None:
            histogram = hot.rpc_seconds.get(method)
            if histogram is None:
                histogram = hot.rpc_seconds[method] = _Histogram(RPC_BUCKETS)
            histogram.observe(seconds)

    # ---- jobs -------------------------------------------------------------------------------------------------

    def _transition(self, old: JobState, new: JobState) -> None:
        key = (old, new)
        child = self._transition_children.get(key)
        if child is None:
            child = self._transition_children[key] = self._transitions.labels(old.name, new.name)
        child.inc()

    def job_accepted(self, job: Job, *, existing: bool, peer: str) -> None:
        if not existing:
            self._accepted.labels(job.kind.name).inc()

    def job_started(self, job: Job) -> None:
        self._transition(JobState.PENDING, JobState.RUNNING)

    def job_finished(self, job: Job, *, previous: JobState) -> None:
        self._transition(previous, job.state)
        if job.start_time is not None and job.finish_time is not None:
            self._job_seconds.labels(job.kind.name, job.state.name).observe(max(0.0, job.finish_time - job.start_time))

    def job_requeued(self, job: Job) -> None:
        self._transition(JobState.RUNNING, JobState.PENDING)

    def job_recovered(self, job: Job) -> None:
        self._transition(JobState.RUNNING, job.state)
        self._recovered.labels(job.state.name).inc()

    def job_pruned(self, job: Job) -> None:
        self._pruned.inc()

    def jobs_running(self, count: int) -> None:
        self._running.set(count)

    def jobs_by_state(self, counts: JobCounts) -> None:
        for state in JobState:
            self._jobs.labels(state.name).set(counts.jobs.get(state, 0))
            self._shards.labels(state.name).set(counts.shards.get(state, 0))
        self._queue.set(counts.jobs.get(JobState.PENDING, 0))

    def watchers_open(self, count: int) -> None:
        self._watchers.set(count)

    def watch_message_sent(self) -> None:
        self._hot.watch_sent += 1

    # ---- scanning ---------------------------------------------------------------------------------------------

    def files_walked(self, count: int) -> None:
        self._hot.files_walked += count

    def probe_done(self, seconds: float) -> None:
        hot = self._hot
        hot.files_probed += 1
        hot.probe_seconds.observe(seconds)

    def probe_failed(self, path: str, kind: str, reason: str, seconds: float) -> None:
        self.probe_done(seconds)
        self._probe_failures.labels(kind).inc()

    def worker_replaced(self, *, cause: str, pid: int | None, file: str, exit_status: int | None, reason: str) -> None:
        self._restarts.labels(cause).inc()

    # ---- storage ----------------------------------------------------------------------------------------------

    def db_write(self, store: str, operation: str, seconds: float) -> None:
        key = (store, operation)
        child = self._db_children.get(key)
        if child is None:
            child = self._db_children[key] = self._db_seconds.labels(self._backend, store, operation)
        child.observe(seconds)


class MetricsServer:
    """/metrics over HTTP from a daemon thread (prometheus_client's WSGI server)."""

    def __init__(self, httpd: WSGIServer, thread: threading.Thread) -> None:
        self._httpd = httpd
        self._thread = thread

    @classmethod
    def start(cls, listen: str, registry: CollectorRegistry) -> MetricsServer:
        """Binds HOST:PORT (port 0 picks a free one); raises OSError if it cannot."""
        host, _, port = listen.rpartition(":")
        httpd, thread = start_http_server(int(port), host.strip("[]"), registry=registry)
        return cls(httpd, thread)

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    def close(self) -> None:
        """Stops serving (blocks up to a poll interval, 0.5 s: call it from a thread)."""
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)
