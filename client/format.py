"""Turning reelscan messages into text and JSON for people and scripts (used by the CLI; no I/O here).

Every string that comes from data (paths, names, reasons, tags, server messages) reaches the screen through
`printable`, and JSON through `json_line`: see their docstrings for what is escaped and why.
"""

from __future__ import annotations

import datetime
import json
import os
import re
from collections.abc import Mapping
from typing import Any, cast

from google.protobuf import json_format, message, timestamp_pb2
from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper

from reelscan.v1 import job_pb2, library_pb2, scan_pb2

# What a terminal must never receive from data: C0 controls (ESC starts escape sequences, BEL ends OSC titles, CR
# and BS overwrite what was shown, LF fakes lines), DEL, C1 controls (U+009B is CSI to many terminals), the bidi
# controls that reorder what is shown (U+061C, LRM/RLM U+200E/U+200F, embeddings and overrides U+202A-U+202E,
# isolates U+2066-U+2069), the line/paragraph separators U+2028/U+2029, and lone surrogates (undecodable bytes of
# a local file name, as Python hands them over; no terminal encoding can write them).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ud800-\udfff]")
# The same, minus what json.dumps escapes itself (C0 controls).
_UNSAFE_IN_JSON = re.compile("[\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ud800-\udfff]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code < 0x20 or code == 0x7F:
        return f"\\x{code:02x}"
    if 0xDC80 <= code <= 0xDCFF:  # surrogateescape of byte 0x80-0xff: the byte, as the server writes it too
        return f"\\x{code - 0xDC00:02x}"
    return f"\\u{code:04x}"


def printable(text: str) -> str:
    """`text` as it is safe to show: every character in _UNSAFE replaced by an escape, nothing else touched.

    C0 controls and DEL become `\\xNN` (ESC is `\\x1b`), C1 controls and the bidi and separator characters
    `\\uNNNN` (`\\u202e`), and an undecodable byte of a local name (a surrogate escape) `\\xNN`, which is the
    form the server already uses for such bytes in library paths (it doubles backslashes in those paths, so its
    escapes are one-to-one). The result is shown as plain text, never as rich markup or emoji codes: callers
    hand it to rich as a Text or with markup off.
    """
    return _UNSAFE.sub(_escape, text)


def _json_escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def enum_label(enum: EnumTypeWrapper, value: int, prefix: str) -> str:
    """JOB_STATE_TIMED_OUT -> "timed out": the wire name without its prefix, for people."""
    try:
        name: str = enum.Name(value)
    except ValueError:  # a value from a newer server than this client
        return str(value)
    return name.removeprefix(prefix).lower().replace("_", " ")


def state_label(state: int) -> str:
    return enum_label(job_pb2.JobState, state, "JOB_STATE_")


def stage_label(stage: int) -> str:
    return enum_label(job_pb2.JobStage, stage, "JOB_STAGE_")


def error_kind_label(kind: int) -> str:
    return enum_label(library_pb2.ScanErrorKind, kind, "SCAN_ERROR_KIND_")


def video_status_label(status: int) -> str:
    """VIDEO_STATUS_FAILED -> "failed"."""
    return enum_label(library_pb2.VideoStatus, status, "VIDEO_STATUS_")


VIDEO_STATUS_CHOICES = tuple(
    video_status_label(v) for v in library_pb2.VideoStatus.values() if v != library_pb2.VIDEO_STATUS_UNSPECIFIED
)


def parse_video_status(text: str) -> library_pb2.VideoStatus:
    """ "failed", "FAILED" or "VIDEO_STATUS_FAILED" -> the enum value (ValueError for anything else)."""
    name = text.strip().upper()
    if not name.startswith("VIDEO_STATUS_"):
        name = "VIDEO_STATUS_" + name
    value = library_pb2.VideoStatus.Value(name)  # ValueError for an unknown name
    if value == library_pb2.VIDEO_STATUS_UNSPECIFIED:
        raise ValueError(text)
    return cast(library_pb2.VideoStatus, value)


def is_broken(video: library_pb2.Video) -> bool:
    """Whether the entry's last probe failed: a FAILED entry, or a MISSING one that was broken when last seen."""
    return video.status == library_pb2.VIDEO_STATUS_FAILED or bool(video.failure_reason) or bool(video.failure_kind)


def failure_kind_label(video: library_pb2.Video) -> str:
    """The kind of the entry's last probe failure ("probe failed"); "-" when the server did not record one."""
    return error_kind_label(video.failure_kind) if video.failure_kind else "-"


def path_with_status(video: library_pb2.Video) -> str:
    """The entry's path, marked when it is not an OK video: `(failed)`, `(missing)`, `(missing, failed)`."""
    if video.missing or video.status == library_pb2.VIDEO_STATUS_MISSING:
        return video.path + (" (missing, failed)" if is_broken(video) else " (missing)")
    if is_broken(video):
        return video.path + " (failed)"
    return video.path


def parse_state(text: str) -> job_pb2.JobState:
    """ "running", "timed-out", "TIMED_OUT" or "JOB_STATE_TIMED_OUT" -> the enum value."""
    name = text.strip().upper().replace("-", "_").replace(" ", "_")
    if not name.startswith("JOB_STATE_"):
        name = "JOB_STATE_" + name
    value = job_pb2.JobState.Value(name)  # ValueError for an unknown name
    if value == job_pb2.JOB_STATE_UNSPECIFIED:
        raise ValueError(text)
    return cast(job_pb2.JobState, value)


STATE_CHOICES = tuple(
    state_label(v).replace(" ", "-") for v in job_pb2.JobState.values() if v != job_pb2.JOB_STATE_UNSPECIFIED
)


def clock(seconds: float) -> str:
    """A duration as H:MM:SS or M:SS (what progress bars and media durations show)."""
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def short_duration(seconds: float) -> str:
    """A duration for people: 0.42s, 12.3s, 4m 05s, 2h 03m, 3d 04h."""
    seconds = max(0.0, seconds)
    if seconds < 10:
        return f"{seconds:.2f}s"
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = round(seconds)
    minutes, secs = divmod(whole, 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}d {hours:02d}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s"


def local_datetime(ts: timestamp_pb2.Timestamp) -> datetime.datetime:
    """A protobuf Timestamp (UTC) as an aware datetime in the local time zone (TZ, or the system's)."""
    return ts.ToDatetime(tzinfo=datetime.UTC).astimezone()


def zone_label(dt: datetime.datetime) -> str:
    """The zone's abbreviation (EST, IST, CET) when it has one, else its UTC offset (+04:00)."""
    name = dt.tzname() or ""
    if name.isalpha():
        return name
    offset = dt.utcoffset() or datetime.timedelta(0)
    sign = "-" if offset < datetime.timedelta(0) else "+"
    minutes = abs(offset) // datetime.timedelta(minutes=1)
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def local_time_short(ts: timestamp_pb2.Timestamp, *, tty: bool = True) -> str:
    """local_time for table cells: `15:10:00 EST` today, `2026-11-29 15:10 EST` before (ISO 8601 off a terminal)."""
    dt = local_datetime(ts)
    if not tty:
        return dt.isoformat(timespec="seconds")
    if dt.date() == datetime.datetime.now(dt.tzinfo).date():
        return f"{dt:%H:%M:%S} {zone_label(dt)}"
    return f"{dt:%Y-%m-%d %H:%M} {zone_label(dt)}"


def local_time(ts: timestamp_pb2.Timestamp, *, tty: bool = True) -> str:
    """When something happened, in local time with its zone: `2026-12-01 15:10:00 EST` on a terminal, ISO 8601
    with the offset (`2026-12-01T15:10:00-05:00`) in plain output for scripts."""
    dt = local_datetime(ts)
    if not tty:
        return dt.isoformat(timespec="seconds")
    return f"{dt:%Y-%m-%d %H:%M:%S} {zone_label(dt)}"


def size(num_bytes: int) -> str:
    value = float(num_bytes)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def job_elapsed(job: job_pb2.Job) -> float | None:
    if not job.HasField("start_time"):
        return None
    end = job.finish_time if job.HasField("finish_time") else job.update_time
    return max(0.0, (end.ToNanoseconds() - job.start_time.ToNanoseconds()) / 1e9)


RESULT_FIELDS = ("discovered", "probed", "new", "updated", "unchanged", "missing", "failed")


def result_summary(result: scan_pb2.ScanResult) -> str:
    """`discovered 12, probed 2, new 2, updated 0, unchanged 10 (3 known-broken), missing 0, failed 0`: the
    known-broken files a rescan skipped (unchanged_failed) are a part of `unchanged`, named only when there are
    some."""
    parts = []
    for name in RESULT_FIELDS:
        part = f"{name} {getattr(result, name)}"
        if name == "unchanged" and result.unchanged_failed:
            part += f" ({result.unchanged_failed} known-broken)"
        parts.append(part)
    return ", ".join(parts)


def plural(count: int, singular: str, plural_form: str | None = None) -> str:
    """`1 file`, `3 files`."""
    return f"{count} {singular if count == 1 else plural_form or singular + 's'}"


def progress_text(update: job_pb2.JobUpdate) -> str:
    """One line describing a JobUpdate, e.g. "[ 40.0%] running, probing 120/300 files, 35.2 files/s, ETA 0:05,
    clip-0120.mp4". Plain ASCII, so it is safe in logs and pipes."""
    detail = update.progress_detail
    parts = [f"[{update.progress * 100:5.1f}%] {state_label(update.state)}"]
    stage = detail.stage
    if stage not in (job_pb2.JOB_STAGE_UNSPECIFIED, job_pb2.JOB_STAGE_DONE):
        if detail.items_total:
            parts.append(f"{stage_label(stage)} {detail.items_done}/{detail.items_total} files")
        elif detail.items_done:
            parts.append(f"{stage_label(stage)} {detail.items_done} files")
        else:
            parts.append(stage_label(stage))
    if detail.items_per_second > 0 and stage != job_pb2.JOB_STAGE_DONE:
        parts.append(f"{detail.items_per_second:.1f} files/s")
    if detail.HasField("eta"):
        parts.append(f"ETA {clock(detail.eta.ToNanoseconds() / 1e9)}")
    if detail.current_item:
        parts.append(os.path.basename(detail.current_item) or detail.current_item)
    return ", ".join(parts)


def to_dict(msg: message.Message) -> dict[str, Any]:
    """Canonical proto3 JSON (what grpcurl and buf curl print too), with every field present so scripts can rely
    on the keys."""
    result: dict[str, Any] = json_format.MessageToDict(msg, always_print_fields_with_no_presence=True)
    return result


def json_line(obj: Mapping[str, Any] | message.Message) -> str:
    """One JSON line with the exact values: text stays UTF-8, but what a terminal must not receive (see
    printable) is written as a JSON `\\uNNNN` escape, which decodes to the very same string."""
    data = to_dict(obj) if isinstance(obj, message.Message) else obj
    return _UNSAFE_IN_JSON.sub(_json_escape, json.dumps(data, ensure_ascii=False, separators=(",", ":")))


def update_dict(update: job_pb2.JobUpdate) -> dict[str, Any]:
    """A JobUpdate without its embedded Job, which repeats the same facts at several times the size."""
    slim = job_pb2.JobUpdate()
    slim.CopyFrom(update)
    slim.ClearField("job")
    return to_dict(slim)


def video_resolution(video: library_pb2.Video) -> str:
    if not video.HasField("video"):
        return "-"
    return f"{video.video.width}x{video.video.height}"


def video_duration(video: library_pb2.Video) -> str:
    return clock(video.duration.ToNanoseconds() / 1e9) if video.HasField("duration") else "-"


def audio_summary(video: library_pb2.Video) -> str:
    if not video.audio:
        return "-"
    return ", ".join(f"{a.codec} {a.channels}ch" + (f" {a.language}" if a.language else "") for a in video.audio)
