"""Benchmark corpora, generated once and cached under var/bench/ (delete that directory to regenerate).

- clips-N/: N distinct tiny clips, encoded with PyAV by tests/media.py: a mix of H.264/AAC MP4, VP9/Opus WebM and
  H.264 MKV (some without audio, some rotated), 32x32..64x48, 0.2..0.4 s. Each is a separate file (own inode), so
  every probe opens and parses a real container.
- tree-N/: N files in directories of 1,000, each a hard link to one of a dozen real clips. Costs N directory
  entries and no data, and every entry is a real video, so a cold scan fills the library with N real videos.
- real-N/: N files of 10-30 s at 720p/1080p with audio (H.264/AAC and HEVC/AAC MP4, some with the index (moov)
  at the end and some at the start, VP9/Opus WebM, H.264 MKV), each a hard link to one of 12 encoded sources: a
  probe's work depends on the file's layout and codecs, not on which inode it has, and 200 real copies of 10-30 s
  clips would take long to encode on 2 cores. Frames are flat with a band of noise, so bit rates are realistic
  (a few Mbit/s) and the demuxers read real packets.
- library-N.db: a snapshot of the server's database after a real cold scan of tree-N through gRPC (StartScan,
  WatchJob to the end). The rescan and memory benchmarks start servers on copies of it. Building it is the one
  slow step (minutes for 100,000 files on 2 cores), done once; how long it took is kept in its manifest.

A manifest (.manifest.json) is written last, so an interrupted generation is redone rather than trusted.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sqlite3
import time
from pathlib import Path
from typing import Any

from bench import harness, rpc
from bench.harness import CACHE, log
from reelscan.service.scan.media_info import PROBE_VERSION
from tests.media import make_clip

CORPUS_VERSION = 1
VIDEO_SUFFIXES = (".mp4", ".webm", ".mkv")


def _manifest(directory: Path) -> Path:
    return directory / ".manifest.json"


def _read_manifest(path: Path, expect: dict[str, Any]) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if all(data.get(k) == v for k, v in expect.items()) else None


def _write_manifest(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)


def _encode(path: Path, i: int) -> None:
    """Clip number `i`: the kind cycles through MP4/WebM/MKV, the parameters vary so files are not identical."""
    kind = i % 3
    size = ((64, 48), (32, 32), (48, 32))[(i // 3) % 3]
    duration = (0.2, 0.3, 0.4)[(i // 9) % 3]
    if kind == 0:
        make_clip(path, width=size[0], height=size[1], fps=24 + i % 7, duration_s=duration, audio_language="eng")
    elif kind == 1:
        make_clip(
            path, video_codec="vp9", audio_codec="opus", width=size[0], height=size[1], fps=25, duration_s=duration
        )
    else:
        make_clip(
            path,
            width=size[0],
            height=size[1],
            fps=30,
            duration_s=duration,
            audio_codec="aac" if i % 2 else None,
            rotation=90 * (i // 3 % 4),
        )


# The 12 sources of real-N: (codec, container suffix, width, height, fps, seconds, moov at the start).
_REAL_SOURCES = (
    ("h264", ".mp4", 1280, 720, 24, 10, True),
    ("h264", ".mp4", 1920, 1080, 30, 20, False),
    ("hevc", ".mp4", 1280, 720, 25, 15, False),
    ("hevc", ".mp4", 1920, 1080, 24, 12, True),
    ("vp9", ".webm", 1280, 720, 30, 10, False),
    ("h264", ".mkv", 1920, 1080, 25, 30, False),
    ("h264", ".mp4", 1280, 720, 30, 25, False),
    ("hevc", ".mkv", 1280, 720, 24, 20, False),
    ("vp9", ".webm", 1920, 1080, 24, 12, False),
    ("h264", ".mp4", 1920, 1080, 24, 15, True),
    ("hevc", ".mp4", 1920, 1080, 30, 10, False),
    ("h264", ".mkv", 1280, 720, 24, 18, False),
)
_REAL_ENCODERS = {
    "h264": ("libx264", {"preset": "ultrafast", "threads": "2"}),
    "hevc": ("libx265", {"preset": "ultrafast", "x265-params": "log-level=error:pools=2"}),
    "vp9": ("libvpx-vp9", {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0", "threads": "2"}),
}


def _encode_real(path: Path, codec: str, width: int, height: int, fps: int, seconds: int, faststart: bool) -> None:
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    encoder, options = _REAL_ENCODERS[codec]
    container_options = {"movflags": "+faststart"} if faststart else {}
    noise = os.urandom(width * height // 8 + width * 64)
    with av.open(str(path), "w", options=container_options) as out:
        video = out.add_stream(encoder, rate=fps, options=dict(options))
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.bit_rate = 3_000_000
        audio = out.add_stream("libopus" if path.suffix == ".webm" else "aac", rate=48_000)
        audio.layout = "stereo"
        flat_rows = height - height // 8
        for i in range(fps * seconds):
            frame = av.VideoFrame(width, height, "yuv420p")
            luma = frame.planes[0]
            shift = (i * 977) % (width * 64)
            band = noise[shift : shift + width * (height // 8)]
            luma.update(
                bytes([(i * 3) % 200 + 16]) * (luma.line_size * flat_rows)
                + band.ljust(luma.buffer_size - luma.line_size * flat_rows, b"\x80")
            )
            for plane in frame.planes[1:]:
                plane.update(bytes([128]) * plane.buffer_size)
            frame.pts = i
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        samples = 960
        for n in range(48_000 * seconds // samples):
            chunk = av.AudioFrame(format="fltp", layout="stereo", samples=samples)
            for plane in chunk.planes:
                plane.update(bytes(plane.buffer_size))
            chunk.sample_rate = 48_000
            chunk.pts = n * samples
            out.mux(audio.encode(chunk))
        out.mux(audio.encode(None))


def real(count: int) -> tuple[Path, list[str]]:
    """The realistic corpus: (root, file paths), `count` hard links to the 12 sources."""
    root = CACHE / f"real-{count}"
    expect = {"version": CORPUS_VERSION, "kind": "real", "count": count, "sources": len(_REAL_SOURCES)}
    paths = [root / f"r{i // 50:02}" / f"real{i:04}{_REAL_SOURCES[i % len(_REAL_SOURCES)][1]}" for i in range(count)]
    if _read_manifest(_manifest(root), expect) is None:
        shutil.rmtree(root, ignore_errors=True)
        source_dir = CACHE / f"real-sources-v{CORPUS_VERSION}"
        log(f"  encoding {len(_REAL_SOURCES)} realistic sources in {source_dir} (once; cached; minutes)")
        start = time.perf_counter()
        sources = []
        for i, (codec, suffix, width, height, fps, seconds, faststart) in enumerate(_REAL_SOURCES):
            source = source_dir / f"src{i:02}-{codec}-{height}p{suffix}"
            if not source.exists():
                _encode_real(
                    source.with_name(source.name + ".part" + suffix), codec, width, height, fps, seconds, faststart
                )
                source.with_name(source.name + ".part" + suffix).rename(source)
            sources.append(source)
        for i, path in enumerate(paths):
            path.parent.mkdir(parents=True, exist_ok=True)
            os.link(sources[i % len(sources)], path)
        _write_manifest(_manifest(root), {**expect, "seconds": time.perf_counter() - start})
    return root, [str(p) for p in paths]


def clip_path(root: Path, i: int) -> Path:
    return root / f"d{i // 100:03}" / f"clip{i:05}{VIDEO_SUFFIXES[i % 3]}"


def clips(count: int) -> tuple[Path, list[str]]:
    """The cold-scan corpus: (root, sorted file paths)."""
    root = CACHE / f"clips-{count}"
    expect = {"version": CORPUS_VERSION, "kind": "clips", "count": count}
    if _read_manifest(_manifest(root), expect) is None:
        shutil.rmtree(root, ignore_errors=True)
        log(f"  generating {count} clips in {root} (once; cached)")
        start = time.perf_counter()
        for i in range(count):
            _encode(clip_path(root, i), i)
        _write_manifest(_manifest(root), {**expect, "seconds": time.perf_counter() - start})
    return root, [str(clip_path(root, i)) for i in range(count)]


def tree(count: int, per_dir: int = 1000, sources: int = 12) -> Path:
    """The rescan corpus: `count` hard links to `sources` real clips."""
    root = CACHE / f"tree-{count}"
    expect = {"version": CORPUS_VERSION, "kind": "tree", "count": count, "per_dir": per_dir, "sources": sources}
    if _read_manifest(_manifest(root), expect) is None:
        shutil.rmtree(root, ignore_errors=True)
        log(f"  linking a {count}-file tree in {root} (once; cached)")
        start = time.perf_counter()
        source_dir = CACHE / f"tree-sources-v{CORPUS_VERSION}"
        shutil.rmtree(source_dir, ignore_errors=True)
        originals = [clip_path(source_dir, i) for i in range(sources)]
        for i, path in enumerate(originals):
            _encode(path, i)
        for i in range(count):
            directory = root / f"d{i // per_dir:04}"
            if i % per_dir == 0:
                directory.mkdir(parents=True)
            original = originals[i % sources]
            os.link(original, directory / f"f{i:06}{original.suffix}")
        _write_manifest(_manifest(root), {**expect, "seconds": time.perf_counter() - start})
    return root


def library(count: int) -> tuple[Path, dict[str, Any]]:
    """A database snapshot holding tree-N fully scanned; returns (snapshot path, its manifest)."""
    root = tree(count)
    snapshot = CACHE / f"library-{count}.db"
    manifest_path = CACHE / f"library-{count}.manifest.json"
    # Keyed by the probe version too: rows of an older probe are probed again by the next scan (by design), so a
    # snapshot from before a probe change would make the "unchanged" rescan a cold one.
    expect = {"version": CORPUS_VERSION, "kind": "library", "count": count, "probe_version": PROBE_VERSION}
    manifest = _read_manifest(manifest_path, expect)
    if manifest is not None and snapshot.exists():
        return snapshot, manifest
    log(f"  populating a {count}-video library by a real cold scan of {root} (once; cached)")
    work_db = CACHE / f"library-{count}.building.db"
    with harness.reelscan_server(work_db, [root]) as server:
        scan = asyncio.run(rpc.scan(server.address, str(root)))
    job = scan.last.job
    if job.result.new != count:
        raise RuntimeError(f"populating scan stored {job.result.new} of {count} files: {job}")
    harness.remove_db(snapshot)
    backup(work_db, snapshot)
    harness.remove_db(work_db)
    manifest = {
        **expect,
        "seconds": scan.seconds,
        "files_per_s": count / scan.seconds,
        "built": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    _write_manifest(manifest_path, manifest)
    return snapshot, manifest


def backup(source: Path, dest: Path) -> None:
    """A consistent copy of a SQLite database (WAL folded in) with SQLite's online backup."""
    src = sqlite3.connect(source)
    dst = sqlite3.connect(dest)
    try:
        src.backup(dst)
    finally:
        dst.close()
        src.close()


def copy_library(snapshot: Path, dest: Path) -> Path:
    harness.remove_db(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(snapshot, dest)
    return dest


def hang_dir(clip_count: int) -> Path:
    """`clip_count` real clips plus one file whose probe hangs when the server runs with --fault-injection."""
    root = CACHE / f"hang-{clip_count}"
    expect = {"version": CORPUS_VERSION, "kind": "hang", "count": clip_count}
    if _read_manifest(_manifest(root), expect) is None:
        shutil.rmtree(root, ignore_errors=True)
        _, sources = clips(12)
        root.mkdir(parents=True)
        for i in range(clip_count):
            source = Path(sources[i % len(sources)])
            shutil.copyfile(source, root / f"c{i:04}{source.suffix}")
        # The marker (probe_worker.HANG_MARKER) makes the worker sleep instead of probing.
        shutil.copyfile(sources[0], root / "zz.reelscan-hang.mp4")
        _write_manifest(_manifest(root), expect)
    return root
