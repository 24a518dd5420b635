"""The scan job handler with a real library store and a real worker pool: incremental counts that add up,
missing files, progress reports, cancellation keeping partial results, and the start-time path re-check."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from reelscan.service.config import Settings
from reelscan.service.errors import PermissionDenied
from reelscan.service.jobs.model import Stage
from reelscan.service.scan.handler import ScanJobHandler
from reelscan.service.scan.library_model import VideoFilter, VideoStatus
from reelscan.service.scan.library_store import LibraryStore
from reelscan.service.scan.pool import ProbePool
from reelscan.service.scan.spec import ScanSpec
from reelscan.service.scan.sqlite_library_store import SqliteLibraryStore
from tests.helpers.unstatable import make_unstatable
from tests.media import copy_clip
from tests.scan.conftest import Corpus, RecordingContext

COUNT_KEYS = ("discovered", "probed", "new", "updated", "unchanged", "unchanged_failed", "missing", "failed")


@dataclass
class Rig:
    root: Path
    library: LibraryStore
    pool: ProbePool
    settings: Settings
    runs: int = 0

    async def scan(self, path: Path | None = None, **spec_fields: object) -> RecordingContext:
        spec = ScanSpec(
            path=str(path or self.root),
            recursive=bool(spec_fields.get("recursive", True)),
            force=bool(spec_fields.get("force", False)),
            extensions=tuple(spec_fields.get("extensions", self.settings.extensions)),  # type: ignore[arg-type]
            follow_symlinks=False,
        )
        self.runs += 1
        ctx = RecordingContext(spec=spec.to_mapping(), job_id=f"job-{self.runs}")
        await ScanJobHandler(self.library, self.pool, self.settings).run(ctx)
        return ctx

    async def listed(self, include_missing: bool = False) -> dict[str, bool]:
        videos, _ = await self.library.list_videos(VideoFilter(include_missing=include_missing), 1000, "")
        prefix = len(str(self.root)) + 1
        return {v.path[prefix:]: v.missing for v in videos}


def counts(ctx: RecordingContext) -> dict[str, int]:
    """The non-zero result counts (all eight are always present)."""
    assert set(ctx.result) == set(COUNT_KEYS)
    return {k: ctx.result[k] for k in COUNT_KEYS if ctx.result[k]}


def adds_up(ctx: RecordingContext) -> None:
    r = ctx.result
    assert r["discovered"] == r["new"] + r["updated"] + r["unchanged"] + r["failed"]
    assert r["probed"] <= r["new"] + r["updated"] + r["failed"]
    assert r["unchanged_failed"] <= r["unchanged"]  # a part of unchanged, not of failed


@pytest.fixture
async def rig(tmp_path: Path, corpus: Corpus) -> AsyncIterator[Rig]:
    root = tmp_path / "media"
    sources = list(corpus.clips.values())
    for i, clip in enumerate(sources[:5]):
        copy_clip(clip.path, root / ("sub" if i % 2 else "") / f"clip{i}{clip.path.suffix}")
    shutil.copyfile(corpus.broken["zero"], root / "zero.mp4")
    shutil.copyfile(corpus.broken["random"], root / "sub" / "random.mkv")
    # walk_in_workers=False: some tests fake file-system failures in this process (monkeypatched os.scandir), which
    # the probe workers would not see; the worker walk is checked against this one in test_walker.py.
    settings = Settings(allow_roots=(tmp_path,), probe_workers=2, probe_timeout_s=10, walk_in_workers=False)
    library: LibraryStore = await SqliteLibraryStore.open(tmp_path / "lib.db")
    pool = ProbePool(size=2, timeout_s=10)
    await pool.start()
    yield Rig(root, library, pool, settings)
    await pool.close()
    await library.close()


async def test_incremental_rescans(rig: Rig) -> None:
    first = await rig.scan()
    assert counts(first) == {"discovered": 7, "probed": 7, "new": 5, "failed": 2}
    adds_up(first)
    assert len(await rig.listed()) == 5

    # Nothing changed: nothing is probed, failed files included (and counted as the known-broken skipped).
    second = await rig.scan()
    assert counts(second) == {"discovered": 7, "unchanged": 7, "unchanged_failed": 2}

    # Touch one: exactly that one is probed again.
    touched = rig.root / "clip0.mp4"
    os.utime(touched, ns=(time.time_ns(), time.time_ns()))
    third = await rig.scan()
    assert counts(third) == {"discovered": 7, "probed": 1, "updated": 1, "unchanged": 6, "unchanged_failed": 2}
    probing = [r for r in third.reports if r["current_item"]]
    assert [r["current_item"] for r in probing] == [str(touched)]

    # Delete one: exactly one is missing, flagged rather than deleted.
    gone = rig.root / "sub" / "clip1.webm"
    kept = gone.read_bytes()
    stat = gone.stat()
    gone.unlink()
    fourth = await rig.scan()
    assert counts(fourth) == {"discovered": 6, "unchanged": 6, "unchanged_failed": 2, "missing": 1}
    adds_up(fourth)
    assert "sub/clip1.webm" not in await rig.listed()
    assert (await rig.listed(include_missing=True))["sub/clip1.webm"] is True

    # It comes back unchanged: un-marked, without a probe.
    gone.write_bytes(kept)
    os.utime(gone, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    fifth = await rig.scan()
    assert counts(fifth) == {"discovered": 7, "unchanged": 7, "unchanged_failed": 2}
    assert (await rig.listed())["sub/clip1.webm"] is False

    # force probes everything again.
    forced = await rig.scan(force=True)
    assert counts(forced) == {"discovered": 7, "probed": 7, "updated": 5, "failed": 2}
    adds_up(forced)


async def test_known_broken_files_are_counted_when_skipped_and_listed_with_their_reasons(
    rig: Rig, corpus: Corpus
) -> None:
    first = await rig.scan()
    errors = {e.path: e for e in (await rig.library.list_scan_errors(first.job_id, 100, ""))[0]}
    failed_only = VideoFilter(statuses=frozenset({VideoStatus.FAILED}))
    broken = {v.path: v for v in (await rig.library.list_videos(failed_only, 100, ""))[0]}
    assert set(broken) == set(errors) == {str(rig.root / "zero.mp4"), str(rig.root / "sub" / "random.mkv")}
    for path, video in broken.items():  # the library keeps what the scan error said
        assert (video.failure_reason, video.failure_kind) == (errors[path].reason, errors[path].kind)
        assert video.probe_time <= errors[path].create_time + 1

    second = await rig.scan()
    assert counts(second) == {"discovered": 7, "unchanged": 7, "unchanged_failed": 2}
    assert (await rig.library.list_scan_errors(second.job_id, 100, ""))[0] == []
    still = {v.path: v for v in (await rig.library.list_videos(failed_only, 100, ""))[0]}
    assert still == broken  # not tried again: same reasons, same probe_time

    # Fixed: replaced by a good clip, it is probed (a changed file), becomes a video and leaves the broken list.
    fixed = rig.root / "zero.mp4"
    copy_clip(corpus.clips["h264_aac"].path, fixed)
    third = await rig.scan()
    assert counts(third) == {"discovered": 7, "probed": 1, "updated": 1, "unchanged": 6, "unchanged_failed": 1}
    assert (await rig.library.get_video(path=str(fixed))).status is VideoStatus.OK
    assert [v.path for v in (await rig.library.list_videos(failed_only, 100, ""))[0]] == [
        str(rig.root / "sub" / "random.mkv")
    ]

    # A video that breaks is probed (changed), fails, and is skipped as known-broken from then on.
    spoiled = rig.root / "clip0.mp4"
    shutil.copyfile(corpus.broken["truncated"], spoiled)
    fourth = await rig.scan()
    assert counts(fourth) == {"discovered": 7, "probed": 1, "unchanged": 6, "unchanged_failed": 1, "failed": 1}
    assert counts(await rig.scan()) == {"discovered": 7, "unchanged": 7, "unchanged_failed": 2}
    # force tries them all again: failures again, none skipped.
    forced = await rig.scan(force=True)
    assert counts(forced) == {"discovered": 7, "probed": 7, "updated": 5, "failed": 2}
    adds_up(forced)


async def test_progress_reports(rig: Rig) -> None:
    """Results come back in batches (a worker's reply frame), and progress moves with each: a step per batch, up
    to the total. A probe delay of 30 ms in one worker makes every file its own batch, so the steps are visible."""
    slow = ProbePool(size=1, timeout_s=10, probe_delay_s=0.03)
    try:
        ctx = await replace(rig, pool=slow).scan()
    finally:
        await slow.close()
    stages = [r["stage"] for r in ctx.reports if r["stage"] is not None]
    assert stages == [Stage.DISCOVERING, Stage.PROBING, Stage.FINALIZING]
    discovering = ctx.reports[0]
    assert (discovering["done"], discovering["total"]) == (0, 0)  # total unknown while walking
    probing_start = next(r for r in ctx.reports if r["stage"] is Stage.PROBING)
    assert probing_start["total"] == 7
    dones = [r["done"] for r in ctx.reports[ctx.reports.index(probing_start) + 1 :] if r["done"] is not None]
    assert dones == sorted(set(dones)) and dones[-1] == 7  # steps up, never back, to the total
    assert len(dones) >= 5, f"progress jumped instead of moving: {dones}"  # real intermediate values
    files = {str(p) for p in rig.root.rglob("*") if p.is_file()}
    current = [r["current_item"] for r in ctx.reports if r["current_item"]]
    assert set(current) <= files and len(set(current)) >= 5  # the file being probed, as it changes
    # Partial results were published along the way, never going down.
    probed = [r["probed"] for r in ctx.results]
    assert probed == sorted(probed) and probed[-1] == 7


async def test_scan_errors_recorded_per_job(rig: Rig) -> None:
    first = await rig.scan()
    errors, _ = await rig.library.list_scan_errors(first.job_id, 100, "")
    assert sorted(os.path.basename(e.path) for e in errors) == ["random.mkv", "zero.mp4"]
    assert all(e.kind.name == "PROBE_FAILED" and e.reason for e in errors)
    second = await rig.scan()
    assert (await rig.library.list_scan_errors(second.job_id, 100, ""))[0] == []  # unchanged: not probed again
    handler = ScanJobHandler(rig.library, rig.pool, rig.settings)
    await handler.on_deleted(first.job_id)
    assert (await rig.library.list_scan_errors(first.job_id, 100, ""))[0] == []


async def test_not_recursive_does_not_touch_subdirectories(rig: Rig) -> None:
    await rig.scan()
    flat = await rig.scan(recursive=False)
    assert counts(flat) == {"discovered": 4, "unchanged": 4, "unchanged_failed": 1}  # 3 clips + zero.mp4 at the top
    shutil.rmtree(rig.root / "sub")
    (rig.root / "sub").mkdir()
    flat = await rig.scan(recursive=False)
    assert counts(flat) == {"discovered": 4, "unchanged": 4, "unchanged_failed": 1}  # sub/ is not this scan's business
    deep = await rig.scan()
    assert counts(deep) == {"discovered": 4, "unchanged": 4, "unchanged_failed": 1, "missing": 3}


async def test_other_extensions_are_not_marked_missing(rig: Rig) -> None:
    await rig.scan()
    only_mkv = await rig.scan(extensions=("mkv",))
    assert only_mkv.result["missing"] == 0
    assert all(not missing for missing in (await rig.listed(include_missing=True)).values())


async def test_emptied_root_does_not_mark_the_library_missing(rig: Rig) -> None:
    await rig.scan()
    for path in list(rig.root.rglob("*")):
        if path.is_file():
            path.unlink()
    empty = await rig.scan()
    assert counts(empty) == {}
    assert all(not missing for missing in (await rig.listed()).values())
    assert len(await rig.listed()) == 5


async def test_unreadable_root_does_not_mark_the_library_missing(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    await rig.scan()
    real_scandir = os.scandir

    def scandir(path: str) -> object:
        if str(path).startswith(str(rig.root)):
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    blocked = await rig.scan()
    assert counts(blocked) == {}
    errors, _ = await rig.library.list_scan_errors(blocked.job_id, 10, "")
    assert [(e.path, e.kind.name) for e in errors] == [(str(rig.root), "UNREADABLE")]
    assert len(await rig.listed()) == 5


async def test_unreadable_subdirectory_keeps_its_files(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    await rig.scan()
    real_scandir = os.scandir
    sub = str(rig.root / "sub")

    def scandir(path: str) -> object:
        if str(path) == sub:
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    partial = await rig.scan()
    assert counts(partial) == {"discovered": 4, "unchanged": 4, "unchanged_failed": 1}
    assert all(not missing for missing in (await rig.listed(include_missing=True)).values())


async def test_cancel_keeps_partial_results(tmp_path: Path, corpus: Corpus) -> None:
    root = tmp_path / "media"
    for i in range(12):
        copy_clip(corpus.clips["h264_aac"].path, root / f"c{i:02}.mp4")
    library: LibraryStore = await SqliteLibraryStore.open(tmp_path / "lib.db")
    pool = ProbePool(size=2, timeout_s=10, probe_delay_s=0.25)
    await pool.start()
    await pool.wait_ready()
    settings = Settings(allow_roots=(tmp_path,))
    spec = ScanSpec(str(root), True, False, ("mp4",), False)
    ctx = RecordingContext(spec=spec.to_mapping())
    try:
        task = asyncio.create_task(ScanJobHandler(library, pool, settings).run(ctx))
        for _ in range(1000):
            if ctx.results and ctx.result["probed"] >= 3:
                break
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        probed = ctx.result["probed"]
        assert 3 <= probed < 12
        assert ctx.result["new"] == probed
        videos, _ = await library.list_videos(VideoFilter(), 100, "")
        assert len(videos) == probed  # everything counted was stored
    finally:
        await pool.close()
        await library.close()


async def test_cancel_kills_the_probes_in_flight_well_under_a_second(tmp_path: Path, corpus: Corpus) -> None:
    """Every probe sleeps 60 s in its worker (and the timeout is longer): a cancel that waited for the probes in
    flight, instead of killing their workers, would take a minute, so only killing passes the 1 s bound."""
    root = tmp_path / "media"
    for i in range(8):
        copy_clip(corpus.clips["h264_aac"].path, root / f"c{i:02}.mp4")
    library: LibraryStore = await SqliteLibraryStore.open(tmp_path / "lib.db")
    pool = ProbePool(size=2, timeout_s=120, probe_delay_s=60.0)
    await pool.start()
    await pool.wait_ready()
    settings = Settings(allow_roots=(tmp_path,))
    spec = ScanSpec(str(root), True, False, ("mp4",), False)
    ctx = RecordingContext(spec=spec.to_mapping())
    try:
        busy = set(pool.worker_pids)
        task = asyncio.create_task(ScanJobHandler(library, pool, settings).run(ctx))
        for _ in range(1000):
            if any(r.get("stage") is Stage.PROBING for r in ctx.reports):
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.3)  # both workers are inside their 60 s probes now
        start = time.monotonic()
        task.cancel()
        try:
            async with asyncio.timeout(10):
                with pytest.raises(asyncio.CancelledError):
                    await task
        except TimeoutError:
            pytest.fail("cancelling the scan waited for the probes in flight instead of killing their workers")
        assert time.monotonic() - start < 1.0  # "well under a second" (the bench measures it: tens of ms)
        assert not busy & set(pool.worker_pids)  # the workers probing at the moment were killed
        assert ctx.result["probed"] == 0
    finally:
        await pool.close()
        await library.close()


async def test_start_recheck_refuses_a_swapped_symlink(rig: Rig, tmp_path: Path) -> None:
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    outside.mkdir()
    settings = replace(rig.settings, allow_roots=(rig.root,))
    target = rig.root / "sub"
    shutil.rmtree(target)
    target.symlink_to(outside)
    spec = ScanSpec(str(target), True, False, ("mp4",), False)
    with pytest.raises(PermissionDenied):
        await ScanJobHandler(rig.library, rig.pool, settings).run(RecordingContext(spec=spec.to_mapping()))


async def test_file_names_that_are_not_utf8(rig: Rig, corpus: Corpus) -> None:
    """Stored under a readable text form (undecodable bytes as \\xNN), probed from the real name, and found
    unchanged on the next scan."""
    real = rig.root / os.fsdecode(b"caf\xe9 \xff.mp4")
    copy_clip(corpus.clips["h264_aac"].path, real)
    first = await rig.scan()
    assert counts(first) == {"discovered": 8, "probed": 8, "new": 6, "failed": 2}
    video = await rig.library.get_video(path=str(rig.root) + "/caf\\xe9 \\xff.mp4")
    assert video.file_name == "caf\\xe9 \\xff.mp4" and video.video is not None
    assert counts(await rig.scan()) == {"discovered": 8, "unchanged": 8, "unchanged_failed": 2}
    real.unlink()
    assert counts(await rig.scan())["missing"] == 1


async def test_unstatable_subdirectory_keeps_its_files(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    """A sub-directory that can be listed but not stat'ed is an unreadable directory: its files are not missing."""
    await rig.scan()
    sub = str(rig.root / "sub")
    make_unstatable(monkeypatch, sub)
    partial = await rig.scan()
    assert counts(partial) == {"discovered": 4, "unchanged": 4, "unchanged_failed": 1}
    errors, _ = await rig.library.list_scan_errors(partial.job_id, 10, "")
    assert [(e.path, e.kind.name) for e in errors] == [(sub, "UNREADABLE")]
    assert all(not missing for missing in (await rig.listed(include_missing=True)).values())


async def test_a_non_utf8_name_and_its_escaped_spelling_are_two_videos(rig: Rig, corpus: Corpus) -> None:
    twins = rig.root / "twins"
    copy_clip(corpus.clips["h264_aac"].path, twins / os.fsdecode(b"twin-\xff.mp4"))
    copy_clip(corpus.clips["mkv_rotated"].path, twins / "twin-\\xff.mp4")  # backslash, x, f, f: valid UTF-8
    ctx = await rig.scan(twins)
    assert counts(ctx) == {"discovered": 2, "probed": 2, "new": 2}
    listed = await rig.listed()
    assert {p for p in listed if p.startswith("twins/")} == {"twins/twin-\\xff.mp4", "twins/twin-\\\\xff.mp4"}
    assert counts(await rig.scan(twins)) == {"discovered": 2, "unchanged": 2}
