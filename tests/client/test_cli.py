"""The `reelscan` CLI against a real server: progress, summaries, JSON, exit codes, Ctrl-C, and the jobs / videos /
errors commands. Every test runs the installed console script in a subprocess, as a user would."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from reelscan.client import ReelscanClient
from reelscan.v1 import job_pb2
from tests.client.conftest import Templates, cli_env, make_library, reelscan_cmd, run_cli
from tests.helpers.server import ServerProcess

PERCENT = re.compile(r"^\[\s*(\d+\.\d)%\] (\w[\w ]*?)(?:,|$)")


def progress_lines(stdout: str) -> list[tuple[float, str]]:
    """(percent, state) of every plain progress line."""
    found = []
    for line in stdout.splitlines():
        match = PERCENT.match(line)
        if match:
            found.append((float(match.group(1)), match.group(2)))
    return found


def json_lines(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def test_scan_piped_prints_increasing_plain_progress_then_the_summary_and_errors(
    cli_server: ServerProcess, library_dir: Path, templates: Templates
) -> None:
    make_library(library_dir, templates, 60, broken=1)
    result = run_cli("scan", str(library_dir), "--progress-interval", "0.05", server=cli_server)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "\x1b" not in out  # never escape codes into a pipe

    progress = progress_lines(out)
    percents = [p for p, _ in progress]
    assert percents == sorted(percents), out  # never goes backwards
    running = {p for p, state in progress if state == "running"}
    assert len({p for p in running if 0 < p < 100}) >= 2, out  # it really moved while running
    assert progress[-1] == (100.0, "succeeded")
    assert re.search(r"probing \d+/61 files", out), out

    assert f"Scan of {library_dir} succeeded in" in out
    assert "discovered 61," in out and "failed 1" in out
    assert "Scan errors (1):" in out
    assert f"{library_dir}/broken-0.mp4: probe failed:" in out


def test_scan_json_lines_all_parse_and_end_with_the_result(
    cli_server: ServerProcess, library_dir: Path, templates: Templates
) -> None:
    make_library(library_dir, templates, 30, broken=2)
    result = run_cli("scan", str(library_dir), "--json", "--progress-interval", "0.05", server=cli_server)
    assert result.returncode == 0, result.stdout + result.stderr
    events = json_lines(result.stdout)

    assert events[0]["event"] == "started"
    job_id = events[0]["job"]["id"]
    updates = [e["update"] for e in events if e["event"] == "update"]
    assert updates and all(u["jobId"] == job_id for u in updates)
    seqs = [int(u["seq"]) for u in updates]
    assert seqs == sorted(set(seqs))  # strictly increasing, no repeats
    assert updates[-1]["state"] == "JOB_STATE_SUCCEEDED" and updates[-1]["progress"] == 1.0

    final = events[-1]
    assert final["event"] == "result"
    assert final["job"]["state"] == "JOB_STATE_SUCCEEDED"
    assert int(final["job"]["result"]["discovered"]) == 32
    assert int(final["job"]["result"]["failed"]) == 2
    assert sorted(Path(e["path"]).name for e in final["scanErrors"]) == ["broken-0.mp4", "broken-1.mp4"]


def test_scan_on_a_terminal_draws_a_live_bar(
    cli_server: ServerProcess, library_dir: Path, templates: Templates
) -> None:
    make_library(library_dir, templates, 20)
    controller, terminal = pty.openpty()
    proc = subprocess.Popen(
        reelscan_cmd("scan", str(library_dir), server=cli_server),
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        env=cli_env({"TERM": "xterm-256color", "COLUMNS": "160"}),
        close_fds=True,
    )
    os.close(terminal)
    chunks = []
    try:
        while True:
            ready, _, _ = select.select([controller], [], [], 30)
            assert ready, "no output for 30 s"
            try:
                data = os.read(controller, 65536)
            except OSError:  # EIO: the process closed the terminal
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(controller)
    assert proc.wait(30) == 0
    screen = b"".join(chunks).decode(errors="replace")
    assert "\x1b[" in screen  # a live display, redrawn in place
    assert "━" in screen  # rich's bar
    assert "succeeded" in screen and "discovered 20" in screen


def test_ctrl_c_cancels_the_job_on_the_server_and_exits_3(
    cli_server: ServerProcess, library_dir: Path, templates: Templates
) -> None:
    make_library(library_dir, templates, 400)  # about 4 s of probing: plenty of time to interrupt
    proc = subprocess.Popen(
        reelscan_cmd("scan", str(library_dir), "--progress-interval", "0.05", server=cli_server),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=cli_env(),
    )
    assert proc.stdout is not None
    header = proc.stdout.readline()
    match = re.match(r"Scanning .* as job (\S+)", header)
    assert match, header
    job_id = match.group(1)
    lines = []
    for line in proc.stdout:  # wait until it is really probing, part-way through
        lines.append(line)
        progress = progress_lines(line)
        if progress and progress[0][1] == "running" and progress[0][0] > 0:
            break
    proc.send_signal(signal.SIGINT)
    rest, err = proc.communicate(timeout=30)
    out = header + "".join(lines) + rest
    assert proc.returncode == 3, out + err
    assert f"Cancelling job {job_id}" in out
    assert "cancelled" in out
    with ReelscanClient(cli_server.address) as client:
        job = client.get_job(job_id)
    assert job.state == job_pb2.JOB_STATE_CANCELLED
    assert job.cancel_requested
    assert 0 < job.result.probed < 400  # it stopped part-way, keeping what it had


def test_exit_codes(cli_server: ServerProcess, library_dir: Path, templates: Templates, tmp_path: Path) -> None:
    # 2: usage errors, found before any call.
    assert run_cli(server=None).returncode == 2
    assert run_cli("scan", server=cli_server).returncode == 2
    bad_state = run_cli("jobs", "list", "--state", "sleeping", server=cli_server)
    assert bad_state.returncode == 2 and "unknown state 'sleeping'" in bad_state.stderr

    # 1: the server refused, with its status code and message on stderr.
    missing = run_cli("scan", str(library_dir / "nope"), server=cli_server)
    assert missing.returncode == 1 and "NOT_FOUND" in missing.stderr
    outside = run_cli("scan", str(tmp_path), server=cli_server)
    assert outside.returncode == 1 and "PERMISSION_DENIED" in outside.stderr
    unknown = run_cli("jobs", "get", "no-such-job", server=cli_server)
    assert unknown.returncode == 1 and "NOT_FOUND" in unknown.stderr
    down = run_cli("jobs", "list", "--server", "127.0.0.1:1", server=None)
    assert down.returncode == 1 and "cannot reach the server at 127.0.0.1:1" in down.stderr

    # 4: the job ran past its time limit.
    make_library(library_dir, templates, 300)
    timed_out = run_cli("scan", str(library_dir), "--timeout", "0.5", server=cli_server)
    assert timed_out.returncode == 4, timed_out.stdout + timed_out.stderr
    assert "timed out" in timed_out.stdout


def test_detached_scan_then_jobs_and_errors_commands(
    cli_server: ServerProcess, library_dir: Path, templates: Templates
) -> None:
    make_library(library_dir, templates, 20, broken=1)
    started = run_cli("scan", str(library_dir), "--detach", server=cli_server)
    assert started.returncode == 0, started.stderr
    job_id = started.stdout.strip()
    assert job_id and "\n" not in job_id

    watched = run_cli("jobs", "watch", job_id, "--json", server=cli_server)
    assert watched.returncode == 0, watched.stderr
    assert json_lines(watched.stdout)[-1]["job"]["state"] == "JOB_STATE_SUCCEEDED"

    got = run_cli("jobs", "get", job_id, "--json", server=cli_server)
    assert json_lines(got.stdout)[0]["id"] == job_id
    text = run_cli("jobs", "get", job_id, server=cli_server).stdout
    assert "state:" in text and "succeeded" in text and "discovered 21" in text

    listed = run_cli("jobs", "list", "--state", "succeeded", "--limit", "0", "--json", server=cli_server)
    assert job_id in {j["id"] for j in json_lines(listed.stdout)}
    table = run_cli("jobs", "list", server=cli_server).stdout
    assert table.splitlines()[0].split("\t")[:2] == ["ID", "STATE"]

    errors = run_cli("errors", job_id, "--json", server=cli_server)
    assert [Path(e["path"]).name for e in json_lines(errors.stdout)] == ["broken-0.mp4"]
    assert json_lines(errors.stdout)[0]["kind"] == "SCAN_ERROR_KIND_PROBE_FAILED"

    deleted = run_cli("jobs", "delete", job_id, server=cli_server)
    assert deleted.returncode == 0 and f"deleted job {job_id}" in deleted.stdout
    assert run_cli("jobs", "get", job_id, server=cli_server).returncode == 1


def test_jobs_cancel_waits_for_cancelled_and_is_idempotent(
    cli_server: ServerProcess, library_dir: Path, templates: Templates
) -> None:
    make_library(library_dir, templates, 400)
    job_id = run_cli("scan", str(library_dir), "--detach", server=cli_server).stdout.strip()
    cancelled = run_cli("jobs", "cancel", job_id, server=cli_server)
    assert cancelled.returncode == 0, cancelled.stdout + cancelled.stderr
    assert f"job {job_id} cancelled" in cancelled.stdout
    again = run_cli("jobs", "cancel", job_id, "--json", server=cli_server)
    assert again.returncode == 0 and json_lines(again.stdout)[0]["state"] == "JOB_STATE_CANCELLED"
    watched = run_cli("jobs", "watch", job_id, server=cli_server)
    assert watched.returncode == 3  # watching a cancelled job reports how it ended


def test_videos_list_search_and_get(cli_server: ServerProcess, library_dir: Path, templates: Templates) -> None:
    make_library(library_dir, templates, 5, hd=["holiday-2023.mp4", "holiday-2024.mp4"])
    assert run_cli("scan", str(library_dir), server=cli_server).returncode == 0

    listed = json_lines(run_cli("videos", "list", "--prefix", str(library_dir), "--json", server=cli_server).stdout)
    assert len(listed) == 7
    assert [v["path"] for v in listed] == sorted(v["path"] for v in listed)

    hd = run_cli("videos", "list", "--prefix", str(library_dir), "--min-height", "720", "--codec", "h264", "--json",
                 server=cli_server)  # fmt: skip
    assert sorted(Path(v["path"]).name for v in json_lines(hd.stdout)) == ["holiday-2023.mp4", "holiday-2024.mp4"]

    found = run_cli("videos", "search", "holiday 2023", "--prefix", str(library_dir), server=cli_server)
    assert found.returncode == 0
    assert "holiday-2023.mp4" in found.stdout and "holiday-2024.mp4" not in found.stdout
    assert "1280x720" in found.stdout

    path = library_dir / "holiday-2023.mp4"
    by_path = json_lines(run_cli("videos", "get", str(path), "--json", server=cli_server).stdout)[0]
    assert by_path["path"] == str(path) and by_path["video"]["height"] == 720
    by_id = run_cli("videos", "get", by_path["id"], server=cli_server)
    assert by_id.returncode == 0 and "path:" in by_id.stdout and str(path) in by_id.stdout
    assert "h264" in by_id.stdout and "1280x720" in by_id.stdout


def test_scan_without_a_server_fails_fast(library_dir: Path) -> None:
    started = time.monotonic()
    result = run_cli("scan", str(library_dir), "--server", "127.0.0.1:1", server=None)
    assert result.returncode == 1
    assert "cannot reach the server" in result.stderr
    assert time.monotonic() - started < 20


def test_ctrl_c_on_a_scan_someone_else_started_stops_following_without_cancelling(
    cli_server: ServerProcess, library_dir: Path, templates: Templates
) -> None:
    make_library(library_dir, templates, 400)
    job_id = run_cli("scan", str(library_dir), "--detach", server=cli_server).stdout.strip()
    proc = subprocess.Popen(
        reelscan_cmd("scan", str(library_dir), server=cli_server),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=cli_env(),
    )
    assert proc.stdout is not None
    header = proc.stdout.readline()
    assert f"as job {job_id} (a scan of it was already running" in header, header
    proc.send_signal(signal.SIGINT)
    assert proc.wait(30) == 130
    with ReelscanClient(cli_server.address) as client:
        job = client.get_job(job_id)
        assert not job.cancel_requested
        client.cancel_job(job_id)  # leave the shared server idle
        assert client.wait_job(job_id, timeout=30).state == job_pb2.JOB_STATE_CANCELLED
