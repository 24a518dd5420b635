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

class VideoStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VIDEO_STATUS_UNSPECIFIED: _ClassVar[VideoStatus]
    VIDEO_STATUS_OK: _ClassVar[VideoStatus]
    VIDEO_STATUS_FAILED: _ClassVar[VideoStatus]
    VIDEO_STATUS_MISSING: _ClassVar[VideoStatus]

class ScanErrorKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SCAN_ERROR_KIND_UNSPECIFIED: _ClassVar[ScanErrorKind]
    SCAN_ERROR_KIND_PROBE_FAILED: _ClassVar[ScanErrorKind]
    SCAN_ERROR_KIND_PROBE_TIMEOUT: _ClassVar[ScanErrorKind]
    SCAN_ERROR_KIND_PROBE_CRASHED: _ClassVar[ScanErrorKind]
    SCAN_ERROR_KIND_UNREADABLE: _ClassVar[ScanErrorKind]
VIDEO_STATUS_UNSPECIFIED: VideoStatus
VIDEO_STATUS_OK: VideoStatus
VIDEO_STATUS_FAILED: VideoStatus
VIDEO_STATUS_MISSING: VideoStatus
SCAN_ERROR_KIND_UNSPECIFIED: ScanErrorKind
SCAN_ERROR_KIND_PROBE_FAILED: ScanErrorKind
SCAN_ERROR_KIND_PROBE_TIMEOUT: ScanErrorKind
SCAN_ERROR_KIND_PROBE_CRASHED: ScanErrorKind
SCAN_ERROR_KIND_UNREADABLE: ScanErrorKind

class VideoStream(_message.Message):
    __slots__ = ("codec", "profile", "width", "height", "frame_rate", "pixel_format", "bit_depth", "rotation", "color_transfer", "color_primaries", "hdr")
    CODEC_FIELD_NUMBER: _ClassVar[int]
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    FRAME_RATE_FIELD_NUMBER: _ClassVar[int]
    PIXEL_FORMAT_FIELD_NUMBER: _ClassVar[int]
    BIT_DEPTH_FIELD_NUMBER: _ClassVar[int]
    ROTATION_FIELD_NUMBER: _ClassVar[int]
    COLOR_TRANSFER_FIELD_NUMBER: _ClassVar[int]
    COLOR_PRIMARIES_FIELD_NUMBER: _ClassVar[int]
    HDR_FIELD_NUMBER: _ClassVar[int]
    codec: str
    profile: str
    width: int
    height: int
    frame_rate: float
    pixel_format: str
    bit_depth: int
    rotation: int
    color_transfer: str
    color_primaries: str
    hdr: bool
    def __init__(self, codec: _Optional[str] = ..., profile: _Optional[str] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., frame_rate: _Optional[float] = ..., pixel_format: _Optional[str] = ..., bit_depth: _Optional[int] = ..., rotation: _Optional[int] = ..., color_transfer: _Optional[str] = ..., color_primaries: _Optional[str] = ..., hdr: _Optional[bool] = ...) -> None: ...

class AudioStream(_message.Message):
    __slots__ = ("codec", "channels", "sample_rate", "language")
    CODEC_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    codec: str
    channels: int
    sample_rate: int
    language: str
    def __init__(self, codec: _Optional[str] = ..., channels: _Optional[int] = ..., sample_rate: _Optional[int] = ..., language: _Optional[str] = ...) -> None: ...

class Video(_message.Message):
    __slots__ = ("id", "path", "file_name", "container_format", "size_bytes", "mtime", "duration", "bit_rate", "video", "audio", "subtitle_count", "subtitle_languages", "creation_time", "missing", "probe_time", "create_time", "status", "failure_reason", "failure_kind")
    ID_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    FILE_NAME_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_FORMAT_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    MTIME_FIELD_NUMBER: _ClassVar[int]
    DURATION_FIELD_NUMBER: _ClassVar[int]
    BIT_RATE_FIELD_NUMBER: _ClassVar[int]
    VIDEO_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    SUBTITLE_COUNT_FIELD_NUMBER: _ClassVar[int]
    SUBTITLE_LANGUAGES_FIELD_NUMBER: _ClassVar[int]
    CREATION_TIME_FIELD_NUMBER: _ClassVar[int]
    MISSING_FIELD_NUMBER: _ClassVar[int]
    PROBE_TIME_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    FAILURE_REASON_FIELD_NUMBER: _ClassVar[int]
    FAILURE_KIND_FIELD_NUMBER: _ClassVar[int]
    id: str
    path: str
    file_name: str
    container_format: str
    size_bytes: int
    mtime: _timestamp_pb2.Timestamp
    duration: _duration_pb2.Duration
    bit_rate: int
    video: VideoStream
    audio: _containers.RepeatedCompositeFieldContainer[AudioStream]
    subtitle_count: int
    subtitle_languages: _containers.RepeatedScalarFieldContainer[str]
    creation_time: _timestamp_pb2.Timestamp
    missing: bool
    probe_time: _timestamp_pb2.Timestamp
    create_time: _timestamp_pb2.Timestamp
    status: VideoStatus
    failure_reason: str
    failure_kind: ScanErrorKind
    def __init__(self, id: _Optional[str] = ..., path: _Optional[str] = ..., file_name: _Optional[str] = ..., container_format: _Optional[str] = ..., size_bytes: _Optional[int] = ..., mtime: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., bit_rate: _Optional[int] = ..., video: _Optional[_Union[VideoStream, _Mapping]] = ..., audio: _Optional[_Iterable[_Union[AudioStream, _Mapping]]] = ..., subtitle_count: _Optional[int] = ..., subtitle_languages: _Optional[_Iterable[str]] = ..., creation_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., missing: _Optional[bool] = ..., probe_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., status: _Optional[_Union[VideoStatus, str]] = ..., failure_reason: _Optional[str] = ..., failure_kind: _Optional[_Union[ScanErrorKind, str]] = ...) -> None: ...

class ScanError(_message.Message):
    __slots__ = ("job_id", "path", "kind", "reason", "create_time")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    path: str
    kind: ScanErrorKind
    reason: str
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, job_id: _Optional[str] = ..., path: _Optional[str] = ..., kind: _Optional[_Union[ScanErrorKind, str]] = ..., reason: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListVideosRequest(_message.Message):
    __slots__ = ("path_prefix", "video_codec", "min_duration", "max_duration", "min_height", "query", "include_missing", "page_size", "page_token", "statuses")
    PATH_PREFIX_FIELD_NUMBER: _ClassVar[int]
    VIDEO_CODEC_FIELD_NUMBER: _ClassVar[int]
    MIN_DURATION_FIELD_NUMBER: _ClassVar[int]
    MAX_DURATION_FIELD_NUMBER: _ClassVar[int]
    MIN_HEIGHT_FIELD_NUMBER: _ClassVar[int]
    QUERY_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_MISSING_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    STATUSES_FIELD_NUMBER: _ClassVar[int]
    path_prefix: str
    video_codec: str
    min_duration: _duration_pb2.Duration
    max_duration: _duration_pb2.Duration
    min_height: int
    query: str
    include_missing: bool
    page_size: int
    page_token: str
    statuses: _containers.RepeatedScalarFieldContainer[VideoStatus]
    def __init__(self, path_prefix: _Optional[str] = ..., video_codec: _Optional[str] = ..., min_duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., max_duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., min_height: _Optional[int] = ..., query: _Optional[str] = ..., include_missing: _Optional[bool] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., statuses: _Optional[_Iterable[_Union[VideoStatus, str]]] = ...) -> None: ...

class ListVideosResponse(_message.Message):
    __slots__ = ("videos", "next_page_token")
    VIDEOS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    videos: _containers.RepeatedCompositeFieldContainer[Video]
    next_page_token: str
    def __init__(self, videos: _Optional[_Iterable[_Union[Video, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetVideoRequest(_message.Message):
    __slots__ = ("id", "path")
    ID_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    id: str
    path: str
    def __init__(self, id: _Optional[str] = ..., path: _Optional[str] = ...) -> None: ...

class GetVideoResponse(_message.Message):
    __slots__ = ("video",)
    VIDEO_FIELD_NUMBER: _ClassVar[int]
    video: Video
    def __init__(self, video: _Optional[_Union[Video, _Mapping]] = ...) -> None: ...

class ListScanErrorsRequest(_message.Message):
    __slots__ = ("job_id", "page_size", "page_token")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    page_size: int
    page_token: str
    def __init__(self, job_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListScanErrorsResponse(_message.Message):
    __slots__ = ("errors", "next_page_token")
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    errors: _containers.RepeatedCompositeFieldContainer[ScanError]
    next_page_token: str
    def __init__(self, errors: _Optional[_Iterable[_Union[ScanError, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...
