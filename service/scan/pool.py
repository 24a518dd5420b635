"""A pool of long-lived PyAV probe worker processes.

Why processes, and why not ProcessPoolExecutor: FFmpeg runs native code on untrusted files, so a crash or an
endless loop must cost one file, not the server and not the rest of the scan. A ProcessPoolExecutor marks itself
broken when any worker dies and has no way to kill one hung task. Here each worker is owned individually: a probe
that overruns its timeout, or whose worker dies, fails alone; that worker is SIGKILLed and a fresh one is spawned.

Each worker is a fresh interpreter (spawn semantics: forking a server that runs gRPC and SQLite threads is
unsafe), started as an asyncio subprocess running probe_worker.main. Not multiprocessing's spawn context: that
re-imports the parent's __main__ in every worker, which turns any embedding script without a main guard into a
crash loop (seen in practice), and its Connection pipes are blocking. asyncio subprocess pipes are non-blocking, so
the event loop never waits on a worker: requests are small writes into the transport, replies are read by one task
per worker, and exit statuses come from the child watcher.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import sys
from collections.abc import Callable
from typing import Any

from reelscan.service.scan.media_info import MediaInfo, ProbeErrorKind, ProbeFailure
from reelscan.service.scan.probe_worker import FrameDecoder, ProtocolError, encode_frame
from reelscan.service.scan.prober import ProberUnavailable

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 60.0
_WORKER_COMMAND = "from reelscan.service.scan.probe_worker import main; main()"
# Consecutive failed start-ups after which probes fail fast instead of waiting for a worker.
BROKEN_AFTER_FAILURES = 3


class WorkerDied(Exception):
    """The worker process ended (or sent garbage) while a request was outstanding."""


class _Worker:
    """One worker process, its pipes and the task that reads its replies. Runs on the event loop only."""

    def __init__(self, probe_delay_s: float, fault_injection: bool, on_death: Callable[[_Worker], None]) -> None:
        self._args = (f"{probe_delay_s:g}", "1" if fault_injection else "0")
        self._on_death = on_death
        self.process: asyncio.subprocess.Process | None = None
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._reader: asyncio.Task[None] | None = None
        self._pending: tuple[int, asyncio.Future[dict[str, Any]]] | None = None
        self.dead = False
        self.death_reason = ""
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
            self.kill(f"sent a malformed reply ({error})")
        except OSError as error:
            self._mark_dead(f"reply pipe failed: {error}")

    def _dispatch(self, message: dict[str, Any]) -> None:
        if "ready" in message:
            if not self.ready.done():
                self.ready.set_result(None)
        elif self._pending is not None and message.get("id") == self._pending[0]:
            _, future = self._pending
            self._pending = None
            if not future.done():
                future.set_result(message)

    def request(self, request_id: int, path: str) -> asyncio.Future[dict[str, Any]]:
        """Sends one probe request; the future gets the reply, or WorkerDied."""
        assert self.process is not None and self.process.stdin is not None and self._pending is None
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        if self.dead or self.process.stdin.is_closing():
            raise WorkerDied(self.death_reason or "request pipe is closed")
        # A non-blocking write into the transport's buffer; the idle worker drains it at once.
        self.process.stdin.write(encode_frame({"id": request_id, "path": path}))
        self._pending = (request_id, future)
        return future

    def _mark_dead(self, reason: str) -> None:
        if self.dead:
            return
        self.dead = True
        self.death_reason = reason
        error = WorkerDied(reason)
        if not self.ready.done():
            self.ready.set_exception(error)
            self.ready.exception()  # mark it retrieved: nobody may be awaiting it any more
        if self._pending is not None:
            _, future = self._pending
            self._pending = None
            if not future.done():
                future.set_exception(error)
        self._on_death(self)

    def kill(self, reason: str) -> None:
        """SIGKILLs the worker at once (a plain syscall: safe on the event loop)."""
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
        self._mark_dead(reason)

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
    """Probes files in `size` long-lived worker processes, one file per worker at a time."""

    def __init__(self, size: int, timeout_s: float, probe_delay_s: float = 0.0, fault_injection: bool = False) -> None:
        if size < 1:
            raise ValueError("pool size must be at least 1")
        self._size = size
        self._timeout_s = timeout_s
        self._probe_delay_s = probe_delay_s
        self._fault_injection = fault_injection
        # Idle workers; None is a wake-up pill telling waiters to re-check whether the pool is broken or closed.
        self._idle: asyncio.Queue[_Worker | None] = asyncio.Queue()
        self._workers: set[_Worker] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._ids = itertools.count(1)
        self._failures = 0
        self._broken_reason = ""
        self._closed = False
        self._started = False
        self.replaced = 0  # workers killed or lost and replaced since start (for tests and metrics)

    @property
    def concurrency(self) -> int:
        return self._size

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
        """Waits until every worker is up (for tests and benchmarks that time probes, not start-up)."""
        async with asyncio.timeout(timeout_s):
            while self._idle.qsize() < self._size:
                if self._broken_reason:
                    raise ProberUnavailable(self._broken_reason)
                await asyncio.sleep(0.01)

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
        worker = _Worker(self._probe_delay_s, self._fault_injection, self._replace)
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
                self._idle.put_nowait(None)
            self._spawn_soon(min(30.0, 0.5 * 2**self._failures))
            return
        self._failures = 0
        self._broken_reason = ""
        if self._closed:
            worker.kill("pool closed")
            await worker.reap()
            return
        self._idle.put_nowait(worker)

    def _replace(self, worker: _Worker) -> None:
        """Forgets a dead or killed worker, reaps it in the background and starts a fresh one. Called when any
        worker dies (busy or idle); a no-op for a worker already replaced or being shut down."""
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
            await worker.reap()
        except Exception:  # pragma: no cover - reaping is best effort
            log.exception("reaping probe worker %s failed", worker.pid)

    async def _acquire(self) -> _Worker:
        while True:
            if self._closed:
                raise ProberUnavailable("probe pool is closed")
            worker = await self._idle.get()
            if worker is None:
                if self._closed or self._broken_reason:
                    self._idle.put_nowait(None)  # pass the pill on to the next waiter
                    raise ProberUnavailable(self._broken_reason or "probe pool is closed")
                continue  # a stale pill from a broken spell that has ended
            if worker.dead:  # died while idle; its replacement is already on the way
                if worker in self._workers:
                    self._replace(worker)
                continue
            return worker

    async def probe(self, path: str) -> MediaInfo | ProbeFailure:
        if not self._started:
            await self.start()
        crashes = 0
        while True:
            worker = await self._acquire()
            try:
                future = worker.request(next(self._ids), path)
            except WorkerDied:
                self._replace(worker)
                continue  # the worker was already dead: not this file's fault, try another
            outcome = await self._await_reply(worker, future)
            if isinstance(outcome, ProbeFailure) and outcome.kind is ProbeErrorKind.PROBE_CRASHED and crashes == 0:
                # A worker can die just before it is handed a file (OOM killer, an operator's kill) without the
                # pool having seen it yet. Blame the file only if it takes a second, fresh worker down too.
                crashes += 1
                continue
            return outcome

    async def _await_reply(self, worker: _Worker, future: asyncio.Future[dict[str, Any]]) -> MediaInfo | ProbeFailure:
        try:
            async with asyncio.timeout(self._timeout_s):
                reply = await future
        except TimeoutError:
            worker.kill("probe timed out")
            self._replace(worker)
            return ProbeFailure(
                ProbeErrorKind.PROBE_TIMEOUT, f"probe did not finish within {self._timeout_s:g} s; worker killed"
            )
        except WorkerDied as error:
            if self._closed:  # killed by close(), not by the file
                raise ProberUnavailable("probe pool is closed") from error
            self._replace(worker)
            code = await worker.reap()
            return ProbeFailure(ProbeErrorKind.PROBE_CRASHED, f"probe worker died ({error}; {_describe_exit(code)})")
        except asyncio.CancelledError:
            if future.done() and not future.cancelled() and future.exception() is None:
                self._release(worker)  # the reply made it: the worker is idle and healthy
            else:
                worker.kill("probe cancelled")  # stop the in-flight probe now, not when it finishes
                self._replace(worker)
            raise
        self._release(worker)
        return self._outcome(worker, reply)

    def _release(self, worker: _Worker) -> None:
        if worker.dead or self._closed:
            if worker in self._workers:
                self._replace(worker)
            return
        self._idle.put_nowait(worker)

    def _outcome(self, worker: _Worker, reply: dict[str, Any]) -> MediaInfo | ProbeFailure:
        try:
            if "error" in reply:
                kind, reason = reply["error"]
                return ProbeFailure(ProbeErrorKind(int(kind)), str(reason))
            return MediaInfo.from_json(reply["info"])
        except (KeyError, TypeError, ValueError) as error:
            worker.kill(f"sent a malformed reply ({error})")
            self._replace(worker)
            return ProbeFailure(ProbeErrorKind.PROBE_CRASHED, "probe worker sent a malformed reply; worker killed")

    async def close(self) -> None:
        """Kills every worker and waits for them to be reaped."""
        if self._closed:
            return
        self._closed = True
        self._idle.put_nowait(None)  # wake anyone waiting for a worker
        for task in list(self._tasks):
            if task.get_name() == "reelscan-probe-spawn":
                task.cancel()
        workers = list(self._workers)
        self._workers.clear()
        for worker in workers:
            worker.kill("pool closed")
        await asyncio.gather(*(w.reap() for w in workers), *list(self._tasks), return_exceptions=True)
