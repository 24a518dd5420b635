"""The PyAV worker pool: isolation (hang, FIFO, crash cost one file), replacement, and prompt cancellation."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from pathlib import Path

import psutil
import pytest

from reelscan.service.scan.media_info import MediaInfo, ProbeErrorKind, ProbeFailure
from reelscan.service.scan.pool import ProbePool
from reelscan.service.scan.prober import ProberUnavailable
from tests.scan.conftest import Corpus


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
    outcomes = await asyncio.gather(pool.probe(hang), *(pool.probe(p) for p in good))
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
    outcome = await pool.probe(str(fifo))
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
    assert pool.replaced == 2  # a crash is blamed on the file only when a second worker dies on it too
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
    results = await asyncio.gather(*tasks, return_exceptions=True)
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
        hung, queued = await asyncio.gather(pool.probe(hang), pool.probe(str(corpus.clips["vp9_opus"].path)))
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
