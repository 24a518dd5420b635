"""Job (domain) -> reelscan.v1 messages, and enum values from requests -> domain enums.

Shared by the job and scan servicers. The domain enums have the same numbers as the proto enums, so conversion is
by value; what is left is times (Unix seconds -> Timestamp/Duration) and the kind-specific spec and result.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar, cast

from google.protobuf import duration_pb2, timestamp_pb2
from google.rpc import status_pb2

from reelscan.service.errors import InvalidArgument
from reelscan.service.jobs.model import Job, JobKind, JobState
from reelscan.v1 import job_pb2, scan_pb2

E = TypeVar("E", bound=enum.IntEnum)

_SCAN_RESULT_FIELDS = tuple(f.name for f in scan_pb2.ScanResult.DESCRIPTOR.fields)


def _timestamp(seconds: float) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromNanoseconds(round(seconds * 1e9))
    return ts


def _duration(seconds: float) -> duration_pb2.Duration:
    d = duration_pb2.Duration()
    d.FromNanoseconds(round(seconds * 1e9))
    return d


def scan_spec_to_proto(spec: Mapping[str, Any]) -> scan_pb2.ScanSpec:
    return scan_pb2.ScanSpec(
        path=str(spec.get("path", "")),
        recursive=bool(spec.get("recursive", False)),
        force=bool(spec.get("force", False)),
        extensions=[str(e) for e in spec.get("extensions", ())],
        follow_symlinks=bool(spec.get("follow_symlinks", False)),
    )


def scan_result_to_proto(result: Mapping[str, int]) -> scan_pb2.ScanResult:
    return scan_pb2.ScanResult(**{name: int(result[name]) for name in _SCAN_RESULT_FIELDS if name in result})


def _progress_detail(job: Job) -> job_pb2.JobProgress:
    p = job.progress
    detail = job_pb2.JobProgress(
        stage=cast(job_pb2.JobStage, int(p.stage)),  # same numbers by design (model.py)
        items_done=p.done,
        items_total=p.total,
        current_item=p.current_item,
        items_per_second=p.rate,
    )
    if p.eta_s is not None:
        detail.eta.CopyFrom(_duration(p.eta_s))
    return detail


def job_to_proto(job: Job, watcher_count: int) -> job_pb2.Job:
    """The full Job message; `watcher_count` is the engine's live count (engine.watcher_count(job.id))."""
    message = job_pb2.Job(
        id=job.id,
        kind=cast(job_pb2.JobKind, int(job.kind)),
        state=cast(job_pb2.JobState, int(job.state)),
        progress=job.progress.fraction,
        progress_detail=_progress_detail(job),
        seq=job.seq,
        timeout=_duration(job.timeout_s),
        create_time=_timestamp(job.create_time),
        update_time=_timestamp(job.update_time),
        cancel_requested=job.cancel_requested,
        result=scan_result_to_proto(job.result),
        watcher_count=watcher_count,
        replica_id=job.owner,
        replica_address=job.owner_address,
        parent_id=job.parent_id,
    )
    if job.kind is JobKind.SCAN:
        message.scan.CopyFrom(scan_spec_to_proto(job.spec))
    if job.start_time is not None:
        message.start_time.CopyFrom(_timestamp(job.start_time))
    if job.finish_time is not None:
        message.finish_time.CopyFrom(_timestamp(job.finish_time))
    if job.error is not None:
        message.error.CopyFrom(status_pb2.Status(code=job.error.code, message=job.error.message))
    return message


def job_to_update(job: Job, watcher_count: int) -> job_pb2.JobUpdate:
    """A WatchJob message: the headline fields at top level, plus the full snapshot."""
    full = job_to_proto(job, watcher_count)
    update = job_pb2.JobUpdate(
        job_id=job.id,
        seq=job.seq,
        state=full.state,
        progress=full.progress,
        progress_detail=full.progress_detail,
        update_time=full.update_time,
        result=full.result,
        job=full,
    )
    if full.HasField("error"):
        update.error.CopyFrom(full.error)
    return update


def _enum_filter(values: Iterable[int], enum: type[E], field: str, what: str) -> list[E]:
    """Filter values from a request; UNSPECIFIED or unknown numbers are INVALID_ARGUMENT."""
    members = []
    for value in values:
        try:
            members.append(enum(value))
        except ValueError:
            raise InvalidArgument(f"{field} contains an invalid {what} ({value})", field=field) from None
    return members


def states_from_proto(values: Iterable[int], field: str = "states") -> list[JobState]:
    return _enum_filter(values, JobState, field, "job state")


def kinds_from_proto(values: Iterable[int], field: str = "kinds") -> list[JobKind]:
    return _enum_filter(values, JobKind, field, "job kind")
