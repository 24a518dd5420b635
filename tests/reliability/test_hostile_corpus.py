"""A hostile tree scanned by the real server: broken and malicious files, files that crash or hang the prober
(fault injection), special files, symlink loops and escapes, unreadable files and directories, names that are not
UTF-8 or are 255 bytes long, 10,000 files in one directory and 100 levels of nesting.

The server must stay up (health SERVING, same process, probe workers replaced), the job must SUCCEED with counts
that add up, every bad file must be a scan error with a reason, and every good file must be in the library.

Unreadable files: permission bits do not bind root, so when the suite runs as root the server is started through
`setpriv` without CAP_DAC_OVERRIDE/CAP_DAC_READ_SEARCH (then chmod 000 denies root too). Where that is not possible
the unreadable part is left out, and its test is skipped with the reason.
"""

from __future__ import annotations

import os
import random
import shutil
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from reelscan.v1 import job_pb2, library_pb2
from tests.helpers.server import ServerProcess
from tests.media import copy_clip, make_fifo, make_random_bytes, make_truncated, make_zero_byte
from tests.reliability.support import (
    Client,
    UnprivilegedServer,
    can_drop_dac_override,
    library_path,
    probe_workers,
    record,
    running_as_root,
)

PROBE_FAILED = library_pb2.SCAN_ERROR_KIND_PROBE_FAILED
PROBE_TIMEOUT = library_pb2.SCAN_ERROR_KIND_PROBE_TIMEOUT
PROBE_CRASHED = library_pb2.SCAN_ERROR_KIND_PROBE_CRASHED
UNREADABLE = library_pb2.SCAN_ERROR_KIND_UNREADABLE
KIND_NAMES = {value: name for name, value in library_pb2.ScanErrorKind.items()}

MANY_FILES = 10_000  # in one directory
MANY_VIDEOS = 1_000  # of which are (hard links to) videos; the slow variant makes all 10,000 videos
DEPTH = 100
PROBE_WORKERS = 2
JUNK_BYTES = 5 * 1024 * 1024


@dataclass
class Expectation:
    """What a scan of the tree must report."""

    good: set[str] = field(default_factory=set)  # library paths
    bad: dict[str, int] = field(default_factory=dict)  # file path -> ScanErrorKind
    bad_dirs: dict[str, int] = field(default_factory=dict)  # directory path -> ScanErrorKind (not in `failed`)
    walk_errors: set[str] = field(default_factory=set)  # files that fail before probing (recorded on every scan)

    def good_file(self, path: bytes | str | Path) -> None:
        self.good.add(library_path(path))

    def bad_file(self, path: bytes | str | Path, kind: int, *, at_walk: bool = False) -> None:
        self.bad[library_path(path)] = kind
        if at_walk:
            self.walk_errors.add(library_path(path))


def build_tree(root: Path, outside: Path, clips: dict[str, Path], unreadable: bool) -> tuple[Expectation, Path]:
    """Makes the hostile tree under `root`; returns what a scan of `root` must find, and the links directory."""
    mp4, mkv = clips["mp4"], clips["mkv"]
    want = Expectation()

    good = root / "good"
    want.good_file(copy_clip(mp4, good / "plain.mp4"))
    want.good_file(copy_clip(mkv, good / "plain.mkv"))
    want.good_file(copy_clip(mkv, good / "matroska named.mp4"))  # wrong extension, real video: fine
    want.good_file(copy_clip(mp4, good / ("L" * 251 + ".mp4")))  # 255 bytes, the longest name there is
    want.good_file(copy_clip(mp4, good / ("é" * 125 + ".mp4")))  # 254 bytes of 2-byte characters
    want.good_file(copy_clip(mp4, good / 'it\'s 100% _done_; -- DROP TABLE videos; NEAR(a b) "x"*.mp4'))
    latin1 = os.fsencode(good) + b"/caf\xe9 latin-1 \xff\xfe.mp4"  # not UTF-8
    shutil.copyfile(mp4, latin1)
    want.good_file(latin1)

    bad = root / "bad"
    want.bad_file(make_zero_byte(bad / "zero.mp4"), PROBE_FAILED)
    want.bad_file(make_truncated(bad / "truncated.mp4", mp4), PROBE_FAILED)
    want.bad_file(make_random_bytes(bad / "random.mkv", seed=7), PROBE_FAILED)
    text = bad / "text.mp4"
    text.write_text("This is a text file with a video extension.\n" * 40)
    want.bad_file(text, PROBE_FAILED)
    junk = random.Random(11).randbytes(JUNK_BYTES)
    huge_mkv = bad / "huge-header.mkv"  # an EBML (Matroska) header with an unknown size, then 5 MB of junk
    huge_mkv.write_bytes(bytes.fromhex("1A45DFA3") + b"\x01" + b"\xff" * 7 + junk)
    want.bad_file(huge_mkv, PROBE_FAILED)
    huge_mp4 = bad / "huge-junk.mp4"
    huge_mp4.write_bytes(junk)
    want.bad_file(huge_mp4, PROBE_FAILED)
    want.bad_file(make_fifo(bad / "x.mp4"), UNREADABLE, at_walk=True)
    want.bad_file(copy_clip(mp4, bad / "a-reelscan-crash.mp4"), PROBE_CRASHED)
    want.bad_file(copy_clip(mp4, bad / "a-reelscan-hang.mp4"), PROBE_TIMEOUT)
    bad_bytes = os.fsencode(bad) + b"/noise-\xff\xfe.mkv"
    Path(os.fsdecode(bad_bytes)).write_bytes(random.Random(3).randbytes(2048))
    want.bad_file(bad_bytes, PROBE_FAILED)
    want.bad_file(make_zero_byte(bad / ("Z" * 251 + ".mkv")), PROBE_FAILED)

    # Symbolic links of every troublesome kind: ignored by a default scan (links are not followed).
    links = root / "links"
    links.mkdir()
    (links / "loop").symlink_to(".")
    (links / "sub").mkdir()
    (links / "sub" / "up").symlink_to("..")
    (links / "self.mp4").symlink_to("self.mp4")
    (links / "ping.mp4").symlink_to("pong.mp4")
    (links / "pong.mp4").symlink_to("ping.mp4")
    (links / "dangling.mp4").symlink_to("nothing-here.mp4")
    (links / "escape").symlink_to(outside)
    (links / "escape.mp4").symlink_to(outside / "outside.mp4")
    (links / "inside.mp4").symlink_to(good / "plain.mp4")

    many = root / "many"
    many.mkdir()
    for i in range(MANY_FILES):
        if i % (MANY_FILES // MANY_VIDEOS) == 0:
            os.link(mp4, many / f"f{i:05d}.mp4")
            want.good.add(str(many / f"f{i:05d}.mp4"))
        else:
            (many / f"f{i:05d}.nfo").write_bytes(b"")

    deep = root / "deep"
    bottom = deep.joinpath(*["d"] * DEPTH)
    bottom.mkdir(parents=True)
    want.good_file(copy_clip(mp4, bottom / "bottom.mp4"))
    want.bad_file(make_zero_byte(bottom / "bottom-empty.mp4"), PROBE_FAILED)

    if unreadable:
        locked = root / "locked"
        secret = copy_clip(mp4, locked / "secret.mp4")
        secret.chmod(0)
        want.bad_file(secret, UNREADABLE)  # listed and stat'ed fine; opening it is what fails
        sealed = locked / "sealed"
        copy_clip(mp4, sealed / "inside-sealed.mp4")
        sealed.chmod(0)
        want.bad_dirs[str(sealed)] = UNREADABLE  # cannot be listed: its files are unknown
        nosearch = locked / "nosearch"
        copy_clip(mp4, nosearch / "unstatable.mp4")
        nosearch.chmod(stat.S_IRUSR)  # names can be listed, but nothing in it can be stat'ed or opened
        want.bad_file(nosearch / "unstatable.mp4", UNREADABLE, at_walk=True)
    return want, links


@dataclass
class HostileRun:
    server: ServerProcess
    quirks: Path  # a second allowed root, for the cases tested one by one
    want: Expectation
    links: Path
    outside: Path
    unreadable: bool
    unreadable_skip_reason: str
    job: job_pb2.Job
    errors: list[library_pb2.ScanError]
    videos: list[library_pb2.Video]
    health_during: list[bool]
    pid_before: int
    scan_s: float


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory, clips: dict[str, Path]) -> Iterator[HostileRun]:
    base = tmp_path_factory.mktemp("hostile")
    root, outside, quirks = base / "root", base / "outside", base / "quirks"
    root.mkdir()
    quirks.mkdir()
    copy_clip(clips["mp4"], outside / "outside.mp4")
    server_cls: type[ServerProcess] = ServerProcess
    reason = ""
    if running_as_root():
        if can_drop_dac_override(base):
            server_cls = UnprivilegedServer
        else:
            reason = "running as root and setpriv cannot drop CAP_DAC_OVERRIDE: chmod 000 does not deny root reads"
    unreadable = not reason
    how = "as a non-root user" if not running_as_root() else "through setpriv (root without CAP_DAC_OVERRIDE)"
    record("hostile corpus: unreadable files and directories tested", how if unreadable else f"no: {reason}")
    want, links = build_tree(root, outside, clips, unreadable)
    args = ["--fault-injection", "--probe-timeout", "1", "--probe-workers", str(PROBE_WORKERS)]
    server = server_cls(base / "reelscan.db", allow_roots=[root, quirks], extra_args=args)
    try:
        server.start()
        assert server.proc is not None
        pid = server.proc.pid
        with Client(server.address, timeout=30) as client:
            started = time.monotonic()
            job = client.start(root).job
            health = []
            while True:  # health checked all along the scan
                health.append(client.serving())
                current = client.get(job.id)
                if current.state not in (job_pb2.JOB_STATE_PENDING, job_pb2.JOB_STATE_RUNNING):
                    break
                assert time.monotonic() - started < 120, f"the scan did not end: {current}"
                time.sleep(0.2)
            scan_s = time.monotonic() - started
            errors = client.errors(job.id)
            videos = client.videos()
        yield HostileRun(
            server, quirks, want, links, outside, unreadable, reason, current, errors, videos, health, pid, scan_s
        )
    finally:
        server.stop()
        server.kill()
        for directory, _dirs, _files in os.walk(base):
            os.chmod(directory, 0o755)  # so the temporary tree can be removed


def test_server_stays_up_and_the_scan_succeeds(hostile: HostileRun) -> None:
    assert hostile.job.state == job_pb2.JOB_STATE_SUCCEEDED, hostile.job
    assert hostile.job.progress == 1.0
    assert hostile.health_during and all(hostile.health_during)
    with Client(hostile.server.address) as client:
        assert client.serving()
    assert hostile.server.proc is not None and hostile.server.proc.poll() is None
    assert hostile.server.proc.pid == hostile.pid_before
    # The crashed and the hung worker were replaced: the pool is back at full strength.
    assert len(probe_workers(hostile.server)) == PROBE_WORKERS
    record("hostile corpus: files / scan time (s)", f"{hostile.job.result.discovered} / {hostile.scan_s:.1f}")


def test_every_bad_file_is_a_scan_error_with_a_reason(hostile: HostileRun) -> None:
    by_path = {e.path: e for e in hostile.errors}
    assert len(by_path) == len(hostile.errors), "the same path reported twice"
    for path, kind in {**hostile.want.bad, **hostile.want.bad_dirs}.items():
        assert path in by_path, f"no scan error for {path!r}; errors: {sorted(by_path)}"
        error = by_path[path]
        assert error.kind == kind, f"{path}: {KIND_NAMES[error.kind]} ({error.reason}), want {KIND_NAMES[kind]}"
        assert error.reason.strip(), f"{path}: empty reason"
        assert error.job_id == hostile.job.id
    unexpected = set(by_path) - set(hostile.want.bad) - set(hostile.want.bad_dirs)
    assert not unexpected, {p: by_path[p].reason for p in unexpected}
    root = Path(hostile.job.scan.path)
    assert "did not finish" in by_path[str(root / "bad" / "a-reelscan-hang.mp4")].reason
    assert "died" in by_path[str(root / "bad" / "a-reelscan-crash.mp4")].reason


def test_every_good_file_is_in_the_library(hostile: HostileRun) -> None:
    paths = [v.path for v in hostile.videos]
    assert len(paths) == len(set(paths))
    assert set(paths) == hostile.want.good, (
        f"missing: {sorted(hostile.want.good - set(paths))[:5]}, extra: {sorted(set(paths) - hostile.want.good)[:5]}"
    )
    with Client(hostile.server.address) as client:
        for video in hostile.videos:
            if "many/" not in video.path:
                assert video.video.codec in ("h264",) and video.duration.seconds == 1, video
                assert client.library.GetVideo(library_pb2.GetVideoRequest(path=video.path)).video.id == video.id


def test_counts_add_up(hostile: HostileRun) -> None:
    result = hostile.job.result
    want = hostile.want
    probe_failures = len(want.bad) - len(want.walk_errors)
    assert result.discovered == len(want.good) + len(want.bad)
    assert result.new == len(want.good)
    assert result.failed == len(want.bad)
    assert (result.updated, result.unchanged, result.missing) == (0, 0, 0)
    assert result.discovered == result.new + result.updated + result.unchanged + result.failed
    assert result.probed == result.new + result.updated + probe_failures
    assert len(hostile.errors) == result.failed + len(want.bad_dirs)


def test_rescan_is_incremental_and_still_adds_up(hostile: HostileRun) -> None:
    """Nothing changed: nothing is probed again (not even the file that hung or crashed the prober); files that
    cannot even be walked are reported again."""
    with Client(hostile.server.address, timeout=30) as client:
        job = client.scan(hostile.job.scan.path)
        errors = client.errors(job.id)
    want = hostile.want
    result = job.result
    assert job.state == job_pb2.JOB_STATE_SUCCEEDED, job
    assert result.probed == 0 and result.new == 0 and result.updated == 0
    assert result.unchanged == len(want.good) + len(want.bad) - len(want.walk_errors)
    assert result.failed == len(want.walk_errors)
    assert result.discovered == result.new + result.updated + result.unchanged + result.failed
    assert {e.path for e in errors} == want.walk_errors | set(want.bad_dirs)


def test_following_symlinks_never_escapes_and_survives_loops(hostile: HostileRun) -> None:
    links = hostile.links
    with Client(hostile.server.address, timeout=30) as client:
        job = client.scan(links, follow_symlinks=True)
        errors = {e.path: e for e in client.errors(job.id)}
        videos = {v.path for v in client.videos(path_prefix=str(links))}
    assert job.state == job_pb2.JOB_STATE_SUCCEEDED, job
    for name in ("escape", "escape.mp4"):
        assert "outside the allowed roots" in errors[str(links / name)].reason
    for name in ("self.mp4", "ping.mp4", "pong.mp4", "dangling.mp4"):
        assert errors[str(links / name)].kind == UNREADABLE and errors[str(links / name)].reason
    # The link to a file inside the root is followed; the loops (links/loop -> ., links/sub/up -> ..) end.
    assert videos == {str(links / "inside.mp4")}
    assert not any(str(hostile.outside) in v for v in videos)


def test_unreadable_files_and_directories(hostile: HostileRun) -> None:
    if not hostile.unreadable:
        pytest.skip(hostile.unreadable_skip_reason)
    by_path = {e.path: e for e in hostile.errors}
    root = Path(hostile.job.scan.path)
    assert "ermission denied" in by_path[str(root / "locked" / "secret.mp4")].reason
    assert "ermission denied" in by_path[str(root / "locked" / "sealed")].reason
    assert "ermission denied" in by_path[str(root / "locked" / "nosearch" / "unstatable.mp4")].reason


# --- regression tests of bugs this suite found, since fixed ---------------------------------------------------------


def test_a_container_header_followed_by_junk_is_a_scan_error(hostile: HostileRun, clips: dict[str, Path]) -> None:
    """Was stored as a 'video' with no streams at all (container format only); now a probe failure."""
    directory = hostile.quirks / "headers"
    directory.mkdir()
    junk = random.Random(5).randbytes(JUNK_BYTES)
    mp4 = directory / "moov-junk.mp4"  # ftyp, then a moov box that claims 5 MB of junk
    mp4.write_bytes(b"\0\0\0\x18ftypisom\0\0\2\0isomiso2" + (JUNK_BYTES + 8).to_bytes(4, "big") + b"moov" + junk)
    avi = directory / "riff-junk.avi"  # a RIFF/AVI header with huge sizes, then 5 MB of junk
    avi.write_bytes(b"RIFF\xf0\xff\xff\xffAVI LIST\x00\xff\xff\xffhdrl" + junk)
    with Client(hostile.server.address, timeout=30) as client:
        job = client.scan(directory)
        errors = {e.path: e for e in client.errors(job.id)}
        videos = [v.path for v in client.videos(path_prefix=str(directory))]
    assert job.state == job_pb2.JOB_STATE_SUCCEEDED
    assert videos == [], "files with no audio or video stream are in the library"
    assert set(errors) == {str(mp4), str(avi)}
    assert all(e.kind == PROBE_FAILED and e.reason for e in errors.values())


def test_a_non_utf8_name_and_its_escaped_spelling_are_two_videos(hostile: HostileRun, clips: dict[str, Path]) -> None:
    """Both got the same library path, so one overwrote the other (two files, one video); now one-to-one."""
    directory = hostile.quirks / "twins"
    directory.mkdir()
    shutil.copyfile(clips["mp4"], os.fsencode(directory) + b"/twin-\xff.mp4")
    copy_clip(clips["mkv"], directory / "twin-\\xff.mp4")  # a backslash, 'x', 'f', 'f': valid UTF-8
    with Client(hostile.server.address, timeout=30) as client:
        job = client.scan(directory)
        videos = {v.path: v.container_format for v in client.videos(path_prefix=str(directory))}
    assert job.state == job_pb2.JOB_STATE_SUCCEEDED and job.result.new == 2
    assert videos == {
        library_path(os.fsencode(directory) + b"/twin-\xff.mp4"): "mov,mp4,m4a,3gp,3g2,mj2",
        library_path(directory / "twin-\\xff.mp4"): "matroska,webm",
    }


def test_a_directory_that_cannot_be_statted_does_not_mark_its_files_missing(
    hostile: HostileRun, clips: dict[str, Path]
) -> None:
    """A sub-directory that can be listed but not stat'ed (parent without search permission) was recorded as a
    failed *file*, so the files the library knew below it were marked missing; now an unreadable directory."""
    if not hostile.unreadable:
        pytest.skip(hostile.unreadable_skip_reason)
    top = hostile.quirks / "nosearch"
    locked = top / "a"
    copy_clip(clips["mp4"], locked / "sub" / "deep.mp4")
    copy_clip(clips["mp4"], top / "other.mp4")
    with Client(hostile.server.address, timeout=30) as client:
        assert client.scan(top).result.new == 2
        locked.chmod(stat.S_IRUSR | stat.S_IWUSR)  # listable, but nothing in it can be stat'ed
        try:
            job = client.scan(top)
        finally:
            locked.chmod(0o755)
        errors = {e.path: e for e in client.errors(job.id)}
        deep = client.library.GetVideo(library_pb2.GetVideoRequest(path=str(locked / "sub" / "deep.mp4"))).video
    assert errors[str(locked / "sub")].kind == UNREADABLE
    assert not deep.missing, "a file that is still on disk was marked missing"
    assert job.result.missing == 0
    assert job.result.discovered == 1, "a directory was counted as a discovered video file"


@pytest.mark.slow
def test_ten_thousand_videos_in_one_directory(tmp_path: Path, clips: dict[str, Path]) -> None:
    root = tmp_path / "media"
    many = root / "many"
    many.mkdir(parents=True)
    bad = set()
    for i in range(MANY_FILES):
        os.link(clips["mp4"], many / f"f{i:05d}.mp4")
        if i % 1000 == 0:
            bad.add(str(make_zero_byte(many / f"f{i:05d}-empty.mp4")))
    with ServerProcess(tmp_path / "reelscan.db", allow_roots=[root]) as server, Client(server.address, 60) as client:
        started = time.monotonic()
        job = client.scan(root, seconds=600)
        scan_s = time.monotonic() - started
        assert job.state == job_pb2.JOB_STATE_SUCCEEDED, job
        assert (job.result.discovered, job.result.new, job.result.failed) == (
            MANY_FILES + len(bad),
            MANY_FILES,
            len(bad),
        )
        assert {e.path for e in client.errors(job.id)} == bad
        paths = [v.path for v in client.videos()]
        assert len(paths) == len(set(paths)) == MANY_FILES
        started = time.monotonic()
        again = client.scan(root, seconds=600)
        rescan_s = time.monotonic() - started
        assert again.result.unchanged == MANY_FILES + len(bad) and again.result.probed == 0
        assert client.serving()
    record("10,000 videos in one directory: scan / incremental rescan (s)", f"{scan_s:.1f} / {rescan_s:.1f}")
