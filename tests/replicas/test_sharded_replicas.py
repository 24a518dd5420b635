"""One big scan spread over three replicas (issue 12, "Tests"): shards run everywhere, the parent's progress and
result are real, cancel reaches every shard, and a coordinator killed with `kill -9` is taken over.

Real server processes on one throwaway PostgreSQL, real clips (hard links of one clip), real channels; each test
watches the parent from a replica other than the one coordinating it.
"""

from __future__ import annotations

import collections
import os
import time
from pathlib import Path

from reelscan.v1 import job_pb2, library_pb2, scan_service_pb2
from tests.replicas.conftest import TERMINAL, MakeReplicas, Replicas, Watch, connect, poll, state_name
from tests.replicas.test_replicas import comparable

SUCCEEDED = job_pb2.JOB_STATE_SUCCEEDED
RUNNING = job_pb2.JOB_STATE_RUNNING


def make_tree(root: Path, clip: Path, files: int, per_directory: int) -> Path:
    """`files` hard links of `clip` in sub-directories of `per_directory` files (plus a few in the root itself)."""
    root.mkdir(parents=True)
    for i in range(files):
        directory = root if i < 7 else root / f"d{(i - 7) // per_directory:03d}"
        if i == 7 or (i > 7 and (i - 7) % per_directory == 0):
            directory.mkdir()
        os.link(clip, directory / f"clip-{i:05d}.mp4")
    return root


def counts(job: job_pb2.Job) -> dict[str, int]:
    return {field.name: value for field, value in job.result.ListFields()}


async def test_a_big_scan_runs_on_all_three_replicas_and_equals_an_unsharded_scan(
    make_replicas: MakeReplicas, media: Path, clip: Path
) -> None:
    files = 30_000
    root = make_tree(media / "big", clip, files, per_directory=1_300)
    replicas = make_replicas(probe_delay_s=0.0, lease_ttl_s=10.0)
    async with connect(replicas) as apis:
        started = time.monotonic()
        parent = (await apis[0].start_scan(root)).job  # 30,000 files to probe: past the default threshold
        watch = Watch(apis[2], parent.id, seconds=240)
        updates = await watch.done()
        elapsed = time.monotonic() - started
        final = updates[-1]
        assert final.state == SUCCEEDED, f"{state_name(final.state)} {final.job.error}"
        shards = await apis[1].list_jobs(parent_id=parent.id)

        fractions = [u.progress for u in updates]
        assert fractions == sorted(fractions) and fractions[-1] == 1.0, "the parent's progress went backwards"
        probing = [u for u in updates if u.progress_detail.stage == job_pb2.JOB_STAGE_PROBING]
        done = [u.progress_detail.items_done for u in probing]
        assert sum(1 for d in done if 0 < d < files) >= 5, "progress did not move smoothly"
        assert done == sorted(done), f"the parent's items_done went backwards: {done}"
        # Real over all shards: every update's progress is the files its shards probed over all files to probe
        # (the same snapshot's counts), not a value that stops moving while shards end and others start.
        off = [(u.progress, u.result.probed) for u in probing if abs(u.progress - u.result.probed / files) > 0.01]
        assert not off, f"progress is not files probed / files to probe: {off[:5]}"

        assert len(shards) == 15 and all(s.state == SUCCEEDED for s in shards)  # 30,000 / --shard-size 2000
        probed_by = collections.Counter[int]()
        for shard in shards:
            probed_by[replicas.index_of(shard.replica_address)] += shard.result.probed
        assert sorted(probed_by) == [0, 1, 2], f"not every replica probed a share: {probed_by}"
        assert sum(probed_by.values()) == files  # every file probed once, by one shard
        sharded_videos = {v.path: comparable(v) for v in await apis[1].videos(root)}

    reference = make_replicas(count=1, probe_delay_s=0.0, extra_args=["--probe-workers", "2"])
    async with connect(reference) as (clean,):
        single = (await clean.start_scan(root, sharding=scan_service_pb2.SHARDING_NEVER)).job
        single = await clean.wait(single.id, seconds=240)
        assert single.state == SUCCEEDED and await clean.list_jobs(parent_id=single.id) == []
        assert counts(final.job) == counts(single)
        expected = {v.path: comparable(v) for v in await clean.videos(root)}
    assert len(expected) == files and sorted(sharded_videos) == sorted(expected)
    for path, video in expected.items():
        assert sharded_videos[path] == video, f"{path}: {sharded_videos[path]} != unsharded {video}"
    print(f"30,000 files over 3 replicas: {elapsed:.1f}s; probed per replica {dict(probed_by)}")


async def test_cancel_of_the_parent_stops_every_shard_on_every_replica_within_a_second(
    make_replicas: MakeReplicas, media: Path, clip: Path
) -> None:
    root = make_tree(media / "cancelled", clip, 3_000, per_directory=100)
    replicas = make_replicas(probe_delay_s=0.5, extra_args=["--shard-size", "100"])
    async with connect(replicas) as apis:
        parent = (await apis[0].start_scan(root, sharding=scan_service_pb2.SHARDING_ALWAYS)).job

        def running_everywhere(shards: list[job_pb2.Job]) -> bool:
            return {replicas.index_of(s.replica_address) for s in shards if s.state == RUNNING} == {0, 1, 2}

        await poll(lambda: apis[1].list_jobs(parent_id=parent.id), running_everywhere, 60)
        cancelled = time.monotonic()
        await apis[1].cancel(parent.id)
        shards = await poll(
            lambda: apis[2].list_jobs(parent_id=parent.id), lambda shards: all(s.state in TERMINAL for s in shards), 10
        )
        stopped_s = time.monotonic() - cancelled
        final = await apis[2].wait(parent.id)
    assert final.state == job_pb2.JOB_STATE_CANCELLED
    assert {s.state for s in shards} == {job_pb2.JOB_STATE_CANCELLED}
    print(f"cancel of a parent with {len(shards)} shards on 3 replicas: every shard ended {stopped_s:.2f}s later")
    assert stopped_s < 1.0, f"shards still active {stopped_s:.2f}s after the cancel"


async def test_kill_9_of_the_coordinator_the_parent_is_taken_over_and_ends_with_the_same_result(
    make_replicas: MakeReplicas, media: Path, clip: Path
) -> None:
    files = 3_000
    root = make_tree(media / "coordinator", clip, files, per_directory=250)
    replicas: Replicas = make_replicas(probe_delay_s=0.01, extra_args=["--shard-size", "300"])
    async with connect(replicas) as apis:
        parent = (await apis[0].start_scan(root, sharding=scan_service_pb2.SHARDING_ALWAYS)).job
        before = await poll(
            lambda: apis[1].list_jobs(parent_id=parent.id), lambda shards: any(s.state == SUCCEEDED for s in shards), 60
        )
        coordinator = await apis[1].get(parent.id)
        a = replicas.index_of(coordinator.replica_address)
        b, c = (i for i in range(3) if i != a)
        watch = Watch(apis[b], parent.id, seconds=120)
        replicas.servers[a].kill()
        killed = time.monotonic()
        taken = await watch.until(lambda u: u.state == RUNNING and u.job.replica_id != coordinator.replica_id, 20)
        takeover_s = watch.times[watch.updates.index(taken)] - killed
        final = (await watch.done())[-1]
        shards = await apis[c].list_jobs(parent_id=parent.id)
        videos = await apis[c].videos(root)

    assert final.state == SUCCEEDED, f"{state_name(final.state)} {final.job.error}"
    assert final.job.replica_address in {replicas.servers[i].address for i in (b, c)}
    # Adopted, not created again: the same shards, each ended once, every file counted once.
    assert sorted(s.id for s in shards) == sorted(s.id for s in before) and len(shards) == 10
    assert all(s.state == SUCCEEDED for s in shards)
    assert sum(s.result.probed for s in shards) == files
    result = final.job.result
    assert (result.discovered, result.new, result.probed, result.failed) == (files, files, files, 0), result
    assert len(videos) == files and all(v.status == library_pb2.VIDEO_STATUS_OK for v in videos)
    print(f"kill -9 of the coordinator: parent taken over {takeover_s:.2f}s later, {len(shards)} shards adopted")
