"""The events the server reports, as one small interface: `Telemetry`. Every method is a no-op here; the log and
metrics implementations override the ones they care about, and `Fanout` calls several.

Callers report facts, never decide how they are shown, and always on the event loop. Events that happen once per
file or per RPC (probe_done, files_walked, rpc_handled, watch_message_sent) are on hot paths: implementations must
keep them to a few counter increments.

What "this replica" means: each server reports what it did itself (jobs it accepted, ran, cancelled, recovered or
pruned; RPCs it answered). Only `jobs_by_state` describes the whole database, as a periodic count.
"""

from __future__ import annotations

from collections.abc import Sequence

from reelscan.service.jobs.model import Job, JobCounts, JobState


class Telemetry:
    """Receives the server's events. The base class ignores them all (the default for engines built directly)."""

    # ---- jobs: lifecycle, as this replica sees it happen --------------------------------------------------------

    def job_accepted(self, job: Job, *, existing: bool, peer: str) -> None:
        """A request for work became a PENDING job (or, `existing`, joined an active one with the same key)."""

    def job_started(self, job: Job) -> None:
        """This replica claimed a pending job: it is RUNNING here (job.owner, job.owner_address)."""

    def job_cancel_requested(self, job: Job, *, peer: str) -> None:
        """A client asked to cancel; `job` is as stored afterwards (CANCELLED at once if it was pending)."""

    def job_finished(self, job: Job, *, previous: JobState) -> None:
        """The job reached a terminal state by this replica's doing (`previous`: the state it left)."""

    def job_requeued(self, job: Job) -> None:
        """A job running here went back to PENDING because this server is shutting down."""

    def job_recovered(self, job: Job) -> None:
        """A job whose server died was recovered here under the crash rules: `job` is its new state."""

    def job_pruned(self, job: Job) -> None:
        """A finished job was deleted after the retention period."""

    def jobs_running(self, count: int) -> None:
        """Jobs running on this replica right now."""

    def jobs_by_state(self, counts: JobCounts) -> None:
        """Jobs and shards in the database by state (every replica's), counted periodically."""

    def watchers_open(self, count: int) -> None:
        """Open WatchJob streams on this replica right now."""

    def watch_message_sent(self) -> None:
        """One JobUpdate was handed to a WatchJob stream."""

    # ---- scanning -----------------------------------------------------------------------------------------------

    def files_walked(self, count: int) -> None:
        """A scan's walk found `count` more video files."""

    def probe_done(self, seconds: float) -> None:
        """One file was probed successfully, taking `seconds` (a free probe slot's wait included)."""

    def probe_failed(self, path: str, kind: str, reason: str, seconds: float) -> None:
        """One file could not be probed (`kind`: probe_failed, probe_timeout, probe_crashed)."""

    def worker_replaced(self, *, cause: str, pid: int | None, file: str, exit_status: int | None, reason: str) -> None:
        """A probe worker process was killed or died and a fresh one started. `cause`: timeout, crash, malformed,
        cancel; `file`: what it was probing ("" if none); `exit_status`: negative for a signal."""

    # ---- storage ------------------------------------------------------------------------------------------------

    def db_write(self, store: str, operation: str, seconds: float) -> None:
        """One write to the database (`store`: jobs or library) took `seconds`, waiting for the connection
        included."""

    # ---- RPCs ---------------------------------------------------------------------------------------------------

    def rpc_handled(self, method: str, code: str, seconds: float | None) -> None:
        """An RPC ended with status `code` (a grpc status name). `seconds` for unary calls, None for streams."""

    def rpc_refused(self, method: str, code: str, peer: str, detail: str) -> None:
        """An RPC was answered with an error status that is the client's to fix (not INTERNAL, not a cancel)."""


NO_TELEMETRY = Telemetry()


class Fanout(Telemetry):
    """Reports every event to each of `sinks`, in order. An event that only one sink handles (overrides) goes
    straight to that sink's method, and one that none handles to a no-op: hot events pay for one call, not two."""

    def __init__(self, sinks: Sequence[Telemetry]) -> None:
        self.sinks = tuple(sinks)
        for name, default in vars(Telemetry).items():
            if name.startswith("_") or not callable(default):
                continue
            handling = [sink for sink in self.sinks if getattr(type(sink), name) is not default]
            if len(handling) <= 1:
                setattr(self, name, getattr(handling[0] if handling else NO_TELEMETRY, name))

    def job_accepted(self, job: Job, *, existing: bool, peer: str) -> None:
        for sink in self.sinks:
            sink.job_accepted(job, existing=existing, peer=peer)

    def job_started(self, job: Job) -> None:
        for sink in self.sinks:
            sink.job_started(job)

    def job_cancel_requested(self, job: Job, *, peer: str) -> None:
        for sink in self.sinks:
            sink.job_cancel_requested(job, peer=peer)

    def job_finished(self, job: Job, *, previous: JobState) -> None:
        for sink in self.sinks:
            sink.job_finished(job, previous=previous)

    def job_requeued(self, job: Job) -> None:
        for sink in self.sinks:
            sink.job_requeued(job)

    def job_recovered(self, job: Job) -> None:
        for sink in self.sinks:
            sink.job_recovered(job)

    def job_pruned(self, job: Job) -> None:
        for sink in self.sinks:
            sink.job_pruned(job)

    def jobs_running(self, count: int) -> None:
        for sink in self.sinks:
            sink.jobs_running(count)

    def jobs_by_state(self, counts: JobCounts) -> None:
        for sink in self.sinks:
            sink.jobs_by_state(counts)

    def watchers_open(self, count: int) -> None:
        for sink in self.sinks:
            sink.watchers_open(count)

    def watch_message_sent(self) -> None:
        for sink in self.sinks:
            sink.watch_message_sent()

    def files_walked(self, count: int) -> None:
        for sink in self.sinks:
            sink.files_walked(count)

    def probe_done(self, seconds: float) -> None:
        for sink in self.sinks:
            sink.probe_done(seconds)

    def probe_failed(self, path: str, kind: str, reason: str, seconds: float) -> None:
        for sink in self.sinks:
            sink.probe_failed(path, kind, reason, seconds)

    def worker_replaced(self, *, cause: str, pid: int | None, file: str, exit_status: int | None, reason: str) -> None:
        for sink in self.sinks:
            sink.worker_replaced(cause=cause, pid=pid, file=file, exit_status=exit_status, reason=reason)

    def db_write(self, store: str, operation: str, seconds: float) -> None:
        for sink in self.sinks:
            sink.db_write(store, operation, seconds)

    def rpc_handled(self, method: str, code: str, seconds: float | None) -> None:
        for sink in self.sinks:
            sink.rpc_handled(method, code, seconds)

    def rpc_refused(self, method: str, code: str, peer: str, detail: str) -> None:
        for sink in self.sinks:
            sink.rpc_refused(method, code, peer, detail)
