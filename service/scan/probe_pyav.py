"""Probing one file with PyAV (FFmpeg's libraries in-process). Runs inside a probe worker process, never in the
server: a hostile file can crash or hang FFmpeg, and then only the worker dies (see pool.py)."""

from __future__ import annotations

import errno
import os
import re
from typing import Any

import av
import av.logging
import av.stream

from reelscan.service.scan import media_info as mi
from reelscan.service.scan.media_info import AudioInfo, MediaInfo, ProbeErrorKind, ProbeFailure, VideoInfo

# av_dump_format prints each stream's display matrix as "Display Matrix: rotation of -90.00 degrees" (FFmpeg 7+) or
# "displaymatrix: rotation of -90.00 degrees" (older). PyAV has no reader for stream-level side data, and this is
# FFmpeg's own av_display_rotation_get() value, so it matches what ffprobe prints as "rotation".
_STREAM_LINE = re.compile(r"^\s*Stream #\d+:(\d+)")
_ROTATION_LINE = re.compile(r"display ?matrix: rotation of (-?\d+(?:\.\d+)?) degrees", re.IGNORECASE)
_ACCESS_ERRNOS = frozenset({errno.EACCES, errno.EPERM})


def probe(path: str) -> MediaInfo | ProbeFailure:
    """Probes `path`. Every failure becomes a ProbeFailure; this never raises for a bad file."""
    try:
        st = os.stat(path)
    except OSError as error:
        return ProbeFailure(ProbeErrorKind.UNREADABLE, f"cannot stat: {error.strerror or error}")
    try:
        container = av.open(path, metadata_errors="replace")
    except OSError as error:  # av's errors subclass OSError; errno tells a permission problem from bad media
        if error.errno in _ACCESS_ERRNOS:
            return ProbeFailure(ProbeErrorKind.UNREADABLE, f"cannot open: {error.strerror or error}")
        return ProbeFailure(ProbeErrorKind.PROBE_FAILED, _reason(error))
    except Exception as error:  # a hostile file must cost a failure, not the worker
        return ProbeFailure(ProbeErrorKind.PROBE_FAILED, _reason(error))
    try:
        with container:
            return mi.require_media(_describe(container, st))
    except Exception as error:
        return ProbeFailure(ProbeErrorKind.PROBE_FAILED, _reason(error))


def _reason(error: BaseException) -> str:
    # FFmpeg errors carry the file name in str(); the path is already in the scan error, so keep the cause only.
    strerror = getattr(error, "strerror", None)
    return mi.text(strerror or f"{type(error).__name__}: {error}")


def _describe(container: Any, st: os.stat_result) -> MediaInfo:
    streams = container.streams
    video = next((s for s in streams.video if not s.disposition & av.stream.Disposition.attached_pic), None)
    audio = tuple(_audio(s) for s in list(streams.audio)[: mi.MAX_STREAMS_LISTED])
    subtitles = list(streams.subtitles)
    sub_langs = tuple(lang for lang in (mi.language(s.language) for s in subtitles) if lang)
    duration = container.duration
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
    return VideoInfo(
        codec=_codec_name(stream),
        profile=mi.text(stream.profile),
        width=int(getattr(cc, "width", 0) or 0),
        height=int(getattr(cc, "height", 0) or 0),
        frame_rate=mi.frame_rate(float(avg) if avg else 0.0, float(base) if base else 0.0),
        pixel_format=pix_fmt,
        bit_depth=mi.bit_depth(pix_fmt),
        rotation=_rotation(container, stream),
        color_transfer=transfer,
        color_primaries=primaries,
        hdr=mi.is_hdr(transfer),
    )


def _rotation(container: Any, stream: Any) -> int:
    tag = stream.metadata.get("rotate")
    if tag is not None:  # written by old muxers; FFmpeg >= 5 turns it into a display matrix instead
        return mi.rotation_from_tag(tag)
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
    )
