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

class HdrFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    HDR_FORMAT_UNSPECIFIED: _ClassVar[HdrFormat]
    HDR_FORMAT_SDR: _ClassVar[HdrFormat]
    HDR_FORMAT_HDR10: _ClassVar[HdrFormat]
    HDR_FORMAT_HLG: _ClassVar[HdrFormat]
    HDR_FORMAT_DOLBY_VISION: _ClassVar[HdrFormat]

class SubtitleKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SUBTITLE_KIND_UNSPECIFIED: _ClassVar[SubtitleKind]
    SUBTITLE_KIND_TEXT: _ClassVar[SubtitleKind]
    SUBTITLE_KIND_BITMAP: _ClassVar[SubtitleKind]

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
HDR_FORMAT_UNSPECIFIED: HdrFormat
HDR_FORMAT_SDR: HdrFormat
HDR_FORMAT_HDR10: HdrFormat
HDR_FORMAT_HLG: HdrFormat
HDR_FORMAT_DOLBY_VISION: HdrFormat
SUBTITLE_KIND_UNSPECIFIED: SubtitleKind
SUBTITLE_KIND_TEXT: SubtitleKind
SUBTITLE_KIND_BITMAP: SubtitleKind
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
    __slots__ = ("codec", "profile", "width", "height", "frame_rate", "pixel_format", "bit_depth", "rotation", "color_transfer", "color_primaries", "hdr", "color_space", "color_range", "hdr_format", "mastering_display", "max_cll", "max_fall", "sample_aspect_ratio", "display_aspect_ratio", "display_width", "display_height", "field_order", "interlaced", "bit_rate", "frame_count")
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
    COLOR_SPACE_FIELD_NUMBER: _ClassVar[int]
    COLOR_RANGE_FIELD_NUMBER: _ClassVar[int]
    HDR_FORMAT_FIELD_NUMBER: _ClassVar[int]
    MASTERING_DISPLAY_FIELD_NUMBER: _ClassVar[int]
    MAX_CLL_FIELD_NUMBER: _ClassVar[int]
    MAX_FALL_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_ASPECT_RATIO_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_ASPECT_RATIO_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_WIDTH_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_HEIGHT_FIELD_NUMBER: _ClassVar[int]
    FIELD_ORDER_FIELD_NUMBER: _ClassVar[int]
    INTERLACED_FIELD_NUMBER: _ClassVar[int]
    BIT_RATE_FIELD_NUMBER: _ClassVar[int]
    FRAME_COUNT_FIELD_NUMBER: _ClassVar[int]
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
    color_space: str
    color_range: str
    hdr_format: HdrFormat
    mastering_display: MasteringDisplay
    max_cll: int
    max_fall: int
    sample_aspect_ratio: str
    display_aspect_ratio: str
    display_width: int
    display_height: int
    field_order: str
    interlaced: bool
    bit_rate: int
    frame_count: int
    def __init__(self, codec: _Optional[str] = ..., profile: _Optional[str] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., frame_rate: _Optional[float] = ..., pixel_format: _Optional[str] = ..., bit_depth: _Optional[int] = ..., rotation: _Optional[int] = ..., color_transfer: _Optional[str] = ..., color_primaries: _Optional[str] = ..., hdr: _Optional[bool] = ..., color_space: _Optional[str] = ..., color_range: _Optional[str] = ..., hdr_format: _Optional[_Union[HdrFormat, str]] = ..., mastering_display: _Optional[_Union[MasteringDisplay, _Mapping]] = ..., max_cll: _Optional[int] = ..., max_fall: _Optional[int] = ..., sample_aspect_ratio: _Optional[str] = ..., display_aspect_ratio: _Optional[str] = ..., display_width: _Optional[int] = ..., display_height: _Optional[int] = ..., field_order: _Optional[str] = ..., interlaced: _Optional[bool] = ..., bit_rate: _Optional[int] = ..., frame_count: _Optional[int] = ...) -> None: ...

class MasteringDisplay(_message.Message):
    __slots__ = ("red_x", "red_y", "green_x", "green_y", "blue_x", "blue_y", "white_x", "white_y", "min_luminance", "max_luminance")
    RED_X_FIELD_NUMBER: _ClassVar[int]
    RED_Y_FIELD_NUMBER: _ClassVar[int]
    GREEN_X_FIELD_NUMBER: _ClassVar[int]
    GREEN_Y_FIELD_NUMBER: _ClassVar[int]
    BLUE_X_FIELD_NUMBER: _ClassVar[int]
    BLUE_Y_FIELD_NUMBER: _ClassVar[int]
    WHITE_X_FIELD_NUMBER: _ClassVar[int]
    WHITE_Y_FIELD_NUMBER: _ClassVar[int]
    MIN_LUMINANCE_FIELD_NUMBER: _ClassVar[int]
    MAX_LUMINANCE_FIELD_NUMBER: _ClassVar[int]
    red_x: float
    red_y: float
    green_x: float
    green_y: float
    blue_x: float
    blue_y: float
    white_x: float
    white_y: float
    min_luminance: float
    max_luminance: float
    def __init__(self, red_x: _Optional[float] = ..., red_y: _Optional[float] = ..., green_x: _Optional[float] = ..., green_y: _Optional[float] = ..., blue_x: _Optional[float] = ..., blue_y: _Optional[float] = ..., white_x: _Optional[float] = ..., white_y: _Optional[float] = ..., min_luminance: _Optional[float] = ..., max_luminance: _Optional[float] = ...) -> None: ...

class StreamDisposition(_message.Message):
    __slots__ = ("default_track", "forced", "hearing_impaired", "visual_impaired", "commentary", "original", "dub")
    DEFAULT_TRACK_FIELD_NUMBER: _ClassVar[int]
    FORCED_FIELD_NUMBER: _ClassVar[int]
    HEARING_IMPAIRED_FIELD_NUMBER: _ClassVar[int]
    VISUAL_IMPAIRED_FIELD_NUMBER: _ClassVar[int]
    COMMENTARY_FIELD_NUMBER: _ClassVar[int]
    ORIGINAL_FIELD_NUMBER: _ClassVar[int]
    DUB_FIELD_NUMBER: _ClassVar[int]
    default_track: bool
    forced: bool
    hearing_impaired: bool
    visual_impaired: bool
    commentary: bool
    original: bool
    dub: bool
    def __init__(self, default_track: _Optional[bool] = ..., forced: _Optional[bool] = ..., hearing_impaired: _Optional[bool] = ..., visual_impaired: _Optional[bool] = ..., commentary: _Optional[bool] = ..., original: _Optional[bool] = ..., dub: _Optional[bool] = ...) -> None: ...

class SubtitleStream(_message.Message):
    __slots__ = ("codec", "language", "title", "disposition", "kind")
    CODEC_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    DISPOSITION_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    codec: str
    language: str
    title: str
    disposition: StreamDisposition
    kind: SubtitleKind
    def __init__(self, codec: _Optional[str] = ..., language: _Optional[str] = ..., title: _Optional[str] = ..., disposition: _Optional[_Union[StreamDisposition, _Mapping]] = ..., kind: _Optional[_Union[SubtitleKind, str]] = ...) -> None: ...

class Chapter(_message.Message):
    __slots__ = ("start", "end", "title")
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    start: _duration_pb2.Duration
    end: _duration_pb2.Duration
    title: str
    def __init__(self, start: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., end: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., title: _Optional[str] = ...) -> None: ...

class AudioStream(_message.Message):
    __slots__ = ("codec", "channels", "sample_rate", "language", "channel_layout", "bit_rate", "profile", "title", "disposition")
    CODEC_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_LAYOUT_FIELD_NUMBER: _ClassVar[int]
    BIT_RATE_FIELD_NUMBER: _ClassVar[int]
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    DISPOSITION_FIELD_NUMBER: _ClassVar[int]
    codec: str
    channels: int
    sample_rate: int
    language: str
    channel_layout: str
    bit_rate: int
    profile: str
    title: str
    disposition: StreamDisposition
    def __init__(self, codec: _Optional[str] = ..., channels: _Optional[int] = ..., sample_rate: _Optional[int] = ..., language: _Optional[str] = ..., channel_layout: _Optional[str] = ..., bit_rate: _Optional[int] = ..., profile: _Optional[str] = ..., title: _Optional[str] = ..., disposition: _Optional[_Union[StreamDisposition, _Mapping]] = ...) -> None: ...

class Video(_message.Message):
    __slots__ = ("id", "path", "file_name", "container_format", "size_bytes", "mtime", "duration", "bit_rate", "video", "audio", "subtitle_count", "subtitle_languages", "creation_time", "missing", "probe_time", "create_time", "status", "failure_reason", "failure_kind", "subtitles", "title", "has_cover_art", "chapter_count", "chapters")
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
    SUBTITLES_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    HAS_COVER_ART_FIELD_NUMBER: _ClassVar[int]
    CHAPTER_COUNT_FIELD_NUMBER: _ClassVar[int]
    CHAPTERS_FIELD_NUMBER: _ClassVar[int]
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
    subtitles: _containers.RepeatedCompositeFieldContainer[SubtitleStream]
    title: str
    has_cover_art: bool
    chapter_count: int
    chapters: _containers.RepeatedCompositeFieldContainer[Chapter]
    def __init__(self, id: _Optional[str] = ..., path: _Optional[str] = ..., file_name: _Optional[str] = ..., container_format: _Optional[str] = ..., size_bytes: _Optional[int] = ..., mtime: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., bit_rate: _Optional[int] = ..., video: _Optional[_Union[VideoStream, _Mapping]] = ..., audio: _Optional[_Iterable[_Union[AudioStream, _Mapping]]] = ..., subtitle_count: _Optional[int] = ..., subtitle_languages: _Optional[_Iterable[str]] = ..., creation_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., missing: _Optional[bool] = ..., probe_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., status: _Optional[_Union[VideoStatus, str]] = ..., failure_reason: _Optional[str] = ..., failure_kind: _Optional[_Union[ScanErrorKind, str]] = ..., subtitles: _Optional[_Iterable[_Union[SubtitleStream, _Mapping]]] = ..., title: _Optional[str] = ..., has_cover_art: _Optional[bool] = ..., chapter_count: _Optional[int] = ..., chapters: _Optional[_Iterable[_Union[Chapter, _Mapping]]] = ...) -> None: ...

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
    __slots__ = ("path_prefix", "video_codec", "min_duration", "max_duration", "min_height", "query", "include_missing", "page_size", "page_token", "statuses", "container", "audio_language", "subtitle_language", "hdr_format", "min_width", "interlaced", "has_subtitles")
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
    CONTAINER_FIELD_NUMBER: _ClassVar[int]
    AUDIO_LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    SUBTITLE_LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    HDR_FORMAT_FIELD_NUMBER: _ClassVar[int]
    MIN_WIDTH_FIELD_NUMBER: _ClassVar[int]
    INTERLACED_FIELD_NUMBER: _ClassVar[int]
    HAS_SUBTITLES_FIELD_NUMBER: _ClassVar[int]
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
    container: str
    audio_language: str
    subtitle_language: str
    hdr_format: HdrFormat
    min_width: int
    interlaced: bool
    has_subtitles: bool
    def __init__(self, path_prefix: _Optional[str] = ..., video_codec: _Optional[str] = ..., min_duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., max_duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., min_height: _Optional[int] = ..., query: _Optional[str] = ..., include_missing: _Optional[bool] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., statuses: _Optional[_Iterable[_Union[VideoStatus, str]]] = ..., container: _Optional[str] = ..., audio_language: _Optional[str] = ..., subtitle_language: _Optional[str] = ..., hdr_format: _Optional[_Union[HdrFormat, str]] = ..., min_width: _Optional[int] = ..., interlaced: _Optional[bool] = ..., has_subtitles: _Optional[bool] = ...) -> None: ...

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
