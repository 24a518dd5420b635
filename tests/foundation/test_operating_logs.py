"""The server's log as an operator reads it (`--log-format json`, parsed line by line from a real server process):
one line per job event with its fields, refused requests at INFO with their code and no traceback, probe worker
trouble at WARNING, per-file probe failures at DEBUG, no third-party chatter, the start-up configuration line, and
no secrets."""

from __future__ import annotations

import io
import json
import logging
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from reelscan.service.telemetry import logs
from reelscan.v1 import job_pb2, job_service_pb2, job_service_pb2_grpc, scan_service_pb2, scan_service_pb2_grpc
from tests.helpers.postgres import PASSWORD
from tests.helpers.server import ServerProcess
from tests.media import copy_clip, make_clip, make_random_bytes

TERMINAL = (job_pb2.JOB_STATE_SUCCEEDED, job_pb2.JOB_STATE_FAILED, job_pb2.JOB_STATE_CANCELLED)
PROBE_TIMEOUT_S = 3


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("media")
    clip = make_clip(root / "clip.mp4").path
    for name in ("ok", "cancel", "timeout", "hung", "crash"):
        (root / name).mkdir()
    for i in range(3):
        copy_clip(clip, root / "ok" / f"clip{i}.mp4")
    make_random_bytes(root / "ok" / "broken.mp4")
    copy_clip(clip, root / "cancel" / "0-reelscan-hang.mp4")
    copy_clip(clip, root / "timeout" / "0-reelscan-hang.mp4")
    copy_clip(clip, root / "hung" / "0-first.mp4")
    copy_clip(clip, root / "hung" / "1-reelscan-hang.mp4")
    copy_clip(clip, root / "crash" / "0-reelscan-crash.mp4")
    clip.unlink()
    return root


@pytest.fixture(scope="module")
def server(media: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    args = [
        "--log-format",
        "json",
        "--log-level",
        "DEBUG",
        "--fault-injection",
        "--probe-workers",
        "1",
        "--probe-timeout",
        str(PROBE_TIMEOUT_S),
    ]
    with ServerProcess(tmp_path_factory.mktemp("db") / "reelscan.db", allow_roots=[media], extra_args=args) as proc:
        yield proc


def records(server: ServerProcess) -> list[dict[str, Any]]:
    """Every log line as a JSON object (each line must be one)."""
    out = []
    lines = list(server.log_lines)
    for line in lines:
        assert line.startswith("{"), f"not a JSON line: {line!r} in\n{''.join(lines)}"
        record = json.loads(line)
        assert {"time", "level", "logger", "message"} <= record.keys(), line
        out.append(record)
    return out


def job_events(server: ServerProcess, job_id: str) -> list[dict[str, Any]]:
    return [r for r in records(server) if str(r.get("event", "")).startswith("job_") and r.get("job_id") == job_id]


def eventually(check: Any, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


class Client:
    def __init__(self, address: str) -> None:
        self.channel = grpc.insecure_channel(address)
        self.scans = scan_service_pb2_grpc.ScanServiceStub(self.channel)
        self.jobs = job_service_pb2_grpc.JobServiceStub(self.channel)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.channel.close()

    def start(self, path: Path, timeout_s: int = 0) -> job_pb2.Job:
        request = scan_service_pb2.StartScanRequest(path=str(path))
        if timeout_s:
            request.timeout.CopyFrom(duration_pb2.Duration(seconds=timeout_s))
        response: scan_service_pb2.StartScanResponse = self.scans.StartScan(request, timeout=10)
        return response.job

    def get(self, job_id: str) -> job_pb2.Job:
        response = self.jobs.GetJob(job_service_pb2.GetJobRequest(job_id=job_id), timeout=10)
        return response.job

    def wait(self, job_id: str) -> job_pb2.Job:
        request = job_service_pb2.WaitJobRequest(job_id=job_id, timeout=duration_pb2.Duration(seconds=30))
        response = self.jobs.WaitJob(request, timeout=40)
        assert response.done, response.job
        return response.job


@pytest.fixture
def client(server: ServerProcess) -> Iterator[Client]:
    with Client(server.address) as c:
        yield c


def assert_peer(value: Any) -> None:
    assert isinstance(value, str) and value.startswith(("ipv4:127.0.0.1:", "ipv6:[::1]:")), value


def _finished(server: ServerProcess, job_id: str) -> list[dict[str, Any]]:
    return eventually(lambda: [e for e in job_events(server, job_id) if e["event"] == "job_finished"])


def test_a_scan_logs_accepted_started_finished_with_their_fields(
    server: ServerProcess, client: Client, media: Path
) -> None:
    job = client.start(media / "ok")
    done = client.wait(job.id)
    assert done.state == job_pb2.JOB_STATE_SUCCEEDED and done.result.probed == 4 and done.result.failed == 1
    _finished(server, job.id)
    accepted, started, finished = job_events(server, job.id)  # exactly these three

    assert accepted["event"] == "job_accepted" and accepted["level"] == "INFO"
    assert (accepted["kind"], accepted["root"], accepted["existing"]) == ("SCAN", str(media / "ok"), False)
    assert_peer(accepted["peer"])
    assert job.id in accepted["message"] and str(media / "ok") in accepted["message"]

    assert started["event"] == "job_started"
    assert started["replica"] == done.replica_id and started["replica_address"] == done.replica_address
    assert started["replica"] and done.replica_id in started["message"]

    assert finished["event"] == "job_finished" and finished["level"] == "INFO"
    assert (finished["state"], finished["previous_state"]) == ("SUCCEEDED", "RUNNING")
    assert finished["result"]["probed"] == 4 and finished["result"]["failed"] == 1
    assert finished["result"]["discovered"] == done.result.discovered == 4
    server_seconds = (done.finish_time.ToNanoseconds() - done.start_time.ToNanoseconds()) / 1e9
    assert finished["duration_s"] == pytest.approx(server_seconds, abs=0.01)
    assert finished["files_per_s"] == pytest.approx(4 / finished["duration_s"], rel=0.03)
    assert "SUCCEEDED" in finished["message"] and "files/s" in finished["message"]

    # The broken file: a DEBUG line of its own, with the path and why.
    failures = [r for r in records(server) if r.get("event") == "probe_failed" and r["path"].endswith("broken.mp4")]
    assert len(failures) == 1 and failures[0]["level"] == "DEBUG"
    assert failures[0]["kind"] == "probe_failed" and failures[0]["reason"]


def test_a_cancel_logs_who_cancelled_and_the_end(server: ServerProcess, client: Client, media: Path) -> None:
    job = client.start(media / "cancel")
    assert eventually(lambda: client.get(job.id).progress_detail.stage == job_pb2.JOB_STAGE_PROBING)
    time.sleep(0.3)  # the hanging probe is in its worker (started by the scan test before: up and idle)
    cancelled = client.jobs.CancelJob(job_service_pb2.CancelJobRequest(job_id=job.id), timeout=10).job
    assert cancelled.cancel_requested
    assert client.wait(job.id).state == job_pb2.JOB_STATE_CANCELLED
    _finished(server, job.id)
    accepted, started, cancel, finished = job_events(server, job.id)
    assert (accepted["event"], started["event"]) == ("job_accepted", "job_started")
    assert cancel["event"] == "job_cancel_requested" and cancel["state"] == "RUNNING"
    assert_peer(cancel["peer"])
    assert cancel["peer"] in cancel["message"]
    assert (finished["event"], finished["state"], finished["level"]) == ("job_finished", "CANCELLED", "INFO")
    # The probe in flight was killed with its worker: logged, but as routine (INFO), naming the file.
    killed = eventually(
        lambda: [
            r
            for r in records(server)
            if r.get("event") == "probe_worker_replaced" and r["file"].endswith("cancel/0-reelscan-hang.mp4")
        ]
    )
    assert killed and killed[0]["cause"] == "cancel" and killed[0]["level"] == "INFO"


def test_a_timeout_logs_the_timed_out_end(server: ServerProcess, client: Client, media: Path) -> None:
    job = client.start(media / "timeout", timeout_s=1)
    assert client.wait(job.id).state == job_pb2.JOB_STATE_TIMED_OUT
    _finished(server, job.id)
    accepted, started, finished = job_events(server, job.id)
    assert accepted["event"] == "job_accepted" and accepted["timeout_s"] == 1
    assert started["event"] == "job_started"
    assert (finished["event"], finished["state"], finished["level"]) == ("job_finished", "TIMED_OUT", "WARNING")
    assert finished["error_code"] == grpc.StatusCode.DEADLINE_EXCEEDED.value[0]
    assert "timeout of 1s" in finished["error_message"]
    assert 1.0 <= finished["duration_s"] < 1.0 + PROBE_TIMEOUT_S


def test_a_refused_start_scan_logs_one_info_line_with_its_code_and_no_job(
    server: ServerProcess, client: Client, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    before = len(server.log_lines)
    with pytest.raises(grpc.RpcError) as info:
        client.start(outside)
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    eventually(lambda: any('"rpc_refused"' in line for line in server.log_lines[before:]))
    time.sleep(0.2)  # anything else this call logged
    lines = [json.loads(line) for line in server.log_lines[before:]]
    refused = [r for r in lines if r.get("event") == "rpc_refused"]
    assert len(refused) == 1, lines
    (line,) = refused
    assert (line["level"], line["code"], line["method"]) == (
        "INFO",
        "PERMISSION_DENIED",
        "reelscan.v1.ScanService/StartScan",
    )
    assert_peer(line["peer"])
    assert str(outside) in line["detail"] and "PERMISSION_DENIED" in line["message"]
    assert not [r for r in lines if str(r.get("event", "")).startswith("job_")]
    assert "Traceback" not in server.log


def test_probe_timeouts_and_worker_crashes_are_warnings_naming_file_pid_and_signal(
    server: ServerProcess, client: Client, media: Path
) -> None:
    hung = client.start(media / "hung")
    crash = client.start(media / "crash")
    assert client.wait(hung.id).state == job_pb2.JOB_STATE_SUCCEEDED
    assert client.wait(crash.id).result.failed == 1

    def replaced(name: str) -> list[dict[str, Any]]:
        # A worker probes several files at once (--probe-concurrency): one that dies on its own names every file
        # it was running ("a; b"), since any of them may have killed it.
        return [
            r
            for r in records(server)
            if r.get("event") == "probe_worker_replaced" and any(f.endswith(name) for f in r["file"].split("; "))
        ]

    # (The hung file may also be named by the crash below, if it was running beside the crashing file.)
    (timeout,) = eventually(lambda: [r for r in replaced("hung/1-reelscan-hang.mp4") if r["cause"] == "timeout"])
    assert (timeout["level"], timeout["cause"], timeout["signal"]) == ("WARNING", "timeout", 9)
    assert isinstance(timeout["pid"], int) and str(timeout["pid"]) in timeout["message"]
    assert "signal 9" in timeout["message"] and "reelscan-hang" in timeout["message"]
    # A crash is blamed on the file only when a second, fresh worker dies on it too, with that file alone on it:
    # two replacements, the second naming that file alone.
    crashes = eventually(
        lambda: len(replaced("crash/0-reelscan-crash.mp4")) == 2 and replaced("crash/0-reelscan-crash.mp4")
    )
    assert [(c["level"], c["cause"], c["exit_status"]) for c in crashes] == [("WARNING", "crash", 70)] * 2
    assert crashes[0]["pid"] != crashes[1]["pid"]
    assert crashes[1]["file"].endswith("crash/0-reelscan-crash.mp4") and "; " not in crashes[1]["file"]


def test_health_list_is_unimplemented_without_a_traceback(server: ServerProcess) -> None:
    with grpc.insecure_channel(server.address) as channel:
        with pytest.raises(grpc.RpcError) as info:
            health_pb2_grpc.HealthStub(channel).List(health_pb2.HealthListRequest(), timeout=5)
        assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
        with pytest.raises(grpc.RpcError) as unknown:
            channel.unary_unary("/reelscan.v1.NoSuchService/Nothing")(b"", timeout=5)
        assert unknown.value.code() == grpc.StatusCode.UNIMPLEMENTED
    refused = eventually(
        lambda: [r for r in records(server) if r.get("event") == "rpc_refused" and r["method"].endswith("Health/List")]
    )
    assert refused and refused[0]["code"] == "UNIMPLEMENTED" and refused[0]["level"] == "INFO"
    assert not [r for r in records(server) if r["level"] in ("ERROR", "CRITICAL")], server.log
    assert "Traceback" not in server.log


def test_debug_keeps_third_party_chatter_out_and_the_start_up_line_says_the_configuration(
    server: ServerProcess, media: Path
) -> None:
    lines = records(server)
    assert [r for r in lines if r["level"] == "DEBUG" and r["logger"].startswith("reelscan")]  # DEBUG is on ...
    assert not [r for r in lines if not r["logger"].startswith("reelscan") and r["level"] == "DEBUG"]  # ... for us
    (config,) = [r for r in lines if r.get("event") == "server_config"]
    assert config["listen"] == server.address
    assert config["database"].endswith("reelscan.db") and config["backend"] == "sqlite"
    assert config["allow_roots"] == [str(media)]
    assert (config["prober"], config["probe_workers"], config["probe_timeout_s"]) == ("pyav", 1, PROBE_TIMEOUT_S)
    assert (config["probe_concurrency"], config["shard_threshold"], config["shard_size"]) == (8, 5000, 2000)
    assert (config["max_concurrent_jobs"], config["max_queued_jobs"], config["max_watchers"]) == (2, 100, 10_000)
    assert (config["tls"], config["auth"], config["metrics"]) == ("off", "off", "off")
    assert config["log_level"] == "DEBUG" and config["log_format"] == "json"


def test_log_levels_name_third_party_loggers_and_reject_nonsense() -> None:
    levels = logs.parse_log_levels("DEBUG,aiosqlite=DEBUG,psycopg=warning")
    assert levels.level == logging.DEBUG
    assert dict(levels.loggers) == {"aiosqlite": logging.DEBUG, "psycopg": logging.WARNING}
    assert logs.parse_log_levels("aiosqlite=DEBUG").level == logging.INFO
    for bad in ("LOUD", "DEBUG,INFO", "=DEBUG", "aiosqlite=LOUD"):
        with pytest.raises(ValueError):
            logs.parse_log_levels(bad)


def test_text_lines_escape_control_characters_of_the_message() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.TextFormatter())
    logger = logging.getLogger("reelscan.test.escape")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("probe of %s failed", "evil\n2026-12-01 00:00:00 ERROR forged\x1b[31m.mp4")
    finally:
        logger.removeHandler(handler)
    text = stream.getvalue()
    assert text.count("\n") == 1 and "\\n2026-12-01" in text and "\\x1b" in text


def test_secrets_never_reach_the_log(tmp_path: Path, media: Path) -> None:
    token = "s3cret-token-value-4242"
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")
    args = ["--log-format", "json", "--log-level", "DEBUG", "--auth-token-file", str(token_file)]
    with ServerProcess(tmp_path / "reelscan.db", allow_roots=[media], extra_args=args) as proc:
        with grpc.insecure_channel(proc.address) as channel:
            stub = scan_service_pb2_grpc.ScanServiceStub(channel)
            request = scan_service_pb2.StartScanRequest(path=str(media / "ok"))
            job = stub.StartScan(request, metadata=[("authorization", f"Bearer {token}")], timeout=10).job
            with pytest.raises(grpc.RpcError) as info:
                stub.StartScan(request, metadata=[("authorization", f"Bearer {token}x")], timeout=10)
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
            jobs = job_service_pb2_grpc.JobServiceStub(channel)
            wait = job_service_pb2.WaitJobRequest(job_id=job.id, timeout=duration_pb2.Duration(seconds=30))
            jobs.WaitJob(wait, metadata=[("authorization", f"Bearer {token}")], timeout=40)
        refused = eventually(lambda: [r for r in records(proc) if r.get("event") == "rpc_refused"])
        assert refused[0]["code"] == "UNAUTHENTICATED" and refused[0]["method"].endswith("StartScan")
        (config,) = [r for r in records(proc) if r.get("event") == "server_config"]
        assert config["auth"] == "bearer token"
    assert token not in proc.log


def test_the_database_password_never_reaches_the_log(pg_url: str, media: Path) -> None:
    assert PASSWORD in pg_url
    args = ["--log-format", "json", "--log-level", "DEBUG", "--metrics-listen", "127.0.0.1:0"]
    with ServerProcess(pg_url, allow_roots=[media], extra_args=args) as proc, Client(proc.address) as client:
        client.wait(client.start(media / "ok").id)
        with urllib.request.urlopen(proc.metrics_url, timeout=10) as response:
            scraped = response.read().decode()
        (config,) = [r for r in records(proc) if r.get("event") == "server_config"]
        assert config["backend"] == "postgresql" and pg_url.rsplit("/", 1)[1] in config["database"]
        # psycopg.pool logs every connection it lends at INFO: none of that (or any third-party line below
        # WARNING) reaches an operator's log, even at DEBUG
        chatter = [
            r for r in records(proc) if not r["logger"].startswith("reelscan") and r["level"] in ("DEBUG", "INFO")
        ]
        assert not chatter, chatter[:5]
    assert PASSWORD not in proc.log
    assert PASSWORD not in scraped


def test_a_crash_a_shutdown_and_retention_log_recovered_requeued_and_pruned(tmp_path: Path) -> None:
    media = tmp_path / "media"
    copy_clip(make_clip(tmp_path / "clip.mp4").path, media / "h" / "0-reelscan-hang.mp4")
    args = ["--log-format", "json", "--fault-injection", "--probe-workers", "1", "--probe-timeout", "2"]
    server = ServerProcess(tmp_path / "reelscan.db", allow_roots=[media], extra_args=[*args, "--job-retention", "2"])
    server.start()
    try:
        with Client(server.address) as client:
            job = client.start(media / "h")
            assert eventually(lambda: client.get(job.id).progress_detail.stage == job_pb2.JOB_STAGE_PROBING)
        server.kill()  # a crash while its probe hangs
        server.start()  # holds the SQLite lock: the dead server's job is recovered at once
        assert eventually(lambda: len([e for e in job_events(server, job.id) if e["event"] == "job_started"]) == 2)
        server.stop()  # SIGTERM while the probe hangs again: handed back
        server.start()
        assert eventually(lambda: [e for e in job_events(server, job.id) if e["event"] == "job_pruned"], timeout=30)
    finally:
        server.stop()
        server.kill()
    events = job_events(server, job.id)
    assert [e["event"] for e in events] == [
        "job_accepted",
        "job_started",
        "job_recovered",
        "job_started",
        "job_requeued",
        "job_started",
        "job_finished",
        "job_pruned",
    ]
    recovered, requeued, finished, pruned = events[2], events[4], events[6], events[7]
    assert (recovered["level"], recovered["state"]) == ("WARNING", "PENDING")
    assert requeued["level"] == "INFO" and "shutting down" in requeued["message"]
    assert (finished["state"], finished["result"]["failed"]) == ("SUCCEEDED", 1)  # the probe timed out
    assert (pruned["level"], pruned["state"]) == ("INFO", "SUCCEEDED")
    replicas = {e["replica"] for e in events if e["event"] == "job_started"}
    assert len(replicas) == 3  # a fresh replica id per server start
