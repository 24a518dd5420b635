"""`make demo`: the first thing to run. Makes a few hundred small sample clips with PyAV, starts a server on a free
port, scans the clips with `reelscan scan` (live progress bar), lists a few videos, and stops the server.

    python examples/demo.py [--clips N] [--dir DIR] [--fast]

Everything lives in var/demo/ (the clips, the database); running it again reuses the clips.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from fractions import Fraction
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LISTENING = re.compile(r"reelscan listening on (\S+:\d+)")

# (file name stem, extension, width, height, seconds): a few distinct encodes that the copies are made from.
TEMPLATES = (
    ("holiday-2023", ".mp4", 640, 360, 2.0),
    ("concert", ".mkv", 1280, 720, 1.0),
    ("cats", ".mp4", 320, 240, 1.0),
    ("drone", ".mov", 480, 270, 1.5),
)


def _encode_with_pyav(path: Path, width: int, height: int, seconds: float) -> None:
    """A minimal H.264 clip, for when tests/media.py (the fuller generator) is not importable."""
    import av

    fps = 25
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps, options={"preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(round(seconds * fps)):
            frame = av.VideoFrame(width, height, "yuv420p")
            for plane in frame.planes:
                plane.update(bytes([(i * 7) % 200 + 16]) * plane.buffer_size)
            frame.pts, frame.time_base = i, Fraction(1, fps)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))


def _clip_maker() -> Callable[[Path, int, int, float], None]:
    sys.path.insert(0, str(REPO))
    try:
        from tests.media import make_clip  # the project's generator: H.264 + AAC, all metadata set
    except ImportError:
        return _encode_with_pyav
    finally:
        sys.path.remove(str(REPO))

    def make(path: Path, width: int, height: int, seconds: float) -> None:
        make_clip(path, width=width, height=height, duration_s=seconds, audio_language="eng")

    return make


def make_clips(directory: Path, count: int) -> int:
    """Encodes each template once, then fills `directory` up to `count` files with byte copies (each its own
    file to probe), plus a few broken files so the scan has errors to report. Returns the number of files."""
    directory.mkdir(parents=True, exist_ok=True)
    existing = sorted(directory.iterdir())
    if len(existing) >= count:
        return len(existing)
    make = _clip_maker()
    templates = []
    for stem, ext, width, height, seconds in TEMPLATES:
        path = directory / f"{stem}-0000{ext}"
        make(path, width, height, seconds)
        templates.append((stem, ext, path))
    broken = [directory / "broken-0001.mp4", directory / "truncated-0002.mkv"]
    broken[0].write_bytes(random.Random(1).randbytes(4096))
    broken[1].write_bytes(templates[1][2].read_bytes()[:300])
    made = len(templates) + len(broken)
    i = 1
    while made < count:
        stem, ext, source = templates[i % len(templates)]
        target = directory / f"{stem}-{i:04d}{ext}"
        if not target.exists():
            shutil.copyfile(source, target)
            made += 1
        i += 1
    return made


class DemoServer:
    """`reelscan serve` on a free port, its log kept quiet unless it fails."""

    def __init__(self, db: Path, root: Path, probe_delay: float) -> None:
        self.cmd = [
            sys.executable, "-m", "reelscan.service", "--listen", "127.0.0.1:0", "--db", str(db),
            "--allow-root", str(root), "--grace-period", "2",
        ]  # fmt: skip
        if probe_delay:
            # The sample clips are tiny (about 1 ms to probe each), so without this the bar would be gone before
            # anyone saw it. Real video files take longer on their own.
            self.cmd += ["--probe-delay", str(probe_delay)]
        self.proc: subprocess.Popen[str] | None = None
        self.address: str | None = None
        self.log: list[str] = []
        self._bound = threading.Event()

    def start(self, timeout: float = 30.0) -> str:
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        threading.Thread(target=self._read_log, daemon=True).start()
        deadline = time.monotonic() + timeout
        while not self._bound.wait(0.05):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the server did not start:\n" + "".join(self.log))
        assert self.address is not None
        return self.address

    def _read_log(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for line in self.proc.stderr:
            self.log.append(line)
            match = LISTENING.search(line)
            if match:
                self.address = match.group(1)
                self._bound.set()

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def reelscan(args: Sequence[str]) -> int:
    """Runs one `reelscan` client command in this terminal, showing it first as a user would type it."""
    print(f"\n$ reelscan {shlex.join(args)}", flush=True)
    return subprocess.run([sys.executable, "-m", "reelscan.client.cli", *args], check=False).returncode


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=300, help="number of sample files [default %(default)s]")
    parser.add_argument("--dir", type=Path, default=REPO / "var" / "demo", help="where clips and database go")
    parser.add_argument("--fast", action="store_true", help="do not slow probing down to make the bar visible")
    ns = parser.parse_args(argv)

    clips = ns.dir.resolve() / "clips"
    started = time.monotonic()
    print(f"Making {ns.clips} sample clips in {clips} ...", flush=True)
    count = make_clips(clips, ns.clips)
    print(f"{count} files ready in {time.monotonic() - started:.1f}s", flush=True)

    server = DemoServer(ns.dir.resolve() / "reelscan.db", clips, 0.0 if ns.fast else 0.01)
    address = server.start()
    print(f"Server listening on {address} (database {ns.dir / 'reelscan.db'})", flush=True)
    os.environ["REELSCAN_SERVER"] = address  # so the commands below read as a user would type them
    try:
        # --force so that a second run probes again rather than skip every unchanged file in a blink.
        code = reelscan(["scan", str(clips), "--force"])
        reelscan(["videos", "list", "--limit", "8"])
        reelscan(["videos", "search", "holiday", "--min-height", "360", "--limit", "3"])
        reelscan(["jobs", "list", "--limit", "3"])
    finally:
        server.stop()
    print("\nServer stopped. Next: `make run` in one terminal, then `reelscan scan DIR` in another.", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
