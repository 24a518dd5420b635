"""`reelscan videos list|search|get` and `reelscan errors JOB_ID`."""

from __future__ import annotations

import argparse
import itertools
import os
from collections.abc import Iterator

from reelscan.client import format as fmt
from reelscan.client.commands.common import (
    EXIT_OK,
    Output,
    UsageError,
    add_connection_arguments,
    add_json_argument,
    positive_float,
    positive_int,
    resolve_job_id,
    sync_client,
)
from reelscan.client.rpc import page_size_for
from reelscan.paths import library_path
from reelscan.v1 import library_pb2


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    videos = subparsers.add_parser("videos", help="query the library of probed videos")
    commands = videos.add_subparsers(dest="videos_command", metavar="COMMAND", required=True)

    p = commands.add_parser("list", help="list videos by path, with filters")
    _filters(p)
    _common(p, run_list)

    p = commands.add_parser("search", help="find videos whose file name matches all the words (prefix match)")
    p.add_argument("query", metavar="WORD", nargs="+", help="words of the file name (quotes are optional)")
    _filters(p)
    _common(p, run_list)

    p = commands.add_parser("get", help="show one video, by id or by path")
    p.add_argument("video", metavar="ID_OR_PATH", help="a video id, or a path (anything with a '/' in it)")
    _common(p, run_get)

    p = subparsers.add_parser("errors", help="list the files a scan job could not probe")
    p.add_argument("job_id", metavar="JOB_ID", help="a job id, or any unique prefix of at least 6 characters of one")
    p.add_argument("--limit", type=positive_int, default=0, help="show at most N errors [default: all]")
    _common(p, run_errors)


def _common(parser: argparse.ArgumentParser, handler: object) -> None:
    add_json_argument(parser)
    add_connection_arguments(parser)
    parser.set_defaults(handler=handler)


def _filters(parser: argparse.ArgumentParser) -> None:
    f = parser.add_argument_group("filters")
    f.add_argument("--prefix", metavar="DIR", help="only videos under this directory")
    f.add_argument("--codec", metavar="NAME", help="only this video codec (h264, hevc, vp9, av1, ...)")
    f.add_argument("--min-duration", metavar="S", type=positive_float, help="only videos at least S seconds long")
    f.add_argument("--max-duration", metavar="S", type=positive_float, help="only videos at most S seconds long")
    f.add_argument("--min-height", metavar="PX", type=positive_int, help="only videos at least PX pixels high")
    f.add_argument("--min-width", metavar="PX", type=positive_int, help="only videos at least PX pixels wide")
    f.add_argument(
        "--container",
        metavar="NAME",
        help="only this container: an FFmpeg format name or an extension (mp4, mkv, webm, mpegts, ts, avi, ...)",
    )
    f.add_argument("--audio-language", metavar="LANG", help="only videos with an audio stream in LANG (e.g. eng)")
    f.add_argument("--subtitle-language", metavar="LANG", help="only videos with a subtitle stream in LANG")
    f.add_argument(
        "--hdr", metavar="FORMAT", choices=HDR_CHOICES, help=f"only this HDR format ({', '.join(HDR_CHOICES)})"
    )
    interlace = f.add_mutually_exclusive_group()
    interlace.add_argument(
        "--interlaced", dest="interlaced", action="store_const", const=True, help="only interlaced videos"
    )
    interlace.add_argument(
        "--progressive", dest="interlaced", action="store_const", const=False, help="only videos not interlaced"
    )
    subs = f.add_mutually_exclusive_group()
    subs.add_argument(
        "--has-subtitles", dest="has_subtitles", action="store_const", const=True, help="only videos with subtitles"
    )
    subs.add_argument(
        "--no-subtitles", dest="has_subtitles", action="store_const", const=False, help="only videos without any"
    )
    f.add_argument(
        "--failed",
        action="store_true",
        help="only broken files (their last probe failed), with the kind and reason of the failure and when it was "
        "last tried; the same as --status failed",
    )
    f.add_argument(
        "--status",
        metavar="STATUS",
        action="append",
        choices=fmt.VIDEO_STATUS_CHOICES,
        help="only entries of this status: ok (probed fine), failed (broken: the last probe failed) or missing "
        "(gone from disk); repeat for several [default: ok]",
    )
    f.add_argument(
        "--include-missing",
        action="store_true",
        help="include files no longer on disk (with --failed: those that were broken)",
    )
    parser.add_argument("--limit", type=positive_int, default=50, help="show at most N videos, 0 for all [default 50]")


HDR_CHOICES = ("sdr", "hdr10", "hlg", "dolby-vision")
_HDR_FORMATS = {
    "sdr": library_pb2.HDR_FORMAT_SDR,
    "hdr10": library_pb2.HDR_FORMAT_HDR10,
    "hlg": library_pb2.HDR_FORMAT_HLG,
    "dolby-vision": library_pb2.HDR_FORMAT_DOLBY_VISION,
}
HDR_LABELS = {
    library_pb2.HDR_FORMAT_SDR: "SDR",
    library_pb2.HDR_FORMAT_HDR10: "HDR10",
    library_pb2.HDR_FORMAT_HLG: "HLG",
    library_pb2.HDR_FORMAT_DOLBY_VISION: "Dolby Vision",
}

MEDIA_FILTERS = (
    ("codec", "--codec"),
    ("min_duration", "--min-duration"),
    ("max_duration", "--max-duration"),
    ("min_height", "--min-height"),
    ("min_width", "--min-width"),
    ("container", "--container"),
    ("audio_language", "--audio-language"),
    ("subtitle_language", "--subtitle-language"),
    ("hdr", "--hdr"),
    ("interlaced", "--interlaced/--progressive"),
    ("has_subtitles", "--has-subtitles/--no-subtitles"),
)


def requested_statuses(ns: argparse.Namespace) -> list[library_pb2.VideoStatus]:
    """The statuses to ask for, in the order given (empty: the server's default, OK entries)."""
    names = list(ns.status or ())
    if ns.failed:
        names.append("failed")
    statuses: list[library_pb2.VideoStatus] = []
    for name in names:
        status = fmt.parse_video_status(name)
        if status not in statuses:
            statuses.append(status)
    return statuses


def _row(video: library_pb2.Video) -> list[str]:
    stream = video.video
    return [
        video.id,
        fmt.path_with_status(video),
        fmt.video_duration(video),
        fmt.video_resolution(video),
        stream.codec if video.HasField("video") else "-",
        f"{stream.frame_rate:.3g}" if stream.frame_rate else "-",
        fmt.audio_summary(video),
        fmt.size(video.size_bytes),
    ]


def local_path(text: str, what: str) -> str:
    if not text.strip():
        raise UsageError(f"{what} is empty")
    return library_path(os.path.abspath(os.path.expanduser(text)))  # as the server stores it


VIDEO_HEADERS = ("ID", "PATH", "DURATION", "RES", "CODEC", "FPS", "AUDIO", "SIZE")
VIDEO_FOLD = ("PATH", "AUDIO")
VIDEO_OPTIONAL = ("AUDIO", "FPS", "CODEC", "SIZE", "ID")


FAILED_HEADERS = ("PATH", "KIND", "REASON", "LAST TRIED")
FAILED_FOLD = ("PATH", "REASON")


def _failed_row(video: library_pb2.Video, *, tty: bool) -> list[str]:
    last_tried = fmt.local_time_short(video.probe_time, tty=tty) if video.HasField("probe_time") else "-"
    path = video.path + (" (missing)" if video.missing else "")
    return [path, fmt.failure_kind_label(video), video.failure_reason or "-", last_tried]


def run_list(ns: argparse.Namespace) -> int:
    out = Output(json_mode=ns.json)
    prefix = local_path(ns.prefix, "--prefix") if ns.prefix is not None else None
    query = " ".join(ns.query) if getattr(ns, "query", None) else None
    if query is not None and not query.strip():
        raise UsageError("WORD is empty: give words of the file name")
    statuses = requested_statuses(ns)
    # Only broken files (--failed, or --status failed alone): their own table, and with --include-missing only the
    # missing entries that were broken too (the server's MISSING status holds every file gone from disk).
    broken_only = statuses == [library_pb2.VIDEO_STATUS_FAILED]
    if broken_only:
        media = [flag for dest, flag in MEDIA_FILTERS if getattr(ns, dest) is not None]
        if media:
            verb = "matches" if len(media) == 1 else "match"
            raise UsageError(
                f"{' and '.join(media)} never {verb} a broken file: it has no media metadata (its probe failed)"
            )
    limit = ns.limit or None
    with sync_client(ns) as client:
        videos: Iterator[library_pb2.Video] = client.list_videos(
            path_prefix=prefix,
            video_codec=ns.codec,
            min_duration=ns.min_duration,
            max_duration=ns.max_duration,
            min_height=ns.min_height,
            min_width=ns.min_width,
            container=ns.container,
            audio_language=ns.audio_language,
            subtitle_language=ns.subtitle_language,
            hdr_format=_HDR_FORMATS[ns.hdr] if ns.hdr else None,
            interlaced=ns.interlaced,
            has_subtitles=ns.has_subtitles,
            query=query,
            include_missing=ns.include_missing,
            statuses=statuses,
            page_size=page_size_for(0, limit),
            limit=None if broken_only else limit,
        )
        if broken_only:
            videos = itertools.islice((v for v in videos if fmt.is_broken(v)), limit)
        if ns.json:
            for video in videos:
                out.json(video)
        elif broken_only:
            rows = (_failed_row(v, tty=out.tty) for v in videos)
            out.table(FAILED_HEADERS, rows, fold=FAILED_FOLD, empty=no_broken_files(prefix, query))
        else:
            out.table(VIDEO_HEADERS, (_row(v) for v in videos), fold=VIDEO_FOLD, optional=VIDEO_OPTIONAL)
    return EXIT_OK


def no_broken_files(prefix: str | None, query: str | None) -> str:
    where = f" under {prefix}" if prefix is not None else ""
    matching = f" matching {query!r}" if query is not None else ""
    return f"no broken files{where}{matching}"


def describe_broken(video: library_pb2.Video, *, tty: bool = True) -> list[tuple[str, str]]:
    """A library entry whose last probe failed: why and when, instead of media rows it does not have."""
    if video.missing or video.status == library_pb2.VIDEO_STATUS_MISSING:
        status = "missing (not found by the latest scan; its last probe had failed)"
    else:
        status = "failed (not probed again until the file changes, or a scan with --force)"
    pairs = [
        ("id", video.id),
        ("path", video.path + (" (missing)" if video.missing else "")),
        ("status", status),
        ("kind", fmt.failure_kind_label(video)),
        ("reason", video.failure_reason or "-"),
        ("last tried", fmt.local_time(video.probe_time, tty=tty) if video.HasField("probe_time") else "-"),
        ("size", fmt.size(video.size_bytes)),
    ]
    if video.HasField("mtime"):
        pairs.append(("modified", fmt.local_time(video.mtime, tty=tty)))
    return pairs


def describe(video: library_pb2.Video, *, tty: bool = True) -> list[tuple[str, str]]:
    if fmt.is_broken(video):
        return describe_broken(video, tty=tty)
    pairs = [
        ("id", video.id),
        ("path", video.path + (" (missing)" if video.missing else "")),
        ("container", video.container_format),
        ("size", fmt.size(video.size_bytes)),
        ("duration", fmt.video_duration(video)),
        ("bit rate", f"{video.bit_rate / 1000:.0f} kb/s" if video.bit_rate else "-"),
    ]
    if video.title:
        pairs.insert(2, ("title", video.title))
    if video.HasField("video"):
        pairs += _video_pairs(video.video)
    if len(video.audio) <= 1:
        pairs.append(("audio", fmt.audio_summary(video)))
    for i, a in enumerate(video.audio):
        pairs.append((f"audio {i + 1}" if len(video.audio) > 1 else "audio stream", _audio_line(a)))
    if video.subtitle_count:
        pairs.append(("subtitles", f"{video.subtitle_count} ({', '.join(video.subtitle_languages) or 'untagged'})"))
    for i, sub in enumerate(video.subtitles):
        pairs.append((f"subtitle {i + 1}", _subtitle_line(sub)))
    if video.chapter_count:
        pairs.append(("chapters", str(video.chapter_count)))
    for i, c in enumerate(video.chapters):
        span = f"{fmt.clock(c.start.ToNanoseconds() / 1e9)}-{fmt.clock(c.end.ToNanoseconds() / 1e9)}"
        pairs.append((f"chapter {i + 1}", span + (f" {c.title}" if c.title else "")))
    if video.has_cover_art:
        pairs.append(("cover art", "yes"))
    if video.HasField("creation_time"):
        pairs.append(("created", fmt.local_time(video.creation_time, tty=tty)))
    return pairs


def _video_pairs(v: library_pb2.VideoStream) -> list[tuple[str, str]]:
    color = f", {v.color_transfer}/{v.color_primaries}" if v.color_transfer or v.color_primaries else ""
    matrix = ", ".join(x for x in (v.color_space, v.color_range) if x)
    frame = f"{v.width}x{v.height}, {v.frame_rate:.3f} fps, rotation {v.rotation}"
    if v.field_order:
        frame += ", interlaced " + v.field_order if v.interlaced else ", " + v.field_order
    pairs = [
        ("video", f"{v.codec}" + (f" ({v.profile})" if v.profile else "")),
        ("frame", frame),
        ("pixels", f"{v.pixel_format}, {v.bit_depth}-bit{color}" + (f", {matrix}" if matrix else "")),
    ]
    if v.display_width:
        pairs.append(
            (
                "display",
                f"{v.display_width}x{v.display_height} (SAR {v.sample_aspect_ratio}, DAR {v.display_aspect_ratio})",
            )
        )
    hdr = HDR_LABELS.get(v.hdr_format, "HDR" if v.hdr else "")
    if hdr and v.hdr_format != library_pb2.HDR_FORMAT_SDR:
        m = v.mastering_display
        if v.HasField("mastering_display"):
            hdr += f", mastering {m.min_luminance:g}-{m.max_luminance:g} cd/m²"
        if v.max_cll or v.max_fall:
            hdr += f", MaxCLL {v.max_cll}, MaxFALL {v.max_fall}"
        pairs.append(("dynamic range", hdr))
    extra = []
    if v.bit_rate:
        extra.append(f"{v.bit_rate / 1000:.0f} kb/s")
    if v.frame_count:
        extra.append(f"{v.frame_count} frames")
    if extra:
        pairs.append(("video stream", ", ".join(extra)))
    return pairs


def _flags(d: library_pb2.StreamDisposition) -> list[str]:
    names = (
        ("default", d.default_track),
        ("forced", d.forced),
        ("SDH", d.hearing_impaired),
        ("audio description", d.visual_impaired),
        ("commentary", d.commentary),
        ("original", d.original),
        ("dub", d.dub),
    )
    return [name for name, on in names if on]


def _audio_line(a: library_pb2.AudioStream) -> str:
    parts = [a.codec + (f" ({a.profile})" if a.profile else ""), a.channel_layout or f"{a.channels}ch"]
    parts.append(f"{a.sample_rate} Hz")
    if a.bit_rate:
        parts.append(f"{a.bit_rate / 1000:.0f} kb/s")
    if a.language:
        parts.append(a.language)
    if a.title:
        parts.append(f'"{a.title}"')
    return ", ".join(parts + _flags(a.disposition))


_SUBTITLE_KIND_LABELS = {library_pb2.SUBTITLE_KIND_TEXT: "text", library_pb2.SUBTITLE_KIND_BITMAP: "image"}


def _subtitle_line(s: library_pb2.SubtitleStream) -> str:
    parts = [s.codec + (f" ({_SUBTITLE_KIND_LABELS[s.kind]})" if s.kind in _SUBTITLE_KIND_LABELS else "")]
    if s.language:
        parts.append(s.language)
    if s.title:
        parts.append(f'"{s.title}"')
    return ", ".join(parts + _flags(s.disposition))


def run_get(ns: argparse.Namespace) -> int:
    out = Output(json_mode=ns.json)
    ref: str = ns.video
    if not ref.strip():
        raise UsageError("ID_OR_PATH is empty")
    if "/" in ref or os.sep in ref:
        ref = local_path(ref, "ID_OR_PATH")
    with sync_client(ns) as client:
        video = client.get_video(ref)
    if ns.json:
        out.json(video)
    else:
        out.fields(describe(video, tty=out.tty))
    return EXIT_OK


def run_errors(ns: argparse.Namespace) -> int:
    out = Output(json_mode=ns.json)
    with sync_client(ns) as client:
        job_id = resolve_job_id(client, ns.job_id)
        errors = client.list_scan_errors(job_id, limit=ns.limit or None)
        if ns.json:
            for error in errors:
                out.json(error)
        else:
            rows = ([e.path, fmt.error_kind_label(e.kind), e.reason] for e in errors)
            empty = f"job {job_id} has no scan errors"
            out.table(("PATH", "KIND", "REASON"), rows, fold=("PATH", "REASON"), empty=empty)
    return EXIT_OK
