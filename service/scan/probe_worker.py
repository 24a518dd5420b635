"""The probe worker process: reads file paths from stdin, probes each with PyAV, writes the results to stdout.

Started by pool.py as `python -c "from reelscan.service.scan.probe_worker import main; main()"`.

Messages are length-prefixed JSON frames (4-byte big-endian length). JSON rather than pickle so that a worker
subverted by a hostile file cannot make the server unpickle code; json's \\udcXX escapes carry file names that are
not valid UTF-8 (surrogate-escaped str) through unchanged.

Requests:  {"id": n, "path": "..."}
Replies:   {"ready": pid} once at start, then {"id": n, "info": {...}} or {"id": n, "error": [kind, reason]}
"""

from __future__ import annotations

import json
import os
import signal
import struct
import sys
import threading
import time
from typing import Any

from reelscan.service.scan.media_info import ProbeFailure

_HEADER = struct.Struct(">I")
# No honest reply comes near this; a bigger length means a corrupted or subverted worker.
MAX_FRAME = 1 << 20
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


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    try:
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


def main() -> None:
    """Entry point of a worker process. Settings come from argv: probe delay (s) and fault injection (0/1)."""
    probe_delay_s = float(sys.argv[1]) if len(sys.argv) > 1 else 0.0
    fault_injection = len(sys.argv) > 2 and sys.argv[2] == "1"
    # Ctrl-C in a terminal signals the whole process group; the server decides when its workers end.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Keep the protocol pipes private: anything a library prints to stdout must not corrupt a frame.
    rfd, wfd = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(2, 1)
    threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True).start()
    from reelscan.service.scan import probe_pyav  # imports av: the slow part of start-up, before "ready"

    _write_all(wfd, encode_frame({"ready": os.getpid()}))
    decoder = FrameDecoder()
    while True:
        chunk = os.read(rfd, 65536)
        if not chunk:  # the server closed the pipe: shut down
            return
        for message in decoder.feed(chunk):
            path = str(message["path"])
            if probe_delay_s > 0:
                time.sleep(probe_delay_s)
            if fault_injection:
                name = os.path.basename(path)
                if HANG_MARKER in name:
                    while True:
                        time.sleep(3600)
                if CRASH_MARKER in name:
                    os._exit(70)  # like a segfault in FFmpeg: no reply, no cleanup
            outcome = probe_pyav.probe(path)
            if isinstance(outcome, ProbeFailure):
                reply: dict[str, Any] = {"id": message["id"], "error": [int(outcome.kind), outcome.reason]}
            else:
                reply = {"id": message["id"], "info": outcome.to_json()}
            _write_all(wfd, encode_frame(reply))
