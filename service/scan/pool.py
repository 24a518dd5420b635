"""A pool of long-lived PyAV probe worker processes.

Why processes, and why not ProcessPoolExecutor: FFmpeg runs native code on untrusted files, so a crash or an
endless loop must cost one file, not the server and not the rest of the scan. A ProcessPoolExecutor marks itself
broken when any worker dies and has no way to kill one hung task. Here each worker is owned individually: a probe
that overruns its timeout, or whose worker dies, fails alone; that worker is SIGKILLed and a fresh one is spawned.

Each worker is a fresh interpreter (spawn semantics: forking a server that runs gRPC and SQLite threads is unsafe),
started as an asyncio subprocess running probe_worker.main. Not multiprocessing's spawn context: that re-imports
the parent's __main__ in every worker, which turns any embedding script without a main guard into a crash loop
(seen in practice), and its Connection pipes are blocking. asyncio subprocess pipes are non-blocking, so the event
loop never waits on a worker: requests are small writes into the transport, replies are read by one task per
worker, and exit statuses come from the child watcher.

Pipelining: each worker holds up to PIPELINE_DEPTH requests, so it starts the next file the moment it answers one
instead of waiting for the server to send it (a probe of a small file takes about a millisecond, about as long as
that round trip). Files go to the least-loaded worker. The per-file timeout runs only for the file a worker is
actually on (the head of its queue). When a worker dies, only that head file is blamed; the files queued behind it
are sent to another worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import sys
from collections import deque
from collections.abc import Callable
from typing import Any

from reelscan.service.scan.media_info import MediaInfo, ProbeErrorKind, ProbeFailure
from reelscan.service.scan.probe_worker import FrameDecoder, ProtocolError, encode_frame
from reelscan.service.scan.prober import ProberUnavailable
from reelscan.service.telemetry.events import NO_TELEMETRY, Telemetry

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 60.0
PIPELINE_DEPTH = 2
_WORKER_COMMAND = "from reelscan.service.scan.probe_worker import main; main()"
# Consecutive failed start-ups after which probes fail fast instead of waiting for a worker.
BROKEN_AFTER_FAILURES = 3


class WorkerDied(Exception):
    """The worker process ended (or sent garbage) while working on this request."""


class _ProbeTimedOut(Exception):
    """This request was the worker's current file for longer than the timeout."""


class _Requeue(Exception):
    """The worker died while this request was still queued behind another: not this file's doing."""


class _Worker:
    """One worker process, its pipes, its queue of requests and the task that reads its replies.
    Runs on the event loop only."""

    def __init__(
        self,
        probe_delay_s: float,
        fault_injection: bool,
        timeout_s: float,
        on_change: Callable[[_Worker, bool], None],
    ) -> None:
        self._args = (f"{probe_delay_s:g}", "1" if fault_injection else "0")
        self._timeout_s = timeout_s
        # Called as (worker, big): big when it became ready or died, not big when one request was answered.
        self._on_change = on_change
        self.process: asyncio.subprocess.Process | None = None
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._reader: asyncio.Task[None] | None = None
        # Requests sent and not answered yet (id, path, reply), in the order the worker handles them; the head is
        # being probed.
        self.inflight: deque[tuple[int, str, asyncio.Future[dict[str, Any]]]] = deque()
        self._timer: asyncio.TimerHandle | None = None
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
    def available(self) -> bool:
        return self.ready.done() and not self.dead and len(self.inflight) < PIPELINE_DEPTH

    async def _read_replies(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        stdout = self.process.stdout
        decoder = FrameDecoder()
        try:
            while True:
                data = await stdout.read(65536)
                if not data:
                    self._mark_dead("exited")
                    return
                for message in decoder.feed(data):
                    self._dispatch(message)
        except ProtocolError as error:
            self.kill(f"sent a malformed reply ({error})", cause="malformed")
        except OSError as error:
            self._mark_dead(f"reply pipe failed: {error}")

    def _dispatch(self, message: dict[str, Any]) -> None:
        if "ready" in message:
            if not self.ready.done():
                self.ready.set_result(None)
                self._on_change(self, True)
            return
        if not self.inflight or message.get("id") != self.inflight[0][0]:
            self.kill("answered a request it was not working on", cause="malformed")
            return
        _, _, future = self.inflight.popleft()
        if not future.done():
            future.set_result(message)
        self._arm_timer()
        self._on_change(self, False)

    def _arm_timer(self) -> None:
        """Starts the per-file timeout for the new head of the queue, if any."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.inflight and not self.dead:
            self._timer = asyncio.get_running_loop().call_later(self._timeout_s, self._on_timeout)

    def _on_timeout(self) -> None:
        self._timer = None
        file = ""
        if self.inflight:
            _, file, future = self.inflight.popleft()
            if not future.done():
                future.set_exception(_ProbeTimedOut())
        # The timed-out file is already answered.
        self.kill(f"probe timed out after {self._timeout_s:g}s", blame_head=False, cause="timeout", file=file)

    def request(self, request_id: int, path: str) -> asyncio.Future[dict[str, Any]]:
        """Queues one probe request on this worker; the future gets the reply or one of the exceptions above."""
        assert self.process is not None and self.process.stdin is not None
        if self.dead or self.process.stdin.is_closing():
            raise WorkerDied(self.death_reason or "request pipe is closed")
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        # A non-blocking write into the transport's buffer; a few hundred bytes at most per request.
        self.process.stdin.write(encode_frame({"id": request_id, "path": path}))
        self.inflight.append((request_id, path, future))
        if len(self.inflight) == 1:
            self._arm_timer()
        return future

    def _mark_dead(self, reason: str, blame_head: bool = True, cause: str = "crash", file: str | None = None) -> None:
        """Fails every request in flight: the head (the file being probed) with WorkerDied when `blame_head`,
        all others with _Requeue so that their callers send them to another worker."""
        if self.dead:
            return
        self.dead = True
        self.death_reason = reason
        self.death_cause = cause
        self.death_file = file if file is not None else self.inflight[0][1] if self.inflight else ""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self.ready.done():
            self.ready.set_exception(WorkerDied(reason))
            self.ready.exception()  # mark it retrieved: nobody may be awaiting it any more
        for position, (_, _, future) in enumerate(self.inflight):
            if not future.done():
                future.set_exception(WorkerDied(reason) if position == 0 and blame_head else _Requeue())
        self.inflight.clear()
        self._on_change(self, True)

    def kill(self, reason: str, blame_head: bool = True, cause: str = "crash", file: str | None = None) -> None:
        """SIGKILLs the worker at once (a plain syscall: safe on the event loop). `cause` and `file` (default: the
        head of its queue) say why, for the log."""
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
        self._mark_dead(reason, blame_head, cause, file)

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


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "unknown exit status"
    if code < 0:
        return f"killed by signal {-code}"
    return f"exit code {code}"


class ProbePool:
    """Probes files in `size` long-lived worker processes."""

    def __init__(
        self,
        size: int,
        timeout_s: float,
        probe_delay_s: float = 0.0,
        fault_injection: bool = False,
        telemetry: Telemetry = NO_TELEMETRY,
    ) -> None:
        if size < 1:
            raise ValueError("pool size must be at least 1")
        self._size = size
        self._telemetry = telemetry
        self._timeout_s = timeout_s
        self._probe_delay_s = probe_delay_s
        self._fault_injection = fault_injection
        self._workers: set[_Worker] = set()
        self._changed = asyncio.Event()  # a slot was freed, a worker became ready or died, or the pool closed
        # Probes waiting for a free slot, woken one per freed slot (not all at once: a scan of 1,000 files
        # awaited together would otherwise wake 1,000 waiters per reply).
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._tasks: set[asyncio.Task[None]] = set()
        self._ids = itertools.count(1)
        self._failures = 0
        self._broken_reason = ""
        self._closed = False
        self._started = False
        self.replaced = 0  # workers killed or lost and replaced since start (for tests and metrics)

    @property
    def concurrency(self) -> int:
        return self._size * PIPELINE_DEPTH

    @property
    def worker_pids(self) -> list[int]:
        """PIDs of live workers (for tests)."""
        return [w.pid for w in self._workers if not w.dead and w.pid is not None]

    async def start(self) -> None:
        """Starts the workers in the background; probes wait for the first one to be ready."""
        if self._started:
            return
        self._started = True
        for _ in range(self._size):
            self._spawn_soon()

    async def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Waits until every worker is up and idle (for tests and benchmarks that time probes, not start-up)."""
        async with asyncio.timeout(timeout_s):
            while True:
                if self._broken_reason:
                    raise ProberUnavailable(self._broken_reason)
                idle = [w for w in self._workers if w.ready.done() and not w.dead and not w.inflight]
                if len(idle) >= self._size:
                    return
                self._changed.clear()
                await self._changed.wait()

    def _notify(self, everyone: bool = True) -> None:
        self._changed.set()
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                if not everyone:
                    return

    def _on_worker_change(self, worker: _Worker, big: bool) -> None:
        if worker.dead:
            self._replace(worker)
        # A reply frees one slot: one waiter. A worker that starts or dies changes more: everyone re-checks.
        self._notify(everyone=big)

    def _spawn_soon(self, delay_s: float = 0.0) -> None:
        if self._closed:
            return
        task = asyncio.get_running_loop().create_task(self._spawn(delay_s), name="reelscan-probe-spawn")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _spawn(self, delay_s: float) -> None:
        if delay_s:
            await asyncio.sleep(delay_s)
        if self._closed:
            return
        worker = _Worker(self._probe_delay_s, self._fault_injection, self._timeout_s, self._on_worker_change)
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
                self._notify()
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
        task = asyncio.get_running_loop().create_task(self._reap_quietly(worker), name="reelscan-probe-reap")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
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

    async def _acquire(self) -> _Worker:
        """The least-loaded worker with a free slot, waiting for one if need be."""
        while True:
            if self._closed:
                raise ProberUnavailable("probe pool is closed")
            if self._broken_reason and not any(w.ready.done() and not w.dead for w in self._workers):
                raise ProberUnavailable(self._broken_reason)
            best = min((w for w in self._workers if w.available), key=lambda w: len(w.inflight), default=None)
            if best is not None:
                return best
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._notify(everyone=False)  # woken for a slot it will not take: pass it on
                raise

    async def probe(self, path: str) -> MediaInfo | ProbeFailure:
        if not self._started:
            await self.start()
        crashes = 0
        while True:
            worker = await self._acquire()
            try:
                future = worker.request(next(self._ids), path)
            except WorkerDied:
                continue  # it died since it was chosen: not this file's fault, try another
            try:
                reply = await future
            except _Requeue:
                continue  # its worker died on another file while this one waited in its queue
            except _ProbeTimedOut:
                return ProbeFailure(
                    ProbeErrorKind.PROBE_TIMEOUT, f"probe did not finish within {self._timeout_s:g} s; worker killed"
                )
            except WorkerDied as error:
                if self._closed:  # killed by close(), not by the file
                    raise ProberUnavailable("probe pool is closed") from error
                code = await worker.reap()
                if crashes == 0:
                    # A worker can die just before it starts a file (OOM killer, an operator's kill) without the
                    # pool having seen it yet. Blame the file only if it takes a second, fresh worker down too.
                    crashes += 1
                    continue
                return ProbeFailure(
                    ProbeErrorKind.PROBE_CRASHED, f"probe worker died ({error}; {_describe_exit(code)})"
                )
            except asyncio.CancelledError:
                if not (future.done() and not future.cancelled() and future.exception() is None):
                    # Stop the probe now rather than when it finishes; files queued behind it on that worker
                    # are re-sent elsewhere by their own callers.
                    worker.kill("probe cancelled", blame_head=False, cause="cancel", file=path)
                raise
            return self._outcome(worker, reply, path)

    def _outcome(self, worker: _Worker, reply: dict[str, Any], path: str) -> MediaInfo | ProbeFailure:
        try:
            if "error" in reply:
                kind, reason = reply["error"]
                return ProbeFailure(ProbeErrorKind(int(kind)), str(reason))
            return MediaInfo.from_json(reply["info"])
        except (KeyError, TypeError, ValueError) as error:
            # This reply was the head's.
            worker.kill(f"sent a malformed reply ({error})", blame_head=False, cause="malformed", file=path)
            return ProbeFailure(ProbeErrorKind.PROBE_CRASHED, "probe worker sent a malformed reply; worker killed")

    async def close(self) -> None:
        """Kills every worker and waits for them to be reaped."""
        if self._closed:
            return
        self._closed = True
        self._notify()  # wake anyone waiting for a worker
        for task in list(self._tasks):
            if task.get_name() == "reelscan-probe-spawn":
                task.cancel()
        workers = list(self._workers)
        self._workers.clear()
        for worker in workers:
            worker.kill("pool closed")
        await asyncio.gather(*(w.reap() for w in workers), *list(self._tasks), return_exceptions=True)
