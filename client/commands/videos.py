"""`reelscan videos list|search|get` and `reelscan errors JOB_ID`."""

from __future__ import annotations

import argparse
import os

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
    f.add_argument("--include-missing", action="store_true", help="include files no longer on disk")
    parser.add_argument("--limit", type=positive_int, default=50, help="show at most N videos, 0 for all [default 50]")


def _row(video: library_pb2.Video) -> list[str]:
    stream = video.video
    return [
        video.id,
        video.path + (" (missing)" if video.missing else ""),
        fmt.video_duration(video),
        fmt.video_resolution(video),
        stream.codec if video.HasField("video") else "-",
        f"{stream.frame_rate:.3g}" if stream.frame_rate else "-",
        fmt.audio_summary(video),
        fmt.size(video.size_bytes),
    ]


def library_form(path: str) -> str:
    """A local path as the library stores it: as it is, unless it holds a backslash or bytes that are not UTF-8
    (surrogate escapes); then backslashes are doubled and each such byte is written \\xNN (the server's rule)."""
    if "\\" not in path:
        try:
            path.encode("utf-8")
        except UnicodeEncodeError:
            pass
        else:
            return path
    raw = path.encode("utf-8", "surrogateescape")
    return raw.replace(b"\\", b"\\\\").decode("utf-8", "backslashreplace")


def local_path(text: str, what: str) -> str:
    if not text.strip():
        raise UsageError(f"{what} is empty")
    return library_form(os.path.abspath(os.path.expanduser(text)))


VIDEO_HEADERS = ("ID", "PATH", "DURATION", "RES", "CODEC", "FPS", "AUDIO", "SIZE")
VIDEO_FOLD = ("PATH", "AUDIO")
VIDEO_OPTIONAL = ("AUDIO", "FPS", "CODEC", "SIZE", "ID")


def run_list(ns: argparse.Namespace) -> int:
    out = Output(json_mode=ns.json)
    prefix = local_path(ns.prefix, "--prefix") if ns.prefix is not None else None
    query = " ".join(ns.query) if getattr(ns, "query", None) else None
    if query is not None and not query.strip():
        raise UsageError("WORD is empty: give words of the file name")
    with sync_client(ns) as client:
        videos = client.list_videos(
            path_prefix=prefix,
            video_codec=ns.codec,
            min_duration=ns.min_duration,
            max_duration=ns.max_duration,
            min_height=ns.min_height,
            query=query,
            include_missing=ns.include_missing,
            limit=ns.limit or None,
        )
        if ns.json:
            for video in videos:
                out.json(video)
        else:
            out.table(VIDEO_HEADERS, (_row(v) for v in videos), fold=VIDEO_FOLD, optional=VIDEO_OPTIONAL)
    return EXIT_OK


def describe(video: library_pb2.Video, *, tty: bool = True) -> list[tuple[str, str]]:
    pairs = [
        ("id", video.id),
        ("path", video.path + (" (missing)" if video.missing else "")),
        ("container", video.container_format),
        ("size", fmt.size(video.size_bytes)),
        ("duration", fmt.video_duration(video)),
        ("bit rate", f"{video.bit_rate / 1000:.0f} kb/s" if video.bit_rate else "-"),
    ]
    if video.HasField("video"):
        v = video.video
        color = f", {v.color_transfer}/{v.color_primaries}" if v.color_transfer or v.color_primaries else ""
        pairs += [
            ("video", f"{v.codec}" + (f" ({v.profile})" if v.profile else "")),
            ("frame", f"{v.width}x{v.height}, {v.frame_rate:.3f} fps, rotation {v.rotation}"),
            ("pixels", f"{v.pixel_format}, {v.bit_depth}-bit{color}" + (", HDR" if v.hdr else "")),
        ]
    pairs.append(("audio", fmt.audio_summary(video)))
    if video.subtitle_count:
        pairs.append(("subtitles", f"{video.subtitle_count} ({', '.join(video.subtitle_languages) or 'untagged'})"))
    if video.HasField("creation_time"):
        pairs.append(("created", fmt.local_time(video.creation_time, tty=tty)))
    return pairs


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
            if out.table(("PATH", "KIND", "REASON"), rows, fold=("PATH", "REASON")) == 0 and out.tty:
                out.line(f"job {job_id} has no scan errors")
    return EXIT_OK
