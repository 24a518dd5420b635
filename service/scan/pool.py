"""A pool of long-lived PyAV probe worker processes, fed in batches.

Why processes, and why not ProcessPoolExecutor: FFmpeg runs native code on untrusted files, so a crash or an
endless loop must cost one file, not the server and not the rest of the scan. A ProcessPoolExecutor marks itself
broken when any worker dies and has no way to kill one hung task. Here each worker is owned individually: a probe
that overruns its timeout, or whose worker dies, fails alone; that worker is SIGKILLed and a fresh one is spawned.

Each worker is a fresh interpreter (spawn semantics: forking a server that runs gRPC and SQLite threads is unsafe),
started as an asyncio subprocess running probe_worker.main. Not multiprocessing's spawn context: that re-imports
the parent's __main__ in every worker, which turns any embedding script without a main guard into a crash loop
(seen in practice), and its Connection pipes are blocking. asyncio subprocess pipes are non-blocking, so the event
loop never waits on a worker.

Batches (probe_worker.py has the wire format): a scan hands the pool all its files at once (`probe_stream`); the
pool keeps each worker's queue filled up to `threads` running requests plus about PREFETCH_WORK_S of probing
queued (2 to PREFETCH requests, by the probe time workers report), with one frame per refill, and the worker
answers in frames of several results. Per file, the server pays a dict entry and a share of a frame, not a frame,
a future and a task wake-up of its own. Why the queue is measured in time: a worker takes requests in arrival
order, so a scan that starts while another one's requests fill the queues waits for those first. Fast probes need
a deep queue to keep a worker busy across a reply's round trip; slow ones (slow storage, --probe-delay) need only
a couple of requests, and a deeper queue would only make the next scan wait.

Per-file timeout, exactly: a worker runs `threads` probes at once and takes requests in arrival order, so request
number k of a worker has started once k - threads + 1 of them were answered. The pool starts a request's clock
when it was sent into a free thread, or when the reply that freed a thread for it arrived, which is never before
the worker really started it; the oldest running request is checked against the timeout.

Crash isolation, exactly: a worker that times out is killed and only the timed-out file fails; a worker that dies
(or sends garbage) fails no file at once. Requests it had not started are re-sent as if nothing happened. The
ones it was running are suspects: each is re-sent alone, to a worker with nothing else in flight, and a file is
blamed (PROBE_CRASHED) only when it takes down a second worker while alone on it. A worker can die just before a
file (OOM killer, an operator's kill) without the pool having seen it; that costs a retry, not the file.

Cancel: closing a stream (a cancelled scan) SIGKILLs every worker holding one of its files at once, and re-sends
the other streams' files those workers held.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import sys
import time
from collections import deque
from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import Any

from reelscan.service.scan.media_info import MediaInfo, ProbeErrorKind, ProbeFailure
from reelscan.service.scan.probe_worker import FrameDecoder, ProtocolError, encode_frame
from reelscan.service.scan.prober import ProbeResult, ProberUnavailable
from reelscan.service.scan.walker import FoundFile, WalkError
from reelscan.service.telemetry.events import NO_TELEMETRY, Telemetry

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 60.0
# Requests queued in a worker beyond its running ones: about PREFETCH_WORK_S of probing, enough to cover a reply
# frame's round trip (the worker gathers results for a few ms) so it never waits for work, little enough that the
# end of a scan stays balanced and another scan's first files wait little. Bounded by MIN_PREFETCH and PREFETCH.
PREFETCH_WORK_S = 0.1
MIN_PREFETCH = 2
PREFETCH = 32
# Weight of each reported probe time in the typical one (a moving average of logarithms: a geometric mean, so one
# slow file among fast ones does not empty the queues for the next hundred).
PROBE_TIME_WEIGHT = 0.1
_WORKER_COMMAND = "from reelscan.service.scan.probe_worker import main; main()"
# Consecutive failed start-ups after which probes fail fast instead of waiting for a worker.
BROKEN_AFTER_FAILURES = 3


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "unknown exit status"
    if code < 0:
        return f"killed by signal {-code}"
    return f"exit code {code}"


class _Item:
    """One file of one stream, while the pool owns it."""

    __slots__ = ("crashes", "index", "path", "pos", "sent", "started", "stream")

    def __init__(self, stream: _Stream, index: int, path: str) -> None:
        self.stream = stream
        self.index = index  # position in the caller's list
        self.path = path
        self.crashes = 0  # workers that died while it was running on them
        self.pos = 0  # its number among the requests sent to its current worker
        self.sent = 0.0  # when it was (last) sent, for the probe-time metric
        self.started: float | None = None  # when its worker (at the latest) started it


class _Stream:
    """One caller's files: what is still to send, and results not yet handed to the caller."""

    def __init__(self, paths: Sequence[str]) -> None:
        self.pending: deque[_Item] = deque(_Item(self, i, p) for i, p in enumerate(paths))
        self.results: list[ProbeResult] = []
        self.remaining = len(paths)
        self.wake = asyncio.Event()
        self.closed = False
        self.error: BaseException | None = None

    def deliver(self, item: _Item, outcome: MediaInfo | ProbeFailure, now: float) -> None:
        if self.closed:
            return
        self.results.append((item.index, outcome, now - item.sent))
        self.remaining -= 1
        self.wake.set()

    def fail(self, error: BaseException) -> None:
        if not self.closed and self.error is None:
            self.error = error
            self.wake.set()


class _ListerDied(Exception):
    """The worker listing these directories died: list them again elsewhere."""


class _Listing:
    """One list_directories request while its worker answers it (in several frames)."""

    __slots__ = ("directories", "errors", "files", "future")

    def __init__(self) -> None:
        self.files: list[FoundFile] = []
        self.errors: list[WalkError] = []
        self.directories: list[tuple[str, int, int]] = []
        self.future: asyncio.Future[None] = asyncio.get_running_loop().create_future()


class _Worker:
    """One worker process, its pipes, the requests it holds and the task that reads its replies. Event loop only."""

    def __init__(self, pool: ProbePool) -> None:
        self._pool = pool
        # --probe-delay (tests, benchmarks) stands for CPU work, which threads of one process do not overlap: with
        # a delay, each worker probes one file at a time, so slowed-down scans keep the pace tests rely on.
        self.max_threads = 1 if pool.probe_delay_s > 0 else pool.threads
        self._args = (f"{pool.probe_delay_s:g}", "1" if pool.fault_injection else "0", str(self.max_threads))
        # Threads it runs: one at start, more when it says so ({"threads": n}, only ever up; probe_worker._grow).
        self.threads = 1
        self._timeout_s = pool.timeout_s
        self.process: asyncio.subprocess.Process | None = None
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._reader: asyncio.Task[None] | None = None
        # Requests sent and not answered, by id, in the order sent (which is the order the worker starts them).
        self.inflight: dict[int, _Item] = {}
        self.listings: dict[int, _Listing] = {}  # directory listings it is answering (walker.list_directories)
        self._sent = 0
        self._answered = 0
        self._timer: asyncio.TimerHandle | None = None
        self.solo = False  # holds one suspect file and nothing else
        self.draining = False  # gets no new files until empty, so that a suspect can run alone on it
        self.dead = False
        self.death_reason = ""
        # Why it died, for the log and metrics: cause (timeout, crash, malformed, cancel) and the file it was on.
        self.death_cause = ""
        self.death_file = ""
        self._reap_task: asyncio.Future[int | None] | None = None

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _WORKER_COMMAND,
            *self._args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=None,  # FFmpeg's own complaints, if any, go to the server's log stream
            # Its own session: a terminal's Ctrl-C reaches the server, which then closes the pool in order.
            start_new_session=True,
        )
        self._reader = asyncio.get_running_loop().create_task(self._read_replies(), name="reelscan-probe-reader")

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    @property
    def live(self) -> bool:
        return self.ready.done() and not self.dead

    @property
    def window(self) -> int:
        """How many requests it may hold: one per thread, plus the pool's prefetch for that many threads."""
        return self.threads + self._pool.prefetch(self.threads)

    async def _read_replies(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        stdout = self.process.stdout
        decoder = FrameDecoder()
        try:
            while True:
                data = await stdout.read(1 << 18)
                if not data:
                    self.die("exited")
                    return
                for message in decoder.feed(data):
                    self._dispatch(message)
                    if self.dead:
                        return
        except ProtocolError as error:
            self.kill(f"sent a malformed reply ({error})", cause="malformed")
        except OSError as error:
            self.die(f"reply pipe failed: {error}")

    def _dispatch(self, message: dict[str, Any]) -> None:
        if "ready" in message:
            if not self.ready.done():
                self.ready.set_result(None)
                self._pool.changed()
            return
        if "listed" in message:
            self._listed(message)
            return
        if "threads" in message:
            self._grew(message["threads"])
            return
        results = message.get("results")
        if not isinstance(results, list):
            self.kill("sent a frame without results", cause="malformed")
            return
        now = time.perf_counter()
        done: list[tuple[_Item, MediaInfo | ProbeFailure]] = []
        for result in results:
            try:
                request_id, kind, payload, seconds = result
                took = float(seconds)
                item = self.inflight.pop(request_id)  # last: a reply refused here leaves its request in flight
            except (KeyError, TypeError, ValueError):
                self.kill("answered a request it was not working on", cause="malformed")
                self._pool.deliver(done, now)  # what it answered well before this counts
                return
            try:
                if kind == "info":
                    outcome: MediaInfo | ProbeFailure = MediaInfo.from_json(payload)
                else:
                    outcome = ProbeFailure(ProbeErrorKind(int(payload[0])), str(payload[1]))
            except (KeyError, IndexError, TypeError, ValueError) as error:
                # This reply was that file's: it costs that file (its probe result cannot be trusted) and the worker.
                reason = "probe worker sent a malformed reply; worker killed"
                done.append((item, ProbeFailure(ProbeErrorKind.PROBE_CRASHED, reason)))
                self.kill(f"sent a malformed reply ({error})", cause="malformed", file=item.path)
                self._pool.deliver(done, now)
                return
            done.append((item, outcome))
            self._pool.probe_took(took)
        self._answered += len(done)
        # Every answer freed a thread for the next queued request: its clock starts now (at the latest).
        for item in itertools.islice(self.inflight.values(), self.threads):
            if item.started is None:
                item.started = now
        if not self.inflight:
            self.solo = False
        self._arm_timer()
        self._pool.settle(self, done, now)

    def _grew(self, threads: object) -> None:
        if not isinstance(threads, int) or not self.threads < threads <= self.max_threads:
            self.kill(f"announced {threads!r} probe threads", cause="malformed", suspects=False)
            return
        self.threads = threads
        # The worker said so before letting the new threads take requests: their clocks start now at the latest.
        now = time.perf_counter()
        for item in itertools.islice(self.inflight.values(), self.threads):
            if item.started is None:
                item.started = now
        self._arm_timer()
        self._pool.changed()

    def _listed(self, message: dict[str, Any]) -> None:
        listing = self.listings.get(message["listed"])
        if listing is None:  # its walk was closed (a cancelled scan): nobody wants it
            return
        try:
            if "failed" in message:
                del self.listings[message["listed"]]
                listing.future.set_exception(RuntimeError(str(message["failed"])))
                return
            listing.files += message.get("files", ())
            listing.errors += (WalkError(str(p), str(r), bool(d)) for p, r, d in message.get("errors", ()))
            listing.directories += ((str(p), int(dev), int(ino)) for p, dev, ino in message.get("dirs", ()))
        except (TypeError, ValueError) as error:
            self.kill(f"sent a malformed listing ({error})", cause="malformed", suspects=False)
            return
        if not message.get("more"):
            del self.listings[message["listed"]]
            if not listing.future.done():
                listing.future.set_result(None)

    def send_listing(self, request_id: int, directories: list[str], spec: Mapping[str, Any]) -> _Listing:
        assert self.process is not None and self.process.stdin is not None
        if self.dead or self.process.stdin.is_closing():
            raise _ListerDied()
        listing = _Listing()
        self.listings[request_id] = listing
        self.process.stdin.write(encode_frame({"list": request_id, "dirs": directories, "spec": dict(spec)}))
        return listing

    def send(self, items: list[_Item]) -> bool:
        """Queues requests on this worker in one frame; False (nothing queued) if its pipe is closed."""
        assert self.process is not None and self.process.stdin is not None
        if self.dead or self.process.stdin.is_closing():
            return False
        now = time.perf_counter()
        batch = []
        free = self._answered + self.threads  # requests numbered below this have a thread of their own
        for item in items:
            request_id = self._pool.next_id()
            item.pos = self._sent
            self._sent += 1
            item.sent = now
            item.started = now if item.pos < free else None
            self.inflight[request_id] = item
            batch.append((request_id, item.path))
        # A non-blocking write into the transport's buffer.
        self.process.stdin.write(encode_frame({"batch": batch}))
        self._arm_timer()
        return True

    def _arm_timer(self) -> None:
        """Schedules a check of the oldest running request's deadline (the earliest: clocks start in order)."""
        if self._timer is not None or self.dead or not self.inflight:
            return
        head = next(iter(self.inflight.values()))
        if head.started is not None:
            loop = asyncio.get_running_loop()
            delay = head.started + self._timeout_s - time.perf_counter()
            self._timer = loop.call_later(max(0.0, delay), self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if self.dead or not self.inflight:
            return
        request_id, head = next(iter(self.inflight.items()))
        if head.started is None or time.perf_counter() - head.started < self._timeout_s:
            self._arm_timer()  # the file it was set for was answered; this is the next one's
            return
        del self.inflight[request_id]
        # The timed-out file is answered; the others it held did nothing wrong (re-sent, not suspected).
        self.kill(f"probe timed out after {self._timeout_s:g}s", cause="timeout", file=head.path, suspects=False)
        reason = f"probe did not finish within {self._timeout_s:g} s; worker killed"
        self._pool.deliver([(head, ProbeFailure(ProbeErrorKind.PROBE_TIMEOUT, reason))], time.perf_counter())

    def running(self) -> list[_Item]:
        """The requests its threads are on (as far as the pool can tell)."""
        return [item for item in self.inflight.values() if item.started is not None][: self.threads]

    def die(self, reason: str, cause: str = "crash", file: str | None = None, suspects: bool = True) -> None:
        """Marks it dead and hands its requests back to the pool: the running ones as suspects when `suspects`
        (it died on its own), all as plain re-sends otherwise (a timeout, a cancel)."""
        if self.dead:
            return
        self.dead = True
        running = self.running()
        self.death_reason = reason
        self.death_cause = cause
        # The file it was on; when it died running several, the pool cannot tell which: all of them, in order.
        self.death_file = file if file is not None else "; ".join(item.path for item in running)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self.ready.done():
            self.ready.set_exception(RuntimeError(reason))
            self.ready.exception()  # mark it retrieved: nobody may be awaiting it any more
        items = list(self.inflight.values())
        self.inflight.clear()
        for listing in self.listings.values():
            if not listing.future.done():
                listing.future.set_exception(_ListerDied())
        self.listings.clear()
        self._pool.lost(self, items, running if suspects else [], reason)

    def kill(self, reason: str, cause: str = "crash", file: str | None = None, suspects: bool = True) -> None:
        """SIGKILLs the worker at once (a plain syscall: safe on the event loop)."""
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
        self.die(reason, cause, file, suspects)

    async def reap(self) -> int | None:
        """Waits for the dead process and closes its pipes; returns its exit status (negative: a signal).
        Idempotent: every caller awaits the same single reaping."""
        if self._reap_task is None:
            self._reap_task = asyncio.ensure_future(self._reap())
        return await asyncio.shield(self._reap_task)

    async def _reap(self) -> int | None:
        if self.process is None:
            return None
        try:
            async with asyncio.timeout(10.0):
                code = await self.process.wait()
        except TimeoutError:  # its pipe closed but it lives on (it closed the pipe itself): make sure
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            code = await self.process.wait()
        if self.process.stdin is not None:
            self.process.stdin.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)
        return code


class ProbePool:
    """Probes files in `size` long-lived worker processes, `threads` files at a time in each."""

    def __init__(
        self,
        size: int,
        timeout_s: float,
        probe_delay_s: float = 0.0,
        fault_injection: bool = False,
        telemetry: Telemetry = NO_TELEMETRY,
        threads: int = 1,
    ) -> None:
        if size < 1:
            raise ValueError("pool size must be at least 1")
        if threads < 1:
            raise ValueError("probe concurrency must be at least 1")
        self._size = size
        self.threads = threads
        self._telemetry = telemetry
        self.timeout_s = timeout_s
        self.probe_delay_s = probe_delay_s
        self.fault_injection = fault_injection
        self._workers: set[_Worker] = set()
        self._changed = asyncio.Event()  # a worker became ready, died or emptied, or the pool closed
        self._streams: deque[_Stream] = deque()  # streams with files still to send, served in turn
        self._suspects: deque[_Item] = deque()  # files running on a worker that died: each is re-sent alone
        self._crashed: list[tuple[_Worker, _Item, str]] = []  # files found guilty, blamed once their worker is reaped
        self._tasks: set[asyncio.Task[None]] = set()
        self._ids = itertools.count(1)
        self._failures = 0
        self._log_probe_s: float | None = None  # log of a typical probe's seconds, as workers report them
        self._broken_reason = ""
        self._closed = False
        self._started = False
        self.replaced = 0  # workers killed or lost and replaced since start (for tests and metrics)

    @property
    def concurrency(self) -> int:
        return self._size * self.threads

    @property
    def worker_pids(self) -> list[int]:
        """PIDs of live workers (for tests)."""
        return [w.pid for w in self._workers if not w.dead and w.pid is not None]

    def next_id(self) -> int:
        return next(self._ids)

    def probe_took(self, seconds: float) -> None:
        """Counts one probe's time, as its worker measured it, into the typical probe time."""
        if not math.isfinite(seconds):
            return
        sample = math.log(min(max(seconds, 1e-6), 3600.0))  # a negative or absurd report bends nothing
        typical = self._log_probe_s
        self._log_probe_s = sample if typical is None else typical + PROBE_TIME_WEIGHT * (sample - typical)

    def prefetch(self, threads: int) -> int:
        """Requests to queue in a worker running `threads` probes: about PREFETCH_WORK_S of probing. Before any
        probe was timed, MIN_PREFETCH: the first replies come within milliseconds and set it."""
        if self._log_probe_s is None:
            return MIN_PREFETCH
        wanted = PREFETCH_WORK_S * threads / math.exp(self._log_probe_s)
        return max(MIN_PREFETCH, min(PREFETCH, math.ceil(wanted)))

    async def start(self) -> None:
        """Starts the workers in the background; probes wait for the first one to be ready."""
        if self._started:
            return
        self._started = True
        for _ in range(self._size):
            self._spawn_soon()

    async def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Waits until every worker is up (imports done, codecs loaded) and idle."""
        if not self._started:
            await self.start()
        async with asyncio.timeout(timeout_s):
            while True:
                if self._broken_reason:
                    raise ProberUnavailable(self._broken_reason)
                idle = [w for w in self._workers if w.live and not w.inflight]
                if len(idle) >= self._size:
                    return
                self._changed.clear()
                await self._changed.wait()

    # ---- streams ----------------------------------------------------------------------------------------------

    async def probe_stream(self, paths: Sequence[str]) -> AsyncGenerator[list[ProbeResult], None]:
        """Probes `paths`, yielding (index into paths, outcome, seconds) in batches as they finish, in no
        particular order. Bad files give a ProbeFailure; only ProberUnavailable (or cancellation) is raised.
        Closing the generator early (a cancelled scan) kills the workers probing its files at once."""
        if not self._started:
            await self.start()
        if self._closed:
            raise ProberUnavailable("probe pool is closed")
        stream = _Stream(paths)
        if stream.remaining:
            self._streams.append(stream)
            self._dispatch()
        try:
            while stream.remaining or stream.results:
                if stream.error is not None:
                    raise stream.error
                if not stream.results:
                    stream.wake.clear()
                    await stream.wake.wait()
                    continue
                batch, stream.results = stream.results, []
                yield batch
        finally:
            if stream.remaining and not stream.closed:
                self._abandon(stream)
            stream.closed = True

    async def probe(self, path: str) -> MediaInfo | ProbeFailure:
        """Probes one file (a stream of one)."""
        async with contextlib.aclosing(self.probe_stream([path])) as results:
            async for batch in results:
                return batch[0][1]
        raise AssertionError("a stream of one file ended without its result")  # pragma: no cover

    # ---- directory listings (walker.list_directories, for the walk) ------------------------------------------------

    @property
    def listers(self) -> int:
        return 2 * self._size  # two per worker: one being listed, one waiting, so a worker's lister never idles

    async def list_directories(
        self, directories: list[str], spec: Mapping[str, Any]
    ) -> tuple[list[FoundFile], list[WalkError], list[tuple[str, int, int]]]:
        """Lists `directories` in a worker process (see walker.list_directories). A worker that dies meanwhile (it
        touches no media, so an OOM kill or an operator's) costs a retry on another one."""
        if not self._started:
            await self.start()
        for _ in range(BROKEN_AFTER_FAILURES):
            worker = await self._listing_worker()
            request_id = self.next_id()
            try:
                listing = worker.send_listing(request_id, directories, spec)
                await listing.future
            except _ListerDied:
                continue
            except asyncio.CancelledError:
                worker.listings.pop(request_id, None)  # its reply, when it comes, is dropped
                raise
            return listing.files, listing.errors, listing.directories
        raise ProberUnavailable(f"probe workers died {BROKEN_AFTER_FAILURES} times while listing a directory")

    async def _listing_worker(self) -> _Worker:
        while True:
            if self._closed:
                raise ProberUnavailable("probe pool is closed")
            live = [w for w in self._workers if w.live]
            if live:
                return min(live, key=lambda w: len(w.listings))
            if self._broken_reason:
                raise ProberUnavailable(self._broken_reason)
            self._changed.clear()
            await self._changed.wait()

    def _abandon(self, stream: _Stream) -> None:
        stream.closed = True
        with contextlib.suppress(ValueError):
            self._streams.remove(stream)
        for worker in list(self._workers):
            held = [item for item in worker.inflight.values() if item.stream is stream]
            if held and not worker.dead:
                # Stop its probes now rather than when they finish; the other streams' files it held are re-sent.
                worker.kill("probe cancelled", cause="cancel", file=held[0].path, suspects=False)
        self._dispatch()

    # ---- callbacks from workers -------------------------------------------------------------------------------

    def changed(self) -> None:
        self._changed.set()
        self._dispatch()

    @staticmethod
    def deliver(done: list[tuple[_Item, MediaInfo | ProbeFailure]], now: float) -> None:
        for item, outcome in done:
            item.stream.deliver(item, outcome, now)

    def settle(self, worker: _Worker, done: list[tuple[_Item, MediaInfo | ProbeFailure]], now: float) -> None:
        """Hands answered files to their streams and refills the worker."""
        self.deliver(done, now)
        if not worker.inflight:
            self._changed.set()
        if not worker.dead:
            self._dispatch()

    def lost(self, worker: _Worker, items: list[_Item], suspects: list[_Item], reason: str) -> None:
        """A worker died holding `items`; `suspects` (among them) were running when it died on its own."""
        suspect_ids = {id(item) for item in suspects}
        resend: list[_Item] = []
        for item in items:
            if item.stream.closed:
                continue
            if self._closed:
                item.stream.fail(ProberUnavailable("probe pool is closed"))
            elif id(item) in suspect_ids:
                item.crashes += 1
                if worker.solo and item.crashes >= 2:
                    # Alone on a fresh worker, and it died again: this file is what kills them.
                    self._crashed.append((worker, item, reason))
                else:
                    self._suspects.append(item)
            else:
                resend.append(item)
        # Not these files' doing: back to the front of their streams, in order.
        for item in reversed(resend):
            if not item.stream.pending:
                self._streams.appendleft(item.stream)
            item.stream.pending.appendleft(item)
        if self._crashed:
            self._spawn_task(self._blame_crashed(), "reelscan-probe-blame")
        self._replace(worker)
        self._changed.set()
        self._dispatch()

    async def _blame_crashed(self) -> None:
        crashed, self._crashed = self._crashed, []
        for worker, item, reason in crashed:
            code = await worker.reap()
            reason = f"probe worker died ({reason}; {_describe_exit(code)})"
            item.stream.deliver(item, ProbeFailure(ProbeErrorKind.PROBE_CRASHED, reason), time.perf_counter())

    # ---- sending ------------------------------------------------------------------------------------------------

    def _dispatch(self) -> None:
        """Gives waiting files to workers with room: suspects first, each alone on an empty worker; then every
        stream's files in turn."""
        if self._closed:
            return
        live = [w for w in self._workers if w.live]
        if not live:
            if self._broken_reason:
                for stream in list(self._streams):
                    stream.fail(ProberUnavailable(self._broken_reason))
                for item in self._suspects:
                    item.stream.fail(ProberUnavailable(self._broken_reason))
            return
        if not self._suspects:
            for worker in live:
                worker.draining = False  # the suspect it was emptied for is gone (its scan was cancelled)
        while self._suspects:
            if self._suspects[0].stream.closed:
                self._suspects.popleft()
                continue
            empty = next((w for w in live if not w.inflight and not w.solo), None)
            if empty is None:
                if not any(w.draining or w.solo for w in live):
                    min(live, key=lambda w: len(w.inflight)).draining = True
                break
            empty.draining = False
            empty.solo = True
            if not empty.send([self._suspects.popleft()]):
                break
        streams = self._streams
        if not streams:
            return
        takers = sorted((w for w in live if not (w.solo or w.draining)), key=lambda w: len(w.inflight))
        # A fair share each, so that a few files (the end of a scan, a small one) spread over every worker.
        share = -(-sum(len(s.pending) for s in streams) // max(1, len(takers)))
        for worker in takers:
            if not streams:
                return
            room = min(worker.window - len(worker.inflight), share)
            if room <= 0:
                continue
            batch: list[_Item] = []
            while room and streams:
                stream = streams[0]
                while stream.pending and stream.pending[0].stream.closed:
                    stream.pending.popleft()
                if not stream.pending or stream.closed:
                    streams.popleft()
                    continue
                take = min(room, len(stream.pending), max(1, room // len(streams)))
                for _ in range(take):
                    batch.append(stream.pending.popleft())
                room -= take
                if stream.pending:
                    streams.rotate(-1)
                else:
                    streams.popleft()
            if batch and not worker.send(batch):
                for item in reversed(batch):  # its pipe closed under us: the death handler re-dispatches
                    if not item.stream.pending:
                        streams.appendleft(item.stream)
                    item.stream.pending.appendleft(item)

    # ---- workers ------------------------------------------------------------------------------------------------

    def _spawn_task(self, coro: Any, name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _spawn_soon(self, delay_s: float = 0.0) -> None:
        if not self._closed:
            self._spawn_task(self._spawn(delay_s), "reelscan-probe-spawn")

    async def _spawn(self, delay_s: float) -> None:
        if delay_s:
            await asyncio.sleep(delay_s)
        if self._closed:
            return
        worker = _Worker(self)
        try:
            self._workers.add(worker)
            await worker.start()
            async with asyncio.timeout(READY_TIMEOUT_S):
                await worker.ready
        except asyncio.CancelledError:
            self._workers.discard(worker)  # first, so that killing it does not start a replacement
            worker.kill("pool closed")
            raise
        except Exception as error:
            self._workers.discard(worker)  # the retry below, with back-off, is its replacement
            worker.kill(f"failed to start: {error}")
            code = await worker.reap()
            self._failures += 1
            reason = f"probe worker failed to start ({error or type(error).__name__}; {_describe_exit(code)})"
            log.error("%s", reason)
            if self._failures >= BROKEN_AFTER_FAILURES:
                self._broken_reason = f"{reason}; {self._failures} start-ups in a row failed"
                self._changed.set()
                self._dispatch()
            self._spawn_soon(min(30.0, 0.5 * 2**self._failures))
            return
        self._failures = 0
        self._broken_reason = ""
        if self._closed:
            worker.kill("pool closed")
            await worker.reap()

    def _replace(self, worker: _Worker) -> None:
        """Forgets a dead or killed worker, reaps it in the background and starts a fresh one. A no-op for a
        worker already replaced, one that failed to start (retried with back-off) or one being shut down."""
        if worker not in self._workers:
            return
        self._workers.discard(worker)
        self.replaced += 1
        self._spawn_task(self._reap_quietly(worker), "reelscan-probe-reap")
        self._spawn_soon()

    async def _reap_quietly(self, worker: _Worker) -> None:
        try:
            code = await worker.reap()
        except Exception:  # pragma: no cover - reaping is best effort
            log.exception("reaping probe worker %s failed", worker.pid)
            code = None
        self._telemetry.worker_replaced(
            cause=worker.death_cause or "crash",
            pid=worker.pid,
            file=worker.death_file,
            exit_status=code,
            reason=worker.death_reason,
        )

    async def close(self) -> None:
        """Kills every worker and waits for them to be reaped; open streams fail with ProberUnavailable."""
        if self._closed:
            return
        self._closed = True
        closed = ProberUnavailable("probe pool is closed")
        for stream in self._streams:
            stream.fail(closed)
        for item in self._suspects:
            item.stream.fail(closed)
        self._changed.set()
        for task in list(self._tasks):
            if task.get_name() == "reelscan-probe-spawn":
                task.cancel()
        workers = list(self._workers)
        self._workers.clear()
        for worker in workers:
            worker.kill("pool closed")
        await asyncio.gather(*(w.reap() for w in workers), *list(self._tasks), return_exceptions=True)
