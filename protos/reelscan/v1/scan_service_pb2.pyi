import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from reelscan.v1 import job_pb2 as _job_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Sharding(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SHARDING_UNSPECIFIED: _ClassVar[Sharding]
    SHARDING_AUTO: _ClassVar[Sharding]
    SHARDING_ALWAYS: _ClassVar[Sharding]
    SHARDING_NEVER: _ClassVar[Sharding]
SHARDING_UNSPECIFIED: Sharding
SHARDING_AUTO: Sharding
SHARDING_ALWAYS: Sharding
SHARDING_NEVER: Sharding

class StartScanRequest(_message.Message):
    __slots__ = ("path", "recursive", "force", "extensions", "follow_symlinks", "timeout", "sharding")
    PATH_FIELD_NUMBER: _ClassVar[int]
    RECURSIVE_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    EXTENSIONS_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_SYMLINKS_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    SHARDING_FIELD_NUMBER: _ClassVar[int]
    path: str
    recursive: bool
    force: bool
    extensions: _containers.RepeatedScalarFieldContainer[str]
    follow_symlinks: bool
    timeout: _duration_pb2.Duration
    sharding: Sharding
    def __init__(self, path: _Optional[str] = ..., recursive: _Optional[bool] = ..., force: _Optional[bool] = ..., extensions: _Optional[_Iterable[str]] = ..., follow_symlinks: _Optional[bool] = ..., timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., sharding: _Optional[_Union[Sharding, str]] = ...) -> None: ...

class StartScanResponse(_message.Message):
    __slots__ = ("job", "existing")
    JOB_FIELD_NUMBER: _ClassVar[int]
    EXISTING_FIELD_NUMBER: _ClassVar[int]
    job: _job_pb2.Job
    existing: bool
    def __init__(self, job: _Optional[_Union[_job_pb2.Job, _Mapping]] = ..., existing: _Optional[bool] = ...) -> None: ...
