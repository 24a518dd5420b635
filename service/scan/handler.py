"""The scan job: re-check the root, discover, probe what changed, store, mark what vanished.

Stages, as watchers see them:
- DISCOVERING: walking the tree; `done` counts files found, the total is unknown (progress holds).
- PROBING: `done`/`total` over the files that need a probe (new, changed, or all with force); current_item is the
  file just started. Unchanged files, known-broken ones (last probe failed) included, are neither probed nor
  rewritten.
- FINALIZING: the last batch is written and files gone from disk are marked missing.
Result counts are published as they change, so a cancelled or timed-out scan keeps accurate partial counts.

Counting (reelscan.v1.ScanResult): discovered = new + updated + unchanged + failed, plus files not reached when a
scan is cut short. `failed` covers files that could not be read (walk) or probed by this scan; `probed` = new +
updated + probe failures. `unchanged_failed` is the part of `unchanged` whose last probe had failed: known-broken
files skipped without a probe (no scan error this time; not in `failed`). Unreadable directories are scan errors
too, but not files, so not in `failed`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from reelscan.service.config import Settings
from reelscan.service.errors import FailedPrecondition
from reelscan.service.jobs.handler import JobContext
from reelscan.service.jobs.model import Stage
from reelscan.service.scan import paths, shards
from reelscan.service.scan.batch_writer import BatchWriter
from reelscan.service.scan.library_model import KnownFile, ProbedFile, ScanErrorRecord, library_path
from reelscan.service.scan.library_store import LibraryStore
from reelscan.service.scan.media_info import MediaInfo, ProbeErrorKind, ProbeFailure
from reelscan.service.scan.prober import Prober, ProberUnavailable, probe_stream
from reelscan.service.scan.spec import ScanSpec
from reelscan.service.scan.walker import WalkBatch, extension_of, walk
from reelscan.service.telemetry.events import NO_TELEMETRY, Telemetry

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Todo:
    fs_path: str  # as the file system knows it (may hold surrogate escapes)
    path: str  # as the library stores it
    size: int
    mtime_ns: int
    known: bool


_gc_pauses = 0  # discoveries running with the cyclic GC paused (several scans may run at once)


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pauses Python's cyclic garbage collector while a discovery runs. A 100,000-file rescan creates ~300,000
    container objects in under a second (the known rows, the walk's entries, the dict), none of them cyclic, and
    the collector traverses the growing heap again and again meanwhile: ~10% of the rescan, measured. Collection
    resumes (and catches up) when the last discovery running ends."""
    global _gc_pauses
    if _gc_pauses == 0 and not gc.isenabled():
        yield  # someone else turned it off: leave it to them
        return
    _gc_pauses += 1
    gc.disable()
    try:
        yield
    finally:
        _gc_pauses -= 1
        if _gc_pauses == 0:
            gc.enable()


class ScanJobHandler:
    """JobHandler for JobKind.SCAN."""

    def __init__(
        self, library: LibraryStore, prober: Prober, settings: Settings, telemetry: Telemetry = NO_TELEMETRY
    ) -> None:
        self._library = library
        self._prober = prober
        self._settings = settings
        self._telemetry = telemetry

    async def run(self, ctx: JobContext) -> None:
        spec = ScanSpec.from_mapping(ctx.spec)
        root = await paths.revalidate_scan_root(spec.path, self._settings.allow_roots)
        scan = _ScanRun(ctx, spec, str(root), self._library, self._prober, self._settings, self._telemetry)
        if ctx.parent_id:
            await scan.execute_shard()
            return
        plan = await ctx.children.payload()
        if plan is not None:  # this sharded scan ran before (its server died or stopped): adopt its shards
            await scan.adopt_shards(shards.Plan.from_payload(plan))
            return
        await scan.execute()

    async def on_recovered(self, job_id: str, spec: Mapping[str, Any]) -> None:
        # Nothing to undo: every batch is one transaction, and scans are idempotent (a re-run finds the files the
        # interrupted run stored as unchanged). Scan errors are unique per (job, path), so a re-run adds no
        # duplicates.
        return None

    async def on_deleted(self, job_id: str) -> None:
        await self._library.delete_scan_errors(job_id)


class _ScanRun:
    def __init__(
        self,
        ctx: JobContext,
        spec: ScanSpec,
        root: str,
        library: LibraryStore,
        prober: Prober,
        settings: Settings,
        telemetry: Telemetry,
    ) -> None:
        self.ctx = ctx
        self.spec = spec
        self.root = root
        self.library = library
        self.prober = prober
        self.settings = settings
        self.telemetry = telemetry
        # Fenced: once this server has lost the job, none of its batches lands (a successor writes them instead).
        self.writer = BatchWriter(library, telemetry=telemetry, fence=ctx.claim)
        # A shard's scan errors are its parent's: ListScanErrors of the parent lists every shard's.
        self.errors_job_id = ctx.parent_id or ctx.job_id
        self.counts = dict.fromkeys(
            ("discovered", "probed", "new", "updated", "unchanged", "unchanged_failed", "missing", "failed"), 0
        )

    def _publish(self) -> None:
        self.ctx.set_result(self.counts)

    def _error(self, path: str, kind: ProbeErrorKind, reason: str) -> None:
        self.writer.add_error(ScanErrorRecord(self.errors_job_id, path, kind, reason, time.time()))

    async def execute(self) -> None:
        self._publish()
        # The library's view of the root loads while the walk starts: both are I/O in threads of their own.
        known_task = asyncio.create_task(self.library.load_known(self.root, self.spec.recursive))
        try:
            todo, unseen, unknown_dirs = await self._discover(known_task)
            gone = self._gone(unseen, unknown_dirs)
            if shards.wanted(self.spec.sharding, len(todo), self.settings.shard_threshold):
                await asyncio.shield(self.writer.close())  # the walk's errors, before the shards add theirs
                await self._coordinate(await self._spawn_shards(todo, gone))
                return
            await self._probe(todo)
            self.ctx.report(stage=Stage.FINALIZING)
            await asyncio.shield(self.writer.close())
            await self._mark_missing([entry[0] for entry in gone if not entry[3]], len(gone))
        finally:
            if not known_task.done():
                known_task.cancel()
            # Cancelled or failed: keep what was probed (the writer's own task finishes the transaction).
            await asyncio.shield(self.writer.close())
            self._publish()

    # ---- sharded scans (shards.py) ---------------------------------------------------------------------------

    async def _spawn_shards(self, todo: list[_Todo], gone: list[KnownFile]) -> shards.Plan:
        todo.sort(key=lambda item: item.path)
        ranges = shards.cut([item.path for item in todo], self.settings.shard_size)
        plan = shards.Plan(
            counts=dict(self.counts),
            files_to_probe=len(todo),
            missing=[entry[0] for entry in gone if not entry[3]],
            missing_count=len(gone),
        )
        prefix = self.root.rstrip("/") + "/"
        payloads = [{"files": [_shard_row(item, prefix) for item in todo[a:b]]} for a, b in ranges]
        await self.ctx.children.spawn(plan.to_payload(), payloads)
        log.info("scan %s of %s: %d files to probe in %d shards", self.ctx.job_id, self.root, len(todo), len(ranges))
        return plan

    async def _coordinate(self, plan: shards.Plan) -> None:
        def publish(counts: Mapping[str, int]) -> None:
            self.counts.update(counts)
            self._publish()

        await shards.coordinate(self.ctx, plan, publish)
        self.ctx.report(stage=Stage.FINALIZING)
        await self._mark_missing(plan.missing, plan.missing_count)

    async def adopt_shards(self, plan: shards.Plan) -> None:
        """A sharded scan taken over (or re-run after a shutdown): its plan and shards are as the first run left
        them; only the coordination is redone."""
        try:
            await self._coordinate(plan)
        finally:
            self._publish()

    async def execute_shard(self) -> None:
        """One shard of a sharded scan: probe the files its parent gave it (found and compared by the parent's
        discovery), store them; marking files missing is the parent's."""
        payload = await self.ctx.children.payload()
        if payload is None:
            raise FailedPrecondition(f"shard {self.ctx.job_id} has no files stored (was its parent deleted?)")
        prefix = self.root.rstrip("/") + "/"
        todo = [_from_shard_row(row, prefix) for row in payload["files"]]
        self.counts["discovered"] = len(todo)
        self._publish()
        try:
            await self._probe(todo)
            self.ctx.report(stage=Stage.FINALIZING)
            await asyncio.shield(self.writer.close())
        finally:
            await asyncio.shield(self.writer.close())
            self._publish()

    async def _discover(
        self, known_task: asyncio.Task[dict[str, KnownFile]]
    ) -> tuple[list[_Todo], dict[str, KnownFile], list[str]]:
        """Walks the root and sorts what it finds into files to probe and unchanged ones. Returns the files to
        probe, the library entries the walk did not find, and the directories it could not read."""
        self.ctx.report(stage=Stage.DISCOVERING, done=0, total=0)
        todo: list[_Todo] = []
        unknown_dirs: list[str] = []
        batches = walk(
            self.root,
            recursive=self.spec.recursive,
            extensions=self.spec.extensions,
            follow_symlinks=self.spec.follow_symlinks,
            allow_roots=self.settings.allow_roots,
            # The probe workers list directories on every core (the server's threads share one GIL).
            lister=self.prober if self.settings.walk_in_workers and hasattr(self.prober, "list_directories") else None,  # type: ignore[arg-type]
        )
        # aclosing: a cancelled scan stops its walk threads now, not whenever the generator is collected.
        async with contextlib.aclosing(batches):
            with _gc_paused():
                await self._sort(batches, known_task, todo, unknown_dirs)
                known = await known_task
        return todo, known, unknown_dirs

    async def _sort(
        self,
        batches: AsyncIterator[WalkBatch],
        known_task: asyncio.Task[dict[str, KnownFile]],
        todo: list[_Todo],
        unknown_dirs: list[str],
    ) -> None:
        counts = self.counts
        force = self.spec.force
        known: dict[str, KnownFile] | None = None
        async for batch in batches:
            if known is None:
                known = await known_task
            # Entries found are popped from `known`, so what is left at the end is what the walk did not find.
            # This loop runs once per file of a 100,000-file rescan: locals and no per-file method calls.
            pop = known.pop
            unchanged = unchanged_failed = 0
            for fs_path, size, mtime_ns in batch.files:
                path = fs_path if fs_path.isascii() and "\\" not in fs_path else library_path(fs_path)
                old = pop(path, None)
                if old is not None and old[1] == size and old[2] == mtime_ns and not force:
                    unchanged += 1
                    if old[4]:  # known broken: its last probe failed, and the same file would fail again
                        unchanged_failed += 1
                    if old[3]:  # was missing
                        self.writer.add_unmissing(path)  # back on disk as it was: no probe needed
                else:
                    todo.append(_Todo(fs_path, path, size, mtime_ns, old is not None))
            counts["discovered"] += len(batch.files)
            self.telemetry.files_walked(len(batch.files))
            counts["unchanged"] += unchanged
            counts["unchanged_failed"] += unchanged_failed
            for error in batch.errors:
                path = library_path(error.path)
                self._error(path, ProbeErrorKind.UNREADABLE, error.reason)
                if error.is_dir:
                    unknown_dirs.append(path)  # its files are unknown, not gone
                else:
                    pop(path, None)
                    counts["discovered"] += 1
                    counts["failed"] += 1
            self.ctx.report(done=counts["discovered"])
            self._publish()

    async def _probe(self, todo: list[_Todo]) -> None:
        """Probes `todo` through the prober's batched stream and stores each outcome. Progress moves once per
        batch of results (a worker's reply frame: a few files, a few ms), so watchers see it move smoothly
        without a report per file."""
        self.ctx.report(stage=Stage.PROBING, done=0, total=len(todo))
        if not todo:
            return
        done = 0
        store = self._store
        # The stream hands files to workers in order, so the next not-yet-answered file is about where the
        # workers are: shown as the current item.
        self.ctx.report(current_item=todo[0].path)
        try:
            batches = probe_stream(self.prober, [item.fs_path for item in todo])
            # aclosing: a cancelled scan closes the stream at once, which kills the probes it has in flight.
            async with contextlib.aclosing(batches):
                async for batch in batches:
                    for index, outcome, seconds in batch:
                        store(todo[index], outcome, seconds)
                    done += len(batch)
                    if done < len(todo):
                        self.ctx.report(done=done, current_item=todo[done].path)
                    else:
                        self.ctx.report(done=done)
                    self._publish()
        except ProberUnavailable as error:
            # Surface the cause itself as the job's error message.
            raise FailedPrecondition(f"cannot probe files: {error}") from error

    def _store(self, item: _Todo, outcome: MediaInfo | ProbeFailure, seconds: float) -> None:
        counts = self.counts
        counts["probed"] += 1
        if isinstance(outcome, MediaInfo):
            self.telemetry.probe_done(seconds)
            self.writer.add_probed(ProbedFile(item.path, outcome.size, outcome.mtime_ns, outcome))
            counts["updated" if item.known else "new"] += 1
            return
        self.telemetry.probe_failed(item.path, outcome.kind.name.lower(), outcome.reason, seconds)
        # A failed probe is stored too, so the unchanged file is not probed again by the next scan.
        self.writer.add_probed(ProbedFile(item.path, item.size, item.mtime_ns, None, outcome.reason, outcome.kind))
        self._error(item.path, outcome.kind, outcome.reason)
        counts["failed"] += 1

    def _gone(self, unseen: dict[str, KnownFile], unknown_dirs: list[str]) -> list[KnownFile]:
        """The library entries this scan could have found and did not: files gone from disk (empty when the scan
        found nothing at all, see below). Decided once, after discovery, for the whole scan."""
        extensions = frozenset(self.spec.extensions)
        hidden = tuple(d.rstrip("/") + "/" for d in unknown_dirs)
        gone = [
            entry
            for path, entry in unseen.items()
            # Only what this scan could have found: its extensions, outside directories it could not read.
            if extension_of(os.path.basename(path)) in extensions and not (hidden and path.startswith(hidden))
        ]
        if gone and self.counts["discovered"] == 0 and any(not entry[3] for entry in gone):
            # Nothing at all on disk where the library had files: far more likely an unmounted or emptied volume
            # than every file deleted. Marking the whole library missing would be the wrong kind of loud.
            log.warning(
                "scan of %s found no files where the library has %d; not marking them missing (unmounted?)",
                self.root,
                len(gone),
            )
            return []
        return gone

    async def _mark_missing(self, paths_to_mark: Sequence[str], gone_count: int) -> None:
        """Marks `paths_to_mark` missing; `gone_count` also counts entries that were missing already."""
        if not gone_count:
            return
        self.counts["missing"] = gone_count
        started = time.perf_counter()
        await self.library.mark_missing(paths_to_mark, fence=self.ctx.claim)
        self.telemetry.db_write("library", "mark_missing", time.perf_counter() - started)


def _shard_row(item: _Todo, root_prefix: str) -> list[Any]:
    """A file to probe as a shard's payload stores it: [path under the root, size, mtime_ns, known 0/1]. JSON
    keeps a name that is not UTF-8 exactly (its surrogate escapes become \\u escapes and come back the same)."""
    return [item.fs_path[len(root_prefix) :], item.size, item.mtime_ns, int(item.known)]


def _from_shard_row(row: list[Any], root_prefix: str) -> _Todo:
    fs_path = root_prefix + str(row[0])
    return _Todo(fs_path, library_path(fs_path), int(row[1]), int(row[2]), bool(row[3]))
