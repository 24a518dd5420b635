"""Broken files in the CLI, against a real server (issue 15, "broken files are part of the library"): a rescan's
summary names the known-broken files it skipped (and still exits 0); `videos list --failed` lists each broken file
with its kind, reason and when it was last tried, on a terminal (tmux, raw pty) and piped, hostile names escaped;
`--json` keeps the exact values; `videos get` of a broken file shows why; a broken file replaced by a good clip
leaves the list, and one deleted from disk is only listed with --include-missing. The Python clients pass
`statuses` on to ListVideos."""

from __future__ import annotations

import datetime
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from reelscan.client import AsyncReelscanClient, ReelscanClient
from reelscan.client import format as fmt
from reelscan.client.rpc import list_videos_request
from reelscan.v1 import job_pb2, library_pb2
from tests.client.conftest import Templates, cli_env, make_library, reelscan_cmd, run_cli
from tests.client.terminal import Tmux, foreign_escapes, run_in_pty
from tests.helpers.server import ServerProcess
from tests.media import copy_clip

# File name (bytes) -> what the screen shows of it (the server's library form, made printable).
HOSTILE = {
    b"bad\x1b]0;PWNED\x07title.mp4": "bad\\x1b]0;PWNED\\x07title.mp4",
    "evil\u202egpj.mp4".encode(): "evil\\u202egpj.mp4",
    b"[red]broken-probe[reverse].mp4": "[red]broken-probe[reverse].mp4",
    b"raw\xffbad.mp4": "raw\\xffbad.mp4",
}
# The same names as the server sends them (JSON keeps these exact values).
HOSTILE_EXACT = {
    b"bad\x1b]0;PWNED\x07title.mp4": "bad\x1b]0;PWNED\x07title.mp4",
    "evil\u202egpj.mp4".encode(): "evil\u202egpj.mp4",
    b"[red]broken-probe[reverse].mp4": "[red]broken-probe[reverse].mp4",
    b"raw\xffbad.mp4": "raw\\xffbad.mp4",
}
PLAIN_BROKEN = ("broken-0.mp4", "broken-1.mp4")
GOOD = 3
BROKEN_COUNT = len(PLAIN_BROKEN) + len(HOSTILE)


@dataclass(frozen=True)
class Broken:
    root: Path
    first: dict[str, Any]  # the first scan's Job (proto3 JSON), which probed every file
    rescan: Any  # CompletedProcess of the plain rescan
    reasons: dict[str, str]  # exact path -> reason of its scan error in the first scan

    def shown(self) -> list[str]:
        return [f"{self.root}/{name}" for name in PLAIN_BROKEN] + [f"{self.root}/{s}" for s in HOSTILE.values()]

    def exact(self) -> list[str]:
        return [f"{self.root}/{name}" for name in PLAIN_BROKEN] + [f"{self.root}/{s}" for s in HOSTILE_EXACT.values()]


@pytest.fixture(scope="module")
def broken(cli_server: ServerProcess, scan_root: Path, templates: Templates) -> Broken:
    """A folder of good clips and broken files (two plainly named, four with hostile names), scanned once (JSON)
    and then rescanned (plain output), so the broken files are known-broken and skipped by the rescan."""
    root = scan_root / "some-failures"
    make_library(root, templates, GOOD, broken=len(PLAIN_BROKEN))
    noise = templates.broken.read_bytes()
    for name in HOSTILE:
        with open(os.fsencode(root) + b"/" + name, "wb") as f:
            f.write(noise)
    first = run_cli("scan", str(root), "--json", server=cli_server)
    assert first.returncode == 0, first.stderr
    job = json.loads(first.stdout.splitlines()[-1])["job"]
    assert int(job["result"]["failed"]) == BROKEN_COUNT and "unchangedFailed" in job["result"]
    errors = run_cli("errors", job["id"], "--json", server=cli_server)
    reasons = {e["path"]: e["reason"] for e in map(json.loads, errors.stdout.splitlines())}
    assert len(reasons) == BROKEN_COUNT
    rescan = run_cli("scan", str(root), server=cli_server)
    return Broken(root, job, rescan, reasons)


def ts(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


def first_scan_window(broken: Broken) -> tuple[datetime.datetime, datetime.datetime]:
    # Whole seconds: plain output shows ISO 8601 to the second.
    start = ts(broken.first["startTime"]).replace(microsecond=0)
    return start, ts(broken.first["finishTime"]) + datetime.timedelta(seconds=1)


# The scan summary


def test_a_rescan_says_how_many_known_broken_files_it_skipped_and_still_exits_0(broken: Broken) -> None:
    rescan = broken.rescan
    assert rescan.returncode == 0, rescan.stdout + rescan.stderr
    discovered = GOOD + BROKEN_COUNT
    summary = (
        f"discovered {discovered}, probed 0, new 0, updated 0, unchanged {discovered} ({BROKEN_COUNT} known-broken)"
    )
    assert f"  {summary}, missing 0, failed 0\n" in rescan.stdout, rescan.stdout
    assert (
        f"  {BROKEN_COUNT} known-broken files skipped (not probed again; --force retries them): "
        f"reelscan videos list --failed --prefix {broken.root}\n"
    ) in rescan.stdout
    assert "Scan errors" not in rescan.stdout  # nothing was tried, so nothing failed in this scan


def test_the_first_scan_and_a_forced_one_probe_the_broken_files_and_skip_none(
    cli_server: ServerProcess, broken: Broken, library_dir: Path, templates: Templates
) -> None:
    assert broken.first["result"]["unchangedFailed"] == "0"
    # Its own folder: a forced scan tries the broken files again, which moves their last try.
    make_library(library_dir, templates, 1, broken=2)
    first = run_cli("scan", str(library_dir), server=cli_server)
    assert first.returncode == 0 and "known-broken" not in first.stdout and "Scan errors (2):" in first.stdout
    forced = run_cli("scan", str(library_dir), "--force", "--json", server=cli_server)
    assert forced.returncode == 0, forced.stderr  # files that failed do not fail the scan
    result = json.loads(forced.stdout.splitlines()[-1])["job"]["result"]
    assert (result["failed"], result["unchangedFailed"]) == ("2", "0")
    plain = run_cli("scan", str(library_dir), "--force", server=cli_server)
    assert plain.returncode == 0 and "known-broken" not in plain.stdout and "Scan errors (2):" in plain.stdout
    rescan = run_cli("scan", str(library_dir), server=cli_server)
    assert rescan.returncode == 0 and "  2 known-broken files skipped" in rescan.stdout


def test_a_rescan_on_a_terminal_shows_the_skipped_count(cli_server: ServerProcess, broken: Broken) -> None:
    with Tmux(reelscan_cmd("scan", str(broken.root), server=cli_server), width=300, env=cli_env()) as term:
        code, screen = term.wait_exit()
    assert code == 0, screen
    assert f"({BROKEN_COUNT} known-broken)" in screen
    expected = f"{BROKEN_COUNT} known-broken files skipped (not probed again; --force retries them): "
    assert f"  {expected}reelscan videos list --failed --prefix {broken.root}" in screen, screen


def test_jobs_get_and_the_json_result_count_the_known_broken_files(cli_server: ServerProcess, broken: Broken) -> None:
    again = run_cli("scan", str(broken.root), "--json", server=cli_server)
    assert again.returncode == 0, again.stderr
    final = json.loads(again.stdout.splitlines()[-1])
    assert final["event"] == "result" and final["scanErrors"] == []
    assert final["job"]["result"]["unchangedFailed"] == str(BROKEN_COUNT)
    got = run_cli("jobs", "get", final["job"]["id"], server=cli_server)
    assert got.returncode == 0 and f"({BROKEN_COUNT} known-broken)" in got.stdout, got.stdout


# videos list --failed


def test_videos_list_failed_piped_lists_each_broken_file_with_its_kind_reason_and_last_try(
    cli_server: ServerProcess, broken: Broken
) -> None:
    listed = run_cli("videos", "list", "--failed", "--prefix", str(broken.root), server=cli_server)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0] == "PATH\tKIND\tREASON\tLAST TRIED"
    rows = [line.split("\t") for line in lines[1:]]
    assert sorted(row[0] for row in rows) == sorted(broken.shown())  # every broken file, escaped; no good clip
    assert not re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e]", listed.stdout)
    by_shown = dict(zip(broken.shown(), broken.exact(), strict=True))
    start, end = first_scan_window(broken)
    for path, kind, reason, last_tried in rows:
        assert kind == "probe failed"
        assert reason == broken.reasons[by_shown[path]] and reason  # the reason of the scan that tried it
        tried = datetime.datetime.fromisoformat(last_tried)
        assert tried.tzinfo is not None and start <= tried <= end  # the first scan, not the rescan that skipped it

    # `--status failed` is the same; the default listing has the good clips only.
    status = run_cli("videos", "list", "--status", "failed", "--prefix", str(broken.root), server=cli_server)
    assert status.stdout == listed.stdout
    default = run_cli("videos", "list", "--prefix", str(broken.root), server=cli_server)
    assert len(default.stdout.splitlines()) == 1 + GOOD and "broken" not in default.stdout
    limited = run_cli("videos", "list", "--failed", "--prefix", str(broken.root), "--limit", "2", server=cli_server)
    assert limited.stdout.splitlines() == lines[:3]


def test_videos_list_failed_on_a_terminal_shows_kind_reason_and_local_time_with_names_escaped(
    cli_server: ServerProcess, broken: Broken
) -> None:
    command = reelscan_cmd("videos", "list", "--failed", "--prefix", str(broken.root), server=cli_server)
    with Tmux(command, width=300, env=cli_env({"TZ": "America/New_York"})) as term:
        code, screen = term.wait_exit()
        title = term.title()
    assert code == 0, screen
    assert re.search(r"^PATH\s+KIND\s+REASON\s+LAST TRIED\s*$", screen, re.MULTILINE), screen
    reason = next(iter(broken.reasons.values()))
    # Today's times in tables are HH:MM:SS with the zone; older ones carry their date.
    when = r"(\d\d:\d\d:\d\d|\d{4}-\d\d-\d\d \d\d:\d\d) E[SD]T"
    for path in broken.shown():
        row = rf"^{re.escape(path)}\s+probe failed\s+{re.escape(reason)}\s+{when}\s*$"
        assert re.search(row, screen, re.MULTILINE), f"{path!r} not shown as is:\n{screen}"
    assert "PWNED" not in title

    code, raw = run_in_pty(command, env=cli_env(), columns=120)
    assert code == 0, raw[-3000:]
    assert foreign_escapes(raw) == [], foreign_escapes(raw)[:10]
    assert b"\xff" not in raw and "evil\\u202egpj.mp4" in raw.decode()


def test_no_broken_files_is_said_on_a_terminal_and_a_pipe_gets_the_header_alone(
    cli_server: ServerProcess, library_dir: Path, templates: Templates
) -> None:
    make_library(library_dir, templates, 2)
    assert run_cli("scan", str(library_dir), server=cli_server).returncode == 0
    command = reelscan_cmd("videos", "list", "--failed", "--prefix", str(library_dir), server=cli_server)
    with Tmux(command, width=200, env=cli_env()) as term:
        code, screen = term.wait_exit()
    assert code == 0, screen
    assert f"no broken files under {library_dir}" in screen and "LAST TRIED" not in screen
    piped = run_cli("videos", "list", "--failed", "--prefix", str(library_dir), server=cli_server)
    assert piped.returncode == 0 and piped.stdout == "PATH\tKIND\tREASON\tLAST TRIED\n"
    as_json = run_cli("videos", "list", "--failed", "--prefix", str(library_dir), "--json", server=cli_server)
    assert as_json.returncode == 0 and as_json.stdout == ""


def test_videos_list_failed_json_prints_the_exact_video_messages(cli_server: ServerProcess, broken: Broken) -> None:
    listed = run_cli("videos", "list", "--failed", "--prefix", str(broken.root), "--json", server=cli_server)
    assert listed.returncode == 0, listed.stderr
    assert not re.search("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e]", listed.stdout)  # as JSON \u escapes
    videos = [json.loads(line) for line in listed.stdout.splitlines()]
    assert sorted(v["path"] for v in videos) == sorted(broken.exact())
    with ReelscanClient(cli_server.address) as client:
        for video in videos:
            assert video["status"] == "VIDEO_STATUS_FAILED" and video["failureKind"] == "SCAN_ERROR_KIND_PROBE_FAILED"
            assert video["failureReason"] == broken.reasons[video["path"]] and video["missing"] is False
            assert video == fmt.to_dict(client.get_video(video["path"]))  # the whole message, every field


def test_a_media_filter_with_failed_is_a_usage_error(cli_server: ServerProcess, broken: Broken) -> None:
    result = run_cli("videos", "list", "--failed", "--codec", "h264", "--min-height", "10", server=cli_server)
    assert result.returncode == 2
    assert "--codec and --min-height never match a broken file" in result.stderr
    bad = run_cli("videos", "list", "--status", "broken", server=cli_server)
    assert bad.returncode == 2 and "invalid choice: 'broken'" in bad.stderr


def test_status_ok_and_failed_lists_both_marking_the_broken_ones(cli_server: ServerProcess, broken: Broken) -> None:
    args = ("videos", "list", "--status", "ok", "--status", "failed", "--prefix", str(broken.root), "--limit", "0")
    result = run_cli(*args, server=cli_server)
    assert result.returncode == 0, result.stderr
    rows = [line.split("\t") for line in result.stdout.splitlines()[1:]]
    assert len(rows) == GOOD + BROKEN_COUNT
    marked = sorted(row[1].removesuffix(" (failed)") for row in rows if row[1].endswith(" (failed)"))
    assert marked == sorted(broken.shown())
    assert all(row[2:7] == ["-"] * 5 for row in rows if row[1].endswith(" (failed)"))  # no media metadata


def test_videos_search_failed_finds_broken_files_by_name(cli_server: ServerProcess, broken: Broken) -> None:
    result = run_cli("videos", "search", "broken", "--failed", "--prefix", str(broken.root), server=cli_server)
    assert result.returncode == 0, result.stderr
    paths = sorted(line.split("\t")[0] for line in result.stdout.splitlines()[1:])
    assert f"{broken.root}/broken-0.mp4" in paths and f"{broken.root}/broken-1.mp4" in paths
    assert not any("evil" in p or "raw" in p for p in paths)


# videos get


def fields(stdout: str) -> dict[str, str]:
    pairs = (line.split(":", 1) for line in stdout.splitlines())
    return {key.strip(): value.strip() for key, value in pairs}


def test_videos_get_of_a_broken_file_shows_status_kind_reason_and_when_it_was_last_tried(
    cli_server: ServerProcess, broken: Broken
) -> None:
    path = f"{broken.root}/broken-0.mp4"
    got = run_cli("videos", "get", path, server=cli_server)
    assert got.returncode == 0, got.stderr
    shown = fields(got.stdout)
    assert shown["path"] == path
    assert shown["status"].startswith("failed")
    assert shown["kind"] == "probe failed" and shown["reason"] == broken.reasons[path]
    start, end = first_scan_window(broken)
    assert start <= datetime.datetime.fromisoformat(shown["last tried"]) <= end
    assert shown["size"] == fmt.size((broken.root / "broken-0.mp4").stat().st_size)
    assert not {"container", "duration", "audio", "video"} & set(shown)  # no empty media rows

    # A hostile name, given as the undecodable local name it is, on a terminal: escaped, the reason shown.
    local = os.fsdecode(os.fsencode(broken.root) + b"/raw\xffbad.mp4")
    code, raw = run_in_pty(reelscan_cmd("videos", "get", local, server=cli_server), env=cli_env(), columns=200)
    text = raw.decode()
    assert code == 0, text
    library_path = f"{broken.root}/" + "raw\\xffbad.mp4"  # the server's form of that name
    assert foreign_escapes(raw) == [] and f"path:       {library_path}" in text
    assert re.search(rf"reason:\s+{re.escape(broken.reasons[library_path])}", text), text

    as_json = run_cli("videos", "get", path, "--json", server=cli_server)
    video = json.loads(as_json.stdout)
    assert (video["status"], video["failureReason"]) == ("VIDEO_STATUS_FAILED", broken.reasons[path])


# Replaced and deleted broken files


def test_a_broken_file_replaced_by_a_good_clip_leaves_the_failed_list_and_a_deleted_one_is_missing(
    cli_server: ServerProcess, library_dir: Path, templates: Templates
) -> None:
    make_library(library_dir, templates, 1, broken=2)
    assert run_cli("scan", str(library_dir), server=cli_server).returncode == 0

    def failed(*extra: str) -> list[str]:
        result = run_cli("videos", "list", "--failed", "--prefix", str(library_dir), *extra, server=cli_server)
        assert result.returncode == 0, result.stderr
        return [line.split("\t")[0] for line in result.stdout.splitlines()[1:]]

    fixed, gone = library_dir / "broken-0.mp4", library_dir / "broken-1.mp4"
    assert failed() == [str(fixed), str(gone)]

    copy_clip(templates.sd, fixed)  # repaired: a different size and mtime, so the next scan probes it again
    rescan = run_cli("scan", str(library_dir), server=cli_server)
    assert rescan.returncode == 0, rescan.stderr
    assert "  1 known-broken file skipped (not probed again; --force retries them): " in rescan.stdout
    assert failed() == [str(gone)]
    videos = run_cli("videos", "list", "--prefix", str(library_dir), server=cli_server)
    assert str(fixed) in videos.stdout and "(failed)" not in videos.stdout
    shown = fields(run_cli("videos", "get", str(fixed), server=cli_server).stdout)
    assert "status" not in shown and "reason" not in shown and shown["video"].startswith("h264")

    gone.unlink()
    third = run_cli("scan", str(library_dir), server=cli_server)
    assert third.returncode == 0 and "known-broken" not in third.stdout
    assert failed() == []  # broken files on disk now: none
    assert failed("--include-missing") == [f"{gone} (missing)"]  # gone from disk, and broken when last seen
    missing = fields(run_cli("videos", "get", str(gone), server=cli_server).stdout)
    assert missing["status"].startswith("missing") and missing["reason"] and missing["kind"] == "probe failed"
    # The good clip deleted too: MISSING, but not broken, so --failed --include-missing still leaves it out.
    fixed.unlink()
    assert run_cli("scan", str(library_dir), server=cli_server).returncode == 0
    assert failed("--include-missing") == [f"{gone} (missing)"]
    every_missing = run_cli("videos", "list", "--status", "missing", "--prefix", str(library_dir), server=cli_server)
    paths = sorted(line.split("\t")[1] for line in every_missing.stdout.splitlines()[1:])
    assert paths == [f"{fixed} (missing)", f"{gone} (missing, failed)"]


# The Python clients


def test_list_videos_request_carries_the_statuses() -> None:
    common: dict[str, Any] = dict(
        path_prefix="/m",
        video_codec=None,
        min_duration=None,
        max_duration=None,
        min_height=None,
        query=None,
        include_missing=True,
        page_size=0,
    )
    statuses = [library_pb2.VIDEO_STATUS_FAILED, library_pb2.VIDEO_STATUS_MISSING]
    request = list_videos_request(**common, statuses=iter(statuses))
    assert list(request.statuses) == statuses and request.include_missing
    assert list(list_videos_request(**common).statuses) == []  # default: the server's OK-only listing


def test_the_sync_and_async_clients_pass_statuses_on(cli_server: ServerProcess, broken: Broken) -> None:
    import asyncio

    failed_only = [library_pb2.VIDEO_STATUS_FAILED]
    with ReelscanClient(cli_server.address) as client:
        listed = list(client.list_videos(path_prefix=broken.root, statuses=failed_only))
        assert sorted(v.path for v in listed) == sorted(broken.exact())
        assert all(v.status == library_pb2.VIDEO_STATUS_FAILED and v.failure_reason for v in listed)
        both = [library_pb2.VIDEO_STATUS_OK, library_pb2.VIDEO_STATUS_FAILED]
        assert len(list(client.list_videos(path_prefix=broken.root, statuses=both))) == GOOD + BROKEN_COUNT
        assert len(list(client.list_videos(path_prefix=broken.root))) == GOOD

    async def via_async() -> list[library_pb2.Video]:
        async with AsyncReelscanClient(cli_server.address) as client:
            return [v async for v in client.list_videos(path_prefix=broken.root, statuses=failed_only, limit=2)]

    assert [v.path for v in asyncio.run(via_async())] == sorted(v.path for v in listed)[:2]


def test_the_summary_names_known_broken_files_and_the_help_documents_exit_0() -> None:
    result = fmt.result_summary(job_pb2.Job().result)
    assert "known-broken" not in result
    job = job_pb2.Job(id="j")
    job.scan.path = "/srv/my media"
    job.result.unchanged = 4
    job.result.unchanged_failed = 3
    assert "unchanged 4 (3 known-broken)" in fmt.result_summary(job.result)
    from reelscan.client.commands.follow import known_broken_line

    expected = "3 known-broken files skipped (not probed again; --force retries them): "
    assert known_broken_line(job) == expected + "reelscan videos list --failed --prefix '/srv/my media'"
    help_text = run_cli("scan", "--help", server=None).stdout
    assert "0 succeeded (also when some files could not be probed" in " ".join(help_text.split())
