"""Prometheus metrics of a real server process (`--metrics-listen`), scraped over HTTP during and after a real scan
and parsed with prometheus_client's own parser: counters move by exactly what happened, histograms have samples,
gauges say what is going on now."""

from __future__ import annotations

import json
import re
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import duration_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from reelscan.v1 import job_pb2, job_service_pb2, job_service_pb2_grpc, scan_service_pb2, scan_service_pb2_grpc
from tests.helpers.server import ServerProcess
from tests.media import copy_clip, make_clip, make_random_bytes

CLIPS = 20
PROBE_DELAY_S = 0.05
Labels = tuple[tuple[str, str], ...]
Samples = dict[tuple[str, Labels], float]


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("media")
    clip = make_clip(root / "source.mp4").path
    (root / "scan").mkdir()
    for i in range(CLIPS):
        copy_clip(clip, root / "scan" / f"clip{i:02d}.mp4")
    make_random_bytes(root / "scan" / "broken.mp4")
    clip.unlink()
    return root


@pytest.fixture(scope="module")
def server(media: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    args = [
        "--metrics-listen",
        "127.0.0.1:0",
        "--probe-workers",
        "1",
        "--probe-delay",
        str(PROBE_DELAY_S),
        "--max-queued-jobs",
        "7",
    ]
    with ServerProcess(tmp_path_factory.mktemp("db") / "reelscan.db", allow_roots=[media], extra_args=args) as proc:
        yield proc


def scrape(server: ServerProcess) -> Samples:
    """Every sample of a /metrics scrape, by (name, sorted labels); the text must parse."""
    with urllib.request.urlopen(server.metrics_url, timeout=10) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def rpcs(method: str, code: str) -> dict[str, str]:
    return {"method": method, "code": code}


GET_JOB = "reelscan.v1.JobService/GetJob"
START_SCAN = "reelscan.v1.ScanService/StartScan"
WATCH_JOB = "reelscan.v1.JobService/WatchJob"
HEALTH_CHECK = "grpc.health.v1.Health/Check"


def test_a_scan_and_a_known_sequence_of_calls_move_the_metrics_by_exactly_that(
    server: ServerProcess, media: Path, tmp_path: Path
) -> None:
    before = scrape(server)
    with grpc.insecure_channel(server.address) as channel:
        scans = scan_service_pb2_grpc.ScanServiceStub(channel)
        jobs = job_service_pb2_grpc.JobServiceStub(channel)
        # Errors first: 3 NOT_FOUND, 2 INVALID_ARGUMENT, 1 PERMISSION_DENIED, and one health check that is fine.
        for code, request in [
            *[(grpc.StatusCode.NOT_FOUND, job_service_pb2.GetJobRequest(job_id="no-such-job"))] * 3,
            *[(grpc.StatusCode.INVALID_ARGUMENT, job_service_pb2.GetJobRequest(job_id=""))] * 2,
        ]:
            with pytest.raises(grpc.RpcError) as info:
                jobs.GetJob(request, timeout=10)
            assert info.value.code() == code
        with pytest.raises(grpc.RpcError) as denied:
            scans.StartScan(scan_service_pb2.StartScanRequest(path=str(tmp_path)), timeout=10)
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
        health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)

        job = scans.StartScan(scan_service_pb2.StartScanRequest(path=str(media / "scan")), timeout=10).job
        stream = jobs.WatchJob(job_service_pb2.WatchJobRequest(job_id=job.id), timeout=60)
        updates = [next(stream)]  # the stream is open: one watcher
        # During the scan: it runs here, files are being probed, the watcher is counted.
        deadline = time.monotonic() + 30
        while True:
            during = scrape(server)
            probed = delta(before, during, "reelscan_files_probed_total")
            if 0 < probed < CLIPS or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        assert 0 < probed < CLIPS + 1, "no scrape caught the scan half-way"
        assert value(during, "reelscan_jobs_running") == 1
        assert value(during, "reelscan_watchers_open") == 1
        for update in stream:
            updates.append(update)
        final = updates[-1].job
        assert final.state == job_pb2.JOB_STATE_SUCCEEDED and final.result.probed == CLIPS + 1
        gets = 4
        for _ in range(gets):
            jobs.GetJob(job_service_pb2.GetJobRequest(job_id=job.id), timeout=10)

    after = scrape(server)
    assert delta(before, after, "reelscan_files_probed_total") == final.result.probed
    assert delta(before, after, "reelscan_probe_failures_total", kind="probe_failed") == final.result.failed == 1
    assert delta(before, after, "reelscan_files_walked_total") == final.result.discovered
    assert delta(before, after, "reelscan_probe_duration_seconds_count") == final.result.probed
    assert delta(before, after, "reelscan_probe_duration_seconds_sum") >= PROBE_DELAY_S * final.result.probed
    assert delta(before, after, "reelscan_probe_duration_seconds_bucket", le="+Inf") == final.result.probed

    # RPCs by method and code: exactly the calls above.
    assert delta(before, after, "reelscan_rpc_requests_total", **rpcs(GET_JOB, "NOT_FOUND")) == 3
    assert delta(before, after, "reelscan_rpc_requests_total", **rpcs(GET_JOB, "INVALID_ARGUMENT")) == 2
    assert delta(before, after, "reelscan_rpc_requests_total", **rpcs(GET_JOB, "OK")) == gets
    assert delta(before, after, "reelscan_rpc_requests_total", **rpcs(START_SCAN, "PERMISSION_DENIED")) == 1
    assert delta(before, after, "reelscan_rpc_requests_total", **rpcs(START_SCAN, "OK")) == 1
    assert delta(before, after, "reelscan_rpc_requests_total", **rpcs(WATCH_JOB, "OK")) == 1
    assert delta(before, after, "reelscan_rpc_requests_total", **rpcs(HEALTH_CHECK, "OK")) == 1
    assert delta(before, after, "reelscan_rpc_duration_seconds_count", method=GET_JOB) == 3 + 2 + gets
    assert value(after, "reelscan_rpc_duration_seconds_count", method=WATCH_JOB) == 0  # streams are not timed

    # The job's life, the watcher's messages, the database writes.
    assert delta(before, after, "reelscan_jobs_accepted_total", kind="SCAN") == 1
    transitions = {"from": "PENDING", "to": "RUNNING"}
    assert delta(before, after, "reelscan_job_transitions_total", **transitions) == 1
    transitions = {"from": "RUNNING", "to": "SUCCEEDED"}
    assert delta(before, after, "reelscan_job_transitions_total", **transitions) == 1
    assert delta(before, after, "reelscan_job_duration_seconds_count", kind="SCAN", state="SUCCEEDED") == 1
    assert delta(before, after, "reelscan_watch_messages_sent_total") == len(updates)
    assert value(after, "reelscan_watchers_open") == 0
    assert value(after, "reelscan_jobs_running") == 0
    library = {"backend": "sqlite", "store": "library", "operation": "write_batch"}
    assert delta(before, after, "reelscan_db_write_duration_seconds_count", **library) >= 1
    saves = {"backend": "sqlite", "store": "jobs", "operation": "save"}
    assert delta(before, after, "reelscan_db_write_duration_seconds_count", **saves) >= 1

    # Jobs by state come from the database, counted every few seconds.
    deadline = time.monotonic() + 15
    while value(after, "reelscan_jobs", state="SUCCEEDED") != 1 and time.monotonic() < deadline:
        time.sleep(0.2)
        after = scrape(server)
    assert value(after, "reelscan_jobs", state="SUCCEEDED") == 1
    assert value(after, "reelscan_jobs", state="PENDING") == value(after, "reelscan_job_queue_depth") == 0
    assert value(after, "reelscan_job_queue_limit") == 7
    # The process collector.
    assert value(after, "process_resident_memory_bytes") > 0
    assert value(after, "process_cpu_seconds_total") > 0


def test_a_cancel_and_a_worker_timeout_are_counted(tmp_path: Path) -> None:
    media = tmp_path / "media"
    clip = make_clip(tmp_path / "source.mp4").path
    copy_clip(clip, media / "warm" / "clip.mp4")
    copy_clip(clip, media / "hung" / "0-reelscan-hang.mp4")
    copy_clip(clip, media / "cancel" / "0-reelscan-hang.mp4")
    args = ["--metrics-listen", "127.0.0.1:0", "--fault-injection", "--probe-workers", "1", "--probe-timeout", "3"]
    with ServerProcess(tmp_path / "reelscan.db", allow_roots=[media], extra_args=args) as server:
        with grpc.insecure_channel(server.address) as channel:
            scans = scan_service_pb2_grpc.ScanServiceStub(channel)
            jobs = job_service_pb2_grpc.JobServiceStub(channel)

            def run(root: str) -> job_pb2.Job:
                job = scans.StartScan(scan_service_pb2.StartScanRequest(path=str(media / root)), timeout=10).job
                wait = job_service_pb2.WaitJobRequest(job_id=job.id, timeout=duration_pb2.Duration(seconds=30))
                done: job_pb2.Job = jobs.WaitJob(wait, timeout=40).job
                return done

            run("warm")  # the probe worker is up and idle: the next probe goes to it at once
            before = scrape(server)
            job = scans.StartScan(scan_service_pb2.StartScanRequest(path=str(media / "cancel")), timeout=10).job
            deadline = time.monotonic() + 20
            get = job_service_pb2.GetJobRequest(job_id=job.id)
            while jobs.GetJob(get, timeout=10).job.progress_detail.stage != job_pb2.JOB_STAGE_PROBING:
                assert time.monotonic() < deadline, "the scan never got to probing"
                time.sleep(0.02)
            time.sleep(0.3)  # the hanging probe is in its worker (it would time out after 3 s)
            jobs.CancelJob(job_service_pb2.CancelJobRequest(job_id=job.id), timeout=10)
            wait = job_service_pb2.WaitJobRequest(job_id=job.id, timeout=duration_pb2.Duration(seconds=30))
            assert jobs.WaitJob(wait, timeout=40).job.state == job_pb2.JOB_STATE_CANCELLED
            assert run("hung").result.failed == 1  # the probe timed out
        deadline = time.monotonic() + 10
        while True:
            after = scrape(server)
            restarts = {
                c: delta(before, after, "reelscan_probe_worker_restarts_total", cause=c) for c in ("timeout", "cancel")
            }
            if restarts == {"timeout": 1, "cancel": 1} or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    assert restarts == {"timeout": 1, "cancel": 1}
    assert delta(before, after, "reelscan_probe_failures_total", kind="probe_timeout") == 1
    assert delta(before, after, "reelscan_job_transitions_total", **{"from": "RUNNING", "to": "CANCELLED"}) == 1
    assert delta(before, after, "reelscan_rpc_requests_total", **rpcs("reelscan.v1.JobService/CancelJob", "OK")) == 1


def test_shards_are_counted_apart_so_the_queue_depth_is_what_the_bound_counts(tmp_path: Path) -> None:
    """A sharded scan's pending shards are not queued jobs (--max-queued-jobs leaves them out): the queue depth and
    reelscan_jobs show the one scan a user started, reelscan_shards its shards."""
    clip = make_clip(tmp_path / "source.mp4").path
    files, shard_size = 40, 5
    for i in range(files):
        copy_clip(clip, tmp_path / "media" / f"clip{i:02d}.mp4")
    # One worker at 0.25 s a file: the 8 shards run one after another for about 10 s, longer than two counts
    # (every 5 s), so a count sees shards still waiting.
    args = ["--metrics-listen", "127.0.0.1:0", "--probe-workers", "1", "--probe-delay", "0.25"]
    args += ["--shard-size", str(shard_size), "--max-queued-jobs", "1"]
    with ServerProcess(tmp_path / "reelscan.db", allow_roots=[tmp_path / "media"], extra_args=args) as server:
        with grpc.insecure_channel(server.address) as channel:
            scans = scan_service_pb2_grpc.ScanServiceStub(channel)
            jobs = job_service_pb2_grpc.JobServiceStub(channel)
            request = scan_service_pb2.StartScanRequest(
                path=str(tmp_path / "media"), sharding=scan_service_pb2.SHARDING_ALWAYS
            )
            job = scans.StartScan(request, timeout=10).job
            deadline = time.monotonic() + 20
            while value(counted := scrape(server), "reelscan_shards", state="PENDING") == 0:
                assert time.monotonic() < deadline, "no count saw a waiting shard"
                time.sleep(0.2)
            assert value(counted, "reelscan_job_queue_depth") == value(counted, "reelscan_jobs", state="PENDING") == 0
            assert value(counted, "reelscan_jobs", state="RUNNING") == 1  # the parent
            shards = sum(value(counted, "reelscan_shards", state=s) for s in ("PENDING", "RUNNING", "SUCCEEDED"))
            assert shards == files // shard_size
            wait = job_service_pb2.WaitJobRequest(job_id=job.id, timeout=duration_pb2.Duration(seconds=60))
            assert jobs.WaitJob(wait, timeout=70).job.state == job_pb2.JOB_STATE_SUCCEEDED
        deadline = time.monotonic() + 15
        while value(after := scrape(server), "reelscan_jobs", state="SUCCEEDED") == 0:
            assert time.monotonic() < deadline, "the count never saw the scan end"
            time.sleep(0.2)
    assert value(after, "reelscan_shards", state="SUCCEEDED") == files // shard_size
    assert value(after, "reelscan_shards", state="PENDING") == value(after, "reelscan_job_queue_depth") == 0


def test_metrics_are_off_unless_asked_for(tmp_path: Path) -> None:
    with ServerProcess(tmp_path / "reelscan.db") as server:
        assert "metrics=off" in server.log
        with pytest.raises(AssertionError):
            server.metrics_url  # noqa: B018


README = Path(__file__).resolve().parents[2] / "README.md"


def _section(title: str) -> str:
    text = README.read_text()
    start = text.index(f"\n### {title}\n")
    end = text.index("\n## ", start)
    nxt = text.find("\n### ", start + 1)
    return text[start : end if nxt == -1 else min(end, nxt)]


def test_the_readme_lists_every_metric_the_server_exposes(server: ServerProcess) -> None:
    section = _section("Metrics")
    documented = {name for name in re.findall(r"^\| `(reelscan_[a-z_]+)`", section, re.M)}
    with urllib.request.urlopen(server.metrics_url, timeout=10) as response:
        families = {f.name for f in text_string_to_metric_families(response.read().decode())}
    exposed = {name + "_total" if name + "_total" in documented else name for name in families}
    ours = {name for name in exposed if name.startswith("reelscan_")}
    assert ours == documented
    assert {"process_resident_memory_bytes", "process_cpu_seconds"} <= families
    # The alert rules and examples name only metrics that exist.
    mentioned = set(re.findall(r"\b(reelscan_[a-z_]+?)(?:_bucket|_count|_sum)?\b", section))
    assert mentioned <= documented, mentioned - documented


def test_the_readme_log_sample_is_what_the_server_writes() -> None:
    section = _section("Logs")
    sample = section.split("```json\n", 1)[1].split("```", 1)[0]
    lines = [json.loads(line) for line in sample.splitlines()]
    assert [line["event"] for line in lines] == ["job_accepted", "job_started", "job_finished", "rpc_refused"]
    assert all({"time", "level", "logger", "message"} <= line.keys() for line in lines)
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", section, re.M))
    assert {line["event"] for line in lines} <= documented
