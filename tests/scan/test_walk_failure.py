"""An unexpected exception in a walk thread ends the walk at once, and so fails the scan job at once (issue 10).

Before the fix the thread set `stop` before handing its exception over, `emit` dropped it (and the end-of-walk
marker) because `stop` was set, and the consumer waited on an empty queue: the scan hung RUNNING until its job
timeout. Each test here bounds its wait and fails with a message saying so, rather than hanging.

The cause is injected: os.scandir raising RuntimeError for one directory (not an OSError, which is a recorded
WalkError). A real cause found on the way, a symbolic link at the head of a long chain of links (os.path.realpath
recurses per link up to Python 3.12 and raises RecursionError), is now a scan error of that one entry: the last
test shows the scan going on.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import grpc
import pytest
from google.protobuf import duration_pb2

from reelscan.service.config import Settings
from reelscan.service.scan import walker
from reelscan.service.server import ReelscanServer
from reelscan.v1 import job_pb2, job_service_pb2, library_pb2, scan_service_pb2
from tests.helpers.stubs import Stubs

# The walks here take milliseconds; with the bug they never end. The job timeout is far beyond this bound, so a
# job that ends within it was not ended by its timeout.
PROMPT_S = 5.0
JOB_TIMEOUT_S = 600.0
CHAIN_LENGTH = 1500  # links: more than the default recursion limit of 1000
EXTS = ("mp4", "mkv")

pytestmark = pytest.mark.timeout(120)  # a backstop only: each test bounds its own waits to PROMPT_S

T = TypeVar("T")


async def promptly(awaitable: Awaitable[T], what: str) -> T:
    try:
        async with asyncio.timeout(PROMPT_S):
            return await awaitable
    except TimeoutError:
        pass  # fail outside the handler, so the report is this message and not a chain of cancellations
    pytest.fail(
        f"{what} did not end within {PROMPT_S:g}s after a walk thread raised: the thread's exception was lost "
        "and the walk hangs (issue 10: `stop` set before the error was emitted)",
        pytrace=False,
    )


@dataclass(frozen=True)
class Failure:
    """A tree whose walk makes a walk thread raise `error`, with a message matching `match`."""

    root: Path
    follow_symlinks: bool
    error: type[BaseException]
    match: str


def _populate(root: Path) -> None:
    for rel in ("a.mp4", "sub/b.mkv", "sub/deeper/c.mp4", "other/d.mp4", "other/more/e.mp4"):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")


def _injected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Failure:
    root = tmp_path / "media"
    _populate(root)
    broken = str(root / "sub" / "deeper")
    real_scandir = os.scandir

    def scandir(path: str) -> object:
        if str(path) == broken:
            raise RuntimeError(f"injected failure listing {path}")
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)  # the walker calls os.scandir through the os module
    return Failure(root, False, RuntimeError, "injected failure listing")


def _symlink_chain(tmp_path: Path) -> Path:
    """A scan root holding one link at the head of a chain too long for os.path.realpath (skips where it copes)."""
    root = tmp_path / "media"
    _populate(root)
    chain = tmp_path / "chain"  # outside the scanned root: only its head is seen (and followed) by the walk
    chain.mkdir()
    (chain / "target.mp4").write_bytes(b"x")
    previous = "target.mp4"
    for i in range(CHAIN_LENGTH):
        os.symlink(previous, chain / f"link{i}.mp4")
        previous = f"link{i}.mp4"
    head = root / "sub" / "linked.mp4"
    head.symlink_to(chain / previous)

    raised: list[BaseException] = []

    def resolve() -> None:
        try:
            os.path.realpath(head)
        except BaseException as error:
            raised.append(error)

    probe = threading.Thread(target=resolve)  # in a thread, as the walk does it
    probe.start()
    probe.join()
    if not (raised and isinstance(raised[0], RecursionError)):
        pytest.skip("os.path.realpath resolves a long chain of links without RecursionError on this Python")
    return head


@pytest.fixture
def failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Failure:
    return _injected(tmp_path, monkeypatch)


def _walk_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "reelscan-walk"]


@pytest.mark.parametrize("threads", [1, 4])
async def test_walk_raises_the_thread_error_promptly(failure: Failure, tmp_path: Path, threads: int) -> None:
    async def consume() -> None:
        async for _ in walker.walk(
            str(failure.root),
            extensions=EXTS,
            follow_symlinks=failure.follow_symlinks,
            allow_roots=[tmp_path],
            threads=threads,
        ):
            pass

    with pytest.raises(failure.error, match=failure.match):
        await promptly(consume(), "walk()")
    # The other threads stop too.
    for _ in range(200):
        if not _walk_threads():
            break
        await asyncio.sleep(0.01)
    assert not _walk_threads(), "walk threads still running after the walk failed"


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Stubs]:
    """A real server in this process (so the injected failure applies to its walk threads), and a channel to it."""
    settings = Settings(
        listen="127.0.0.1:0",
        db_path=tmp_path / "reelscan.db",
        allow_roots=(tmp_path,),
        job_timeout_s=JOB_TIMEOUT_S,
        probe_workers=1,
        grace_period_s=1,
        walk_in_workers=False,  # the injected failure is in this process's os.scandir
    )
    server = await ReelscanServer.start(settings)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            yield Stubs(channel)
    finally:
        await server.stop()


async def test_scan_job_fails_promptly_with_the_walk_error(failure: Failure, api: Stubs) -> None:
    request = scan_service_pb2.StartScanRequest(path=str(failure.root), follow_symlinks=failure.follow_symlinks)
    started = time.monotonic()
    job = (await api.scans.StartScan(request, timeout=10)).job
    wait = job_service_pb2.WaitJobRequest(job_id=job.id, timeout=duration_pb2.Duration(seconds=int(PROMPT_S)))
    job = (await api.jobs.WaitJob(wait, timeout=PROMPT_S + 10)).job
    elapsed = time.monotonic() - started
    state = job_pb2.JobState.Name(job.state)
    assert job.state == job_pb2.JOB_STATE_FAILED, (
        f"scan job is {state} {elapsed:.1f}s after a walk thread raised {failure.error.__name__}, expected "
        f"FAILED at once (issue 10: the walk thread's exception was lost; the job would hang until its "
        f"{JOB_TIMEOUT_S:g}s timeout)"
    )
    assert job.error.code == grpc.StatusCode.INTERNAL.value[0]
    assert f"{failure.error.__name__}: " in job.error.message, job.error.message
    assert failure.match in job.error.message, job.error.message


async def test_a_symlink_chain_too_deep_to_resolve_costs_that_entry_only(tmp_path: Path, api: Stubs) -> None:
    head = _symlink_chain(tmp_path)
    root = head.parent.parent
    request = scan_service_pb2.StartScanRequest(path=str(root), follow_symlinks=True)
    job = (await api.scans.StartScan(request, timeout=10)).job
    wait = job_service_pb2.WaitJobRequest(job_id=job.id, timeout=duration_pb2.Duration(seconds=int(PROMPT_S)))
    job = (await api.jobs.WaitJob(wait, timeout=PROMPT_S + 10)).job
    assert job.state == job_pb2.JOB_STATE_SUCCEEDED, job
    errors = await api.library.ListScanErrors(library_pb2.ListScanErrorsRequest(job_id=job.id), timeout=10)
    reasons = {e.path: e.reason for e in errors.errors}
    assert "cannot be resolved (RecursionError)" in reasons[str(head)], reasons
    assert len(reasons) > 1  # the other files were still walked (and, being junk, failed to probe)
