"""LibraryService: ListVideos, GetVideo, ListScanErrors over the library store."""

from __future__ import annotations

import re
from typing import Any, TypeAlias

import grpc
from google.protobuf import duration_pb2, timestamp_pb2

from reelscan.limits import MAX_ID_CHARS, MAX_PATH_CHARS
from reelscan.service.api import fields, paging
from reelscan.service.errors import FailedPrecondition, InvalidArgument
from reelscan.service.jobs.engine import JobEngine
from reelscan.service.scan.library_model import ScanErrorRecord, Video, VideoFilter, VideoStatus, container_name
from reelscan.service.scan.library_store import LibraryStore
from reelscan.v1 import library_pb2, library_pb2_grpc

Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"

MAX_QUERY_CHARS = 1024
MAX_DURATION_SECONDS = 315_576_000_000
_CONTAINER = re.compile(r"[a-z0-9_]{1,32}")
_LANGUAGE = re.compile(r"[a-z0-9-]{1,16}")
# media_info's HDR format names <-> reelscan.v1.HdrFormat.
HDR_FORMAT_NUMBERS = {
    "sdr": library_pb2.HDR_FORMAT_SDR,
    "hdr10": library_pb2.HDR_FORMAT_HDR10,
    "hlg": library_pb2.HDR_FORMAT_HLG,
    "dolby_vision": library_pb2.HDR_FORMAT_DOLBY_VISION,
}
HDR_FORMAT_NAMES = {number: name for name, number in HDR_FORMAT_NUMBERS.items()}
_SUBTITLE_KINDS = {"text": library_pb2.SUBTITLE_KIND_TEXT, "bitmap": library_pb2.SUBTITLE_KIND_BITMAP}


def _disposition(names: tuple[str, ...]) -> library_pb2.StreamDisposition:
    flags = set(names)
    return library_pb2.StreamDisposition(
        default_track="default" in flags,
        forced="forced" in flags,
        hearing_impaired="hearing_impaired" in flags,
        visual_impaired="visual_impaired" in flags,
        commentary="comment" in flags,
        original="original" in flags,
        dub="dub" in flags,
    )


def _duration(us: int) -> duration_pb2.Duration:
    return duration_pb2.Duration(seconds=us // 1_000_000, nanos=us % 1_000_000 * 1000)


def _timestamp_ns(ns: int) -> timestamp_pb2.Timestamp | None:
    ts = timestamp_pb2.Timestamp()
    try:
        ts.FromNanoseconds(ns)
        ts.ToDatetime()  # raises for times outside 0001..9999, which Timestamp cannot carry
    except (ValueError, OverflowError):
        return None
    return ts


def video_to_proto(video: Video) -> library_pb2.Video:
    message = library_pb2.Video(
        id=video.id,
        path=video.path,
        file_name=video.file_name,
        container_format=video.container_format,
        size_bytes=video.size,
        bit_rate=video.bit_rate,
        audio=[
            library_pb2.AudioStream(
                codec=a.codec,
                channels=a.channels,
                sample_rate=a.sample_rate,
                language=a.language,
                channel_layout=a.channel_layout,
                bit_rate=a.bit_rate,
                profile=a.profile,
                title=a.title,
                disposition=_disposition(a.disposition),
            )
            for a in video.audio
        ],
        subtitles=[
            library_pb2.SubtitleStream(
                codec=s.codec,
                language=s.language,
                title=s.title,
                disposition=_disposition(s.disposition),
                kind=_SUBTITLE_KINDS.get(s.kind, library_pb2.SUBTITLE_KIND_UNSPECIFIED),
            )
            for s in video.subtitles
        ],
        title=video.title,
        has_cover_art=video.has_cover_art,
        chapter_count=video.chapter_count,
        chapters=[
            library_pb2.Chapter(start=_duration(max(0, c.start_us)), end=_duration(max(0, c.end_us)), title=c.title)
            for c in video.chapters
        ],
        subtitle_count=video.subtitle_count,
        subtitle_languages=list(video.subtitle_languages),
        missing=video.missing,
        status=int(video.status),  # type: ignore[arg-type]  # same numbers as reelscan.v1.VideoStatus
        failure_reason=video.failure_reason,
        failure_kind=0 if video.failure_kind is None else int(video.failure_kind),  # type: ignore[arg-type]
    )
    for field, ns in (
        ("mtime", video.mtime_ns),
        ("probe_time", round(video.probe_time * 1e9)),
        ("create_time", round(video.create_time * 1e9)),
        ("creation_time", None if video.creation_time_us is None else video.creation_time_us * 1000),
    ):
        ts = None if ns is None else _timestamp_ns(ns)
        if ts is not None:
            getattr(message, field).CopyFrom(ts)
    if video.duration_us is not None:
        message.duration.CopyFrom(_duration(video.duration_us))
    v = video.video
    if v is not None:
        message.video.CopyFrom(
            library_pb2.VideoStream(
                codec=v.codec,
                profile=v.profile,
                width=v.width,
                height=v.height,
                frame_rate=v.frame_rate,
                pixel_format=v.pixel_format,
                bit_depth=v.bit_depth,
                rotation=v.rotation,
                color_transfer=v.color_transfer,
                color_primaries=v.color_primaries,
                hdr=v.hdr,
                color_space=v.color_space,
                color_range=v.color_range,
                hdr_format=HDR_FORMAT_NUMBERS.get(v.hdr_format, library_pb2.HDR_FORMAT_UNSPECIFIED),
                max_cll=min(v.max_cll, 2**31 - 1),
                max_fall=min(v.max_fall, 2**31 - 1),
                sample_aspect_ratio=v.sample_aspect_ratio,
                display_aspect_ratio=v.display_aspect_ratio,
                display_width=v.display_width,
                display_height=v.display_height,
                field_order=v.field_order,
                interlaced=v.interlaced,
                bit_rate=v.bit_rate,
                frame_count=v.frame_count,
            )
        )
        m = v.mastering_display
        if m is not None:
            message.video.mastering_display.CopyFrom(
                library_pb2.MasteringDisplay(
                    red_x=m.red_x,
                    red_y=m.red_y,
                    green_x=m.green_x,
                    green_y=m.green_y,
                    blue_x=m.blue_x,
                    blue_y=m.blue_y,
                    white_x=m.white_x,
                    white_y=m.white_y,
                    min_luminance=m.min_luminance,
                    max_luminance=m.max_luminance,
                )
            )
    return message


def scan_error_to_proto(error: ScanErrorRecord) -> library_pb2.ScanError:
    message = library_pb2.ScanError(job_id=error.job_id, path=error.path, kind=int(error.kind), reason=error.reason)  # type: ignore[arg-type]
    ts = _timestamp_ns(round(error.create_time * 1e9))
    if ts is not None:
        message.create_time.CopyFrom(ts)
    return message


def _duration_us(request: Any, field: str) -> int | None:
    if not request.HasField(field):
        return None
    duration: duration_pb2.Duration = getattr(request, field)
    if duration.seconds < 0 or duration.nanos < 0:
        raise InvalidArgument(f"{field} must not be negative", field=field)
    # google.protobuf.Duration's documented range; beyond it the microseconds would not fit SQLite's integers.
    if duration.seconds > MAX_DURATION_SECONDS or duration.nanos > 999_999_999:
        raise InvalidArgument(f"{field} is out of range (at most 10,000 years)", field=field)
    return int(duration.ToMicroseconds())


def video_filter(request: library_pb2.ListVideosRequest) -> VideoFilter:
    if len(request.query) > MAX_QUERY_CHARS:
        raise InvalidArgument(f"query is longer than {MAX_QUERY_CHARS} characters", field="query")
    if len(request.path_prefix) > MAX_PATH_CHARS:
        raise InvalidArgument(f"path_prefix is longer than {MAX_PATH_CHARS} characters", field="path_prefix")
    if request.min_height < 0:
        raise InvalidArgument(f"min_height must not be negative, got {request.min_height}", field="min_height")
    min_us = _duration_us(request, "min_duration")
    max_us = _duration_us(request, "max_duration")
    if min_us is not None and max_us is not None and min_us > max_us:
        raise InvalidArgument("min_duration is longer than max_duration", field="min_duration")
    statuses = set()
    for value in request.statuses:
        try:
            statuses.add(VideoStatus(value))
        except ValueError:
            raise InvalidArgument(f"statuses contains an invalid video status ({value})", field="statuses") from None
    if request.min_width < 0:
        raise InvalidArgument(f"min_width must not be negative, got {request.min_width}", field="min_width")
    container = container_name(request.container)
    if request.container and not _CONTAINER.fullmatch(container):
        raise InvalidArgument(
            "container must be a format name or extension (letters, digits, '_'; at most 32)", field="container"
        )
    languages = {}
    for name in ("audio_language", "subtitle_language"):
        value = getattr(request, name).strip().lower()
        if getattr(request, name) and not _LANGUAGE.fullmatch(value):
            raise InvalidArgument(f"{name} must be a language tag (letters, digits, '-'; at most 16)", field=name)
        languages[name] = value
    hdr_format = ""
    if request.hdr_format:
        if request.hdr_format not in HDR_FORMAT_NAMES:
            raise InvalidArgument(f"hdr_format is not a known HDR format ({request.hdr_format})", field="hdr_format")
        hdr_format = HDR_FORMAT_NAMES[request.hdr_format]
    return VideoFilter(
        container=container,
        audio_language=languages["audio_language"],
        subtitle_language=languages["subtitle_language"],
        hdr_format=hdr_format,
        min_width=request.min_width,
        interlaced=request.interlaced if request.HasField("interlaced") else None,
        has_subtitles=request.has_subtitles if request.HasField("has_subtitles") else None,
        statuses=frozenset(statuses),
        path_prefix=request.path_prefix,
        video_codec=request.video_codec.strip(),
        min_duration_us=min_us,
        max_duration_us=max_us,
        min_height=request.min_height,
        query=request.query,
        include_missing=request.include_missing,
    )


class LibraryServicer(library_pb2_grpc.LibraryServiceServicer):
    def __init__(
        self, library: LibraryStore, engine: JobEngine, *, max_message_bytes: int = paging.DEFAULT_MAX_MESSAGE_BYTES
    ) -> None:
        self._library = library
        self._engine = engine
        # Pages are cut short (with a next_page_token) rather than outgrow the server's message limit.
        self._max_message_bytes = max_message_bytes

    async def ListVideos(
        self, request: library_pb2.ListVideosRequest, context: Context
    ) -> library_pb2.ListVideosResponse:
        flt = video_filter(request)
        videos, next_token = await self._library.list_videos(flt, request.page_size, request.page_token)
        messages = [video_to_proto(v) for v in videos]
        keep = paging.fit(messages, self._max_message_bytes)
        if keep < len(messages):
            next_token = self._library.videos_token_after(flt, videos[keep - 1])
        return library_pb2.ListVideosResponse(videos=messages[:keep], next_page_token=next_token)

    async def GetVideo(self, request: library_pb2.GetVideoRequest, context: Context) -> library_pb2.GetVideoResponse:
        which = request.WhichOneof("video")
        if which == "id":
            if not request.id or len(request.id) > MAX_ID_CHARS:
                raise InvalidArgument(f"id must be 1 to {MAX_ID_CHARS} characters", field="id")
            video = await self._library.get_video(video_id=request.id)
        elif which == "path":
            if not request.path or len(request.path) > MAX_PATH_CHARS:
                raise InvalidArgument(f"path must be 1 to {MAX_PATH_CHARS} characters", field="path")
            video = await self._library.get_video(path=request.path)
        else:
            raise InvalidArgument("set either id or path", field="video")
        return library_pb2.GetVideoResponse(video=video_to_proto(video))

    async def ListScanErrors(
        self, request: library_pb2.ListScanErrorsRequest, context: Context
    ) -> library_pb2.ListScanErrorsResponse:
        job_id = fields.job_id(request.job_id)
        job = await self._engine.get(job_id)  # NOT_FOUND for an unknown (or deleted) job
        if job.parent_id:
            # Shards record their errors under the scan's id: an empty list here would claim a clean shard.
            raise FailedPrecondition(
                f"job {job_id} is a shard of scan {job.parent_id}, whose errors are listed under {job.parent_id}",
                field="job_id",
            )
        errors, next_token = await self._library.list_scan_errors(job_id, request.page_size, request.page_token)
        messages = [scan_error_to_proto(e) for e in errors]
        keep = paging.fit(messages, self._max_message_bytes)
        if keep < len(messages):
            next_token = self._library.scan_errors_token_after(job_id, errors[keep - 1])
        return library_pb2.ListScanErrorsResponse(errors=messages[:keep], next_page_token=next_token)
