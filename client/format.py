"""Turning reelscan messages into text and JSON for people and scripts (used by the CLI; no I/O here)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any, cast

from google.protobuf import json_format, message
from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper

from reelscan.v1 import job_pb2, library_pb2, scan_pb2


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
    """A duration as H:MM:SS or M:SS (what progress bars show)."""
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def short_duration(seconds: float) -> str:
    """Elapsed times in summaries: 0.42s, 12.3s, 4:05."""
    if seconds < 10:
        return f"{seconds:.2f}s"
    if seconds < 60:
        return f"{seconds:.1f}s"
    return clock(seconds)


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
    return ", ".join(f"{name} {getattr(result, name)}" for name in RESULT_FIELDS)


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
    data = to_dict(obj) if isinstance(obj, message.Message) else obj
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


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
