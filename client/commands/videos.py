"""`reelscan videos list|search|get` and `reelscan errors JOB_ID`."""

from __future__ import annotations

import argparse
import os

from reelscan.client import format as fmt
from reelscan.client.commands.common import (
    EXIT_OK,
    Output,
    add_connection_arguments,
    add_json_argument,
    positive_float,
    positive_int,
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
    p.add_argument("query", metavar="WORDS")
    _filters(p)
    _common(p, run_list)

    p = commands.add_parser("get", help="show one video, by id or by path")
    p.add_argument("video", metavar="ID_OR_PATH", help="a video id, or a path (anything with a '/' in it)")
    _common(p, run_get)

    p = subparsers.add_parser("errors", help="list the files a scan job could not probe")
    p.add_argument("job_id", metavar="JOB_ID")
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


def run_list(ns: argparse.Namespace) -> int:
    out = Output(json_mode=ns.json)
    prefix = os.path.abspath(os.path.expanduser(ns.prefix)) if ns.prefix else None
    with sync_client(ns) as client:
        videos = client.list_videos(
            path_prefix=prefix,
            video_codec=ns.codec,
            min_duration=ns.min_duration,
            max_duration=ns.max_duration,
            min_height=ns.min_height,
            query=getattr(ns, "query", None),
            include_missing=ns.include_missing,
            limit=ns.limit or None,
        )
        if ns.json:
            for video in videos:
                out.json(video)
        else:
            out.table(("ID", "PATH", "DURATION", "RES", "CODEC", "FPS", "AUDIO", "SIZE"), (_row(v) for v in videos))
    return EXIT_OK


def describe(video: library_pb2.Video) -> list[tuple[str, str]]:
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
        pairs.append(("created", video.creation_time.ToDatetime().isoformat(timespec="seconds") + "Z"))
    return pairs


def run_get(ns: argparse.Namespace) -> int:
    out = Output(json_mode=ns.json)
    ref: str = ns.video
    if "/" in ref or os.sep in ref:
        ref = os.path.abspath(os.path.expanduser(ref))
    with sync_client(ns) as client:
        video = client.get_video(ref)
    if ns.json:
        out.json(video)
    else:
        out.fields(describe(video))
    return EXIT_OK


def run_errors(ns: argparse.Namespace) -> int:
    out = Output(json_mode=ns.json)
    with sync_client(ns) as client:
        errors = client.list_scan_errors(ns.job_id, limit=ns.limit or None)
        if ns.json:
            for error in errors:
                out.json(error)
        else:
            rows = ([e.path, fmt.error_kind_label(e.kind), e.reason] for e in errors)
            if out.table(("PATH", "KIND", "REASON"), rows) == 0 and out.tty:
                out.line(f"job {ns.job_id} has no scan errors")
    return EXIT_OK
