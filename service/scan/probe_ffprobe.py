"""The ffprobe backend (--prober ffprobe): one `ffprobe` subprocess per file, run with asyncio so the server never
waits on it, killed on timeout or cancellation. Produces the same MediaInfo as the PyAV backend for the same file
(see media_info.py for the shared normalisation); tests/scan compare the two."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import stat
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Any

from reelscan.service.scan import media_info as mi
from reelscan.service.scan.media_info import (
    AudioInfo,
    MasteringDisplay,
    MediaInfo,
    ProbeErrorKind,
    ProbeFailure,
    SubtitleInfo,
    VideoInfo,
)
from reelscan.service.scan.prober import ProberUnavailable

log = logging.getLogger(__name__)

_ARGS = ("-v", "error", "-print_format", "json", "-show_format", "-show_streams", "-show_chapters")
# ffprobe's JSON for a sane file is a few kB; parsing a pathological one happens off the event loop.
_INLINE_PARSE_LIMIT = 256 * 1024
_MAX_OUTPUT = 16 * 1024 * 1024


class FfprobeProber:
    """Probes with the `ffprobe` executable, at most `concurrency` at a time."""

    def __init__(
        self, concurrency: int, timeout_s: float, probe_delay_s: float = 0.0, executable: str = "ffprobe"
    ) -> None:
        self._concurrency = max(1, concurrency)
        self._timeout_s = timeout_s
        self._probe_delay_s = probe_delay_s
        self._executable = executable
        self._resolved: str | None = None
        self._slots = asyncio.Semaphore(self._concurrency)
        self._reapers: set[asyncio.Task[None]] = set()

    @property
    def concurrency(self) -> int:
        return self._concurrency

    async def start(self) -> None:
        self._resolved = await asyncio.to_thread(shutil.which, self._executable)
        if self._resolved is None:
            log.error("--prober ffprobe: %r is not on PATH; scans will fail", self._executable)

    async def close(self) -> None:
        await asyncio.gather(*self._reapers, return_exceptions=True)

    async def probe(self, path: str) -> MediaInfo | ProbeFailure:
        if self._resolved is None:
            await self.start()
            if self._resolved is None:
                raise ProberUnavailable(f"ffprobe backend: {self._executable!r} not found on PATH")
        async with self._slots:
            if self._probe_delay_s > 0:
                await asyncio.sleep(self._probe_delay_s)
            try:
                st = await asyncio.to_thread(os.stat, path)
            except OSError as error:
                return ProbeFailure(ProbeErrorKind.UNREADABLE, f"cannot stat: {error.strerror or error}")
            if st.st_size == 0 and stat.S_ISREG(st.st_mode):  # a FIFO has size 0 too
                return ProbeFailure(ProbeErrorKind.PROBE_FAILED, mi.EMPTY_FILE)
            return await self._run(path, st)

    async def _run(self, path: str, st: os.stat_result) -> MediaInfo | ProbeFailure:
        assert self._resolved is not None
        # "file:" keeps a name that looks like an option or a URL ("-x.mp4", "http:...") a plain file; bytes keep
        # names that are not valid UTF-8 intact.
        target = b"file:" + os.fsencode(path)
        proc = await asyncio.create_subprocess_exec(
            self._resolved,
            *_ARGS,
            "-i",
            target,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            async with asyncio.timeout(self._timeout_s):
                stdout, stderr = await proc.communicate()
        except TimeoutError:
            self._kill(proc)
            return ProbeFailure(
                ProbeErrorKind.PROBE_TIMEOUT, f"ffprobe did not finish within {self._timeout_s:g} s; killed"
            )
        except BaseException:  # cancelled: stop the probe now, reap it in the background
            self._kill(proc)
            raise
        if proc.returncode != 0:
            if proc.returncode is not None and proc.returncode < 0:
                return ProbeFailure(ProbeErrorKind.PROBE_CRASHED, f"ffprobe killed by signal {-proc.returncode}")
            # The same reading of the file as the PyAV backend's, off the event loop (a few small reads).
            reason = await asyncio.to_thread(mi.sniff_failure, path, _error_reason(stderr))
            return ProbeFailure(ProbeErrorKind.PROBE_FAILED, reason)
        if len(stdout) > _MAX_OUTPUT:
            return ProbeFailure(ProbeErrorKind.PROBE_FAILED, "ffprobe output too large")
        try:
            if len(stdout) > _INLINE_PARSE_LIMIT:
                data = await asyncio.to_thread(json.loads, stdout)
            else:
                data = json.loads(stdout)
            return mi.require_media(describe(data, st))
        except (ValueError, TypeError, KeyError, AttributeError) as error:
            return ProbeFailure(ProbeErrorKind.PROBE_FAILED, f"unreadable ffprobe output: {error}")

    def _kill(self, proc: asyncio.subprocess.Process) -> None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        task = asyncio.get_running_loop().create_task(_reap(proc))
        self._reapers.add(task)
        task.add_done_callback(self._reapers.discard)


async def _reap(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(Exception):
        await proc.wait()


def _error_reason(stderr: bytes) -> str:
    # ffprobe prints "<file name>: <reason>"; the path is already in the scan error, so keep the reason.
    line = stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["ffprobe failed"]
    reason = line[0].rsplit(": ", 1)[-1].strip()
    return mi.text(reason or "ffprobe failed")


def _int(value: object) -> int:
    try:
        return int(str(value))
    except ValueError:
        return 0


def _rate(value: object) -> float:
    try:
        fraction = Fraction(str(value))
    except (ValueError, ZeroDivisionError):
        return 0.0
    return float(fraction)


def _duration_us(value: object) -> int | None:
    if value is None:
        return None
    try:
        seconds = Decimal(str(value))
    except InvalidOperation:
        return None
    if not seconds.is_finite() or seconds < 0:
        return None
    return int(seconds * 1_000_000)


def _tags(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    tags = obj.get("tags")
    return tags if isinstance(tags, dict) else {}


def _side_data(s: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    for side in s.get("side_data_list") or []:
        if isinstance(side, dict) and side.get("side_data_type") == kind:
            return side
    return None


def _dispositions(s: Mapping[str, Any]) -> tuple[str, ...]:
    flags = s.get("disposition")
    return mi.dispositions(flags) if isinstance(flags, dict) else ()


def _chapters(data: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [c for c in data.get("chapters") or [] if isinstance(c, dict)]


def describe(data: Mapping[str, Any], st: os.stat_result) -> MediaInfo:
    """MediaInfo from ffprobe's `-show_format -show_streams -show_chapters` JSON."""
    fmt = data.get("format") or {}
    streams = [s for s in data.get("streams") or [] if isinstance(s, dict)]
    video_streams = [s for s in streams if s.get("codec_type") == "video"]
    video_stream = next((s for s in video_streams if not (s.get("disposition") or {}).get("attached_pic")), None)
    audio = [s for s in streams if s.get("codec_type") == "audio"][: mi.MAX_STREAMS_LISTED]
    subtitles = [s for s in streams if s.get("codec_type") == "subtitle"]
    sub_langs = tuple(lang for lang in (mi.language(_tags(s).get("language")) for s in subtitles) if lang)
    chapters = _chapters(data)
    return MediaInfo(
        size=st.st_size,
        mtime_ns=st.st_mtime_ns,
        container_format=mi.text(fmt.get("format_name")),
        duration_us=_duration_us(fmt.get("duration")),
        bit_rate=max(0, _int(fmt.get("bit_rate", 0))),
        video=None if video_stream is None else _video(video_stream),
        audio=tuple(
            AudioInfo(
                codec=mi.text(s.get("codec_name")),
                channels=_int(s.get("channels", 0)),
                sample_rate=_int(s.get("sample_rate", 0)),
                language=mi.language(_tags(s).get("language")),
                channel_layout=mi.channel_layout_name(s.get("channel_layout")),
                bit_rate=max(0, _int(s.get("bit_rate", 0))),
                profile=mi.profile_name(s.get("profile")),
                title=mi.text(_tags(s).get("title")),
                disposition=_dispositions(s),
            )
            for s in audio
        ),
        subtitle_count=len(subtitles),
        subtitle_languages=sub_langs[: mi.MAX_STREAMS_LISTED],
        creation_time_us=mi.creation_time_us(_tags(fmt).get("creation_time")),
        subtitles=tuple(
            SubtitleInfo(
                codec=mi.text(s.get("codec_name")),
                language=mi.language(_tags(s).get("language")),
                title=mi.text(_tags(s).get("title")),
                disposition=_dispositions(s),
                kind=mi.subtitle_kind(mi.text(s.get("codec_name"))),
            )
            for s in subtitles[: mi.MAX_STREAMS_LISTED]
        ),
        title=mi.text(_tags(fmt).get("title")),
        has_cover_art=any((s.get("disposition") or {}).get("attached_pic") for s in video_streams),
        chapter_count=len(chapters),
        chapters=tuple(_chapter(c) for c in chapters[: mi.MAX_STREAMS_LISTED]),
    )


def _chapter(c: Mapping[str, Any]) -> mi.Chapter:
    try:
        tb = Fraction(str(c.get("time_base")))
    except (ValueError, ZeroDivisionError):
        tb = Fraction(0)
    return mi.chapter(
        _int(c.get("start", 0)), _int(c.get("end", 0)), tb.numerator, tb.denominator, _tags(c).get("title")
    )


def _fraction(value: object) -> float:
    """A side-data value: ffprobe prints rationals as "34000/50000", integers bare."""
    try:
        return float(Fraction(str(value)))
    except (ValueError, ZeroDivisionError):
        return 0.0


def _mastering(s: Mapping[str, Any]) -> MasteringDisplay | None:
    side = _side_data(s, "Mastering display metadata")
    if side is None:
        return None
    keys = (
        "red_x",
        "red_y",
        "green_x",
        "green_y",
        "blue_x",
        "blue_y",
        "white_point_x",
        "white_point_y",
        "min_luminance",
        "max_luminance",
    )
    return MasteringDisplay(*(_fraction(side.get(k, 0)) for k in keys))


def _video(s: Mapping[str, Any]) -> VideoInfo:
    pix_fmt = mi.text(s.get("pix_fmt"))
    if pix_fmt == "unknown":
        pix_fmt = ""
    transfer = mi.color_name(s.get("color_transfer"))
    width, height = _int(s.get("width", 0)), _int(s.get("height", 0))
    rotation = _rotation(s)
    sar_num, sar_den = mi.sample_aspect(s.get("sample_aspect_ratio"))
    dar, display_w, display_h = mi.display_geometry(width, height, sar_num, sar_den, rotation)
    light = _side_data(s, "Content light level metadata") or {}
    dovi = _side_data(s, "DOVI configuration record")
    field_order = mi.text(s.get("field_order"))
    return VideoInfo(
        codec=mi.text(s.get("codec_name")),
        profile=mi.profile_name(s.get("profile")),
        width=width,
        height=height,
        frame_rate=mi.frame_rate(_rate(s.get("avg_frame_rate")), _rate(s.get("r_frame_rate"))),
        pixel_format=pix_fmt,
        bit_depth=mi.bit_depth(pix_fmt),
        rotation=rotation,
        color_transfer=transfer,
        color_primaries=mi.color_name(s.get("color_primaries")),
        hdr=mi.is_hdr(transfer),
        color_space=mi.color_name(s.get("color_space")),
        color_range=mi.color_name(s.get("color_range")),
        hdr_format=mi.hdr_format(transfer, None if dovi is None else _int(dovi.get("dv_profile", 0))),
        mastering_display=_mastering(s),
        max_cll=max(0, _int(light.get("max_content", 0))),
        max_fall=max(0, _int(light.get("max_average", 0))),
        sample_aspect_ratio=mi.ratio_text(sar_num, sar_den),
        display_aspect_ratio=dar,
        display_width=display_w,
        display_height=display_h,
        field_order=field_order if field_order in mi.FIELD_ORDER_NAMES.values() else "",
        bit_rate=max(0, _int(s.get("bit_rate", 0))),
        frame_count=max(0, _int(s.get("nb_frames", 0))),
    )


def _rotation(s: Mapping[str, Any]) -> int:
    tag = _tags(s).get("rotate")
    if tag is not None:
        return mi.rotation_from_tag(tag)
    side = _side_data(s, "Display Matrix")
    if side is not None and "rotation" in side:
        try:
            return mi.rotation_from_ccw(float(side["rotation"]))
        except (TypeError, ValueError):
            return 0
    return 0
