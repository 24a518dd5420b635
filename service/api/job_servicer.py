"""JobService: GetJob, ListJobs, CancelJob, DeleteJob, WaitJob, WatchJob over the job engine.

Thin by design: validate the request, call the engine, convert the answer. Domain errors propagate to the
error mapping of api/status.py, which turns them into status codes with details (EngineClosed, raised
while shutting down, is an Unavailable: clients retry against the restarted server).
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import AsyncIterator
from typing import Any, Generic, TypeAlias, TypeVar

import grpc

from reelscan.limits import MAX_PAGE_SIZE
from reelscan.service.api import fields, paging
from reelscan.service.api.job_convert import job_to_proto, job_to_update, kinds_from_proto, states_from_proto
from reelscan.service.errors import InvalidArgument
from reelscan.service.jobs.engine import JobEngine
from reelscan.service.jobs.model import Job
from reelscan.v1 import job_pb2, job_service_pb2, job_service_pb2_grpc

DEFAULT_PAGE_SIZE = 50
DEFAULT_WAIT_S = 60.0
MAX_WAIT_S = 3600.0
# WaitJob answers this much before the caller's deadline, so its reply arrives before the client gives up.
DEADLINE_MARGIN_S = 0.1
FINISHED_RESPONSE_CACHE_SIZE = 1024

Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"
M = TypeVar("M")


class _SnapshotMessages(Generic[M]):
    """Messages built from job snapshots, at most one per job, reused while the job's seq and watcher count are
    what they were built from (everything else in them derives from the snapshot of that seq). With `limit`, the
    least recently used are dropped first."""

    def __init__(self, limit: int | None = None) -> None:
        self._entries: OrderedDict[str, tuple[int, int, M]] = OrderedDict()
        self._limit = limit

    def get(self, job_id: str, seq: int, watcher_count: int) -> M | None:
        entry = self._entries.get(job_id)
        if entry is None or entry[0] != seq or entry[1] != watcher_count:
            return None
        self._entries.move_to_end(job_id)
        return entry[2]

    def put(self, job_id: str, seq: int, watcher_count: int, message: M) -> None:
        self._entries[job_id] = (seq, watcher_count, message)
        self._entries.move_to_end(job_id)
        if self._limit is not None and len(self._entries) > self._limit:
            self._entries.popitem(last=False)

    def discard(self, job_id: str) -> None:
        self._entries.pop(job_id, None)


class JobServicer(job_service_pb2_grpc.JobServiceServicer):
    def __init__(self, engine: JobEngine, *, max_message_bytes: int = paging.DEFAULT_MAX_MESSAGE_BYTES) -> None:
        self._engine = engine
        self._max_message_bytes = max_message_bytes
        # WatchJob: the newest JobUpdate per job, shared by all its watchers (one conversion per snapshot, not one
        # per snapshot per watcher).
        self._updates: _SnapshotMessages[job_pb2.JobUpdate] = _SnapshotMessages()
        # GetJob on a finished job (polling clients, dashboards): the job no longer changes, so its response is
        # built once and reused while its watcher count is the same.
        self._finished_responses: _SnapshotMessages[job_service_pb2.GetJobResponse] = _SnapshotMessages(
            limit=FINISHED_RESPONSE_CACHE_SIZE
        )

    def _update(self, job: Job) -> job_pb2.JobUpdate:
        count = self._engine.watcher_count(job.id)
        update = self._updates.get(job.id, job.seq, count)
        if update is not None:
            return update
        update = job_to_update(job, count)
        if count > 1 and not job.terminal:
            self._updates.put(job.id, job.seq, count, update)
        else:
            self._updates.discard(job.id)
        return update

    def _proto(self, job: Job) -> job_pb2.Job:
        return job_to_proto(job, self._engine.watcher_count(job.id))

    async def GetJob(self, request: job_service_pb2.GetJobRequest, context: Context) -> job_service_pb2.GetJobResponse:
        job = await self._engine.get(fields.job_id(request.job_id))
        if not job.terminal:
            return job_service_pb2.GetJobResponse(job=self._proto(job))
        count = self._engine.watcher_count(job.id)
        response = self._finished_responses.get(job.id, job.seq, count)
        if response is None:
            response = job_service_pb2.GetJobResponse(job=job_to_proto(job, count))
            self._finished_responses.put(job.id, job.seq, count, response)
        return response

    async def ListJobs(
        self, request: job_service_pb2.ListJobsRequest, context: Context
    ) -> job_service_pb2.ListJobsResponse:
        if request.page_size < 0:
            raise InvalidArgument(f"page_size must not be negative, got {request.page_size}", field="page_size")
        page_size = min(request.page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        states = states_from_proto(request.states)
        kinds = kinds_from_proto(request.kinds)
        parent_id = fields.job_id(request.parent_id, name="parent_id") if request.parent_id else ""
        jobs, next_token = await self._engine.list(
            states=states, kinds=kinds, page_size=page_size, page_token=request.page_token, parent_id=parent_id
        )
        messages = [self._proto(j) for j in jobs]
        keep = paging.fit(messages, self._max_message_bytes)
        if keep < len(messages):
            # Too big by bytes: ask again for exactly the jobs that fit, which yields the token after the last one.
            jobs, next_token = await self._engine.list(
                states=states, kinds=kinds, page_size=keep, page_token=request.page_token, parent_id=parent_id
            )
            messages = [self._proto(j) for j in jobs]
        return job_service_pb2.ListJobsResponse(jobs=messages, next_page_token=next_token)

    async def CancelJob(
        self, request: job_service_pb2.CancelJobRequest, context: Context
    ) -> job_service_pb2.CancelJobResponse:
        job = await self._engine.cancel(fields.job_id(request.job_id), peer=context.peer())
        return job_service_pb2.CancelJobResponse(job=self._proto(job))

    async def DeleteJob(
        self, request: job_service_pb2.DeleteJobRequest, context: Context
    ) -> job_service_pb2.DeleteJobResponse:
        job_id = fields.job_id(request.job_id)
        await self._engine.delete(job_id)
        self._finished_responses.discard(job_id)
        return job_service_pb2.DeleteJobResponse()

    async def WaitJob(
        self, request: job_service_pb2.WaitJobRequest, context: Context
    ) -> job_service_pb2.WaitJobResponse:
        job_id = fields.job_id(request.job_id)
        timeout_s = DEFAULT_WAIT_S
        if request.HasField("timeout"):
            timeout_s = request.timeout.ToNanoseconds() / 1e9
            if timeout_s < 0:
                raise InvalidArgument("timeout must not be negative", field="timeout")
        timeout_s = min(timeout_s, MAX_WAIT_S)
        remaining = context.time_remaining()
        if remaining is not None:
            timeout_s = max(0.0, min(timeout_s, remaining - DEADLINE_MARGIN_S))
        job = await self._engine.wait(job_id, timeout_s)
        return job_service_pb2.WaitJobResponse(job=self._proto(job), done=job.terminal)

    async def WatchJob(
        self, request: job_service_pb2.WatchJobRequest, context: Context
    ) -> AsyncIterator[job_pb2.JobUpdate]:
        job_id = fields.job_id(request.job_id)
        # aclosing: when the client goes away, gRPC cancels this generator; the watcher must be unregistered at
        # once, not whenever the engine's generator happens to be garbage-collected.
        try:
            async with contextlib.aclosing(self._engine.watch(job_id)) as snapshots:
                async for job in snapshots:
                    yield self._update(job)
        finally:
            if self._engine.watcher_count(job_id) == 0:
                self._updates.discard(job_id)  # the last watcher is gone: drop the shared update
