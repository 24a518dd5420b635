"""Crash recovery: the server is killed with SIGKILL at random points of real scans and restarted on the same
database, again and again. Nothing committed may be lost, nothing may be duplicated, the file must stay sound, no
job may stay RUNNING, and in the end the library must be exactly what a clean scan of the same tree gives.

The tree is a few hundred hard links to two tiny clips (plus broken files, and non-video files that make the walk
take a while), scanned with a small --probe-delay so a scan lasts about a second. Between kills the tree changes
(files removed, added and replaced) so that re-runs have new, updated and missing files to deal with. Kill points
come from a seeded RNG (REELSCAN_CRASH_SEED to replay a run) and several strategies: right after a scan starts or
the server comes back (discovery, recovery), in the middle of probing (batched writes every 100 ms), and at the
very end of probing (the last batch, finalizing, marking missing files).

Documented behaviour checked after each restart (service/jobs/engine.py): a job interrupted by a crash is
re-queued PENDING and runs again; one interrupted MAX_CRASH_RECOVERIES (3) times ends FAILED with ABORTED.
"""

from __future__ import annotations

import collections
import os
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from reelscan.v1 import job_pb2
from tests.helpers.server import ServerProcess
from tests.media import make_random_bytes, make_zero_byte
from tests.reliability.support import (
    ACTIVE,
    Client,
    db_job_states,
    db_video_rows,
    integrity_problems,
    library_snapshot,
    record,
    wal_uncommitted_frames,
)

SEED = int(os.environ.get("REELSCAN_CRASH_SEED", "20240607"))
MAX_CRASH_RECOVERIES = 3  # service/jobs/engine.py
ABORTED = 10  # google.rpc.Code
STAGE_NAMES = {value: name.removeprefix("JOB_STAGE_").lower() for name, value in job_pb2.JobStage.items()}


@dataclass
class Tree:
    """The scanned tree and the changes made to it between kills."""

    root: Path
    clips: dict[str, Path]
    rng: random.Random
    videos: list[Path] = field(default_factory=list)
    made: int = 0

    def _new_video(self, directory: Path) -> None:
        kind = "mkv" if self.made % 4 == 3 else "mp4"
        path = directory / f"v{self.made:05d}.{kind}"
        self.made += 1
        os.link(self.clips[kind], path)
        self.videos.append(path)

    def populate(self, videos: int, others: int) -> None:
        dirs = [self.root / f"dir{i}" / ("deep" if i % 3 == 0 else "") for i in range(10)]
        for d in dirs:
            d.mkdir(parents=True, exist_ok=True)
        for i in range(videos):
            self._new_video(dirs[i % len(dirs)])
        broken = self.root / "broken"
        make_zero_byte(broken / "zero.mp4")
        make_random_bytes(broken / "noise.mkv", seed=3)
        (broken / "text.mp4").write_text("not a video\n" * 20)
        for i in range(others):
            notes = self.root / "notes" / f"n{i % 40:02d}"
            notes.mkdir(parents=True, exist_ok=True)
            (notes / f"note{i:05d}.txt").write_bytes(b"")

    def mutate(self) -> None:
        """Removes, adds and replaces a few files (a replaced file is a new inode with a new mtime)."""
        rng = self.rng
        for path in rng.sample(self.videos, k=min(len(self.videos), rng.randint(0, 6))):
            path.unlink()
            self.videos.remove(path)
        for _ in range(rng.randint(0, 6)):
            self._new_video(self.root / f"dir{rng.randrange(10)}")
        for path in rng.sample(self.videos, k=min(len(self.videos), rng.randint(0, 3))):
            path.unlink()
            shutil.copyfile(self.clips["mkv" if path.suffix == ".mkv" else "mp4"], path)


@dataclass
class Campaign:
    kills: int
    videos: int
    others: int
    probe_delay_s: float


@dataclass
class KillRecord:
    strategy: str
    delay_s: float
    stage: str
    running_in_db: int
    uncommitted_wal_frames: int
    restart_s: float


def server_args(probe_delay_s: float) -> list[str]:
    return ["--probe-delay", str(probe_delay_s), "--probe-workers", "2", "--max-concurrent-jobs", "2"]


def start_scans(client: Client, tree: Tree) -> str:
    """Starts a scan of the whole tree (forced or incremental) and sometimes of one sub-directory as well;
    returns the job id of the whole-tree scan."""
    rng = tree.rng
    job = client.start(tree.root, force=rng.random() < 0.75).job
    if rng.random() < 0.4:
        client.start(tree.root / f"dir{rng.randrange(10)}", force=rng.random() < 0.5)
    return job.id


def wait_for_progress(client: Client, job_id: str, fraction: float, limit_s: float = 10.0) -> None:
    """Polls until the job's published progress reaches `fraction` (of its probing), or it is finalizing or over.
    Progress is published at most every 100 ms, so the kill lands up to that much later."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        job = client.get(job_id)
        detail = job.progress_detail
        if job.state not in ACTIVE or detail.stage == job_pb2.JOB_STAGE_FINALIZING:
            return
        if detail.stage == job_pb2.JOB_STAGE_PROBING and job.progress >= fraction:
            return
        time.sleep(0.003)


def check_after_restart(client: Client, interrupted: dict[str, int], running_in_db: list[str]) -> tuple[int, int]:
    """Every job the crash interrupted is re-queued (and runs again) or, at its third crash, FAILED (ABORTED).
    Returns (re-queued, failed)."""
    requeued = failed = 0
    for job_id in running_in_db:
        job = client.get(job_id)
        if interrupted[job_id] >= MAX_CRASH_RECOVERIES:
            assert job.state == job_pb2.JOB_STATE_FAILED, job
            assert job.error.code == ABORTED and "stopped unexpectedly" in job.error.message, job.error
            failed += 1
        else:
            # Re-queued: pending or running again, or already done again if little was left to do.
            assert job.state in (*ACTIVE, job_pb2.JOB_STATE_SUCCEEDED), job
            requeued += 1
    return requeued, failed


def run_campaign(tmp_path: Path, clips: dict[str, Path], campaign: Campaign) -> None:
    rng = random.Random(SEED)
    root = tmp_path / "media"
    tree = Tree(root, clips, rng)
    tree.populate(campaign.videos, campaign.others)
    db = tmp_path / "crashed.db"
    server = ServerProcess(db, allow_roots=[root], extra_args=server_args(campaign.probe_delay_s))
    server.start()
    kills: list[KillRecord] = []
    interrupted: collections.Counter[str] = collections.Counter()
    requeued_total = failed_total = 0
    try:
        for _ in range(campaign.kills):
            with Client(server.address) as client:
                active = client.list_jobs(ACTIVE)
                if not active or rng.random() < 0.5:
                    tree.mutate()
                    target = start_scans(client, tree)
                else:
                    target = active[-1].id  # the oldest active job: a re-run of an interrupted scan
                strategy = rng.choices(["early", "probing", "late"], weights=[1, 2, 1])[0]
                began = time.monotonic()
                if strategy == "early":
                    time.sleep(rng.uniform(0, 0.03))
                elif strategy == "probing":
                    wait_for_progress(client, target, rng.uniform(0.02, 0.9))
                else:
                    wait_for_progress(client, target, 0.97)
                committed = set(db_video_rows(db))  # everything committed so far must survive the kill
                before = client.get(target)
                delay = time.monotonic() - began
                server.kill()
            wal_frames = wal_uncommitted_frames(db)  # before anything opens the file and recovers the WAL
            problems = integrity_problems(db)
            assert not problems, problems
            lost = committed - set(db_video_rows(db))
            assert not lost, f"committed library rows lost by the crash: {sorted(lost)[:5]}"
            running_in_db = [j for j, s in db_job_states(db).items() if s == job_pb2.JOB_STATE_RUNNING]
            for job_id in running_in_db:
                interrupted[job_id] += 1
            started = time.monotonic()
            server.start()
            restart_s = time.monotonic() - started
            with Client(server.address) as client:
                requeued, failed = check_after_restart(client, interrupted, running_in_db)
                requeued_total += requeued
                failed_total += failed
                if target in running_in_db:
                    assert client.get(target).seq > before.seq, "seq went backwards across the crash"
                if rng.random() < 0.3:  # sometimes let everything finish before the next kill
                    client.wait_all_settled()
                    assert not client.list_jobs(ACTIVE)
            stage = STAGE_NAMES[before.progress_detail.stage] if before.state in ACTIVE else "after-the-end"
            kills.append(KillRecord(strategy, delay, stage, len(running_in_db), wal_frames, restart_s))

        with Client(server.address) as client:
            jobs = client.wait_all_settled()
            assert not client.list_jobs(ACTIVE)
            final = client.scan(root)
            assert final.state == job_pb2.JOB_STATE_SUCCEEDED, final
            crashed_library = library_snapshot(client.videos())
        assert server.stop() == 0
    finally:
        server.kill()

    # The database after all that, read directly with the server stopped.
    problems = integrity_problems(db)
    assert not problems, problems
    states = db_job_states(db)
    assert not [j for j, s in states.items() if s in ACTIVE], "jobs left pending or running"
    crashed_rows = db_video_rows(db)
    on_disk = {str(p) for p in tree.videos}
    for path, (_status, missing) in crashed_rows.items():
        if path.endswith((".mp4", ".mkv")) and "/broken/" not in path:
            assert bool(missing) == (path not in on_disk), f"{path}: missing={missing}, on disk={path in on_disk}"

    # A clean scan of the same tree in a fresh database.
    clean = ServerProcess(tmp_path / "clean.db", allow_roots=[root], extra_args=server_args(0))
    with clean, Client(clean.address) as client:
        assert client.scan(root).state == job_pb2.JOB_STATE_SUCCEEDED
        clean_library = library_snapshot(client.videos())
    clean_rows = db_video_rows(tmp_path / "clean.db")

    assert set(crashed_library) == set(clean_library), (
        f"lost: {sorted(set(clean_library) - set(crashed_library))[:5]}, "
        f"extra: {sorted(set(crashed_library) - set(clean_library))[:5]}"
    )
    different = [p for p in clean_library if crashed_library[p] != clean_library[p]]
    assert not different, f"metadata differs for {len(different)} paths, e.g. {different[0]}"
    present = {p: s for p, (s, m) in crashed_rows.items() if not m}
    assert present == {p: s for p, (s, m) in clean_rows.items()}, "failed/ok rows differ from a clean scan"

    stages = collections.Counter(k.stage for k in kills)
    strategies = collections.Counter(k.strategy for k in kills)
    restarts = sorted(k.restart_s for k in kills)
    label = f"crash recovery ({campaign.kills} kills, seed {SEED})"
    record(f"{label}: kills by stage", dict(stages))
    record(f"{label}: kills by strategy", dict(strategies))
    record(f"{label}: jobs interrupted (RUNNING in the db at the kill)", sum(k.running_in_db for k in kills))
    record(f"{label}: re-queued after restart / FAILED after 3 crashes", f"{requeued_total} / {failed_total}")
    record(f"{label}: kills that left uncommitted WAL frames", sum(k.uncommitted_wal_frames > 0 for k in kills))
    record(
        f"{label}: restart to SERVING (s) median / max",
        f"{restarts[len(restarts) // 2]:.2f} / {restarts[-1]:.2f}",
    )
    record(
        f"{label}: jobs / library rows / videos",
        f"{len(jobs) + 1} / {len(crashed_rows)} / {len(crashed_library)}",
    )


def test_kill_9_at_random_points_loses_nothing(tmp_path: Path, clips: dict[str, Path]) -> None:
    run_campaign(tmp_path, clips, Campaign(kills=5, videos=240, others=1000, probe_delay_s=0.008))


@pytest.mark.slow
def test_kill_9_twenty_times_loses_nothing(tmp_path: Path, clips: dict[str, Path]) -> None:
    run_campaign(tmp_path, clips, Campaign(kills=20, videos=400, others=4000, probe_delay_s=0.008))
