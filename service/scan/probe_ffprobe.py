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
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Any

from reelscan.service.scan import media_info as mi
from reelscan.service.scan.media_info import AudioInfo, MediaInfo, ProbeErrorKind, ProbeFailure, VideoInfo
from reelscan.service.scan.prober import ProberUnavailable

log = logging.getLogger(__name__)

_ARGS = ("-v", "error", "-print_format", "json", "-show_format", "-show_streams")
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
            return ProbeFailure(ProbeErrorKind.PROBE_FAILED, _error_reason(stderr))
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


def describe(data: Mapping[str, Any], st: os.stat_result) -> MediaInfo:
    """MediaInfo from ffprobe's `-show_format -show_streams` JSON."""
    fmt = data.get("format") or {}
    streams = [s for s in data.get("streams") or [] if isinstance(s, dict)]
    video_stream = next(
        (s for s in streams if s.get("codec_type") == "video" and not (s.get("disposition") or {}).get("attached_pic")),
        None,
    )
    audio = [s for s in streams if s.get("codec_type") == "audio"][: mi.MAX_STREAMS_LISTED]
    subtitles = [s for s in streams if s.get("codec_type") == "subtitle"]
    sub_langs = tuple(lang for lang in (mi.language(_tags(s).get("language")) for s in subtitles) if lang)
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
            )
            for s in audio
        ),
        subtitle_count=len(subtitles),
        subtitle_languages=sub_langs[: mi.MAX_STREAMS_LISTED],
        creation_time_us=mi.creation_time_us(_tags(fmt).get("creation_time")),
    )


def _video(s: Mapping[str, Any]) -> VideoInfo:
    pix_fmt = mi.text(s.get("pix_fmt"))
    if pix_fmt == "unknown":
        pix_fmt = ""
    transfer = mi.color_name(s.get("color_transfer"))
    profile = mi.text(s.get("profile"))
    return VideoInfo(
        codec=mi.text(s.get("codec_name")),
        profile="" if profile == "unknown" else profile,
        width=_int(s.get("width", 0)),
        height=_int(s.get("height", 0)),
        frame_rate=mi.frame_rate(_rate(s.get("avg_frame_rate")), _rate(s.get("r_frame_rate"))),
        pixel_format=pix_fmt,
        bit_depth=mi.bit_depth(pix_fmt),
        rotation=_rotation(s),
        color_transfer=transfer,
        color_primaries=mi.color_name(s.get("color_primaries")),
        hdr=mi.is_hdr(transfer),
    )


def _rotation(s: Mapping[str, Any]) -> int:
    tag = _tags(s).get("rotate")
    if tag is not None:
        return mi.rotation_from_tag(tag)
    for side in s.get("side_data_list") or []:
        if isinstance(side, dict) and side.get("side_data_type") == "Display Matrix" and "rotation" in side:
            try:
                return mi.rotation_from_ccw(float(side["rotation"]))
            except (TypeError, ValueError):
                return 0
    return 0
