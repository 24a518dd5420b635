from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class ScanSpec(_message.Message):
    __slots__ = ("path", "recursive", "force", "extensions", "follow_symlinks")
    PATH_FIELD_NUMBER: _ClassVar[int]
    RECURSIVE_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    EXTENSIONS_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_SYMLINKS_FIELD_NUMBER: _ClassVar[int]
    path: str
    recursive: bool
    force: bool
    extensions: _containers.RepeatedScalarFieldContainer[str]
    follow_symlinks: bool
    def __init__(self, path: _Optional[str] = ..., recursive: _Optional[bool] = ..., force: _Optional[bool] = ..., extensions: _Optional[_Iterable[str]] = ..., follow_symlinks: _Optional[bool] = ...) -> None: ...

class ScanResult(_message.Message):
    __slots__ = ("discovered", "probed", "new", "updated", "unchanged", "missing", "failed", "unchanged_failed")
    DISCOVERED_FIELD_NUMBER: _ClassVar[int]
    PROBED_FIELD_NUMBER: _ClassVar[int]
    NEW_FIELD_NUMBER: _ClassVar[int]
    UPDATED_FIELD_NUMBER: _ClassVar[int]
    UNCHANGED_FIELD_NUMBER: _ClassVar[int]
    MISSING_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    UNCHANGED_FAILED_FIELD_NUMBER: _ClassVar[int]
    discovered: int
    probed: int
    new: int
    updated: int
    unchanged: int
    missing: int
    failed: int
    unchanged_failed: int
    def __init__(self, discovered: _Optional[int] = ..., probed: _Optional[int] = ..., new: _Optional[int] = ..., updated: _Optional[int] = ..., unchanged: _Optional[int] = ..., missing: _Optional[int] = ..., failed: _Optional[int] = ..., unchanged_failed: _Optional[int] = ...) -> None: ...
