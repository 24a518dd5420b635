import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DatabaseKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DATABASE_KIND_UNSPECIFIED: _ClassVar[DatabaseKind]
    DATABASE_KIND_SQLITE: _ClassVar[DatabaseKind]
    DATABASE_KIND_POSTGRESQL: _ClassVar[DatabaseKind]
DATABASE_KIND_UNSPECIFIED: DatabaseKind
DATABASE_KIND_SQLITE: DatabaseKind
DATABASE_KIND_POSTGRESQL: DatabaseKind

class GetServerInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetServerInfoResponse(_message.Message):
    __slots__ = ("info",)
    INFO_FIELD_NUMBER: _ClassVar[int]
    info: ServerInfo
    def __init__(self, info: _Optional[_Union[ServerInfo, _Mapping]] = ...) -> None: ...

class ServerInfo(_message.Message):
    __slots__ = ("version", "build_revision", "prober", "allowed_roots", "extensions", "limits", "database", "start_time", "uptime", "replica_id", "replica_address", "tls", "client_certificates_required", "auth_required", "python_version", "grpc_version")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    BUILD_REVISION_FIELD_NUMBER: _ClassVar[int]
    PROBER_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_ROOTS_FIELD_NUMBER: _ClassVar[int]
    EXTENSIONS_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    DATABASE_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    UPTIME_FIELD_NUMBER: _ClassVar[int]
    REPLICA_ID_FIELD_NUMBER: _ClassVar[int]
    REPLICA_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    TLS_FIELD_NUMBER: _ClassVar[int]
    CLIENT_CERTIFICATES_REQUIRED_FIELD_NUMBER: _ClassVar[int]
    AUTH_REQUIRED_FIELD_NUMBER: _ClassVar[int]
    PYTHON_VERSION_FIELD_NUMBER: _ClassVar[int]
    GRPC_VERSION_FIELD_NUMBER: _ClassVar[int]
    version: str
    build_revision: str
    prober: ProberInfo
    allowed_roots: _containers.RepeatedScalarFieldContainer[str]
    extensions: _containers.RepeatedScalarFieldContainer[str]
    limits: ServerLimits
    database: DatabaseInfo
    start_time: _timestamp_pb2.Timestamp
    uptime: _duration_pb2.Duration
    replica_id: str
    replica_address: str
    tls: bool
    client_certificates_required: bool
    auth_required: bool
    python_version: str
    grpc_version: str
    def __init__(self, version: _Optional[str] = ..., build_revision: _Optional[str] = ..., prober: _Optional[_Union[ProberInfo, _Mapping]] = ..., allowed_roots: _Optional[_Iterable[str]] = ..., extensions: _Optional[_Iterable[str]] = ..., limits: _Optional[_Union[ServerLimits, _Mapping]] = ..., database: _Optional[_Union[DatabaseInfo, _Mapping]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., uptime: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., replica_id: _Optional[str] = ..., replica_address: _Optional[str] = ..., tls: _Optional[bool] = ..., client_certificates_required: _Optional[bool] = ..., auth_required: _Optional[bool] = ..., python_version: _Optional[str] = ..., grpc_version: _Optional[str] = ...) -> None: ...

class ProberInfo(_message.Message):
    __slots__ = ("name", "workers", "pyav_version", "ffmpeg_version", "library_versions", "ffprobe_version")
    class LibraryVersionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    PYAV_VERSION_FIELD_NUMBER: _ClassVar[int]
    FFMPEG_VERSION_FIELD_NUMBER: _ClassVar[int]
    LIBRARY_VERSIONS_FIELD_NUMBER: _ClassVar[int]
    FFPROBE_VERSION_FIELD_NUMBER: _ClassVar[int]
    name: str
    workers: int
    pyav_version: str
    ffmpeg_version: str
    library_versions: _containers.ScalarMap[str, str]
    ffprobe_version: str
    def __init__(self, name: _Optional[str] = ..., workers: _Optional[int] = ..., pyav_version: _Optional[str] = ..., ffmpeg_version: _Optional[str] = ..., library_versions: _Optional[_Mapping[str, str]] = ..., ffprobe_version: _Optional[str] = ...) -> None: ...

class ServerLimits(_message.Message):
    __slots__ = ("max_concurrent_jobs", "max_queued_jobs", "max_watchers", "job_timeout", "probe_timeout", "probe_workers", "job_retention", "max_message_bytes", "lease_ttl", "grace_period", "shard_threshold", "shard_size", "probe_concurrency")
    MAX_CONCURRENT_JOBS_FIELD_NUMBER: _ClassVar[int]
    MAX_QUEUED_JOBS_FIELD_NUMBER: _ClassVar[int]
    MAX_WATCHERS_FIELD_NUMBER: _ClassVar[int]
    JOB_TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    PROBE_TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    PROBE_WORKERS_FIELD_NUMBER: _ClassVar[int]
    JOB_RETENTION_FIELD_NUMBER: _ClassVar[int]
    MAX_MESSAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    LEASE_TTL_FIELD_NUMBER: _ClassVar[int]
    GRACE_PERIOD_FIELD_NUMBER: _ClassVar[int]
    SHARD_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    SHARD_SIZE_FIELD_NUMBER: _ClassVar[int]
    PROBE_CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    max_concurrent_jobs: int
    max_queued_jobs: int
    max_watchers: int
    job_timeout: _duration_pb2.Duration
    probe_timeout: _duration_pb2.Duration
    probe_workers: int
    job_retention: _duration_pb2.Duration
    max_message_bytes: int
    lease_ttl: _duration_pb2.Duration
    grace_period: _duration_pb2.Duration
    shard_threshold: int
    shard_size: int
    probe_concurrency: int
    def __init__(self, max_concurrent_jobs: _Optional[int] = ..., max_queued_jobs: _Optional[int] = ..., max_watchers: _Optional[int] = ..., job_timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., probe_timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., probe_workers: _Optional[int] = ..., job_retention: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., max_message_bytes: _Optional[int] = ..., lease_ttl: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., grace_period: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., shard_threshold: _Optional[int] = ..., shard_size: _Optional[int] = ..., probe_concurrency: _Optional[int] = ...) -> None: ...

class DatabaseInfo(_message.Message):
    __slots__ = ("kind", "location", "host", "port", "name", "user")
    KIND_FIELD_NUMBER: _ClassVar[int]
    LOCATION_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    kind: DatabaseKind
    location: str
    host: str
    port: int
    name: str
    user: str
    def __init__(self, kind: _Optional[_Union[DatabaseKind, str]] = ..., location: _Optional[str] = ..., host: _Optional[str] = ..., port: _Optional[int] = ..., name: _Optional[str] = ..., user: _Optional[str] = ...) -> None: ...
