"""Scans that run at the same time share the probe workers: a scan started while another one keeps them busy gets
its files probed within a few of the other's, not after the requests the other had queued in every worker.

A real server process with one probe worker slowed to 0.1 s a file (as slow storage would be), real clips, a real
channel; what is observed is each scan's `result.probed` through GetJob.
"""

from __future__ import annotations

import time
from pathlib import Path

import grpc

from reelscan.v1 import job_pb2, job_service_pb2, scan_service_pb2, scan_service_pb2_grpc
from reelscan.v1 import job_service_pb2_grpc as jobs_grpc
from tests.helpers.server import ServerProcess
from tests.media import copy_clip, make_clip

BIG, SMALL = 80, 3
PROBE_DELAY_S = 0.1
# The small scan's 3 files, each behind at most the couple of requests the worker has queued (about 0.1 s of
# probing) and taking turns with the big scan's: a handful of the big scan's files (7 measured; the bound leaves
# room for the small scan's own walk on a loaded machine). Queuing a fixed 32 requests made it wait for 32 or more
# (37 measured).
MOST_PROBED_MEANWHILE = 16


def test_a_scan_started_during_another_is_probed_without_waiting_for_the_others_queue(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "source.mp4").path
    media = tmp_path / "media"
    for i in range(BIG):
        copy_clip(clip, media / "big" / f"clip{i:02d}.mp4")
    for i in range(SMALL):
        copy_clip(clip, media / "small" / f"clip{i}.mp4")
    args = ["--probe-workers", "1", "--probe-delay", str(PROBE_DELAY_S), "--max-concurrent-jobs", "2"]
    with (
        ServerProcess(tmp_path / "reelscan.db", allow_roots=[media], extra_args=args) as server,
        grpc.insecure_channel(server.address) as channel,
    ):
        scans = scan_service_pb2_grpc.ScanServiceStub(channel)
        jobs = jobs_grpc.JobServiceStub(channel)

        def start(name: str) -> str:
            request = scan_service_pb2.StartScanRequest(path=str(media / name))
            return str(scans.StartScan(request, timeout=10).job.id)

        def get(job_id: str) -> job_pb2.Job:
            job: job_pb2.Job = jobs.GetJob(job_service_pb2.GetJobRequest(job_id=job_id), timeout=10).job
            return job

        big = start("big")
        deadline = time.monotonic() + 30
        while get(big).result.probed < 5:  # probing for a while: the worker's queue is as deep as it gets
            assert time.monotonic() < deadline, "the big scan never got to probing"
            time.sleep(0.05)
        small = start("small")
        before = get(big).result.probed
        wait = job_service_pb2.WaitJobRequest(job_id=small)
        wait.timeout.seconds = 60
        done = jobs.WaitJob(wait, timeout=70).job
        during = get(big)
        assert done.state == job_pb2.JOB_STATE_SUCCEEDED and done.result.probed == SMALL, done
        assert during.state == job_pb2.JOB_STATE_RUNNING, "the big scan ended first: nothing was compared"
        meanwhile = during.result.probed - before
        print(f"\nthe big scan probed {meanwhile} files while the small one ran")
        assert meanwhile <= MOST_PROBED_MEANWHILE, (before, during.result.probed)
        jobs.CancelJob(job_service_pb2.CancelJobRequest(job_id=big), timeout=10)
