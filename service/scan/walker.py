"""Discovery: finding the video files under a root with os.scandir, in a thread, streamed back in batches.

Rules:
- Only names whose extension (case-insensitive) is in the scan's list count; other files are ignored.
- Symbolic links are skipped unless `follow_symlinks`; when followed, a link whose target lies outside the
  allowed roots is recorded as an error and not entered, and each directory is entered once (by (st_dev, st_ino)),
  so link loops (and bind-mount loops) end.
- A directory that cannot be listed, or a matching name that is not a regular file (a FIFO, a socket, a device) or
  vanishes while being looked at, is recorded as a WalkError and the walk goes on.
"""

from __future__ import annotations

import asyncio
import os
import stat
import sys
import threading
from collections.abc import AsyncGenerator, Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from reelscan.service.scan.paths import within_any

# (path, size, mtime_ns): plain tuples, because a rescan of 100,000 files makes 100,000 of them.
FoundFile = tuple[str, int, int]

BATCH_SIZE = 1000
WALK_THREADS = max(2, min(4, os.cpu_count() or 1))


@dataclass(frozen=True, slots=True)
class WalkError:
    path: str
    reason: str
    is_dir: bool  # a directory that could not be read: its subtree is unknown, not empty


@dataclass(slots=True)
class WalkBatch:
    files: list[FoundFile] = field(default_factory=list)
    errors: list[WalkError] = field(default_factory=list)


def extension_of(name: str) -> str:
    """Lower-case extension without the dot; "" for none (and for dot-files such as ".mp4")."""
    dot = name.rfind(".")
    return name[dot + 1 :].lower() if dot > 0 else ""


class _Shared:
    """What the walk threads share: the directories still to list, the directories entered, and the end."""

    def __init__(self, threads: int, stop: threading.Event, emit: Callable[[WalkBatch | BaseException | None], None]):
        self.cond = threading.Condition()
        self.pending: list[str] = []  # a stack: depth first keeps the set of pending directories small
        self.active = 0  # threads listing a directory right now (each may add more)
        self.visited: set[tuple[int, int]] = set()
        self.running = threads
        self.stop = stop
        self.emit = emit

    def take(self) -> str | None:
        """The next directory to list, or None when there is none left and none can appear (or on stop)."""
        with self.cond:
            while not self.pending and self.active and not self.stop.is_set():
                self.cond.wait(0.5)
            if not self.pending or self.stop.is_set():
                self.cond.notify_all()
                return None
            self.active += 1
            return self.pending.pop()

    def listed(self, subdirectories: list[str]) -> None:
        with self.cond:
            self.pending += subdirectories
            self.active -= 1
            self.cond.notify_all()

    def enter(self, st: os.stat_result) -> bool:
        """True the first time a directory (by device and inode) is seen: link and bind-mount loops end."""
        key = (st.st_dev, st.st_ino)
        with self.cond:
            if key in self.visited:
                return False
            self.visited.add(key)
            return True

    def finished(self) -> None:
        """Called by each thread as it ends; the last one signals the end of the walk."""
        with self.cond:
            self.running -= 1
            last = self.running == 0
        if last:
            self.emit(None)


class _Walk:
    """One walk thread: lists directories taken from the shared stack, hands batches to `emit`."""

    def __init__(
        self,
        shared: _Shared,
        recursive: bool,
        extensions: frozenset[str],
        follow_symlinks: bool,
        allow_roots: Sequence[Path],
        batch_size: int,
    ) -> None:
        self.shared = shared
        self.recursive = recursive
        self.extensions = extensions
        self.follow = follow_symlinks
        self.allow_roots = allow_roots
        self.emit = shared.emit
        self.stop = shared.stop
        self.batch_size = batch_size
        self.batch = WalkBatch()

    def run(self) -> None:
        try:
            self._walk()
            if self.batch.files or self.batch.errors:
                self.emit(self.batch)
        except BaseException as error:  # hand anything unexpected to the consumer rather than lose it in a thread
            # Emit first, then stop. `emit` drops everything once `stop` is set, and so does the end-of-walk None
            # the last thread sends: stopping first lost the error and left the consumer waiting on an empty queue
            # forever (the scan hung RUNNING until its job timeout, issue 10). Queued before `stop`, the error
            # reaches the consumer, which raises it; `stop` then ends the other threads at their next directory.
            try:
                self.emit(error)
            finally:
                self.stop.set()
        finally:
            self.shared.finished()

    def _flush_if_full(self) -> None:
        if len(self.batch.files) + len(self.batch.errors) >= self.batch_size:
            self.emit(self.batch)
            self.batch = WalkBatch()

    def _error(self, path: str, reason: str, is_dir: bool) -> None:
        self.batch.errors.append(WalkError(path, reason, is_dir))
        self._flush_if_full()

    def _walk(self) -> None:
        while (directory := self.shared.take()) is not None:
            subdirectories: list[str] = []
            try:
                with os.scandir(directory) as entries:
                    self._list(entries, subdirectories)
            except OSError as error:  # cannot be opened, or listing failed part-way (I/O error, removed)
                self._error(directory, f"cannot read directory: {error.strerror or error}", True)
            finally:
                self.shared.listed(subdirectories)

    def _list(self, entries: Iterator[os.DirEntry[str]], stack: list[str]) -> None:
        # The hot loop of a rescan (once per file of a 100,000-file tree): regular files are recognised from the
        # directory entry's type without a syscall, and only matching names pay for the lstat that gives size and
        # mtime. Everything else (directories, links, special files) takes the slow path in _visit.
        extensions = self.extensions
        files = self.batch.files
        room = self.batch_size - len(files) - len(self.batch.errors)  # entries until the batch is handed over
        for entry in entries:
            name = entry.name
            dot = name.rfind(".")
            wanted = dot > 0 and name[dot + 1 :].lower() in extensions
            try:
                regular = entry.is_file(follow_symlinks=False)
            except OSError:
                regular = False  # type unknown and not stat'able: _visit sorts it out
            if regular:
                if wanted:
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except OSError as error:
                        self._error(entry.path, f"cannot stat: {error.strerror or error}", False)
                        files = self.batch.files  # _error may have handed the batch over
                        room = self.batch_size - len(files) - len(self.batch.errors)
                        continue
                    files.append((entry.path, st.st_size, st.st_mtime_ns))
                    room -= 1
                    if room <= 0:
                        self._flush_if_full()
                        files = self.batch.files
                        room = self.batch_size - len(files) - len(self.batch.errors)
                continue
            self._visit(entry, stack, wanted)
            # Slow path taken: it may have added an entry or handed the batch over.
            files = self.batch.files
            room = self.batch_size - len(files) - len(self.batch.errors)

    def _visit(self, entry: os.DirEntry[str], stack: list[str], wanted: bool) -> None:
        try:
            if entry.is_symlink():
                if self.follow:
                    self._visit_link(entry, stack)
                return
            is_dir = entry.is_dir(follow_symlinks=False)
        except OSError as error:
            # The directory entry does not say what it is and it cannot be stat'ed. If it may be a directory, its
            # subtree is unknown (is_dir), so the library's files below it are not taken for gone.
            self._error(entry.path, f"cannot stat: {error.strerror or error}", not wanted)
            return
        if is_dir:
            if not self.recursive:
                return
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError as error:
                # Listed but not stat'able (a parent without search permission, a path beyond PATH_MAX): a
                # directory that cannot be read, not a failed file.
                self._error(entry.path, f"cannot read directory: {error.strerror or error}", True)
                return
            if self.shared.enter(st):
                stack.append(entry.path)
            return
        if not wanted:
            return
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError as error:
            self._error(entry.path, f"cannot stat: {error.strerror or error}", False)
            return
        self._add_file(entry.path, st)

    def _visit_link(self, entry: os.DirEntry[str], stack: list[str]) -> None:
        try:
            target = os.path.realpath(entry.path)
        except (RecursionError, ValueError) as error:
            # A hostile chain of links (realpath recurses per link up to Python 3.12) costs this entry, not the scan.
            self._error(entry.path, f"symbolic link cannot be resolved ({type(error).__name__}); not followed", False)
            return
        if not within_any(target, self.allow_roots):
            if entry.is_dir() or extension_of(entry.name) in self.extensions:
                self._error(entry.path, "symbolic link leads outside the allowed roots; not followed", False)
            return
        try:
            st = os.stat(entry.path)
        except OSError as error:
            if extension_of(entry.name) in self.extensions:
                self._error(entry.path, f"broken symbolic link: {error.strerror or error}", False)
            return
        if stat.S_ISDIR(st.st_mode):
            if self.recursive and self.shared.enter(st):
                stack.append(entry.path)
            return
        if extension_of(entry.name) in self.extensions:
            self._add_file(entry.path, st)

    def _add_file(self, path: str, st: os.stat_result) -> None:
        if not stat.S_ISREG(st.st_mode):
            # Opening a FIFO blocks until a writer comes; a device may never end. Not media files either way.
            self._error(path, f"not a regular file ({_kind(st.st_mode)})", False)
            return
        self.batch.files.append((path, st.st_size, st.st_mtime_ns))
        self._flush_if_full()


# ---- listing in worker processes ---------------------------------------------------------------------------------
#
# Why: an unchanged rescan is bound by Python's per-entry cost of scandir + lstat, and threads of one process share
# one GIL, so two walk threads measure the same as one on a local disk. The probe workers are separate processes,
# up and idle during a rescan: they list directories (the same _Walk code, so the same rules) on every core at
# once, while the server only schedules directories, keeps the set of directories entered (so link and bind-mount
# loops still end, across workers) and compares with the library.

# A listing's reply is cut into frames of this many entries, so that no frame nears the protocol's limit and the
# server decodes a few ms at a time.
LIST_FRAME_ENTRIES = 5000
# Directories per request at most: enough to amortise a round trip on trees of tiny directories.
LIST_MAX_DIRECTORIES = 64


class _Recorder:
    """Stands in for _Shared in a worker process (list_directories): it enters every directory it is shown and
    records its (st_dev, st_ino); the server decides which of them are new."""

    def __init__(self) -> None:
        self.entered: list[tuple[int, int]] = []
        self.stop = threading.Event()

    def enter(self, st: os.stat_result) -> bool:
        self.entered.append((st.st_dev, st.st_ino))
        return True

    def emit(self, item: object) -> None:  # pragma: no cover - batches are collected whole (no size limit)
        raise AssertionError("list_directories collects its batch whole")


def list_directories(
    directories: Sequence[str], spec: Mapping[str, Any]
) -> tuple[list[FoundFile], list[WalkError], list[tuple[str, int, int]]]:
    """Lists `directories` (not their subdirectories) by the walk's rules; runs in a probe worker. Returns the files
    found, the errors, and the subdirectories to enter as (path, st_dev, st_ino)."""
    recorder = _Recorder()
    lister = _Walk(
        recorder,  # type: ignore[arg-type]
        bool(spec["recursive"]),
        frozenset(spec["extensions"]),
        bool(spec["follow_symlinks"]),
        [Path(r) for r in spec["allow_roots"]],
        sys.maxsize,
    )
    subdirectories: list[tuple[str, int, int]] = []
    for directory in directories:
        stack: list[str] = []
        try:
            with os.scandir(directory) as entries:
                lister._list(entries, stack)
        except OSError as error:  # cannot be opened, or listing failed part-way (I/O error, removed)
            lister._error(directory, f"cannot read directory: {error.strerror or error}", True)
        subdirectories += ((path, dev, ino) for path, (dev, ino) in zip(stack, recorder.entered, strict=True))
        recorder.entered.clear()
    return lister.batch.files, lister.batch.errors, subdirectories


class Lister(Protocol):
    """Lists directories out of process (the PyAV probe pool)."""

    @property
    def listers(self) -> int:
        """Listings worth keeping in flight."""
        ...

    async def list_directories(
        self, directories: list[str], spec: Mapping[str, Any]
    ) -> tuple[list[FoundFile], list[WalkError], list[tuple[str, int, int]]]: ...


async def _walk_in_workers(
    root: str, lister: Lister, spec: Mapping[str, Any], batch_size: int
) -> AsyncGenerator[WalkBatch, None]:
    try:
        st = await asyncio.to_thread(os.stat, root)
    except OSError as error:
        yield WalkBatch(errors=[WalkError(root, f"cannot read directory: {error.strerror or error}", True)])
        return
    visited = {(st.st_dev, st.st_ino)}
    pending = [root]  # a stack: depth first keeps the set of pending directories small
    inflight: set[asyncio.Task[tuple[list[FoundFile], list[WalkError], list[tuple[str, int, int]]]]] = set()
    limit = max(1, lister.listers)
    try:
        while pending or inflight:
            while pending and len(inflight) < limit:
                take = max(1, min(LIST_MAX_DIRECTORIES, len(pending) // limit))
                directories = pending[-take:]
                del pending[-take:]
                inflight.add(asyncio.ensure_future(lister.list_directories(directories, spec)))
            done, _ = await asyncio.wait(inflight, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                inflight.discard(task)
                files, errors, subdirectories = task.result()
                for path, dev, ino in subdirectories:
                    if (dev, ino) not in visited:
                        visited.add((dev, ino))
                        pending.append(path)
                for start in range(0, max(len(files), 1), batch_size):
                    chunk = WalkBatch(files[start : start + batch_size], errors if start == 0 else [])
                    if chunk.files or chunk.errors:
                        yield chunk
    finally:
        for task in inflight:
            task.cancel()
        if inflight:
            await asyncio.gather(*inflight, return_exceptions=True)


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISFIFO, "named pipe"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
        (stat.S_ISDIR, "directory"),
    ):
        if test(mode):
            return name
    return "special file"


async def walk(
    root: str,
    *,
    recursive: bool = True,
    extensions: Collection[str],
    follow_symlinks: bool = False,
    allow_roots: Sequence[Path] = (),
    batch_size: int = BATCH_SIZE,
    threads: int = WALK_THREADS,
    lister: Lister | None = None,
) -> AsyncGenerator[WalkBatch, None]:
    """Yields batches of found files and errors as the walk (in threads) produces them, in no particular order.

    Several threads list directories in parallel, for file systems where a stat is slow (network shares: each
    lstat waits on the server and releases the GIL meanwhile). On a local disk with warm caches the walk is
    bound by Python itself and two threads measure the same as one. Closing the generator early (or
    cancelling its consumer) stops the threads at their next directory or batch.

    With a `lister` (the probe pool), worker processes list the directories instead of threads (see
    list_directories): the same rules, on every core.
    """
    if lister is not None:
        spec = {
            "recursive": recursive,
            "extensions": sorted(e.lower().lstrip(".") for e in extensions),
            "follow_symlinks": follow_symlinks,
            "allow_roots": [str(r) for r in allow_roots],
        }
        async for batch in _walk_in_workers(root, lister, spec, batch_size):
            yield batch
        return
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[WalkBatch | BaseException | None] = asyncio.Queue()
    stop = threading.Event()

    def emit(item: WalkBatch | BaseException | None) -> None:
        if stop.is_set():
            return
        try:
            loop.call_soon_threadsafe(queue.put_nowait, item)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            stop.set()

    shared = _Shared(threads, stop, emit)
    try:
        st = await asyncio.to_thread(os.stat, root)
    except OSError as error:
        yield WalkBatch(errors=[WalkError(root, f"cannot read directory: {error.strerror or error}", True)])
        return
    shared.enter(st)
    shared.pending.append(root)
    wanted = frozenset(e.lower().lstrip(".") for e in extensions)
    for _ in range(threads):
        walker = _Walk(shared, recursive, wanted, follow_symlinks, allow_roots, batch_size)
        threading.Thread(target=walker.run, name="reelscan-walk", daemon=True).start()
    try:
        while True:
            item = await queue.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
