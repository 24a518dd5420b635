"""Shutdown: SIGTERM in the middle of scans (one of them stuck on a probe that hangs) must lose nothing that was
committed, end open WatchJob/WaitJob calls with UNAVAILABLE (clients retry against the next server), exit cleanly
and promptly, and leave the interrupted jobs as documented (service/jobs/engine.py): written back as PENDING, not
counted as crashes, and run again to completion by the next start, with seq and progress still moving forward.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import grpc

from reelscan.v1 import job_pb2, job_service_pb2
from tests.helpers.server import ServerProcess
from tests.media import copy_clip
from tests.reliability.support import (
    Client,
    code_of,
    db_job_states,
    db_video_rows,
    integrity_problems,
    open_db,
    record,
    wait_until,
)

FILES = 100
ROOTS = ("a", "b", "d")  # plain scans; "d" waits in the queue
HANG = "h"  # a scan whose second file hangs its probe


def build(media: Path, clip: Path) -> dict[str, set[str]]:
    files: dict[str, set[str]] = {}
    for name in ROOTS:
        (media / name).mkdir(parents=True)
        files[name] = set()
        for i in range(FILES):
            path = media / name / f"clip{i:02d}.mp4"
            os.link(clip, path)
            files[name].add(str(path))
    files[HANG] = {str(copy_clip(clip, media / HANG / "0-first.mp4"))}
    files[HANG].add(str(copy_clip(clip, media / HANG / "1-reelscan-hang.mp4")))
    return files


def test_sigterm_during_scans_loses_nothing_and_jobs_resume(tmp_path: Path, clips: dict[str, Path]) -> None:
    media = tmp_path / "media"
    files = build(media, clips["mp4"])
    db = tmp_path / "reelscan.db"
    # 0.15 s a file while the signal is due: 100 files take a scan at least 7.5 s even on both workers, so the scans
    # are still running when it comes. The restart probes fast: only the order of events matters there.
    common = ["--fault-injection", "--probe-workers", "2", "--max-concurrent-jobs", "3"]
    server = ServerProcess(
        db, allow_roots=[media], extra_args=[*common, "--probe-delay", "0.15", "--probe-timeout", "120"]
    )
    server.start()
    try:
        with Client(server.address) as client:
            # The hanging scan first, and in flight before the others come: a worker takes requests in arrival
            # order, so a probe queued behind another scan's files would wait for most of that scan.
            jobs = {HANG: client.start(media / HANG).job.id}
            wait_until(lambda: client.get(jobs[HANG]).result.probed >= 1, 30, what="the hanging probe")
            jobs |= {name: client.start(media / name).job.id for name in ROOTS}
            assert client.get(jobs["d"]).state == job_pb2.JOB_STATE_PENDING
            # Some work committed, some still to do, and the hanging probe in flight.
            wait_until(lambda: len(db_video_rows(db)) >= 15, 30, what="videos to be stored")
            before = {name: client.get(job_id) for name, job_id in jobs.items()}
            seen = {n: (job_pb2.JobState.Name(j.state), j.result.probed) for n, j in before.items()}  # type: ignore[arg-type]
            assert all(before[n].state == job_pb2.JOB_STATE_RUNNING for n in (HANG, "a", "b")), (
                seen,
                server.log[-3000:],
            )

            # Calls in flight when the signal comes.
            outcomes: dict[str, grpc.StatusCode] = {}

            def follow() -> None:
                try:
                    for _ in client.jobs.WatchJob(job_service_pb2.WatchJobRequest(job_id=jobs["a"]), timeout=60):
                        pass
                    outcomes["WatchJob"] = grpc.StatusCode.OK
                except grpc.RpcError as error:
                    outcomes["WatchJob"] = code_of(error)

            def wait() -> None:
                try:
                    request = job_service_pb2.WaitJobRequest(job_id=jobs["b"])
                    client.jobs.WaitJob(request, timeout=60)
                    outcomes["WaitJob"] = grpc.StatusCode.OK
                except grpc.RpcError as error:
                    outcomes["WaitJob"] = code_of(error)

            callers = [threading.Thread(target=follow), threading.Thread(target=wait)]
            for thread in callers:
                thread.start()
            time.sleep(0.3)
            committed = set(db_video_rows(db))  # everything committed before the signal
            signalled = time.monotonic()
            server.signal(signal.SIGTERM)
            assert server.proc is not None
            exit_code = server.proc.wait(30)
            shutdown_s = time.monotonic() - signalled
            for thread in callers:
                thread.join(10)
        assert exit_code == 0, server.log[-2000:]
        assert outcomes == {"WatchJob": grpc.StatusCode.UNAVAILABLE, "WaitJob": grpc.StatusCode.UNAVAILABLE}
        assert "Traceback" not in server.log, server.log[-3000:]

        # The database as the stopped server left it.
        assert not integrity_problems(db)
        rows = db_video_rows(db)
        assert committed <= set(rows), f"lost on SIGTERM: {sorted(committed - set(rows))[:5]}"
        states = db_job_states(db)
        assert {states[job_id] for job_id in jobs.values()} == {job_pb2.JOB_STATE_PENDING}
        with open_db(db) as conn:
            recoveries = dict(conn.execute("SELECT id, recoveries FROM jobs").fetchall())
        assert all(recoveries[job_id] == 0 for job_id in jobs.values()), "a clean stop counted as a crash"

        # The next start runs them again, to the end (with a probe timeout the hanging file now fails within).
        server.extra_args = [*common, "--probe-delay", "0.01", "--probe-timeout", "1"]
        server.start()
        with Client(server.address) as client:
            for name, job_id in jobs.items():
                after = client.get(job_id)
                was_running = before[name].state == job_pb2.JOB_STATE_RUNNING
                assert after.seq > before[name].seq if was_running else after.seq >= before[name].seq
                assert after.progress >= before[name].progress
            final = {name: client.wait(job_id, 120) for name, job_id in jobs.items()}
            videos = {v.path for v in client.videos()}
            hang_errors = client.errors(jobs[HANG])
        for name, job in final.items():
            assert job.state == job_pb2.JOB_STATE_SUCCEEDED, (name, job)
            result = job.result
            assert result.discovered == len(files[name])
            assert result.new + result.unchanged + result.failed == result.discovered
        # What the first run stored (by the signal, or while stopping) is not probed again.
        stored = {n: len(files[n] & set(rows)) for n in ROOTS}
        assert {n: final[n].result.unchanged for n in ROOTS} == stored, "the re-run probed stored files again"
        assert videos == set().union(*files.values()) - {str(media / HANG / "1-reelscan-hang.mp4")}
        assert [e.kind for e in hang_errors] == [2]  # SCAN_ERROR_KIND_PROBE_TIMEOUT
        assert server.stop() == 0
    finally:
        server.kill()
    assert not [s for s in db_job_states(db).values() if s in (job_pb2.JOB_STATE_PENDING, job_pb2.JOB_STATE_RUNNING)]
    record("shutdown: SIGTERM to exit with 3 running scans, one probe hung (s)", round(shutdown_s, 2))
    record("shutdown: videos committed before SIGTERM / kept", f"{len(committed)} / {len(committed & set(rows))}")
