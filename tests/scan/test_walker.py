"""Discovery: extensions, recursion, symlink policy and loops, unreadable directories, special files."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from reelscan.service.scan.walker import FoundFile, WalkError, extension_of, walk
from tests.helpers.unstatable import make_unstatable

EXTS = ("mp4", "mkv")


async def collect(root: Path, **kwargs: object) -> tuple[list[FoundFile], list[WalkError]]:
    files: list[FoundFile] = []
    errors: list[WalkError] = []
    kwargs.setdefault("extensions", EXTS)
    async for batch in walk(str(root), **kwargs):  # type: ignore[arg-type]
        files += batch.files
        errors += batch.errors
    return sorted(files), errors


def names(files: list[FoundFile], root: Path) -> list[str]:
    return sorted(os.path.relpath(f[0], root) for f in files)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    for rel in ("a.mp4", "B.MKV", "notes.txt", "noext", ".mp4", "sub/c.mp4", "sub/deeper/d.mkv", "sub/e.avi"):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * len(rel))
    return root


async def test_recursive_with_extensions_any_case(tree: Path) -> None:
    files, errors = await collect(tree)
    assert names(files, tree) == ["B.MKV", "a.mp4", "sub/c.mp4", "sub/deeper/d.mkv"]
    assert errors == []
    path, size, mtime_ns = next(f for f in files if f[0].endswith("a.mp4"))
    st = os.stat(path)
    assert (size, mtime_ns) == (st.st_size, st.st_mtime_ns)


async def test_not_recursive(tree: Path) -> None:
    files, _ = await collect(tree, recursive=False)
    assert names(files, tree) == ["B.MKV", "a.mp4"]


async def test_other_extensions(tree: Path) -> None:
    files, _ = await collect(tree, extensions=("avi", "txt"))
    assert names(files, tree) == ["notes.txt", "sub/e.avi"]


def test_extension_of() -> None:
    assert extension_of("a.MP4") == "mp4"
    assert extension_of(".mp4") == ""
    assert extension_of("noext") == ""
    assert extension_of("x.tar.mkv") == "mkv"


async def test_symlinks_are_not_followed_by_default(tree: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "z.mp4").write_bytes(b"z")
    (tree / "link-dir").symlink_to(elsewhere)
    (tree / "link.mp4").symlink_to(tree / "a.mp4")
    files, errors = await collect(tree)
    assert names(files, tree) == ["B.MKV", "a.mp4", "sub/c.mp4", "sub/deeper/d.mkv"]
    assert errors == []


async def test_followed_symlinks_stay_inside_allowed_roots(tree: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "z.mp4").write_bytes(b"z")
    (tree / "out-dir").symlink_to(elsewhere)
    (tree / "out.mp4").symlink_to(elsewhere / "z.mp4")
    (tree / "in-dir").symlink_to(tree / "sub" / "deeper")
    files, errors = await collect(tree, follow_symlinks=True, allow_roots=[tree])
    found = names(files, tree)
    assert "out.mp4" not in found and not any(f.startswith("out-dir") for f in found)
    assert {e.path for e in errors} == {str(tree / "out-dir"), str(tree / "out.mp4")}
    assert all("outside the allowed roots" in e.reason for e in errors)
    # sub/deeper is reached twice (directly and through in-dir) but walked once.
    assert sum(f.endswith("d.mkv") for f in found) == 1


async def test_symlink_loops_end(tree: Path) -> None:
    (tree / "sub" / "loop").symlink_to(tree)
    (tree / "sub" / "deeper" / "self").symlink_to(tree / "sub" / "deeper")
    files, _ = await collect(tree, follow_symlinks=True, allow_roots=[tree.parent])
    assert names(files, tree) == ["B.MKV", "a.mp4", "sub/c.mp4", "sub/deeper/d.mkv"]


async def test_broken_followed_symlink_is_an_error(tree: Path) -> None:
    (tree / "dangling.mp4").symlink_to(tree / "nowhere.mp4")
    _, errors = await collect(tree, follow_symlinks=True)
    assert [(os.path.basename(e.path), e.is_dir) for e in errors] == [("dangling.mp4", False)]


async def test_unreadable_directory_is_recorded_and_walk_goes_on(tree: Path) -> None:
    locked = tree / "sub" / "deeper"
    locked.chmod(0)
    try:
        if os.access(locked, os.R_OK):
            pytest.skip("running as root: permissions are not enforced")
        files, errors = await collect(tree)
    finally:
        locked.chmod(0o755)
    assert names(files, tree) == ["B.MKV", "a.mp4", "sub/c.mp4"]
    assert [(e.path, e.is_dir) for e in errors] == [(str(locked), True)]
    assert "cannot read directory" in errors[0].reason


@pytest.fixture
def unreadable(monkeypatch: pytest.MonkeyPatch) -> Iterator[set[str]]:
    """Directories whose listing fails with EACCES, whoever runs the tests (root ignores chmod)."""
    denied: set[str] = set()
    real_scandir = os.scandir

    def scandir(path: str) -> object:
        if str(path) in denied:
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    yield denied


async def test_directory_that_cannot_be_listed(tree: Path, unreadable: set[str]) -> None:
    unreadable.add(str(tree / "sub"))
    files, errors = await collect(tree)
    assert names(files, tree) == ["B.MKV", "a.mp4"]
    assert [(e.path, e.is_dir, e.reason) for e in errors] == [
        (str(tree / "sub"), True, "cannot read directory: Permission denied")
    ]


async def test_unreadable_root(tmp_path: Path) -> None:
    files, errors = await collect(tmp_path / "gone")
    assert files == [] and len(errors) == 1 and errors[0].is_dir


async def test_fifo_with_video_name_is_an_error_not_a_file(tree: Path) -> None:
    os.mkfifo(tree / "x.mp4")
    files, errors = await collect(tree)
    assert "x.mp4" not in names(files, tree)
    assert [(os.path.basename(e.path), e.reason) for e in errors] == [("x.mp4", "not a regular file (named pipe)")]


async def test_many_files_stream_in_batches(tmp_path: Path) -> None:
    root = tmp_path / "many"
    root.mkdir()
    for i in range(1200):
        (root / f"{i:05}.mp4").touch()
    batches = [b async for b in walk(str(root), extensions=EXTS, batch_size=500)]
    assert [len(b.files) for b in batches] == [500, 500, 200]


async def test_closing_early_stops_the_thread(tmp_path: Path) -> None:
    root = tmp_path / "many"
    for d in range(50):
        (root / str(d)).mkdir(parents=True)
        for i in range(50):
            (root / str(d) / f"{i}.mp4").touch()
    gen = walk(str(root), extensions=EXTS, batch_size=10)
    async for _ in gen:
        break
    await gen.aclose()
    for _ in range(100):
        if not any(t.name == "reelscan-walk" for t in threading.enumerate()):
            break
        await asyncio.sleep(0.01)
    assert not any(t.name == "reelscan-walk" for t in threading.enumerate())


async def test_many_errors_and_files_interleaved_lose_nothing(tmp_path: Path) -> None:
    """Errors and files share batches; a batch handed over mid-directory must not be written to afterwards."""
    root = tmp_path / "mixed"
    root.mkdir()
    for i in range(300):
        (root / f"{i:04}.mp4").touch()
        os.mkfifo(root / f"{i:04}-fifo.mp4")
    files: list[FoundFile] = []
    errors: list[WalkError] = []
    async for batch in walk(str(root), extensions=EXTS, batch_size=7):
        assert len(batch.files) + len(batch.errors) <= 7
        files += batch.files
        errors += batch.errors
    assert len(files) == 300 and len(errors) == 300


async def test_directory_that_cannot_be_statted_is_a_directory_error(
    tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = str(tree / "sub" / "deeper")
    make_unstatable(monkeypatch, target)
    files, errors = await collect(tree)
    assert names(files, tree) == ["B.MKV", "a.mp4", "sub/c.mp4"]
    assert [(e.path, e.is_dir, e.reason) for e in errors] == [
        (target, True, "cannot read directory: Permission denied")
    ]


@pytest.mark.parametrize("follow_symlinks", [False, True])
@pytest.mark.parametrize("recursive", [True, False])
async def test_probe_workers_list_exactly_like_the_walk_threads(
    tmp_path: Path, follow_symlinks: bool, recursive: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The probe workers list directories for a scan (on every core); the result must be the threads' walk, rule
    for rule: extensions, links in and out of the allowed roots, loops entered once, special files, odd names."""
    from reelscan.service.scan.pool import ProbePool

    root = tmp_path / "root"
    outside = tmp_path / "outside"
    for rel in ("a.mp4", "B.MKV", "notes.txt", "sub/c.mp4", "sub/deeper/d.mkv", "sub/e.avi", "wide/" + "x" * 200):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"x" * len(rel))
    for i in range(30):  # more than one request's worth of directories
        (root / "many" / f"d{i:02}").mkdir(parents=True)
        (root / "many" / f"d{i:02}" / f"f{i}.mp4").write_bytes(b"y" * i)
    (outside / "o.mp4").parent.mkdir(parents=True)
    (outside / "o.mp4").write_bytes(b"o")
    (root / os.fsdecode(b"caf\xe9.mp4")).write_bytes(b"z")
    os.mkfifo(root / "pipe.mp4")
    (root / "link-in.mp4").symlink_to(root / "a.mp4")
    (root / "link-dir").symlink_to(root / "sub")
    (root / "sub" / "loop").symlink_to(root)
    (root / "link-out.mp4").symlink_to(outside / "o.mp4")
    (root / "link-out-dir").symlink_to(outside)
    (root / "broken.mp4").symlink_to(root / "nowhere.mp4")
    kwargs = {"recursive": recursive, "follow_symlinks": follow_symlinks, "allow_roots": [root]}
    threads_files, threads_errors = await collect(root, **kwargs)
    pool = ProbePool(size=2, timeout_s=10)
    await pool.wait_ready()

    def no_scandir(path: object) -> None:
        raise AssertionError("the server process listed a directory itself")

    monkeypatch.setattr(os, "scandir", no_scandir)  # the listing must happen in the worker processes
    try:
        workers_files, workers_errors = await collect(root, lister=pool, **kwargs)
    finally:
        await pool.close()
    assert [tuple(f) for f in workers_files] == threads_files
    assert sorted(workers_errors, key=repr) == sorted(threads_errors, key=repr)
    assert len(threads_files) >= (33 if recursive else 3)
