"""Probing one file with PyAV (FFmpeg's libraries in-process). Runs inside a probe worker process, never in the
server: a hostile file can crash or hang FFmpeg, and then only the worker dies (see pool.py)."""

from __future__ import annotations

import errno
import os
import re
import stat
from typing import Any

import av
import av.logging
import av.stream

from reelscan.service.scan import coded_side_data
from reelscan.service.scan import media_info as mi
from reelscan.service.scan.media_info import (
    AudioInfo,
    MediaInfo,
    ProbeErrorKind,
    ProbeFailure,
    SubtitleInfo,
    VideoInfo,
)

# The fallback when coded_side_data cannot read a stream (an FFmpeg or PyAV whose layout it does not know):
# av_dump_format prints each stream's display matrix as "Display Matrix: rotation of -90.00 degrees" (FFmpeg 7+) or
# "displaymatrix: rotation of -90.00 degrees" (older): FFmpeg's own av_display_rotation_get() value, as ffprobe
# prints it. It costs about 50 us a file (coded_side_data: under 10), and reads no HDR metadata.
_STREAM_LINE = re.compile(r"^\s*Stream #\d+:(\d+)")
_ROTATION_LINE = re.compile(r"display ?matrix: rotation of (-?\d+(?:\.\d+)?) degrees", re.IGNORECASE)
_ACCESS_ERRNOS = frozenset({errno.EACCES, errno.EPERM})


def probe(path: str) -> MediaInfo | ProbeFailure:
    """Probes `path`. Every failure becomes a ProbeFailure; this never raises for a bad file."""
    try:
        st = os.stat(path)
    except OSError as error:
        return ProbeFailure(ProbeErrorKind.UNREADABLE, f"cannot stat: {error.strerror or error}")
    if st.st_size == 0 and stat.S_ISREG(st.st_mode):  # a FIFO has size 0 too
        return ProbeFailure(ProbeErrorKind.PROBE_FAILED, mi.EMPTY_FILE)
    try:
        container = av.open(path, metadata_errors="replace")
    except OSError as error:  # av's errors subclass OSError; errno tells a permission problem from bad media
        if error.errno in _ACCESS_ERRNOS:
            return ProbeFailure(ProbeErrorKind.UNREADABLE, f"cannot open: {error.strerror or error}")
        return _failed(path, _reason(error))
    except Exception as error:  # a hostile file must cost a failure, not the worker
        return _failed(path, _reason(error))
    try:
        with container:
            return mi.require_media(_describe(container, st))
    except Exception as error:
        return _failed(path, _reason(error))


def _failed(path: str, reason: str) -> ProbeFailure:
    # Only on failure, so a good file pays nothing: a few small reads tell "no moov atom" from generic bad data.
    return ProbeFailure(ProbeErrorKind.PROBE_FAILED, mi.sniff_failure(path, reason))


def _reason(error: BaseException) -> str:
    # FFmpeg errors carry the file name in str(); the path is already in the scan error, so keep the cause only.
    strerror = getattr(error, "strerror", None)
    return mi.text(strerror or f"{type(error).__name__}: {error}")


def _describe(container: Any, st: os.stat_result) -> MediaInfo:
    streams = container.streams
    attached = av.stream.Disposition.attached_pic
    video = next((s for s in streams.video if not s.disposition & attached), None)
    audio = tuple(_audio(s) for s in list(streams.audio)[: mi.MAX_STREAMS_LISTED])
    subtitles = list(streams.subtitles)
    sub_langs = tuple(lang for lang in (mi.language(s.language) for s in subtitles) if lang)
    duration = container.duration
    chapters = container.chapters()
    return MediaInfo(
        size=st.st_size,
        mtime_ns=st.st_mtime_ns,
        container_format=mi.text(container.format.name),
        duration_us=int(duration) if duration is not None and duration >= 0 else None,
        bit_rate=max(0, int(container.bit_rate or 0)),
        video=None if video is None else _video(container, video),
        audio=audio,
        subtitle_count=len(subtitles),
        subtitle_languages=sub_langs[: mi.MAX_STREAMS_LISTED],
        creation_time_us=mi.creation_time_us(container.metadata.get("creation_time")),
        subtitles=tuple(_subtitle(s) for s in subtitles[: mi.MAX_STREAMS_LISTED]),
        title=mi.text(container.metadata.get("title")),
        has_cover_art=any(s.disposition & attached for s in streams.video),
        chapter_count=len(chapters),
        chapters=tuple(
            mi.chapter(
                c["start"],
                c["end"],
                c["time_base"].numerator,
                c["time_base"].denominator,
                (c.get("metadata") or {}).get("title"),
            )
            for c in chapters[: mi.MAX_STREAMS_LISTED]
            if c.get("time_base")
        ),
    )


def _dispositions(stream: Any) -> tuple[str, ...]:
    flags = int(stream.disposition)
    return mi.dispositions({name: flags & int(getattr(av.stream.Disposition, name)) for name in mi.DISPOSITIONS})


def _subtitle(stream: Any) -> SubtitleInfo:
    codec = _codec_name(stream)
    return SubtitleInfo(
        codec=codec,
        language=mi.language(stream.language),
        title=mi.text(stream.metadata.get("title")),
        disposition=_dispositions(stream),
        kind=mi.subtitle_kind(codec),
    )


def _codec_name(stream: Any) -> str:
    # canonical_name is avcodec_get_name(codec_id), the name ffprobe prints, not a decoder's (libdav1d -> av1).
    try:
        return mi.text(stream.codec.canonical_name)
    except Exception:
        return ""


def _video(container: Any, stream: Any) -> VideoInfo:
    cc = stream.codec_context
    pix_fmt = mi.text(getattr(cc, "pix_fmt", None))
    transfer = mi.color_name(mi.COLOR_TRANSFER_NAMES.get(int(getattr(cc, "color_trc", 0) or 0)))
    primaries = mi.color_name(mi.COLOR_PRIMARIES_NAMES.get(int(getattr(cc, "color_primaries", 0) or 0)))
    avg, base = stream.average_rate, stream.base_rate
    side = coded_side_data.read(stream)
    rotation = _rotation(container, stream, side)
    width, height = int(getattr(cc, "width", 0) or 0), int(getattr(cc, "height", 0) or 0)
    sar_num, sar_den = mi.sample_aspect(stream.sample_aspect_ratio)
    dar, display_w, display_h = mi.display_geometry(width, height, sar_num, sar_den, rotation)
    return VideoInfo(
        codec=_codec_name(stream),
        profile=mi.profile_name(stream.profile),
        width=width,
        height=height,
        frame_rate=mi.frame_rate(float(avg) if avg else 0.0, float(base) if base else 0.0),
        pixel_format=pix_fmt,
        bit_depth=mi.bit_depth(pix_fmt),
        rotation=rotation,
        color_transfer=transfer,
        color_primaries=primaries,
        hdr=mi.is_hdr(transfer),
        color_space=mi.COLOR_SPACE_NAMES.get(int(getattr(cc, "colorspace", 2) or 0), ""),
        color_range=mi.COLOR_RANGE_NAMES.get(int(getattr(cc, "color_range", 0) or 0), ""),
        hdr_format=mi.hdr_format(transfer, None if side is None else side.dovi_profile),
        mastering_display=None if side is None else side.mastering,
        max_cll=0 if side is None or side.max_cll is None else side.max_cll,
        max_fall=0 if side is None or side.max_fall is None else side.max_fall,
        sample_aspect_ratio=mi.ratio_text(sar_num, sar_den),
        display_aspect_ratio=dar,
        display_width=display_w,
        display_height=display_h,
        field_order=mi.FIELD_ORDER_NAMES.get(int(getattr(cc, "field_order", 0) or 0), ""),
        bit_rate=max(0, int(getattr(cc, "bit_rate", 0) or 0)),
        frame_count=max(0, int(stream.frames or 0)),
    )


def _rotation(container: Any, stream: Any, side: coded_side_data.SideData | None) -> int:
    tag = stream.metadata.get("rotate")
    if tag is not None:  # written by old muxers; FFmpeg >= 5 turns it into a display matrix instead
        return mi.rotation_from_tag(tag)
    if side is not None:
        return 0 if side.rotation_ccw is None else mi.rotation_from_ccw(side.rotation_ccw)
    # av_dump_format logs at INFO; PyAV only captures FFmpeg logs while a level is set, so set one just for this.
    previous = av.logging.get_level()
    av.logging.set_level(av.logging.INFO)
    try:
        dump = container.dumps_format()
    finally:
        av.logging.set_level(previous)
    current = -1
    for line in dump.splitlines():
        match = _STREAM_LINE.match(line)
        if match:
            current = int(match.group(1))
            continue
        if current == stream.index:
            rot = _ROTATION_LINE.search(line)
            if rot:
                return mi.rotation_from_ccw(float(rot.group(1)))
    return 0


def _audio(stream: Any) -> AudioInfo:
    cc = stream.codec_context
    return AudioInfo(
        codec=_codec_name(stream),
        channels=int(getattr(cc, "channels", 0) or 0),
        sample_rate=int(getattr(cc, "sample_rate", 0) or 0),
        language=mi.language(stream.language),
        channel_layout=mi.channel_layout_name(getattr(getattr(cc, "layout", None), "name", "")),
        bit_rate=max(0, int(getattr(cc, "bit_rate", 0) or 0)),
        profile=mi.profile_name(stream.profile),
        title=mi.text(stream.metadata.get("title")),
        disposition=_dispositions(stream),
    )
