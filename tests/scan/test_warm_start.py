"""Probe workers are started and warm (imports done, codecs loaded) before the server reports SERVING, so the first
scan after start is as fast as any other."""

from __future__ import annotations

import time
from pathlib import Path

import psutil

from tests.helpers.server import ServerProcess


def _has_ffmpeg_loaded(process: psutil.Process) -> bool:
    return any("libavformat" in m.path for m in process.memory_maps())


def test_workers_are_up_and_warm_when_the_server_reports_serving(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "reelscan.db", allow_roots=[tmp_path], extra_args=["--probe-workers", "2"])
    with server:
        assert server.proc is not None
        # The very moment health says SERVING (ServerProcess.start returned), not some time later.
        workers = psutil.Process(server.proc.pid).children()
        loaded = [w.pid for w in workers if _has_ffmpeg_loaded(w)]
        assert len(workers) == 2 and len(loaded) == 2, (
            f"at SERVING, {len(loaded)} of {len(workers)} probe workers had FFmpeg loaded: they were still starting"
        )
        # Nothing else comes up afterwards: the same two processes, which were already warm.
        time.sleep(0.3)
        assert sorted(w.pid for w in psutil.Process(server.proc.pid).children()) == sorted(w.pid for w in workers)
