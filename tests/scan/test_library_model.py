"""The library's pure rules, shared by every store: the library path form and subtree bounds."""

from __future__ import annotations

from reelscan.service.scan.library_model import library_path, subtree_bounds


def test_library_path_is_one_to_one() -> None:
    assert library_path("/m/a.mp4") == "/m/a.mp4"
    assert library_path("/m/café.mp4") == "/m/café.mp4"  # valid UTF-8: as is
    assert library_path("/m/caf\udce9.mp4") == "/m/caf\\xe9.mp4"  # an undecodable byte: escaped
    assert library_path("/m/caf\\xe9.mp4") == "/m/caf\\\\xe9.mp4"  # a literal backslash: doubled, so no collision
    names = ["a\udcff", "a\\xff", "a\\\udcff", "a\\\\xff", "a\\", "a\\\\", "a\udcff\\"]
    assert len({library_path(n) for n in names}) == len(names)


def test_subtree_bounds() -> None:
    assert subtree_bounds("/") == ("/", "0")
    assert subtree_bounds("/m/a") == subtree_bounds("/m/a/") == ("/m/a/", "/m/a0")
    low, high = subtree_bounds("/m/a")
    inside = ["/m/a/x.mp4", "/m/a/sub/deep/y.mkv", "/m/a/ü.mp4"]
    outside = ["/m/a", "/m/ab/x.mp4", "/m/a-b/x.mp4", "/m/a0/x.mp4", "/m/b/x.mp4", "/m/A/x.mp4"]
    assert all(low < p < high for p in inside)
    assert not any(low < p < high for p in outside)
