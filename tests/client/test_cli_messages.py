"""The CLI's messages and conveniences against real servers (and, where a real server cannot be made to do it, a
tiny scripted JobService): job id prefixes, local times under non-UTC zones, settings errors that name their
variable, a bare host meaning port 50051, unreachable and silent servers, reconnect notes only for a job seen,
Ctrl-C hints, empty scans, several search words, `jobs cancel` on a finished job, and `jobs list --watch`."""

from __future__ import annotations

import datetime
import itertools
import json
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from zoneinfo import ZoneInfo

import grpc
import pytest

from reelscan.v1 import job_pb2, job_service_pb2, job_service_pb2_grpc, scan_pb2
from tests.client.conftest import PROBE_DELAY, PROBE_WORKERS, Templates, cli_env, make_library, reelscan_cmd, run_cli
from tests.client.terminal import Tmux
from tests.helpers.server import ServerProcess


def detached(server: ServerProcess, directory: Path, *extra: str) -> str:
    started = run_cli("scan", str(directory), "--detach", *extra, server=server)
    assert started.returncode == 0, started.stderr
    return started.stdout.strip()


def test_unique_prefixes_work_for_get_watch_errors_cancel_and_delete(
    cli_server: ServerProcess, library_dir: Path, templates: Templates
) -> None:
    make_library(library_dir, templates, 5, broken=1)
    job_id = detached(cli_server, library_dir)
    prefix = job_id[:8]
    watched = run_cli("jobs", "watch", prefix, "--json", server=cli_server)
    assert watched.returncode == 0 and json.loads(watched.stdout.splitlines()[-1])["job"]["id"] == job_id
    got = run_cli("jobs", "get", prefix, server=cli_server)
    assert got.returncode == 0 and f"id: {job_id}" in " ".join(got.stdout.split())
    errors = run_cli("errors", job_id[:6].upper(), server=cli_server)
    assert errors.returncode == 0 and "broken-0.mp4" in errors.stdout
    cancelled = run_cli("jobs", "cancel", prefix, server=cli_server)
    assert cancelled.returncode == 0, cancelled.stderr
    assert f"job {job_id} had already succeeded; nothing to cancel" in cancelled.stdout
    deleted = run_cli("jobs", "delete", prefix, server=cli_server)
    assert deleted.returncode == 0 and f"deleted job {job_id}" in deleted.stdout

    short = run_cli("jobs", "get", job_id[:5], server=cli_server)
    assert short.returncode == 2 and "too short: give at least 6 characters" in short.stderr
    gone = run_cli("jobs", "get", prefix, server=cli_server)
    assert gone.returncode == 1 and "NOT_FOUND" in gone.stderr


class ScriptedJobs(job_service_pb2_grpc.JobServiceServicer):
    """ListJobs in pages of two over fixed jobs; counts calls. GetJob finds them by full id."""

    def __init__(self, jobs: list[job_pb2.Job]) -> None:
        self.jobs = jobs
        self.list_calls = 0

    def ListJobs(self, request: job_service_pb2.ListJobsRequest, context: grpc.ServicerContext) -> object:
        if request.parent_id:  # `jobs get` asking for a job's shards: these jobs have none
            return job_service_pb2.ListJobsResponse()
        self.list_calls += 1
        start = int(request.page_token or 0)
        page = self.jobs[start : start + 2]
        token = str(start + 2) if start + 2 < len(self.jobs) else ""
        return job_service_pb2.ListJobsResponse(jobs=page, next_page_token=token)

    def GetJob(self, request: job_service_pb2.GetJobRequest, context: grpc.ServicerContext) -> object:
        for job in self.jobs:
            if job.id == request.job_id:
                return job_service_pb2.GetJobResponse(job=job)
        context.abort(grpc.StatusCode.NOT_FOUND, f"job {request.job_id!r} not found")


@pytest.fixture
def scripted_jobs() -> Iterator[tuple[str, ScriptedJobs]]:
    jobs = [
        job_pb2.Job(id=p.ljust(32, "0"), state=job_pb2.JOB_STATE_SUCCEEDED, scan=scan_pb2.ScanSpec(path=f"/m/{i}"))
        for i, p in enumerate(["aaaaaa", "bbbbbb", "cccccc", "dddd010", "dddd011"])
    ]
    servicer = ScriptedJobs(jobs)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    job_service_pb2_grpc.add_JobServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}", servicer
    server.stop(0)


def test_an_ambiguous_prefix_lists_every_match_found_across_pages(scripted_jobs: tuple[str, ScriptedJobs]) -> None:
    address, servicer = scripted_jobs
    short = run_cli("jobs", "get", "dddd0", "--server", address, server=None)
    assert short.returncode == 2 and "too short" in short.stderr and servicer.list_calls == 0

    ambiguous = run_cli("jobs", "get", "dddd01", "--server", address, server=None)
    assert ambiguous.returncode == 2, ambiguous.stderr
    assert "job id prefix 'dddd01' matches 2 jobs; give more characters of one of them:" in ambiguous.stderr
    assert servicer.jobs[3].id in ambiguous.stderr and servicer.jobs[4].id in ambiguous.stderr
    assert servicer.jobs[2].id not in ambiguous.stderr
    assert servicer.list_calls == 3  # every page was read: five jobs, two per page

    servicer.list_calls = 0
    full = run_cli("jobs", "get", servicer.jobs[1].id, "--json", "--server", address, server=None)
    assert full.returncode == 0 and json.loads(full.stdout)["id"] == servicer.jobs[1].id
    assert servicer.list_calls == 0  # a full id is used as it is

    unique = run_cli("jobs", "get", "cccccc", "--json", "--server", address, server=None)
    assert json.loads(unique.stdout)["id"] == servicer.jobs[2].id
    none = run_cli("jobs", "get", "dddd00", "--server", address, server=None)
    assert none.returncode == 1 and "NOT_FOUND" in none.stderr  # no match: the server has the last word


@pytest.mark.parametrize("zone", ["America/New_York", "Asia/Kolkata"])
def test_job_times_are_local_with_their_zone(
    cli_server: ServerProcess, library_dir: Path, templates: Templates, zone: str
) -> None:
    make_library(library_dir, templates, 2)
    job_id = detached(cli_server, library_dir)
    run_cli("jobs", "watch", job_id, "--json", server=cli_server)
    raw = json.loads(run_cli("jobs", "get", job_id, "--json", server=cli_server).stdout)
    created_utc = datetime.datetime.fromisoformat(raw["createTime"].replace("Z", "+00:00"))
    assert created_utc.utcoffset() == datetime.timedelta(0)  # JSON stays UTC (proto3 JSON, ISO 8601)
    local = created_utc.astimezone(ZoneInfo(zone))
    env = {"TZ": zone}

    piped = run_cli("jobs", "get", job_id, server=cli_server, env=env).stdout
    assert f"created:    {local.replace(microsecond=0).isoformat()}" in piped  # ISO 8601 with the zone's offset
    listed = run_cli("jobs", "list", "--limit", "0", server=cli_server, env=env).stdout
    assert f"{job_id}\tsucceeded\t100%\t{local.replace(microsecond=0).isoformat()}\t" in listed

    with Tmux(reelscan_cmd("jobs", "get", job_id, server=cli_server), width=100, env=cli_env(env)) as term:
        _, screen = term.wait_exit()
    assert f"created:    {local:%Y-%m-%d %H:%M:%S} {local.tzname()}" in screen, screen
    assert local.tzname() in {"EST", "EDT", "IST"}


def test_jobs_list_on_an_80_column_terminal_shows_whole_ids_and_local_times(
    cli_server: ServerProcess, library_dir: Path, templates: Templates
) -> None:
    make_library(library_dir, templates, 2)
    job_id = detached(cli_server, library_dir)
    run_cli("jobs", "watch", job_id, "--json", server=cli_server)
    env = cli_env({"TZ": "Asia/Kolkata"})
    with Tmux(reelscan_cmd("jobs", "list", "--limit", "5", server=cli_server), width=80, env=env) as term:
        code, screen = term.wait_exit()
    assert code == 0
    row = next(line for line in screen.splitlines() if line.startswith(job_id))  # the id whole, at the left
    assert re.search(r"\b\d\d:\d\d:\d\d IST\b", row) or re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d IST", row), row
    assert max(len(line) for line in screen.splitlines()) <= 80


def test_settings_errors_name_the_variable_or_flag(library_dir: Path) -> None:
    bad_env = run_cli("jobs", "list", server=None, env={"REELSCAN_SERVER": "media-box:http"})
    assert bad_env.returncode == 2
    assert "REELSCAN_SERVER='media-box:http': the port must be a number" in bad_env.stderr
    bad_flag = run_cli("jobs", "list", "--server", "media-box:http", server=None)
    assert bad_flag.returncode == 2 and "--server='media-box:http'" in bad_flag.stderr
    bad_timeout = run_cli("jobs", "list", server=None, env={"REELSCAN_RPC_TIMEOUT": "soon"})
    assert bad_timeout.returncode == 2 and "REELSCAN_RPC_TIMEOUT='soon': not a number" in bad_timeout.stderr
    missing_ca = run_cli("jobs", "list", server=None, env={"REELSCAN_TLS_CA": str(library_dir / "ca.pem")})
    assert missing_ca.returncode == 2 and f"REELSCAN_TLS_CA='{library_dir}/ca.pem'" in missing_ca.stderr


def test_a_bare_host_means_port_50051() -> None:
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", 50051)) == 0:
            pytest.skip("something listens on 127.0.0.1:50051 on this machine")
    result = run_cli("jobs", "list", "--server", "127.0.0.1", server=None)
    assert result.returncode == 1
    assert "cannot reach the server at 127.0.0.1:50051" in result.stderr


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts TCP connections and never says a word (a hung server, a wrong service)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield listener.getsockname()[1]


def test_a_server_that_does_not_answer_is_reported_within_seconds(silent_port: int, library_dir: Path) -> None:
    server = f"127.0.0.1:{silent_port}"
    for args in (
        ("jobs", "list"),
        ("jobs", "get", "f" * 32),
        ("jobs", "watch", "f" * 32),
        ("scan", str(library_dir)),
        ("videos", "list", "--connect-timeout", "2"),
    ):
        started = time.monotonic()
        result = run_cli(*args, "--server", server, server=None, timeout=60)
        took = time.monotonic() - started
        assert result.returncode == 1, (args, result.stderr)
        assert f"no answer from {server} within" in result.stderr, (args, result.stderr)
        assert took < (5 if "--connect-timeout" in args else 12), (args, took)
        assert "reconnecting" not in result.stdout + result.stderr


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_watching_a_job_on_a_dead_server_fails_fast_without_a_reconnect_note() -> None:
    server = f"127.0.0.1:{closed_port()}"
    started = time.monotonic()
    result = run_cli("jobs", "watch", "f" * 32, "--server", server, server=None)
    assert result.returncode == 1 and f"cannot reach the server at {server}" in result.stderr
    assert "reconnecting" not in result.stdout + result.stderr and "pending" not in result.stdout
    assert time.monotonic() - started < 10


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[ServerProcess]:
    args = ["--probe-delay", str(PROBE_DELAY), "--probe-workers", str(PROBE_WORKERS)]
    with ServerProcess(tmp_path / "own.db", allow_roots=[tmp_path], extra_args=args) as server:
        yield server


def test_watch_says_it_is_reconnecting_for_a_job_it_has_seen(
    own_server: ServerProcess, tmp_path: Path, templates: Templates
) -> None:
    make_library(tmp_path / "lib", templates, 300)
    job_id = detached(own_server, tmp_path / "lib")
    proc = subprocess.Popen(
        reelscan_cmd("jobs", "watch", job_id[:10], "--progress-interval", "0.05", server=own_server),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        env=cli_env(),
    )
    assert proc.stdout is not None
    lines = [proc.stdout.readline()]
    while "running" not in lines[-1]:
        lines.append(proc.stdout.readline())
    own_server.restart()  # SIGTERM: the job is handed back as PENDING and runs again after the restart
    rest, _ = proc.communicate(timeout=90)
    out = "".join(lines) + rest
    assert proc.returncode == 0, out
    assert "connection lost (" in out and f"reconnecting to follow job {job_id}..." in out
    assert "reconnected" in out and "succeeded" in out


def test_ctrl_c_in_jobs_watch_says_how_to_pick_the_job_up_again(
    cli_server: ServerProcess, library_dir: Path, templates: Templates
) -> None:
    make_library(library_dir, templates, 400)
    job_id = detached(cli_server, library_dir)
    proc = subprocess.Popen(
        reelscan_cmd("jobs", "watch", job_id, "--progress-interval", "0.05", server=cli_server),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=cli_env(),
    )
    assert proc.stdout is not None
    proc.stdout.readline()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert f"job still running: reelscan jobs watch {job_id} --server {cli_server.address}" in err
    # A scan someone else started: Ctrl-C stops following, with the same hint.
    follower = subprocess.Popen(
        reelscan_cmd("scan", str(library_dir), server=cli_server),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=cli_env(),
    )
    assert follower.stdout is not None
    assert "already running" in follower.stdout.readline()
    follower.send_signal(signal.SIGINT)
    _, err = follower.communicate(timeout=30)
    assert follower.returncode == 130 and f"job still running: reelscan jobs watch {job_id}" in err
    run_cli("jobs", "cancel", job_id, server=cli_server)


def test_usage_errors_for_empty_arguments(cli_server: ServerProcess) -> None:
    empty = run_cli("scan", "", server=cli_server)
    assert empty.returncode == 2 and "PATH is empty" in empty.stderr
    blank = run_cli("scan", "   ", server=cli_server)
    assert blank.returncode == 2 and "PATH is empty" in blank.stderr
    assert run_cli("videos", "get", "", server=cli_server).returncode == 2
    assert run_cli("videos", "list", "--prefix", "", server=cli_server).returncode == 2


def test_a_scan_that_found_nothing_says_which_extensions_it_looked_for(
    cli_server: ServerProcess, library_dir: Path
) -> None:
    (library_dir / "notes.txt").write_text("not a video")
    result = run_cli("scan", str(library_dir), server=cli_server)
    assert result.returncode == 0
    assert "no video files found: looked for .mp4, .mkv, .mov," in result.stdout
    only = run_cli("scan", str(library_dir), "--extensions", "mkv,webm", "--force", server=cli_server)
    assert "no video files found: looked for .mkv, .webm; pass --extensions LIST" in only.stdout


def test_videos_search_takes_several_words(cli_server: ServerProcess, library_dir: Path, templates: Templates) -> None:
    make_library(library_dir, templates, 2, hd=["holiday-2023.mp4", "holiday-2024.mp4"])
    assert run_cli("scan", str(library_dir), server=cli_server).returncode == 0
    found = run_cli("videos", "search", "holiday", "2023", "--prefix", str(library_dir), server=cli_server)
    assert found.returncode == 0, found.stderr
    assert "holiday-2023.mp4" in found.stdout and "holiday-2024.mp4" not in found.stdout


def test_jobs_list_watch_prints_each_change_on_a_pipe(
    cli_server: ServerProcess, library_dir: Path, templates: Templates
) -> None:
    make_library(library_dir, templates, 150)
    proc = subprocess.Popen(
        reelscan_cmd("jobs", "list", "--watch", "--interval", "0.1", "--limit", "5", server=cli_server),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=cli_env(),
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().split("\t")[:2] == ["ID", "STATE"]
    job_id = detached(cli_server, library_dir)
    states: list[str] = []
    rows: list[str] = []
    reader_done = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            cells = line.rstrip("\n").split("\t")
            if cells[0] == job_id:
                states.append(cells[1])
                rows.append(line)
                if cells[1] == "succeeded":
                    break
        reader_done.set()

    threading.Thread(target=read, daemon=True).start()
    assert reader_done.wait(60), states
    proc.send_signal(signal.SIGINT)
    assert proc.wait(30) == 130
    assert states[-1] == "succeeded" and "running" in states
    assert all(a != b for a, b in itertools.pairwise(rows))  # a line per change, never the same twice


def test_jobs_list_watch_redraws_the_table_on_a_terminal(
    cli_server: ServerProcess, library_dir: Path, templates: Templates
) -> None:
    make_library(library_dir, templates, 150)
    command = reelscan_cmd("jobs", "list", "--watch", "--interval", "0.1", "--limit", "3", server=cli_server)
    with Tmux(command, width=160, height=20, env=cli_env()) as term:
        term.wait_for(lambda s: "newest first" in s, timeout=30)
        job_id = detached(cli_server, library_dir)
        term.wait_for(lambda s: re.search(rf"^{job_id}\s+running", s, re.MULTILINE) is not None, timeout=30)
        screen = term.wait_for(lambda s: re.search(rf"^{job_id}\s+succeeded\s+100%", s, re.MULTILINE) is not None)
        assert screen.count("newest first") == 1  # redrawn in place, not appended
        term.send_keys("C-c")
        code, _ = term.wait_exit(30)
    assert code == 130
