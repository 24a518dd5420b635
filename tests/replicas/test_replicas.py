"""Several replicas on one PostgreSQL database, proven by killing things (issue 11, "Tests").

Real server processes (tests/helpers/server.py), a real PostgreSQL (the session's throwaway cluster, or one of its
own where the test stops it), real channels. Each test watches from a replica other than the one that runs the
job, so what it sees went through the database.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime
import itertools
import random
import signal
import time
import uuid
from pathlib import Path
from typing import Any

import grpc
import psycopg
from google.protobuf import duration_pb2
from grpc_health.v1 import health_pb2

from reelscan.v1 import job_pb2, job_service_pb2, library_pb2, scan_service_pb2
from tests.helpers.postgres import PASSWORD, SUPERUSER, PostgresCluster
from tests.replicas.conftest import (
    ACTIVE,
    RECOVERY_SEQ_GAP,
    SERVING,
    TERMINAL,
    Api,
    MakeReplicas,
    Replicas,
    Watch,
    connect,
    make_tree,
    poll,
    state_name,
)

RUNNING = job_pb2.JOB_STATE_RUNNING
SUCCEEDED = job_pb2.JOB_STATE_SUCCEEDED
CANCELLED = job_pb2.JOB_STATE_CANCELLED
# Tests that kill nothing use the default lease: on a loaded machine a stall of a second or two (all processes at
# once, seen here) must not turn into recoveries that these tests would then count as double runs.
CALM_LEASE_TTL_S = 10.0


async def owner_of(api: Api, replicas: Replicas, job_id: str, *, probed: int = 1) -> tuple[int, job_pb2.Job]:
    """Waits until the job runs and has probed `probed` files; returns the index of the replica running it."""
    job = await poll(
        lambda: api.get(job_id), lambda j: j.state == RUNNING and j.result.probed >= probed and bool(j.replica_id), 30
    )
    return replicas.index_of(job.replica_address), job


# ---- 1. exactly once, anywhere -------------------------------------------------------------------------------

ROOTS = 100
FILES_PER_ROOT = 3


async def test_hundred_scans_over_three_replicas_run_exactly_once(
    make_replicas: MakeReplicas, media: Path, clip: Path
) -> None:
    replicas = make_replicas(lease_ttl_s=CALM_LEASE_TTL_S, probe_delay_s=0.02)
    base = media / "hundred"
    roots = [make_tree(base / f"root-{i:03d}", clip, FILES_PER_ROOT) for i in range(ROOTS)]
    dedup_root = make_tree(media / "dedup", clip, 40)
    rng = random.Random(11)
    async with connect(replicas) as apis:
        # Dedup across replicas, while the job runs: the same root on the other two gives the same job.
        first = await apis[0].start_scan(dedup_root)
        again = await asyncio.gather(apis[1].start_scan(dedup_root), apis[2].start_scan(dedup_root))
        assert not first.existing
        for response in again:
            assert response.existing, f"a second StartScan of {dedup_root} on another replica made a new job"
            assert response.job.id == first.job.id
            assert response.job.state in ACTIVE, state_name(response.job.state)

        # Every replica sees the RUNNING jobs; a job must never be RUNNING under two replica ids, on any of them.
        seen_running: dict[str, set[str]] = collections.defaultdict(set)
        stop_polling = asyncio.Event()

        async def poll_running() -> int:
            rounds = 0
            while not stop_polling.is_set():
                views = await asyncio.gather(*(api.list_jobs(RUNNING) for api in apis))
                for view in views:
                    for job in view:
                        seen_running[job.id].add(job.replica_id)
                rounds += 1
                await asyncio.sleep(0.05)
            return rounds

        async def submit_and_watch(root: Path) -> tuple[scan_service_pb2.StartScanResponse, Watch]:
            # Submitted on one random replica, watched at once on another random one (maybe the same).
            response = await rng.choice(apis).start_scan(root)
            return response, Watch(rng.choice(apis), response.job.id, seconds=120)

        poller = asyncio.create_task(poll_running())
        submitted = await asyncio.gather(*(submit_and_watch(root) for root in roots))
        responses = [response for response, _ in submitted]
        watches = [watch for _, watch in submitted]
        assert not any(r.existing for r in responses)
        ids = [r.job.id for r in responses]
        assert len(set(ids)) == ROOTS
        # Dedup while pending: the queue is long now, so this root waits (or runs); either way the same job.
        pending_root = make_tree(media / "dedup-pending", clip, 5)
        queued = await apis[1].start_scan(pending_root)
        queued_again = await apis[2].start_scan(pending_root)
        assert queued_again.existing and queued_again.job.id == queued.job.id
        assert queued_again.job.state in ACTIVE

        finals = [(await w.done())[-1] for w in watches]
        stop_polling.set()
        rounds = await poller
        await apis[0].wait(first.job.id)
        await apis[0].wait(queued.job.id)

        ran_on: collections.Counter[str] = collections.Counter()
        for root, watch, final in zip(roots, watches, finals, strict=True):
            assert final.state == SUCCEEDED, f"{root}: {state_name(final.state)} {final.error}"
            result = final.result
            assert (result.discovered, result.probed, result.new, result.unchanged, result.failed) == (
                FILES_PER_ROOT, FILES_PER_ROOT, FILES_PER_ROOT, 0, 0,
            ), f"{root} was not scanned exactly once: {result}"  # fmt: skip
            assert final.seq < RECOVERY_SEQ_GAP, f"{root}: the job was recovered (seq {final.seq})"
            running_ids = {u.job.replica_id for u in watch.updates if u.state == RUNNING}
            assert len(running_ids) <= 1, f"{root}: RUNNING under several replicas {running_ids}"
            assert final.job.replica_id and running_ids <= {final.job.replica_id}
            assert seen_running[final.job_id] <= {final.job.replica_id}, (
                f"{root}: listed RUNNING under {seen_running[final.job_id]}, finished under {final.job.replica_id}"
            )
            seqs = [u.seq for u in watch.updates]
            assert seqs == sorted(set(seqs)), f"{root}: seq not strictly increasing {seqs}"
            ran_on[final.job.replica_address] += 1
        assert set(ran_on) == {s.address for s in replicas.servers}, f"not every replica ran jobs: {ran_on}"
        assert rounds > 3, "the RUNNING lists were hardly polled"
        watched_running = sum(1 for w in watches if any(u.state == RUNNING for u in w.updates))
        assert watched_running >= ROOTS // 2, f"only {watched_running} watches saw their job RUNNING"

        videos = await apis[2].videos(base)
        per_root = collections.Counter(str(Path(v.path).parent) for v in videos)
        assert per_root == {str(root): FILES_PER_ROOT for root in roots}
        assert len({v.path for v in videos}) == len(videos) == ROOTS * FILES_PER_ROOT
    print(
        f"100 scans: jobs per replica {sorted(ran_on.values())}; {watched_running} watches saw the job RUNNING; "
        f"RUNNING lists polled {rounds} times on each replica"
    )


# ---- 2. watch and read on other replicas ---------------------------------------------------------------------


async def test_job_running_on_one_replica_is_watched_and_read_on_the_others(
    make_replicas: MakeReplicas, media: Path, clip: Path
) -> None:
    files = 30
    replicas = make_replicas(lease_ttl_s=CALM_LEASE_TTL_S, probe_delay_s=0.08)
    root = make_tree(media / "watched", clip, files)
    async with connect(replicas) as apis:
        job = await apis[0].scan(root)
        a, running = await owner_of(apis[0], replicas, job.id)
        b, c = (i for i in range(3) if i != a)
        watch = Watch(apis[b], job.id)
        waited = asyncio.create_task(apis[c].wait(job.id))
        polled: list[job_pb2.Job] = []
        listed: list[job_pb2.Job] = []
        async with asyncio.timeout(60):
            while not polled or polled[-1].state in ACTIVE:
                polled.append(await apis[c].get(job.id))
                listed += [j for j in await apis[c].list_jobs(RUNNING) if j.id == job.id]
                await asyncio.sleep(0.05)
        updates = await watch.done()
        done = await waited

    owner_address = replicas.servers[a].address
    # B's stream: real intermediate progress, strictly increasing seq, counts moving, the terminal state.
    seqs = [u.seq for u in updates]
    assert seqs == sorted(set(seqs)), f"seq not strictly increasing: {seqs}"
    progress = [u.progress for u in updates]
    assert progress == sorted(progress), f"progress went backwards: {progress}"
    intermediate = {p for p in progress if 0 < p < 1}
    assert len(intermediate) >= 5, f"B saw too little of the progress made on A: {progress}"
    probing = [u for u in updates if u.progress_detail.stage == job_pb2.JOB_STAGE_PROBING]
    assert {u.progress_detail.items_total for u in probing} == {files}, probing[-1:]
    done_counts = [u.progress_detail.items_done for u in probing]
    assert done_counts == sorted(done_counts) and len(set(done_counts)) >= 5, done_counts
    assert len({u.result.probed for u in probing}) >= 5
    assert any(u.progress_detail.current_item.startswith(str(root)) for u in probing)
    running_on = {u.job.replica_address for u in updates if u.state == RUNNING}
    assert running_on == {owner_address}, f"B saw it RUNNING on {running_on}, A is {owner_address}"
    final = updates[-1]
    assert final.state == SUCCEEDED and final.progress == 1.0
    assert (final.result.probed, final.result.new) == (files, files)
    assert final.job.replica_id == running.replica_id

    # C: GetJob saw it move, ListJobs listed it RUNNING on A, WaitJob returned the same end.
    fractions = [j.progress for j in polled]
    assert fractions == sorted(fractions)
    assert len({f for f in fractions if 0 < f < 1}) >= 3, fractions
    assert polled[-1].state == SUCCEEDED and polled[-1].seq == final.seq
    assert listed and {j.replica_address for j in listed} == {owner_address}
    assert len({j.result.probed for j in listed}) >= 3, [j.result.probed for j in listed]
    assert done.state == SUCCEEDED and done.seq == final.seq and done.result == final.result


# ---- 3. cancel on another replica ----------------------------------------------------------------------------


async def test_cancel_on_another_replica_stops_the_owner(make_replicas: MakeReplicas, media: Path, clip: Path) -> None:
    files = 60
    replicas = make_replicas(lease_ttl_s=CALM_LEASE_TTL_S, probe_delay_s=0.08)
    root = make_tree(media / "cancelled", clip, files)
    async with connect(replicas) as apis:
        job = await apis[0].scan(root)
        a, _ = await owner_of(apis[0], replicas, job.id, probed=3)
        c = (a + 1) % 3
        watch = Watch(apis[c], job.id)
        await watch.until(lambda u: u.state == RUNNING)
        started = time.monotonic()
        response = await apis[c].cancel(job.id)
        assert response.cancel_requested or response.state == CANCELLED
        cancelled = await watch.until(lambda u: u.state == CANCELLED, seconds=10)
        cancel_s = watch.times[watch.updates.index(cancelled)] - started
        await watch.done()
        # The owner stopped probing: neither its counts nor the library grow any more.
        stored = len(await apis[c].videos(root))
        await asyncio.sleep(1.5)
        later = [await api.get(job.id) for api in apis]
        stored_later = len(await apis[a].videos(root))

    print(f"cancel on replica {c} of a job on replica {a}: CANCELLED seen on {c} after {cancel_s * 1000:.0f} ms")
    assert cancel_s < 1.5, f"CANCELLED took {cancel_s:.2f}s to reach the cancelling replica"
    probed = cancelled.result.probed
    assert 3 <= probed < files, f"cancel did not stop the scan early: {cancelled.result}"
    assert {(j.state, j.seq, j.result.probed) for j in later} == {(CANCELLED, cancelled.seq, probed)}
    assert stored == stored_later == cancelled.result.new, (stored, stored_later, cancelled.result)


# ---- 4. kill -9 of the owner ---------------------------------------------------------------------------------


def comparable(video: library_pb2.Video) -> library_pb2.Video:
    """A video without what depends on when and into which database it was scanned."""
    copy = library_pb2.Video()
    copy.CopyFrom(video)
    for name in ("id", "probe_time", "create_time"):
        copy.ClearField(name)
    return copy


async def assert_library_equals_clean_scan(make_replicas: MakeReplicas, api: Api, root: Path) -> None:
    """ListVideos over `root` equals, field by field, what one replica on a fresh database makes of the tree."""
    reference = make_replicas(count=1, probe_delay_s=0.0)
    async with connect(reference) as (clean,):
        job = await clean.scan(root)
        assert (await clean.wait(job.id)).state == SUCCEEDED
        expected = {v.path: comparable(v) for v in await clean.videos(root)}
    actual = {v.path: comparable(v) for v in await api.videos(root)}
    assert sorted(actual) == sorted(expected)
    for path, video in expected.items():
        assert actual[path] == video, f"{path}: {actual[path]} != clean scan {video}"


async def test_kill_9_of_the_owner_mid_scan_is_recovered_elsewhere(
    make_replicas: MakeReplicas, media: Path, clip: Path
) -> None:
    files = 40
    replicas = make_replicas(probe_delay_s=0.1)
    root = make_tree(media / "killed", clip, files)
    others = [make_tree(media / f"killed-other-{i}", clip, files // 2) for i in range(3)]
    async with connect(replicas) as apis:
        job = await apis[0].scan(root)
        a, running = await owner_of(apis[0], replicas, job.id, probed=5)
        jobs = [job, *[await api.scan(other) for api, other in zip(apis, others, strict=True)]]
        b, c = (i for i in range(3) if i != a)
        watch = Watch(apis[b], job.id)
        await watch.until(lambda u: u.state == RUNNING)
        committed = len(await apis[b].videos(root))
        killed = time.monotonic()
        replicas.servers[a].kill()
        old = running.replica_id
        taken = await watch.until(lambda u: u.state == RUNNING and u.job.replica_id != old, seconds=20)
        takeover_s = watch.times[watch.updates.index(taken)] - killed
        updates = await watch.done()
        final = updates[-1]
        ends = [await apis[c].wait(j.id) for j in jobs]
        # No job stays RUNNING with a dead owner, on either survivor.
        dead = replicas.servers[a].address
        for api in (apis[b], apis[c]):
            stuck = [j for j in await api.list_jobs() if j.state == RUNNING]
            assert not stuck, f"RUNNING after the end: {stuck}"
        assert [state_name(j.state) for j in ends] == ["JOB_STATE_SUCCEEDED"] * len(jobs)
        assert all(j.replica_address != dead for j in ends), [j.replica_address for j in ends]
        await assert_library_equals_clean_scan(make_replicas, apis[c], root)

    print(f"kill -9 of the owner: taken over {takeover_s:.2f}s later (lease TTL {replicas.lease_ttl_s}s)")
    survivors = {replicas.servers[i].address for i in (b, c)}
    assert taken.job.replica_address in survivors, f"taken over by {taken.job.replica_address}, not a survivor"
    # Not before the lease could have expired (a live peer's job is never taken), but soon after it did.
    assert replicas.lease_ttl_s / 2 < takeover_s < replicas.lease_ttl_s + 4, takeover_s
    before = [u for u in updates if u.job.replica_id == old]
    after = updates[len(before) :]
    assert before and all(u.job.replica_id != old for u in after), "an update of the dead owner came after the new"
    jump = after[0].seq - before[-1].seq
    assert jump >= RECOVERY_SEQ_GAP, f"seq moved by {jump}: not recovered under the crash rules"
    assert final.seq < 2 * RECOVERY_SEQ_GAP, f"recovered {final.seq // RECOVERY_SEQ_GAP} times for one crash"
    assert final.state == SUCCEEDED, f"{state_name(final.state)} {final.error}"
    assert final.job.replica_id == taken.job.replica_id
    result = final.result
    assert result.discovered == files and result.new + result.unchanged == files and result.failed == 0, result
    assert result.unchanged >= committed, f"the re-run probed again what the dead owner had stored: {result}"


# ---- 5. SIGTERM of the owner ---------------------------------------------------------------------------------


async def test_sigterm_of_the_owner_hands_the_job_over_at_once(
    make_replicas: MakeReplicas, media: Path, clip: Path
) -> None:
    files = 40
    # A long lease: a handover that waited for it (rather than for the hand-back) could not pass.
    replicas = make_replicas(lease_ttl_s=8.0, probe_delay_s=0.1)
    root = make_tree(media / "handed-over", clip, files)
    async with connect(replicas) as apis:
        job = await apis[0].scan(root)
        a, running = await owner_of(apis[0], replicas, job.id, probed=5)
        b, c = (i for i in range(3) if i != a)
        watch = Watch(apis[b], job.id)
        await watch.until(lambda u: u.state == RUNNING)
        polled: list[job_pb2.Job] = []

        async def poll_c() -> None:
            while True:
                polled.append(await apis[c].get(job.id))
                await asyncio.sleep(0.005)

        poller = asyncio.create_task(poll_c())
        stopped = time.monotonic()
        replicas.servers[a].signal(signal.SIGTERM)
        old = running.replica_id
        taken = await watch.until(lambda u: u.state == RUNNING and u.job.replica_id != old, seconds=6)
        handover_s = watch.times[watch.updates.index(taken)] - stopped
        poller.cancel()
        exit_code = await asyncio.to_thread(replicas.servers[a].proc.wait, 20)  # type: ignore[union-attr]
        updates = await watch.done()

    pending_seen = any(j.state == job_pb2.JOB_STATE_PENDING for j in polled)
    print(
        f"SIGTERM of the owner: RUNNING on another replica {handover_s * 1000:.0f} ms later "
        f"(lease TTL {replicas.lease_ttl_s}s); PENDING seen in between by polling: {pending_seen}"
    )
    assert exit_code == 0, replicas.servers[a].log
    assert handover_s < 1.5, f"handover took {handover_s:.2f}s: it waited for something (the lease?)"
    survivors = {replicas.servers[i].address for i in (b, c)}
    assert taken.job.replica_address in survivors
    before = [u for u in updates if u.job.replica_id == old]
    after = updates[len(before) :]
    assert before and all(u.job.replica_id != old for u in after)
    assert after[0].seq - before[-1].seq < RECOVERY_SEQ_GAP, "the job was recovered as crashed, not handed back"
    final = updates[-1]
    assert final.state == SUCCEEDED, f"{state_name(final.state)} {final.error}"
    result = final.result
    assert result.discovered == files and result.new + result.unchanged == files and result.failed == 0, result


# ---- 6. PostgreSQL restarts mid-scan -------------------------------------------------------------------------

OUTAGE_S = 5.0


async def test_postgres_stopped_mid_scan_and_restarted(
    make_replicas: MakeReplicas, own_cluster: PostgresCluster, media: Path, clip: Path
) -> None:
    files = 40
    url = own_cluster.create_database("outage")
    replicas = make_replicas(url=url, probe_delay_s=0.1)
    roots = [make_tree(media / f"outage-{i}", clip, files) for i in range(4)]
    health: list[list[tuple[float, int | None]]] = [[] for _ in replicas.servers]
    async with connect(replicas) as apis:
        jobs = [await apis[i % 3].scan(root) for i, root in enumerate(roots)]
        await poll(lambda: apis[0].get(jobs[0].id), lambda j: j.result.probed >= 5, 30)
        before = {v.path for root in roots for v in await apis[1].videos(root)}
        assert before, "nothing was stored before the outage"

        async def watch_health(i: int) -> None:
            while True:
                try:
                    status: int | None = await apis[i].health_status()
                except grpc.aio.AioRpcError:
                    status = None
                health[i].append((time.monotonic(), status))
                await asyncio.sleep(0.05)

        monitors = [asyncio.create_task(watch_health(i)) for i in range(3)]
        down = time.monotonic()
        await asyncio.to_thread(own_cluster.stop)
        stopped = time.monotonic()
        await asyncio.sleep(OUTAGE_S - (stopped - down))
        await asyncio.to_thread(own_cluster.start)
        up = time.monotonic()

        async def serving_again(api: Api) -> float:
            await poll(api.health_status, lambda s: s == SERVING, 30)
            return time.monotonic() - up

        serving_after = await asyncio.gather(*(serving_again(api) for api in apis))
        for task in monitors:
            task.cancel()

        async def end_of(job: job_pb2.Job) -> job_pb2.Job:
            # WaitJob on each replica in turn until the job is done (any may still be settling after the outage).
            async with asyncio.timeout(90):
                for api in itertools.cycle(apis):
                    with contextlib.suppress(grpc.aio.AioRpcError):
                        response = await api.jobs.WaitJob(
                            job_service_pb2.WaitJobRequest(job_id=job.id, timeout=duration_pb2.Duration(seconds=5)),
                            timeout=15,
                        )
                        if response.done:
                            return response.job
                    await asyncio.sleep(0.1)
            raise AssertionError("unreachable")

        ends = [await end_of(job) for job in jobs]
        after = {v.path for root in roots for v in await apis[2].videos(root)}

    print(
        f"PostgreSQL down {up - down:.1f}s: health SERVING again {', '.join(f'{s:.2f}' for s in serving_after)}s "
        f"after it was back; jobs ended {[state_name(j.state) for j in ends]}, "
        f"{len(before)} videos stored before, {len(after)} after"
    )
    for i, samples in enumerate(health):
        during = [s for t, s in samples if stopped + 1.0 <= t <= up]
        assert during and all(s != SERVING for s in during), f"replica {i} said SERVING with the database down"
        assert health_pb2.HealthCheckResponse.NOT_SERVING in during, f"replica {i}: {set(during)}"
    lost = before - after
    assert not lost, f"{len(lost)} committed videos lost across the restart: {sorted(lost)[:5]}"
    assert all(j.state in TERMINAL for j in ends), [state_name(j.state) for j in ends]
    for job, end in zip(jobs, ends, strict=True):
        assert end.state == SUCCEEDED, f"{job.id}: {state_name(end.state)} {end.error}"
        # One outage, at most one crash recovery: each one counts toward the limit after which a job is failed
        # as "what crashes the server" (and a job claimed for a dead owner sits idle until recovered again).
        assert end.seq < 2 * RECOVERY_SEQ_GAP, f"{job.id} was recovered {end.seq // RECOVERY_SEQ_GAP} times"
        assert end.result.discovered == files and end.result.new + end.result.unchanged == files, end.result
    assert after == {str(root / f"clip-{i:03d}.mp4") for root in roots for i in range(files)}


# ---- 7. a replica cut off from the database ------------------------------------------------------------------

# Every update of a job row, with the application_name of the session that wrote it and the database's clock: the
# database's own record of who wrote what, when (a replica's caches cannot hide a late write from it).
AUDIT_SQL = """
CREATE TABLE test_audit (n bigserial PRIMARY KEY, job_id text, seq bigint, state smallint, owner text, epoch bigint,
                         app text, at double precision);
CREATE FUNCTION test_audit_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO test_audit (job_id, seq, state, owner, epoch, app, at)
  VALUES (NEW.id, NEW.seq, NEW.state, NEW.owner, NEW.epoch, current_setting('application_name'),
          extract(epoch from clock_timestamp()));
  RETURN NEW;
END $$;
CREATE TRIGGER test_audit AFTER INSERT OR UPDATE ON jobs FOR EACH ROW EXECUTE FUNCTION test_audit_row();
"""


# The same for the library: who wrote which file's row, when (library writes are fenced on the job's claim too).
LIBRARY_AUDIT_SQL = """
CREATE TABLE test_library_audit (n bigserial PRIMARY KEY, path text, app text, at double precision);
CREATE FUNCTION test_library_audit_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO test_library_audit (path, app, at)
  VALUES (NEW.path, current_setting('application_name'), extract(epoch from clock_timestamp()));
  RETURN NEW;
END $$;
CREATE TRIGGER test_library_audit AFTER INSERT OR UPDATE ON videos FOR EACH ROW
  EXECUTE FUNCTION test_library_audit_row();
"""


def logged_at(log: str, needle: str) -> float:
    """The wall-clock time (Unix seconds) of the first server log line containing `needle`."""
    line = next((line for line in log.splitlines() if needle in line), None)
    assert line is not None, f"{needle!r} not in the log:\n{log[-3000:]}"
    return datetime.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()


class Cutter:
    """Cuts one replica off the database: its role may no longer log in, and its backends (found by the
    replica's application_name) are terminated every few milliseconds. Killing backends alone leaves the cut
    porous: a reconnect often gets its statement through before the next kill (a lease heartbeat among them),
    so the lease might never expire. `porous()` re-opens logins but keeps killing, so late writes can land."""

    def __init__(self, conn: psycopg.AsyncConnection[Any], role: str, app_name: str) -> None:
        self.conn = conn
        self.role = role
        self.app_name = app_name
        self.killed = 0
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def cut(self) -> None:
        await self.conn.execute(f'ALTER ROLE "{self.role}" NOLOGIN')
        self._task = asyncio.create_task(self._kill_loop())

    async def porous(self) -> None:
        await self.conn.execute(f'ALTER ROLE "{self.role}" LOGIN')

    async def heal(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task
        await self.conn.execute(f'ALTER ROLE "{self.role}" LOGIN')

    async def _kill_loop(self) -> None:
        while not self._stop.is_set():
            cur = await self.conn.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name = %s AND pid <> pg_backend_pid()",
                (self.app_name,),
            )
            row = await cur.fetchone()
            self.killed += int(row[0]) if row else 0
            await asyncio.sleep(0.005)


async def test_replica_cut_off_from_the_database_is_fenced(
    make_replicas: MakeReplicas, pg_cluster: PostgresCluster, media: Path, clip: Path
) -> None:
    files = 60
    dbname = f"cut_{uuid.uuid4().hex[:12]}"
    url = pg_cluster.create_database(dbname)
    # A role per replica, so that one replica alone can be kept from logging in.
    roles = [f"{dbname}_r{i}" for i in range(3)]
    for role in roles:
        pg_cluster.sql(f"CREATE ROLE \"{role}\" LOGIN SUPERUSER PASSWORD '{PASSWORD}'")
    urls = [url.replace(f"{SUPERUSER}:", f"{role}:", 1) for role in roles]
    replicas = make_replicas(url=url, urls=urls, probe_delay_s=0.1)
    pg_cluster.sql(AUDIT_SQL, dbname)
    root = make_tree(media / "cut-off", clip, files)
    admin = await psycopg.AsyncConnection.connect(url, autocommit=True)
    try:
        async with connect(replicas) as apis:
            job = await apis[0].scan(root)
            x, running = await owner_of(apis[0], replicas, job.id, probed=5)
            y = (x + 1) % 3
            old = running.replica_id
            watch = Watch(apis[y], job.id)
            await watch.until(lambda u: u.state == RUNNING)
            cutter = Cutter(admin, roles[x], replicas.app_names[x])
            health_x: list[int | None] = []

            async def watch_health() -> None:
                while True:
                    health_x.append(await apis[x].health_status())
                    await asyncio.sleep(0.05)

            monitor = asyncio.create_task(watch_health())
            cut = time.monotonic()
            await cutter.cut()
            taken = await watch.until(lambda u: u.state == RUNNING and u.job.replica_id != old, seconds=20)
            takeover_s = watch.times[watch.updates.index(taken)] - cut
            # Logins allowed again but connections still killed, for a while: whatever the cut replica still had
            # in flight can reach the database now, while another replica owns the job.
            await cutter.porous()
            await asyncio.sleep(1.5)
            await cutter.heal()
            healed = time.monotonic()
            await poll(apis[x].health_status, lambda s: s == SERVING, 30)
            reconnect_s = time.monotonic() - healed
            monitor.cancel()
            updates = await watch.done()
            final = updates[-1]
            await asyncio.sleep(1.0)  # anything late from the cut replica would land by now
            on_x = await apis[x].get(job.id)
            stored_videos = await apis[x].videos(root)
        cur = await admin.execute("SELECT lease_expires FROM owners WHERE id = %s", (old,))
        lease_row = await cur.fetchone()
        cur = await admin.execute(
            "SELECT seq, state, owner, epoch, app, at FROM test_audit WHERE job_id = %s ORDER BY n", (job.id,)
        )
        audit = await cur.fetchall()
        cur = await admin.execute("SELECT state, seq, owner FROM jobs WHERE id = %s", (job.id,))
        row = await cur.fetchone()
    finally:
        await admin.close()

    cut_app = replicas.app_names[x]
    log_x = replicas.servers[x].log
    stopped_at = logged_at(log_x, f"job lease {old} of this server expired without a renewal: stopping its jobs")
    recovered_at = next(a[5] for a in audit if a[0] >= RECOVERY_SEQ_GAP)  # (seq, state, owner, epoch, app, at)
    print(
        f"cut-off replica: stopped its job {(recovered_at - stopped_at) * 1000:.0f} ms before another recovered it; "
        f"job taken over {takeover_s:.2f}s after the cut (lease TTL {replicas.lease_ttl_s}s); "
        f"{cutter.killed} backends killed; SERVING again {reconnect_s:.2f}s after the cut healed; "
        f"{sum(1 for a in audit if a[4] == cut_app)} writes of the job by the cut replica, all before its lease ended"
    )
    # It stopped its jobs, by itself, before anyone else took them; health showed it cut off.
    assert stopped_at < recovered_at, f"the cut replica stopped its job {stopped_at - recovered_at:.3f}s after recovery"
    assert f"job {job.id}: this server no longer owns it" in log_x, log_x[-3000:]
    assert health_pb2.HealthCheckResponse.NOT_SERVING in health_x, "health never showed the replica cut off"
    assert replicas.lease_ttl_s / 2 < takeover_s < replicas.lease_ttl_s + 4, takeover_s
    assert taken.job.replica_address != replicas.servers[x].address
    # What a watcher on another replica saw: once the new owner appears, never the old one again.
    first_new = updates.index(next(u for u in updates if u.job.replica_id and u.job.replica_id != old))
    late = [u for u in updates[first_new:] if u.job.replica_id == old]
    assert not late, f"updates of the cut replica after the new owner's: {late[:3]}"
    seqs = [u.seq for u in updates]
    assert seqs == sorted(set(seqs)), seqs
    last_old = max(i for i, u in enumerate(updates) if u.job.replica_id == old)
    jump = updates[last_old + 1].seq - updates[last_old].seq
    assert jump >= RECOVERY_SEQ_GAP, f"seq moved by {jump}: not recovered under the crash rules"
    assert final.seq < 2 * RECOVERY_SEQ_GAP, f"recovered {final.seq // RECOVERY_SEQ_GAP} times for one cut"
    # What the database saw: no write of the cut replica after its lease expired.
    assert lease_row is not None, "the cut replica's old lease row is gone"
    expired_at = float(lease_row[0])
    fenced = [a for a in audit if a[4] == cut_app and a[5] >= expired_at]
    assert not fenced, f"writes of the cut replica after its lease expired: {fenced}"
    assert any(a[4] == cut_app for a in audit), "the audit saw no write of the cut replica at all"
    # The end is consistent everywhere: stream, database row, the healed replica, the library.
    assert final.state == SUCCEEDED, f"{state_name(final.state)} {final.error}"
    result = final.result
    assert result.discovered == files and result.new + result.unchanged == files and result.failed == 0, result
    assert row == (SUCCEEDED, final.seq, final.job.replica_id), (row, final.seq, final.job.replica_id)
    assert (on_x.state, on_x.seq, on_x.replica_id, on_x.result) == (SUCCEEDED, final.seq, final.job.replica_id, result)
    assert len(stored_videos) == files


# ---- 8. a frozen owner (SIGSTOP), resumed after others took its job ------------------------------------------


async def test_frozen_owner_resumes_without_writing_to_the_job_it_lost(
    make_replicas: MakeReplicas, pg_cluster: PostgresCluster, media: Path, clip: Path
) -> None:
    """A paused, not dead, replica (a long GC pause, a stopped VM): its connections stay open, so when it resumes,
    whatever it was doing continues at once. Its writes to the job it lost meanwhile must not land."""
    files = 60
    dbname = f"frozen_{uuid.uuid4().hex[:12]}"
    url = pg_cluster.create_database(dbname)
    replicas = make_replicas(url=url, probe_delay_s=0.1)
    pg_cluster.sql(AUDIT_SQL, dbname)
    pg_cluster.sql(LIBRARY_AUDIT_SQL, dbname)
    root = make_tree(media / "frozen", clip, files)
    async with connect(replicas) as apis:
        job = await apis[0].scan(root)
        x, running = await owner_of(apis[0], replicas, job.id, probed=5)
        y = (x + 1) % 3
        old = running.replica_id
        watch = Watch(apis[y], job.id)
        await watch.until(lambda u: u.state == RUNNING)
        frozen = replicas.servers[x]
        frozen.signal(signal.SIGSTOP)
        try:
            stopped = time.monotonic()
            taken = await watch.until(lambda u: u.state == RUNNING and u.job.replica_id != old, seconds=20)
            takeover_s = watch.times[watch.updates.index(taken)] - stopped
        finally:
            frozen.signal(signal.SIGCONT)
        resumed = time.monotonic()
        await poll(apis[x].health_status, lambda s: s == SERVING, 10)
        answered_s = time.monotonic() - resumed
        updates = await watch.done()
        final = updates[-1]
        await asyncio.sleep(1.0)
        on_x = await apis[x].get(job.id)
    audit = [
        row.split("|")
        for row in pg_cluster.sql(
            f"SELECT seq, state, app, at FROM test_audit WHERE job_id = '{job.id}' ORDER BY n", dbname
        ).splitlines()
    ]
    lease_expires = float(pg_cluster.sql(f"SELECT lease_expires FROM owners WHERE id = '{old}'", dbname))
    frozen_app = replicas.app_names[x]
    late = [row for row in audit if row[2] == frozen_app and float(row[3]) >= lease_expires]
    library_writes = [
        row.split("|")
        for row in pg_cluster.sql("SELECT path, app, at FROM test_library_audit ORDER BY n", dbname).splitlines()
    ]
    late_library = [row for row in library_writes if row[1] == frozen_app and float(row[2]) >= lease_expires]
    assert any(row[1] == frozen_app for row in library_writes), "the audit saw no library write of the frozen owner"
    assert not late_library, f"the resumed replica wrote library rows after its lease expired: {late_library}"
    print(
        f"frozen owner: taken over {takeover_s:.2f}s after SIGSTOP; resumed, it answered health "
        f"{answered_s:.2f}s after SIGCONT; {len(late)} writes to the job after its lease expired"
    )
    assert not late, f"the resumed replica wrote to the job after its lease expired: {late}"
    assert replicas.lease_ttl_s / 2 < takeover_s < replicas.lease_ttl_s + 4, takeover_s
    log_x = frozen.log
    assert f"job lease {old} of this server" in log_x and "stopping its jobs" in log_x, log_x[-3000:]
    first_new = updates.index(taken)
    assert not [u for u in updates[first_new:] if u.job.replica_id == old]
    seqs = [u.seq for u in updates]
    assert seqs == sorted(set(seqs)), seqs
    assert final.state == SUCCEEDED, f"{state_name(final.state)} {final.error}"
    assert final.seq < 2 * RECOVERY_SEQ_GAP
    result = final.result
    assert result.discovered == files and result.new + result.unchanged == files and result.failed == 0, result
    assert (on_x.state, on_x.seq, on_x.replica_id) == (SUCCEEDED, final.seq, final.job.replica_id)


# ---- 9. a blip: every connection of the database killed once -------------------------------------------------


async def test_a_dropped_database_connection_costs_a_retry_not_the_scan(
    make_replicas: MakeReplicas, media: Path, clip: Path, pg_cluster: PostgresCluster
) -> None:
    files = 30
    replicas = make_replicas(count=1, probe_delay_s=0.05, lease_ttl_s=10.0)
    root = make_tree(media / "blip", clip, files)
    dbname = replicas.url.rsplit("/", 1)[1].split("?", 1)[0]
    async with connect(replicas) as apis:
        job = await apis[0].scan(root)
        watch = Watch(apis[0], job.id)
        await watch.until(lambda u: u.state == RUNNING and u.result.probed >= 5)
        killed = pg_cluster.terminate_connections(dbname)  # pool, listener and heartbeat connections alike
        final = (await watch.done())[-1]
        videos = await apis[0].videos(root)
    assert killed >= 2, f"only {killed} backends were killed"
    assert final.state == SUCCEEDED, f"{state_name(final.state)}: {final.error.message}"
    assert final.seq < RECOVERY_SEQ_GAP, "the job was recovered as crashed instead of riding out the blip"
    assert final.result.new == files and final.result.failed == 0, final.result
    assert len(videos) == files
