"""The PyAV worker pool: isolation (hang, FIFO, crash cost one file), replacement, and prompt cancellation."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import TypeVar

import psutil
import pytest

from reelscan.service.scan.media_info import MediaInfo, ProbeErrorKind, ProbeFailure
from reelscan.service.scan.pool import ProbePool
from reelscan.service.scan.prober import ProberUnavailable
from tests.scan.conftest import Corpus

T = TypeVar("T")
NO_TIMEOUT = "the per-file probe timeout did not cut off a hung probe within 15 s (is it enforced?)"


@pytest.fixture
async def pool() -> ProbePool:
    pool = ProbePool(size=2, timeout_s=1.0, fault_injection=True)
    await pool.start()
    await pool.wait_ready()
    yield pool  # type: ignore[misc]
    await pool.close()


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


async def _within(seconds: float, awaitable: Awaitable[T], failure: str) -> T:
    """Awaits with a deadline far past what the feature needs, failing with `failure` instead of hanging until
    pytest's own timeout when the feature is missing (a disabled per-file timeout leaves a hung probe forever)."""
    try:
        async with asyncio.timeout(seconds):
            return await awaitable
    except TimeoutError:
        pytest.fail(failure)


def _copy(src: Path, dest: Path) -> str:
    shutil.copyfile(src, dest)
    return str(dest)


async def test_probes_in_workers_match_in_process(pool: ProbePool, corpus: Corpus) -> None:
    from reelscan.service.scan import probe_pyav

    outcomes = await asyncio.gather(*(pool.probe(str(c.path)) for c in corpus.clips.values()))
    for clip, outcome in zip(corpus.clips.values(), outcomes, strict=True):
        assert outcome == probe_pyav.probe(str(clip.path))
    assert all(pid != os.getpid() for pid in pool.worker_pids)


async def test_hung_probe_is_cut_off_and_worker_replaced(pool: ProbePool, corpus: Corpus, tmp_path: Path) -> None:
    hang = _copy(corpus.clips["h264_aac"].path, tmp_path / "a-reelscan-hang.mp4")
    before = set(pool.worker_pids)
    good = [str(c.path) for c in corpus.clips.values()]
    outcomes = await _within(15, asyncio.gather(pool.probe(hang), *(pool.probe(p) for p in good)), NO_TIMEOUT)
    assert isinstance(outcomes[0], ProbeFailure) and outcomes[0].kind is ProbeErrorKind.PROBE_TIMEOUT
    assert "1 s" in outcomes[0].reason
    assert all(isinstance(o, MediaInfo) for o in outcomes[1:])  # only the hung file failed
    await pool.wait_ready()
    after = set(pool.worker_pids)
    assert len(after) == 2 and after != before  # the hung worker was killed and replaced
    assert not any(_alive(pid) for pid in before - after)


async def test_fifo_is_cut_off_by_timeout(pool: ProbePool, tmp_path: Path, corpus: Corpus) -> None:
    fifo = tmp_path / "x.mp4"
    os.mkfifo(fifo)
    outcome = await _within(15, pool.probe(str(fifo)), NO_TIMEOUT)
    assert isinstance(outcome, ProbeFailure) and outcome.kind is ProbeErrorKind.PROBE_TIMEOUT
    assert isinstance(await pool.probe(str(corpus.clips["h264_aac"].path)), MediaInfo)


async def test_crash_costs_one_file(pool: ProbePool, corpus: Corpus, tmp_path: Path) -> None:
    crash = _copy(corpus.clips["h264_aac"].path, tmp_path / "b-reelscan-crash.mp4")
    good = [str(c.path) for c in corpus.clips.values()]
    outcomes = await asyncio.gather(
        *(pool.probe(p) for p in good[:3]), pool.probe(crash), *(pool.probe(p) for p in good[3:])
    )
    failures = [o for o in outcomes if isinstance(o, ProbeFailure)]
    assert len(failures) == 1 and failures[0].kind is ProbeErrorKind.PROBE_CRASHED
    assert "exit code 70" in failures[0].reason
    # A crash is blamed on the file only when a second worker dies on it, with that file alone on it. (More than two
    # workers may die: results a worker gathered for its next reply frame die with it, so the pool may take an
    # innocent neighbour for the suspect first; the neighbour then passes alone.)
    assert pool.replaced >= 2
    await pool.wait_ready()
    assert isinstance(await pool.probe(good[0]), MediaInfo)


async def test_cancel_kills_in_flight_probes_promptly(corpus: Corpus, tmp_path: Path) -> None:
    # A long probe timeout: only killing the workers can end these probes quickly.
    pool = ProbePool(size=2, timeout_s=60.0, fault_injection=True)
    await pool.start()
    await pool.wait_ready()
    try:
        await _cancel_hung_probes(pool, corpus, tmp_path)
    finally:
        await pool.close()


async def _cancel_hung_probes(pool: ProbePool, corpus: Corpus, tmp_path: Path) -> None:
    hangs = [_copy(corpus.clips["h264_aac"].path, tmp_path / f"{i}-reelscan-hang.mp4") for i in range(2)]
    busy = set(pool.worker_pids)
    tasks = [asyncio.create_task(pool.probe(p)) for p in hangs]
    await asyncio.sleep(0.2)  # both workers are now stuck in their probes
    start = time.monotonic()
    for task in tasks:
        task.cancel()
    results = await _within(
        15, asyncio.gather(*tasks, return_exceptions=True), "cancelled probes did not end (the 60 s timeout would)"
    )
    elapsed = time.monotonic() - start
    assert all(isinstance(r, asyncio.CancelledError) for r in results)
    assert elapsed < 1.0  # "well under a second": the hung probes were killed, not waited for (timeout 60 s)
    # The stuck workers are gone (SIGKILL), not left probing in the background.
    for _ in range(100):
        if not any(_alive(p) for p in busy):
            break
        await asyncio.sleep(0.02)
    assert not any(_alive(p) for p in busy)
    await pool.wait_ready()
    assert isinstance(await pool.probe(str(corpus.clips["vp9_opus"].path)), MediaInfo)


async def test_worker_dying_while_idle_is_replaced(pool: ProbePool, corpus: Corpus) -> None:
    victim = pool.worker_pids[0]
    os.kill(victim, 9)
    outcomes = await asyncio.gather(*(pool.probe(str(c.path)) for c in corpus.clips.values()))
    assert all(isinstance(o, MediaInfo) for o in outcomes)  # no file paid for a worker that died idle
    await pool.wait_ready()
    assert victim not in pool.worker_pids


async def test_probe_delay_applies_in_worker(corpus: Corpus) -> None:
    pool = ProbePool(size=1, timeout_s=5.0, probe_delay_s=0.2)
    await pool.start()
    try:
        await pool.wait_ready()
        start = time.monotonic()
        assert isinstance(await pool.probe(str(corpus.clips["h264_aac"].path)), MediaInfo)
        assert time.monotonic() - start >= 0.2
    finally:
        await pool.close()


async def test_fault_injection_off_by_default(corpus: Corpus, tmp_path: Path) -> None:
    pool = ProbePool(size=1, timeout_s=5.0)
    try:
        crash = _copy(corpus.clips["h264_aac"].path, tmp_path / "c-reelscan-crash.mp4")
        assert isinstance(await pool.probe(crash), MediaInfo)
    finally:
        await pool.close()


async def test_close_kills_workers_and_fails_waiters(corpus: Corpus, tmp_path: Path) -> None:
    pool = ProbePool(size=1, timeout_s=30.0, fault_injection=True)
    await pool.start()
    await pool.wait_ready()
    pids = pool.worker_pids
    hang = _copy(corpus.clips["h264_aac"].path, tmp_path / "d-reelscan-hang.mp4")
    busy = asyncio.create_task(pool.probe(hang))
    waiting = asyncio.create_task(pool.probe(str(corpus.clips["h264_aac"].path)))
    await asyncio.sleep(0.2)
    await pool.close()
    for task in (busy, waiting):  # neither the file in flight nor the one waiting is blamed: the pool is gone
        with pytest.raises(ProberUnavailable):
            await task
    assert not any(psutil.pid_exists(p) for p in pids)


async def test_file_queued_behind_a_hang_is_resent_not_blamed(corpus: Corpus, tmp_path: Path) -> None:
    """With one worker, a second file waits in that worker's queue behind a hanging one (pipelining). When the
    hang is cut off, only the hanging file fails; the queued one is probed by the replacement worker."""
    pool = ProbePool(size=1, timeout_s=0.5, fault_injection=True)
    await pool.start()
    try:
        await pool.wait_ready()
        hang = _copy(corpus.clips["h264_aac"].path, tmp_path / "e-reelscan-hang.mp4")
        both = asyncio.gather(pool.probe(hang), pool.probe(str(corpus.clips["vp9_opus"].path)))
        hung, queued = await _within(15, both, NO_TIMEOUT)
        assert isinstance(hung, ProbeFailure) and hung.kind is ProbeErrorKind.PROBE_TIMEOUT
        assert isinstance(queued, MediaInfo)
        assert pool.replaced == 1
    finally:
        await pool.close()


async def test_timeout_counts_from_when_the_worker_starts_the_file(corpus: Corpus) -> None:
    """Queued requests do not eat into their own timeout while they wait for the file ahead of them."""
    pool = ProbePool(size=1, timeout_s=0.6, probe_delay_s=0.35)
    await pool.start()
    try:
        await pool.wait_ready()
        outcomes = await asyncio.gather(*(pool.probe(str(c.path)) for c in list(corpus.clips.values())[:3]))
        assert all(isinstance(o, MediaInfo) for o in outcomes)  # each took 0.35 s, the last finished at ~1.05 s
    finally:
        await pool.close()


# ---- batches (probe_stream) and several files in flight per worker (threads) ------------------------------------


async def _stream_all(pool: ProbePool, paths: list[str], seconds: float = 30) -> dict[int, MediaInfo | ProbeFailure]:
    """Every (index -> outcome) of one stream, checking each index comes back exactly once."""

    async def collect() -> dict[int, MediaInfo | ProbeFailure]:
        seen: dict[int, MediaInfo | ProbeFailure] = {}
        async for batch in pool.probe_stream(paths):
            for index, outcome, took in batch:
                assert index not in seen, f"file {index} answered twice"
                assert took >= 0
                seen[index] = outcome
        return seen

    seen = await _within(seconds, collect(), NO_TIMEOUT)
    assert sorted(seen) == list(range(len(paths)))
    return seen


def _copies(corpus: Corpus, directory: Path, count: int) -> list[str]:
    directory.mkdir(parents=True, exist_ok=True)
    clips = list(corpus.clips.values())
    return [
        _copy(clips[i % len(clips)].path, directory / f"{i:03}{clips[i % len(clips)].path.suffix}")
        for i in range(count)
    ]


async def test_stream_of_many_files_matches_in_process_probes(corpus: Corpus, tmp_path: Path) -> None:
    from reelscan.service.scan import probe_pyav

    paths = _copies(corpus, tmp_path / "many", 60)
    pool = ProbePool(size=2, timeout_s=10.0, threads=3)
    try:
        seen = await _stream_all(pool, paths)
        for index, path in enumerate(paths):
            assert seen[index] == probe_pyav.probe(path), path
        assert pool.replaced == 0
    finally:
        await pool.close()


async def test_files_behind_a_hang_and_a_crash_in_one_batch_are_resent_not_blamed(
    corpus: Corpus, tmp_path: Path
) -> None:
    """One worker, one thread: the whole stream goes to it in batches. The hung file times out, the crashing file
    is blamed (after killing a second worker while alone), every file queued behind either is probed."""
    paths = _copies(corpus, tmp_path / "batch", 30)
    paths.insert(5, _copy(corpus.clips["h264_aac"].path, tmp_path / "batch" / "x-reelscan-hang.mp4"))
    paths.insert(12, _copy(corpus.clips["h264_aac"].path, tmp_path / "batch" / "y-reelscan-crash.mp4"))
    pool = ProbePool(size=1, timeout_s=0.5, fault_injection=True)
    try:
        seen = await _stream_all(pool, paths)
        hang, crash = seen.pop(5), seen.pop(12)
        assert isinstance(hang, ProbeFailure) and hang.kind is ProbeErrorKind.PROBE_TIMEOUT
        assert isinstance(crash, ProbeFailure) and crash.kind is ProbeErrorKind.PROBE_CRASHED
        assert "exit code 70" in crash.reason
        blamed = {i: o for i, o in seen.items() if not isinstance(o, MediaInfo)}
        assert blamed == {}, f"innocent files blamed: {blamed}"
    finally:
        await pool.close()


async def test_crash_among_many_files_in_flight_costs_that_file_only(corpus: Corpus, tmp_path: Path) -> None:
    """Two workers with up to four probe threads and 32 files queued each: a crash kills whatever was running
    beside it too; those are suspects, re-sent one at a time, and pass; only the crashing file is blamed, and
    every file queued behind it is probed."""
    paths = _copies(corpus, tmp_path / "threads", 40)
    crash_at = 17
    paths.insert(crash_at, _copy(corpus.clips["vp9_opus"].path, tmp_path / "threads" / "z-reelscan-crash.webm"))
    pool = ProbePool(size=2, timeout_s=10.0, fault_injection=True, threads=4)
    try:
        seen = await _stream_all(pool, paths)
        failed = {i: o for i, o in seen.items() if not isinstance(o, MediaInfo)}
        assert list(failed) == [crash_at], failed
        assert isinstance(failed[crash_at], ProbeFailure) and failed[crash_at].kind is ProbeErrorKind.PROBE_CRASHED
    finally:
        await pool.close()


async def test_files_run_beside_hung_ones_with_probe_concurrency(corpus: Corpus, tmp_path: Path) -> None:
    """One worker with three threads: two files hang (for the 60 s timeout), the third thread probes the rest.
    With one file at a time per worker they would all wait behind the first hang."""
    pool = ProbePool(size=1, timeout_s=60.0, fault_injection=True, threads=3)
    try:
        await pool.wait_ready()
        hangs = [_copy(corpus.clips["h264_aac"].path, tmp_path / f"{i}-reelscan-hang.mp4") for i in range(2)]
        good = _copies(corpus, tmp_path / "beside", 12)
        stuck = [asyncio.create_task(pool.probe(h)) for h in hangs]
        await asyncio.sleep(0.2)  # both hung files are on threads of the worker now
        message = "files did not get past two hung ones on a worker with 3 threads (is --probe-concurrency applied?)"
        seen = await _within(15, _stream_all(pool, good, seconds=60), message)
        assert all(isinstance(o, MediaInfo) for o in seen.values())
        assert not any(t.done() for t in stuck)  # still hung: nothing was killed to make room
        for task in stuck:
            task.cancel()
        await asyncio.gather(*stuck, return_exceptions=True)
    finally:
        await pool.close()


async def test_closing_a_stream_kills_its_probes_promptly(corpus: Corpus, tmp_path: Path) -> None:
    """A cancelled scan closes its stream: the workers running its files are SIGKILLed at once (the files hang
    and the timeout is 60 s, so only killing can end them), and another stream's files on them are re-sent."""
    pool = ProbePool(size=2, timeout_s=60.0, fault_injection=True, threads=2)
    try:
        await pool.wait_ready()
        busy = set(pool.worker_pids)
        hangs = [_copy(corpus.clips["h264_aac"].path, tmp_path / f"{i}-reelscan-hang.mp4") for i in range(4)]

        async def consume() -> None:
            async for _ in pool.probe_stream(hangs):
                raise AssertionError("a hung file was answered")

        task = asyncio.create_task(consume())
        await asyncio.sleep(0.3)  # all four are running, two threads on each worker
        start = time.monotonic()
        task.cancel()
        await _within(15, asyncio.gather(task, return_exceptions=True), "a cancelled stream did not end")
        assert time.monotonic() - start < 1.0  # killed, not waited for
        for _ in range(100):
            if not any(_alive(p) for p in busy):
                break
            await asyncio.sleep(0.02)
        assert not any(_alive(p) for p in busy)
        others = await _stream_all(pool, _copies(corpus, tmp_path / "after", 6))
        assert all(isinstance(o, MediaInfo) for o in others.values())
    finally:
        await pool.close()
