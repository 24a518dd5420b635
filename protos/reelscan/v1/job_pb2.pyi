import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.rpc import status_pb2 as _status_pb2
from reelscan.v1 import scan_pb2 as _scan_pb2
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class JobState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_STATE_UNSPECIFIED: _ClassVar[JobState]
    JOB_STATE_PENDING: _ClassVar[JobState]
    JOB_STATE_RUNNING: _ClassVar[JobState]
    JOB_STATE_SUCCEEDED: _ClassVar[JobState]
    JOB_STATE_FAILED: _ClassVar[JobState]
    JOB_STATE_CANCELLED: _ClassVar[JobState]
    JOB_STATE_TIMED_OUT: _ClassVar[JobState]

class JobKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_KIND_UNSPECIFIED: _ClassVar[JobKind]
    JOB_KIND_SCAN: _ClassVar[JobKind]

class JobStage(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_STAGE_UNSPECIFIED: _ClassVar[JobStage]
    JOB_STAGE_QUEUED: _ClassVar[JobStage]
    JOB_STAGE_DISCOVERING: _ClassVar[JobStage]
    JOB_STAGE_PROBING: _ClassVar[JobStage]
    JOB_STAGE_FINALIZING: _ClassVar[JobStage]
    JOB_STAGE_DONE: _ClassVar[JobStage]
JOB_STATE_UNSPECIFIED: JobState
JOB_STATE_PENDING: JobState
JOB_STATE_RUNNING: JobState
JOB_STATE_SUCCEEDED: JobState
JOB_STATE_FAILED: JobState
JOB_STATE_CANCELLED: JobState
JOB_STATE_TIMED_OUT: JobState
JOB_KIND_UNSPECIFIED: JobKind
JOB_KIND_SCAN: JobKind
JOB_STAGE_UNSPECIFIED: JobStage
JOB_STAGE_QUEUED: JobStage
JOB_STAGE_DISCOVERING: JobStage
JOB_STAGE_PROBING: JobStage
JOB_STAGE_FINALIZING: JobStage
JOB_STAGE_DONE: JobStage

class JobProgress(_message.Message):
    __slots__ = ("stage", "items_done", "items_total", "current_item", "items_per_second", "eta")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    ITEMS_DONE_FIELD_NUMBER: _ClassVar[int]
    ITEMS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    CURRENT_ITEM_FIELD_NUMBER: _ClassVar[int]
    ITEMS_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    ETA_FIELD_NUMBER: _ClassVar[int]
    stage: JobStage
    items_done: int
    items_total: int
    current_item: str
    items_per_second: float
    eta: _duration_pb2.Duration
    def __init__(self, stage: _Optional[_Union[JobStage, str]] = ..., items_done: _Optional[int] = ..., items_total: _Optional[int] = ..., current_item: _Optional[str] = ..., items_per_second: _Optional[float] = ..., eta: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class Job(_message.Message):
    __slots__ = ("id", "kind", "state", "progress", "progress_detail", "seq", "scan", "timeout", "create_time", "start_time", "finish_time", "update_time", "cancel_requested", "result", "error", "watcher_count", "replica_id", "replica_address", "parent_id")
    ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_DETAIL_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    SCAN_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    FINISH_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    CANCEL_REQUESTED_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    WATCHER_COUNT_FIELD_NUMBER: _ClassVar[int]
    REPLICA_ID_FIELD_NUMBER: _ClassVar[int]
    REPLICA_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    PARENT_ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    kind: JobKind
    state: JobState
    progress: float
    progress_detail: JobProgress
    seq: int
    scan: _scan_pb2.ScanSpec
    timeout: _duration_pb2.Duration
    create_time: _timestamp_pb2.Timestamp
    start_time: _timestamp_pb2.Timestamp
    finish_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    cancel_requested: bool
    result: _scan_pb2.ScanResult
    error: _status_pb2.Status
    watcher_count: int
    replica_id: str
    replica_address: str
    parent_id: str
    def __init__(self, id: _Optional[str] = ..., kind: _Optional[_Union[JobKind, str]] = ..., state: _Optional[_Union[JobState, str]] = ..., progress: _Optional[float] = ..., progress_detail: _Optional[_Union[JobProgress, _Mapping]] = ..., seq: _Optional[int] = ..., scan: _Optional[_Union[_scan_pb2.ScanSpec, _Mapping]] = ..., timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finish_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., cancel_requested: _Optional[bool] = ..., result: _Optional[_Union[_scan_pb2.ScanResult, _Mapping]] = ..., error: _Optional[_Union[_status_pb2.Status, _Mapping]] = ..., watcher_count: _Optional[int] = ..., replica_id: _Optional[str] = ..., replica_address: _Optional[str] = ..., parent_id: _Optional[str] = ...) -> None: ...

class JobUpdate(_message.Message):
    __slots__ = ("job_id", "seq", "state", "progress", "progress_detail", "update_time", "result", "error", "job")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_DETAIL_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    JOB_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    seq: int
    state: JobState
    progress: float
    progress_detail: JobProgress
    update_time: _timestamp_pb2.Timestamp
    result: _scan_pb2.ScanResult
    error: _status_pb2.Status
    job: Job
    def __init__(self, job_id: _Optional[str] = ..., seq: _Optional[int] = ..., state: _Optional[_Union[JobState, str]] = ..., progress: _Optional[float] = ..., progress_detail: _Optional[_Union[JobProgress, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., result: _Optional[_Union[_scan_pb2.ScanResult, _Mapping]] = ..., error: _Optional[_Union[_status_pb2.Status, _Mapping]] = ..., job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...
