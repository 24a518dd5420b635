"""The probe worker process: reads batches of file paths from stdin, probes them with PyAV in a few threads, writes
the results to stdout in batches.

Started by pool.py as `python -c "from reelscan.service.scan.probe_worker import main; main()" DELAY FAULTS N`.

Messages are length-prefixed JSON frames (4-byte big-endian length). JSON rather than pickle so that a worker
subverted by a hostile file cannot make the server unpickle code; json's \\udcXX escapes carry file names that are
not valid UTF-8 (surrogate-escaped str) through unchanged. MediaInfo goes through media_info's own to_json /
from_json, so fields added there pass through untouched.

Requests:  {"batch": [[id, path], ...]}, or {"list": id, "dirs": [...], "spec": {...}} (walker.list_directories)
Replies:   {"ready": pid} once at start, then {"results": [[id, "info", {...}, s] | [id, "error", [kind, reason], s],
           ...]} where s is the seconds the probe took in its thread (the server sizes its queues by it),
           {"threads": n} when it runs more probe threads (see _grow),
           and for a listing frames {"listed": id, "files"|"errors"|"dirs": [...], "more": bool} (or "failed": why)

Why batches: a probe of a small file costs about a millisecond, about as much as one JSON frame, one pipe wake-up
and one future per file on the server did. Requests come in batches of what the worker may queue; replies are
gathered for up to FLUSH_INTERVAL_S, so the server handles one frame per few files instead of one per file.

Ordering contract the server's per-file timeout relies on (pool.py): N threads take requests strictly in the order
they arrived (one FIFO queue), so request number k has started once k - N + 1 earlier requests were answered. A
reply is written after its probe ended, so when the server sees a reply, the requests it lets start are really
started no earlier than that: the server's clock for a file never starts before the worker's.

Threads (--probe-concurrency): PyAV releases the GIL while FFmpeg opens and reads a file, so on slow storage
(network mounts, milliseconds per read) several files in flight per worker overlap their waits. A worker starts
with one thread and adds threads only when its probes wait on storage (_grow): on a local disk probes are
CPU-bound and threads of one process would only fight over the GIL (measured: ~1.5-2x the CPU per file).
"""

from __future__ import annotations

import json
import os
import queue
import signal
import struct
import sys
import threading
import time
from typing import Any

from reelscan.service.scan.media_info import ProbeFailure

_HEADER = struct.Struct(">I")
# No honest frame comes near this; a bigger length means a corrupted or subverted peer.
MAX_FRAME = 16 << 20
# Results per reply frame at most (a MediaInfo is ~1 KB of JSON: frames stay far below MAX_FRAME).
MAX_RESULTS_PER_FRAME = 256
# How long results gather before they are written: ~200 frames/s per worker at most, and progress stays smooth.
FLUSH_INTERVAL_S = 0.005
# Marker in a file name that makes the worker hang or die, when fault injection is on (tests only).
HANG_MARKER = "reelscan-hang"
CRASH_MARKER = "reelscan-crash"


class ProtocolError(Exception):
    """The peer sent something that is not a valid frame."""


def encode_frame(message: dict[str, Any]) -> bytes:
    payload = json.dumps(message, separators=(",", ":")).encode("ascii")
    return _HEADER.pack(len(payload)) + payload


class FrameDecoder:
    """Turns a byte stream into messages; bytes may arrive in any chunking."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        self._buf += data
        messages = []
        while len(self._buf) >= _HEADER.size:
            (length,) = _HEADER.unpack_from(self._buf)
            if length > MAX_FRAME:
                raise ProtocolError(f"frame of {length} bytes is too large")
            end = _HEADER.size + length
            if len(self._buf) < end:
                break
            try:
                message = json.loads(bytes(self._buf[_HEADER.size : end]))
            except ValueError as error:
                raise ProtocolError(f"bad frame: {error}") from error
            del self._buf[:end]
            if not isinstance(message, dict):
                raise ProtocolError("frame is not a JSON object")
            messages.append(message)
        return messages


_WRITE_LOCK = threading.Lock()  # the results writer and the lister share the reply pipe: whole frames only


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    try:
        with _WRITE_LOCK:
            while view:
                written = os.write(fd, view)
                view = view[written:]
    except BrokenPipeError:
        # The server is gone (killed while this worker started or probed): leave without a traceback, which would
        # land in the server's log stream as a line that is not the server's (and not JSON with --log-format json).
        os._exit(0)


def _watch_parent(parent_pid: int) -> None:
    # A worker stuck inside FFmpeg never reads its pipe again, so it would not notice the server dying; this
    # thread does, and ends the process instead of leaving an orphan spinning on a hostile file.
    while True:
        time.sleep(1.0)
        if os.getppid() != parent_pid:
            os._exit(0)


class _Outbox:
    """Results waiting to be written; one writer thread sends them in frames of many."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._cond = threading.Condition()
        self._results: list[list[Any]] = []

    def put(self, result: list[Any]) -> None:
        with self._cond:
            self._results.append(result)
            if len(self._results) == 1:
                self._cond.notify()

    def run(self) -> None:
        while True:
            with self._cond:
                while not self._results:
                    self._cond.wait()
                results, self._results = self._results, []
            for start in range(0, len(results), MAX_RESULTS_PER_FRAME):
                _write_all(self._fd, encode_frame({"results": results[start : start + MAX_RESULTS_PER_FRAME]}))
            # Let the next results gather: one frame per few files, not one per file.
            time.sleep(FLUSH_INTERVAL_S)


# Every GROW_INTERVAL_S, a worker whose probes are waiting for work (requests queued, every running thread busy)
# while its probe threads spent more than GROW_WHEN_BLOCKED of the time blocked (neither on a CPU, nor waiting for
# one (the kernel's schedstat), nor waiting for a request) is waiting on storage: it runs twice as many threads, up
# to --probe-concurrency. Blocked, not "little CPU": on a busy machine a CPU-bound worker gets little CPU too, but
# it is runnable meanwhile. Threads are never taken back (the server's timeout clock relies on a thread count that
# only grows; a fresh worker starts at one again).
GROW_INTERVAL_S = 0.1
GROW_WHEN_BLOCKED = 0.5
_probe_threads: list[int] = []  # native ids of the probe threads holding a slot
_idle_s: dict[int, float] = {}  # per probe thread: seconds spent waiting for a request (not blocked on storage)


def _not_blocked_s(thread_ids: list[int]) -> float:
    """Seconds these threads have spent on a CPU, waiting in a run queue (Linux /proc/self/task/*/schedstat) or
    waiting for a request: everything but waiting on storage."""
    total = 0
    idle = sum(_idle_s.get(tid, 0.0) for tid in thread_ids)
    for tid in thread_ids:
        try:
            with open(f"/proc/self/task/{tid}/schedstat", "rb") as stats:
                running, waiting, _ = stats.read().split()
        except (OSError, ValueError):
            return float("nan")  # no schedstat here: never grow on a guess (every comparison with nan is false)
        total += int(running) + int(waiting)
    return total / 1e9 + idle


def _grow(slots: threading.Semaphore, work: queue.SimpleQueue[tuple[int, str]], fd: int, most: int) -> None:
    """Runs one probe thread at first (threads of one process fight over the GIL: on a local disk, where probes are
    CPU-bound, a second thread costs CPU and gains nothing) and more when the probes wait on storage."""
    active = 1
    while len(_probe_threads) < active:
        time.sleep(0.01)
    busy = _not_blocked_s(_probe_threads[:active])
    while active < most:
        time.sleep(GROW_INTERVAL_S)
        now = _not_blocked_s(_probe_threads[:active])
        blocked = 1 - (now - busy) / (active * GROW_INTERVAL_S)
        busy = now
        if work.qsize() > 0 and blocked > GROW_WHEN_BLOCKED:
            grown = min(most, 2 * active)
            # Tell the server first: its clock for a file must never start after the worker started it.
            _write_all(fd, encode_frame({"threads": grown}))
            for _ in range(grown - active):
                slots.release()
            while len(_probe_threads) < grown:
                time.sleep(0.001)
            active = grown
            busy = _not_blocked_s(_probe_threads[:active])


def _probe_loop(
    slots: threading.Semaphore,
    work: queue.SimpleQueue[tuple[int, str]],
    outbox: _Outbox,
    delay_s: float,
    faults: bool,
) -> None:
    from reelscan.service.scan import probe_pyav

    delay_lock = _DELAY_LOCK
    slots.acquire()  # held for good: only threads with a slot take requests, in arrival order
    me = threading.get_native_id()
    _idle_s[me] = 0.0
    _probe_threads.append(me)
    clock = time.monotonic
    while True:
        waited = clock()
        request_id, path = work.get()
        started = clock()
        _idle_s[me] += started - waited
        if delay_s > 0:
            # --probe-delay (tests, benchmarks) stands for CPU work, which threads of one process do not overlap:
            # one delay at a time per worker, so a worker with N threads is as slow as before, not N times faster.
            with delay_lock:
                time.sleep(delay_s)
        if faults:
            name = os.path.basename(path)
            if HANG_MARKER in name:
                while True:
                    time.sleep(3600)
            if CRASH_MARKER in name:
                os._exit(70)  # like a segfault in FFmpeg: no reply, no cleanup, every thread gone
        outcome = probe_pyav.probe(path)
        seconds = round(clock() - started, 6)
        if isinstance(outcome, ProbeFailure):
            outbox.put([request_id, "error", [int(outcome.kind), outcome.reason], seconds])
        else:
            outbox.put([request_id, "info", outcome.to_json(), seconds])


_DELAY_LOCK = threading.Lock()


def _list_loop(requests: queue.SimpleQueue[dict[str, Any]], fd: int) -> None:
    """Lists directories for the server's walk (walker.list_directories), one request at a time, in frames of at
    most LIST_FRAME_ENTRIES entries (the last one says more=false)."""
    from reelscan.service.scan import walker

    step = walker.LIST_FRAME_ENTRIES
    while True:
        request = requests.get()
        request_id = request["list"]
        try:
            files, errors, subdirectories = walker.list_directories(request["dirs"], request["spec"])
        except Exception as error:  # a bug, not a bad file: the scan fails with it, as an in-process walk would
            _write_all(fd, encode_frame({"listed": request_id, "failed": f"{type(error).__name__}: {error}"}))
            continue
        error_rows = [[e.path, e.reason, e.is_dir] for e in errors]
        for start in range(0, len(files), step):
            frame = {"listed": request_id, "files": files[start : start + step], "more": True}
            _write_all(fd, encode_frame(frame))
        for start in range(0, len(error_rows), step):
            frame = {"listed": request_id, "errors": error_rows[start : start + step], "more": True}
            _write_all(fd, encode_frame(frame))
        for start in range(0, max(1, len(subdirectories)), step):
            last = start + step >= len(subdirectories)
            frame = {"listed": request_id, "dirs": subdirectories[start : start + step], "more": not last}
            _write_all(fd, encode_frame(frame))


def _warm_up() -> None:
    """Loads what the first real probe would otherwise pay for (PyAV's modules, FFmpeg's demuxer, parser and
    decoder tables) by probing a tiny clip made in memory, so the first scan after start is as fast as any other."""
    import io

    import av

    from reelscan.service.scan import probe_pyav

    for container_format, codec in (("mp4", "h264"), ("matroska", "h264"), ("webm", "vp9")):
        buffer = io.BytesIO()
        try:
            with av.open(buffer, "w", format=container_format) as out:
                stream: Any = out.add_stream(codec if codec != "h264" else "libx264", rate=1)
                stream.width = stream.height = 16
                stream.pix_fmt = "yuv420p"
                frame = av.VideoFrame(16, 16, "yuv420p")
                for packet in stream.encode(frame):
                    out.mux(packet)
                for packet in stream.encode(None):
                    out.mux(packet)
            buffer.seek(0)
            with av.open(buffer, metadata_errors="replace") as container:
                probe_pyav._describe(container, os.stat(os.devnull))
        except Exception:  # an encoder this FFmpeg build lacks: the warm-up is an optimisation, never a failure
            continue


def main() -> None:
    """Entry point of a worker process. Settings come from argv: probe delay (s), fault injection (0/1) and the
    number of probe threads."""
    probe_delay_s = float(sys.argv[1]) if len(sys.argv) > 1 else 0.0
    fault_injection = len(sys.argv) > 2 and sys.argv[2] == "1"
    threads = max(1, int(sys.argv[3])) if len(sys.argv) > 3 else 1
    # Ctrl-C in a terminal signals the whole process group; the server decides when its workers end.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Keep the protocol pipes private: anything a library prints to stdout must not corrupt a frame.
    rfd, wfd = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(2, 1)
    threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True).start()
    from reelscan.service.scan import probe_pyav  # noqa: F401  imports av: the slow part of start-up

    _warm_up()
    outbox = _Outbox(wfd)
    work: queue.SimpleQueue[tuple[int, str]] = queue.SimpleQueue()
    threading.Thread(target=outbox.run, name="reelscan-probe-writer", daemon=True).start()
    slots = threading.Semaphore(1)
    for _ in range(threads):
        args = (slots, work, outbox, probe_delay_s, fault_injection)
        threading.Thread(target=_probe_loop, args=args, name="reelscan-probe", daemon=True).start()
    if threads > 1:
        grow_args = (slots, work, wfd, threads)
        threading.Thread(target=_grow, args=grow_args, name="reelscan-probe-grow", daemon=True).start()
    listings: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
    threading.Thread(target=_list_loop, args=(listings, wfd), name="reelscan-lister", daemon=True).start()
    _write_all(wfd, encode_frame({"ready": os.getpid()}))
    decoder = FrameDecoder()
    while True:
        chunk = os.read(rfd, 65536)
        if not chunk:  # the server closed the pipe: shut down (probes in flight are abandoned)
            os._exit(0)
        for message in decoder.feed(chunk):
            if "list" in message:
                listings.put(message)
                continue
            for request_id, path in message["batch"]:
                work.put((int(request_id), str(path)))
