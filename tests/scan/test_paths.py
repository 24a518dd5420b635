"""The StartScan path policy, check by check and in order, and the worker's re-check."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from reelscan.service.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from reelscan.service.scan.paths import is_within, revalidate_scan_root, validate_scan_root


@pytest.fixture
def tree(tmp_path: Path) -> dict[str, Path]:
    allowed = tmp_path / "allowed"
    (allowed / "videos").mkdir(parents=True)
    (allowed / "file.mp4").write_bytes(b"x")
    outside = tmp_path / "outside"
    outside.mkdir()
    (allowed / "escape").symlink_to(outside)
    (allowed / "inner").symlink_to(allowed / "videos")
    (tmp_path / "allowed-sibling").mkdir()
    return {"root": tmp_path, "allowed": allowed, "outside": outside}


@pytest.mark.parametrize(
    ("raw", "error", "message"),
    [
        ("", InvalidArgument, "empty"),
        ("relative/dir", InvalidArgument, "absolute"),
        ("/tmp/a\x00b", InvalidArgument, "NUL"),
    ],
)
async def test_syntax_errors(raw: str, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        await validate_scan_root(raw, ())


async def test_nul_byte_beats_everything_else(tree: dict[str, Path]) -> None:
    with pytest.raises(InvalidArgument):
        await validate_scan_root("relative\x00", [tree["allowed"]])


async def test_outside_roots_is_denied_before_existence(tree: dict[str, Path]) -> None:
    roots = [tree["allowed"]]
    for raw in (str(tree["outside"]), str(tree["root"] / "does-not-exist"), "/etc/passwd"):
        with pytest.raises(PermissionDenied, match="outside the allowed roots"):
            await validate_scan_root(raw, roots)


async def test_prefix_of_a_root_is_not_inside_it(tree: dict[str, Path]) -> None:
    with pytest.raises(PermissionDenied):
        await validate_scan_root(str(tree["root"] / "allowed-sibling"), [tree["allowed"]])
    assert not is_within("/media/ab", "/media/a")
    assert is_within("/media/a/b", "/media/a") and is_within("/media/a", "/media/a")


async def test_dotdot_is_resolved_before_the_policy(tree: dict[str, Path]) -> None:
    sneaky = f"{tree['allowed']}/videos/../../outside"
    with pytest.raises(PermissionDenied, match="resolves to"):
        await validate_scan_root(sneaky, [tree["allowed"]])
    fine = await validate_scan_root(f"{tree['allowed']}/videos/..", [tree["allowed"]])
    assert fine == tree["allowed"]


async def test_symlink_out_of_the_root_is_denied(tree: dict[str, Path]) -> None:
    with pytest.raises(PermissionDenied):
        await validate_scan_root(str(tree["allowed"] / "escape"), [tree["allowed"]])


async def test_symlink_within_the_root_resolves(tree: dict[str, Path]) -> None:
    assert await validate_scan_root(str(tree["allowed"] / "inner"), [tree["allowed"]]) == tree["allowed"] / "videos"


async def test_missing_and_not_a_directory(tree: dict[str, Path]) -> None:
    roots = [tree["allowed"]]
    with pytest.raises(NotFound, match="does not exist"):
        await validate_scan_root(str(tree["allowed"] / "nope"), roots)
    with pytest.raises(NotFound):
        await validate_scan_root(str(tree["allowed"] / "file.mp4" / "below"), roots)
    with pytest.raises(FailedPrecondition, match="not a directory"):
        await validate_scan_root(str(tree["allowed"] / "file.mp4"), roots)


async def test_no_roots_means_any_absolute_path(tree: dict[str, Path]) -> None:
    assert await validate_scan_root(str(tree["outside"]), ()) == tree["outside"]


async def test_errors_name_the_field(tree: dict[str, Path]) -> None:
    with pytest.raises(PermissionDenied) as info:
        await validate_scan_root(str(tree["outside"]), [tree["allowed"]])
    assert info.value.field == "path"


async def test_revalidation_catches_a_symlink_swapped_in(tree: dict[str, Path]) -> None:
    roots = [tree["allowed"]]
    accepted = await validate_scan_root(str(tree["allowed"] / "videos"), roots)
    # Between StartScan and the worker, the directory is replaced by a link to somewhere outside.
    os.rename(accepted, tree["root"] / "moved-away")
    accepted.symlink_to(tree["outside"])
    with pytest.raises(PermissionDenied):
        await revalidate_scan_root(str(accepted), roots)


async def test_revalidation_refuses_a_redirect_inside_the_roots(tree: dict[str, Path]) -> None:
    roots = [tree["allowed"]]
    accepted = await validate_scan_root(str(tree["allowed"] / "videos"), roots)
    (tree["allowed"] / "other").mkdir()
    os.rename(accepted, tree["allowed"] / "old")
    accepted.symlink_to(tree["allowed"] / "other")
    with pytest.raises(FailedPrecondition, match="changed"):
        await revalidate_scan_root(str(accepted), roots)


async def test_revalidation_of_a_vanished_root(tree: dict[str, Path]) -> None:
    accepted = await validate_scan_root(str(tree["allowed"] / "videos"), [tree["allowed"]])
    accepted.rmdir()
    with pytest.raises(NotFound):
        await revalidate_scan_root(str(accepted), [tree["allowed"]])
